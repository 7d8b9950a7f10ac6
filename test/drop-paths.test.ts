// Every drop goes through one counted path: each way the datapath drops a
// packet, run with BPF_PROG_TEST_RUN, raises exactly one named drop reason by
// one, and a packet that passes raises none.
import { ExecutionContext } from 'ava';
import { BpfObject } from 'libbpf-ts';
import * as path from 'node:path';
import { privTest } from './helpers/privilege';
import { ROOT } from './helpers/paths';
import { runPacket } from './helpers/datapath';
import { Datapath } from '../src/datapath/datapath';
import { ReasonCount, readMetrics } from '../src/metrics/reasons';
import { reasonKind } from '../src/metrics/reasonNames';
import { frame } from '../lab/packetCraft';
import { StructView } from '../src/bpf/layouts';

const S = '10.200.2.2';
const NAT4 = '10.200.2.1';
const udp = (src: string, sport: number) => frame({ src, dst: S, l4: { udp: { sport, dport: 53 } } });

/** The drop reasons that changed between two readings, with by how much. */
function dropsRisen(before: ReasonCount[], after: ReasonCount[]): Record<string, number> {
  const total = (rows: ReasonCount[], reason: string) =>
    rows.filter((r) => r.reason === reason).reduce((s, r) => s + r.count, 0);
  const out: Record<string, number> = {};
  for (const reason of new Set(after.map((r) => r.reason))) {
    if (reasonKind(reason) !== 'drop') continue;
    const d = total(after, reason) - total(before, reason);
    if (d) out[reason] = d;
  }
  return out;
}

/** Runs `last` after `setup` and checks that it was dropped, under exactly `reason`, counted once. */
async function expectDrop(
  t: ExecutionContext,
  dp: Datapath,
  reason: string,
  setup: () => Promise<void>,
  last: () => Promise<{ verdict: number }>,
): Promise<void> {
  await setup();
  const before = dp.metrics();
  const r = await last();
  t.is(r.verdict, 2, `${reason}: dropped`);
  t.deepEqual(dropsRisen(before, dp.metrics()), { [reason]: 1 }, `${reason}: exactly this reason rose by one`);
}

async function withDatapath(
  opts: Parameters<typeof Datapath.load>[0],
  fn: (dp: Datapath) => Promise<void>,
): Promise<void> {
  const dp = await Datapath.load(opts);
  try {
    dp.setDevice(1, 0, { snat4: NAT4 });
    await fn(dp);
  } finally {
    dp.close();
  }
}

/** Fills the non-TCP table with answered (assured, so not evictable) flows. */
async function fillAssured(dp: Datapath, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = `10.200.1.${i + 1}`;
    await runPacket(dp, udp(c, 7000));
    await runPacket(dp, frame({ src: S, dst: c, l4: { udp: { sport: 53, dport: 7000 } } }));
  }
}

privTest('each drop path of the datapath counts exactly one named reason, once', async (t) => {
  const egress = { hook: 'egress' as const };
  await withDatapath({ sizes: { ctTcp: 64, ctAny: 64 }, config: { dropInvalid: true } }, async (dp) => {
    const synFin = frame({ src: '10.200.1.9', dst: S, l4: { tcp: { sport: 1000, dport: 80, flags: 'SF' } } });
    await expectDrop(
      t,
      dp,
      'DROP_INVALID',
      async () => undefined,
      () => runPacket(dp, synFin),
    );
  });
  await withDatapath({ sizes: { ctTcp: 64, ctAny: 64 } }, async (dp) => {
    await expectDrop(
      t,
      dp,
      'DROP_CT_TABLE_FULL',
      () => fillAssured(dp, 64),
      () => runPacket(dp, udp('10.200.3.3', 7000)),
    );
  });
  await withDatapath({ sizes: { ctTcp: 64, ctAny: 64 }, config: { ctFullPass: true } }, async (dp) => {
    await expectDrop(
      t,
      dp,
      'DROP_NAT_NO_CT',
      () => fillAssured(dp, 64),
      () => runPacket(dp, udp('10.200.3.3', 7000), egress),
    );
  });
  // One port to hand out, taken by the first source: the second has none.
  await withDatapath({ config: { natPortMin: 40000, natPortMax: 40000, natRangeStrict: true } }, async (dp) => {
    await expectDrop(
      t,
      dp,
      'DROP_NAT_PORT_EXHAUSTED',
      async () => {
        t.is((await runPacket(dp, udp('10.200.1.1', 5000), egress)).verdict, 0);
      },
      () => runPacket(dp, udp('10.200.1.2', 5000), egress),
    );
  });
  // Room for one mapping in the NAT table.
  await withDatapath({ sizes: { nat: 1 } }, async (dp) => {
    await expectDrop(
      t,
      dp,
      'DROP_NAT_TABLE_FULL',
      async () => {
        t.is((await runPacket(dp, udp('10.200.1.1', 5000), egress)).verdict, 0);
      },
      () => runPacket(dp, udp('10.200.1.2', 5001), egress),
    );
  });
  // And a packet that passes counts no drop.
  await withDatapath({}, async (dp) => {
    const before = dp.metrics();
    t.is((await runPacket(dp, udp('10.200.1.1', 5000), egress)).verdict, 0);
    t.deepEqual(dropsRisen(before, dp.metrics()), {}, 'a packet that passes is counted as no drop');
  });
});

privTest('a failed checksum update and a failed write are DROP_CSUM and DROP_WRITE_ERROR', async (t) => {
  const obj = BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'drop_rewrite.bpf.o'));
  try {
    await obj.load();
    const prog = obj.program('drop_rewrite');
    const metrics = obj.map('tsct_metrics');
    try {
      const tcp = frame({ src: '10.200.1.1', dst: S, l4: { tcp: { sport: 5000, dport: 80, flags: 'S' } } });
      for (const [mark, reason] of [
        [1, 'DROP_CSUM'],
        [2, 'DROP_WRITE_ERROR'],
      ] as const) {
        const ctx = StructView.alloc('__sk_buff').set('mark', mark);
        const before = readMetrics(metrics);
        const r = await prog.testRun({ data: tcp, ctx: ctx.buf });
        t.is(r.retval, 2, `${reason}: dropped`);
        t.deepEqual(dropsRisen(before, readMetrics(metrics)), { [reason]: 1 }, `${reason}: counted once`);
      }
    } finally {
      prog.close();
      metrics.close();
    }
  } finally {
    obj.close();
  }
});
