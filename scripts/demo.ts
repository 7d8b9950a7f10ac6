// The main job: a namespace lab (client, router, server), the tsct agent on
// the router's two devices, bounded real traffic through it (TCP with data and
// a close, UDP request and reply, ping over IPv4 and IPv6), then what tsct saw:
// `tsct bpf ct list global` and `tsct status`; then a load-balanced service
// in front of the server. Everything it creates is removed.
import { buildRouterLab } from '../lab/routerLab';
import { ping, startEchoServer, tcpExchange, udpExchange, whoami } from '../lab/traffic';
import { startAgentIn, tsctIn, AgentHandle } from '../lab/agentProcess';
import { ensureBpffs } from '../src/datapath/bpffs';

function step(s: string): void {
  process.stdout.write(`\n== ${s}\n`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo builds network namespaces and loads BPF: run it as root');
  ensureBpffs();
  const lab = buildRouterLab('tsct-demo');
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  let agent: AgentHandle | null = null;
  try {
    step(`lab ${lab.lab.id}: client ${lab.addr.client4} <-> router (eth1 | eth2) <-> server ${lab.addr.server4}`);
    step('tsct agent --devices eth1,eth2 --masquerade-devices eth2 (in the router)');
    agent = await startAgentIn(lab.router, [
      '--devices',
      'eth1,eth2',
      '--masquerade-devices',
      'eth2',
      '--bpf-root',
      root,
      '--bpf-ct-global-tcp-max',
      '65536',
      '--bpf-ct-global-any-max',
      '65536',
    ]);
    for (const line of agent.log) process.stdout.write(`  ${line}\n`);

    step('traffic: TCP with data and a close, UDP request and reply, ping (IPv4 and IPv6)');
    await startEchoServer(lab.lab, lab.server, 8080, 60);
    const tcp = await tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server4,
      port: 8080,
      rounds: 5,
      bytes: 1000,
      gapMs: 20,
    });
    process.stdout.write(
      `  TCP: ${tcp.ok ? `5 x 1000 bytes echoed, closed (client port ${tcp.localPort})` : `failed: ${tcp.why}`}\n`,
    );
    const tcp6 = await tcpExchange(lab.lab, lab.client, {
      host: lab.addr.server6,
      port: 8080,
      rounds: 2,
      bytes: 200,
      gapMs: 20,
    });
    process.stdout.write(`  TCP over IPv6: ${tcp6.ok ? 'echoed and closed' : `failed: ${tcp6.why}`}\n`);
    const udp = udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 3);
    process.stdout.write(`  UDP: ${udp.got} replies\n`);
    ping(lab.lab, lab.client, lab.addr.server4, 3);
    ping(lab.lab, lab.client, lab.addr.server6, 2);
    process.stdout.write('  ping: 3 over IPv4, 2 over IPv6\n');
    const seen = whoami(lab.lab, lab.client, lab.addr.server4, 8080);
    const seen6 = whoami(lab.lab, lab.client, lab.addr.server6, 8080);
    process.stdout.write(
      `  masquerade: the client is ${lab.addr.client4}; the server sees ${seen.addr} port ${seen.port}, and ${seen6.addr} over IPv6\n`,
    );

    step('the load balancer: a service 10.200.100.10:8080 (a VIP routed nowhere) with the server as its backend');
    const vip = '10.200.100.10';
    process.stdout.write(
      (
        await tsctIn(lab.router, [
          'service',
          'update',
          '--id',
          '1',
          '--frontend',
          `${vip}:8080/tcp`,
          '--backends',
          `${lab.addr.server4}:8080`,
          '--bpf-root',
          root,
        ])
      ).stdout,
    );
    const viaVip = await tcpExchange(lab.lab, lab.client, { host: vip, port: 8080, rounds: 3, bytes: 100, gapMs: 20 });
    process.stdout.write(
      `  TCP to the VIP: ${viaVip.ok ? 'echoed by the backend and closed' : `failed: ${viaVip.why}`}\n`,
    );
    process.stdout.write((await tsctIn(lab.router, ['service', 'list', '--bpf-root', root])).stdout);
    process.stdout.write((await tsctIn(lab.router, ['bpf', 'lb', 'list', '--bpf-root', root])).stdout);

    step('tsct bpf ct list global');
    process.stdout.write((await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--bpf-root', root])).stdout);
    step('tsct bpf ct list global -o conntrack');
    process.stdout.write(
      (await tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '-o', 'conntrack', '--bpf-root', root])).stdout,
    );
    step('tsct bpf nat list');
    process.stdout.write((await tsctIn(lab.router, ['bpf', 'nat', 'list', '--bpf-root', root])).stdout);
    step('tsct status');
    process.stdout.write((await tsctIn(lab.router, ['status', '--bpf-root', root])).stdout);

    step('stopping the agent, then tsct uninstall');
    await agent.stop();
    agent = null;
    process.stdout.write((await tsctIn(lab.router, ['uninstall', '--bpf-root', root])).stdout);
  } finally {
    if (agent) await agent.stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    lab.lab.destroy();
    process.stdout.write('lab removed\n');
  }
}

main().catch((e) => {
  process.stderr.write(`tsct demo: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
});
