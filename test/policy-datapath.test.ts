// The stateful firewall in the real datapath (BPF_PROG_TEST_RUN): rules
// compiled by src/policy, written by PolicyWriter into the maps, judged by
// bpf/include/policy.h and firewall.h. Each test checks what a user of
// iptables' state match or OVS's ct(commit) would: verdicts, ct_state, the
// entry (or its absence), its mark, and the rule counters.
import { Datapath } from '../src/datapath/datapath';
import { FW_MAPS } from '../src/datapath/tables';
import { frame, PROTO } from '../lab/packetCraft';
import { parseRulesFile } from '../src/policy/rulesFile';
import { flatPolicyOf, FwMaps, PolicyWriter } from '../src/policy/policyMaps';
import { privTest } from './helpers/privilege';
import { countConns, findConn, runPacket } from './helpers/datapath';

const C = '10.200.1.2';
const S = '10.200.2.2';
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const syn = (dport: number, sport = 41234) =>
  frame({ src: C, dst: S, l4: { tcp: { sport, dport, flags: 'S', seq: 1000 } } });
const out = (flags: string, dport = 80, sport = 41234) =>
  frame({ src: C, dst: S, l4: { tcp: { sport, dport, flags, seq: 1001 } } });
const back = (flags: string, sport = 80, dport = 41234) =>
  frame({ src: S, dst: C, l4: { tcp: { sport, dport, flags, seq: 5000 } } });
const tuple = (dport: number, sport = 41234) => ({
  family: 4 as const,
  proto: PROTO.tcp,
  src: C,
  dst: S,
  sport,
  dport,
  zone: 0,
});

// A test-run packet's hook is input or forward depending on the FIB of the
// namespace the test runs in; the rules are the same chain on both.
function ruleSet(rules: string, opts: { keepEstablished?: boolean } = {}): string {
  return `${opts.keepEstablished ? 'keep-established: true\n' : ''}hooks:
  input:
    policy: drop
    rules:
      - action: jump fw
  forward:
    policy: drop
    rules:
      - action: jump fw
chains:
  fw:
${rules}`;
}

/** Seed 002's router policy: established and related pass, new TCP to port 80 is allowed, the rest dropped. */
const SEED_002 = ruleSet(`    - ct-state: [ESTABLISHED, RELATED]
      action: accept
    - ct-state: INVALID
      action: drop
    - protocol: tcp
      dport: 80
      ct-state: NEW
      action: accept
`);

async function withFirewall(
  rules: string,
  fn: (dp: Datapath, w: PolicyWriter, apply: (text: string) => Promise<void>) => Promise<void>,
): Promise<void> {
  const dp = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 } });
  try {
    const maps = Object.fromEntries(FW_MAPS.map((m) => [m, dp.maps[m]])) as unknown as FwMaps;
    const w = new PolicyWriter(maps, 0);
    const apply = async (text: string) => {
      await w.apply(flatPolicyOf(parseRulesFile(text, 'rules.yaml')), () => null);
    };
    await apply(rules);
    await fn(dp, w, apply);
  } finally {
    dp.close();
  }
}

privTest(
  "seed 002's policy: the allowed connection passes both ways, the others are dropped and leave no entry",
  async (t) => {
    await withFirewall(SEED_002, async (dp) => {
      let r = await runPacket(dp, syn(80));
      t.is(r.verdict, TC_ACT_OK);
      t.is(r.state, '+trk+new');
      t.truthy(findConn(dp, tuple(80)), 'the accepted connection was committed');
      r = await runPacket(dp, back('SA'));
      t.is(r.verdict, TC_ACT_OK, 'the reply passes as established');
      t.is(r.state, '+trk+est+rpl');
      for (let i = 0; i < 3; i++) t.is((await runPacket(dp, out('A'))).verdict, TC_ACT_OK);

      r = await runPacket(dp, syn(22, 41235));
      t.is(r.verdict, TC_ACT_SHOT, 'a new connection to port 22 is dropped');
      t.is(r.reason, 'DROP_POLICY_DENIED');
      t.is(findConn(dp, tuple(22, 41235)), null, 'and leaves no entry (commit on accept)');

      r = await runPacket(dp, out('SF', 80, 41236));
      t.is(r.verdict, TC_ACT_SHOT, 'SYN+FIN is dropped as +inv');
      t.is(r.state, '+trk+inv');
      t.is(await countConns(dp), 1);
    });
  },
);

privTest(
  'commit on accept: 10x the table size of denied SYNs leave it empty; an allowed connection works throughout',
  async (t) => {
    await withFirewall(SEED_002, async (dp) => {
      let dropped = 0;
      for (let i = 0; i < 10_240; i++) {
        const r = await runPacket(dp, syn(443, 1024 + (i % 60_000)));
        if (r.verdict === TC_ACT_SHOT && r.reason === 'DROP_POLICY_DENIED') dropped++;
        if (i === 5000) {
          t.is((await runPacket(dp, syn(80))).verdict, TC_ACT_OK, 'allowed in the middle of the flood');
          t.is((await runPacket(dp, back('SA'))).verdict, TC_ACT_OK);
        }
      }
      t.is(dropped, 10_240);
      t.is(await countConns(dp), 1, 'only the allowed connection holds an entry');
      t.is((await runPacket(dp, out('A'))).verdict, TC_ACT_OK);
    });
  },
);

privTest('mark set on commit is stored on the connection and matched by a later rule', async (t) => {
  const rules = ruleSet(`    - ct-mark: 0x7/0xff
      protocol: tcp
      action: drop
    - ct-state: [ESTABLISHED, RELATED]
      action: accept
    - protocol: tcp
      dport: 80
      action: accept commit set mark=0x5/0xff
    - protocol: tcp
      dport: 81
      action: accept commit set mark=0x7/0xff
`);
  await withFirewall(rules, async (dp) => {
    t.is((await runPacket(dp, syn(80))).verdict, TC_ACT_OK);
    t.is(findConn(dp, tuple(80))!.mark, 5);
    const r = await runPacket(dp, back('SA'));
    t.is(r.verdict, TC_ACT_OK);
    t.is(r.mark, 5, 'the reply carries the connection mark');
    // Mark 7: committed, and then every later packet of it is dropped by the ct-mark rule.
    t.is((await runPacket(dp, syn(81, 50000))).verdict, TC_ACT_OK);
    t.is(findConn(dp, tuple(81, 50000))!.mark, 7);
    const rep = await runPacket(dp, back('SA', 81, 50000));
    t.is(rep.verdict, TC_ACT_SHOT, 'the reply of the mark-7 connection is dropped by the ct-mark rule');
    t.is(rep.reason, 'DROP_POLICY_DENIED');
  });
});

privTest('a rule change cuts a connection the new rules would not accept; keep-established keeps it', async (t) => {
  const allow80 = SEED_002;
  const allow81 = ruleSet(`    - ct-state: [ESTABLISHED, RELATED]
      action: accept
    - protocol: tcp
      dport: 81
      action: accept
`);
  await withFirewall(allow80, async (dp, _w, apply) => {
    t.is((await runPacket(dp, syn(80))).verdict, TC_ACT_OK);
    t.is((await runPacket(dp, back('SA'))).verdict, TC_ACT_OK);
    t.is((await runPacket(dp, out('A'))).verdict, TC_ACT_OK);
    await apply(allow81);
    const r = await runPacket(dp, out('PA'));
    t.is(r.verdict, TC_ACT_SHOT, 'its next packet is dropped');
    t.is(r.reason, 'DROP_POLICY_CUT');
    t.is(findConn(dp, tuple(80)), null, 'and its entry is gone');
    t.is((await runPacket(dp, back('A'))).verdict, TC_ACT_SHOT, 'the reply direction is dropped too');

    // With keep-established, the same change leaves an established connection alone.
    await apply(ruleSet(SEED_002.slice(SEED_002.indexOf('    - ct-state')), { keepEstablished: true }));
    t.is((await runPacket(dp, syn(80, 42000))).verdict, TC_ACT_OK);
    t.is((await runPacket(dp, back('SA', 80, 42000))).verdict, TC_ACT_OK);
    await apply(ruleSet(allow81.slice(allow81.indexOf('    - ct-state')), { keepEstablished: true }));
    t.is((await runPacket(dp, out('A', 80, 42000))).verdict, TC_ACT_OK, 'kept');
    t.truthy(findConn(dp, tuple(80, 42000)));
    t.is((await runPacket(dp, syn(80, 42001))).verdict, TC_ACT_SHOT, 'a new connection to 80 is not accepted');
  });
});

privTest('rule counters count the packets each rule decided, and the policy its own', async (t) => {
  await withFirewall(SEED_002, async (dp, w) => {
    await runPacket(dp, syn(80));
    await runPacket(dp, back('SA'));
    await runPacket(dp, out('A'));
    await runPacket(dp, out('A'));
    await runPacket(dp, syn(22, 41299));
    const compiled = await w.apply(flatPolicyOf(parseRulesFile(SEED_002, 'rules.yaml')), () => null);
    // A fresh generation starts at zero: the counters belong to the rule set that is live.
    const c = w.counters(compiled.counters.length);
    t.true(c.rules.every((r) => r.packets === 0n));
    await runPacket(dp, out('A'));
    await runPacket(dp, out('A'));
    await runPacket(dp, syn(22, 41300));
    const after = w.counters(compiled.counters.length);
    const byOrigin = (chain: string, index: number) =>
      after.rules[compiled.counters.findIndex((o) => o.chain === chain && o.index === index)].packets;
    t.is(byOrigin('fw', 0), 2n, 'the established rule decided both packets of the live connection');
    const policy = after.policy.input.packets + after.policy.forward.packets;
    t.is(policy, 1n, 'the SYN to port 22 was decided by the default policy');
  });
});

privTest(
  "seed 001's OVS walk-through: +trk+new from the left commits, +trk+est passes both ways, the right cannot open",
  async (t) => {
    // table=0: +trk+new from the left port: ct(commit); +trk+est: forward both ways; everything else dropped.
    const rules = ruleSet(`    - ct-state: +trk+new
      src: 10.200.1.0/24
      action: accept commit set label=0x1/0x1
    - ct-state: +trk+est
      action: accept
`);
    await withFirewall(rules, async (dp) => {
      const steps: Array<[string, Buffer, string]> = [
        ['SYN from the left', syn(80), '+trk+new'],
        ['SYN-ACK from the right', back('SA'), '+trk+est+rpl'],
        ['ACK from the left', out('A'), '+trk+est'],
        ['FIN-ACK from the left', out('FA'), '+trk+est'],
        ['FIN-ACK from the right', back('FA'), '+trk+est+rpl'],
        ['last ACK from the left', out('A'), '+trk+est'],
      ];
      for (const [what, pkt, state] of steps) {
        const r = await runPacket(dp, pkt);
        t.is(r.verdict, TC_ACT_OK, what);
        t.is(r.state, state, what);
      }
      t.is(findConn(dp, tuple(80))!.label, '1', 'the label set on commit is on the connection, as ct list shows it');
      // The right side opening a connection of its own: +trk+new, not from the left: dropped, nothing committed.
      const r = await runPacket(
        dp,
        frame({ src: S, dst: C, l4: { tcp: { sport: 55000, dport: 22, flags: 'S', seq: 1 } } }),
      );
      t.is(r.verdict, TC_ACT_SHOT);
      t.is(r.reason, 'DROP_POLICY_DENIED');
      t.is(await countConns(dp), 1, 'the denied direction left no entry');
    });
  },
);

privTest('zones: the same rules judge each zone apart, and a zone match keeps to its zone', async (t) => {
  const rules = ruleSet(`    - ct-state: [ESTABLISHED, RELATED]
      action: accept
    - zone: 0
      protocol: tcp
      dport: 80
      action: accept
`);
  await withFirewall(rules, async (dp) => {
    t.is((await runPacket(dp, syn(80))).verdict, TC_ACT_OK, 'zone 0 may open port 80');
    // The test-run device (lo) registered in zone 7: the same packet is another connection there, and denied.
    dp.setDevice(1, 7);
    const r = await runPacket(dp, syn(80, 41300));
    t.is(r.zone, 7);
    t.is(r.verdict, TC_ACT_SHOT, 'zone 7 is not zone 0');
    t.is(findConn(dp, { ...tuple(80, 41300), zone: 7 }), null);
  });
});
