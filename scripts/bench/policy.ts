// Benchmark `policy`: the stateful firewall's cost through BPF_PROG_TEST_RUN
// on the ingress program (the hook the FIB of this namespace gives a test-run
// packet judges it; it is printed), against a datapath without a rule set
// loaded beside it, in the same run, rounds interleaved:
//   - a new connection: the first SYN of a tuple never seen before, classified
//     and committed. Single runs (repeat 1: a second run of the same SYN would
//     meet the committed entry), the source port differing per packet; a
//     sample is SAMPLE_NEW such SYNs, the connection table emptied between
//     samples; its figure is the mean of their run times.
//   - a denied SYN: dropped by the rules, it is never committed, so every one
//     of a repeated run is new: the classifier with repeat REPEAT.
//   - an established packet: the verdict is cached on the entry (the cache
//     path), repeat REPEAT.
//   - the swap of 10,000 rules through PolicyWriter.apply, and compilePolicy alone.
// Rule sets of N rules, each allowing one /32 source to one TCP port:
//   est-first   `+est accept` first, the N allow rules, policy drop;
//   catch-all   keep-established (its +est rule 0), the N rules, a final catch-all drop;
//   new-only    the N rules with ct-state NEW and no +est rule (where the ranges bound the
//               scan; its replies would be dropped, so only new connections are measured).
import { Datapath } from '../../src/datapath/datapath';
import { FW_MAPS } from '../../src/datapath/tables';
import { frame } from '../../lab/packetCraft';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { parseRulesFile } from '../../src/policy/rulesFile';
import { flatPolicyOf, FwMaps, PolicyWriter } from '../../src/policy/policyMaps';
import { compilePolicy } from '../../src/policy/compile';
import { FlatPolicy } from '../../src/policy/flatten';
import { NO_FAST_PATH, figure, fmt, nowNs, series, verdict } from './common';

const ROUNDS = 5;
const REPEAT = 200_000;
const SAMPLE_NEW = 10_000;
const SWAPS = 6;
const SMALL = 10;
const BIG = 10_000;
const SERVER = '10.200.2.2';
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

type Shape = 'est-first' | 'catch-all' | 'new-only';

/** Rule i: source 10.200.(100 + i / 256).(i % 256), TCP port 8000 + i % 1000. */
const srcOf = (i: number) => `10.200.${100 + (i >> 8)}.${i & 0xff}`;
const portOf = (i: number) => 8000 + (i % 1000);

/** `both`: the rules in a chain that input and forward jump to (the per-packet rounds); `input`: on input alone. */
type Hooks = 'both' | 'input';

function rulesText(shape: Shape, n: number, hooks: Hooks = 'both'): string {
  const rules: object[] = [];
  if (shape === 'est-first') rules.push({ 'ct-state': ['ESTABLISHED', 'RELATED'], action: 'accept' });
  for (let i = 0; i < n; i++) {
    const r: Record<string, unknown> = { src: `${srcOf(i)}/32`, protocol: 'tcp', dport: portOf(i), action: 'accept' };
    if (shape === 'new-only') r['ct-state'] = 'NEW';
    rules.push(r);
  }
  if (shape === 'catch-all') rules.push({ action: 'drop' });
  const policy = shape === 'catch-all' ? 'accept' : 'drop';
  if (hooks === 'input') {
    return JSON.stringify({ 'keep-established': shape === 'catch-all', hooks: { input: { policy, rules } } });
  }
  // A test-run packet meets input or forward depending on this namespace's FIB: the same chain on both.
  return JSON.stringify({
    'keep-established': shape === 'catch-all',
    hooks: {
      input: { policy, rules: [{ action: 'jump fw' }] },
      forward: { policy, rules: [{ action: 'jump fw' }] },
    },
    chains: { fw: rules },
  });
}

function flatOf(shape: Shape, n: number, hooks: Hooks = 'both'): FlatPolicy {
  return flatPolicyOf(parseRulesFile(rulesText(shape, n, hooks), 'rules.json'));
}

interface Fw {
  dp: Datapath;
  w: PolicyWriter;
  /** The entries the samples leave alone: the established connections measured. */
  keep: Set<string>;
}

async function load(): Promise<Fw> {
  const dp = await Datapath.load({ sizes: { ctTcp: 65536, ctAny: 4096 }, config: NO_FAST_PATH });
  const maps = Object.fromEntries(FW_MAPS.map((m) => [m, dp.maps[m]])) as unknown as FwMaps;
  return { dp, w: new PolicyWriter(maps, 10), keep: new Set() };
}

const ctx = () => Buffer.alloc(192);

async function run(fw: Fw, data: Buffer, repeat = 1): Promise<{ retval: number; durationNs: number }> {
  const r = await fw.dp.ingress.testRun({ data, repeat, ctx: ctx() });
  return { retval: r.retval, durationNs: r.durationNs };
}

function clearCt(fw: Fw): number {
  const m = fw.dp.maps.tsct_ct4_global;
  const keys = [...m.keys()].filter((k) => !fw.keep.has(k.toString('hex')));
  for (const k of keys) m.delete(k);
  return keys.length;
}

const syn = (i: number, sport: number) =>
  frame({ src: srcOf(i), dst: SERVER, l4: { tcp: { sport, dport: portOf(i), flags: 'S', seq: 1000 } } });

/**
 * Mean run time of SAMPLE_NEW SYNs of new tuples: packet k matches rule pick(k) of n, source port
 * 1024 + k. Every one must be accepted and committed (checked), then the table is emptied.
 */
async function newSample(fw: Fw, pick: (k: number) => number, pkts: Buffer[]): Promise<number> {
  let total = 0;
  let bad = 0;
  for (let k = 0; k < SAMPLE_NEW; k++) {
    const r = await run(fw, pkts[k]);
    if (r.retval !== TC_ACT_OK) bad++;
    total += r.durationNs;
  }
  const committed = clearCt(fw);
  if (bad || committed !== SAMPLE_NEW) {
    throw new Error(`new connections: ${bad} not accepted, ${committed} of ${SAMPLE_NEW} committed (rule ${pick(0)})`);
  }
  return total / SAMPLE_NEW;
}

function synsOf(pick: (k: number) => number): Buffer[] {
  return Array.from({ length: SAMPLE_NEW }, (_, k) => syn(pick(k), 1024 + k));
}

/** Opens connection (rule i, sport) with its handshake; returns its next data packet, checked to pass. */
async function establish(fw: Fw, i: number, sport: number): Promise<Buffer> {
  const c = srcOf(i);
  const p = portOf(i);
  await run(fw, syn(i, sport));
  const sa = await run(
    fw,
    frame({ src: SERVER, dst: c, l4: { tcp: { sport: p, dport: sport, flags: 'SA', seq: 5000 } } }),
  );
  const pa = frame({
    src: c,
    dst: SERVER,
    l4: { tcp: { sport, dport: p, flags: 'PA', seq: 1001, payload: Buffer.alloc(64) } },
  });
  const a = await run(fw, pa);
  if (sa.retval !== TC_ACT_OK || a.retval !== TC_ACT_OK) throw new Error('the established connection does not pass');
  for (const k of fw.dp.maps.tsct_ct4_global.keys()) fw.keep.add(k.toString('hex'));
  return pa;
}

/** Which hook judged: the hook whose default-policy counter a denied SYN moved. */
async function judgingHook(fw: Fw): Promise<string> {
  const before = fw.w.counters(0).policy;
  const r = await run(fw, syn(BIG + 5000, 1024));
  const after = fw.w.counters(0).policy;
  if (r.retval !== TC_ACT_SHOT) return 'unknown (the probe was not dropped)';
  const moved = (Object.keys(after) as Array<keyof typeof after>).filter((h) => after[h].packets !== before[h].packets);
  return moved.join(',') || 'unknown';
}

/** Medians of SWAPS applies of 10,000 rules, alternating est-first and catch-all, in milliseconds. */
async function swapTimes(
  fw: Fw,
  hooks: Hooks,
): Promise<{ apply: number; live: number; compile: number; parse: number }> {
  const shapes: Shape[] = ['est-first', 'catch-all'];
  const flats = shapes.map((sh) => flatOf(sh, BIG, hooks));
  const parse: number[] = [];
  const compile: number[] = [];
  const apply: number[] = [];
  const live: number[] = [];
  for (let i = 0; i < SWAPS; i++) {
    let t = nowNs();
    flatOf(shapes[i % 2], BIG, hooks);
    parse.push((nowNs() - t) / 1e6);
    t = nowNs();
    compilePolicy(flats[i % 2], { generation: 1, ifindexOf: () => null });
    compile.push((nowNs() - t) / 1e6);
    t = nowNs();
    // apply() runs synchronously up to the control write (the swap), then awaits the grace.
    const done = fw.w.apply(flats[i % 2], () => null);
    live.push((nowNs() - t) / 1e6);
    await done;
    apply.push((nowNs() - t) / 1e6);
  }
  const r = {
    parse: series(`swap_${hooks}_parse_flatten_ms`, parse),
    compile: series(`swap_${hooks}_compile_ms`, compile),
    live: series(`swap_${hooks}_apply_until_live_ms`, live),
    apply: series(`swap_${hooks}_apply_ms`, apply),
  };
  figure(`swap_${hooks}_write_ms`, r.live - r.compile);
  figure(`swap_${hooks}_after_live_ms`, r.apply - r.live);
  return r;
}

async function main(): Promise<void> {
  ensureBpffs();
  const t0 = nowNs();
  const none = await load();
  const small = await load();
  const big = await load();
  // Active with no hook to judge: the stage runs and caches the verdict but counts nothing.
  const empty = await load();
  await empty.w.apply(flatPolicyOf(parseRulesFile('{}', 'rules.json')), () => null);
  figure('load_s', (nowNs() - t0) / 4e9);
  const results: Record<string, number> = {};
  let hook = '';
  try {
    // Every SYN of a sample picks a rule spread over the set (k * 7919 mod n: all positions alike),
    // or the last rule (the longest scan for a matching packet).
    const spread = (n: number) => (k: number) => (k * 7919) % n;
    const last = (n: number) => () => n - 1;
    const pkts = {
      small: synsOf(spread(SMALL)),
      big: synsOf(spread(BIG)),
      bigLast: synsOf(last(BIG)),
    };
    const deniedSyn = syn(BIG + 5000, 1024); // a source no rule allows
    let sport = 30000;
    for (const shape of ['est-first', 'catch-all', 'new-only'] as Shape[]) {
      await small.w.apply(flatOf(shape, SMALL), () => null);
      await big.w.apply(flatOf(shape, BIG), () => null);
      if (!hook) hook = await judgingHook(small);
      const withEst = shape !== 'new-only';
      const est = withEst
        ? {
            none: await establish(none, 0, ++sport),
            empty: await establish(empty, 0, ++sport),
            small: await establish(small, 0, ++sport),
            big: await establish(big, 0, ++sport),
          }
        : null;
      for (const fw of [small, big]) {
        const r = await run(fw, deniedSyn);
        if (r.retval !== TC_ACT_SHOT) throw new Error(`${shape}: the SYN of an unknown source passed`);
      }
      const s: Record<string, number[]> = {};
      const push = (k: string, v: number) => (s[k] ??= []).push(v);
      for (let round = 0; round < ROUNDS; round++) {
        push('new_none', await newSample(none, spread(BIG), pkts.big));
        push('new_10', await newSample(small, spread(SMALL), pkts.small));
        push('new_10000', await newSample(big, spread(BIG), pkts.big));
        push('new_10000_last', await newSample(big, last(BIG), pkts.bigLast));
        push('denied_10', (await run(small, deniedSyn, REPEAT)).durationNs);
        push('denied_10000', (await run(big, deniedSyn, REPEAT)).durationNs);
        if (est) {
          push('est_none', (await run(none, est.none, REPEAT)).durationNs);
          push('est_empty_ruleset', (await run(empty, est.empty, REPEAT)).durationNs);
          push('est_10', (await run(small, est.small, REPEAT)).durationNs);
          push('est_10000', (await run(big, est.big, REPEAT)).durationNs);
        }
      }
      for (const [k, xs] of Object.entries(s)) results[`${shape}:${k}`] = series(`${shape}_${k}_ns`, xs);
      const r = (a: string, b: string) => results[`${shape}:${a}`] / results[`${shape}:${b}`];
      figure(`${shape}_new_10000_over_10`, r('new_10000', 'new_10'));
      figure(`${shape}_new_10000_last_over_10`, r('new_10000_last', 'new_10'));
      figure(`${shape}_new_10_over_none`, r('new_10', 'new_none'));
      figure(`${shape}_denied_10000_over_10`, r('denied_10000', 'denied_10'));
      if (est) {
        figure(`${shape}_est_empty_ruleset_over_none`, r('est_empty_ruleset', 'est_none'));
        figure(`${shape}_est_10_over_none`, r('est_10', 'est_none'));
        figure(`${shape}_est_10000_over_none`, r('est_10000', 'est_none'));
      }
    }
    figure('judging_hook', hook);

    // The swap: 10,000 rules through PolicyWriter.apply (compile, write beside the live generation,
    // swap, the writer's 10 ms grace, delete the old generation), alternating two rule sets; on input
    // alone (10,001 rules compiled) and as the chain of input and forward (20,002).
    const swap: Record<Hooks, { apply: number; live: number; compile: number; parse: number }> = {
      input: await swapTimes(big, 'input'),
      both: await swapTimes(big, 'both'),
    };
    figure('swap_hooks', 'input: the rules on input alone; both: the chain jumped to from input and forward');
    const sw = swap.input;
    const newRatio = Math.max(
      ...(['est-first', 'catch-all', 'new-only'] as Shape[]).map(
        (sh) => results[`${sh}:new_10000`] / results[`${sh}:new_10`],
      ),
    );
    const estRatio = Math.max(
      ...(['est-first', 'catch-all'] as Shape[]).flatMap((sh) => [
        results[`${sh}:est_10`] / results[`${sh}:est_none`],
        results[`${sh}:est_10000`] / results[`${sh}:est_none`],
      ]),
    );
    figure(
      'summary',
      `new connection 10,000 rules ${fmt(newRatio)}x 10 rules, worst shape (<= 2: ${verdict(newRatio <= 2)}); ` +
        `established ${fmt(estRatio)}x no rules, worst (<= 1.05: ${verdict(estRatio <= 1.05)}); ` +
        `swap of 10,000 rules on one hook ${fmt(sw.apply)} ms (live after ${fmt(sw.live)}, of which compile ${fmt(sw.compile)}; ` +
        `<= 1000: ${verdict(sw.apply <= 1000)}; the file's parse ${fmt(sw.parse)} more); on two hooks ${fmt(swap.both.apply)} ms`,
    );
  } finally {
    none.dp.close();
    small.dp.close();
    big.dp.close();
    empty.dp.close();
  }
}

main().catch((e) => {
  console.error(`policy benchmark could not measure: ${e instanceof Error ? e.stack : e}`);
  process.exit(1);
});
