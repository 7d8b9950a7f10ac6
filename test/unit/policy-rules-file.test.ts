// The policy rules file: the example parses to the model it describes, JSON
// reads like YAML, and every mistake is one UsageError line naming the file,
// the line and what to do.
import test from 'ava';
import { UsageError } from '../../src/errors';
import { CT_STATE_BITS } from '../../src/policy/policyRule';
import { EXAMPLE_RULES_YAML, parseRulesFile } from '../../src/policy/rulesFile';

const { trk, new: NEW, est, rel } = CT_STATE_BITS;

test('the example rules file parses into the model it describes', (t) => {
  const rs = parseRulesFile(EXAMPLE_RULES_YAML, 'example.yaml');
  t.true(rs.keepEstablished);
  t.is(rs.hooks.input.policy, 'drop');
  t.is(rs.hooks.output.policy, 'accept');
  t.deepEqual(rs.hooks.forward.devices, ['veth-a', 'veth-b', 'eth0']);
  t.deepEqual([...rs.chains.keys()], ['input', 'forward', 'output', 'in-web', 'in-web-public']);
  t.deepEqual([...rs.securityGroups.keys()], ['web', 'admin']);
  const admin = rs.sets.get('admin-nets');
  t.is(admin?.kind, 'address');
  t.deepEqual(admin?.kind === 'address' ? admin.cidrs.map((c) => `${c.addr}/${c.prefix}`) : [], [
    '10.10.0.0/16',
    '2001:db8:a::/48',
  ]);
  const ports = rs.sets.get('web-ports');
  t.deepEqual(ports?.kind === 'port' ? ports.ports : [], [
    { from: 80, to: 80 },
    { from: 443, to: 443 },
    { from: 8000, to: 8099 },
  ]);

  const input = rs.chains.get('input')!.rules;
  t.deepEqual(input[0].match.ctState, {
    anyOf: [
      { set: trk | est, clear: 0 },
      { set: trk | rel, clear: est },
    ],
  });
  t.deepEqual(input[0].source, { file: 'example.yaml', line: 12 });
  t.deepEqual(input[3].match.src, { anyOf: [{ set: 'admin-nets' }], except: [] });
  t.deepEqual(input[3].action, { kind: 'accept', commit: { mark: { value: 1, mask: 0xff } } });
  t.deepEqual(input[4].action, { kind: 'jump', chain: 'in-web' });
  t.deepEqual(input[5].action, { kind: 'accept', commit: { helper: 'ftp' } });
  t.deepEqual(input[8].action, { kind: 'reject', with: 'tcp-reset' });

  const output = rs.chains.get('output')!.rules[0];
  t.deepEqual(output.match.dst?.except.length, 2);
  t.deepEqual(output.match.outDev, { anyOf: [], except: ['lo'] });
  t.deepEqual(output.action, { kind: 'accept', commit: { label: { value: 1n << 64n, mask: 1n << 64n } } });

  const forward = rs.chains.get('forward')!.rules;
  t.is(forward[0].comment, 'untracked traffic is not forwarded');
  t.deepEqual(forward[0].match.ctState, { anyOf: [{ set: 0, clear: trk }] });
  t.deepEqual(forward[1].match.ctOrigDport, { anyOf: [{ range: { from: 8080, to: 8080 } }] });

  const web = rs.securityGroups.get('web')!;
  t.deepEqual(web.rules[1].remote, { group: 'admin' });
  t.deepEqual(web.rules[2], { direction: 'egress', source: { file: 'example.yaml', line: 83 } });
});

test('a JSON rules file reads as its YAML twin', (t) => {
  const json = JSON.stringify({
    'keep-established': false,
    sets: { dns: { addresses: ['192.0.2.53', '2001:db8::53'] } },
    hooks: {
      output: {
        policy: 'drop',
        rules: [{ protocol: 'udp', dport: 53, dst: '$dns', 'ct-state': 'NEW,ESTABLISHED', action: 'accept' }],
      },
    },
  });
  const yaml = `keep-established: false
sets:
  dns:
    addresses: [192.0.2.53, "2001:db8::53"]
hooks:
  output:
    policy: drop
    rules:
      - { protocol: udp, dport: 53, dst: $dns, ct-state: "NEW,ESTABLISHED", action: accept }
`;
  const strip = (rs: ReturnType<typeof parseRulesFile>) =>
    JSON.stringify([...rs.chains.values()].map((c) => c.rules.map((r) => [r.match, r.action])));
  const fromJson = parseRulesFile(json, 'p.json');
  t.is(strip(fromJson), strip(parseRulesFile(yaml, 'p.yaml')));
  t.deepEqual(fromJson.chains.get('output')!.rules[0].match.ctState, {
    anyOf: [
      { set: trk | NEW, clear: rel },
      { set: trk | est, clear: 0 },
    ],
  });
});

test('OVS terms and iptables names mix in one ct-state list', (t) => {
  const rs = parseRulesFile(
    'hooks:\n  input:\n    rules:\n      - ct-state: [+trk+est-rel+rpl, UNTRACKED, "SNAT, DNAT"]\n        action: drop\n',
    'p.yaml',
  );
  t.deepEqual(rs.chains.get('input')!.rules[0].match.ctState?.anyOf, [
    { set: trk | est | CT_STATE_BITS.rpl, clear: rel },
    { set: 0, clear: trk },
    { set: CT_STATE_BITS.snat, clear: 0 },
    { set: CT_STATE_BITS.dnat, clear: 0 },
  ]);
});

/** A file whose input hook has the given rule lines (indented under rules:), the first rule on line 4. */
function inputRules(rules: string, rest = ''): string {
  return `hooks:\n  input:\n    rules:\n${rules}${rest}`;
}

const CHAINS_AB = `chains:
  A:
    - action: jump B
  B:
    - protocol: tcp
      action: jump A
`;

/** [what, file text, line, a pattern the message must contain] */
const BAD: Array<[string, string, number, RegExp]> = [
  [
    'an unknown field',
    inputRules('      - dprt: 22\n        action: accept\n'),
    4,
    /unknown field 'dprt' in a rule; did you mean 'dport'\?/,
  ],
  [
    'an unknown top-level field',
    'hook:\n  input: {}\n',
    1,
    /unknown field 'hook' at the top level; did you mean 'hooks'\?/,
  ],
  ['an unknown hook', 'hooks:\n  prerouting: {}\n', 2, /unknown hook 'prerouting'; hooks are input, forward, output/],
  [
    'a prefix over 32',
    inputRules('      - src: 10.0.0.0/33\n        action: drop\n'),
    4,
    /'10\.0\.0\.0\/33': prefix length '33' is not 0 to 32/,
  ],
  [
    'host bits',
    inputRules('      - action: drop\n        dst: 10.0.0.1/24\n'),
    5,
    /'10\.0\.0\.1\/24' has host bits set; write 10\.0\.0\.0\/24/,
  ],
  [
    'not an address',
    inputRules('      - action: drop\n        src: [10.0.0.0/8, example.com]\n'),
    5,
    /'example\.com' is not an address or prefix/,
  ],
  [
    'a port over 65535',
    inputRules('      - protocol: tcp\n        dport: 70000\n        action: drop\n'),
    5,
    /'70000' is not a port; use a number from 0 to 65535/,
  ],
  [
    'a backwards range',
    inputRules('      - protocol: tcp\n        sport: [1, 90-80]\n        action: drop\n'),
    5,
    /port range '90-80' runs backwards/,
  ],
  [
    'a port name',
    inputRules('      - protocol: tcp\n        dport: http\n        action: drop\n'),
    5,
    /'http' is not a port/,
  ],
  [
    'an unknown action',
    inputRules('      - action: allow\n'),
    4,
    /unknown action 'allow'; use accept, drop, reject, jump CHAIN or return/,
  ],
  ['a rule without action', inputRules('      - protocol: tcp\n'), 4, /the rule has no action; add action:/],
  [
    'settings without commit',
    inputRules('      - action: accept set mark=1\n'),
    4,
    /write accept, or accept commit followed by/,
  ],
  [
    'a bad reject kind',
    inputRules('      - action: reject with icmp-go-away\n'),
    4,
    /write reject or reject with icmp-port-unreachable\|/,
  ],
  [
    'a mark bit outside its mask',
    inputRules('      - action: accept commit set mark=0x3/0x1\n'),
    4,
    /the value has bits outside the mask/,
  ],
  [
    'a jump to an unknown chain',
    inputRules('      - action: jump nowhere\n'),
    4,
    /jump to unknown chain 'nowhere'; define it under chains: or fix the name/,
  ],
  ['a jump to a hook', inputRules('      - action: jump output\n'), 4, /jump to 'output', the output hook's chain/],
  [
    'an unknown set',
    inputRules('      - src: $admins\n        action: accept\n'),
    4,
    /unknown set '\$admins'; define it under sets: or fix the name/,
  ],
  [
    'a set of the wrong kind',
    inputRules(
      '      - protocol: tcp\n        dport: $nets\n        action: accept\n',
      'sets:\n  nets:\n    addresses: [10.0.0.0/8]\n',
    ),
    5,
    /set '\$nets' holds addresses, not ports; use a set of ports here/,
  ],
  [
    'a loop of jumps',
    inputRules('      - action: jump A\n', CHAINS_AB),
    9,
    /jump to 'A' makes a loop A → B → A; remove one of these jumps/,
  ],
  [
    'a chain jumping to itself',
    'chains:\n  A:\n    - action: drop\n    - action: jump A\n',
    4,
    /chain 'A' jumps to itself/,
  ],
  [
    'a port without a protocol',
    inputRules('      - dport: 22\n        action: accept\n'),
    4,
    /dport needs protocol tcp, udp or sctp/,
  ],
  [
    'IPv4 and IPv6 in one rule',
    inputRules('      - src: 10.0.0.0/8\n        dst: "2001:db8::/32"\n        action: accept\n'),
    4,
    /mixes IPv4 and IPv6/,
  ],
  ['tcp-reset without tcp', inputRules('      - action: reject with tcp-reset\n'), 4, /tcp-reset needs protocol tcp/],
  [
    'an unknown ct_state flag',
    inputRules('      - ct-state: +trk+estab\n        action: accept\n'),
    4,
    /unknown flag 'estab'/,
  ],
  [
    'an impossible ct_state',
    inputRules('      - ct-state: +new+est\n        action: accept\n'),
    4,
    /never matches: new and est exclude each other/,
  ],
  [
    'an unknown state name',
    inputRules('      - ct-state: [NEW, ESTABLISHD]\n        action: accept\n'),
    4,
    /unknown connection state 'ESTABLISHD'/,
  ],
  ['a bad policy', 'hooks:\n  input:\n    policy: reject\n', 3, /policy 'reject' is not accept or drop/],
  [
    'rules that are not a list',
    'hooks:\n  input:\n    rules:\n      action: drop\n',
    4,
    /must be a list: start each rule with '- '/,
  ],
  ['a YAML syntax error', 'hooks:\n  input:\n    rules: [\n', 4, /fix the YAML \(or JSON\) syntax there/],
  ['a duplicate key', 'hooks:\n  input: {}\n  input: {}\n', 3, /Map keys must be unique/],
  ['an empty file', '', 1, /the rules file is empty/],
  ['a chain named like a hook', 'chains:\n  forward: []\n', 2, /chain 'forward' is the forward hook's chain/],
  [
    'a chain in the groups namespace',
    'chains:\n  sg-mine: []\nsecurity-groups:\n  g: {}\n',
    2,
    /chain 'sg-mine' starts with 'sg-'/,
  ],
  [
    'an unknown remote group',
    'security-groups:\n  g:\n    rules:\n      - direction: ingress\n        remote-group: h\n',
    5,
    /remote-group 'h' is not a security group/,
  ],
  [
    'group ports without a protocol',
    'security-groups:\n  g:\n    rules:\n      - direction: ingress\n        ports: 80\n',
    5,
    /ports need protocol tcp, udp or sctp/,
  ],
  [
    'a group rule without direction',
    'security-groups:\n  g:\n    rules:\n      - protocol: tcp\n',
    4,
    /has no direction/,
  ],
  [
    'a bad device name',
    inputRules('      - in-dev: this-name-is-too-long\n        action: accept\n'),
    4,
    /is not a device name/,
  ],
  ['keep-established not a boolean', 'keep-established: yes\n', 1, /keep-established must be true or false/],
  [
    'a zone over 16 bits',
    inputRules('      - zone: 65536\n        action: accept\n'),
    4,
    /zone '65536' is not a whole number from 0 to 65535/,
  ],
  [
    'an empty address list',
    inputRules('      - src: []\n        action: accept\n'),
    4,
    /an empty list matches nothing/,
  ],
  [
    'a helper without its protocol',
    inputRules('      - dport: 21\n        protocol: udp\n        action: accept commit helper ftp\n'),
    4,
    /helper ftp runs on tcp connections; add protocol: tcp/,
  ],
  [
    'a set of both kinds',
    'sets:\n  s:\n    addresses: []\n    ports: []\n',
    2,
    /set s needs exactly one of addresses: or ports:/,
  ],
];

for (const [what, text, line, pattern] of BAD) {
  test(`refused with its line: ${what}`, (t) => {
    const err = t.throws(() => parseRulesFile(text, 'bad.yaml'), { instanceOf: UsageError });
    t.true(err.message.startsWith(`bad.yaml:${line}: `), err.message);
    t.regex(err.message, pattern);
    t.false(err.message.includes('\n'), 'one line');
  });
}

test('jumps may nest 32 deep, not 33', (t) => {
  const nest = (depth: number) => {
    let text = inputRules('      - action: jump c1\n') + 'chains:\n';
    for (let i = 1; i <= depth; i++) text += `  c${i}:\n    - action: ${i < depth ? `jump c${i + 1}` : 'accept'}\n`;
    return text;
  };
  t.notThrows(() => parseRulesFile(nest(32), 'deep.yaml'));
  const err = t.throws(() => parseRulesFile(nest(33), 'deep.yaml'), { instanceOf: UsageError });
  t.regex(err.message, /^deep\.yaml:\d+: jumps nest more than 32 deep \(input → c1 → … → /);
});

test('a set of 10,000 prefixes is one set and one rule', (t) => {
  const cidrs = Array.from({ length: 10_000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const text =
    `sets:\n  many:\n    addresses: [${cidrs.join(', ')}]\n` + inputRules('      - src: $many\n        action: drop\n');
  const rs = parseRulesFile(text, 'many.yaml');
  const many = rs.sets.get('many');
  t.is(many?.kind === 'address' ? many.cidrs.length : 0, 10_000);
  t.is(rs.chains.get('input')!.rules.length, 1);
});
