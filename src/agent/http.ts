// The agent's HTTP endpoints: /metrics for Prometheus, /healthz (the datapath
// is attached to every device) and /readyz (attached, and the GC is running).
import * as http from 'node:http';
import { Metric, Registry } from 'prom-client';
import { Datapath } from '../datapath/datapath';
import { attachmentsOf } from '../datapath/attach';
import { parseServeAddr } from './options';
import { UsageError } from '../errors';
import { buildRegistry, PolicyCounts } from '../metrics/registry';
import { readBackendStates, readLbStats } from '../metrics/lbStats';
import { GcLoop } from './gcLoop';

export interface Health {
  attached(): { ok: boolean; why: string };
  gcRunning(): { ok: boolean; why: string };
  /** Whatever else readiness waits for (the first full Kubernetes sync). */
  synced?(): { ok: boolean; why: string };
}

export async function serveHttp(addr: string, registry: Registry, health: Health): Promise<http.Server> {
  const { host, port } = parseServeAddr(addr);
  const server = http.createServer((req, res) => {
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => reply(200, text, registry.contentType),
        (e) => reply(500, `metrics failed: ${(e as Error).message}\n`),
      );
    } else if (path === '/healthz') {
      const a = health.attached();
      reply(a.ok ? 200 : 503, a.ok ? 'ok\n' : `${a.why}\n`);
    } else if (path === '/readyz') {
      const failed = [health.attached(), health.gcRunning(), health.synced?.() ?? { ok: true, why: '' }].find(
        (c) => !c.ok,
      );
      reply(failed ? 503 : 200, failed ? `${failed.why}\n` : 'ok\n');
    } else {
      reply(404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          `--prometheus-serve-addr: cannot listen on ${addr}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.code}`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** The agent's endpoints over its datapath: metrics read at scrape time, health from the attachments and the GC. */
/** What the agent knows of the services it programs, for the metrics' labels and counters. */
export interface LbStatus {
  names: Map<number, string>;
  tablesRebuilt: number;
}

export async function startAgentHttp(
  addr: string,
  dp: Datapath,
  gc: GcLoop,
  devices: Array<{ name: string; ifindex: number }>,
  lbStatus: LbStatus = { names: new Map(), tablesRebuilt: 0 },
  k8s?: { ready(): boolean; metrics: Metric[] },
  policy?: () => PolicyCounts | null,
): Promise<http.Server> {
  const sizes: Record<string, number> = {};
  for (const [name, m] of Object.entries(dp.maps)) sizes[name] = m.maxEntries;
  const { registry, gcDuration } = buildRegistry({
    reasons: () => dp.metrics(),
    lastGc: () => gc.lastGc(),
    gcRuns: () => gc.runs(),
    gcIntervalS: () => gc.schedule.intervalS,
    mapSizes: () => sizes,
    lb: {
      services: () => readLbStats(dp.maps.tsct_lb_stats),
      backendStates: () => readBackendStates(dp.maps.tsct_lb_backends),
      names: () => lbStatus.names,
      tablesRebuilt: () => lbStatus.tablesRebuilt,
    },
    policy,
  });
  gc.onSweep = (r) => gcDuration.observe({ status: 'completed' }, r.durationNs / 1e9);
  for (const m of k8s?.metrics ?? []) registry.registerMetric(m);
  return serveHttp(addr, registry, {
    attached: () => {
      const missing = devices.filter((d) => attachmentsOf(d.ifindex).length < 2).map((d) => d.name);
      return { ok: missing.length === 0, why: `not attached to ${missing.join(', ')}` };
    },
    gcRunning: () => ({ ok: !gc.overdue(), why: 'garbage collection is overdue' }),
    synced: k8s ? () => ({ ok: k8s.ready(), why: 'the first full sync from Kubernetes is not done yet' }) : undefined,
  });
}
