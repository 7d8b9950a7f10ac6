// The agent and the CLI end to end, in a lab the test builds: real TCP, UDP
// and ping through a router running `tsct agent`.
import * as fs from 'node:fs';
import { ExecutionContext } from 'ava';
import { privTest } from './helpers/privilege';
import { buildRouterLab, RouterLab } from '../lab/routerLab';
import { ping, startEchoServer, tcpExchange, udpExchange } from '../lab/traffic';
import { AgentHandle, startAgentIn, tsctIn } from '../lab/agentProcess';
import { MAP_NAMES } from '../src/datapath/tables';

interface JsonConn {
  proto: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  state: string;
  established: boolean;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
}

async function listJson(lab: RouterLab, root: string, ...filters: string[]): Promise<JsonConn[]> {
  const r = await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '-o', 'json', '--bpf-root', root, ...filters]);
  if (r.code !== 0) throw new Error(`ct list failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

async function withLab(
  t: ExecutionContext,
  fn: (lab: RouterLab, root: string, agents: AgentHandle[]) => Promise<void>,
): Promise<void> {
  const lab = buildRouterLab('tsct-ag');
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  const agents: AgentHandle[] = [];
  try {
    await fn(lab, root, agents);
  } finally {
    for (const a of agents) await a.stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    lab.lab.destroy();
    t.false(fs.existsSync(root), 'pins removed');
  }
}

const SIZES = ['--bpf-ct-global-tcp-max', '4096', '--bpf-ct-global-any-max', '4096'];

privTest('TCP, UDP and ping through the router show up in ct list -o json with tuple, state and counts', async (t) => {
  await withLab(t, async (lab, root, agents) => {
    agents.push(await startAgentIn(lab.router, ['--devices', 'eth1,eth2', '--bpf-root', root, ...SIZES]));
    await startEchoServer(lab.lab, lab.server, 8080, 60);
    const tcp = await tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server4,
      port: 8080,
      rounds: 4,
      bytes: 500,
      gapMs: 10,
    });
    t.true(tcp.ok, JSON.stringify(tcp));
    const udp = udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 2);
    t.true(udp.ok);
    ping(lab.lab, lab.client, lab.addr.server4, 3);

    const conns = await listJson(lab, root);
    const tcpConn = conns.find((c) => c.proto === 'TCP' && c.sport === tcp.localPort)!;
    t.truthy(tcpConn, 'the TCP connection is listed');
    t.like(tcpConn, {
      src: lab.addr.client4,
      dst: lab.addr.server4,
      dport: 8080,
      state: 'TIME_WAIT',
      established: true,
    });
    // 3-way handshake, 4 data segments each way (plus ACKs), FIN exchange:
    // at least 4 data + 3 control packets each way.
    t.true(tcpConn.txPackets >= 7 && tcpConn.rxPackets >= 6, JSON.stringify(tcpConn));
    t.true(tcpConn.txBytes >= 4 * 500 && tcpConn.rxBytes >= 4 * 500);
    const udpConn = conns.find((c) => c.proto === 'UDP' && c.sport === udp.localPort)!;
    t.like(udpConn, {
      src: lab.addr.client4,
      dst: lab.addr.server4,
      dport: 8080,
      established: true,
      txPackets: 2,
      rxPackets: 2,
    });
    const icmp = conns.find((c) => c.proto === 'ICMP')!;
    t.like(icmp, { src: lab.addr.client4, dst: lab.addr.server4, txPackets: 3, rxPackets: 3 });

    // Filters and --count.
    t.is((await listJson(lab, root, '--proto', 'udp')).length, 1);
    t.is(
      (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root])).stdout.trim(),
      String(conns.length),
    );
    const flush = await tsctIn(lab.router, ['bpf', 'ct', 'flush', 'global', '--proto', 'icmp', '--bpf-root', root]);
    t.is(flush.stdout.trim(), 'flushed 1 connection');
    t.falsy((await listJson(lab, root)).find((c) => c.proto === 'ICMP'));
  });
});

privTest(
  'a TCP connection keeps working through agent stop, start, upgrade and a resize, with its counters continuing',
  async (t) => {
    await withLab(t, async (lab, root, agents) => {
      const args = ['--devices', 'eth1,eth2', '--bpf-root', root, ...SIZES];
      agents.push(await startAgentIn(lab.router, args));
      await startEchoServer(lab.lab, lab.server, 9090, 120);
      let port = 0;
      const exchange = tcpExchange(
        lab.lab,
        lab.client,
        { host: lab.addr.server4, port: 9090, rounds: 300, bytes: 100, gapMs: 100 },
        (p) => (port = p),
      );
      const sample = async () => (await listJson(lab, root, '--dport', '9090', '--sport', String(port)))[0];
      // Wait for the connection (bounded) rather than for a fixed time: a loaded machine connects late.
      for (let i = 0; i < 50 && !port; i++) await new Promise((r) => setTimeout(r, 200));
      t.not(port, 0, 'the client connected');
      await new Promise((r) => setTimeout(r, 500));
      const before = await sample();
      t.is(before.state, 'ESTABLISHED');

      t.is(await agents.pop()!.stop(), 0, 'the agent exits cleanly on SIGTERM');
      await new Promise((r) => setTimeout(r, 600));
      const whileStopped = await sample();
      t.true(whileStopped.txPackets > before.txPackets, 'the datapath kept tracking without the agent');

      agents.push(await startAgentIn(lab.router, args));
      t.true(
        agents[0].log.some((l) => l.includes(`reused ${MAP_NAMES.length} pinned maps`)),
        agents[0].log.join('\n'),
      );
      await agents.pop()!.stop();
      // An upgrade: a fresh load of the programs replaces the attached ones over the same maps.
      agents.push(await startAgentIn(lab.router, args));
      await new Promise((r) => setTimeout(r, 600));
      const afterRestart = await sample();
      t.true(afterRestart.txPackets > whileStopped.txPackets, 'counters continue after the restart');

      // Resize: the live entry moves into the larger table.
      await agents.pop()!.stop();
      agents.push(
        await startAgentIn(lab.router, [
          '--devices',
          'eth1,eth2',
          '--bpf-root',
          root,
          '--bpf-ct-global-tcp-max',
          '8192',
          '--bpf-ct-global-any-max',
          '4096',
        ]),
      );
      t.true(
        agents[0].log.some((l) =>
          /resized tsct_ct4_global from 4096 to 8192 entries: moved [1-9]\d* live entries/.test(l),
        ),
        agents[0].log.join('\n'),
      );
      const status = JSON.parse((await tsctIn(lab.router, ['status', '-o', 'json', '--bpf-root', root])).stdout);
      t.is(status.maps.find((m: { name: string }) => m.name === 'tsct_ct4_global').maxEntries, 8192);
      await new Promise((r) => setTimeout(r, 600));
      const afterResize = await sample();
      t.truthy(afterResize, 'the connection is still tracked after the resize');
      t.true(afterResize.txPackets >= afterRestart.txPackets);

      const result = await exchange;
      t.true(result.ok, `the connection carried all its data: ${JSON.stringify(result)}`);
    });
  },
);

privTest('GC deletes expired connections and keeps live ones, also while traffic refreshes them', async (t) => {
  await withLab(t, async (lab, root, agents) => {
    agents.push(
      await startAgentIn(lab.router, [
        '--devices',
        'eth1,eth2',
        '--bpf-root',
        root,
        ...SIZES,
        '--bpf-ct-timeout-regular-any',
        '2s',
        '--bpf-ct-timeout-regular-icmp',
        '2s',
        '--conntrack-gc-interval',
        '1s',
      ]),
    );
    await startEchoServer(lab.lab, lab.server, 7070, 60);
    // Short-lived: UDP and ping, then silence.
    udpExchange(lab.lab, lab.client, lab.addr.server4, 7070, 1);
    ping(lab.lab, lab.client, lab.addr.server4, 1);
    // Live: a TCP connection exchanging every 100 ms for 12 s (established timeout stays 6 h).
    const live = tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server4,
      port: 7070,
      rounds: 120,
      bytes: 10,
      gapMs: 100,
    });
    // Live UDP over IPv6, refreshed every 300 ms through the sweeps, with a 2 s timeout.
    let refreshing = true;
    const udpLive = (async () => {
      for (let i = 0; i < 60 && refreshing; i++) {
        udpExchange(lab.lab, lab.client, lab.addr.server6, 7070, 1);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    // The short-lived ones go within timeout + interval; poll (bounded) rather than guess.
    let conns = await listJson(lab, root);
    for (
      let i = 0;
      i < 40 && conns.some((c) => c.proto === 'ICMP' || (c.proto === 'UDP' && c.dst === lab.addr.server4));
      i++
    ) {
      await new Promise((r) => setTimeout(r, 250));
      conns = await listJson(lab, root);
    }
    t.falsy(
      conns.find((c) => c.proto === 'ICMP'),
      'the expired ping is gone',
    );
    t.is(
      conns.filter((c) => c.proto === 'UDP' && c.dst === lab.addr.server4).length,
      0,
      'the expired UDP flow is gone',
    );
    t.truthy(
      conns.find((c) => c.proto === 'TCP' && c.state === 'ESTABLISHED'),
      'the live TCP connection stays',
    );
    t.truthy(
      conns.find((c) => c.proto === 'UDP' && c.dst === lab.addr.server6),
      'the UDP flow refreshed through the sweeps stays',
    );
    refreshing = false;
    await udpLive;
    t.true((await live).ok);
    const status = JSON.parse((await tsctIn(lab.router, ['status', '-o', 'json', '--bpf-root', root])).stdout);
    t.true(status.gc.runs >= 3, `GC ran (${status.gc.runs} runs)`);
    t.true(status.agent.running);
    t.true(
      agents[0].log.some((l) => /gc \(interval\): scanned \d+, deleted [1-9]/.test(l)),
      'a sweep reported deletions',
    );
  });
});
