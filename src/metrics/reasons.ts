// Reading the datapath's counters (tsct_metrics: per CPU, by reason and hook)
// and naming them. What a reason is follows from its name in enum tsct_reason:
// DROP_* reasons are drops, INV_* are invalid packets (passed unless
// configured to be dropped, then also counted as DROP_INVALID), and every
// other reason counts an event of normal work, never a drop.
import * as path from 'node:path';
import { BpfMap } from 'libbpf-ts';
import { StructView } from '../bpf/layouts';
import { REASON_NAMES } from './reasonNames';

export { REASON_NAMES };

export interface ReasonCount {
  reason: string;
  code: number;
  hook: 'ingress' | 'egress';
  count: number;
  bytes: number;
}

/** Every non-zero counter of tsct_metrics, summed over CPUs. */
export function readMetrics(map: BpfMap): ReasonCount[] {
  const out: ReasonCount[] = [];
  const key = Buffer.alloc(4);
  for (let idx = 0; idx < map.maxEntries; idx++) {
    key.writeUInt32LE(idx);
    const perCpu = map.lookupPerCpu(key);
    if (!perCpu) continue;
    let count = 0;
    let bytes = 0;
    for (const v of perCpu) {
      const s = new StructView('metrics_value', v);
      count += s.u('count');
      bytes += s.u('bytes');
    }
    if (count === 0) continue;
    const code = idx >> 1;
    out.push({
      reason: REASON_NAMES.get(code) ?? `REASON_${code}`,
      code,
      hook: idx & 1 ? 'egress' : 'ingress',
      count,
      bytes,
    });
  }
  return out;
}

/** The counters of the datapath pinned under root. */
export function readPinnedMetrics(root: string): ReasonCount[] {
  const m = BpfMap.openPinned(path.join(root, 'tsct_metrics'));
  try {
    return readMetrics(m);
  } finally {
    m.close();
  }
}

/** One reason's count, summed over hooks unless one is named. */
export function reasonTotal(metrics: ReasonCount[], reason: string, hook?: 'ingress' | 'egress'): number {
  return metrics.filter((m) => m.reason === reason && (!hook || m.hook === hook)).reduce((s, m) => s + m.count, 0);
}
