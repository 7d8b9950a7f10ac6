// Benchmark `lb`: the load balancer's per-packet cost through
// BPF_PROG_TEST_RUN, against the same packets of a connection that is only
// tracked, in the same run; and the control plane: programming many services
// from nothing, and one backend change in a large Maglev service.
//
// Packets run one at a time (repeat 1): the datapath rewrites a
// load-balanced packet in place, so a repeated run would measure the
// rewritten packet. Each figure is the median of the in-kernel durations.
import { Datapath } from '../../src/datapath/datapath';
import { frame } from '../../lab/packetCraft';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { LB_MAPS } from '../../src/datapath/tables';
import { LbMaps, LbWriter } from '../../src/lb/lbWriter';
import { LbService, LB_SERVICE_DEFAULTS } from '../../src/lb/lbService';
import { parseMaglevHashSeed, DEFAULT_MAGLEV_HASH_SEED } from '../../src/lb/maglev';
import { NO_FAST_PATH, figure, fmt, median, nowNs, series, verdict } from './common';

const ROUNDS = 5;
const PER_ROUND = 2000;
const C = '10.200.1.2';
const S = '10.200.2.2';
const VIP = '10.200.100.10';
const BACKENDS = ['10.200.10.2', '10.200.11.2', '10.200.12.2'];

const tcp = (src: string, dst: string, sport: number, dport: number, flags: string) =>
  frame({ src, dst, l4: { tcp: { sport, dport, flags, payload: flags === 'PA' ? Buffer.alloc(64) : undefined } } });

function service(id: number, vip: string, port: number, backends: string[]): LbService {
  return {
    id,
    frontend: { addr: vip, port, proto: 'tcp' },
    ...LB_SERVICE_DEFAULTS,
    sourceRanges: [],
    backends: backends.map((addr) => ({ addr, port, state: 'active', weight: 1, local: false })),
  };
}

function lbMaps(dp: Datapath): LbMaps {
  return Object.fromEntries(LB_MAPS.map((m) => [m, dp.maps[m]])) as unknown as LbMaps;
}

async function single(dp: Datapath, data: Buffer): Promise<number> {
  return (await dp.ingress.testRun({ data, repeat: 1, ctx: Buffer.alloc(192) })).durationNs;
}

/** Median in-kernel ns of `n` runs of packets made by `make(i)`. */
async function medianOf(dp: Datapath, n: number, make: (i: number) => Buffer): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await single(dp, make(i)));
  return median(xs);
}

/** The backend a load-balanced connection went to, from its first packet's rewritten destination. */
async function backendOf(dp: Datapath, syn: Buffer): Promise<string> {
  const r = await dp.ingress.testRun({ data: syn, ctx: Buffer.alloc(192) });
  const d = r.data!;
  return `${d[30]}.${d[31]}.${d[32]}.${d[33]}`;
}

async function perPacket(): Promise<Record<string, number>> {
  const dp = await Datapath.load({ sizes: { ctTcp: 1 << 18, ctAny: 4096 }, config: NO_FAST_PATH });
  try {
    const writer = await LbWriter.restore(lbMaps(dp), {
      hashSeed: parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur,
    });
    await writer.apply([service(1, VIP, 80, BACKENDS)]);
    // One connection of each kind, established.
    await single(dp, tcp(C, S, 40000, 80, 'S'));
    await single(dp, tcp(S, C, 80, 40000, 'SA'));
    await single(dp, tcp(C, S, 40000, 80, 'A'));
    const be = await backendOf(dp, tcp(C, VIP, 40001, 80, 'S'));
    await single(dp, tcp(be, C, 80, 40001, 'SA'));
    await single(dp, tcp(C, VIP, 40001, 80, 'A'));
    const r: Record<string, number[]> = { ctFwd: [], lbFwd: [], ctRpl: [], lbRpl: [], ctNew: [], lbNew: [] };
    for (let round = 0; round < ROUNDS; round++) {
      r.ctFwd.push(await medianOf(dp, PER_ROUND, () => tcp(C, S, 40000, 80, 'PA')));
      r.lbFwd.push(await medianOf(dp, PER_ROUND, () => tcp(C, VIP, 40001, 80, 'PA')));
      r.ctRpl.push(await medianOf(dp, PER_ROUND, () => tcp(S, C, 80, 40000, 'PA')));
      r.lbRpl.push(await medianOf(dp, PER_ROUND, () => tcp(be, C, 80, 40001, 'PA')));
      // New connections: a tuple never seen before each time.
      const src = (i: number) => `10.201.${round * 8 + (i >> 8)}.${i & 0xff}`;
      r.ctNew.push(await medianOf(dp, PER_ROUND, (i) => tcp(src(i), S, 1024 + i, 80, 'S')));
      r.lbNew.push(await medianOf(dp, PER_ROUND, (i) => tcp(src(i), VIP, 1024 + i, 80, 'S')));
    }
    const out: Record<string, number> = {};
    for (const [k, xs] of Object.entries(r)) out[k] = series(`${k}_ns`, xs);
    return out;
  } finally {
    dp.close();
  }
}

async function controlPlane(): Promise<{ manyMs: number; changeMs: number; services: number }> {
  const services = 10_000;
  const dp = await Datapath.load({
    sizes: { ctTcp: 4096, ctAny: 4096, lb: 1 << 17, lbMaglevSlots: 1 << 24 },
  });
  try {
    const writer = await LbWriter.restore(lbMaps(dp), {
      hashSeed: parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur,
    });
    const many: LbService[] = [];
    for (let i = 0; i < services; i++) {
      const vip = `10.${96 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`;
      const backends = Array.from({ length: 10 }, (_, j) => {
        const k = i * 10 + j;
        return `10.${128 + (k >> 16)}.${(k >> 8) & 0xff}.${k & 0xff}`;
      });
      many.push(service(i + 1, vip, 80, backends));
    }
    const t0 = nowNs();
    await writer.apply(many);
    const manyMs = (nowNs() - t0) / 1e6;
    return { manyMs, changeMs: await oneChange(), services };
  } finally {
    dp.close();
  }
}

/** One large service (1000 backends, M = 65521) in a datapath of its own, then one backend removed: the median of 5. */
async function oneChange(): Promise<number> {
  const dp = await Datapath.load({ sizes: { ctTcp: 4096, ctAny: 4096 } });
  try {
    const big = Array.from({ length: 1000 }, (_, j) => `10.250.${j >> 8}.${j & 0xff}`);
    const w = await LbWriter.restore(lbMaps(dp), {
      hashSeed: parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur,
      maglevTableSize: 65521,
    });
    const xs: number[] = [];
    for (let round = 0; round < 5; round++) {
      await w.apply([service(1, '10.99.0.1', 80, big)]);
      const t0 = nowNs();
      await w.apply([
        service(
          1,
          '10.99.0.1',
          80,
          big.filter((_, j) => j !== round),
        ),
      ]);
      xs.push((nowNs() - t0) / 1e6);
    }
    return median(xs);
  } finally {
    dp.close();
  }
}

async function main(): Promise<void> {
  ensureBpffs();
  const p = await perPacket();
  const fwd = p.lbFwd / p.ctFwd;
  const rpl = p.lbRpl / p.ctRpl;
  const est = (p.lbFwd + p.lbRpl) / (p.ctFwd + p.ctRpl);
  const nw = p.lbNew / p.ctNew;
  figure('established_request_over_tracked', fwd);
  figure('established_reply_over_tracked', rpl);
  figure('established_over_tracked', est);
  figure('new_over_tracked', nw);
  const rssBefore = process.memoryUsage().rss;
  const cp = await controlPlane();
  figure('services_programmed', cp.services);
  figure('program_10k_services_x10_backends_ms', cp.manyMs);
  figure('one_backend_change_1000_backends_m65521_ms', cp.changeMs);
  figure('agent_rss_mb', Math.max(rssBefore, process.memoryUsage().rss) / 2 ** 20);
  figure(
    'summary',
    `established ${fmt(est)}x tracked-only (request ${fmt(fwd)}x, reply ${fmt(rpl)}x; <= 1.25: ${verdict(est <= 1.25)}); ` +
      `new ${fmt(nw)}x (<= 1.5: ${verdict(nw <= 1.5)}); 10k services in ${fmt(cp.manyMs / 1000)} s (<= 5: ${verdict(cp.manyMs <= 5000)}); ` +
      `one change of a 1000-backend service ${fmt(cp.changeMs)} ms (<= 30: ${verdict(cp.changeMs <= 30)})`,
  );
}

main().catch((e) => {
  console.error(`lb benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
