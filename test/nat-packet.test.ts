// SNAT through the real programs (BPF_PROG_TEST_RUN): each translated packet's
// addresses, ports and checksums, checked here independently of the datapath.
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { ExecutionContext } from 'ava';
import { Datapath } from '../src/datapath/datapath';
import { ethernet, frame, ipPacket, verifyChecksums, PROTO, ETH_HLEN } from '../lab/packetCraft';
import { formatAddr, parseAddr } from '../src/net/addr';
import { ENUMS, StructView } from '../src/bpf/layouts';
import { CtFlag, encodeCtKey } from '../src/ct/ctEntry';
import { gcSweep } from '../src/gc/gcSweep';
import { privTest } from './helpers/privilege';
import { TSCT_BIN } from '../lab/agentProcess';
import { countConns, findConn, reasonCount, runPacket } from './helpers/datapath';

const C = '10.200.1.2';
const C2 = '10.200.1.3';
const S = '10.200.2.2';
const NAT4 = '10.200.2.1';
const C6 = 'fd00:200:1::2';
const S6 = 'fd00:200:2::2';
const NAT6 = 'fd00:200:2::1';

/** Source and destination of a frame, as `addr:port` (ports of TCP/UDP, identifier of ICMP echo). */
function ends(f: Buffer): { src: string; dst: string; sport: number; dport: number } {
  const ip = f.subarray(ETH_HLEN);
  const v4 = ip[0] >> 4 === 4;
  const l4 = ip.subarray(v4 ? (ip[0] & 0xf) * 4 : 40);
  const proto = v4 ? ip[9] : ip[6];
  const icmp = proto === PROTO.icmp || proto === PROTO.icmpv6;
  return {
    src: formatAddr(Buffer.from(v4 ? ip.subarray(12, 16) : ip.subarray(8, 24))),
    dst: formatAddr(Buffer.from(v4 ? ip.subarray(16, 20) : ip.subarray(24, 40))),
    sport: icmp ? l4.readUInt16BE(4) : l4.readUInt16BE(0),
    dport: icmp ? l4.readUInt16BE(4) : l4.readUInt16BE(2),
  };
}

function checksumsOk(t: ExecutionContext, f: Buffer, what: string): void {
  t.deepEqual(verifyChecksums(f), [], `${what}: every checksum verifies`);
}

/** Entries in the IPv4 NAT table. */
async function natCount(dp: Datapath): Promise<number> {
  let n = 0;
  for await (const c of dp.maps.tsct_snat_v4_external.batches()) n += c.count;
  return n;
}

async function natDatapath(config = {}) {
  const dp = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024, nat: 1024 }, config });
  // Test runs arrive on lo (ifindex 1): it plays both sides of the router and masquerades.
  dp.setDevice(1, 0, { snat4: NAT4, snat6: NAT6 });
  return dp;
}

privTest(
  'TCP over IPv4: the source is translated on the way out and the reply back, with valid checksums',
  async (t) => {
    const dp = await natDatapath();
    try {
      const syn = frame({
        src: C,
        dst: S,
        l4: { tcp: { sport: 41000, dport: 443, flags: 'S', payload: Buffer.from('hello') } },
      });
      // In on one device (tracked), out on the masquerading one (translated).
      t.is((await runPacket(dp, syn)).state, '+trk+new');
      const out = await runPacket(dp, syn, { hook: 'egress', ingressIfindex: 1 });
      t.is(out.verdict, 0);
      t.is(out.state, '+trk+new+snat');
      t.like(ends(out.data), { src: NAT4, dst: S, sport: 41000, dport: 443 }, 'the original port is kept when free');
      checksumsOk(t, out.data, 'SYN out');

      const synack = frame({ src: S, dst: NAT4, l4: { tcp: { sport: 443, dport: 41000, flags: 'SA' } } });
      const back = await runPacket(dp, synack);
      t.is(back.state, '+trk+est+rpl+snat');
      t.like(ends(back.data), { src: S, dst: C, sport: 443, dport: 41000 });
      checksumsOk(t, back.data, 'SYN-ACK back');

      const e = findConn(dp, { family: 4, proto: PROTO.tcp, src: C, dst: S, sport: 41000, dport: 443, zone: 0 })!;
      t.truthy(e.flags & CtFlag.CT_F_SNAT, 'the connection records its translation');
      t.is(e.natAddr, NAT4);
      t.is(e.natPort, 41000);
      t.deepEqual(e.packets, [1, 1], 'counted once each way');

      // A second client with the same source port to the same server gets another port.
      const syn2 = frame({ src: C2, dst: S, l4: { tcp: { sport: 41000, dport: 443, flags: 'S' } } });
      await runPacket(dp, syn2);
      const out2 = await runPacket(dp, syn2, { hook: 'egress', ingressIfindex: 1 });
      const e2 = ends(out2.data);
      t.is(e2.src, NAT4);
      t.not(e2.sport, 41000, 'the taken port is not reused');
      t.true(e2.sport >= 32768 && e2.sport <= 60999, `in the port range (${e2.sport})`);
      checksumsOk(t, out2.data, 'second client SYN out');
      const back2 = await runPacket(
        dp,
        frame({ src: S, dst: NAT4, l4: { tcp: { sport: 443, dport: e2.sport, flags: 'SA' } } }),
      );
      t.like(ends(back2.data), { dst: C2, dport: 41000 });
      checksumsOk(t, back2.data, 'second client SYN-ACK back');
    } finally {
      dp.close();
    }
  },
);

privTest('UDP (with and without a checksum) and ICMP echo are translated both ways', async (t) => {
  const dp = await natDatapath();
  try {
    for (const zero of [false, true]) {
      const sport = zero ? 5001 : 5000;
      const req = frame({
        src: C,
        dst: S,
        l4: { udp: { sport, dport: 53, payload: Buffer.from('query'), zeroChecksum: zero } },
      });
      const out = await runPacket(dp, req, { hook: 'egress' });
      t.like(ends(out.data), { src: NAT4, sport });
      checksumsOk(t, out.data, `UDP out${zero ? ' (no checksum)' : ''}`);
      if (zero) t.is(out.data.readUInt16BE(ETH_HLEN + 20 + 6), 0, 'a zero UDP checksum stays zero');
      const rep = await runPacket(
        dp,
        frame({
          src: S,
          dst: NAT4,
          l4: { udp: { sport: 53, dport: sport, payload: Buffer.from('answer'), zeroChecksum: zero } },
        }),
      );
      t.like(ends(rep.data), { dst: C, dport: sport });
      t.is(rep.state, '+trk+est+rpl+snat');
      checksumsOk(t, rep.data, 'UDP back');
    }
    const ping = await runPacket(dp, frame({ src: C, dst: S, l4: { icmp: { type: 8, id: 777, seq: 1 } } }), {
      hook: 'egress',
    });
    t.like(ends(ping.data), { src: NAT4, sport: 777 });
    checksumsOk(t, ping.data, 'echo request out');
    const pong = await runPacket(dp, frame({ src: S, dst: NAT4, l4: { icmp: { type: 0, id: 777, seq: 1 } } }));
    t.like(ends(pong.data), { dst: C, sport: 777 });
    t.is(pong.state, '+trk+est+rpl+snat');
    checksumsOk(t, pong.data, 'echo reply back');
  } finally {
    dp.close();
  }
});

privTest('ICMP errors about a translated flow come back translated, outer and inner, checksums right', async (t) => {
  const dp = await natDatapath();
  try {
    // Two clients on the same port, so that the second is remapped and the error must restore it.
    for (const c of [C, C2])
      await runPacket(
        dp,
        frame({ src: c, dst: S, l4: { udp: { sport: 6000, dport: 9999, payload: Buffer.alloc(12) } } }),
        { hook: 'egress' },
      );
    const dgram = ipPacket({ src: C2, dst: S, l4: { udp: { sport: 6000, dport: 9999, payload: Buffer.alloc(12) } } });
    const sent = await runPacket(dp, ethernet(dgram), { hook: 'egress' });
    const natPort = ends(sent.data).sport;
    t.not(natPort, 6000);
    const quoted = sent.data.subarray(ETH_HLEN);

    for (const [what, from, type, code] of [
      ['port unreachable from the server', S, 3, 3],
      ['time exceeded from a hop', '10.200.9.1', 11, 0],
    ] as const) {
      const err = frame({ src: from, dst: NAT4, l4: { icmp: { type, code, payload: quoted } } });
      const r = await runPacket(dp, err);
      t.is(r.state, '+trk+rel+rpl+snat', what);
      t.like(ends(r.data), { src: from, dst: C2 }, `${what}: outer destination translated`);
      const inner = r.data.subarray(ETH_HLEN + 20 + 8);
      t.is(formatAddr(Buffer.from(inner.subarray(12, 16))), C2, `${what}: inner source translated`);
      t.is(inner.readUInt16BE(20), 6000, `${what}: inner source port translated`);
      checksumsOk(t, r.data, what);
    }

    // ICMPv6 packet too big about a translated TCP connection.
    const syn6 = ipPacket({ src: C6, dst: S6, l4: { tcp: { sport: 7000, dport: 443, flags: 'S' } } });
    const out6 = await runPacket(dp, ethernet(syn6), { hook: 'egress' });
    t.like(ends(out6.data), { src: NAT6, sport: 7000 });
    checksumsOk(t, out6.data, 'IPv6 SYN out');
    await runPacket(dp, frame({ src: S6, dst: NAT6, l4: { tcp: { sport: 443, dport: 7000, flags: 'SA' } } }));
    const ptb = frame({
      src: 'fd00:200:9::1',
      dst: NAT6,
      l4: { icmp: { type: 2, rest: 1280, payload: out6.data.subarray(ETH_HLEN) } },
    });
    const r6 = await runPacket(dp, ptb);
    t.is(r6.state, '+trk+rel+rpl+snat');
    t.like(ends(r6.data), { dst: C6 });
    checksumsOk(t, r6.data, 'ICMPv6 packet too big');
  } finally {
    dp.close();
  }
});

privTest(
  'when the port range is used up, the next new connection is dropped and counted; existing ones keep working',
  async (t) => {
    const dp = await natDatapath({ natPortMin: 40000, natPortMax: 40001, natRangeStrict: true });
    try {
      const ports: number[] = [];
      for (const c of ['10.200.1.11', '10.200.1.12']) {
        const r = await runPacket(dp, frame({ src: c, dst: S, l4: { tcp: { sport: 50000, dport: 80, flags: 'S' } } }), {
          hook: 'egress',
        });
        t.is(r.verdict, 0);
        ports.push(ends(r.data).sport);
      }
      t.deepEqual(ports.sort(), [40000, 40001], 'an explicit range is used even when the original port is free');
      const third = await runPacket(
        dp,
        frame({ src: '10.200.1.13', dst: S, l4: { tcp: { sport: 50000, dport: 80, flags: 'S' } } }),
        { hook: 'egress' },
      );
      t.is(third.verdict, 2, 'dropped');
      t.is(third.reason, 'DROP_NAT_PORT_EXHAUSTED');
      t.is(reasonCount(dp, 'DROP_NAT_PORT_EXHAUSTED'), 1);
      const again = await runPacket(
        dp,
        frame({ src: '10.200.1.11', dst: S, l4: { tcp: { sport: 50000, dport: 80, flags: 'PA' } } }),
        { hook: 'egress' },
      );
      t.is(again.verdict, 0, 'an existing connection keeps its mapping');
    } finally {
      dp.close();
    }
  },
);

privTest(
  'a live connection carries its mapping: packets out are translated from it, and a lost NAT entry is put back by the GC',
  async (t) => {
    const dp = await natDatapath();
    try {
      const pkt = (flags: string) => frame({ src: C, dst: S, l4: { tcp: { sport: 42000, dport: 443, flags } } });
      const reply = frame({ src: S, dst: NAT4, l4: { tcp: { sport: 443, dport: 42000, flags: 'A' } } });
      await runPacket(dp, pkt('S'), { hook: 'egress' });
      await runPacket(dp, frame({ src: S, dst: NAT4, l4: { tcp: { sport: 443, dport: 42000, flags: 'SA' } } }));
      t.is(await natCount(dp), 1, 'the NAT table holds the reply direction only');
      // The NAT entry disappears (deleted by hand); the connection lives on, and remembers its translation.
      for (const k of [...dp.maps.tsct_snat_v4_external.keys()]) dp.maps.tsct_snat_v4_external.delete(k);
      const e = findConn(dp, { family: 4, proto: PROTO.tcp, src: C, dst: S, sport: 42000, dport: 443, zone: 0 })!;
      t.is(e.natPort, 42000);
      const r = await runPacket(dp, pkt('A'), { hook: 'egress' });
      t.is(r.verdict, 0);
      t.is(r.state, '+trk+est+snat');
      t.like(
        ends(r.data),
        { src: NAT4, sport: 42000 },
        'same address and port as before, with no NAT entry to look up',
      );
      t.is(reasonCount(dp, 'NAT_NEW'), 1, 'no second mapping was made');
      const g = await gcSweep(dp.gc);
      t.is(g.natRecreated, 1, 'the sweep put the entry back');
      t.is(reasonCount(dp, 'NAT_RECREATED'), 1);
      const back = await runPacket(dp, reply);
      t.like(ends(back.data), { dst: C, dport: 42000 }, 'and replies find their way back');
      t.is((await gcSweep(dp.gc)).natRecreated, 0, 'once back, it stays');
    } finally {
      dp.close();
    }
  },
);

privTest('a connection reopened on the same tuple keeps its port instead of taking a second one', async (t) => {
  const dp = await natDatapath();
  try {
    const pkt = (flags: string) => frame({ src: C, dst: S, l4: { tcp: { sport: 43000, dport: 443, flags } } });
    t.like(ends((await runPacket(dp, pkt('S'), { hook: 'egress' })).data), { sport: 43000 });
    await runPacket(dp, frame({ src: S, dst: NAT4, l4: { tcp: { sport: 443, dport: 43000, flags: 'SA' } } }));
    await runPacket(dp, pkt('R'), { hook: 'egress' });
    // The closed connection's tuple comes again: a new connection over the old entry.
    const again = await runPacket(dp, pkt('S'), { hook: 'egress' });
    t.is(again.state, '+trk+new+snat');
    t.like(
      ends(again.data),
      { src: NAT4, sport: 43000 },
      'the port its old IN entry still holds is taken over, not probed around',
    );
    t.is(reasonCount(dp, 'NAT_PORT_RETRY'), 0);
    t.is(await natCount(dp), 1);
  } finally {
    dp.close();
  }
});

privTest(
  'a connection whose mapping was forgotten (nat flush) takes a new one on its next packet, on the same port',
  async (t) => {
    const root = `/sys/fs/bpf/tsct-natflush-${process.pid}-${Date.now()}`;
    fs.mkdirSync(root);
    let loaded: Datapath | undefined;
    try {
      const dp = (loaded = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024, nat: 1024 }, pinRoot: root }));
      dp.setDevice(1, 0, { snat4: NAT4, snat6: NAT6 });
      for (const sport of [7100, 7101])
        await runPacket(dp, frame({ src: C, dst: S, l4: { udp: { sport, dport: 53 } } }), { hook: 'egress' });
      const flush = spawnSync(
        process.execPath,
        [TSCT_BIN, 'bpf', 'nat', 'flush', '--sport', '7100', '--bpf-root', root],
        { encoding: 'utf8' },
      );
      t.is(flush.status, 0, flush.stderr);
      t.is(flush.stdout.trim(), 'flushed 1 NAT mapping');
      const list = spawnSync(process.execPath, [TSCT_BIN, 'bpf', 'nat', 'list', '--bpf-root', root], {
        encoding: 'utf8',
      })
        .stdout.trim()
        .split('\n');
      t.is(list.length, 2, 'the other mapping is listed, as its OUT and IN lines');
      t.regex(
        list[0],
        new RegExp(`^UDP OUT ${C}:7101 -> ${S}:53 XLATE_SRC ${NAT4}:7101 Created=\\d+sec ago NeedsCT=1$`),
      );
      t.regex(list[1], new RegExp(`^UDP IN ${S}:53 -> ${NAT4}:7101 XLATE_DST ${C}:7101 Created=`));
      const c = findConn(dp, { family: 4, proto: PROTO.udp, src: C, dst: S, sport: 7100, dport: 53, zone: 0 })!;
      t.false(!!(c.flags & CtFlag.CT_F_SNAT), 'the connection no longer carries the mapping');
      // No sweep puts a flushed mapping back; the next packet out makes it again.
      t.is((await gcSweep(dp.gc)).natRecreated, 0);
      const r = await runPacket(dp, frame({ src: C, dst: S, l4: { udp: { sport: 7100, dport: 53 } } }), {
        hook: 'egress',
      });
      t.is(r.state, '+trk+new+snat');
      t.like(ends(r.data), { src: NAT4, sport: 7100 });
      t.is(reasonCount(dp, 'NAT_RECREATED'), 1);
      t.is(await natCount(dp), 2);
    } finally {
      loaded?.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
);

for (const ctFullPass of [false, true]) {
  privTest(
    `a new connection that finds the connection table full is dropped${ctFullPass ? ' at masquerade, untracked' : ''}, ` +
      'never translated without state',
    async (t) => {
      const dp = await Datapath.load({ sizes: { ctTcp: 64, ctAny: 64, nat: 1024 }, config: { ctFullPass } });
      try {
        dp.setDevice(1, 0, { snat4: NAT4, snat6: NAT6 });
        for (let i = 0; i < 64; i++) {
          const c = `10.200.1.${i + 1}`;
          const out = await runPacket(dp, frame({ src: c, dst: S, l4: { udp: { sport: 7000, dport: 53 } } }), {
            hook: 'egress',
          });
          await runPacket(dp, frame({ src: S, dst: NAT4, l4: { udp: { sport: 53, dport: ends(out.data).sport } } }));
        }
        const before = await natCount(dp);
        const r = await runPacket(dp, frame({ src: '10.200.3.3', dst: S, l4: { udp: { sport: 7000, dport: 53 } } }), {
          hook: 'egress',
        });
        t.is(r.verdict, 2, 'dropped');
        // Full and nothing evictable: dropped by the tracker, as nf_conntrack does; passed untracked
        // (--bpf-ct-full-pass-untracked), it reaches masquerade, which has nowhere to keep a mapping.
        t.is(r.reason, ctFullPass ? 'DROP_NAT_NO_CT' : 'DROP_CT_TABLE_FULL');
        t.is(reasonCount(dp, 'CT_FULL_PASSED'), ctFullPass ? 1 : 0);
        t.is(reasonCount(dp, 'DROP_CT_TABLE_FULL'), ctFullPass ? 0 : 1);
        t.is(reasonCount(dp, 'DROP_NAT_NO_CT'), ctFullPass ? 1 : 0);
        t.is(await natCount(dp), before, 'no mapping was left behind');
      } finally {
        dp.close();
      }
    },
  );
}

privTest('the GC removes NAT entries with their connection, and orphans', async (t) => {
  const dp = await natDatapath();
  try {
    for (let i = 0; i < 5; i++)
      await runPacket(dp, frame({ src: C, dst: S, l4: { udp: { sport: 7000 + i, dport: 53 } } }), { hook: 'egress' });
    t.is(await natCount(dp), 5, 'an IN entry per connection');
    // An orphan: a connection removed by hand leaves its NAT entry behind until the sweep.
    const { key } = encodeCtKey({ family: 4, proto: PROTO.udp, src: C, dst: S, sport: 7000, dport: 53, zone: 0 });
    t.true(dp.maps.tsct_ct_any4_global.delete(key));
    // And an OUT entry, as versions that kept the forward direction in the NAT table left them.
    const out = StructView.alloc('nat4_key').set('proto', PROTO.udp).set('dir', ENUMS.nat_dir.NAT_DIR_OUT);
    parseAddr(C).copy(out.bytes('saddr'));
    parseAddr(S).copy(out.bytes('daddr'));
    out.bytes('sport').writeUInt16BE(7001);
    out.bytes('dport').writeUInt16BE(53);
    dp.maps.tsct_snat_v4_external.update(out.buf, StructView.alloc('nat_entry').set('needs_ct', 1).buf);
    let r = await gcSweep(dp.gc);
    t.is(r.natOrphans, 2);
    t.is(await natCount(dp), 4, 'the orphaned entry and the old OUT entry are gone, the live ones stay');
    t.is(r.deleted, 0);
    // Everything expires: connections and their NAT entries go in one sweep.
    r = await gcSweep(dp.gc, process.hrtime.bigint() + 3_600_000_000_000n);
    t.is(r.deleted, 4);
    t.is(await natCount(dp), 0);
    t.is(await countConns(dp), 0);
  } finally {
    dp.close();
  }
});
