// A full table must not cost live connections: established connections keep
// their entries under a flood of never-answered new flows.
import { Datapath } from '../src/datapath/datapath';
import { frame, PROTO } from '../lab/packetCraft';
import { privTest } from './helpers/privilege';
import { countConns, findConn, reasonCount, runPacket } from './helpers/datapath';

const TABLE = 256;
const S4 = '10.200.2.2';

privTest('established connections survive a flood of new flows ten times the table size', async (t) => {
  const dp = await Datapath.load({ sizes: { ctTcp: TABLE, ctAny: TABLE } });
  try {
    const established = Array.from({ length: 20 }, (_, i) => ({ src: `10.200.1.${i + 1}`, sport: 40000 + i }));
    const pkt = (c: { src: string; sport: number }, flags: string, reply = false) =>
      reply
        ? frame({ src: S4, dst: c.src, l4: { tcp: { sport: 443, dport: c.sport, flags } } })
        : frame({ src: c.src, dst: S4, l4: { tcp: { sport: c.sport, dport: 443, flags } } });
    for (const c of established) {
      await runPacket(dp, pkt(c, 'S'));
      await runPacket(dp, pkt(c, 'SA', true));
      t.is((await runPacket(dp, pkt(c, 'A'))).state, '+trk+est');
    }
    // A UDP flow that has seen its reply is assured too.
    const udpOut = frame({ src: '10.200.1.99', dst: S4, l4: { udp: { sport: 5000, dport: 53 } } });
    await runPacket(dp, udpOut);
    await runPacket(dp, frame({ src: S4, dst: '10.200.1.99', l4: { udp: { sport: 53, dport: 5000 } } }));

    // The flood: SYNs and UDP datagrams from ever new sources, never answered.
    const flood = TABLE * 10;
    for (let i = 0; i < flood; i++) {
      const src = `10.200.${100 + (i >> 8)}.${i & 0xff}`;
      const r = await runPacket(
        dp,
        frame({ src, dst: S4, l4: { tcp: { sport: 1024 + (i % 60000), dport: 443, flags: 'S' } } }),
      );
      if (r.state !== '+trk+new') t.fail(`flood SYN ${i}: ${r.state}`);
      await runPacket(dp, frame({ src, dst: S4, l4: { udp: { sport: 1024 + i, dport: 53 } } }));
    }

    for (const c of established) {
      const tuple = { family: 4 as const, proto: PROTO.tcp, src: c.src, dst: S4, sport: c.sport, dport: 443, zone: 0 };
      t.truthy(findConn(dp, tuple), `${c.src}:${c.sport} kept its entry`);
      t.is((await runPacket(dp, pkt(c, 'PA'))).state, '+trk+est', `${c.src}:${c.sport} still established`);
      t.is((await runPacket(dp, pkt(c, 'A', true))).state, '+trk+est+rpl');
    }
    t.is((await runPacket(dp, udpOut)).state, '+trk+est', 'the answered UDP flow kept its entry');
    const evicted = reasonCount(dp, 'CT_EVICTED');
    // Every insert beyond each table's capacity evicted exactly one unassured entry.
    const inserts = established.length + flood + 1 + flood;
    t.is(evicted, inserts - 2 * TABLE, 'unassured entries made room, one per insert into a full table');
    t.is(reasonCount(dp, 'DROP_CT_TABLE_FULL'), 0, 'no insert failed while something was evictable');
    t.true((await countConns(dp)) <= 2 * TABLE);
  } finally {
    dp.close();
  }
});

for (const ctFullPass of [false, true]) {
  privTest(
    `a table full of assured connections refuses new ones: ${ctFullPass ? 'passed untracked' : 'dropped'}, counted`,
    async (t) => {
      const dp = await Datapath.load({ sizes: { ctTcp: 64, ctAny: 64 }, config: { ctFullPass } });
      try {
        for (let i = 0; i < 64; i++) {
          const c = `10.200.1.${i + 1}`;
          await runPacket(dp, frame({ src: c, dst: S4, l4: { udp: { sport: 7000, dport: 53 } } }));
          await runPacket(dp, frame({ src: S4, dst: c, l4: { udp: { sport: 53, dport: 7000 } } }));
        }
        const r = await runPacket(dp, frame({ src: '10.200.3.3', dst: S4, l4: { udp: { sport: 7000, dport: 53 } } }));
        if (ctFullPass) {
          t.is(r.verdict, 0, 'the packet passes');
          t.is(r.state, '-trk', 'untracked: no later stage may take it for a connection');
          t.is(reasonCount(dp, 'CT_FULL_PASSED'), 1);
          t.is(reasonCount(dp, 'DROP_CT_TABLE_FULL'), 0, 'a packet that passes is not counted as a drop');
        } else {
          t.is(r.verdict, 2, 'the packet is dropped, as nf_conntrack and Cilium drop it');
          t.is(r.reason, 'DROP_CT_TABLE_FULL');
          t.is(reasonCount(dp, 'DROP_CT_TABLE_FULL'), 1);
          t.is(reasonCount(dp, 'CT_FULL_PASSED'), 0);
        }
        t.is(reasonCount(dp, 'CT_EVICTED'), 0, 'no assured entry was evicted');
        t.is(await countConns(dp), 64, 'no entry was made for it');
      } finally {
        dp.close();
      }
    },
  );
}
