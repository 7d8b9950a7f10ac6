// Benchmark `gc`: the in-kernel sweep (SEC("syscall") tsct_gc) of a
// 1,000,000-entry table with half of it expired, against a user-space sweep
// (get-next-key, lookup, delete) of the same table, in the same run.
import { BpfMap } from 'libbpf-ts';
import { Datapath } from '../../src/datapath/datapath';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { gcSweep } from '../../src/gc/gcSweep';
import { StructView } from '../../src/bpf/layouts';
import { fillCt4 } from './ctFill';
import { figure, series, verdict, fmt, nowNs } from './common';

const ENTRIES = 1_000_000;
const ROUNDS = 5;

function userSpaceSweep(map: BpfMap, now: bigint): number {
  const value = Buffer.alloc(map.valueStride);
  const v = new StructView('ct_entry', value);
  let deleted = 0;
  // The next key is taken before the current one may be deleted: a deleted
  // key would send get-next-key back to the start of the table.
  let k = map.nextKey(null);
  while (k) {
    const next = map.nextKey(k);
    if (map.lookupInto(k, value) && v.u64('expires_ns') < now) {
      if (map.delete(k)) deleted++;
    }
    k = next;
  }
  return deleted;
}

async function main(): Promise<void> {
  ensureBpffs();
  const dp = await Datapath.load({ sizes: { ctTcp: ENTRIES, ctAny: 1024 } });
  try {
    const kernel: number[] = [];
    const user: number[] = [];
    const now = process.hrtime.bigint();
    for (let r = 0; r < ROUNDS; r++) {
      await fillCt4(dp.maps.tsct_ct4_global, ENTRIES, now);
      const res = await gcSweep(dp.gc, now);
      if (res.deleted !== ENTRIES / 2 || res.alive !== ENTRIES / 2)
        throw new Error(`kernel sweep deleted ${res.deleted}, kept ${res.alive}`);
      kernel.push(res.durationNs / 1e6);

      await fillCt4(dp.maps.tsct_ct4_global, ENTRIES, now);
      const t = nowNs();
      const deleted = userSpaceSweep(dp.maps.tsct_ct4_global, now);
      user.push((nowNs() - t) / 1e6);
      if (deleted !== ENTRIES / 2) throw new Error(`user-space sweep deleted ${deleted}`);
    }
    const k = series('kernel_sweep_1m_ms', kernel);
    const u = series('userspace_sweep_1m_ms', user);
    figure('userspace_over_kernel', u / k);
    figure(
      'summary',
      `1M-entry sweep, half expired: ${fmt(k, 0)} ms in the kernel (<= 250: ${verdict(k <= 250)}), ${fmt(u / k, 1)}x faster than user space (>= 8: ${verdict(u / k >= 8)})`,
    );
  } finally {
    dp.close();
  }
}

main().catch((e) => {
  console.error(`gc benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
