// The service load balancer end to end: real TCP and UDP from a client to
// service addresses on a router running `tsct agent`, three backend
// namespaces behind it, services programmed with `tsct service update`.
import { privTest } from './helpers/privilege';
import { AgentHandle, startAgentIn, tsctIn } from '../lab/agentProcess';
import { labAgentArgs } from '../lab/routerAgent';
import {
  buildEcmpLab,
  buildLbLab,
  cleanupLbLab,
  LbLab,
  startLbAgent,
  startNameServer,
  liveTcpClient,
  moreEchoes,
  startUdpStream,
  tcpConnectOutcome,
  whoServes,
} from '../lab/lbLab';
import { udpToClosedPort } from '../lab/traffic';
import { httpGetIn } from '../lab/httpIn';
import { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const VIP4 = '10.200.100.10';
const VIP6 = 'fd00:200:100::10';
const PORT = 8080;
const METRICS = '127.0.0.1:9962';

async function withLb(
  t: ExecutionContext,
  prefix: string,
  fn: (l: LbLab, root: string, cli: (...args: string[]) => Promise<string>) => Promise<void>,
  agentArgs: string[] = [],
): Promise<void> {
  const l = buildLbLab(prefix);
  let agent: AgentHandle | null = null;
  let root = `/sys/fs/bpf/${l.lab.id}`;
  try {
    ({ agent, root } = await startLbAgent(l, agentArgs));
    for (const b of l.backends) await startNameServer(l.lab, b, PORT, 120);
    const cli = async (...args: string[]) => {
      const r = await tsctIn(l.router, [...args, '--bpf-root', root]);
      t.is(r.code, 0, `tsct ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await fn(l, root, cli);
  } finally {
    await cleanupLbLab(l, root, agent);
  }
}

/** Each backend's share of `n` connections is within Maglev's balance for 3 backends (25-42 %). */
function balanced(t: ExecutionContext, what: string, r: { seen: Record<string, number>; failed: number }, n: number) {
  t.is(r.failed, 0, `${what}: every connection was answered`);
  t.deepEqual(Object.keys(r.seen).sort(), ['be1', 'be2', 'be3'], `${what}: all three backends served`);
  for (const [name, k] of Object.entries(r.seen)) {
    t.true(k >= n * 0.25 && k <= n * 0.42, `${what}: ${name} served ${k} of ${n}`);
  }
}

privTest(
  'ClusterIP over TCP and UDP, IPv4 and IPv6: three backends share the connections, replies come from the VIP',
  async (t) => {
    await withLb(
      t,
      'tsct-lb',
      async (l, _root, cli) => {
        const be = (family: 4 | 6) =>
          l.backends.map((b) => (family === 4 ? `${b.addr4}:${PORT}` : `[${b.addr6}]:${PORT}`)).join(',');
        await cli(
          'service',
          'update',
          '--id',
          '1',
          '--frontend',
          `${VIP4}:${PORT}/tcp`,
          '--backends',
          be(4),
          '--algorithm',
          'maglev',
        );
        await cli(
          'service',
          'update',
          '--id',
          '2',
          '--frontend',
          `${VIP4}:${PORT}/udp`,
          '--backends',
          be(4),
          '--algorithm',
          'maglev',
        );
        await cli(
          'service',
          'update',
          '--id',
          '3',
          '--frontend',
          `[${VIP6}]:${PORT}/tcp`,
          '--backends',
          be(6),
          '--algorithm',
          'maglev',
        );
        await cli(
          'service',
          'update',
          '--id',
          '4',
          '--frontend',
          `[${VIP6}]:${PORT}/udp`,
          '--backends',
          be(6),
          '--algorithm',
          'maglev',
        );

        // A connected UDP socket takes only replies from the address it sent to, and a TCP
        // connection only segments from it: every answer came back from the VIP.
        balanced(t, 'TCP over IPv4', whoServes(l.lab, l.client, VIP4, PORT, 300, 'tcp'), 300);
        balanced(t, 'UDP over IPv4', whoServes(l.lab, l.client, VIP4, PORT, 300, 'udp'), 300);
        balanced(t, 'TCP over IPv6', whoServes(l.lab, l.client, VIP6, PORT, 300, 'tcp'), 300);
        balanced(t, 'UDP over IPv6', whoServes(l.lab, l.client, VIP6, PORT, 300, 'udp'), 300);

        const list = await cli('service', 'list');
        const lines = list.trimEnd().split('\n');
        t.regex(lines[0], /^ID\s+Frontend\s+Service Type\s+Backend$/);
        t.regex(
          lines[1],
          new RegExp(
            `^1\\s+${VIP4.replace(/\./g, '\\.')}:${PORT}/TCP\\s+ClusterIP\\s+1 => ${l.backends[0].addr4.replace(/\./g, '\\.')}:${PORT}/TCP \\(active\\)$`,
          ),
        );
        t.is(lines.filter((x) => /=> .* \(active\)$/.test(x)).length, 12, 'four services of three active backends');
        const lb = await cli('bpf', 'lb', 'list');
        t.regex(lb, /^SERVICE ADDRESS\s+BACKEND ADDRESS \(REVNAT_ID\) \(SLOT\)/);
        t.regex(lb, new RegExp(`0\\.0\\.0\\.0:0 \\(1\\) \\(0\\) \\[ClusterIP`));

        const ct = await cli(
          'bpf',
          'ct',
          'list',
          'global',
          '-o',
          'conntrack',
          '--dport',
          String(PORT),
          '--proto',
          'tcp',
        );
        t.regex(
          ct,
          new RegExp(
            `src=${l.client4} dst=${VIP4} sport=\\d+ dport=${PORT} .* src=10\\.200\\.1[0-2]\\.2 dst=${l.client4} sport=${PORT}`,
          ),
          'conntrack shows the VIP dialled and the backend that replied',
        );

        // What a dashboard shows: connections per service and backends by state.
        const metrics = (await httpGetIn(l.router, `http://${METRICS}/metrics`)).body;
        const sample = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
        // TCP: each of the 300 connects was a connection. UDP: a client port the kernel hands
        // out again within the flow's lifetime is the same flow, so a few fewer.
        for (const [id, least] of [
          ['1', 300],
          ['2', 285],
          ['3', 300],
          ['4', 285],
        ] as const) {
          const n = sample(new RegExp(`^tsct_lb_service_connections_total\\{service_id="${id}"[^}]*\\} (\\d+)$`, 'm'));
          t.true(n >= least && n <= 300, `tsct_lb_service_connections_total for service ${id}: ${n}`);
        }
        t.is(sample(/^tsct_lb_backends\{state="active"\} (\d+)$/m), 6, 'three IPv4 and three IPv6 backends active');
      },
      ['--prometheus-serve-addr', METRICS],
    );
  },
);

privTest(
  'a service with no backends refuses TCP (RST) and UDP (port unreachable) at once and leaves no entry; ' +
    'a backend added later gets the next packet',
  async (t) => {
    await withLb(t, 'tsct-lbnb', async (l, _root, cli) => {
      await cli('service', 'update', '--id', '5', '--frontend', `${VIP4}:${PORT}/udp`, '--backends', '');
      await cli('service', 'update', '--id', '6', '--frontend', `${VIP4}:${PORT}/tcp`, '--backends', '');
      const tcp = tcpConnectOutcome(l.lab, l.client, VIP4, PORT);
      t.is(tcp.outcome, 'refused', 'TCP: connection refused');
      t.true(tcp.ms < 1000, `at once (${tcp.ms} ms)`);
      t.is(udpToClosedPort(l.lab, l.client, VIP4, PORT), 'refused', 'UDP: ICMP port unreachable');
      t.is(tcpConnectOutcome(l.lab, l.client, VIP4, PORT + 1).outcome, 'refused', 'a port the VIP does not serve');
      const entries = await cli('bpf', 'ct', 'list', 'global', '--dport', String(PORT), '--count');
      t.is(entries.trim(), '0', 'no connection entry was left to blackhole later packets');
      await cli(
        'service',
        'update',
        '--id',
        '5',
        '--frontend',
        `${VIP4}:${PORT}/udp`,
        '--backends',
        `${l.backends[1].addr4}:${PORT}`,
      );
      const after = whoServes(l.lab, l.client, VIP4, PORT, 3, 'udp');
      t.deepEqual(after.seen, { be2: 3 }, 'the new backend answers at once');
    });
  },
);

privTest(
  'a live TCP connection keeps its backend while the services file changes the others and across an agent restart; ' +
    'with its own backend removed it gets an RST at its next packet',
  async (t) => {
    const l = buildLbLab('tsct-lbsf');
    const root = `/sys/fs/bpf/${l.lab.id}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-lbsf-'));
    const file = path.join(dir, 'services.yaml');
    const write = (names: string[]) =>
      fs.writeFileSync(
        file,
        [
          'services:',
          '  - id: 1',
          `    frontend: ${VIP4}:${PORT}/tcp`,
          '    backends:',
          ...l.backends.filter((b) => names.includes(b.name)).map((b) => `      - address: ${b.addr4}:${PORT}`),
          '',
        ].join('\n'),
      );
    let agent: AgentHandle | null = null;
    try {
      write(['be1', 'be2', 'be3']);
      ({ agent } = await startLbAgent(l, ['--services-file', file]));
      t.true(
        agent.log.some((x) => /services \(start\): 1 from /.test(x)),
        agent.log.join('\n'),
      );
      for (const b of l.backends) await startNameServer(l.lab, b, PORT, 120);
      const live = liveTcpClient(l.lab, l.client, VIP4, PORT, 100, 110);
      const mine = await live.name;
      const others = l.backends.map((b) => b.name).filter((n) => n !== mine);
      // The agent's log says when it has read the file; on a loaded machine that can take seconds.
      const logged = async (re: RegExp, seen: number, what: string) => {
        const deadline = Date.now() + 15000;
        while (agent!.log.filter((x) => re.test(x)).length <= seen && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        t.true(agent!.log.filter((x) => re.test(x)).length > seen, `${what}: ${agent!.log.slice(-3).join('\n')}`);
      };
      const changed = /services \(changed\): 1 from /;
      const count = (re: RegExp) => agent!.log.filter((x) => re.test(x)).length;
      const echoesGrow = async (what: string) => {
        const r = await moreEchoes(live);
        t.true(r.ok, `${what}: the connection still echoes (${r.before} -> ${r.after})`);
      };
      // The others change under it: one removed, then back.
      let seen = count(changed);
      write([mine, others[0]]);
      await logged(changed, seen, `${others[1]} removed, read`);
      await echoesGrow(`${others[1]} removed`);
      seen = count(changed);
      write([mine, others[0], others[1]]);
      await logged(changed, seen, `${others[1]} back, read`);
      await echoesGrow(`${others[1]} back`);
      // A file that does not parse changes nothing.
      const refused = /services\.yaml:1: .*the services in force stay/;
      seen = count(refused);
      fs.writeFileSync(file, 'services: [ { id: 1, frontend: nonsense } ]\n');
      await logged(refused, seen, 'a bad file refused');
      await echoesGrow('a bad file');
      // The agent restarts: the connection does not notice.
      await agent.stop();
      await echoesGrow('agent stopped');
      write([mine, others[0], others[1]]);
      ({ agent } = await startLbAgent(l, ['--services-file', file]));
      await echoesGrow('agent restarted');
      t.deepEqual(whoServes(l.lab, l.client, VIP4, PORT, 30, 'tcp').failed, 0, 'new connections still work');
      // Its own backend goes: the next packet is answered with an RST (once the agent has read the file).
      seen = count(changed);
      write(others);
      await logged(changed, seen, `${mine} removed, read`);
      const ended = await Promise.race([
        live.ended,
        new Promise((r) => setTimeout(() => r({ error: 'no end' }), 5000)),
      ]);
      t.deepEqual(
        (ended as { error?: string }).error,
        'ECONNRESET',
        `the connection was reset: ${JSON.stringify(ended)}`,
      );
    } finally {
      await cleanupLbLab(l, root, agent);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

privTest('a UDP flow sending every 100 ms through a rolling update of all three backends loses no reply', async (t) => {
  await withLb(t, 'tsct-lbru', async (l, _root, cli) => {
    // Each backend's replacement is a new address on its host (a new pod), answered by the same name server.
    for (const b of l.backends)
      l.lab.exec(b.ns, 'ip', ['addr', 'add', `${b.addr4.replace(/\.2$/, '.3')}/24`, 'dev', 'eth0']);
    const backends = new Map(l.backends.map((b) => [b.name, `${b.addr4}:${PORT}`]));
    const update = () =>
      cli(
        'service',
        'update',
        '--id',
        '7',
        '--frontend',
        `${VIP4}:${PORT}/udp`,
        '--backends',
        [...backends.values()].join(','),
      );
    await update();
    const stream = startUdpStream(l.lab, l.client, VIP4, PORT, 9);
    await new Promise((r) => setTimeout(r, 1000));
    for (const b of l.backends) {
      backends.set(b.name, `${b.addr4}:${PORT}=terminating`);
      await update();
      await new Promise((r) => setTimeout(r, 500));
      backends.delete(b.name);
      await update();
      await new Promise((r) => setTimeout(r, 500));
      backends.set(`${b.name}-new`, `${b.addr4.replace(/\.2$/, '.3')}:${PORT}`);
      await update();
      await new Promise((r) => setTimeout(r, 500));
    }
    const r = await stream;
    t.true(r.sent >= 60, `the client kept sending (${r.sent})`);
    t.deepEqual(r.lost, [], `no reply lost of ${r.sent} (${JSON.stringify(r.served)})`);
  });
});

privTest(
  'session affinity keeps a client on one backend for its timeout; traffic policy Local uses only local backends, and drops when none',
  async (t) => {
    await withLb(t, 'tsct-lbaf', async (l, _root, cli) => {
      const be = l.backends.map((b) => `${b.addr4}:${PORT}`);
      await cli(
        'service',
        'update',
        '--id',
        '8',
        '--frontend',
        `${VIP4}:${PORT}/tcp`,
        '--backends',
        be.join(','),
        '--algorithm',
        'random',
        '--affinity-timeout',
        '3s',
      );
      const sticky = whoServes(l.lab, l.client, VIP4, PORT, 20, 'tcp');
      t.is(Object.keys(sticky.seen).length, 1, `20 connections, one backend: ${JSON.stringify(sticky.seen)}`);
      await new Promise((r) => setTimeout(r, 3500));
      // Past the timeout a new choice is made; with random selection and no affinity, 30 connections spread.
      await cli(
        'service',
        'update',
        '--id',
        '8',
        '--frontend',
        `${VIP4}:${PORT}/tcp`,
        '--backends',
        be.join(','),
        '--algorithm',
        'random',
      );
      t.true(
        Object.keys(whoServes(l.lab, l.client, VIP4, PORT, 30, 'tcp').seen).length > 1,
        'without affinity, connections spread',
      );

      await cli(
        'service',
        'update',
        '--id',
        '9',
        '--frontend',
        `${VIP4}:${PORT + 1}/tcp`,
        '--backends',
        `${be[0].replace(`:${PORT}`, `:${PORT}=local`)},${be[1]},${be[2]}`,
        '--traffic-policy',
        'local',
      );
      const local = whoServes(l.lab, l.client, VIP4, PORT + 1, 20, 'tcp');
      t.deepEqual(local.seen, { be1: 20 }, 'only the local backend serves');
      await cli(
        'service',
        'update',
        '--id',
        '9',
        '--frontend',
        `${VIP4}:${PORT + 1}/tcp`,
        '--backends',
        `${be[1]},${be[2]}`,
        '--traffic-policy',
        'local',
      );
      t.is(
        tcpConnectOutcome(l.lab, l.client, VIP4, PORT + 1).outcome,
        'timeout',
        'no local backend: dropped, as kube-proxy does',
      );

      // loadBalancerSourceRanges: a client outside them is dropped, one inside served.
      const ranged = (ranges: string) =>
        cli(
          'service',
          'update',
          '--id',
          '10',
          '--frontend',
          `${VIP4}:${PORT + 2}/tcp`,
          '--backends',
          be.join(','),
          '--source-ranges',
          ranges,
        );
      await ranged('10.200.9.0/24');
      t.is(tcpConnectOutcome(l.lab, l.client, VIP4, PORT + 2).outcome, 'timeout', 'a client outside the source ranges');
      await ranged('10.200.9.0/24,10.200.1.0/24');
      t.is(whoServes(l.lab, l.client, VIP4, PORT + 2, 5, 'tcp').failed, 0, 'a client inside them');
    });
  },
);

privTest(
  'two routers with their own agents and the same services: a TCP connection moved from one to the other mid-stream ' +
    'keeps its backend (the same Maglev choice, picked up), with no state shared',
  async (t) => {
    const e = buildEcmpLab('tsct-lbecmp');
    const roots = e.routers.map((r) => `/sys/fs/bpf/${e.lab.id}-${r.slice(-2)}`);
    const agents: AgentHandle[] = [];
    try {
      for (const [i, r] of e.routers.entries()) {
        agents.push(await startAgentIn(r, labAgentArgs(roots[i], 'eth1,eth2', ['--prometheus-serve-addr', 'off'])));
        const be = e.backends.map((b) => `${b.addr4}:${PORT}`).join(',');
        const u = await tsctIn(r, [
          'service',
          'update',
          '--id',
          '1',
          '--frontend',
          `${VIP4}:${PORT}/tcp`,
          '--backends',
          be,
          '--bpf-root',
          roots[i],
        ]);
        t.is(u.code, 0, u.stderr);
      }
      for (const b of e.backends) await startNameServer(e.lab, b, PORT, 60);
      e.lab.exec(e.client, 'ip', ['route', 'add', `${VIP4}/32`, 'via', '10.200.1.1']);
      const live = liveTcpClient(e.lab, e.client, VIP4, PORT, 100, 30);
      const name = await live.name;
      const grow = async (what: string) => {
        const r = await moreEchoes(live);
        t.true(r.ok, `${what}: the connection echoes (${r.before} -> ${r.after})`);
      };
      await grow('through router 1');
      // The next hop changes: router 2 sees the connection mid-stream.
      e.lab.exec(e.client, 'ip', ['route', 'replace', `${VIP4}/32`, 'via', '10.200.5.1', 'src', e.client4]);
      await grow('through router 2');
      const ct = await tsctIn(e.routers[1], ['bpf', 'ct', 'list', 'global', '-o', 'json', '--bpf-root', roots[1]]);
      const picked = ct.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((x) => JSON.parse(x))
        .find((c) => c.dport === PORT && c.flags.includes('PickedUp'));
      t.truthy(picked, `router 2 picked the connection up: ${ct.stdout}`);
      t.is(
        e.backends.find((b) => b.addr4 === picked?.dst)?.name,
        name,
        'router 2 chose the backend router 1 had chosen',
      );
    } finally {
      for (const a of agents) await a.stop();
      for (const [i, r] of e.routers.entries()) await tsctIn(r, ['uninstall', '--bpf-root', roots[i]]);
      e.lab.destroy();
    }
  },
);

privTest(
  'full NAT reaches a backend that would not route its reply back through the node (a NodePort from outside); ' +
    'hairpin: a backend reaches itself through its service',
  async (t) => {
    await withLb(t, 'tsct-lbfn', async (l, _root, cli) => {
      const be3 = l.backends[2];
      // be3's replies to other networks go to a gateway that is not there: only full NAT gets them back.
      l.lab.exec(be3.ns, 'ip', ['route', 'replace', 'default', 'via', '10.200.12.254']);
      const node = '10.200.1.1';
      await cli(
        'service',
        'update',
        '--id',
        '20',
        '--frontend',
        `${node}:30080/tcp`,
        '--type',
        'NodePort',
        '--backends',
        `${be3.addr4}:${PORT}`,
      );
      t.is(tcpConnectOutcome(l.lab, l.client, node, 30080).outcome, 'timeout', 'without full NAT the reply is lost');
      await cli(
        'service',
        'update',
        '--id',
        '20',
        '--frontend',
        `${node}:30080/tcp`,
        '--type',
        'NodePort',
        '--backends',
        `${be3.addr4}:${PORT}`,
        '--full-nat',
      );
      t.deepEqual(
        whoServes(l.lab, l.client, node, 30080, 5, 'tcp'),
        { seen: { be3: 5 }, failed: 0 },
        'with full NAT it comes back',
      );
      const ct = await cli('bpf', 'ct', 'list', 'global', '-o', 'conntrack', '--dport', String(PORT), '--proto', 'tcp');
      t.regex(
        ct,
        new RegExp(
          `src=${l.client4} dst=${node} sport=\\d+ dport=30080 .* src=${be3.addr4} dst=10\\.200\\.12\\.1 sport=${PORT}`,
        ),
        'the backend replied to the node',
      );

      // Hairpin: be1 connects to a service whose only backend is itself.
      const be1 = l.backends[0];
      await cli(
        'service',
        'update',
        '--id',
        '21',
        '--frontend',
        `${VIP4}:${PORT}/tcp`,
        '--backends',
        `${be1.addr4}:${PORT}`,
      );
      t.deepEqual(
        whoServes(l.lab, be1.ns, VIP4, PORT, 5, 'tcp'),
        { seen: { be1: 5 }, failed: 0 },
        'be1 reached itself',
      );
    });
  },
);
