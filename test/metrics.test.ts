// Prometheus metrics and health endpoints, scraped by a real Prometheus
// server (Debian's) started on the router's loopback, next to the agent.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { BpfMap } from 'libbpf-ts';
import { privTest } from './helpers/privilege';
import { buildRouterLab } from '../lab/routerLab';
import { NamespaceLab } from '../lab/namespaceLab';
import { ping, startEchoServer, tcpExchange, udpExchange } from '../lab/traffic';
import { startAgentIn, tsctIn, AgentHandle } from '../lab/agentProcess';
import { httpGetIn } from '../lab/httpIn';
import { injectFrames } from '../lab/inject';
import { frame } from '../lab/packetCraft';
import { fillCt4 } from '../scripts/bench/ctFill';

const AGENT = '127.0.0.1:9962';
const PROM = '127.0.0.1:9090';

function startPrometheus(ns: string, dir: string): ChildProcess {
  fs.writeFileSync(
    path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tsct\n    static_configs:\n      - targets: ['${AGENT}']\n`,
  );
  return spawn(
    'nsenter',
    [
      `--net=${NamespaceLab.path(ns)}`,
      'prometheus',
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=${PROM}`,
      '--log.level=warn',
    ],
    { stdio: 'ignore' },
  );
}

/** The sum of a PromQL query's samples, as Prometheus answers it (0 when no sample yet). */
async function promValue(ns: string, query: string): Promise<number> {
  const r = await httpGetIn(ns, `http://${PROM}/api/v1/query?query=${encodeURIComponent(query)}`);
  if (r.status !== 200) return NaN;
  const data = JSON.parse(r.body).data?.result ?? [];
  return data.reduce((s: number, x: { value: [number, string] }) => s + Number(x.value[1]), 0);
}

async function waitFor(what: string, check: () => Promise<boolean>, seconds = 30): Promise<void> {
  for (let i = 0; i < seconds * 2; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}`);
}

privTest(
  'Prometheus scrapes the agent: forwarded packets, new connections and a drop reason rise with real traffic; promtool finds no problem',
  async (t) => {
    t.timeout(150_000);
    const lab = buildRouterLab('tsct-prom');
    const root = `/sys/fs/bpf/${lab.lab.id}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-prom-'));
    let agent: AgentHandle | null = null;
    let prom: ChildProcess | null = null;
    try {
      agent = await startAgentIn(lab.router, [
        '--devices',
        'eth1,eth2',
        '--bpf-root',
        root,
        '--bpf-ct-global-tcp-max',
        String(1 << 20),
        '--bpf-ct-global-any-max',
        '4096',
        '--conntrack-gc-interval',
        '1s',
        '--prometheus-serve-addr',
        AGENT,
      ]);
      t.is((await httpGetIn(lab.router, `http://${AGENT}/healthz`)).status, 200);
      t.is((await httpGetIn(lab.router, `http://${AGENT}/readyz`)).status, 200);
      prom = startPrometheus(lab.router, dir);
      await waitFor(
        'Prometheus to scrape the agent',
        async () => (await promValue(lab.router, 'up{job="tsct"}')) === 1,
      );
      const fwdBefore = await promValue(lab.router, 'tsct_forward_count_total');
      const newBefore = await promValue(lab.router, 'tsct_datapath_conntrack_created_total');

      await startEchoServer(lab.lab, lab.server, 8080, 60);
      t.true(
        (
          await tcpExchange(lab.lab, lab.client, {
            host: lab.addr.server4,
            port: 8080,
            rounds: 5,
            bytes: 200,
            gapMs: 10,
          })
        ).ok,
      );
      t.true(udpExchange(lab.lab, lab.client, lab.addr.server4, 8080, 3).ok);
      ping(lab.lab, lab.client, lab.addr.server4, 3);
      // Malformed: SYN+FIN, arriving on the router's eth1.
      const bad = Array.from({ length: 5 }, (_, i) =>
        frame({
          src: lab.addr.client4,
          dst: lab.addr.server4,
          l4: { tcp: { sport: 1000 + i, dport: 80, flags: 'SF' } },
        }),
      );
      injectFrames(lab.lab, lab.client, 'eth0', bad);

      await waitFor(
        'forwarded packets to rise',
        async () => (await promValue(lab.router, 'tsct_forward_count_total')) >= fwdBefore + 30,
      );
      await waitFor(
        'new connections to rise',
        async () => (await promValue(lab.router, 'tsct_datapath_conntrack_created_total')) >= newBefore + 3,
      );
      await waitFor(
        'the invalid reason to rise',
        async () =>
          (await promValue(lab.router, 'tsct_invalid_count_total{reason="INV_TCP_FLAGS",direction="INGRESS"}')) === 5,
      );
      await waitFor(
        'GC metrics',
        async () => (await promValue(lab.router, 'tsct_datapath_conntrack_gc_runs_total')) >= 1,
      );
      await waitFor(
        'connections by TCP state (from a sweep after the traffic)',
        async () => (await promValue(lab.router, 'tsct_datapath_conntrack_connections{protocol="TCP"}')) >= 1,
      );
      t.true(Number.isFinite(await promValue(lab.router, 'tsct_bpf_map_pressure{map_name="tsct_ct4_global"}')));
      t.true((await promValue(lab.router, 'tsct_process_cpu_seconds_total')) > 0, 'process metrics');

      const text = (await httpGetIn(lab.router, `http://${AGENT}/metrics`)).body;
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      t.is(check.status, 0, check.stdout + check.stderr);
      t.is((check.stdout + check.stderr).trim(), '', 'promtool reports nothing');

      // A million entries, listed by the CLI and swept by the GC, while /metrics is scraped.
      const table = BpfMap.openPinned(`${root}/tsct_ct4_global`);
      await fillCt4(table, 1_000_000, process.hrtime.bigint());
      table.close();
      const listing = tsctIn(lab.router, ['bpf', 'ct', 'list', 'global', '--count', '--bpf-root', root]);
      const latencies: number[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await httpGetIn(lab.router, `http://${AGENT}/metrics`);
        t.is(r.status, 200);
        latencies.push(r.ms);
        await new Promise((res) => setTimeout(res, 250));
      }
      const listed = await listing;
      t.is(listed.code, 0);
      t.true(Number(listed.stdout.trim()) >= 500_000, 'the listing ran over the big table');
      t.true(
        Math.max(...latencies) < 1000,
        `/metrics answered within a second during the listing and sweeps: ${latencies.join(', ')} ms`,
      );
    } finally {
      prom?.kill('SIGKILL');
      if (agent) await agent.stop();
      await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
      lab.lab.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

privTest('a bad --prometheus-serve-addr is refused with one line', async (t) => {
  const r = await tsctIn(null, ['agent', '--devices', 'lo', '--prometheus-serve-addr', 'nowhere']);
  t.not(r.code, 0);
  t.regex(r.stderr.trim(), /^tsct: --prometheus-serve-addr: 'nowhere' is not host:port/);
});
