// Where and how the agent attaches: one tc filter per device and direction, at
// a fixed handle and priority, so that a restart or upgrade replaces its own
// filter in place and uninstall finds it.
import { BpfProgram, detachTc, detachXdp, ifname, isBpfError, progInfo, queryTc, queryXdp } from 'libbpf-ts';
import { UsageError } from '../errors';

export const TC_HANDLE = 0x7473; // 'ts'
export const TC_PRIORITY = 1;
const OURS = new Set(['tsct_ingress', 'tsct_egress']);
const XDP_PROGRAM = 'tsct_xdp';

export function attachDevice(ingress: BpfProgram, egress: BpfProgram, ifindex: number): void {
  const at = { handle: TC_HANDLE, priority: TC_PRIORITY, replace: true };
  ingress.attachTc(ifindex, 'ingress', at);
  egress.attachTc(ifindex, 'egress', at);
}

/**
 * Attaches the XDP fast path in native mode, replacing an earlier tsct one;
 * another program's XDP attachment is never replaced.
 */
export function attachXdpFastPath(xdp: BpfProgram, ifindex: number, name: string): void {
  const cur = queryXdp(ifindex);
  const curName = cur === null ? null : progInfo(cur)?.name;
  if (cur !== null && curName !== XDP_PROGRAM) {
    throw new UsageError(
      `--bpf-xdp-fast-path: ${name} already has an XDP program (${curName ?? '?'}, id ${cur}); detach it or run without the flag`,
    );
  }
  try {
    xdp.attachXdp(ifindex, { mode: 'native' });
  } catch (e) {
    if (isBpfError(e))
      throw new UsageError(
        `--bpf-xdp-fast-path: ${name} does not take a native XDP program (${e.code}: ${e.message}); run without the flag`,
      );
    throw e;
  }
}

/** Removes tsct's XDP program from a device; false when it had none. */
export function detachXdpFastPath(ifindex: number): boolean {
  if (ifname(ifindex) === null) return false;
  const cur = queryXdp(ifindex);
  if (cur === null || progInfo(cur)?.name !== XDP_PROGRAM) return false;
  return detachXdp(ifindex, { expectedProgId: cur });
}

export interface Attachment {
  point: 'ingress' | 'egress' | 'xdp';
  progId: number;
  progName: string;
}

/** tsct's filters on a device (none when the device is gone). */
export function attachmentsOf(ifindex: number): Attachment[] {
  const out: Attachment[] = [];
  if (ifname(ifindex) === null) return out;
  for (const point of ['ingress', 'egress'] as const) {
    const id = queryTc(ifindex, point, { handle: TC_HANDLE, priority: TC_PRIORITY });
    if (id === null) continue;
    const info = progInfo(id);
    if (info && OURS.has(info.name)) out.push({ point, progId: id, progName: info.name });
  }
  const xdp = queryXdp(ifindex);
  const info = xdp === null ? null : progInfo(xdp);
  if (xdp !== null && info?.name === XDP_PROGRAM) out.push({ point: 'xdp', progId: xdp, progName: info.name });
  return out;
}

/** Removes tsct's filters from a device; returns how many were removed. */
export function detachDevice(ifindex: number): number {
  let n = 0;
  for (const a of attachmentsOf(ifindex)) {
    if (
      a.point === 'xdp'
        ? detachXdp(ifindex, { expectedProgId: a.progId })
        : detachTc(ifindex, a.point, { handle: TC_HANDLE, priority: TC_PRIORITY })
    )
      n++;
  }
  return n;
}
