// The XDP fast path (--bpf-xdp-fast-path): forwarded connections, masqueraded
// or not, work over IPv4 and IPv6 with every packet tracked and translated in
// XDP; what XDP does not take (ICMP) still goes through tc; and the agent
// refuses a device that already carries another XDP program.
import { BpfObject, XdpAction, queryXdp, progInfo } from 'libbpf-ts';
import * as path from 'node:path';
import { privTest } from './helpers/privilege';
import { buildRouterLab } from '../lab/routerLab';
import { NamespaceLab } from '../lab/namespaceLab';
import { ping, startEchoServer, tcpExchange, udpExchange, whoami } from '../lab/traffic';
import { AgentHandle, startAgentIn, tsctIn } from '../lab/agentProcess';
import { readPinnedMetrics, reasonTotal } from '../src/metrics/reasons';
import { ROOT } from './helpers/paths';
import { Datapath } from '../src/datapath/datapath';
import { ethernet, frame, ipPacket } from '../lab/packetCraft';
import { countConns, reasonCount } from './helpers/datapath';

const count = (root: string, reason: string) => reasonTotal(readPinnedMetrics(root), reason);

privTest(
  'with --bpf-xdp-fast-path, masqueraded TCP and UDP over IPv4 and IPv6 are forwarded from XDP and tracked',
  async (t) => {
    const lab = buildRouterLab('tsct-xdp', { xdpPeers: true });
    const root = `/sys/fs/bpf/${lab.lab.id}`;
    let agent: AgentHandle | null = null;
    try {
      agent = await startAgentIn(lab.router, [
        '--devices',
        'eth1,eth2',
        '--masquerade-devices',
        'eth2',
        '--bpf-root',
        root,
        '--bpf-ct-global-tcp-max',
        '4096',
        '--bpf-ct-global-any-max',
        '4096',
        '--bpf-xdp-fast-path',
        'true',
      ]);
      for (const dev of ['eth1', 'eth2']) {
        const id = queryXdp(dev, { netns: NamespaceLab.path(lab.router) });
        t.is(id === null ? null : progInfo(id)?.name, 'tsct_xdp', `tsct_xdp is attached to ${dev}`);
      }
      await startEchoServer(lab.lab, lab.server, 8080, 60);
      const before = count(root, 'XDP_FAST_PATH');
      const tcp4 = await tcpExchange(lab.lab, lab.client, {
        host: lab.addr.server4,
        port: 8080,
        rounds: 10,
        bytes: 1000,
        gapMs: 5,
      });
      const tcp6 = await tcpExchange(lab.lab, lab.client, {
        host: lab.addr.server6,
        port: 8080,
        rounds: 10,
        bytes: 1000,
        gapMs: 5,
      });
      const udp4 = udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 5);
      const udp6 = udpExchange(lab.lab, lab.client, lab.addr.server6, 8080, 5);
      t.true(
        tcp4.ok && tcp6.ok,
        'TCP over IPv4 and IPv6 (checksums fixed after translation, or the server would drop)',
      );
      t.true(udp4.ok && udp6.ok, 'UDP over IPv4 and IPv6');
      const fast = count(root, 'XDP_FAST_PATH') - before;
      const json = (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '-o', 'json', '--bpf-root', root])).stdout
        .trim()
        .split('\n');
      const tracked = json
        .map((l) => JSON.parse(l))
        .filter((e) => e.proto !== 'ICMP' && e.proto !== 'ICMPv6' && e.dport === 8080);
      const packets = tracked.reduce((s, e) => s + e.txPackets + e.rxPackets, 0);
      // All but the first packets of each flow, which go to tc while the neighbours are resolved.
      t.true(
        packets >= 60 && fast >= packets * 0.7,
        `${fast} of the ${packets} packets tracked were forwarded from XDP`,
      );
      t.is(
        whoami(lab.lab, lab.client, lab.addr.server4, 8080).addr,
        lab.addr.routerServer4,
        "the server sees the router's address",
      );
      t.true(count(root, 'NAT_SNAT') > 0 && count(root, 'NAT_REVSNAT') > 0, 'translated both ways');

      const list = (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--bpf-root', root])).stdout;
      const tcpLine = list
        .split('\n')
        .find(
          (l) => l.startsWith('TCP IN') && l.includes(`${lab.addr.client4}:`) && l.includes(`${lab.addr.server4}:8080`),
        );
      t.truthy(tcpLine, 'the IPv4 TCP connection is listed');
      t.regex(tcpLine ?? '', /TxPackets=(\d{2,})/, 'with its packets counted');
      t.regex(list, new RegExp(`UDP IN \\[?${lab.addr.client6.replace(/:/g, ':')}`), 'the IPv6 UDP flow is listed');

      // ICMP is not XDP's: tc still tracks and translates it.
      ping(lab.lab, lab.client, lab.addr.server4, 2);
      const icmp = (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--bpf-root', root])).stdout;
      t.regex(icmp, /ICMP IN/, 'ping went through tc and is tracked');
    } finally {
      if (agent) await agent.stop();
      await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
      t.is(queryXdp('eth1', { netns: NamespaceLab.path(lab.router) }), null, 'uninstall detaches XDP');
      lab.lab.destroy();
    }
  },
);

/** struct xdp_md with ingress_ifindex set (data, data_end and data_meta must be zero for a test run). */
function xdpCtx(ifindex: number): Buffer {
  const ctx = Buffer.alloc(24);
  ctx.writeUInt32LE(ifindex, 12);
  return ctx;
}

const C4 = '10.200.1.2';
const S4 = '10.200.2.2';
const tcp4 = (flags: string) => frame({ src: C4, dst: S4, l4: { tcp: { sport: 1000, dport: 80, flags } } });
const withIpOptions = () => {
  const ip = ipPacket({ src: C4, dst: S4, l4: { udp: { sport: 1, dport: 2 } } });
  // Insert one word of options (NOPs) and fix the lengths; the header checksum no longer matters here.
  const b = Buffer.concat([ip.subarray(0, 20), Buffer.from([1, 1, 1, 0]), ip.subarray(20)]);
  b[0] = 0x46;
  b.writeUInt16BE(b.length, 2);
  return ethernet(b);
};

privTest('XDP hands everything it does not forward to tc untouched and without creating state', async (t) => {
  const dp = await Datapath.load({ sizes: { ctTcp: 1024, ctAny: 1024 } });
  try {
    // lo stands in for a managed device with the XDP fast path; no other device is one, so nothing can be forwarded.
    dp.setDevice(1, 0, undefined, true);
    const cases: Array<[string, Buffer]> = [
      ['TCP SYN+FIN', tcp4('SF')],
      ['TCP with no flags', tcp4('')],
      [
        'TCP data offset beyond the packet',
        (() => {
          const b = tcp4('S');
          b[14 + 20 + 12] = 0xf0;
          return b;
        })(),
      ],
      [
        'IPv4 total length beyond the packet',
        (() => {
          const b = tcp4('S');
          b.writeUInt16BE(400, 16);
          return b;
        })(),
      ],
      ['IPv4 with options', withIpOptions()],
      ['an ICMP echo request', frame({ src: C4, dst: S4, l4: { icmp: { type: 8, id: 7 } } })],
      ['a UDP datagram with a TTL of 1', frame({ src: C4, dst: S4, ttl: 1, l4: { udp: { sport: 1, dport: 2 } } })],
      ['a valid SYN whose way out is not an XDP device', tcp4('S')],
      [
        'a valid IPv6 UDP datagram whose way out is not an XDP device',
        frame({ src: 'fd00:200:1::2', dst: 'fd00:200:2::2', l4: { udp: { sport: 1, dport: 2 } } }),
      ],
    ];
    for (const [name, pkt] of cases) {
      const r = await dp.xdp.testRun({ data: pkt, ctx: xdpCtx(1) });
      t.is(r.retval, XdpAction.pass, `${name}: passed to tc`);
      t.deepEqual(r.data, pkt, `${name}: unchanged`);
    }
    t.is(await countConns(dp), 0, 'no connection was created');
    t.is(reasonCount(dp, 'XDP_FAST_PATH'), 0);
    t.is(reasonCount(dp, 'FORWARDED'), 0, 'nothing counted: tc counts what XDP passes');
  } finally {
    dp.close();
  }
});

privTest('the agent refuses a device whose XDP program is not its own, and leaves that program attached', async (t) => {
  const lab = buildRouterLab('tsct-xdpx', { xdpPeers: true });
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  const other = await BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'forward_sink.bpf.o')).load();
  try {
    other.program('sink_drop').attachXdp('eth2', { mode: 'native', netns: NamespaceLab.path(lab.router) });
    const r = await tsctIn(lab.router, [
      'agent',
      '--devices',
      'eth1,eth2',
      '--bpf-root',
      root,
      '--bpf-xdp-fast-path',
      'true',
      '--prometheus-serve-addr',
      'off',
    ]);
    t.not(r.code, 0);
    t.regex(r.stderr, /--bpf-xdp-fast-path: eth2 already has an XDP program \(sink_drop/);
    t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
    const id = queryXdp('eth2', { netns: NamespaceLab.path(lab.router) });
    t.is(id === null ? null : progInfo(id)?.name, 'sink_drop');
  } finally {
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    other.close();
    lab.lab.destroy();
  }
});
