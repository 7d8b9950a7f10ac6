// The classifier tables: classify(compilePolicy(...)) decides as the
// reference evaluator (tracePolicy) does, rule for rule, over random rule sets
// with jumps, returns, sets, excepts, port ranges, ct_state lists, devices and
// residual fields, over the example rules file and over an imported iptables
// dump; a new connection's lookup touches as many vector words with 10,000
// security-group rules as with 10; two generations live side by side; and
// what the tables cannot hold is refused in one line.
import test from 'ava';
import { IPTABLES_DUMP as DUMP } from '../helpers/policyFixtures';
import { UsageError } from '../../src/errors';
import { ClassifierMaps, loadClassifier } from '../../src/policy/classify';
import {
  CompiledPolicy,
  compiledSizes,
  compilePolicy,
  DEV_FIELD,
  Generation,
  MAX_RULES,
  PORT_FIELD,
  ADDR_FIELD,
} from '../../src/policy/compile';
import { IPTABLES_CT_STATES } from '../../src/policy/ctState';
import { FlatPolicy, flattenPolicy } from '../../src/policy/flatten';
import { importIptablesSave } from '../../src/policy/iptablesImport';
import {
  AddressMatch,
  Cidr,
  CommitSettings,
  CT_STATE_BITS,
  CtStateTerm,
  DeviceMatch,
  emptyRuleSet,
  Family,
  Hook,
  HOOKS,
  MaskedLabel,
  PolicyRule,
  PolicyRuleSet,
  PortMatch,
  RuleAction,
  RuleMatch,
} from '../../src/policy/policyRule';
import { PolicyPacket, tracePolicy } from '../../src/policy/policyTrace';
import { EXAMPLE_RULES_YAML, parseRulesFile } from '../../src/policy/rulesFile';
import { chance, pick, prng, Rand } from '../helpers/seededRandom';

const { trk, new: NEW, est, rel, rpl, inv, snat, dnat } = CT_STATE_BITS;

// ---- the world the tables are compiled for ----

const IFINDEX: Record<string, number> = { lo: 1, eth0: 2, eth1: 3, 'veth-a': 4, 'veth-b': 5, veth1: 6, veth3: 7 };
const ifindexOf = (name: string): number | null => IFINDEX[name] ?? null;
const DEVICES = Object.keys(IFINDEX);

function compile(flat: FlatPolicy, generation: Generation = 0): CompiledPolicy {
  return compilePolicy(flat, { generation, ifindexOf, devices: DEVICES });
}

// ---- decisions, reference and emulated, in one comparable shape ----

interface Decision {
  verdict: string;
  rule: number | string;
  rejectWith?: string;
  commit?: CommitSettings;
}

function normalCommit(c: CommitSettings | undefined): CommitSettings | undefined {
  if (!c) return undefined;
  const out: CommitSettings = {};
  if (c.mark) out.mark = { value: c.mark.value >>> 0, mask: c.mark.mask >>> 0 };
  if (c.label) out.label = { ...c.label };
  if (c.helper) out.helper = c.helper;
  return Object.keys(out).length === 0 ? undefined : out;
}

function referenceDecision(flat: FlatPolicy, hook: Hook, p: PolicyPacket): Decision {
  const r = tracePolicy(flat, hook, p);
  const d: Decision = { verdict: r.verdict, rule: typeof r.rule === 'string' ? r.rule : r.index! };
  if (r.rejectWith) d.rejectWith = r.rejectWith;
  const commit = normalCommit(r.commit);
  if (commit) d.commit = commit;
  return d;
}

function emulatedDecision(maps: ClassifierMaps, hook: Hook, p: PolicyPacket): Decision {
  const c = maps.classify(hook, p);
  const d: Decision = { verdict: c.verdict, rule: c.rule };
  if (c.rejectWith) d.rejectWith = c.rejectWith;
  const commit = normalCommit(c.commit);
  if (commit) d.commit = commit;
  return d;
}

const show = (x: unknown) => JSON.stringify(x, (_, v) => (typeof v === 'bigint' ? `${v}n` : v));

/** Compares every packet on its hook; returns how many were decided by a rule, by the policy, unjudged. */
function compareAll(
  t: { deepEqual: (a: unknown, b: unknown, msg?: string) => void; fail: (msg: string) => void },
  flat: FlatPolicy,
  maps: ClassifierMaps,
  cases: ReadonlyArray<[Hook, PolicyPacket]>,
  what: string,
): { byRule: number; byPolicy: number; unjudged: number; skipsTaken: number; ok: boolean } {
  const tally = { byRule: 0, byPolicy: 0, unjudged: 0, skipsTaken: 0, ok: true };
  for (const [hook, p] of cases) {
    const want = referenceDecision(flat, hook, p);
    const got = emulatedDecision(maps, hook, p);
    if (show(want) !== show(got)) {
      const steps = tracePolicy(flat, hook, p).steps.join('\n');
      t.fail(`${what}: ${hook} ${show(p)}\nreference ${show(want)}\nclassify  ${show(got)}\n${steps}`);
      tally.ok = false;
      return tally;
    }
    if (typeof got.rule === 'number') {
      tally.byRule++;
      const origin = tracePolicy(flat, hook, p).rule;
      const counted = maps.counterOrigin(maps.classify(hook, p).counter!);
      if (typeof origin !== 'string') {
        t.deepEqual([counted?.chain, counted?.index], [origin.chain, origin.index], `${what}: counter of ${show(p)}`);
      }
    } else if (got.rule === 'policy') tally.byPolicy++;
    else tally.unjudged++;
    if (tracePolicy(flat, hook, p).steps.some((s) => s.includes(': return: continue at'))) tally.skipsTaken++;
  }
  return tally;
}

// ---- random rule sets ----

const some = <T>(rand: Rand, items: readonly T[], max: number): T[] =>
  Array.from({ length: 1 + Math.floor(rand() * max) }, () => pick(rand, items));

const v4 = (addr: string, prefix: number): Cidr => ({ family: 4, addr, prefix });
const v6 = (addr: string, prefix: number): Cidr => ({ family: 6, addr, prefix });
const CIDRS: Record<Family, Cidr[]> = {
  4: [
    v4('10.0.0.0', 8),
    v4('10.1.0.0', 16),
    v4('10.1.2.0', 24),
    v4('10.1.2.3', 32),
    v4('10.1.2.0', 25),
    v4('192.168.0.0', 16),
    v4('0.0.0.0', 0),
  ],
  6: [v6('2001:db8::', 32), v6('2001:db8:1::', 48), v6('2001:db8:1::5', 128), v6('fd00::', 8), v6('::', 0)],
};
const ADDRS: Record<Family, string[]> = {
  4: ['10.1.2.3', '10.1.2.200', '10.1.3.3', '10.2.0.1', '192.168.1.1', '8.8.8.8', '10.1.2.4'],
  6: ['2001:db8:1::5', '2001:db8:1::6', '2001:db8:2::1', 'fd00::1', '2001:db9::1'],
};
const RANGES = [
  { from: 22, to: 22 },
  { from: 80, to: 443 },
  { from: 1024, to: 65535 },
  { from: 0, to: 1023 },
  { from: 8080, to: 8080 },
  { from: 443, to: 8443 },
];
const PORTS = [0, 22, 53, 80, 443, 1000, 1023, 1024, 8080, 8443, 9050, 40000, 65535];
const CT_TERMS: CtStateTerm[] = [
  ...Object.values(IPTABLES_CT_STATES),
  { set: trk | est | rpl, clear: 0 },
  { set: trk, clear: rpl },
  { set: trk | NEW, clear: 0 },
  { set: trk | dnat, clear: snat },
];
const LABELS: MaskedLabel[] = [
  { value: 1n, mask: 1n },
  { value: 0n, mask: 1n },
  { value: 1n << 64n, mask: 1n << 64n },
  { value: (5n << 96n) | 3n, mask: (0xfn << 96n) | 0xffn },
];
const PORT_PROTOS = [6, 17, 132];

function addressMatch(rand: Rand, f: Family): AddressMatch {
  const item = () => (chance(rand, 0.25) ? { set: pick(rand, ['nets', 'mixed']) } : { cidr: pick(rand, CIDRS[f]) });
  const anyOf = chance(rand, 0.25) ? [] : some(rand, [0, 1, 2], 2).map(item);
  const except = chance(rand, 0.4)
    ? some(rand, [0, 1], 2).map(() => (chance(rand, 0.1) ? { cidr: pick(rand, CIDRS[f === 4 ? 6 : 4]) } : item()))
    : [];
  return { anyOf, except };
}

function portMatch(rand: Rand): PortMatch {
  return {
    anyOf: some(rand, [0, 1, 2], 3).map(() => (chance(rand, 0.2) ? { set: 'ports' } : { range: pick(rand, RANGES) })),
  };
}

function deviceMatch(rand: Rand): DeviceMatch {
  return {
    anyOf: chance(rand, 0.3) ? [] : some(rand, ['eth0', 'eth+', 'veth+', 'lo', 'veth-a'], 2),
    except: chance(rand, 0.4) ? some(rand, ['lo', 'veth-b', 'eth1', 'veth+'], 2) : [],
  };
}

function randomMatch(rand: Rand): RuleMatch {
  const f: Family = chance(rand, 0.7) ? 4 : 6;
  const m: RuleMatch = {};
  if (chance(rand, 0.15)) m.family = f;
  if (chance(rand, 0.55)) m.proto = pick(rand, [6, 6, 17, 132, f === 4 ? 1 : 58, 47]);
  if (m.proto !== undefined && PORT_PROTOS.includes(m.proto)) {
    if (chance(rand, 0.5)) m.dport = portMatch(rand);
    if (chance(rand, 0.2)) m.sport = portMatch(rand);
  }
  if ((m.proto === 1 || m.proto === 58) && chance(rand, 0.4)) {
    m.icmpType = pick(rand, [0, 3, 8]);
    if (chance(rand, 0.4)) m.icmpCode = pick(rand, [0, 1]);
  }
  if (chance(rand, 0.35)) m.src = addressMatch(rand, f);
  if (chance(rand, 0.2)) m.dst = addressMatch(rand, f);
  if (chance(rand, 0.35)) m.ctState = { anyOf: chance(rand, 0.03) ? [] : some(rand, CT_TERMS, 3) };
  if (chance(rand, 0.15)) m.inDev = deviceMatch(rand);
  if (chance(rand, 0.1)) m.outDev = deviceMatch(rand);
  if (chance(rand, 0.1)) m.zone = pick(rand, [0, 1, 2]);
  if (chance(rand, 0.12))
    m.ctMark = pick(rand, [
      { value: 1, mask: 1 },
      { value: 2, mask: 3 },
      { value: 0, mask: 0xffffffff },
    ]);
  if (chance(rand, 0.08))
    m.packetMark = pick(rand, [
      { value: 0x10, mask: 0xf0 },
      { value: 0, mask: 1 },
    ]);
  if (chance(rand, 0.08)) m.ctLabel = pick(rand, LABELS);
  if (chance(rand, 0.06)) m.ctOrigSrc = addressMatch(rand, f);
  if (chance(rand, 0.06)) m.ctOrigDst = addressMatch(rand, f);
  if (chance(rand, 0.06)) m.ctOrigSport = portMatch(rand);
  if (chance(rand, 0.08)) m.ctOrigDport = portMatch(rand);
  return m;
}

function randomAction(rand: Rand, m: RuleMatch, callees: readonly string[]): RuleAction {
  const r = rand();
  if (r < 0.3 && callees.length > 0) return { kind: 'jump', chain: pick(rand, callees) };
  if (r < 0.5) return { kind: 'return' };
  if (r < 0.75) {
    const commit: CommitSettings = {};
    if (chance(rand, 0.2)) commit.mark = { value: 1, mask: 0xff };
    if (chance(rand, 0.15)) commit.label = { value: 1n << 70n, mask: 1n << 70n };
    if (m.proto === 6 && chance(rand, 0.3)) commit.helper = 'ftp';
    if (m.proto === 17 && chance(rand, 0.3)) commit.helper = 'tftp';
    return Object.keys(commit).length > 0 ? { kind: 'accept', commit } : { kind: 'accept' };
  }
  if (r < 0.9) return { kind: 'drop' };
  if (m.proto === 6 && chance(rand, 0.5)) return { kind: 'reject', with: 'tcp-reset' };
  return { kind: 'reject', with: pick(rand, ['icmp-admin-prohibited', 'icmp-port-unreachable'] as const) };
}

function randomRuleSet(seed: number): PolicyRuleSet {
  const rand = prng(seed);
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.keepEstablished = chance(rand, 0.3);
  for (const hook of HOOKS) rs.hooks[hook].policy = pick(rand, ['accept', 'drop'] as const);
  if (chance(rand, 0.3)) rs.hooks.forward.devices = ['veth+', 'eth0'];
  if (chance(rand, 0.2)) rs.hooks.input.devices = ['eth0', 'lo'];
  rs.sets.set('nets', { kind: 'address', name: 'nets', cidrs: [v4('10.1.3.0', 24), v4('8.8.8.0', 24)] });
  rs.sets.set('mixed', {
    kind: 'address',
    name: 'mixed',
    cidrs: [v4('10.1.2.0', 26), v6('2001:db8:1::', 64), v6('fd00::', 16)],
  });
  rs.sets.set('ports', {
    kind: 'port',
    name: 'ports',
    ports: [
      { from: 53, to: 53 },
      { from: 8080, to: 8080 },
      { from: 9000, to: 9100 },
    ],
  });
  const names = ['C0', 'C1', 'C2', 'C3', 'C4', 'C5'];
  const rules = (count: number, callees: readonly string[], chain: string): PolicyRule[] =>
    Array.from({ length: count }, (_, i) => {
      const match = randomMatch(rand);
      return { match, action: randomAction(rand, match, callees), source: { file: `${chain}.rules`, line: i + 1 } };
    });
  for (const hook of HOOKS) rs.chains.get(hook)!.rules = rules(4 + Math.floor(rand() * 10), names, hook);
  // Jumps go only to later chains: nesting up to six deep, no loop.
  names.forEach((name, i) =>
    rs.chains.set(name, { name, rules: rules(2 + Math.floor(rand() * 7), names.slice(i + 1), name) }),
  );
  return rs;
}

function randomPacket(rand: Rand, hook: Hook): PolicyPacket {
  const family: Family = chance(rand, 0.7) ? 4 : 6;
  const proto = pick(rand, [6, 6, 17, 132, family === 4 ? 1 : 58, 47]);
  const p: PolicyPacket = {
    family,
    src: pick(rand, ADDRS[family]),
    dst: pick(rand, ADDRS[family]),
    proto,
    ctState: chance(rand, 0.5)
      ? Math.floor(rand() * 256)
      : pick(rand, [trk | NEW, trk | est, trk | est | rpl, trk | rel, trk | rel | NEW, trk | inv, 0, trk | NEW | dnat]),
  };
  if (PORT_PROTOS.includes(proto) || (proto === 47 && chance(rand, 0.5))) {
    p.sport = pick(rand, PORTS);
    p.dport = pick(rand, PORTS);
  }
  if (proto === 1 || proto === 58) {
    p.icmpType = pick(rand, [0, 3, 8]);
    p.icmpCode = pick(rand, [0, 1]);
  }
  const dev = () => (chance(rand, 0.1) ? undefined : pick(rand, [...DEVICES, 'wg0']));
  if (hook !== 'output') p.inDev = dev();
  if (hook !== 'input') p.outDev = dev();
  if (chance(rand, 0.7)) p.zone = pick(rand, [0, 1, 2]);
  if (chance(rand, 0.7)) p.mark = pick(rand, [0, 1, 2, 3, 0xffffffff]);
  if (chance(rand, 0.6)) p.label = pick(rand, [0n, 1n, 1n << 64n, (5n << 96n) | 3n, (5n << 96n) | 2n]);
  if (chance(rand, 0.5)) p.packetMark = pick(rand, [0, 1, 0x10, 0x1f, 0x20]);
  if (p.ctState & trk && chance(rand, 0.85)) {
    p.origSrc = pick(rand, ADDRS[family]);
    p.origDst = pick(rand, ADDRS[family]);
    if (p.sport !== undefined && chance(rand, 0.9)) {
      p.origSport = pick(rand, PORTS);
      p.origDport = pick(rand, PORTS);
    }
  }
  return p;
}

// ---- equivalence ----

test('classify(compile) decides random packets as tracePolicy does, rule for rule', (t) => {
  let compared = 0;
  let refused = 0;
  const total = { byRule: 0, byPolicy: 0, unjudged: 0, skipsTaken: 0 };
  for (let seed = 1; seed <= 40; seed++) {
    const flat = flattenPolicy(randomRuleSet(seed));
    let compiled: CompiledPolicy;
    try {
      compiled = compile(flat, (seed % 2) as Generation);
    } catch (err) {
      // A jump ANDs its residual fields into every rule below it; now and then that is more than 8 checks.
      if (err instanceof UsageError && /checks the classifier does not index/.test(err.message)) {
        refused++;
        continue;
      }
      throw err;
    }
    const maps = loadClassifier(compiled, ifindexOf);
    const rand = prng(seed * 7919);
    const cases = Array.from({ length: 300 }, () => {
      const hook = pick(rand, HOOKS);
      return [hook, randomPacket(rand, hook)] as [Hook, PolicyPacket];
    });
    const tally = compareAll(t, flat, maps, cases, `seed ${seed}`);
    if (!tally.ok) return;
    compared += cases.length;
    total.byRule += tally.byRule;
    total.byPolicy += tally.byPolicy;
    total.unjudged += tally.unjudged;
    total.skipsTaken += tally.skipsTaken;
  }
  t.log(`compared ${compared} packets over ${40 - refused} rule sets (${refused} refused): ${show(total)}`);
  t.true(refused <= 4, `refused: ${refused}`);
  t.true(compared >= 10_000);
  // Worth something only if every way of deciding occurs often.
  t.true(total.byRule > 3000 && total.byPolicy > 1000 && total.unjudged > 200 && total.skipsTaken > 500, show(total));
});

/** A vector's bit for rule i, read as the datapath reads it. */
function bit(c: CompiledPolicy, vector: number, i: number): boolean {
  const v = c.vectors;
  const w = i >> 6;
  if (w < v.lo[vector] || w > v.hi[vector]) return false;
  return ((v.words[v.off[vector] + w - v.lo[vector]] >> BigInt(i & 63)) & 1n) === 1n;
}

test('a rule without a constraint on a field has the same bit in every vector of that field', (t) => {
  let checked = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const flat = flattenPolicy(randomRuleSet(seed));
    let c: CompiledPolicy;
    try {
      c = compile(flat);
    } catch {
      continue;
    }
    for (const hook of HOOKS) {
      const h = c.hooks.find((x) => x.hook === hook)!;
      const fields: Array<[string, number[], (m: RuleMatch) => boolean]> = [
        [
          'src',
          c.addr.filter((e) => e.hook === h.index && e.field === ADDR_FIELD.src).map((e) => e.vector),
          (m) => !!m.src || !!m.family,
        ],
        [
          'dst',
          c.addr.filter((e) => e.hook === h.index && e.field === ADDR_FIELD.dst).map((e) => e.vector),
          (m) => !!m.dst || !!m.family,
        ],
        [
          'dport',
          c.port.filter((e) => e.hook === h.index && e.field === PORT_FIELD.dport).map((e) => e.vector),
          (m) => m.proto !== undefined,
        ],
        [
          'sport',
          c.port.filter((e) => e.hook === h.index && e.field === PORT_FIELD.sport).map((e) => e.vector),
          (m) => m.proto !== undefined,
        ],
        [
          'in-dev',
          [
            h.inDevOther,
            ...c.devices.filter((e) => e.hook === h.index && e.field === DEV_FIELD.in).map((e) => e.vector),
          ],
          (m) => !!m.inDev,
        ],
        [
          'out-dev',
          [
            h.outDevOther,
            ...c.devices.filter((e) => e.hook === h.index && e.field === DEV_FIELD.out).map((e) => e.vector),
          ],
          (m) => !!m.outDev,
        ],
      ];
      flat.hooks[hook].rules.forEach((rule, i) => {
        // A rule no packet can match is in no vector at all; one that can is in some ct_state vector or none.
        const inSomeState = [...h.ctState].some((v) => bit(c, v, i));
        for (const [name, vectors, constrains] of fields) {
          if (vectors.length === 0 || rule.matches.some(constrains)) continue;
          const bits = new Set(vectors.map((v) => bit(c, v, i)));
          t.is(bits.size, 1, `${hook} #${i} ${name}`);
          if (inSomeState) t.true(bits.has(true), `${hook} #${i} ${name}`);
          checked++;
        }
      });
    }
  }
  t.true(checked > 1000, `checked ${checked}`);
});

test('the example rules file decides as tracePolicy does on every hook', (t) => {
  const flat = flattenPolicy(parseRulesFile(EXAMPLE_RULES_YAML, 'example.yaml'));
  const maps = loadClassifier(compile(flat), ifindexOf);
  const rand = prng(42);
  const cases = Array.from({ length: 1500 }, () => {
    const hook = pick(rand, HOOKS);
    const p = randomPacket(rand, hook);
    p.src = pick(rand, p.family === 4 ? EXAMPLE_V4 : EXAMPLE_V6);
    p.dst = pick(rand, p.family === 4 ? EXAMPLE_V4 : EXAMPLE_V6);
    if (p.origDst !== undefined) p.origDst = pick(rand, p.family === 4 ? EXAMPLE_V4 : EXAMPLE_V6);
    if (p.dport !== undefined && p.proto !== 47) p.dport = pick(rand, [21, 22, 53, 80, 443, 8000, 8080, 8099, 8100]);
    if (p.origDport !== undefined) p.origDport = pick(rand, [8080, 80]);
    return [hook, p] as [Hook, PolicyPacket];
  });
  const tally = compareAll(t, flat, maps, cases, 'example');
  t.log(`example: ${show(tally)}`);
  t.true(tally.byRule > 500 && tally.byPolicy > 50 && tally.unjudged > 50, show(tally));
});

const EXAMPLE_V4 = ['10.10.1.1', '203.0.113.7', '10.20.1.5', '10.20.2.9', '198.51.100.1', '192.0.2.10', '10.1.1.1'];
const EXAMPLE_V6 = ['2001:db8:a::1', '2001:db8:20:2::5', '2001:db8:b::1', 'fe80::1'];

test('an imported iptables dump decides as tracePolicy does', (t) => {
  const flat = flattenPolicy(importIptablesSave(DUMP, 'host.rules'));
  const maps = loadClassifier(compile(flat), ifindexOf);
  const v4s = [
    '127.0.0.1',
    '10.1.1.1',
    '10.10.3.4',
    '10.11.3.4',
    '203.0.113.9',
    '198.51.100.1',
    '10.20.1.1',
    '10.30.1.1',
    '192.0.2.10',
  ];
  const rand = prng(7);
  const cases = Array.from({ length: 1500 }, () => {
    const hook = pick(rand, ['input', 'input', 'forward', 'output'] as const);
    let p = randomPacket(rand, hook);
    // An IPv4 dump: IPv6 packets all go to the policy, so a few of them are enough.
    while (p.family === 6 && chance(rand, 0.8)) p = randomPacket(rand, hook);
    if (p.family === 6) return [hook, p] as [Hook, PolicyPacket];
    if (chance(rand, 0.5)) p.ctState = pick(rand, [trk | NEW, trk | est, trk | rel, trk | inv, trk | NEW | dnat]);
    p.src = pick(rand, v4s);
    p.dst = pick(rand, v4s);
    if (p.origDst !== undefined) p.origDst = pick(rand, v4s);
    if (p.dport !== undefined && p.proto !== 47) p.dport = pick(rand, [22, 25, 80, 443, 8000, 8050, 8099, 8100]);
    if (p.origDport !== undefined) p.origDport = pick(rand, [8080, 80]);
    // connmark 1 takes IN_WEB's return.
    p.mark = pick(rand, [0, 1, 1, 2]);
    return [hook, p] as [Hook, PolicyPacket];
  });
  const tally = compareAll(t, flat, maps, cases, 'iptables dump');
  t.log(`iptables dump: ${show(tally)}`);
  t.true(tally.byRule > 500 && tally.byPolicy > 100 && tally.skipsTaken > 10, show(tally));
});

// ---- cost: 10 rules against 10,000 ----

const SG_PORTS = [22, 80, 443, 3306, 5432, 6379, 8080, 9090];
const sgSource = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** n rules, rule i: tcp from one /32 to one port, accept; the rest dropped by the policy. */
function securityGroupShape(n: number, realistic = false): PolicyRuleSet {
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.hooks.input.policy = 'drop';
  const rules: PolicyRule[] = Array.from({ length: n }, (_, i) => ({
    match: {
      src: { anyOf: [{ cidr: v4(sgSource(i), 32) }], except: [] },
      proto: 6,
      dport: { anyOf: [{ range: { from: SG_PORTS[i % 8], to: SG_PORTS[i % 8] } }] },
    },
    action: { kind: 'accept' },
  }));
  if (realistic) {
    // As expandSecurityGroups writes them: established first, a catch-all drop last.
    rs.keepEstablished = true;
    rules.push({ match: {}, action: { kind: 'drop' } });
  }
  rs.chains.get('input')!.rules = rules;
  return rs;
}

type Kind = 'matches one rule' | 'unknown source' | "another rule's port" | 'unknown port';
const KINDS: Kind[] = ['matches one rule', 'unknown source', "another rule's port", 'unknown port'];

function sgPacket(rand: Rand, n: number, kind: Kind): PolicyPacket {
  const i = Math.floor(rand() * n);
  const p: PolicyPacket = {
    family: 4,
    src: sgSource(i),
    dst: '192.0.2.1',
    proto: 6,
    sport: 40000 + Math.floor(rand() * 1000),
    dport: SG_PORTS[i % 8],
    ctState: trk | NEW,
    inDev: 'eth0',
  };
  if (kind === 'unknown source') p.src = `172.16.${Math.floor(rand() * 256)}.1`;
  if (kind === "another rule's port") p.dport = SG_PORTS[(i + 1 + Math.floor(rand() * 7)) % 8];
  if (kind === 'unknown port') p.dport = 1000 + Math.floor(rand() * 1000);
  return p;
}

function measure(n: number, realistic: boolean, t: { fail: (m: string) => void }) {
  const flat = flattenPolicy(securityGroupShape(n, realistic));
  const started = process.hrtime.bigint();
  const compiled = compile(flat);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const maps = loadClassifier(compiled, ifindexOf);
  const rand = prng(n);
  const out = {} as Record<Kind, { max: number; mean: number; candidates: number; lookups: number }>;
  for (const kind of KINDS) {
    let max = 0;
    let sum = 0;
    let candidates = 0;
    let lookups = 0;
    for (let k = 0; k < 200; k++) {
      const p = sgPacket(rand, n, kind);
      const c = maps.classify('input', p);
      if (k < 25) {
        const want = referenceDecision(flat, 'input', p);
        if (show(want) !== show(emulatedDecision(maps, 'input', p))) t.fail(`${n} rules, ${kind}: ${show(p)}`);
      }
      max = Math.max(max, c.cost.words);
      sum += c.cost.words;
      candidates = Math.max(candidates, c.cost.candidates);
      lookups = Math.max(lookups, c.cost.lookups);
    }
    out[kind] = { max, mean: sum / 200, candidates, lookups };
  }
  return { out, compiled, ms };
}

test('10,000 security-group rules cost a new connection no more vector words than 10 do (within 2x)', (t) => {
  const small = measure(10, false, t);
  const large = measure(10_000, false, t);
  for (const kind of KINDS) {
    t.log(
      `${kind}: words touched max/mean ${small.out[kind].max}/${small.out[kind].mean} with 10 rules, ` +
        `${large.out[kind].max}/${large.out[kind].mean} with 10,000 (candidates ≤ ${large.out[kind].candidates}, ` +
        `lookups ≤ ${large.out[kind].lookups})`,
    );
    t.true(large.out[kind].max <= 2 * Math.max(small.out[kind].max, 0), `${kind}: ${show(large.out[kind])}`);
    t.true(large.out[kind].mean <= 2 * small.out[kind].mean || large.out[kind].mean === 0);
  }
  t.true(large.out['matches one rule'].max >= 1);
  const sizes = compiledSizes(large.compiled);
  const total = sizes.reduce((n, s) => n + s.bytes, 0);
  const vectorBytes = sizes.filter((s) => s.table.startsWith('vector')).reduce((n, s) => n + s.bytes, 0);
  t.log(
    `10,000 rules compiled in ${large.ms.toFixed(0)} ms: vectors ${large.compiled.vectors.count} ids, ` +
      `${large.compiled.vectors.words.length} words, ${vectorBytes} bytes; all tables ${total} bytes: ` +
      sizes.map((s) => `${s.table} ${s.entries}/${s.bytes}B`).join(', '),
  );
  // One word per /32 rule and a few full-width ones (ports, ct_state): far from 10,000 full vectors.
  t.true(large.compiled.vectors.words.length < 20_000, `${large.compiled.vectors.words.length} words`);
});

test('with keep-established and a catch-all drop, the [lo, hi] ranges no longer bound the scan (measured)', (t) => {
  // Rule 0 and rule n are in every source vector, so every range spans all words: recorded, not a goal met.
  const small = measure(10, true, t);
  const large = measure(10_000, true, t);
  for (const kind of KINDS) {
    t.log(
      `${kind}: words max/mean ${small.out[kind].max}/${small.out[kind].mean} (10), ${large.out[kind].max}/${large.out[kind].mean} (10,000)`,
    );
  }
  t.pass();
});

// ---- generations ----

test('a new generation is written beside the live one and swapped in with one write', (t) => {
  const flatA = flattenPolicy(randomRuleSet(3));
  const flatB = flattenPolicy(randomRuleSet(4));
  const a = compile(flatA, 0);
  const b = compile(flatB, 1);
  t.true([...a.addr, ...a.port, ...a.devices, ...a.residual].every((e) => e.generation === 0));
  t.true([...b.addr, ...b.port, ...b.devices, ...b.residual].every((e) => e.generation === 1));
  const maps = loadClassifier(a, ifindexOf);
  const rand = prng(99);
  const cases = Array.from({ length: 300 }, () => {
    const hook = pick(rand, HOOKS);
    return [hook, randomPacket(rand, hook)] as [Hook, PolicyPacket];
  });
  maps.load(b);
  t.true(compareAll(t, flatA, maps, cases, 'A with B written beside it').ok);
  maps.activate(1);
  t.true(compareAll(t, flatB, maps, cases, 'B after the swap').ok);
  t.throws(() => maps.load(compile(flatA, 1)), { message: /generation 1 is live/ });
  maps.clear(0);
  t.true(compareAll(t, flatB, maps, cases, 'B after A was deleted').ok);
  const differing = cases.filter(
    ([hook, p]) => show(referenceDecision(flatA, hook, p)) !== show(referenceDecision(flatB, hook, p)),
  );
  t.true(differing.length > 50, `the two rule sets differ on ${differing.length} packets`);
});

// ---- refusals ----

test('more rules in a hook than the classifier holds are refused in one line', (t) => {
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.chains.get('forward')!.rules = Array.from({ length: MAX_RULES + 1 }, (_, i) => ({
    match: { proto: 6, dport: { anyOf: [{ range: { from: i % 65536, to: i % 65536 } }] } },
    action: { kind: 'drop' },
  }));
  const err = t.throws(() => compile(flattenPolicy(rs)), { instanceOf: UsageError });
  t.is(
    err.message,
    'forward: 16385 rules after inlining the jumps, and the classifier holds at most 16384 per hook; ' +
      'match many addresses or ports with one named set instead of one rule each',
  );
  rs.chains.get('forward')!.rules.pop();
  t.notThrows(() => compile(flattenPolicy(rs)));
});

test('a rule needing more than 8 residual checks is refused in one line; 8 compile', (t) => {
  const eight: RuleMatch = {
    proto: 1,
    icmpType: 8,
    zone: 1,
    ctMark: { value: 1, mask: 1 },
    packetMark: { value: 0x10, mask: 0xf0 },
    ctLabel: { value: 1n, mask: (1n << 40n) - 1n },
    ctOrigSrc: { anyOf: [{ cidr: v4('10.0.0.0', 8) }], except: [] },
    ctOrigDst: { anyOf: [{ cidr: v4('10.0.0.0', 8) }], except: [] },
  };
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.chains.get('input')!.rules = [{ match: eight, action: { kind: 'accept' }, source: { file: 'r.yaml', line: 3 } }];
  const compiled = compile(flattenPolicy(rs));
  t.is(compiled.hooks[0].rules[0].checks.length, 8);
  const maps = loadClassifier(compiled, ifindexOf);
  const p: PolicyPacket = {
    family: 4,
    src: '10.1.1.1',
    dst: '10.2.2.2',
    proto: 1,
    icmpType: 8,
    icmpCode: 0,
    ctState: trk | NEW,
    zone: 1,
    mark: 1,
    packetMark: 0x1f,
    label: 1n,
    origSrc: '10.1.1.1',
    origDst: '10.2.2.2',
    inDev: 'eth0',
  };
  t.is(maps.classify('input', p).rule, 0);
  t.is(maps.classify('input', { ...p, label: 1n | (1n << 39n) }).rule, 'policy');

  rs.chains.get('input')!.rules[0].match = { ...eight, ctOrigDport: { anyOf: [{ range: { from: 80, to: 80 } }] } };
  const err = t.throws(() => compile(flattenPolicy(rs)), { instanceOf: UsageError });
  t.false(err.message.includes('\n'));
  t.regex(
    err.message,
    /^r\.yaml:3: the rule \(input #0, input\[0\]\) needs 9 checks the classifier does not index \(zone, ct-mark, packet-mark, a ct-label word, a ct-label word, icmp type\/code, ct-orig-dport, ct-orig-src, ct-orig-dst\); it checks at most 8 per rule/,
  );
});

test('a jump and a rule below it with conflicting residual fields make a rule in no vector', (t) => {
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.chains.set('c', { name: 'c', rules: [{ match: { zone: 2 }, action: { kind: 'drop' } }] });
  rs.chains.get('input')!.rules = [{ match: { zone: 1 }, action: { kind: 'jump', chain: 'c' } }];
  const c = compile(flattenPolicy(rs));
  const h = c.hooks[0];
  t.true([...h.ctState].every((v) => !bit(c, v, 0)));
  const maps = loadClassifier(c, ifindexOf);
  const p: PolicyPacket = {
    family: 4,
    src: '10.0.0.1',
    dst: '10.0.0.2',
    proto: 6,
    sport: 1,
    dport: 2,
    ctState: trk | NEW,
    zone: 1,
  };
  t.is(maps.classify('input', p).rule, 'policy');
  t.is(maps.classify('input', { ...p, zone: 2 }).rule, 'policy');
});
