// UDP, ICMP and ICMPv6, related errors, IPv6 extension headers, fragments,
// zones and forwarded packets, through the real datapath program.
import { Datapath } from '../src/datapath/datapath';
import { frame, ipPacket, ethernet, fragment4, fragment6, PROTO } from '../lab/packetCraft';
import { privTest } from './helpers/privilege';
import { timeoutS } from './helpers/datapath';
import { countConns, findConn, reasonCount, runPacket } from './helpers/datapath';

const SMALL = { sizes: { ctTcp: 1024, ctAny: 1024 } };
const C4 = '10.200.1.2';
const S4 = '10.200.2.2';
const R4 = '10.200.9.1';
const C6 = 'fd00:200::1:2';
const S6 = 'fd00:200::2:2';
const R6 = 'fd00:200::9:1';

privTest('UDP request and reply', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const req = frame({ src: C4, dst: S4, l4: { udp: { sport: 5353, dport: 53, payload: Buffer.alloc(20) } } });
    const rep = frame({ src: S4, dst: C4, l4: { udp: { sport: 53, dport: 5353, payload: Buffer.alloc(60) } } });
    t.is((await runPacket(dp, req)).state, '+trk+new');
    t.is((await runPacket(dp, req)).state, '+trk+new', 'still new until a reply is seen');
    t.is((await runPacket(dp, rep)).state, '+trk+est+rpl');
    t.is((await runPacket(dp, req)).state, '+trk+est');
    const e = findConn(dp, { family: 4, proto: PROTO.udp, src: C4, dst: S4, sport: 5353, dport: 53, zone: 0 })!;
    t.deepEqual(e.packets, [3, 1]);
    t.deepEqual(e.bytes, [3 * 48, 88]);
    t.is(timeoutS(e), 60);
  } finally {
    dp.close();
  }
});

privTest('ICMP and ICMPv6 echo: the identifier stands in for ports', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    for (const [c, s, req, rep] of [
      [C4, S4, 8, 0],
      [C6, S6, 128, 129],
    ] as const) {
      const ping = (seq: number) => frame({ src: c, dst: s, l4: { icmp: { type: req, id: 77, seq } } });
      const pong = (seq: number) => frame({ src: s, dst: c, l4: { icmp: { type: rep, id: 77, seq } } });
      t.is((await runPacket(dp, ping(1))).state, '+trk+new');
      t.is((await runPacket(dp, pong(1))).state, '+trk+est+rpl');
      t.is((await runPacket(dp, ping(2))).state, '+trk+est', 'the next request belongs to the same connection');
      const proto = c === C4 ? PROTO.icmp : PROTO.icmpv6;
      const e = findConn(dp, { family: c === C4 ? 4 : 6, proto, src: c, dst: s, sport: 77, dport: 77, zone: 0 })!;
      t.deepEqual(e.packets, [2, 1]);
      t.is(timeoutS(e), 30, 'ICMP timeout applies');
      // An echo reply nobody asked for.
      const stray = await runPacket(dp, frame({ src: s, dst: c, l4: { icmp: { type: rep, id: 78, seq: 1 } } }));
      t.is(stray.state, '+trk+inv');
      t.is(stray.reason, 'INV_ICMP_REPLY_UNKNOWN');
    }
  } finally {
    dp.close();
  }
});

privTest('ICMP port unreachable is related to its UDP flow, and inv for an untracked one', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const req = ipPacket({ src: C4, dst: S4, l4: { udp: { sport: 5000, dport: 9999, payload: Buffer.alloc(10) } } });
    t.is((await runPacket(dp, ethernet(req))).state, '+trk+new');
    const unreach = frame({ src: S4, dst: C4, l4: { icmp: { type: 3, code: 3, payload: req } } });
    const r = await runPacket(dp, unreach);
    t.is(r.state, '+trk+rel+rpl');
    const e = findConn(dp, { family: 4, proto: PROTO.udp, src: C4, dst: S4, sport: 5000, dport: 9999, zone: 0 })!;
    t.deepEqual(e.packets, [1, 1], 'the error is counted on its connection, in the reply direction');
    t.is(reasonCount(dp, 'CT_RELATED'), 1);
    // A time-exceeded from a hop on the way (another source) is related too.
    t.is(
      (await runPacket(dp, frame({ src: R4, dst: C4, l4: { icmp: { type: 11, code: 0, payload: req } } }))).state,
      '+trk+rel+rpl',
    );

    const other = ipPacket({ src: C4, dst: S4, l4: { udp: { sport: 5001, dport: 9999 } } });
    const inv = await runPacket(dp, frame({ src: S4, dst: C4, l4: { icmp: { type: 3, code: 3, payload: other } } }));
    t.is(inv.state, '+trk+inv');
    t.is(inv.reason, 'INV_ICMP_ERROR_UNKNOWN');
    t.is(await countConns(dp), 1, 'errors create no connection');
  } finally {
    dp.close();
  }
});

privTest('ICMPv6 packet too big is related to its TCP flow', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const syn = ipPacket({ src: C6, dst: S6, l4: { tcp: { sport: 40000, dport: 443, flags: 'S' } } });
    await runPacket(dp, ethernet(syn));
    await runPacket(dp, frame({ src: S6, dst: C6, l4: { tcp: { sport: 443, dport: 40000, flags: 'SA' } } }));
    const data = ipPacket({
      src: C6,
      dst: S6,
      l4: { tcp: { sport: 40000, dport: 443, flags: 'PA', payload: Buffer.alloc(1400) } },
    });
    t.is((await runPacket(dp, ethernet(data))).state, '+trk+est');
    const ptb = frame({
      src: R6,
      dst: C6,
      l4: { icmp: { type: 2, code: 0, rest: 1280, payload: data.subarray(0, 1180) } },
    });
    const r = await runPacket(dp, ptb);
    t.is(r.state, '+trk+rel+rpl');
    t.is(r.reason, null);
  } finally {
    dp.close();
  }
});

privTest('IPv6 extension headers are walked to the transport header; too many are inv', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const ext = [{ type: PROTO.hopopts }, { type: PROTO.dstopts, data: Buffer.alloc(14) }, { type: PROTO.routing }];
    const syn = frame({ src: C6, dst: S6, ext, l4: { tcp: { sport: 1111, dport: 22, flags: 'S' } } });
    t.is((await runPacket(dp, syn)).state, '+trk+new');
    const e = findConn(dp, { family: 6, proto: PROTO.tcp, src: C6, dst: S6, sport: 1111, dport: 22, zone: 0 });
    t.truthy(e, 'found by its ports behind three extension headers');
    t.is(e!.bytes[0], 40 + 8 + 16 + 8 + 20);

    const many = frame({
      src: C6,
      dst: S6,
      ext: Array.from({ length: 7 }, () => ({ type: PROTO.dstopts })),
      l4: { udp: { sport: 1, dport: 2 } },
    });
    const r = await runPacket(dp, many);
    t.is(r.state, '+trk+inv');
    t.is(r.reason, 'INV_IPV6_EXT_HEADERS');
  } finally {
    dp.close();
  }
});

privTest('IPv4 and IPv6 fragments: later fragments find their datagram; unknown ones are inv', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const dgram4 = ipPacket({
      src: C4,
      dst: S4,
      id: 4242,
      l4: { udp: { sport: 6000, dport: 7000, payload: Buffer.alloc(100, 1) } },
    });
    const frags4 = fragment4(dgram4, 48);
    t.is(frags4.length, 3);
    for (const f of frags4) t.is((await runPacket(dp, ethernet(f))).state, '+trk+new');
    const e4 = findConn(dp, { family: 4, proto: PROTO.udp, src: C4, dst: S4, sport: 6000, dport: 7000, zone: 0 })!;
    t.is(e4.packets[0], 3, 'every fragment counted on the connection');
    t.is(
      e4.bytes[0],
      frags4.reduce((s, f) => s + f.length, 0),
    );

    const dgram6 = ipPacket({
      src: C6,
      dst: S6,
      l4: { udp: { sport: 6000, dport: 7000, payload: Buffer.alloc(100, 1) } },
    });
    for (const f of fragment6(dgram6, 56)) t.is((await runPacket(dp, ethernet(f))).state, '+trk+new');
    t.is(
      findConn(dp, { family: 6, proto: PROTO.udp, src: C6, dst: S6, sport: 6000, dport: 7000, zone: 0 })!.packets[0],
      2,
    );

    const stray = fragment4(
      ipPacket({ src: C4, dst: S4, id: 999, l4: { udp: { sport: 1, dport: 2, payload: Buffer.alloc(100) } } }),
      48,
    )[1];
    const r = await runPacket(dp, ethernet(stray));
    t.is(r.state, '+trk+inv');
    t.is(r.reason, 'INV_FRAG_UNKNOWN');
    const stray6 = fragment6(
      ipPacket({ src: C6, dst: S6, l4: { udp: { sport: 1, dport: 2, payload: Buffer.alloc(100) } } }),
      56,
      0x7777,
    )[1];
    t.is((await runPacket(dp, ethernet(stray6))).reason, 'INV_FRAG_UNKNOWN');
    t.is(await countConns(dp), 2);
  } finally {
    dp.close();
  }
});

privTest('the same tuple in two zones is two independent connections', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    const syn = frame({ src: C4, dst: S4, l4: { tcp: { sport: 3333, dport: 80, flags: 'S' } } });
    const synack = frame({ src: S4, dst: C4, l4: { tcp: { sport: 80, dport: 3333, flags: 'SA' } } });
    const tuple = { family: 4 as const, proto: PROTO.tcp, src: C4, dst: S4, sport: 3333, dport: 80 };
    dp.setDevice(1, 10); // test runs arrive on lo (ifindex 1)
    t.is((await runPacket(dp, syn)).zone, 10);
    t.is((await runPacket(dp, synack)).state, '+trk+est+rpl');
    dp.setDevice(1, 20);
    const r = await runPacket(dp, syn);
    t.is(r.state, '+trk+new', 'zone 20 has not seen this connection');
    t.is(r.zone, 20);
    t.deepEqual(findConn(dp, { ...tuple, zone: 10 })!.packets, [1, 1]);
    t.deepEqual(findConn(dp, { ...tuple, zone: 20 })!.packets, [1, 0]);
  } finally {
    dp.close();
  }
});

privTest('a packet forwarded between two managed devices is counted once', async (t) => {
  const dp = await Datapath.load(SMALL);
  try {
    dp.setDevice(1, 0);
    const syn = frame({ src: C4, dst: S4, l4: { tcp: { sport: 4444, dport: 80, flags: 'S' } } });
    t.is((await runPacket(dp, syn)).state, '+trk+new');
    // The same packet leaving through the other managed device: it was tracked
    // where it came in, and this device translates nothing, so it passes untouched.
    const r = await runPacket(dp, syn, { hook: 'egress', ingressIfindex: 1 });
    t.is(r.verdict, 0);
    t.is(r.state, '-trk', 'not tracked a second time');
    const e = findConn(dp, { family: 4, proto: PROTO.tcp, src: C4, dst: S4, sport: 4444, dport: 80, zone: 0 })!;
    t.deepEqual(e.packets, [1, 0]);
    t.is(reasonCount(dp, 'TWICE_SKIPPED', 'egress'), 1);
    // A locally generated reply (no ingress device) is tracked at egress.
    const synack = frame({ src: S4, dst: C4, l4: { tcp: { sport: 80, dport: 4444, flags: 'SA' } } });
    t.is((await runPacket(dp, synack, { hook: 'egress' })).state, '+trk+est+rpl');
    t.deepEqual(
      findConn(dp, { family: 4, proto: PROTO.tcp, src: C4, dst: S4, sport: 4444, dport: 80, zone: 0 })!.packets,
      [1, 1],
    );
  } finally {
    dp.close();
  }
});

privTest('with dropInvalid, inv packets are dropped and counted', async (t) => {
  const dp = await Datapath.load({ ...SMALL, config: { dropInvalid: true } });
  try {
    const r = await runPacket(dp, frame({ src: C4, dst: S4, l4: { tcp: { sport: 1, dport: 2, flags: 'SF' } } }));
    t.is(r.verdict, 2, 'TC_ACT_SHOT');
    t.is(reasonCount(dp, 'DROP_INVALID'), 1);
    t.is(
      (await runPacket(dp, frame({ src: C4, dst: S4, l4: { tcp: { sport: 1, dport: 2, flags: 'S' } } }))).verdict,
      0,
    );
  } finally {
    dp.close();
  }
});
