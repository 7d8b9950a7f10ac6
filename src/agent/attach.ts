// Where and how the agent attaches: one tc filter per device and direction, at
// a fixed handle and priority, so that a restart or upgrade replaces its own
// filter in place and uninstall finds it.
import { BpfProgram, detachTc, ifname, progInfo, queryTc } from 'libbpf-ts';

export const TC_HANDLE = 0x7473; // 'ts'
export const TC_PRIORITY = 1;
const OURS = new Set(['tsct_ingress', 'tsct_egress']);

export function attachDevice(ingress: BpfProgram, egress: BpfProgram, ifindex: number): void {
  const at = { handle: TC_HANDLE, priority: TC_PRIORITY, replace: true };
  ingress.attachTc(ifindex, 'ingress', at);
  egress.attachTc(ifindex, 'egress', at);
}

export interface Attachment {
  point: 'ingress' | 'egress';
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
  return out;
}

/** Removes tsct's filters from a device; returns how many were removed. */
export function detachDevice(ifindex: number): number {
  let n = 0;
  for (const a of attachmentsOf(ifindex)) {
    if (detachTc(ifindex, a.point, { handle: TC_HANDLE, priority: TC_PRIORITY })) n++;
  }
  return n;
}
