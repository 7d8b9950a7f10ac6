// The fast path: established flows forwarded from tc ingress (FIB lookup,
// TTL decremented, masqueraded where they leave by a masquerading device,
// redirect) arrive as the stack would have sent them, and --bpf-fast-path
// false leaves forwarding to the stack.
import { privTest } from './helpers/privilege';
import { withRouterAgent } from '../lab/routerAgent';
import { startEchoServer, tcpExchange, udpExchange } from '../lab/traffic';
import { readPinnedMetrics, reasonTotal } from '../src/metrics/reasons';

// Captures UDP datagrams to a port on the server and prints each one's TTL,
// whether its IPv4 header checksum verifies, and its source. Bounded: n
// packets or 10 s.
const SNIFF = `
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.settimeout(10)
got = 0
print('ready', flush=True)
try:
    while got < n:
        f = s.recv(2048)
        ip = f[14:34]
        if ip[9] != 17 or struct.unpack('!H', f[36:38])[0] != port:
            continue
        total = sum(struct.unpack('!10H', ip))
        while total >> 16:
            total = (total & 0xffff) + (total >> 16)
        print(ip[8], 'ok' if total == 0xffff else 'bad', socket.inet_ntoa(ip[12:16]), flush=True)
        got += 1
except socket.timeout:
    pass
`;

async function run(fastPath: boolean, masquerade = false, fastPathNew = false) {
  const args = [
    '--bpf-fast-path',
    String(fastPath),
    '--bpf-fast-path-new',
    String(fastPathNew),
    ...(masquerade ? ['--masquerade-devices', 'eth2'] : []),
  ];
  return withRouterAgent({ prefix: 'tsct-fp', args }, async (lab, root) => {
    // What reaches the stack's FORWARD chain, client to server (a rule with no target only counts).
    lab.lab.exec(lab.router, 'iptables', ['-A', 'FORWARD', '-i', 'eth1', '-p', 'udp', '--dport', '8080']);
    lab.lab.exec(lab.router, 'iptables', ['-A', 'FORWARD', '-i', 'eth1', '-p', 'tcp', '--dport', '8080']);
    await startEchoServer(lab.lab, lab.server, 8080, 30);
    const sniffer = lab.lab.spawn(lab.server, 'python3', ['-c', SNIFF, '8080', '5']);
    const exited = new Promise<void>((resolve) => sniffer.on('close', () => resolve()));
    const lines: string[] = [];
    await new Promise<void>((resolve) => {
      sniffer.stdout!.on('data', (d: Buffer) => {
        lines.push(...d.toString().trim().split('\n'));
        if (lines.includes('ready')) resolve();
      });
    });
    const udp = udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 5);
    const tcp = await tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server4,
      port: 8080,
      rounds: 10,
      bytes: 500,
      gapMs: 5,
    });
    await exited;
    const fast = reasonTotal(readPinnedMetrics(root), 'FAST_PATH');
    const stackForwarded = lab.lab
      .exec(lab.router, 'iptables', ['-L', 'FORWARD', '-v', '-x', '-n'])
      .split('\n')
      .filter((l) => /dpt:8080/.test(l))
      .reduce((n, l) => n + Number(l.trim().split(/\s+/)[0]), 0);
    return { udp, tcp, fast, stackForwarded, packets: lines.filter((l) => l !== 'ready'), lab };
  });
}

privTest(
  'established flows take the fast path and arrive with the TTL decremented once and a valid header checksum',
  async (t) => {
    const r = await run(true);
    t.true(r.udp.ok && r.tcp.ok, `UDP and TCP work through the fast path: ${JSON.stringify([r.udp, r.tcp])}`);
    t.true(r.fast >= 10, `packets were forwarded from tc ingress (${r.fast})`);
    t.is(r.packets.length, 5);
    t.deepEqual(r.packets, Array(5).fill(`63 ok ${r.lab.addr.client4}`), 'TTL 64 - 1, header checksum valid');
    t.true(
      r.stackForwarded >= 2,
      `each connection's first packet went through the stack's FORWARD chain (${r.stackForwarded})`,
    );
  },
);

privTest(
  'with --bpf-fast-path-new, new connections are forwarded and masqueraded from tc ingress too, past the FORWARD chain',
  async (t) => {
    const r = await run(true, true, true);
    t.true(r.udp.ok && r.tcp.ok, `UDP and TCP replies come back translated: ${JSON.stringify([r.udp, r.tcp])}`);
    t.deepEqual(
      r.packets,
      Array(5).fill(`63 ok ${r.lab.addr.routerServer4}`),
      "TTL 64 - 1, header checksum valid, the router's address",
    );
    t.is(r.stackForwarded, 0, 'no packet of either connection reached the FORWARD chain');
  },
);

privTest(
  'masqueraded established flows are translated on the fast path and arrive as the stack would have sent them',
  async (t) => {
    const r = await run(true, true);
    t.true(r.udp.ok && r.tcp.ok, `UDP and TCP replies come back translated: ${JSON.stringify([r.udp, r.tcp])}`);
    t.true(r.fast >= 10, `packets were forwarded from tc ingress (${r.fast})`);
    t.deepEqual(
      r.packets,
      Array(5).fill(`63 ok ${r.lab.addr.routerServer4}`),
      "TTL 64 - 1, header checksum valid, the router's address",
    );
  },
);

privTest('with --bpf-fast-path false the stack forwards everything', async (t) => {
  const r = await run(false);
  t.true(r.udp.ok && r.tcp.ok);
  t.is(r.fast, 0);
  t.deepEqual(r.packets, Array(5).fill(`63 ok ${r.lab.addr.client4}`));
});
