// Benchmark `k8s`: `tsct agent` as kube-proxy against the stand-in API server (lab/k8s/apiServer.ts) holding
// 10,000 Services with 10 endpoints each (one EndpointSlice per Service: 100,000 endpoints).
//   - initial sync: from the agent's start to /readyz 200 (ready only after the first full sync), and the agent's
//     peak RSS (VmHWM of /proc/PID/status) then;
//   - event -> datapath: EndpointSlice MODIFIED events at a steady rate (one endpoint of one service replaced by a
//     new address each time, each event on another service), and for each event the time from the stand-in's
//     write to the service's entry in the pinned tsct_lb4_services changing (the writer's last step, which points
//     the service at its rebuilt table). Measured from outside the agent: the stand-in takes the event's time, the
//     benchmark polls the pinned map every millisecond; both clocks are CLOCK_MONOTONIC. The agent's own
//     tsct_k8s_sync_latency_seconds histogram (one observation per apply, from the first event it holds) is read
//     from /metrics before and after as the second source.
// Baseline in the same run: the same 10,000 services from a services file (`tsct agent --services-file`), whose
// agent is ready once it has programmed them.
//
// Everything runs in one namespace of its own (a veth pair to a second one gives the agent a device): the
// stand-in listens on that namespace's loopback, the agent serves /readyz and /metrics there, and the stand-in's
// process (this file, run with --stand-in) also polls those for the benchmark. No packet is sent: the service
// and endpoint addresses are only entries of the maps.
//
// K8S_ROUNDS (default 3), K8S_SERVICES (10000), K8S_CHURN_RATE (100 per second), K8S_CHURN_SECONDS (20);
// K8S_NO_BASELINE=1 leaves the services-file rounds out (for profiling the agent).
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { BpfMap } from 'libbpf-ts';
import { StructView } from '../../src/bpf/layouts';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { AgentHandle, startAgentIn, tsctIn } from '../../lab/agentProcess';
import { KubeObjectInput, StandInApiServer } from '../../lab/k8s/apiServer';
import { NamespaceLab } from '../../lab/namespaceLab';
import { labAgentArgs } from '../../lab/routerAgent';
import { figure, fmt, median, verdict } from './common';

const ROUNDS = Number(process.env.K8S_ROUNDS ?? 3);
const SERVICES = Number(process.env.K8S_SERVICES ?? 10_000);
const ENDPOINTS = 10;
const CHURN_RATE = Number(process.env.K8S_CHURN_RATE ?? 100);
const CHURN_SECONDS = Number(process.env.K8S_CHURN_SECONDS ?? 20);
const NODE = 'node-a';
const SVC_PORT = 80;
const TARGET_PORT = 8080;
const METRICS_ADDR = '127.0.0.1:9962';
const READY_MS = 120_000;
const GOAL = { readyS: 10, rssMb: 400, p99Ms: 50 };

/** Service i's cluster IP: 10.200.128.0/17 (routed nowhere; only an entry of the maps). */
function vipOf(i: number): string {
  return `10.200.${128 + (i >> 8)}.${i & 0xff}`;
}

/** Endpoint address k: 10.201.0.0 onwards (only entries of the maps). */
function endpointAddr(k: number): string {
  return `10.${201 + (k >> 16)}.${(k >> 8) & 0xff}.${k & 0xff}`;
}

function serviceObject(i: number): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: 'default' },
    spec: {
      type: 'ClusterIP',
      clusterIP: vipOf(i),
      clusterIPs: [vipOf(i)],
      ports: [{ name: 'http', port: SVC_PORT, protocol: 'TCP', targetPort: TARGET_PORT }],
    },
  };
}

function sliceObject(i: number, addrs: string[]): KubeObjectInput {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${i}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    endpoints: addrs.map((addr, j) => ({
      addresses: [addr],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: 'node-b',
      targetRef: { kind: 'Pod', namespace: 'default', name: `svc-${i}-pod-${j}` },
    })),
    ports: [{ name: 'http', port: TARGET_PORT, protocol: 'TCP' }],
  };
}

const nodeObject: KubeObjectInput = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } },
  status: { addresses: [{ type: 'InternalIP', address: '10.200.1.1' }] },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mono = () => process.hrtime.bigint();

// ---------------------------------------------------------------------------------------------------------------
// The stand-in's side (run inside the namespace): the API server, filled with the services, the churn, and
// HTTP polls of the agent. Commands and answers are JSON lines on stdin and stdout.

async function standIn(): Promise<void> {
  const server = new StandInApiServer({ historyLimit: 10_000 });
  await server.start();
  const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const slices: string[][] = [];
  let nextAddr = 0;
  const get = (url: string) =>
    new Promise<{ status: number; body: string }>((resolve) => {
      const req = http.get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', () => resolve({ status: 0, body: '' }));
      req.setTimeout(2000, () => req.destroy());
    });
  const ops: Record<string, (...args: never[]) => Promise<unknown>> = {
    async fill(services: number) {
      const t0 = Date.now();
      server.apply(nodeObject);
      for (let i = 0; i < services; i++) {
        server.apply(serviceObject(i));
        const addrs = Array.from({ length: ENDPOINTS }, () => endpointAddr(nextAddr++));
        slices.push(addrs);
        server.apply(sliceObject(i, addrs));
      }
      return { ms: Date.now() - t0, kubeconfig: server.kubeconfig() };
    },
    /** Polls url every 10 ms until it answers 200: the monotonic time (ns) of that answer. */
    async pollReady(url: string, timeoutMs: number) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const r = await get(url);
        if (r.status === 200) return { t: String(mono()) };
        await sleep(10);
      }
      throw new Error(`${url} not 200 within ${timeoutMs} ms`);
    },
    async fetch(url: string) {
      return (await get(url)).body;
    },
    /** count events at rate per second, event k on service order[k]: one endpoint replaced by a new address. */
    async churn(order: number[], rate: number) {
      const start = Date.now();
      for (let k = 0; k < order.length; k++) {
        const wait = start + (k * 1000) / rate - Date.now();
        if (wait > 0) await sleep(wait);
        const i = order[k];
        slices[i][k % ENDPOINTS] = endpointAddr(nextAddr++);
        const t = mono();
        server.apply(sliceObject(i, slices[i]));
        say({ ev: i, t: String(t) });
      }
      return { ms: Date.now() - start };
    },
  };
  say({ ready: true });
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const { id, op, args } = JSON.parse(line) as { id: number; op: string; args: never[] };
    const fn = ops[op];
    if (!fn) return say({ id, error: `unknown op ${op}` });
    fn(...args).then(
      (result) => say({ id, result }),
      (e: Error) => say({ id, error: e.message }),
    );
  });
  process.stdin.on('end', () => void server.stop().then(() => process.exit(0)));
}

/** The stand-in's process in the namespace, driven over its stdin. */
class StandIn {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  onEvent: (svc: number, t: bigint) => void = () => undefined;

  private constructor(private readonly child: ChildProcess) {}

  static start(lab: NamespaceLab, ns: string): Promise<StandIn> {
    const child = lab.spawn(ns, process.execPath, ['--max-old-space-size=4096', __filename, '--stand-in']);
    const s = new StandIn(child);
    return new Promise((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line);
        if (msg.ready) resolve(s);
        else if (msg.ev !== undefined) s.onEvent(msg.ev, BigInt(msg.t));
        else {
          const w = s.waiting.get(msg.id);
          s.waiting.delete(msg.id);
          if (msg.error !== undefined) w?.reject(new Error(`stand-in: ${msg.error}`));
          else w?.resolve(msg.result);
        }
      });
      child.on('close', (code) => {
        const e = new Error(`the stand-in exited (${code}): ${err.trim().slice(-800)}`);
        reject(e);
        for (const w of s.waiting.values()) w.reject(e);
      });
    });
  }

  call<T>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: (v) => resolve(v as T), reject });
      this.child.stdin!.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  stop(): void {
    this.child.stdin!.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The benchmark's side.

interface Memory {
  hwmMb: number;
  rssMb: number;
  anonMb: number;
  fileMb: number;
  shmemMb: number;
}

function memoryOf(pid: number): Memory {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return {
    hwmMb: kb('VmHWM'),
    rssMb: kb('VmRSS'),
    anonMb: kb('RssAnon'),
    fileMb: kb('RssFile'),
    shmemMb: kb('RssShmem'),
  };
}

/** startAgentIn with node flags for the agent's process (K8S_AGENT_NODE_ARGS, e.g. --cpu-prof --cpu-prof-dir=DIR). */
function startAgent(ns: string, args: string[]): Promise<AgentHandle> {
  const nodeArgs = (process.env.K8S_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return startAgentIn(ns, args, READY_MS, nodeArgs);
}

/** The agent's pid: nsenter execs the agent (no --fork), so the child is the agent itself. */
function agentPid(agent: AgentHandle): number {
  const pid = agent.child.pid!;
  const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (!cmd.includes('tsct')) throw new Error(`pid ${pid} is not the agent: ${cmd}`);
  return pid;
}

function serviceKey(i: number): Buffer {
  const k = StructView.alloc('lb4_key');
  const a = vipOf(i).split('.').map(Number);
  Buffer.from(a).copy(k.bytes('addr'));
  k.bytes('port').writeUInt16BE(SVC_PORT);
  k.set('proto', 6);
  return k.buf;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Cumulative bucket counts of tsct_k8s_sync_latency_seconds from a /metrics text. */
function histogram(text: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^tsct_k8s_sync_latency_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)) {
    out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The upper bound (ms) of the bucket holding quantile q of the observations between two scrapes. */
function histogramQuantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const le of les) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le * 1000;
  }
  return Infinity;
}

interface Lab {
  lab: NamespaceLab;
  node: string;
  root: string;
}

function buildLab(): Lab {
  const lab = new NamespaceLab('tsct-bk8s');
  try {
    const node = lab.addNamespace('node');
    const peer = lab.addNamespace('peer');
    lab.link({ ns: node, dev: 'eth1', addrs: ['10.200.1.1/24'] }, { ns: peer, dev: 'eth0', addrs: ['10.200.1.2/24'] });
    return { lab, node, root: `/sys/fs/bpf/${lab.id}` };
  } catch (e) {
    lab.destroy();
    throw e;
  }
}

function agentArgs(root: string, extra: string[]): string[] {
  return labAgentArgs(root, 'eth1', [
    '--prometheus-serve-addr',
    METRICS_ADDR,
    // 100,000 backends and members (and the new ones of the churn, while the old ones are still there).
    '--bpf-lb-map-max',
    String(1 << 17),
    // 10,000 tables of M = 1021, and room for the changed ones next to them.
    '--bpf-lb-maglev-map-max',
    String(1 << 24),
    ...extra,
  ]);
}

async function withLab<T>(fn: (l: Lab, api: StandIn) => Promise<T>): Promise<T> {
  const l = buildLab();
  let api: StandIn | null = null;
  try {
    api = await StandIn.start(l.lab, l.node);
    return await fn(l, api);
  } finally {
    api?.stop();
    await tsctIn(l.node, ['uninstall', '--bpf-root', l.root]).catch(() => undefined);
    fs.rmSync(l.root, { recursive: true, force: true });
    l.lab.destroy();
  }
}

interface K8sRound {
  readyS: number;
  sync: Memory;
  end: Memory;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  events: number;
  missed: number;
  histP50Ms: number;
  histP99Ms: number;
  applies: number;
  /** The agent's V8 heap (used, total) and external memory after the 2 s settle, MB (tsct_nodejs_* metrics). */
  heap: { usedMb: number; totalMb: number; externalMb: number };
}

/** A gauge of a /metrics text, in MB. */
function gaugeMb(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) / (1024 * 1024) : NaN;
}

async function k8sRound(round: number): Promise<K8sRound> {
  return withLab(async (l, api) => {
    const fill = await api.call<{ ms: number; kubeconfig: string }>('fill', SERVICES);
    const kubeconfig = path.join(os.tmpdir(), `${l.lab.id}-kubeconfig`);
    fs.copyFileSync(fill.kubeconfig, kubeconfig);
    let agent: AgentHandle | null = null;
    try {
      const ready = api.call<{ t: string }>('pollReady', `http://${METRICS_ADDR}/readyz`, READY_MS);
      const t0 = mono();
      agent = await startAgent(
        l.node,
        agentArgs(l.root, ['--k8s-kubeconfig-path', kubeconfig, '--k8s-node-name', NODE]),
      );
      const pid = agentPid(agent);
      const readyS = Number(BigInt((await ready).t) - t0) / 1e9;
      const sync = memoryOf(pid);
      if (!agent.log.some((line) => line.includes('kubernetes: synced with'))) {
        throw new Error(`ready without the sync line:\n${agent.log.slice(-20).join('\n')}`);
      }
      // Let the agent settle (the GC loop's first sweep, the collector) before the churn.
      await sleep(2000);
      const settled = await api.call<string>('fetch', `http://${METRICS_ADDR}/metrics`);
      const heap = {
        usedMb: gaugeMb(settled, 'tsct_nodejs_heap_size_used_bytes'),
        totalMb: gaugeMb(settled, 'tsct_nodejs_heap_size_total_bytes'),
        externalMb: gaugeMb(settled, 'tsct_nodejs_external_memory_bytes'),
      };

      const services = BpfMap.openPinned(path.join(l.root, 'tsct_lb4_services'));
      const lat: number[] = [];
      let missed = 0;
      try {
        // Each event on another service: stride through the services with a step prime to their count.
        const count = Math.round(CHURN_RATE * CHURN_SECONDS);
        const step = 7919 % SERVICES === 0 ? 1 : 7919;
        const order = Array.from({ length: count }, (_, k) => (k * step + round * 13) % SERVICES);
        const keys = new Map(order.map((i) => [i, serviceKey(i)]));
        const last = new Map<number, Buffer>();
        for (const [i, key] of keys) {
          const v = services.lookup(key);
          if (!v) throw new Error(`service ${vipOf(i)} is not in tsct_lb4_services`);
          last.set(i, Buffer.from(v));
        }
        const pending = new Map<number, bigint>();
        api.onEvent = (i, t) => pending.set(i, t);
        const metricsBefore = histogram(await api.call<string>('fetch', `http://${METRICS_ADDR}/metrics`));
        let churning = true;
        const churn = api.call('churn', order, CHURN_RATE).finally(() => (churning = false));
        const poll = () => {
          const now = mono();
          for (const [i, t] of pending) {
            const v = services.lookup(keys.get(i)!);
            if (v && !v.equals(last.get(i)!)) {
              lat.push(Number(now - t) / 1e6);
              last.set(i, Buffer.from(v));
              pending.delete(i);
            }
          }
        };
        while (churning) {
          poll();
          await sleep(1);
        }
        await churn;
        // What is still pending gets 10 s more; what is not seen by then counts as infinitely late.
        const deadline = Date.now() + 10_000;
        while (pending.size && Date.now() < deadline) {
          poll();
          await sleep(1);
        }
        missed = pending.size;
        const metricsAfter = histogram(await api.call<string>('fetch', `http://${METRICS_ADDR}/metrics`));
        const end = memoryOf(pid);
        // An event whose change was not seen within the window counts as slower than any that was.
        const sorted = [...lat.sort((a, b) => a - b), ...Array<number>(missed).fill(Infinity)];
        const applies = (metricsAfter.get(Infinity) ?? 0) - (metricsBefore.get(Infinity) ?? 0);
        return {
          readyS,
          sync,
          end,
          p50Ms: quantile(sorted, 0.5),
          p99Ms: quantile(sorted, 0.99),
          maxMs: lat[lat.length - 1] ?? NaN,
          events: lat.length,
          missed,
          histP50Ms: histogramQuantile(metricsBefore, metricsAfter, 0.5),
          histP99Ms: histogramQuantile(metricsBefore, metricsAfter, 0.99),
          applies,
          heap,
        };
      } finally {
        services.close();
      }
    } finally {
      if (agent) await agent.stop();
      fs.rmSync(kubeconfig, { force: true });
    }
  });
}

/** The same services as a services file (JSON is YAML). */
function writeServicesFile(file: string): void {
  const services = [];
  let k = 0;
  for (let i = 0; i < SERVICES; i++) {
    const backends = [];
    for (let j = 0; j < ENDPOINTS; j++) backends.push(`${endpointAddr(k++)}:${TARGET_PORT}`);
    services.push({
      id: i + 1,
      name: `default/svc-${i}:http`,
      frontend: `${vipOf(i)}:${SVC_PORT}/tcp`,
      backends,
    });
  }
  fs.writeFileSync(file, JSON.stringify({ services }));
}

async function fileRound(): Promise<{ readyS: number; sync: Memory }> {
  return withLab(async (l, api) => {
    const file = path.join(os.tmpdir(), `${l.lab.id}-services.json`);
    writeServicesFile(file);
    let agent: AgentHandle | null = null;
    try {
      const ready = api.call<{ t: string }>('pollReady', `http://${METRICS_ADDR}/readyz`, READY_MS);
      const t0 = mono();
      agent = await startAgent(l.node, agentArgs(l.root, ['--services-file', file]));
      const pid = agentPid(agent);
      const readyS = Number(BigInt((await ready).t) - t0) / 1e9;
      return { readyS, sync: memoryOf(pid) };
    } finally {
      if (agent) await agent.stop();
      fs.rmSync(file, { force: true });
    }
  });
}

async function main(): Promise<void> {
  ensureBpffs();
  figure('services', SERVICES);
  figure('endpoints', SERVICES * ENDPOINTS);
  figure('churn_events_per_s', CHURN_RATE);
  figure('churn_seconds', CHURN_SECONDS);
  const k: K8sRound[] = [];
  const f: Array<{ readyS: number; sync: Memory }> = [];
  // Interleaved: a services-file round, then a Kubernetes round, ROUNDS times.
  for (let round = 0; round < ROUNDS; round++) {
    const fr = process.env.K8S_NO_BASELINE ? { readyS: NaN, sync: memoryOf(process.pid) } : await fileRound();
    f.push(fr);
    console.log(
      `# round ${round + 1} services file: ready ${fmt(fr.readyS)} s, VmHWM ${fmt(fr.sync.hwmMb)} MB ` +
        `(at ready: anon ${fmt(fr.sync.anonMb)}, file ${fmt(fr.sync.fileMb)}, shmem ${fmt(fr.sync.shmemMb)})`,
    );
    const kr = await k8sRound(round);
    k.push(kr);
    console.log(
      `# round ${round + 1} k8s: ready ${fmt(kr.readyS)} s, VmHWM ${fmt(kr.sync.hwmMb)} MB at ready ` +
        `(anon ${fmt(kr.sync.anonMb)}, file ${fmt(kr.sync.fileMb)}, shmem ${fmt(kr.sync.shmemMb)}), ` +
        `${fmt(kr.end.hwmMb)} MB after the churn; event->map p50 ${fmt(kr.p50Ms)} ms p99 ${fmt(kr.p99Ms)} ms ` +
        `max seen ${fmt(kr.maxMs)} ms (${kr.events} events seen, ${kr.missed} not seen within 10 s of the churn's end); histogram p50 <= ${fmt(kr.histP50Ms)} ms ` +
        `p99 <= ${fmt(kr.histP99Ms)} ms over ${kr.applies} applies; V8 heap 2 s after ready ` +
        `${fmt(kr.heap.usedMb)} MB used of ${fmt(kr.heap.totalMb)}, external ${fmt(kr.heap.externalMb)} MB`,
    );
  }
  const m = (xs: number[]) => median(xs);
  const readyS = m(k.map((r) => r.readyS));
  const fileReadyS = m(f.map((r) => r.readyS));
  const hwm = m(k.map((r) => r.sync.hwmMb));
  const fileHwm = m(f.map((r) => r.sync.hwmMb));
  const p50 = m(k.map((r) => r.p50Ms));
  const p99 = m(k.map((r) => r.p99Ms));
  figure('k8s_ready_s_median', readyS);
  figure('file_ready_s_median', fileReadyS);
  figure('k8s_ready_over_file', readyS / fileReadyS);
  figure('k8s_vmhwm_at_ready_mb_median', hwm);
  figure('k8s_rss_anon_at_ready_mb_median', m(k.map((r) => r.sync.anonMb)));
  figure('k8s_rss_file_at_ready_mb_median', m(k.map((r) => r.sync.fileMb)));
  figure('k8s_vmhwm_after_churn_mb_median', m(k.map((r) => r.end.hwmMb)));
  figure('file_vmhwm_at_ready_mb_median', fileHwm);
  figure('file_rss_anon_at_ready_mb_median', m(f.map((r) => r.sync.anonMb)));
  figure('k8s_vmhwm_over_file', hwm / fileHwm);
  figure('event_to_map_p50_ms_median', p50);
  figure('event_to_map_p99_ms_median', p99);
  figure('event_to_map_max_ms_median', m(k.map((r) => r.maxMs)));
  figure(
    'events_not_seen_total',
    k.reduce((n, r) => n + r.missed, 0),
  );
  figure('histogram_p50_le_ms_median', m(k.map((r) => r.histP50Ms)));
  figure('histogram_p99_le_ms_median', m(k.map((r) => r.histP99Ms)));
  figure('applies_per_churn_median', m(k.map((r) => r.applies)));
  figure(
    'summary',
    `10k services x 10 endpoints: ready in ${fmt(readyS)} s (<= ${GOAL.readyS}: ${verdict(readyS <= GOAL.readyS)}; ` +
      `${fmt(readyS / fileReadyS)}x the services file's ${fmt(fileReadyS)} s), peak RSS ${fmt(hwm)} MB ` +
      `(<= ${GOAL.rssMb}: ${verdict(hwm <= GOAL.rssMb)}; ${fmt(hwm / fileHwm)}x the services file's ${fmt(fileHwm)} MB); ` +
      `event -> map under ${CHURN_RATE}/s p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms ` +
      `(<= ${GOAL.p99Ms}: ${verdict(p99 <= GOAL.p99Ms)}; measured outside the agent)`,
  );
}

if (process.argv.includes('--stand-in')) {
  standIn().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(`k8s benchmark could not measure: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
