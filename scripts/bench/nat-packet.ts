// Benchmark `nat-packet`: the per-packet cost of an established translated
// (masqueraded) TCP flow against an established untranslated one, and of a
// new translated connection with half of the port range in use, in the same run.
// Translation rewrites the packet, so BPF_PROG_TEST_RUN's in-kernel repeat
// (which runs again on the rewritten packet) cannot be used: each figure is the
// median of the kernel-measured durations of many single runs, for both sides.
import { Datapath } from '../../src/datapath/datapath';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { frame } from '../../lab/packetCraft';
import { StructView } from '../../src/bpf/layouts';
import { parseAddr } from '../../src/net/addr';
import { NO_FAST_PATH, figure, median, series, verdict, fmt } from './common';

const ROUNDS = 5;
const RUNS = 3000;
const NEW_PER_ROUND = 200;
const RANGE = { min: 41000, max: 41999 };
const S = '10.200.2.2';
const NAT = '10.200.2.1';

const data = frame({
  src: '10.200.1.2',
  dst: S,
  l4: { tcp: { sport: 40000, dport: 443, flags: 'PA', payload: Buffer.alloc(64) } },
});

async function single(dp: Datapath, pkt: Buffer): Promise<number> {
  return (await dp.egress.testRun({ data: pkt, ctx: Buffer.alloc(192) })).durationNs;
}

async function establish(dp: Datapath): Promise<void> {
  const run = (p: Buffer, egress: boolean) =>
    (egress ? dp.egress : dp.ingress).testRun({ data: p, ctx: Buffer.alloc(192) });
  await run(frame({ src: '10.200.1.2', dst: S, l4: { tcp: { sport: 40000, dport: 443, flags: 'S' } } }), true);
  await run(frame({ src: S, dst: NAT, l4: { tcp: { sport: 443, dport: 40000, flags: 'SA' } } }), false);
  await run(frame({ src: S, dst: '10.200.1.2', l4: { tcp: { sport: 443, dport: 40000, flags: 'SA' } } }), false);
  await run(data, true);
}

/** Takes every other port of the range for connections to S:80, as other clients would. */
async function occupyHalf(dp: Datapath): Promise<void> {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (let port = RANGE.min; port <= RANGE.max; port += 2) {
    const k = StructView.alloc('nat4_key');
    parseAddr(S).copy(k.bytes('saddr'));
    parseAddr(NAT).copy(k.bytes('daddr'));
    k.bytes('sport').writeUInt16BE(80);
    k.bytes('dport').writeUInt16BE(port);
    k.set('proto', 6).set('dir', 1);
    const v = StructView.alloc('nat_entry').set('needs_ct', 1);
    parseAddr('10.200.9.9').copy(v.bytes('to_addr'));
    keys.push(k.buf);
    values.push(v.buf);
  }
  await dp.maps.tsct_snat_v4_external.updateBatch(keys, values);
}

async function clear(dp: Datapath): Promise<void> {
  for (const m of [dp.maps.tsct_snat_v4_external, dp.maps.tsct_ct4_global]) for (const k of [...m.keys()]) m.delete(k);
}

async function main(): Promise<void> {
  ensureBpffs();
  const config = { ...NO_FAST_PATH, natPortMin: RANGE.min, natPortMax: RANGE.max, natRangeStrict: true };
  const plain = await Datapath.load({ sizes: { ctTcp: 65536, ctAny: 1024, nat: 65536 }, config });
  const nat = await Datapath.load({ sizes: { ctTcp: 65536, ctAny: 1024, nat: 65536 }, config });
  plain.setDevice(1, 0);
  nat.setDevice(1, 0, { snat4: NAT });
  try {
    const r = { plain: [] as number[], nat: [] as number[], plainNew: [] as number[], natNew: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      await establish(plain);
      await establish(nat);
      const p: number[] = [];
      const n: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        p.push(await single(plain, data));
        n.push(await single(nat, data));
      }
      r.plain.push(median(p));
      r.nat.push(median(n));

      await clear(nat);
      await occupyHalf(nat);
      const pn: number[] = [];
      const nn: number[] = [];
      for (let i = 0; i < NEW_PER_ROUND; i++) {
        const syn = frame({
          src: `10.201.${round}.${i}`,
          dst: S,
          l4: { tcp: { sport: 50000, dport: 80, flags: 'S' } },
        });
        pn.push(await single(plain, syn));
        nn.push(await single(nat, syn));
      }
      r.plainNew.push(median(pn));
      r.natNew.push(median(nn));
      await clear(plain);
      await clear(nat);
    }
    const pe = series('established_untranslated_ns', r.plain);
    const ne = series('established_translated_ns', r.nat);
    const pn = series('new_untranslated_ns', r.plainNew);
    const nn = series('new_translated_half_range_used_ns', r.natNew);
    figure('established_translated_over_untranslated', ne / pe);
    figure('new_translated_over_untranslated', nn / pn);
    figure(
      'summary',
      `established translated flow ${fmt(ne / pe)}x untranslated (<= 1.5: ${verdict(ne / pe <= 1.5)}); new translated connection with half the range in use ${fmt(nn, 0)} ns, ${fmt(nn / pn)}x a new untranslated one`,
    );
  } finally {
    plain.close();
    nat.close();
  }
}

main().catch((e) => {
  console.error(`nat-packet benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
