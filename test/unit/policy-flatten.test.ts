// Flattening keeps every first-match decision: random rule sets with jumps,
// returns and nested chains decide random packets the same through
// flattenPolicy + tracePolicy as through a naive recursive walk of the chains.
// Also: how a return is represented, loops and the depth limit, security groups.
import test from 'ava';
import { UsageError } from '../../src/errors';
import { flattenPolicy, KEEP_ESTABLISHED_CHAIN, MAX_FLAT_RULES } from '../../src/policy/flatten';
import {
  Cidr,
  CT_STATE_BITS,
  CtStateTerm,
  emptyRuleSet,
  Hook,
  PolicyRule,
  PolicyRuleSet,
  RuleAction,
  RuleMatch,
} from '../../src/policy/policyRule';
import { PolicyPacket, tracePolicy } from '../../src/policy/policyTrace';
import { IPTABLES_CT_STATES } from '../../src/policy/ctState';
import { deviceNameMatches, matchFailure, preparePacket } from '../../src/policy/ruleMatch';
import { MAX_JUMP_DEPTH } from '../../src/policy/ruleSetCheck';
import { EXAMPLE_RULES_YAML, parseRulesFile } from '../../src/policy/rulesFile';
import { expandSecurityGroups } from '../../src/policy/securityGroup';
import { chance, pick, prng, Rand } from '../helpers/seededRandom';

const { trk, new: NEW, est, rel, rpl, inv } = CT_STATE_BITS;

// ---- the naive evaluator: the chains as written, walked recursively ----

interface Decision {
  verdict: string;
  /** `CHAIN[index]` of the deciding rule, or 'policy' / 'unjudged'. */
  by: string;
}

function naiveDecide(rs: PolicyRuleSet, hook: Hook, packet: PolicyPacket): Decision {
  const binding = rs.hooks[hook];
  if (binding.devices && !naiveJudges(hook, binding.devices, packet)) return { verdict: 'accept', by: 'unjudged' };
  if (rs.keepEstablished && (packet.ctState & (trk | est)) === (trk | est)) {
    return { verdict: 'accept', by: KEEP_ESTABLISHED_CHAIN };
  }
  const pp = preparePacket(packet);
  /** A decision, 'return' for a matched return, undefined for falling off the chain's end. */
  const run = (chainName: string): Decision | 'return' | undefined => {
    const chain = rs.chains.get(chainName)!;
    for (const [index, rule] of chain.rules.entries()) {
      if (matchFailure(rule.match, pp, rs.sets) !== undefined) continue;
      const a = rule.action;
      if (a.kind === 'return') return 'return';
      if (a.kind === 'jump') {
        const below = run(a.chain);
        if (below !== undefined && below !== 'return') return below;
        continue;
      }
      return { verdict: a.kind, by: `${chainName}[${index}]` };
    }
    return undefined;
  };
  const d = run(binding.chain);
  return d === undefined || d === 'return' ? { verdict: binding.policy, by: 'policy' } : d;
}

function naiveJudges(hook: Hook, devices: readonly string[], p: PolicyPacket): boolean {
  const listed = (name?: string) => name !== undefined && devices.some((d) => deviceNameMatches(d, name));
  if (hook === 'input') return listed(p.inDev);
  if (hook === 'output') return listed(p.outDev);
  return listed(p.inDev) || listed(p.outDev);
}

function flatDecide(flat: ReturnType<typeof flattenPolicy>, hook: Hook, packet: PolicyPacket): Decision {
  const r = tracePolicy(flat, hook, packet);
  const by =
    typeof r.rule === 'string'
      ? r.rule
      : r.rule.chain === KEEP_ESTABLISHED_CHAIN
        ? r.rule.chain
        : `${r.rule.chain}[${r.rule.index}]`;
  return { verdict: r.verdict, by };
}

// ---- random rule sets and packets ----

const cidr = (addr: string, prefix: number): Cidr => ({ family: 4, addr, prefix });
const CIDRS = [cidr('10.0.0.0', 8), cidr('10.1.0.0', 16), cidr('10.1.2.0', 24), cidr('192.168.0.0', 16)];
const CT_TERMS: CtStateTerm[] = [
  ...Object.values(IPTABLES_CT_STATES),
  { set: trk | est | rpl, clear: 0 },
  { set: trk, clear: rpl },
  { set: trk | NEW, clear: 0 },
];

function randomMatch(rand: Rand): RuleMatch {
  const m: RuleMatch = {};
  if (chance(rand, 0.5)) m.proto = pick(rand, [6, 17, 1]);
  if ((m.proto === 6 || m.proto === 17) && chance(rand, 0.4)) {
    m.dport = chance(rand, 0.3)
      ? { anyOf: [{ set: 'ports' }] }
      : {
          anyOf: [
            {
              range: pick(rand, [
                { from: 22, to: 22 },
                { from: 80, to: 443 },
                { from: 1024, to: 65535 },
              ]),
            },
          ],
        };
  }
  if (m.proto === 1 && chance(rand, 0.3)) m.icmpType = pick(rand, [0, 8]);
  if (chance(rand, 0.3)) {
    const anyOf = chance(rand, 0.3) ? [{ set: 'nets' }] : [{ cidr: pick(rand, CIDRS) }];
    m.src = { anyOf: chance(rand, 0.2) ? [] : anyOf, except: chance(rand, 0.3) ? [{ cidr: pick(rand, CIDRS) }] : [] };
  }
  if (chance(rand, 0.15)) m.dst = { anyOf: [{ cidr: pick(rand, CIDRS) }], except: [] };
  if (chance(rand, 0.4))
    m.ctState = { anyOf: [pick(rand, CT_TERMS), ...(chance(rand, 0.3) ? [pick(rand, CT_TERMS)] : [])] };
  if (chance(rand, 0.2))
    m.inDev = chance(rand, 0.5) ? { anyOf: [pick(rand, ['eth0', 'eth+'])], except: [] } : { anyOf: [], except: ['lo'] };
  if (chance(rand, 0.15))
    m.ctMark = pick(rand, [
      { value: 1, mask: 1 },
      { value: 2, mask: 3 },
    ]);
  if (chance(rand, 0.1)) m.zone = pick(rand, [0, 1]);
  if (chance(rand, 0.1)) m.ctOrigDport = { anyOf: [{ range: { from: 8080, to: 8080 } }] };
  return m;
}

function randomAction(rand: Rand, callees: readonly string[]): RuleAction {
  const r = rand();
  if (r < 0.35 && callees.length > 0) return { kind: 'jump', chain: pick(rand, callees) };
  if (r < 0.6) return { kind: 'return' };
  if (r < 0.8)
    return chance(rand, 0.3) ? { kind: 'accept', commit: { mark: { value: 1, mask: 1 } } } : { kind: 'accept' };
  if (r < 0.95) return { kind: 'drop' };
  return { kind: 'reject', with: 'icmp-admin-prohibited' };
}

function randomRuleSet(seed: number): PolicyRuleSet {
  const rand = prng(seed);
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  rs.keepEstablished = chance(rand, 0.3);
  rs.hooks.input.policy = pick(rand, ['accept', 'drop'] as const);
  rs.sets.set('nets', { kind: 'address', name: 'nets', cidrs: [cidr('10.1.3.0', 24), cidr('8.8.8.0', 24)] });
  rs.sets.set('ports', {
    kind: 'port',
    name: 'ports',
    ports: [
      { from: 53, to: 53 },
      { from: 8080, to: 8080 },
    ],
  });
  const names = ['C0', 'C1', 'C2', 'C3', 'C4', 'C5'];
  const rules = (count: number, callees: readonly string[], chain: string): PolicyRule[] =>
    Array.from({ length: count }, (_, i) => ({
      match: randomMatch(rand),
      action: randomAction(rand, callees),
      source: { file: `${chain}.rules`, line: i + 1 },
    }));
  rs.chains.get('input')!.rules = rules(4 + Math.floor(rand() * 8), names, 'input');
  // Jumps only go to later chains, so the chains nest up to six deep without a loop.
  names.forEach((name, i) =>
    rs.chains.set(name, { name, rules: rules(2 + Math.floor(rand() * 6), names.slice(i + 1), name) }),
  );
  return rs;
}

function randomPacket(rand: Rand): PolicyPacket {
  const addrs = ['10.1.2.3', '10.1.3.3', '10.2.0.1', '192.168.1.1', '8.8.8.8'];
  const proto = pick(rand, [6, 17, 1]);
  const p: PolicyPacket = {
    family: 4,
    src: pick(rand, addrs),
    dst: pick(rand, addrs),
    proto,
    ctState: pick(rand, [
      trk | NEW,
      trk | est,
      trk | est | rpl,
      trk | rel,
      trk | rel | NEW,
      trk | inv,
      0,
      trk | est | rel,
    ]),
    inDev: pick(rand, ['eth0', 'eth1', 'lo']),
    mark: pick(rand, [0, 1, 2, 3]),
    zone: pick(rand, [0, 1]),
  };
  if (proto !== 1) {
    p.sport = pick(rand, [22, 53, 80, 443, 8080, 40000]);
    p.dport = pick(rand, [22, 53, 80, 443, 8080, 40000]);
  } else {
    p.icmpType = pick(rand, [0, 3, 8]);
    p.icmpCode = 0;
  }
  if (p.ctState & trk) {
    p.origSrc = p.src;
    p.origDst = p.dst;
    p.origDport = pick(rand, [8080, 80]);
  }
  return p;
}

test('flatten + trace decide random packets as a recursive walk of the chains does', (t) => {
  let compared = 0;
  let returnsTaken = 0;
  let byPolicy = 0;
  let maxNesting = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rs = randomRuleSet(seed);
    const flat = flattenPolicy(rs);
    maxNesting = Math.max(maxNesting, ...flat.hooks.input.rules.map((r) => r.origin.via.length));
    const rand = prng(seed * 7919);
    for (let i = 0; i < 300; i++) {
      const packet = randomPacket(rand);
      const want = naiveDecide(rs, 'input', packet);
      const trace = tracePolicy(flat, 'input', packet);
      const got = flatDecide(flat, 'input', packet);
      if (want.verdict !== got.verdict || want.by !== got.by) {
        t.fail(
          `seed ${seed} packet ${JSON.stringify(packet)}: chains ${JSON.stringify(want)}, flat ${JSON.stringify(got)}\n${trace.steps.join('\n')}`,
        );
        return;
      }
      compared++;
      if (trace.steps.some((s) => s.includes(': return: continue at'))) returnsTaken++;
      if (got.by === 'policy') byPolicy++;
    }
  }
  t.is(compared, 12_000);
  // The cases are only worth something if they exercise what flattening has to get right.
  t.true(returnsTaken > 500, `returns taken: ${returnsTaken}`);
  t.true(byPolicy > 500, `decided by policy: ${byPolicy}`);
  t.true(maxNesting >= 4, `deepest nesting: ${maxNesting}`);
});

test('the example file decides random packets on every hook as its chains do', (t) => {
  const rs = parseRulesFile(EXAMPLE_RULES_YAML, 'example.yaml');
  const expanded = expandSecurityGroups(rs);
  const flat = flattenPolicy(rs);
  const rand = prng(42);
  const devs = ['eth0', 'lo', 'veth-a', 'veth-b', 'eth1'];
  for (let i = 0; i < 600; i++) {
    const hook = pick(rand, ['input', 'forward', 'output'] as const);
    const packet = randomPacket(rand);
    packet.src = pick(rand, ['10.10.1.1', '203.0.113.7', '10.20.1.5', '10.20.2.9', '198.51.100.1']);
    packet.inDev = hook === 'output' ? undefined : pick(rand, devs);
    packet.outDev = hook === 'input' ? undefined : pick(rand, devs);
    packet.label = pick(rand, [0n, 1n]);
    if (packet.proto !== 1) packet.dport = pick(rand, [21, 22, 53, 80, 443, 8000, 8080]);
    const want = naiveDecide(expanded, hook, packet);
    const got = flatDecide(flat, hook, packet);
    t.deepEqual(got, want, `${hook} ${JSON.stringify(packet, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  }
});

// ---- the representation of a return ----

function ruleSet(chains: Record<string, Array<[RuleMatch, RuleAction]>>): PolicyRuleSet {
  const rs = emptyRuleSet({ input: 'input', forward: 'forward', output: 'output' });
  let line = 1;
  for (const [name, rules] of Object.entries(chains)) {
    rs.chains.set(name, {
      name,
      rules: rules.map(([match, action]) => ({ match, action, source: { file: 't.rules', line: line++ } })),
    });
  }
  return rs;
}

const TCP: RuleMatch = { proto: 6 };
const TEN: RuleMatch = { src: { anyOf: [{ cidr: cidr('10.0.0.0', 8) }], except: [] } };

test("a return becomes a skip past the callee's block, under the jump's match", (t) => {
  const rs = ruleSet({
    input: [
      [TCP, { kind: 'jump', chain: 'A' }],
      [{}, { kind: 'drop' }],
    ],
    A: [
      [TEN, { kind: 'return' }],
      [{}, { kind: 'accept' }],
    ],
  });
  const rules = flattenPolicy(rs).hooks.input.rules;
  t.deepEqual(
    rules.map((r) => [r.matches, r.action, `${r.origin.chain}[${r.origin.index}]`, r.origin.via.map((v) => v.chain)]),
    [
      [[TCP, TEN], { kind: 'skip', to: 2 }, 'A[0]', ['input']],
      [[TCP], { kind: 'accept' }, 'A[1]', ['input']],
      [[], { kind: 'drop' }, 'input[1]', []],
    ],
  );
  const flat = flattenPolicy(rs);
  const packet: PolicyPacket = {
    family: 4,
    src: '10.0.0.1',
    dst: '10.0.0.2',
    proto: 6,
    sport: 1,
    dport: 2,
    ctState: trk | NEW,
  };
  t.is(tracePolicy(flat, 'input', packet).verdict, 'drop');
  t.is(tracePolicy(flat, 'input', { ...packet, src: '192.0.2.1' }).verdict, 'accept');
});

test("a return in a hook's own chain hands the packet to the policy", (t) => {
  const rs = ruleSet({
    input: [
      [TCP, { kind: 'return' }],
      [{}, { kind: 'accept' }],
    ],
  });
  rs.hooks.input.policy = 'drop';
  const flat = flattenPolicy(rs);
  t.deepEqual(flat.hooks.input.rules[0].action, { kind: 'skip', to: 2 });
  const r = tracePolicy(flat, 'input', { family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 6, ctState: trk | NEW });
  t.deepEqual([r.verdict, r.rule], ['drop', 'policy']);
});

test('keep-established accepts +trk+est ahead of every rule', (t) => {
  const rs = ruleSet({ input: [[{}, { kind: 'drop' }]] });
  rs.keepEstablished = true;
  const flat = flattenPolicy(rs);
  const p: PolicyPacket = { family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 17, ctState: trk | est | rpl };
  t.is(tracePolicy(flat, 'input', p).verdict, 'accept');
  t.is(tracePolicy(flat, 'input', { ...p, ctState: trk | NEW }).verdict, 'drop');
});

test('a hook with devices passes the packets of other devices unjudged', (t) => {
  const rs = ruleSet({ input: [[{}, { kind: 'drop' }]] });
  rs.hooks.input.devices = ['eth+'];
  const flat = flattenPolicy(rs);
  const p: PolicyPacket = { family: 4, src: '10.0.0.1', dst: '10.0.0.2', proto: 17, ctState: trk | NEW, inDev: 'eth3' };
  t.is(tracePolicy(flat, 'input', p).verdict, 'drop');
  t.deepEqual(tracePolicy(flat, 'input', { ...p, inDev: 'wg0' }).rule, 'unjudged');
});

// ---- loops and limits ----

test('a loop of jumps is refused at the jump that closes it', (t) => {
  const rs = ruleSet({
    input: [[{}, { kind: 'jump', chain: 'A' }]],
    A: [[TCP, { kind: 'jump', chain: 'B' }]],
    B: [[{}, { kind: 'jump', chain: 'A' }]],
  });
  const err = t.throws(() => flattenPolicy(rs), { instanceOf: UsageError });
  t.is(err.message, "t.rules:3: jump to 'A' makes a loop A → B → A; remove one of these jumps");
});

test('a chain jumping to itself is refused', (t) => {
  const rs = ruleSet({ input: [[{}, { kind: 'jump', chain: 'A' }]], A: [[TCP, { kind: 'jump', chain: 'A' }]] });
  t.throws(() => flattenPolicy(rs), { instanceOf: UsageError, message: /^t\.rules:2: chain 'A' jumps to itself/ });
});

function nested(depth: number): PolicyRuleSet {
  const chains: Record<string, Array<[RuleMatch, RuleAction]>> = { input: [[{}, { kind: 'jump', chain: 'c1' }]] };
  for (let i = 1; i <= depth; i++) {
    chains[`c${i}`] = [[{}, i < depth ? { kind: 'jump', chain: `c${i + 1}` } : { kind: 'accept' }]];
  }
  return ruleSet(chains);
}

test(`jumps nest ${MAX_JUMP_DEPTH} deep and no deeper`, (t) => {
  const flat = flattenPolicy(nested(MAX_JUMP_DEPTH));
  t.is(flat.hooks.input.rules[0].origin.via.length, MAX_JUMP_DEPTH);
  t.throws(() => flattenPolicy(nested(MAX_JUMP_DEPTH + 1)), {
    instanceOf: UsageError,
    message: /jumps nest more than 32 deep/,
  });
});

test('a chain reached by a short and a long path is measured by the long one', (t) => {
  // input jumps to c1 (depth 1) and, through 2 more chains, to c1 at depth 3; c1 nests 30 below itself.
  const rs = nested(31);
  rs.chains.get('input')!.rules.unshift({ match: {}, action: { kind: 'jump', chain: 'x1' } });
  rs.chains.set('x1', { name: 'x1', rules: [{ match: {}, action: { kind: 'jump', chain: 'x2' } }] });
  rs.chains.set('x2', { name: 'x2', rules: [{ match: {}, action: { kind: 'jump', chain: 'c1' } }] });
  t.throws(() => flattenPolicy(rs), { instanceOf: UsageError, message: /jumps nest more than 32 deep/ });
});

test('a rule set that inlines into too many rules is refused', (t) => {
  const chains: Record<string, Array<[RuleMatch, RuleAction]>> = { input: [[{}, { kind: 'jump', chain: 'd0' }]] };
  for (let i = 0; i < 20; i++) {
    const next: RuleAction = { kind: 'jump', chain: `d${i + 1}` };
    chains[`d${i}`] = [
      [TCP, next],
      [{ proto: 17 }, next],
    ];
  }
  chains.d20 = [[{}, { kind: 'accept' }]];
  t.throws(() => flattenPolicy(ruleSet(chains)), {
    instanceOf: UsageError,
    message: new RegExp(`more than ${MAX_FLAT_RULES} rules in one hook`),
  });
});

// ---- security groups ----

const GROUPS = `hooks:
  forward:
    policy: accept
security-groups:
  web:
    devices: [veth-web]
    members: [10.0.1.0/24]
    rules:
      - direction: ingress
        protocol: tcp
        ports: [80, 443]
      - direction: ingress
        protocol: tcp
        ports: 22
        remote-group: admin
      - direction: egress
        protocol: udp
        ports: 53
        remote-cidr: 10.0.0.53
  admin:
    devices: [veth-admin]
    members: [10.0.2.0/24]
    rules:
      - direction: egress
`;

function pkt(inDev: string | undefined, outDev: string | undefined, more: Partial<PolicyPacket>): PolicyPacket {
  return {
    family: 4,
    src: '192.0.2.1',
    dst: '10.0.1.5',
    proto: 6,
    sport: 40000,
    dport: 80,
    ctState: trk | NEW,
    inDev,
    outDev,
    ...more,
  };
}

/** [what, hook, packet, verdict] */
const SG_CASES: Array<[string, Hook, PolicyPacket, string]> = [
  ['web in from anywhere', 'forward', pkt('eth0', 'veth-web', {}), 'accept'],
  ['another port in', 'forward', pkt('eth0', 'veth-web', { dport: 8080 }), 'drop'],
  [
    'the reply out',
    'forward',
    pkt('veth-web', 'eth0', { src: '10.0.1.5', sport: 80, dport: 40000, ctState: trk | est | rpl }),
    'accept',
  ],
  [
    'a related ICMP error in',
    'forward',
    pkt('eth0', 'veth-web', { proto: 1, sport: undefined, dport: undefined, icmpType: 3, ctState: trk | rel }),
    'accept',
  ],
  ['an invalid packet in', 'forward', pkt('eth0', 'veth-web', { ctState: trk | inv }), 'drop'],
  ['ssh from the admin group', 'forward', pkt('veth-admin', 'veth-web', { src: '10.0.2.7', dport: 22 }), 'accept'],
  ['ssh from outside', 'forward', pkt('eth0', 'veth-web', { dport: 22 }), 'drop'],
  [
    'dns out to the resolver',
    'forward',
    pkt('veth-web', 'eth0', { src: '10.0.1.5', dst: '10.0.0.53', proto: 17, dport: 53 }),
    'accept',
  ],
  [
    'dns out elsewhere',
    'forward',
    pkt('veth-web', 'eth0', { src: '10.0.1.5', dst: '8.8.8.8', proto: 17, dport: 53 }),
    'drop',
  ],
  ['between unguarded devices', 'forward', pkt('eth0', 'eth1', { dport: 9 }), 'accept'],
  [
    'web to the node itself',
    'input',
    pkt('veth-web', undefined, { src: '10.0.1.5', dst: '10.0.0.1', dport: 22 }),
    'drop',
  ],
  ['the node to web', 'output', pkt(undefined, 'veth-web', { src: '10.0.0.1', dport: 443 }), 'accept'],
];

test('security groups: allowed, replies and related pass; the rest to and from their devices is dropped', (t) => {
  const rs = parseRulesFile(GROUPS, 'groups.yaml');
  const flat = flattenPolicy(rs);
  const expanded = expandSecurityGroups(rs);
  for (const [what, hook, packet, verdict] of SG_CASES) {
    const r = tracePolicy(flat, hook, packet);
    t.is(r.verdict as string, verdict, `${what}:\n${r.steps.join('\n')}`);
    t.deepEqual(flatDecide(flat, hook, packet), naiveDecide(expanded, hook, packet), what);
  }
});

test("security groups on a hook that judges listed devices leave the others' packets unjudged", (t) => {
  const rs = parseRulesFile(GROUPS.replace('    policy: accept', '    policy: drop\n    devices: [eth1]'), 'g.yaml');
  const flat = flattenPolicy(rs);
  t.deepEqual(flat.hooks.forward.devices, ['eth1', 'veth-web', 'veth-admin']);
  t.is(tracePolicy(flat, 'forward', pkt('eth0', 'veth-web', { dport: 8080 })).verdict, 'drop');
  t.is(tracePolicy(flat, 'forward', pkt('eth0', 'eth2', {})).rule, 'unjudged');
  const passed = tracePolicy(flat, 'forward', pkt('veth-admin', 'veth-web', { src: '10.0.2.7', dport: 22 }));
  t.is(passed.verdict, 'accept');
  t.is(tracePolicy(flat, 'forward', pkt('eth1', 'eth0', {})).rule, 'policy');
});
