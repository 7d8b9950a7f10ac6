// The TCP state machine and ct_state, packet by packet, through the real
// datapath program (BPF_PROG_TEST_RUN).
import { Datapath } from '../src/datapath/datapath';
import { TCP_STATE_NAMES, CtFlag } from '../src/ct/ctEntry';
import { frame, PROTO } from '../lab/packetCraft';
import { privTest } from './helpers/privilege';
import { timeoutS } from './helpers/datapath';
import { findConn, runPacket } from './helpers/datapath';

const C = '10.200.1.2';
const S = '10.200.2.2';
const tuple = { family: 4 as const, proto: PROTO.tcp, src: C, dst: S, sport: 41234, dport: 80, zone: 0 };
const out = (flags: string, payload = 0, seq = 1000) =>
  frame({ src: C, dst: S, l4: { tcp: { sport: 41234, dport: 80, flags, seq, payload: Buffer.alloc(payload, 0x61) } } });
const back = (flags: string, payload = 0, seq = 5000) =>
  frame({ src: S, dst: C, l4: { tcp: { sport: 80, dport: 41234, flags, seq, payload: Buffer.alloc(payload, 0x62) } } });

privTest('TCP walk-through: ct_state and the entry after each packet', async (t) => {
  const dp = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 } });
  try {
    const state = () => TCP_STATE_NAMES.get(findConn(dp, tuple)!.tcpState);

    let r = await runPacket(dp, out('S'));
    t.is(r.state, '+trk+new');
    t.is(r.verdict, 0);
    t.is(state(), 'SYN_SENT');
    const first = findConn(dp, tuple)!;
    t.deepEqual(first.tuple, tuple, 'the entry names the original direction');
    t.is(timeoutS(first), 60, 'SYN_SENT timeout applies');

    r = await runPacket(dp, back('SA'));
    t.is(r.state, '+trk+est+rpl');
    t.is(state(), 'SYN_RECV');

    r = await runPacket(dp, out('A'));
    t.is(r.state, '+trk+est');
    t.is(state(), 'ESTABLISHED');
    let e = findConn(dp, tuple)!;
    t.is(timeoutS(e), 21600, 'ESTABLISHED timeout applies');
    t.truthy(e.flags & CtFlag.CT_F_ASSURED);

    // Data both ways: 3 out with 100 bytes of payload, 2 back with 500.
    for (let i = 0; i < 3; i++) t.is((await runPacket(dp, out('PA', 100))).state, '+trk+est');
    for (let i = 0; i < 2; i++) t.is((await runPacket(dp, back('PA', 500))).state, '+trk+est+rpl');
    e = findConn(dp, tuple)!;
    // Original: SYN (40) + ACK (40) + 3 x (40 + 100). Reply: SYN-ACK (40) + 2 x (40 + 500).
    t.deepEqual(e.packets, [5, 3]);
    t.deepEqual(e.bytes, [40 + 40 + 3 * 140, 40 + 2 * 540]);
    t.is(e.tcpFlagsSeen[0], 0x1a, 'SYN, ACK and PSH seen from the client');
    t.is(e.tcpFlagsSeen[1], 0x1a, 'SYN, ACK and PSH seen from the server');
    t.truthy(e.flags & CtFlag.CT_F_SEEN_NON_SYN);

    // Close: FIN/ACK, FIN/ACK, ACK.
    t.is((await runPacket(dp, out('FA'))).state, '+trk+est');
    t.is(state(), 'FIN_WAIT');
    t.truthy(findConn(dp, tuple)!.flags & CtFlag.CT_F_TX_CLOSING);
    t.is((await runPacket(dp, back('FA'))).state, '+trk+est+rpl');
    t.is(state(), 'LAST_ACK');
    e = findConn(dp, tuple)!;
    t.is(timeoutS(e), 30, 'LAST_ACK timeout applies');
    t.truthy(e.flags & CtFlag.CT_F_RX_CLOSING);
    t.is((await runPacket(dp, out('A'))).state, '+trk+est');
    t.is(state(), 'TIME_WAIT');
    e = findConn(dp, tuple)!;
    t.is(timeoutS(e), 60, 'TIME_WAIT timeout applies');

    // RST closes.
    t.is((await runPacket(dp, back('R'))).state, '+trk+est+rpl');
    t.is(state(), 'CLOSE');
    e = findConn(dp, tuple)!;
    t.is(timeoutS(e), 10, 'CLOSE timeout applies');

    // A new SYN on the closed tuple starts a new connection.
    r = await runPacket(dp, out('S'));
    t.is(r.state, '+trk+new');
    t.is(state(), 'SYN_SENT');
    t.deepEqual(findConn(dp, tuple)!.packets, [1, 0]);
  } finally {
    dp.close();
  }
});

privTest('RST during the handshake closes; an invalid transition is inv and changes nothing', async (t) => {
  const dp = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 } });
  try {
    await runPacket(dp, out('S'));
    // A SYN-ACK from the client side of a SYN_SENT connection is invalid.
    const r = await runPacket(dp, out('SA'));
    t.is(r.state, '+trk+inv');
    t.is(r.reason, 'INV_TCP_TRANSITION');
    const e = findConn(dp, tuple)!;
    t.is(TCP_STATE_NAMES.get(e.tcpState), 'SYN_SENT');
    t.deepEqual(e.packets, [1, 0], 'the invalid packet was not counted on the connection');
    t.is((await runPacket(dp, back('RA'))).state, '+trk+est+rpl');
    t.is(TCP_STATE_NAMES.get(findConn(dp, tuple)!.tcpState), 'CLOSE');
  } finally {
    dp.close();
  }
});

privTest('mid-stream pickup: adopted as established by default, inv when turned off', async (t) => {
  const loose = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 } });
  try {
    const r = await runPacket(loose, out('PA', 10));
    t.is(r.state, '+trk+new');
    const e = findConn(loose, tuple)!;
    t.is(TCP_STATE_NAMES.get(e.tcpState), 'ESTABLISHED');
    t.truthy(e.flags & CtFlag.CT_F_PICKED_UP);
    t.is((await runPacket(loose, back('A'))).state, '+trk+est+rpl');
    t.is((await runPacket(loose, out('A'))).state, '+trk+est');
  } finally {
    loose.close();
  }
  const strict = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 }, config: { tcpLoose: false } });
  try {
    const r = await runPacket(strict, out('PA', 10));
    t.is(r.state, '+trk+inv');
    t.is(r.reason, 'INV_TCP_NOT_SYN');
    t.is(findConn(strict, tuple), null);
  } finally {
    strict.close();
  }
});
