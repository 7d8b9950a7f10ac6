// Benchmark `ct-packet`: the datapath's per-packet cost through
// BPF_PROG_TEST_RUN, against a baseline program that parses the same packet
// and does one hash lookup (test/fixtures/parse_lookup.bpf.c), in the same run.
import * as path from 'node:path';
import { BpfObject, BpfProgram } from 'libbpf-ts';
import { Datapath } from '../../src/datapath/datapath';
import { frame } from '../../lab/packetCraft';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { NO_FAST_PATH, ROOT, figure, median, series, verdict, fmt } from './common';

const ROUNDS = 5;
const REPEAT = 200_000;
const NEW_PER_ROUND = 3000;

const est4 = frame({
  src: '10.200.1.2',
  dst: '10.200.2.2',
  l4: { tcp: { sport: 40000, dport: 443, flags: 'PA', payload: Buffer.alloc(64) } },
});
const est6 = frame({
  src: 'fd00:200::1:2',
  dst: 'fd00:200::2:2',
  l4: { tcp: { sport: 40000, dport: 443, flags: 'PA', payload: Buffer.alloc(64) } },
});

async function meanNs(prog: BpfProgram, data: Buffer, repeat = REPEAT): Promise<number> {
  return (await prog.testRun({ data, repeat, ctx: Buffer.alloc(192) })).durationNs;
}

/** Median of single runs, each on a SYN of a tuple never seen before. */
async function newConnNs(prog: BpfProgram, round: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < NEW_PER_ROUND; i++) {
    const n = round * NEW_PER_ROUND + i;
    const syn = frame({
      src: `10.201.${(n >> 8) & 0xff}.${n & 0xff}`,
      dst: '10.200.2.2',
      l4: { tcp: { sport: 1024 + (n % 50000), dport: 80, flags: 'S' } },
    });
    xs.push((await prog.testRun({ data: syn, repeat: 1, ctx: Buffer.alloc(192) })).durationNs);
  }
  return median(xs);
}

async function establish(dp: Datapath, fwd: Buffer, v6: boolean): Promise<void> {
  const [c, s] = v6 ? ['fd00:200::1:2', 'fd00:200::2:2'] : ['10.200.1.2', '10.200.2.2'];
  const run = (data: Buffer) => dp.ingress.testRun({ data, ctx: Buffer.alloc(192) });
  await run(frame({ src: c, dst: s, l4: { tcp: { sport: 40000, dport: 443, flags: 'S' } } }));
  await run(frame({ src: s, dst: c, l4: { tcp: { sport: 443, dport: 40000, flags: 'SA' } } }));
  await run(fwd);
}

async function main(): Promise<void> {
  ensureBpffs();
  const dp = await Datapath.load({ sizes: { ctTcp: 65536, ctAny: 4096 }, config: NO_FAST_PATH });
  const base = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'parse_lookup.bpf.o')).load();
  const baseline = base.program('parse_lookup');
  try {
    await establish(dp, est4, false);
    await establish(dp, est6, true);
    await baseline.testRun({ data: est4 });
    const r = {
      base4: [] as number[],
      base6: [] as number[],
      est4: [] as number[],
      est6: [] as number[],
      baseNew: [] as number[],
      ctNew: [] as number[],
    };
    for (let round = 0; round < ROUNDS; round++) {
      r.base4.push(await meanNs(baseline, est4));
      r.est4.push(await meanNs(dp.ingress, est4));
      r.base6.push(await meanNs(baseline, est6));
      r.est6.push(await meanNs(dp.ingress, est6));
      r.baseNew.push(await newConnNs(baseline, round));
      r.ctNew.push(await newConnNs(dp.ingress, round));
    }
    const b4 = series('baseline_v4_ns', r.base4);
    const e4 = series('established_v4_ns', r.est4);
    const b6 = series('baseline_v6_ns', r.base6);
    const e6 = series('established_v6_ns', r.est6);
    const bn = series('baseline_single_run_ns', r.baseNew);
    const cn = series('new_connection_single_run_ns', r.ctNew);
    const estRatio = e4 / b4;
    const newRatio = cn / bn;
    const v6Ratio = e6 / e4;
    figure('established_over_baseline', estRatio);
    figure('established_v6_over_baseline_v6', e6 / b6);
    figure('new_over_baseline', newRatio);
    figure('v6_over_v4', v6Ratio);
    figure(
      'summary',
      `established ${fmt(estRatio)}x baseline (<= 2.5: ${verdict(estRatio <= 2.5)}); new connection ${fmt(newRatio)}x (<= 10: ${verdict(newRatio <= 10)}); ` +
        `IPv6 ${fmt(v6Ratio)}x IPv4 (<= 1.3: ${verdict(v6Ratio <= 1.3)})`,
    );
  } finally {
    dp.close();
    base.close();
  }
}

main().catch((e) => {
  console.error(`ct-packet benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
