// Running the real datapath programs on crafted packets (BPF_PROG_TEST_RUN)
// and reading back what they did.
import { StructView, ENUMS } from '../../src/bpf/layouts';
import { CtEntry, CtTuple, decodeCtEntry, encodeCtKey, formatCtState } from '../../src/ct/ctEntry';
import { Datapath } from '../../src/datapath/datapath';
import { REASON_NAMES, reasonTotal } from '../../src/metrics/reasons';
import { ctMapFor } from '../../src/datapath/tables';

const CB = ENUMS.tsct_cb_slot;

export interface RunResult {
  verdict: number;
  ctState: number;
  /** OVS notation: +trk+est+rpl */
  state: string;
  reason: string | null;
  mark: number;
  zone: number;
  dir: number;
  data: Buffer;
}

export interface RunOptions {
  hook?: 'ingress' | 'egress';
  /** skb->ingress_ifindex: the device a forwarded packet came in on. */
  ingressIfindex?: number;
}

export async function runPacket(dp: Datapath, frame: Buffer, opts: RunOptions = {}): Promise<RunResult> {
  const ctx = StructView.alloc('__sk_buff');
  if (opts.ingressIfindex) ctx.set('ingress_ifindex', opts.ingressIfindex);
  const prog = opts.hook === 'egress' ? dp.egress : dp.ingress;
  const r = await prog.testRun({ data: frame, ctx: ctx.buf });
  const out = new StructView('__sk_buff', r.ctx!);
  const ctState = out.u('cb', CB.CB_CT_STATE);
  const reason = out.u('cb', CB.CB_REASON);
  const zd = out.u('cb', CB.CB_ZONE_DIR);
  return {
    verdict: r.retval,
    ctState,
    state: formatCtState(ctState),
    reason: reason ? (REASON_NAMES.get(reason) ?? String(reason)) : null,
    mark: out.u('cb', CB.CB_CT_MARK),
    zone: zd >>> 16,
    dir: (zd >> 8) & 0xff,
    data: r.data!,
  };
}

/** The connection entry of a tuple (either direction), or null. */
export function findConn(dp: Datapath, t: CtTuple): CtEntry | null {
  const { key } = encodeCtKey(t);
  const value = dp.maps[ctMapFor(t.family, t.proto)].lookup(key);
  return value ? decodeCtEntry(t.family, key, value) : null;
}

/** How many entries the four connection tables hold. */
export async function countConns(dp: Datapath): Promise<number> {
  let n = 0;
  for (const m of ['tsct_ct4_global', 'tsct_ct_any4_global', 'tsct_ct6_global', 'tsct_ct_any6_global'] as const) {
    for await (const chunk of dp.maps[m].batches()) n += chunk.count;
  }
  return n;
}

/** A counter of tsct_metrics, summed over hooks unless one is named. */
export function reasonCount(dp: Datapath, reason: string, hook?: 'ingress' | 'egress'): number {
  return reasonTotal(dp.metrics(), reason, hook);
}

/** The timeout an entry was given at its last packet, in whole seconds. */
export function timeoutS(e: CtEntry): number {
  return Math.round((e.expiresNs - e.lastSeenNs) / 1e9);
}
