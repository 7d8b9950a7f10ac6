// The iptables-save importer: seed 002's rule and a realistic filter dump load
// as is and decide packets as iptables would; whatever the model cannot say
// is refused naming its line, never dropped.
import test from 'ava';
import { IPTABLES_DUMP as DUMP } from '../helpers/policyFixtures';
import { UsageError } from '../../src/errors';
import { complementCtState, ctStateMatches, IPTABLES_CT_STATES } from '../../src/policy/ctState';
import { flattenPolicy } from '../../src/policy/flatten';
import { importIptablesSave } from '../../src/policy/iptablesImport';
import { tokenize } from '../../src/policy/iptablesTokens';
import { CT_STATE_BITS } from '../../src/policy/policyRule';
import { PolicyPacket, tracePolicy } from '../../src/policy/policyTrace';

const { trk, new: NEW, est, rel, rpl, inv } = CT_STATE_BITS;

test("seed 002's rule loads as is", (t) => {
  const rs = importIptablesSave('iptables -t filter -I INPUT -m state --state ESTABLISHED -j ACCEPT\n');
  t.deepEqual(rs.chains.get('INPUT')!.rules, [
    {
      match: { family: 4, ctState: { anyOf: [{ set: trk | est, clear: 0 }] } },
      action: { kind: 'accept' },
      source: { file: 'iptables-save', line: 1 },
    },
  ]);
  t.is(rs.hooks.input.chain, 'INPUT');
  t.is(rs.hooks.input.policy, 'accept');
});

test('a realistic filter dump imports rule by rule', (t) => {
  const rs = importIptablesSave(DUMP, 'host.rules');
  t.deepEqual([...rs.chains.keys()], ['INPUT', 'FORWARD', 'OUTPUT', 'IN_WEB', 'FWD_GUESTS']);
  t.deepEqual([rs.hooks.input.policy, rs.hooks.forward.policy, rs.hooks.output.policy], ['drop', 'drop', 'accept']);
  const input = rs.chains.get('INPUT')!.rules;
  t.is(input.length, 10);
  t.deepEqual(input[3].match, {
    family: 4,
    src: { anyOf: [{ cidr: { family: 4, addr: '127.0.0.0', prefix: 8 } }], except: [] },
    inDev: { anyOf: [], except: ['lo'] },
  });
  t.is(input[4].comment, 'ssh from the admin network');
  t.deepEqual(input[4].match.ctState, { anyOf: [{ set: trk | NEW, clear: rel }] });
  t.deepEqual(input[4].source, { file: 'host.rules', line: 12 });
  t.deepEqual(input[5].match.dport, {
    anyOf: [{ range: { from: 80, to: 80 } }, { range: { from: 443, to: 443 } }, { range: { from: 8000, to: 8099 } }],
  });
  t.deepEqual(input[5].action, { kind: 'jump', chain: 'IN_WEB' });
  t.deepEqual([input[6].match.icmpType, input[6].match.proto], [8, 1]);
  t.deepEqual(input[7].match.packetMark, { value: 0x10, mask: 0xf0 });
  t.deepEqual(input[8].action, { kind: 'reject', with: 'icmp-port-unreachable' });
  t.deepEqual(input[9].action, { kind: 'reject', with: 'tcp-reset' });
  const fwd = rs.chains.get('FORWARD')!.rules;
  t.deepEqual(fwd[1].match.inDev, { anyOf: ['veth+'], except: [] });
  t.deepEqual(fwd[2].match.ctOrigDst?.anyOf, [{ cidr: { family: 4, addr: '192.0.2.10', prefix: 32 } }]);
  t.deepEqual(fwd[2].match.ctOrigDport, { anyOf: [{ range: { from: 8080, to: 8080 } }] });
  t.deepEqual(rs.chains.get('FWD_GUESTS')!.rules[0].match.src?.anyOf, [
    { cidr: { family: 4, addr: '10.20.0.0', prefix: 16 } },
  ]);
  const web = rs.chains.get('IN_WEB')!.rules;
  t.is(web[0].comment, 'known "scanner" net');
  t.deepEqual(web[1].match.dport, {
    anyOf: [{ range: { from: 0, to: 7999 } }, { range: { from: 8100, to: 65535 } }],
  });
  t.deepEqual(web[2].match.ctMark, { value: 1, mask: 0xffffffff });
  t.deepEqual(web[2].action, { kind: 'return' });
});

function tcp(src: string, dport: number, ctState: number, extra: Partial<PolicyPacket> = {}): PolicyPacket {
  return { family: 4, src, dst: '10.0.0.1', proto: 6, sport: 40000, dport, ctState, inDev: 'eth0', ...extra };
}

const NEW_STATE = trk | NEW;
/** [what, hook, packet, verdict, deciding chain and 0-based index, or 'policy'] */
const DECISIONS: Array<[string, 'input' | 'forward', PolicyPacket, string, string]> = [
  ['web from anywhere', 'input', tcp('198.51.100.1', 80, NEW_STATE), 'accept', 'IN_WEB[1]'],
  ['web from the scanner net', 'input', tcp('203.0.113.9', 443, NEW_STATE), 'drop', 'IN_WEB[0]'],
  ['8000 from inside', 'input', tcp('10.1.1.1', 8000, NEW_STATE), 'accept', 'IN_WEB[3]'],
  ['8000 marked 1 returns, then reset', 'input', tcp('10.1.1.1', 8000, NEW_STATE, { mark: 1 }), 'reject', 'INPUT[9]'],
  ['ssh from admins', 'input', tcp('10.10.3.4', 22, NEW_STATE), 'accept', 'INPUT[4]'],
  ['ssh from elsewhere', 'input', tcp('10.11.3.4', 22, NEW_STATE), 'reject', 'INPUT[9]'],
  ['an established reply', 'input', tcp('192.0.2.1', 5555, trk | est | rpl), 'accept', 'INPUT[1]'],
  ['an invalid packet', 'input', tcp('192.0.2.1', 80, trk | inv), 'drop', 'INPUT[2]'],
  ['loopback', 'input', tcp('127.0.0.1', 9999, NEW_STATE, { inDev: 'lo' }), 'accept', 'INPUT[0]'],
  ['spoofed loopback', 'input', tcp('127.0.0.1', 80, NEW_STATE), 'drop', 'INPUT[3]'],
  ['a marked packet', 'input', tcp('192.0.2.1', 25, NEW_STATE, { proto: 47, packetMark: 0x1f }), 'accept', 'INPUT[7]'],
  ['anything else', 'input', tcp('192.0.2.1', 25, NEW_STATE, { proto: 47 }), 'drop', 'policy'],
  [
    'a guest out',
    'forward',
    tcp('10.20.1.1', 443, NEW_STATE, { inDev: 'veth3', outDev: 'eth0' }),
    'accept',
    'FWD_GUESTS[0]',
  ],
  [
    'a stranger out',
    'forward',
    tcp('10.30.1.1', 443, NEW_STATE, { inDev: 'veth3', outDev: 'eth0' }),
    'reject',
    'FWD_GUESTS[1]',
  ],
  [
    'a DNATed connection',
    'forward',
    tcp('198.51.100.1', 80, trk | NEW | CT_STATE_BITS.dnat, {
      inDev: 'eth0',
      outDev: 'veth1',
      origDst: '192.0.2.10',
      origDport: 8080,
    }),
    'accept',
    'FORWARD[2]',
  ],
];

test('the imported dump decides packets as iptables would', (t) => {
  const flat = flattenPolicy(importIptablesSave(DUMP));
  for (const [what, hook, packet, verdict, by] of DECISIONS) {
    const r = tracePolicy(flat, hook, packet);
    const decidedBy = r.rule === 'policy' || r.rule === 'unjudged' ? r.rule : `${r.rule.chain}[${r.rule.index}]`;
    t.deepEqual([r.verdict, decidedBy], [verdict, by], `${what}:\n${r.steps.join('\n')}`);
  }
});

test('a trace says why each rule did not match and which one decided', (t) => {
  const flat = flattenPolicy(importIptablesSave(DUMP, 'host.rules'));
  const r = tracePolicy(flat, 'input', tcp('10.11.3.4', 22, NEW_STATE));
  t.true(
    r.steps.includes('#4 INPUT[4] (host.rules:12): no match: src 10.11.3.4 is not in 10.10.0.0/16'),
    r.steps.join('\n'),
  );
  t.is(r.steps[r.steps.length - 1], '#12 INPUT[9] (host.rules:17): match: reject with tcp-reset');
  t.deepEqual([r.index, r.rejectWith], [12, 'tcp-reset']);
});

test('counters in front of rules (iptables-save -c) are accepted', (t) => {
  const rs = importIptablesSave(
    '*filter\n:INPUT ACCEPT [9:900]\n[5:300] -A INPUT -p udp --dport 53 -j ACCEPT\nCOMMIT\n',
  );
  t.deepEqual(rs.chains.get('INPUT')!.rules[0].match.dport, { anyOf: [{ range: { from: 53, to: 53 } }] });
});

test('the command form: -N, -A with implicit tcp options, -I at a position, -P', (t) => {
  const rs = importIptablesSave(
    [
      'iptables -N SSH',
      'iptables -A SSH -s 10.0.0.0/8 -j ACCEPT',
      'iptables -A INPUT -p tcp --dport 22 -j SSH',
      'iptables -A INPUT -j DROP',
      'iptables -I INPUT 2 -p udp --sport 53 -j ACCEPT',
      'iptables -P OUTPUT DROP',
    ].join('\n'),
  );
  const input = rs.chains.get('INPUT')!.rules;
  t.deepEqual(
    input.map((r) => [r.action.kind, r.source?.line]),
    [
      ['jump', 3],
      ['accept', 5],
      ['drop', 4],
    ],
  );
  t.is(rs.hooks.output.policy, 'drop');
});

test('negations become positive complements', (t) => {
  const rs = importIptablesSave('iptables -A INPUT -p tcp ! --dport 22 -m conntrack ! --ctstate NEW -j ACCEPT');
  const m = rs.chains.get('INPUT')!.rules[0].match;
  t.deepEqual(m.dport, { anyOf: [{ range: { from: 0, to: 21 } }, { range: { from: 23, to: 65535 } }] });
  for (let state = 0; state < 256; state++) {
    t.is(ctStateMatches(m.ctState!, state), !ctStateMatches({ anyOf: [IPTABLES_CT_STATES.NEW] }, state), `${state}`);
  }
});

test('the complement of a ct_state OR is exact over all 256 states', (t) => {
  const names = Object.keys(IPTABLES_CT_STATES);
  for (let mask = 1; mask < 1 << names.length; mask++) {
    const match = { anyOf: names.filter((_, i) => mask & (1 << i)).map((n) => IPTABLES_CT_STATES[n]) };
    const not = complementCtState(match);
    for (let state = 0; state < 256; state++) {
      if (ctStateMatches(not, state) === ctStateMatches(match, state)) {
        t.fail(`state ${state} of ${JSON.stringify(match)}`);
        return;
      }
    }
  }
  t.pass();
});

test('the tokenizer keeps quoted comments whole', (t) => {
  t.deepEqual(tokenize(`-m comment --comment "a \\"b\\" c" -j 'x y'`), [
    '-m',
    'comment',
    '--comment',
    'a "b" c',
    '-j',
    'x y',
  ]);
});

/** A dump whose filter table has these lines after the declarations; the first of them is line 6. */
function dump(lines: string, tail = 'COMMIT\n'): string {
  return `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n${lines}${tail}`;
}

/** [what, dump, line, a pattern the message must contain] */
const REFUSED: Array<[string, string, number, RegExp]> = [
  [
    'an unsupported match',
    dump('-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -m recent --set --name ssh -j DROP\n'),
    7,
    /match '-m recent' is not supported/,
  ],
  ['an unsupported target', dump('-A INPUT -p tcp -j LOG --log-prefix "in: "\n'), 6, /target -j LOG is not supported/],
  [
    'the nat table',
    '*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n',
    1,
    /the nat table is not imported: only the filter table is imported for now/,
  ],
  ['the nat table, command form', 'iptables -t nat -A POSTROUTING -j MASQUERADE\n', 1, /the nat table is not imported/],
  ['the mangle table', '*mangle\nCOMMIT\n', 1, /the mangle table is not imported/],
  ['an unknown table', '*bogus\nCOMMIT\n', 1, /unknown table 'bogus'/],
  [
    'an unsupported tcp option',
    dump('-A INPUT -p tcp --syn -j ACCEPT\n'),
    6,
    /option --syn of -m tcp is not supported/,
  ],
  [
    'an unknown option',
    dump('-A INPUT --frobnicate 1 -j ACCEPT\n'),
    6,
    /option --frobnicate is not one of a loaded match/,
  ],
  ['a rule outside a table', '-A INPUT -j ACCEPT\n', 1, /'-A' outside a table/],
  ['a dump without COMMIT', dump('-A INPUT -j ACCEPT\n', ''), 1, /\*filter has no COMMIT; the dump is cut short/],
  ['a rule in an undeclared chain', dump('-A B -j ACCEPT\n'), 6, /no chain B; declare it with -N B/],
  ['a jump to an undeclared chain', dump('-A INPUT -j B\n'), 6, /-j B: no such chain or supported target/],
  ['a negated protocol', dump('-A INPUT ! -p tcp -j DROP\n'), 6, /'! -p' \(a negated -p\) is not supported/],
  ['an IPv6 address', dump('-A INPUT -s 2001:db8::1 -j DROP\n'), 6, /is IPv6; iptables is IPv4 only/],
  ['-m tcp without -p tcp', dump('-A INPUT -m tcp --dport 22 -j DROP\n'), 6, /-m tcp needs -p tcp/],
  ['a loop of jumps', dump('-N B\n-A A -j B\n-A B -p tcp -j A\n'), 8, /jump to 'A' makes a loop A → B → A/],
  ['a chain jumping to itself', dump('-A A -j A\n'), 6, /chain 'A' jumps to itself/],
  ['a command other than -A -I -N -P', dump('-D INPUT 1\n'), 6, /command '-D' is not imported/],
  ['-i in OUTPUT', dump('-A OUTPUT -i eth0 -j DROP\n'), 6, /-i in OUTPUT/],
  ['a counting rule', dump('-A INPUT -p tcp\n'), 6, /the rule has no -j target/],
  [
    'a bad reject kind',
    dump('-A INPUT -j REJECT --reject-with icmp-go-away\n'),
    6,
    /--reject-with 'icmp-go-away' is not supported/,
  ],
  ['an unclosed quote', dump('-A INPUT -m comment --comment "oops -j ACCEPT\n'), 6, /double quote is not closed/],
  ['SNAT in -m state', dump('-A INPUT -m state --state SNAT -j ACCEPT\n'), 6, /--state: 'SNAT' is not a state/],
  ['goto', dump('-A INPUT -g A\n'), 6, /goto \(-g A\) is not supported/],
  ['a second filter table', dump('') + '*filter\nCOMMIT\n', 7, /a second \*filter/],
  ['a non-prefix mask', dump('-A INPUT -s 10.0.0.0/255.0.255.0 -j DROP\n'), 6, /is not a prefix/],
  ['a bad port', dump('-A INPUT -p udp --dport 99999 -j DROP\n'), 6, /'99999' is not a port/],
  ['a custom chain with a policy', '*filter\n:MINE DROP [0:0]\nCOMMIT\n', 2, /custom chain MINE cannot have a policy/],
];

for (const [what, text, line, pattern] of REFUSED) {
  test(`refused with its line: ${what}`, (t) => {
    const err = t.throws(() => importIptablesSave(text, 'dump'), { instanceOf: UsageError });
    t.true(err.message.startsWith(`dump:${line}: `), err.message);
    t.regex(err.message, pattern);
    t.false(err.message.includes('\n'), 'one line');
  });
}
