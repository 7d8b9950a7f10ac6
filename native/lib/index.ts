/**
 * libbpf-ts: a typed binding over libbpf.
 *
 *   const obj = await BpfObject.open('prog.bpf.o').setMaxEntries('flows', 1 << 20).load();
 *   obj.program('ingress').attachTc('eth0', 'ingress');
 *   for await (const [k, v] of obj.map('flows').entries()) { ... }
 */
import { addon } from './native';

export { BpfError, isBpfError } from './errors';
export { MapType, ProgType, UpdateFlags, TcAction, XdpAction, mapTypeName } from './constants';
export { BpfObject } from './object';
export type { ObjectMap, ObjectProgram } from './object';
export { BpfMap, MapChunk } from './map';
export { RingBuffer } from './ringbuf';
export type { MapInfo, DumpOptions } from './map';
export {
  BpfProgram,
  detachTc,
  queryTc,
  destroyTcHook,
  queryXdp,
  detachXdp,
  ifindex,
  ifname,
  progInfo,
} from './program';
export type {
  TcAttachPoint,
  XdpMode,
  InterfaceRef,
  NetnsOption,
  TcOptions,
  XdpOptions,
  TestRunOptions,
  TestRunResult,
  TcAttachment,
  XdpAttachment,
} from './program';

/**
 * An exclusive flock(2) on `path` (created when missing), without waiting:
 * released by unlock() or when the process dies. Throws a BpfError with code
 * EWOULDBLOCK (EAGAIN) when another process holds it.
 */
export class FileLock {
  private constructor(private fd: number) {}

  static acquire(path: string): FileLock {
    return new FileLock(addon.lockFile(path));
  }

  unlock(): void {
    if (this.fd < 0) return;
    addon.unlockFile(this.fd);
    this.fd = -1;
  }
}

/** How many CPUs the kernel may bring up: the number of values a per-CPU map holds per key. */
export function numPossibleCpus(): number {
  return addon.numPossibleCpus();
}
