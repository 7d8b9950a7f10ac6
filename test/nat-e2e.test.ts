// Masquerade end to end: real clients behind a router running `tsct agent
// --masquerade-devices eth2`, a server (and a hop) past it.
import * as fs from 'node:fs';
import { ExecutionContext } from 'ava';
import { privTest } from './helpers/privilege';
import { RouterLab, RouterLabOptions } from '../lab/routerLab';
import { withRouterAgent } from '../lab/routerAgent';
import { ping, tcpExchange, udpExchange, udpToClosedPort, whoami } from '../lab/traffic';
import { AgentHandle, tsctIn } from '../lab/agentProcess';
import { readPinnedMetrics, reasonTotal } from '../src/metrics/reasons';

async function withNatLab(
  t: ExecutionContext,
  opts: RouterLabOptions,
  extra: string[],
  fn: (lab: RouterLab, root: string, agent: AgentHandle) => Promise<void>,
): Promise<void> {
  const root = await withRouterAgent(
    {
      prefix: 'tsct-nat',
      lab: opts,
      devices: opts.secondClient ? 'eth1,eth2,eth3' : 'eth1,eth2',
      args: ['--masquerade-devices', 'eth2', ...extra],
      echo: { port: 8080, seconds: 90 },
    },
    async (lab, root, agent) => {
      await fn(lab, root, agent);
      return root;
    },
  );
  t.false(fs.existsSync(root));
}

interface JsonNat {
  direction: string;
  proto: string;
  src: string;
  sport: number;
  toAddr: string;
  toPort: number;
}

async function natJson(lab: RouterLab, root: string): Promise<JsonNat[]> {
  const r = await tsctIn(lab.router, ['bpf', 'nat', 'list', '-o', 'json', '--bpf-root', root]);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

privTest(
  "two clients with the same source port both get through; the server sees two ports on the router's address",
  async (t) => {
    await withNatLab(t, { secondClient: true }, [], async (lab, root) => {
      const [a, b] = await Promise.all([
        tcpExchange(lab.lab, lab.client, {
          host: lab.addr.server4,
          port: 8080,
          rounds: 5,
          bytes: 300,
          gapMs: 20,
          localPort: 45000,
        }),
        tcpExchange(lab.lab, lab.client2!, {
          host: lab.addr.server4,
          port: 8080,
          rounds: 5,
          bytes: 300,
          gapMs: 20,
          localPort: 45000,
        }),
      ]);
      t.true(a.ok && b.ok, `both carried their data: ${JSON.stringify([a, b])}`);
      const seenA = whoami(lab.lab, lab.client, lab.addr.server4, 8080, 45001);
      const seenB = whoami(lab.lab, lab.client2!, lab.addr.server4, 8080, 45001);
      t.is(seenA.addr, lab.addr.routerServer4, 'the server sees the router, not the client');
      t.is(seenB.addr, lab.addr.routerServer4);
      t.not(seenA.port, seenB.port, "two different ports on the router's address");
      const nat = await natJson(lab, root);
      const outs = nat.filter((n) => n.direction === 'OUT' && n.sport === 45000);
      t.is(outs.length, 2);
      t.true(outs.every((n) => n.toAddr === lab.addr.routerServer4));
      t.is(new Set(outs.map((n) => n.toPort)).size, 2);
      t.is(
        nat.filter((n) => n.direction === 'IN').length,
        nat.filter((n) => n.direction === 'OUT').length,
        'every OUT entry has its IN entry',
      );
    });
  },
);

privTest(
  'UDP and ping through masquerade; port unreachable from the server and time exceeded from a hop reach the client',
  async (t) => {
    await withNatLab(t, { hop: true }, [], async (lab, root) => {
      t.true(udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 3).ok);
      ping(lab.lab, lab.client, lab.addr.server4, 2);
      t.is(
        udpToClosedPort(lab.lab, lab.client, lab.addr.server4, 9),
        'refused',
        'the port unreachable came back translated',
      );
      // TTL 2: the router forwards with TTL 1, the hop answers time exceeded to the router's address.
      let out = '';
      try {
        lab.lab.exec(lab.client, 'ping', ['-c', '1', '-W', '2', '-t', '2', lab.addr.server4]);
      } catch (e) {
        out = (e as Error).message; // ping exits non-zero when no echo reply comes
      }
      t.regex(
        out,
        new RegExp(`From ${lab.addr.hop4.replace(/\./g, '\\.')} .*Time to live exceeded`),
        "ping sees the hop's time exceeded, translated back to it",
      );
      const conns = (
        await tsctIn(lab.router, [
          'bpf',
          'ct',
          'list',
          'global',
          '-o',
          'json',
          '--proto',
          'udp',
          '--dport',
          '9',
          '--bpf-root',
          root,
        ])
      ).stdout;
      t.regex(conns, /"dport":9/, 'the refused flow was tracked');
    });
  },
);

privTest('IPv6 masquerade end to end', async (t) => {
  await withNatLab(t, {}, [], async (lab, root) => {
    const r = await tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server6,
      port: 8080,
      rounds: 4,
      bytes: 1000,
      gapMs: 10,
    });
    t.true(r.ok, JSON.stringify(r));
    t.is(whoami(lab.lab, lab.client, lab.addr.server6, 8080).addr, lab.addr.routerServer6);
    t.true(udpExchange(lab.lab, lab.client, lab.addr.server6, 8080, 2).ok);
    ping(lab.lab, lab.client, lab.addr.server6, 2);
    t.true((await natJson(lab, root)).some((n) => n.toAddr === lab.addr.routerServer6));
  });
});

privTest(
  'with a tiny port range the next new connection is dropped and counted, and existing ones keep working',
  async (t) => {
    await withNatLab(t, {}, ['--nat-port-range', '40000-40001'], async (lab, root) => {
      const long = [0, 1].map((i) =>
        tcpExchange(lab.lab, lab.client, {
          host: lab.addr.server4,
          port: 8080,
          rounds: 30,
          bytes: 50,
          gapMs: 100,
          localPort: 46000 + i,
        }),
      );
      await new Promise((r) => setTimeout(r, 700));
      const third = await tcpExchange(lab.lab, lab.client, {
        host: lab.addr.server4,
        port: 8080,
        rounds: 1,
        bytes: 10,
        gapMs: 0,
        localPort: 46002,
        deadlineMs: 2000,
      });
      t.false(third.ok, 'a third connection to the same server port finds no free port');
      t.true(
        reasonTotal(readPinnedMetrics(root), 'DROP_NAT_PORT_EXHAUSTED') >= 1,
        'the drop is counted under its reason',
      );
      const results = await Promise.all(long);
      t.true(
        results.every((r) => r.ok),
        `the two mapped connections carried all their data: ${JSON.stringify(results)}`,
      );
      const ports = (await natJson(lab, root))
        .filter((n) => n.direction === 'OUT')
        .map((n) => n.toPort)
        .sort();
      t.deepEqual([...new Set(ports)], [40000, 40001]);
    });
  },
);

privTest('after connections expire and the GC runs, no NAT entry is left', async (t) => {
  // Short enough to watch them expire, long enough that a loaded machine can list them first.
  const short = ['any', 'icmp', 'tcp-fin', 'tcp-close-wait', 'tcp-last-ack', 'tcp-time-wait', 'tcp-close'].flatMap(
    (s) => [`--bpf-ct-timeout-regular-${s}`, '5s'],
  );
  await withNatLab(t, {}, [...short, '--conntrack-gc-interval', '1s'], async (lab, root) => {
    t.true(udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 2).ok);
    t.true((await natJson(lab, root)).length >= 2, 'the mapping exists while its connection lives');
    ping(lab.lab, lab.client, lab.addr.server4, 1);
    t.true(
      (await tcpExchange(lab.lab, lab.client, { host: lab.addr.server4, port: 8080, rounds: 1, bytes: 10, gapMs: 0 }))
        .ok,
    );
    // Expiry takes a second, a sweep comes every second: give a loaded machine time, bounded.
    let left = await natJson(lab, root);
    for (let i = 0; i < 40 && left.length; i++) {
      await new Promise((r) => setTimeout(r, 500));
      left = await natJson(lab, root);
    }
    t.deepEqual(left, [], 'no NAT entry outlives its connection');
    const ct = (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root])).stdout.trim();
    t.is(ct, '0');
  });
});
