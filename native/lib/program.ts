import { addon, NativeProgram, openPinnedAs, TcAttachment, XdpAttachment } from './native';

export type { TcAttachment, XdpAttachment };
export type TcAttachPoint = 'ingress' | 'egress';
export type XdpMode = 'native' | 'generic' | 'auto';
/** An interface by name or index. */
export type InterfaceRef = string | number;

export interface NetnsOption {
  /** A network namespace file (e.g. /run/netns/lab1) to act in; the caller's namespace when absent. */
  netns?: string;
}

export interface TcOptions extends NetnsOption {
  /** Filter handle (default 1). */
  handle?: number;
  /** Filter priority (default 1). */
  priority?: number;
  /** Replace a filter already at this handle and priority (an upgrade in place). */
  replace?: boolean;
}

export interface XdpOptions extends NetnsOption {
  mode?: XdpMode;
  /** Replace a program already attached. */
  replace?: boolean;
}

export interface TestRunOptions {
  /** The packet, starting at the Ethernet header. */
  data?: Buffer;
  /** Runs in the kernel (default 1); the reported duration is the mean per run. */
  repeat?: number;
  /** Context in: a struct __sk_buff for tc, struct xdp_md for XDP, the program's argument for syscall programs. */
  ctx?: Buffer;
  /** Room for the packet out (default: input length + 256). */
  dataSizeOut?: number;
  /** Room for the context out (default: the context's length). */
  ctxSizeOut?: number;
  flags?: number;
  cpu?: number;
}

export interface TestRunResult {
  /** The program's return value: its verdict. */
  retval: number;
  /** The packet as the program left it. */
  data: Buffer | null;
  /** The context as the program left it. */
  ctx: Buffer | null;
  /** Mean nanoseconds per run, as the kernel measured them. */
  durationNs: number;
}

/** A loaded BPF program held open by file descriptor. */
export class BpfProgram {
  readonly name: string;
  readonly type: number;
  readonly id: number;

  /** @internal */
  constructor(private readonly native: NativeProgram) {
    const i = native.info();
    this.name = i.name;
    this.type = i.type;
    this.id = i.id;
  }

  /** Opens the program pinned at `path`. */
  static openPinned(path: string): BpfProgram {
    return new BpfProgram(openPinnedAs(path, 'program'));
  }

  get fd(): number {
    return this.native.fd();
  }

  /** Attaches as a direct-action tc filter on the interface's clsact qdisc (created when missing). */
  attachTc(target: InterfaceRef, point: TcAttachPoint, opts: TcOptions = {}): TcAttachment {
    return this.native.attachTc(target, point, opts);
  }

  /** Attaches at XDP; mode 'auto' lets the kernel choose native when the driver has it. */
  attachXdp(target: InterfaceRef, opts: XdpOptions = {}): XdpAttachment {
    return this.native.attachXdp(target, opts.mode ?? 'auto', opts);
  }

  /** Runs the program on a packet in the kernel (BPF_PROG_TEST_RUN), off the event loop. */
  async testRun(opts: TestRunOptions): Promise<TestRunResult> {
    const r = await this.native.testRun({ ...opts, ctxIn: opts.ctx });
    return { retval: r.retval, data: r.data, ctx: r.ctx, durationNs: r.duration };
  }

  /**
   * Runs a SEC("syscall") program with `ctx` as its argument; resolves to its
   * return value and the context it wrote.
   */
  async run(ctx?: Buffer): Promise<{ retval: number; ctx: Buffer | null }> {
    const r = await this.native.testRun(ctx ? { ctxIn: ctx } : {});
    return { retval: r.retval, ctx: r.ctx };
  }

  pin(path: string): void {
    this.native.pin(path);
  }

  close(): void {
    this.native.close();
  }
}

/** Removes the tc filter at handle/priority; false when there was none. */
export function detachTc(target: InterfaceRef, point: TcAttachPoint, opts: Omit<TcOptions, 'replace'> = {}): boolean {
  return addon.tcDetach(target, point, opts);
}

/** The id of the program at handle/priority, or null. */
export function queryTc(
  target: InterfaceRef,
  point: TcAttachPoint,
  opts: Omit<TcOptions, 'replace'> = {},
): number | null {
  return addon.tcQuery(target, point, opts);
}

/** Removes the clsact qdisc and with it every tc filter on the interface, ours or not. */
export function destroyTcHook(target: InterfaceRef, opts: NetnsOption = {}): boolean {
  return addon.tcHookDestroy(target, opts);
}

/** The id of the XDP program attached, or null. */
export function queryXdp(target: InterfaceRef, opts: NetnsOption & { mode?: XdpMode } = {}): number | null {
  return addon.xdpQuery(target, opts);
}

/**
 * Detaches XDP. With expectedProgId, only when that program is the one
 * attached, so a program attached by someone else is left alone.
 */
export function detachXdp(
  target: InterfaceRef,
  opts: NetnsOption & { mode?: XdpMode; expectedProgId?: number } = {},
): boolean {
  return addon.xdpDetach(target, opts);
}

/** An interface's index, optionally inside a network namespace. */
export function ifindex(name: InterfaceRef, opts: NetnsOption = {}): number {
  return addon.ifindex(name, opts.netns);
}

/** An interface's name from its index (null when there is none), optionally inside a network namespace. */
export function ifname(index: number, opts: NetnsOption = {}): string | null {
  return addon.ifname(index, opts.netns);
}

/** A loaded program's name, type and tag by id; null when no such program exists. */
export function progInfo(id: number): { id: number; name: string; type: number; tag: string } | null {
  return addon.progInfo(id);
}
