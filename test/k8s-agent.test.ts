// `tsct agent` as kube-proxy: Services and EndpointSlices from the stand-in API server (lab/k8s/apiServer.ts),
// real TCP and UDP from a client namespace to the service addresses, served by three backend namespaces through
// the router the agent runs on. Scenarios after the Kubernetes e2e tests of the same names (sig-network Services
// and Conntrack).
//
// Where the stand-in runs: the agent runs inside the router's network namespace (nsenter --net), and the stand-in
// listens on 127.0.0.1 only, so it is started in the router's namespace too, as a child process (STAND_IN below)
// that builds a StandInApiServer there and takes its commands as JSON lines on stdin (a method name and its
// arguments), answering each with a JSON line. Its kubeconfig is a file, which both namespaces see.
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import test, { ExecutionContext } from 'ava';
import { privTest, privTestSerial } from './helpers/privilege';
import { AgentHandle, CliResult, startAgentIn, tsctIn } from '../lab/agentProcess';
import { NamespaceLab } from '../lab/namespaceLab';
import { labAgentArgs } from '../lab/routerAgent';
import { httpGetIn } from '../lab/httpIn';
import { StandInApiServer } from '../lab/k8s/apiServer';
import { describeK8sError, K8sResource, loadKubeConfig, startK8sInformers } from '../src/k8s/informers';
import { HealthCheckServers } from '../src/k8s/healthCheckServer';
import {
  buildLbLab,
  cleanupLbLab,
  LbLab,
  liveTcpClient,
  startNameServer,
  startUdpStream,
  tcpConnectOutcome,
  whoServes,
} from '../lab/lbLab';
import type { KubeObjectInput, StandInApiServerOptions } from '../lab/k8s/apiServer';
import { frontendText, LbService } from '../src/lb/lbService';

const NODE = 'node-a';
const PORT = 8080;
const PORT2 = 9090;
const VIP = '10.200.100.10';
/** Every wait polls at this period until its deadline. */
const POLL_MS = 50;
const WAIT_MS = 20_000;
/** The agent's /metrics, inside the router's namespace, where a test asks for it. */
const METRICS = '127.0.0.1:9963';

const STAND_IN = `
const readline = require('readline');
const [modulePath, optionsJson, maxSeconds] = process.argv.slice(1);
const { StandInApiServer } = require(modulePath);
const server = new StandInApiServer(JSON.parse(optionsJson));
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const METHODS = ['apply', 'delete', 'restart', 'compact', 'cutWatches', 'failNext', 'stall', 'requestCount', 'watchCount', 'list'];
server.start().then(() => say({ ready: true, url: server.url, kubeconfig: server.kubeconfig() }));
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, op, args } = JSON.parse(line);
  try {
    if (!METHODS.includes(op)) throw new Error('not a stand-in command: ' + op);
    say({ id, result: await server[op](...args) });
  } catch (e) {
    say({ id, error: String(e && e.message) });
  }
});
process.stdin.on('end', () => server.stop().then(() => process.exit(0)));
setTimeout(() => server.stop().then(() => process.exit(0)), Number(maxSeconds) * 1000);
`;

/** The stand-in API server running in a namespace, driven over its stdin. */
class RemoteApiServer {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  url = '';
  kubeconfig = '';

  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('close', () => resolve()));
  }

  static start(
    l: LbLab,
    ns: string,
    options: StandInApiServerOptions = {},
    maxSeconds = 170,
  ): Promise<RemoteApiServer> {
    const modulePath = path.resolve(__dirname, '..', 'lab', 'k8s', 'apiServer.js');
    const child = l.lab.spawn(ns, process.execPath, [
      '-e',
      STAND_IN,
      modulePath,
      JSON.stringify(options),
      String(maxSeconds),
    ]);
    const server = new RemoteApiServer(child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the stand-in API server did not start')), 10_000);
      let buf = '';
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const msg = JSON.parse(buf.slice(0, i));
          buf = buf.slice(i + 1);
          if (msg.ready) {
            clearTimeout(timer);
            server.url = msg.url;
            server.kubeconfig = msg.kubeconfig;
            resolve(server);
          } else {
            const w = server.waiting.get(msg.id);
            server.waiting.delete(msg.id);
            if (msg.error !== undefined) w?.reject(new Error(`stand-in: ${msg.error}`));
            else w?.resolve(msg.result);
          }
        }
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`the stand-in API server exited (${code}): ${err.trim().slice(-500)}`));
        for (const w of server.waiting.values()) w.reject(new Error('the stand-in API server exited'));
      });
    });
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stand-in ${op}: no answer`)), 15_000);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin!.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  apply(o: KubeObjectInput): Promise<unknown> {
    return this.call('apply', o);
  }

  delete(kind: string, name: string): Promise<unknown> {
    return this.call('delete', kind, 'default', name);
  }

  stop(): void {
    this.child.stdin!.end();
  }
}

function service(name: string, clusterIP: string, ports: object[], spec: object = {}): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports, ...spec },
  };
}

interface Ep {
  addr: string;
  name: string;
  ready?: boolean;
  /** True unless said: a terminating pod still serves until its readiness probe fails. */
  serving?: boolean;
  terminating?: boolean;
  /** The node the pod runs on; another node's unless said. */
  node?: string;
}

function slice(name: string, svc: string, eps: Ep[], ports: object[]): KubeObjectInput {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({
      addresses: [e.addr],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? true, terminating: e.terminating ?? false },
      nodeName: e.node ?? 'node-b',
      targetRef: { kind: 'Pod', namespace: 'default', name: e.name },
    })),
    ports,
  };
}

const HTTP = { name: 'http', port: 80, protocol: 'TCP', targetPort: PORT };
const HTTP_SLICE = { name: 'http', port: PORT, protocol: 'TCP' };

function node(): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } },
    status: { addresses: [{ type: 'InternalIP', address: '10.200.1.1' }] },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function eventually<T>(what: string, probe: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!ok(last)) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(last)}`);
    await sleep(POLL_MS);
    last = await probe();
  }
  return last;
}

/** Waits for an agent log line matching re after line `from`; returns the index after it. */
async function logLine(agent: AgentHandle, re: RegExp, from = 0, timeoutMs = WAIT_MS): Promise<number> {
  await eventually(
    `the agent to log ${re}`,
    () => agent.log.slice(from).findIndex((l) => re.test(l)),
    (i) => i >= 0,
    timeoutMs,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${agent.log.slice(-30).join('\n')}`);
  });
  return from + agent.log.slice(from).findIndex((l) => re.test(l)) + 1;
}

/** The agent on the router, as startLbAgent starts it, with more time to load: these tests run beside others. */
async function startLbAgent(l: LbLab, extra: string[]): Promise<{ agent: AgentHandle; root: string }> {
  const root = `/sys/fs/bpf/${l.lab.id}`;
  const args = labAgentArgs(root, l.devices, ['--prometheus-serve-addr', 'off', ...extra]);
  return { agent: await startAgentIn(l.router, args, 120_000), root };
}

interface K8sLab {
  l: LbLab;
  api: RemoteApiServer;
  root: string;
  agent: () => AgentHandle;
  /** Stops the agent and starts it again on the same bpf-root; resolves once it attached. */
  restartAgent(between?: () => Promise<void>): Promise<void>;
  /** The services in the maps, as `tsct service list` shows them. */
  services(): Promise<LbService[]>;
  /** Waits until each frontend (ADDR:PORT/PROTO) has these backends (`ADDR:PORT state`, sorted); null: absent. */
  until(want: Record<string, string[] | null>): Promise<void>;
}

async function withK8sLab(
  t: ExecutionContext,
  prefix: string,
  fn: (k: K8sLab) => Promise<void>,
  opts: { apiDownAtStart?: boolean; agentFlags?: string[] } = {},
): Promise<void> {
  const l = buildLbLab(prefix);
  let agent: AgentHandle | null = null;
  let root = `/sys/fs/bpf/${l.lab.id}`;
  let api: RemoteApiServer | null = null;
  const kubeconfig = path.join(os.tmpdir(), `${l.lab.id}-kubeconfig`);
  try {
    for (const b of l.backends) {
      await startNameServer(l.lab, b, PORT, 170);
      await startNameServer(l.lab, b, PORT2, 170);
    }
    // A fixed port and token, so that a stand-in started again is the same server to the agent.
    const apiOptions = { port: 6443, token: `stand-in-${l.lab.id}` };
    api = await RemoteApiServer.start(l, l.router, apiOptions);
    // A copy of its own: the stand-in removes its kubeconfig when it stops.
    fs.copyFileSync(api.kubeconfig, kubeconfig);
    const flags = ['--k8s-kubeconfig-path', kubeconfig, '--k8s-node-name', NODE, ...(opts.agentFlags ?? [])];
    if (opts.apiDownAtStart) {
      // The API server away while the agent starts: it says so in one line, runs on, and syncs once it is back.
      api.stop();
      await api.exited;
      ({ agent, root } = await startLbAgent(l, flags));
      await logLine(agent, / warn .*kubernetes: /);
      api = await RemoteApiServer.start(l, l.router, apiOptions);
    } else {
      ({ agent, root } = await startLbAgent(l, flags));
    }
    await api.apply(node());
    const synced = await logLine(agent, /kubernetes: synced with /, 0, 40_000);
    if (opts.apiDownAtStart) {
      const before = agent.log.slice(0, synced);
      const lost = before.filter((line) => / warn .*kubernetes: http:\/\/127\.0\.0\.1:6443 /.test(line));
      t.is(lost.length, 1, `one line for the API server away:\n${before.join('\n')}`);
      t.regex(lost[0], /fetch failed \(ECONNREFUSED\); no service is programmed from it until it answers/);
      t.true(before.some((line) => /kubernetes: http:.* answers again after/.test(line)));
    }
    const theApi = api;
    const k: K8sLab = {
      l,
      api: theApi,
      root,
      agent: () => agent!,
      async restartAgent(between) {
        await agent!.stop();
        agent = null;
        await between?.();
        ({ agent } = await startLbAgent(l, flags));
      },
      async services() {
        const r = await tsctIn(l.router, ['service', 'list', '-o', 'json', '--bpf-root', root]);
        t.is(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as LbService[];
      },
      async until(want) {
        const view = (list: LbService[]) =>
          Object.fromEntries(
            Object.keys(want).map((fe) => {
              const s = list.find((x) => frontendText(x.frontend) === fe);
              return [fe, s ? s.backends.map((b) => `${b.addr}:${b.port} ${b.state}`).sort() : null];
            }),
          );
        const expected = JSON.stringify(
          Object.fromEntries(Object.entries(want).map(([fe, bes]) => [fe, bes && [...bes].sort()])),
        );
        await eventually(
          `the maps to hold ${expected}`,
          async () => view(await k.services()),
          (v) => JSON.stringify(v) === expected,
        );
      },
    };
    await fn(k);
  } finally {
    api?.stop();
    fs.rmSync(kubeconfig, { force: true });
    await cleanupLbLab(l, root, agent);
  }
}

/** The backend names whoServes saw, sorted. */
function servedBy(r: { seen: Record<string, number> }): string[] {
  return Object.keys(r.seen).sort();
}

const active = (addrs: string[], port = PORT) => addrs.map((a) => `${a}:${port} active`);

privTestSerial(
  'Services from the API server: basic endpoints, multiport, no endpoints refused, endpoints added, service deleted, ClientIP affinity, NodePort',
  async (t) => {
    await withK8sLab(t, 'tsct-k8s', async (k) => {
      const { l, api } = k;
      const eps = l.backends.map((b) => ({ addr: b.addr4, name: `${b.name}-pod` }));
      const addrs = eps.map((e) => e.addr);
      // [Conformance] should serve a basic endpoint from pods: three endpoints, all three serve.
      await api.apply(service('web', VIP, [HTTP]));
      await api.apply(slice('web-1', 'web', eps, [HTTP_SLICE]));
      await k.until({ [`${VIP}:80/TCP`]: active(addrs) });
      const basic = whoServes(l.lab, l.client, VIP, 80, 30, 'tcp');
      t.is(basic.failed, 0);
      t.deepEqual(servedBy(basic), ['be1', 'be2', 'be3']);

      // [Conformance] should serve multiport endpoints from pods: each service port to its target port by name.
      const MULTI = '10.200.100.11';
      await api.apply(
        service('multi', MULTI, [
          { name: 'portname1', port: 80, protocol: 'TCP', targetPort: 'web' },
          { name: 'portname2', port: 81, protocol: 'TCP', targetPort: 'metrics' },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'metrics' },
        ]),
      );
      await api.apply(
        slice('multi-1', 'multi', eps.slice(0, 2), [
          { name: 'portname1', port: PORT, protocol: 'TCP' },
          { name: 'portname2', port: PORT2, protocol: 'TCP' },
          { name: 'dns', port: PORT2, protocol: 'UDP' },
        ]),
      );
      await k.until({
        [`${MULTI}:80/TCP`]: active(addrs.slice(0, 2)),
        [`${MULTI}:81/TCP`]: active(addrs.slice(0, 2), PORT2),
        [`${MULTI}:53/UDP`]: active(addrs.slice(0, 2), PORT2),
      });
      for (const [port, proto] of [
        [80, 'tcp'],
        [81, 'tcp'],
        [53, 'udp'],
      ] as const) {
        const r = whoServes(l.lab, l.client, MULTI, port, 10, proto);
        t.is(r.failed, 0, `${MULTI}:${port}/${proto}`);
        t.deepEqual(servedBy(r), ['be1', 'be2'], `${MULTI}:${port}/${proto}`);
      }

      // should be rejected when no endpoints exist: refused at once, as kube-proxy's REJECT.
      const EMPTY = '10.200.100.12';
      await api.apply(service('empty', EMPTY, [HTTP]));
      await k.until({ [`${EMPTY}:80/TCP`]: [] });
      const refused = tcpConnectOutcome(l.lab, l.client, EMPTY, 80);
      t.is(refused.outcome, 'refused');
      t.true(refused.ms < 1000, `refused in ${refused.ms} ms`);
      // An endpoint added: the next connection is served.
      await api.apply(slice('empty-1', 'empty', eps.slice(2), [HTTP_SLICE]));
      await k.until({ [`${EMPTY}:80/TCP`]: active(addrs.slice(2)) });
      t.deepEqual(servedBy(whoServes(l.lab, l.client, EMPTY, 80, 5, 'tcp')), ['be3']);

      // should be able to up and down services: deleted, its address no longer connects, and fails at once.
      await api.delete('Service', 'web');
      await k.until({ [`${VIP}:80/TCP`]: null });
      const gone = tcpConnectOutcome(l.lab, l.client, VIP, 80);
      t.not(gone.outcome, 'connected');
      t.true(gone.ms < 1000, `${gone.outcome} in ${gone.ms} ms`);

      // [Conformance] should have session affinity work for service with type clusterIP: 20 connections, one backend.
      const STICKY = '10.200.100.13';
      await api.apply(
        service('sticky', STICKY, [HTTP], {
          sessionAffinity: 'ClientIP',
          sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        }),
      );
      await api.apply(slice('sticky-1', 'sticky', eps, [HTTP_SLICE]));
      await k.until({ [`${STICKY}:80/TCP`]: active(addrs) });
      const sticky = whoServes(l.lab, l.client, STICKY, 80, 20, 'tcp');
      t.is(sticky.failed, 0);
      t.is(servedBy(sticky).length, 1, `20 connections, one backend: ${JSON.stringify(sticky.seen)}`);
      t.is((await k.services()).find((s) => s.frontend.addr === STICKY)?.affinityTimeoutS, 60);

      // [Conformance] should be able to create a functioning NodePort service: on the node's address (its Node's
      // InternalIP), with the client's source translated (externalTrafficPolicy Cluster), so that even a backend
      // whose replies would not route back through the node answers.
      const NODE_IP = '10.200.1.1';
      const be3 = l.backends[2];
      l.lab.exec(be3.ns, 'ip', ['route', 'replace', 'default', 'via', '10.200.12.254']);
      await api.apply(
        service('np', '10.200.100.15', [{ ...HTTP, nodePort: 30080 }], {
          type: 'NodePort',
          externalTrafficPolicy: 'Cluster',
        }),
      );
      await api.apply(slice('np-1', 'np', eps.slice(2), [HTTP_SLICE]));
      await k.until({ [`${NODE_IP}:30080/TCP`]: active(addrs.slice(2)) });
      t.deepEqual(whoServes(l.lab, l.client, NODE_IP, 30080, 5, 'tcp'), { seen: { be3: 5 }, failed: 0 });
      t.true((await k.services()).find((s) => frontendText(s.frontend) === `${NODE_IP}:30080/TCP`)!.fullNat);
      // The node address's other ports are still the node's (a kubelet's 10250 here): a NodePort gives its address
      // no wildcard entry, which would refuse them (kube-proxy leaves them alone too).
      const kubelet = l.lab.spawn(l.router, process.execPath, [
        '-e',
        `require('http').createServer((q, r) => r.end('kubelet')).listen(10250, '${NODE_IP}', () => console.log('ready')); setTimeout(() => process.exit(0), 60000)`,
      ]);
      try {
        await new Promise<void>((resolve, reject) => {
          kubelet.stdout!.once('data', () => resolve());
          kubelet.once('exit', (code) => reject(new Error(`the listener exited (${code})`)));
        });
        t.like(curl(l, l.client, `http://${NODE_IP}:10250/`), { status: 200, body: 'kubelet' });
        const lb = await tsctIn(l.router, ['bpf', 'lb', 'list', '--bpf-root', k.root]);
        t.false(lb.stdout.includes(`${NODE_IP}:0/ANY`), `no wildcard entry on the node address:\n${lb.stdout}`);
        t.true(lb.stdout.includes(`${NODE_IP}:30080/TCP`));
      } finally {
        kubelet.kill();
      }
    });
  },
);

privTestSerial('should be able to preserve UDP traffic when server pod cycles for a ClusterIP service', async (t) => {
  await withK8sLab(
    t,
    'tsct-k8su',
    async (k) => {
      const { l, api } = k;
      const [be1, be2] = l.backends;
      const FE = `${VIP}:53/UDP`;
      const DNS = { name: 'dns', port: 53, protocol: 'UDP', targetPort: PORT };
      const DNS_SLICE = { name: 'dns', port: PORT, protocol: 'UDP' };
      await api.apply(service('udp', VIP, [DNS]));
      await api.apply(slice('udp-1', 'udp', [{ addr: be1.addr4, name: 'pod-1' }], [DNS_SLICE]));
      await k.until({ [FE]: active([be1.addr4]) });
      const GAP_MS = 200;
      const started = Date.now();
      const stream = startUdpStream(l.lab, l.client, VIP, 53, 10, GAP_MS);
      await sleep(2000);
      // The server pod is deleted: terminating (still serving, and the only one: used), then gone.
      const terminatingAt = Date.now() - started;
      await api.apply(
        slice('udp-1', 'udp', [{ addr: be1.addr4, name: 'pod-1', ready: false, terminating: true }], [DNS_SLICE]),
      );
      await k.until({ [FE]: [`${be1.addr4}:${PORT} terminating`] });
      await sleep(2000);
      const goneAt = Date.now() - started;
      await api.apply(slice('udp-1', 'udp', [], [DNS_SLICE]));
      await k.until({ [FE]: [] });
      await sleep(1000);
      // Its replacement is ready.
      await api.apply(slice('udp-1', 'udp', [{ addr: be2.addr4, name: 'pod-2' }], [DNS_SLICE]));
      await k.until({ [FE]: active([be2.addr4]) });
      const readyAt = Date.now() - started;
      const r = await stream;
      t.true(r.sent >= 40, `the client kept sending (${r.sent})`);
      t.true((r.served.be1 ?? 0) > 0 && (r.served.be2 ?? 0) > 0, `both pods served: ${JSON.stringify(r.served)}`);
      // Sequence number n is sent n x GAP_MS after the stream started; 300 ms of slack for the two clocks.
      const seqAt = (ms: number) => Math.ceil(ms / GAP_MS);
      const lostAfterReady = r.lost.filter((seq) => seq >= seqAt(readyAt + 300));
      t.deepEqual(
        lostAfterReady,
        [],
        `no reply lost once the new endpoint was ready (at ${readyAt} ms); lost ${r.lost}`,
      );
      // The stream starts some time after `started` (up to 1 s for its process): only what was surely sent between.
      const lostTerminating = r.lost.filter((seq) => seq >= seqAt(terminatingAt) && seq < seqAt(goneAt - 1000));
      t.deepEqual(lostTerminating, [], 'none lost while the terminating pod was the only one');
    },
    { apiDownAtStart: true },
  );
});

privTestSerial(
  'should work after restarting kube-proxy and the apiserver: a live TCP connection keeps its backend, the datapath converges',
  async (t) => {
    await withK8sLab(t, 'tsct-k8sr', async (k) => {
      const { l, api } = k;
      const FE = `${VIP}:80/TCP`;
      const eps = l.backends.map((b) => ({ addr: b.addr4, name: `${b.name}-pod` }));
      const addrs = eps.map((e) => e.addr);
      await api.apply(service('web', VIP, [HTTP]));
      await api.apply(slice('web-1', 'web', eps, [HTTP_SLICE]));
      await k.until({ [FE]: active(addrs) });
      const idOf = async () => (await k.services()).find((s) => frontendText(s.frontend) === FE)?.id;
      const id = await idOf();
      const live = liveTcpClient(l.lab, l.client, VIP, 80, 100, 60);
      const mine = await live.name;
      const other = l.backends.find((b) => b.name !== mine)!;
      const rest = eps.filter((e) => e.addr !== other.addr4);

      // The agent stops; meanwhile another backend goes away. The datapath works on without the agent.
      await k.restartAgent(async () => {
        const echoes = live.echoes();
        await api.apply(slice('web-1', 'web', rest, [HTTP_SLICE]));
        await eventually(
          'echoes while the agent is down',
          () => live.echoes(),
          (n) => n > echoes + 5,
        );
      });
      await logLine(k.agent(), /kubernetes: synced with /);
      await k.until({ [FE]: active(rest.map((e) => e.addr)) });
      t.is(await idOf(), id, 'the restarted agent keeps the service id');
      const echoes = live.echoes();
      await eventually(
        'echoes after the agent restart',
        () => live.echoes(),
        (n) => n > echoes + 5,
      );
      const served = whoServes(l.lab, l.client, VIP, 80, 20, 'tcp');
      t.is(served.failed, 0);
      t.false(other.name in served.seen, `${other.name} left while the agent was down: ${JSON.stringify(served.seen)}`);

      // The API server restarts and has lost its history: the watches get 410 and the informers relist. The
      // changes made meanwhile (the backend back, a new service) arrive through the relist, while traffic runs.
      const lists = await api.call<number>('requestCount', { verb: 'list', path: '/api/v1/services' });
      const held = api.call('stall', 500);
      await api.call('restart', { loseHistory: true });
      await api.apply(slice('web-1', 'web', eps, [HTTP_SLICE]));
      await api.apply(service('web2', '10.200.100.14', [HTTP]));
      await api.apply(slice('web2-1', 'web2', eps.slice(0, 1), [HTTP_SLICE]));
      await held;
      await eventually(
        'the relist',
        () => api.call<number>('requestCount', { verb: 'list', path: '/api/v1/services' }),
        (n) => n > lists,
      );
      await k.until({ [FE]: active(addrs), '10.200.100.14:80/TCP': active(addrs.slice(0, 1)) });
      t.deepEqual(servedBy(whoServes(l.lab, l.client, '10.200.100.14', 80, 5, 'tcp')), ['be1']);
      const echoes2 = live.echoes();
      await eventually(
        'echoes after the API server restart',
        () => live.echoes(),
        (n) => n > echoes2 + 5,
      );
      t.is(await idOf(), id, 'the service id is still the same');
      const errors = k.agent().log.filter((line) => / error /.test(line));
      t.deepEqual(errors, []);
    });
  },
);

interface CurlAnswer {
  /** The HTTP status, or 0 when curl got none (then `exit` says why: 7 refused, 28 timed out). */
  status: number;
  headers: Record<string, string>;
  body: string;
  exit: number;
}

/** `curl -si` from a namespace, as a user would ask a health check node port. */
function curl(l: LbLab, ns: string, url: string): CurlAnswer {
  const out = l.lab.exec(ns, 'sh', ['-c', 'curl -si --max-time 3 "$1"; echo "curl-exit=$?"', 'curl', url]);
  const m = /curl-exit=(\d+)\n?$/.exec(out)!;
  const text = out.slice(0, m.index);
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) return { status: 0, headers: {}, body: '', exit: Number(m[1]) };
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4), exit: Number(m[1]) };
}

privTestSerial(
  'should fail health check node port if there are only terminating endpoints; traffic policy Local and the fallbacks to terminating endpoints',
  async (t) => {
    await withK8sLab(
      t,
      'tsct-k8sh',
      async (k) => {
        const { l, api } = k;
        const [be1, be2, be3] = l.backends;
        const NODE_IP = '10.200.1.1';
        const HC_IP = '10.200.100.20';
        const LB_IP = '10.200.101.20';
        const hcUrl = (port: number) => `http://${NODE_IP}:${port}/healthz`;
        // With a node port on the node's address, as a LoadBalancer service has by default: the health check
        // node port on the same address still answers (a NodePort address gets no wildcard entry, which would
        // refuse its other ports). The load balancer IP carries the traffic.
        const lbService = (name: string, ip: string, lbIp: string, healthCheckNodePort: number) => ({
          ...service(name, ip, [{ ...HTTP, nodePort: healthCheckNodePort + 100 }], {
            type: 'LoadBalancer',
            externalTrafficPolicy: 'Local',
            healthCheckNodePort,
          }),
          status: { loadBalancer: { ingress: [{ ip: lbIp }] } },
        });
        const hcService = (healthCheckNodePort: number) => lbService('hc', HC_IP, LB_IP, healthCheckNodePort);
        const waitHc = (port: number, status: number, localEndpoints: number) =>
          eventually(
            `${hcUrl(port)} to answer ${status} with ${localEndpoints} local endpoints`,
            () => curl(l, l.client, hcUrl(port)),
            (a) => a.status === status && a.body === hcBody('hc', localEndpoints),
          ).catch((e: Error) => {
            throw new Error(`${e.message}\n${k.agent().log.slice(-20).join('\n')}`);
          });
        // One pod on this node, one elsewhere: the health check says 1, the load balancer IP (Local) goes to the
        // local one.
        await api.apply(hcService(30901));
        await api.apply(
          slice(
            'hc-1',
            'hc',
            [
              { addr: be1.addr4, name: 'pod-1', node: NODE },
              { addr: be2.addr4, name: 'pod-2' },
            ],
            [HTTP_SLICE],
          ),
        );
        const first = await waitHc(30901, 200, 1);
        t.like(first.headers, {
          'content-type': 'application/json',
          'x-content-type-options': 'nosniff',
          'x-load-balancing-endpoint-weight': '1',
        });
        t.deepEqual(JSON.parse(first.body), {
          service: { namespace: 'default', name: 'hc' },
          localEndpoints: 1,
          serviceProxyHealthy: true,
        });
        // The agent's log says so (read through a pipe: waited for).
        await logLine(
          k.agent(),
          /kubernetes: health check node ports: opened default\/hc port 30901 \(1 served on 10\.200\.1\.1\)/,
        );
        t.deepEqual(whoServes(l.lab, l.client, LB_IP, 80, 5, 'tcp'), { seen: { be1: 5 }, failed: 0 });

        // The local pod terminates (still serving): 503, so that a load balancer sends nothing new here, while the
        // load balancer IP still reaches it (should fallback to local terminating endpoints with
        // externalTrafficPolicy=Local).
        await api.apply(
          slice(
            'hc-1',
            'hc',
            [
              { addr: be1.addr4, name: 'pod-1', node: NODE, ready: false, terminating: true },
              { addr: be2.addr4, name: 'pod-2' },
            ],
            [HTTP_SLICE],
          ),
        );
        const terminating = await waitHc(30901, 503, 0);
        t.is(terminating.headers['x-load-balancing-endpoint-weight'], '0');
        t.deepEqual(whoServes(l.lab, l.client, LB_IP, 80, 5, 'tcp'), { seen: { be1: 5 }, failed: 0 });

        // A ready local pod appears: 200 again, and new connections go to it.
        await api.apply(
          slice(
            'hc-1',
            'hc',
            [
              { addr: be1.addr4, name: 'pod-1', node: NODE, ready: false, terminating: true },
              { addr: be2.addr4, name: 'pod-2' },
              { addr: be3.addr4, name: 'pod-3', node: NODE },
            ],
            [HTTP_SLICE],
          ),
        );
        await waitHc(30901, 200, 1);
        t.deepEqual(whoServes(l.lab, l.client, LB_IP, 80, 5, 'tcp'), { seen: { be3: 5 }, failed: 0 });

        // Its port changed: the old one closes, the new one answers.
        await api.apply(hcService(30902));
        await waitHc(30902, 200, 1);
        t.is(curl(l, l.client, hcUrl(30901)).exit, 7, 'the old port is closed (connection refused)');

        // A port another process holds on the node: a warning naming the service; the first one keeps answering.
        const squatter = l.lab.spawn(l.router, process.execPath, [
          '-e',
          `require('net').createServer().listen(30903, '${NODE_IP}', () => console.log('ready')); setTimeout(() => process.exit(0), 60000)`,
        ]);
        await new Promise<void>((resolve, reject) => {
          squatter.stdout!.once('data', () => resolve());
          squatter.once('exit', (code) => reject(new Error(`the squatter exited (${code})`)));
        });
        const from = k.agent().log.length;
        await api.apply(lbService('hc2', '10.200.100.21', '10.200.101.21', 30903));
        await logLine(
          k.agent(),
          / warn .*kubernetes: default\/hc2: healthCheckNodePort 30903 on 10\.200\.1\.1: EADDRINUSE/,
          from,
        );
        t.like(curl(l, l.client, hcUrl(30902)), { status: 200, body: hcBody('hc', 1) });
        // What a dashboard shows: one health check served, one not.
        const metrics = (await httpGetIn(l.router, `http://${METRICS}/metrics`)).body;
        t.regex(metrics, /^tsct_k8s_health_check_node_ports\{state="serving"\} 1$/m);
        t.regex(metrics, /^tsct_k8s_health_check_node_ports\{state="failed"\} 1$/m);
        squatter.kill();
        // Deleted: its health check closes with it.
        await api.delete('Service', 'hc');
        await k.until({ [`${LB_IP}:80/TCP`]: null });
        await eventually(
          'the deleted service health check to close',
          () => curl(l, l.client, hcUrl(30902)).exit,
          (code) => code === 7,
        );

        // should fallback to terminating endpoints when there are no ready endpoints with
        // internalTrafficPolicy=Cluster: both terminating pods serve; once a ready one is there, only it takes new
        // connections.
        const FT = '10.200.100.22';
        await api.apply(service('ft', FT, [HTTP]));
        const term = (b: LbLab['backends'][number], i: number) => ({
          addr: b.addr4,
          name: `ft-${i}`,
          ready: false,
          terminating: true,
        });
        await api.apply(slice('ft-1', 'ft', [term(be1, 1), term(be2, 2)], [HTTP_SLICE]));
        await k.until({ [`${FT}:80/TCP`]: [`${be1.addr4}:${PORT} terminating`, `${be2.addr4}:${PORT} terminating`] });
        const fallback = whoServes(l.lab, l.client, FT, 80, 20, 'tcp');
        t.is(fallback.failed, 0);
        t.deepEqual(servedBy(fallback), ['be1', 'be2']);
        await api.apply(
          slice('ft-1', 'ft', [term(be1, 1), term(be2, 2), { addr: be3.addr4, name: 'ft-3' }], [HTTP_SLICE]),
        );
        await k.until({
          [`${FT}:80/TCP`]: [
            `${be1.addr4}:${PORT} terminating`,
            `${be2.addr4}:${PORT} terminating`,
            `${be3.addr4}:${PORT} active`,
          ],
        });
        t.deepEqual(whoServes(l.lab, l.client, FT, 80, 10, 'tcp'), { seen: { be3: 10 }, failed: 0 });

        // should respect internalTrafficPolicy=Local: only the pod on this node serves the cluster IP; with none on
        // this node, connections are dropped (kube-proxy's DROP), though other nodes have ready pods.
        const ITP = '10.200.100.23';
        await api.apply(service('itp', ITP, [HTTP], { internalTrafficPolicy: 'Local' }));
        await api.apply(
          slice(
            'itp-1',
            'itp',
            [
              { addr: be1.addr4, name: 'itp-1' },
              { addr: be2.addr4, name: 'itp-2', node: NODE },
              { addr: be3.addr4, name: 'itp-3' },
            ],
            [HTTP_SLICE],
          ),
        );
        await k.until({ [`${ITP}:80/TCP`]: active([be1.addr4, be2.addr4, be3.addr4]) });
        t.deepEqual(whoServes(l.lab, l.client, ITP, 80, 10, 'tcp'), { seen: { be2: 10 }, failed: 0 });
        // should fallback to local terminating endpoints when there are no ready endpoints with
        // internalTrafficPolicy=Local: the local pod terminating is still used, not the ready remote ones.
        await api.apply(
          slice(
            'itp-1',
            'itp',
            [
              { addr: be1.addr4, name: 'itp-1' },
              { addr: be2.addr4, name: 'itp-2', node: NODE, ready: false, terminating: true },
              { addr: be3.addr4, name: 'itp-3' },
            ],
            [HTTP_SLICE],
          ),
        );
        await k.until({ [`${ITP}:80/TCP`]: [...active([be1.addr4, be3.addr4]), `${be2.addr4}:${PORT} terminating`] });
        t.deepEqual(whoServes(l.lab, l.client, ITP, 80, 10, 'tcp'), { seen: { be2: 10 }, failed: 0 });
        await api.apply(
          slice(
            'itp-1',
            'itp',
            [
              { addr: be1.addr4, name: 'itp-1' },
              { addr: be3.addr4, name: 'itp-3' },
            ],
            [HTTP_SLICE],
          ),
        );
        await k.until({ [`${ITP}:80/TCP`]: active([be1.addr4, be3.addr4]) });
        t.is(tcpConnectOutcome(l.lab, l.client, ITP, 80).outcome, 'timeout', 'no local pod: dropped');
        t.deepEqual(
          k.agent().log.filter((line) => / error /.test(line)),
          [],
        );
      },
      { agentFlags: ['--prometheus-serve-addr', METRICS] },
    );
  },
);

privTestSerial(
  'Services: ExternalIP (and its fallback to terminating endpoints), publishNotReadyAddresses both ways, ports added and deleted, switching session affinity on and off',
  async (t) => {
    await withK8sLab(t, 'tsct-k8sx', async (k) => {
      const { l, api } = k;
      const [be1] = l.backends;
      const eps = l.backends.map((b) => ({ addr: b.addr4, name: `${b.name}-pod` }));
      const addrs = eps.map((e) => e.addr);

      // should be possible to connect to a service via ExternalIP when the external IP is not assigned to a node:
      // an address no interface has (the e2e test's 203.0.113.250; here one inside the lab), on the service port.
      const EXT = '10.200.101.30';
      await api.apply(service('ext', '10.200.100.30', [HTTP], { externalIPs: [EXT] }));
      await api.apply(slice('ext-1', 'ext', eps, [HTTP_SLICE]));
      await k.until({ [`${EXT}:80/TCP`]: active(addrs), '10.200.100.30:80/TCP': active(addrs) });
      const ext = whoServes(l.lab, l.client, EXT, 80, 20, 'tcp');
      t.is(ext.failed, 0);
      t.deepEqual(servedBy(ext), ['be1', 'be2', 'be3']);
      t.like(
        (await k.services()).find((s) => frontendText(s.frontend) === `${EXT}:80/TCP`),
        {
          type: 'ExternalIP',
          fullNat: true,
        },
      );
      // should fallback to terminating endpoints when there are no ready endpoints with externalTrafficPolicy=Cluster:
      // every pod terminating (still serving), the external IP still reaches them.
      const terminatingEps = eps.slice(0, 2).map((e) => ({ ...e, ready: false, terminating: true }));
      await api.apply(slice('ext-1', 'ext', terminatingEps, [HTTP_SLICE]));
      await k.until({ [`${EXT}:80/TCP`]: addrs.slice(0, 2).map((a) => `${a}:${PORT} terminating`) });
      const extTerminating = whoServes(l.lab, l.client, EXT, 80, 20, 'tcp');
      t.is(extTerminating.failed, 0);
      t.deepEqual(servedBy(extTerminating), ['be1', 'be2']);

      // should be able to connect to terminating and unready endpoints if PublishNotReadyAddresses is true; should
      // not be able to ... if false: one pod, terminating and failing its readiness probe (not serving).
      const PNR = '10.200.100.31';
      const unready = [{ addr: be1.addr4, name: 'pnr-1', ready: false, serving: false, terminating: true }];
      await api.apply(service('pnr', PNR, [HTTP], { publishNotReadyAddresses: true }));
      await api.apply(slice('pnr-1', 'pnr', unready, [HTTP_SLICE]));
      await k.until({ [`${PNR}:80/TCP`]: active([be1.addr4]) });
      t.deepEqual(whoServes(l.lab, l.client, PNR, 80, 5, 'tcp'), { seen: { be1: 5 }, failed: 0 });
      await api.apply(service('pnr', PNR, [HTTP], { publishNotReadyAddresses: false }));
      await k.until({ [`${PNR}:80/TCP`]: [] });
      const notReady = tcpConnectOutcome(l.lab, l.client, PNR, 80);
      t.is(notReady.outcome, 'refused', 'no usable endpoint: refused');

      // should be updated after adding or deleting ports: a port added serves at once; a port deleted is refused
      // at once (the address still serves its other port), the remaining one keeps serving.
      const PORTS = '10.200.100.32';
      const P81 = { name: 'metrics', port: 81, protocol: 'TCP', targetPort: PORT2 };
      const P81_SLICE = { name: 'metrics', port: PORT2, protocol: 'TCP' };
      await api.apply(service('ports', PORTS, [HTTP]));
      await api.apply(slice('ports-1', 'ports', eps.slice(0, 2), [HTTP_SLICE]));
      await k.until({ [`${PORTS}:80/TCP`]: active(addrs.slice(0, 2)), [`${PORTS}:81/TCP`]: null });
      t.is(tcpConnectOutcome(l.lab, l.client, PORTS, 81).outcome, 'refused', 'a port not yet served is refused');
      await api.apply(service('ports', PORTS, [HTTP, P81]));
      await api.apply(slice('ports-1', 'ports', eps.slice(0, 2), [HTTP_SLICE, P81_SLICE]));
      await k.until({
        [`${PORTS}:80/TCP`]: active(addrs.slice(0, 2)),
        [`${PORTS}:81/TCP`]: active(addrs.slice(0, 2), PORT2),
      });
      for (const port of [80, 81]) {
        const r = whoServes(l.lab, l.client, PORTS, port, 10, 'tcp');
        t.is(r.failed, 0, `port ${port}`);
        t.deepEqual(servedBy(r), ['be1', 'be2'], `port ${port}`);
      }
      const id81 = (await k.services()).find((s) => frontendText(s.frontend) === `${PORTS}:81/TCP`)!.id;
      await api.apply(service('ports', PORTS, [P81]));
      await api.apply(slice('ports-1', 'ports', eps.slice(0, 2), [P81_SLICE]));
      await k.until({ [`${PORTS}:80/TCP`]: null, [`${PORTS}:81/TCP`]: active(addrs.slice(0, 2), PORT2) });
      const deleted = tcpConnectOutcome(l.lab, l.client, PORTS, 80);
      t.is(deleted.outcome, 'refused', 'the deleted port is refused');
      t.true(deleted.ms < 1000, `refused in ${deleted.ms} ms`);
      t.deepEqual(servedBy(whoServes(l.lab, l.client, PORTS, 81, 10, 'tcp')), ['be1', 'be2']);
      t.is(
        (await k.services()).find((s) => frontendText(s.frontend) === `${PORTS}:81/TCP`)!.id,
        id81,
        'the port that stayed keeps its service id',
      );

      // [Conformance] should be able to switch session affinity for service with type clusterIP: without
      // affinity new connections spread; with ClientIP they all go to one backend; off again, they spread again.
      const SW = '10.200.100.33';
      await api.apply(service('switch', SW, [HTTP]));
      await api.apply(slice('switch-1', 'switch', eps, [HTTP_SLICE]));
      await k.until({ [`${SW}:80/TCP`]: active(addrs) });
      const spread = whoServes(l.lab, l.client, SW, 80, 30, 'tcp');
      t.is(spread.failed, 0);
      t.true(servedBy(spread).length > 1, `no affinity: 30 connections spread: ${JSON.stringify(spread.seen)}`);
      await api.apply(service('switch', SW, [HTTP], { sessionAffinity: 'ClientIP' }));
      await eventually(
        'affinity on in the maps',
        async () => (await k.services()).find((s) => frontendText(s.frontend) === `${SW}:80/TCP`)?.affinityTimeoutS,
        (v) => v === 10800,
      );
      const sticky = whoServes(l.lab, l.client, SW, 80, 30, 'tcp');
      t.is(sticky.failed, 0);
      t.is(servedBy(sticky).length, 1, `ClientIP: 30 connections, one backend: ${JSON.stringify(sticky.seen)}`);
      await api.apply(service('switch', SW, [HTTP], { sessionAffinity: 'None' }));
      await eventually(
        'affinity off in the maps',
        async () => (await k.services()).find((s) => frontendText(s.frontend) === `${SW}:80/TCP`)?.affinityTimeoutS,
        (v) => v === 0,
      );
      const again = whoServes(l.lab, l.client, SW, 80, 30, 'tcp');
      t.is(again.failed, 0);
      t.true(servedBy(again).length > 1, `affinity off: spread again: ${JSON.stringify(again.seen)}`);
      t.deepEqual(
        k.agent().log.filter((line) => / error /.test(line)),
        [],
      );
    });
  },
);

// ---------------------------------------------------------------------------
// Without root: the informers against the stand-in on this process's loopback, and the kubeconfig checks.

interface InformerLog {
  failed: Array<{ resource: K8sResource; why: string; delay: number }>;
  synced: K8sResource[];
  recovered: K8sResource[];
  changes: number;
}

test('the informers list, watch, and start again after every error with backoff; a stop ends them', async (t) => {
  const server = new StandInApiServer();
  await server.start();
  t.teardown(() => server.stop());
  server.apply(node());
  server.apply(service('a', '10.96.0.1', [HTTP]));
  const conn = await loadKubeConfig(server.kubeconfig());
  const seen: InformerLog = { failed: [], synced: [], recovered: [], changes: 0 };
  server.failNext(3, 503, 'list');
  const informers = startK8sInformers(
    conn,
    NODE,
    {
      change: () => (seen.changes += 1),
      synced: (r) => seen.synced.push(r),
      failed: (resource, err, delay) => seen.failed.push({ resource, why: describeK8sError(err), delay }),
      recovered: (r) => seen.recovered.push(r),
    },
    { baseDelayMs: 50, maxDelayMs: 200 },
  );
  let stopped = false;
  t.teardown(() => (stopped ? undefined : informers.stop()));
  await eventually(
    'all three synced',
    () => seen.synced.length,
    (n) => n === 3,
  );
  // Three lists failed (whichever informers asked first); each was started again, its backoff doubling.
  t.is(seen.failed.length, 3);
  t.true(
    seen.failed.every((f) => f.why === 'HTTP 503 injected failure (503)'),
    JSON.stringify(seen.failed),
  );
  for (const r of ['services', 'endpointslices', 'node'] as const) {
    const delays = seen.failed.filter((f) => f.resource === r).map((f) => f.delay);
    t.deepEqual(delays, [50, 100, 200].slice(0, delays.length), r);
  }
  t.is(
    informers.all.reduce((n, i) => n + i.restarts, 0),
    3,
  );
  t.deepEqual([...seen.recovered].sort(), [...new Set(seen.failed.map((f) => f.resource))].sort());
  t.deepEqual(
    informers.services.list().map((s) => s.metadata?.name),
    ['a'],
  );
  t.deepEqual(
    informers.node.list().map((n) => n.metadata?.name),
    [NODE],
  );

  // A 500 on a watch: the client stops that informer; it is started again (its backoff reset: 50 ms).
  const failures = seen.failed.length;
  server.failNext(1, 500, 'watch');
  server.cutWatches();
  await eventually(
    'the failed watch',
    () => seen.failed.length,
    (n) => n === failures + 1,
  );
  t.like(seen.failed[failures], { why: 'HTTP 500 Internal Server Error', delay: 50 });
  const changes = seen.changes;
  server.apply(service('b', '10.96.0.2', [HTTP]));
  await eventually(
    'the change after the restart',
    () => informers.services.list().length,
    (n) => n === 2,
  );
  t.true(seen.changes > changes);

  // The API server away for a while: the informers keep their caches and try again until it is back.
  const away = seen.failed.length;
  const restarted = server.restart({ downMs: 600 });
  await eventually(
    'the refused reconnects',
    () => seen.failed.length,
    (n) => n > away,
  );
  t.true(
    seen.failed.slice(away).every((f) => f.why === 'fetch failed (ECONNREFUSED)'),
    JSON.stringify(seen.failed.slice(away)),
  );
  t.is(informers.services.list().length, 2, 'the cache stays while the server is away');
  await restarted;
  server.apply(service('c', '10.96.0.3', [HTTP]));
  await eventually(
    'the change after the server came back',
    () => informers.services.list().length,
    (n) => n === 3,
  );
  t.true(informers.all.every((i) => !i.failing));

  // Stopped: no more attempts, whatever the server does.
  await informers.stop();
  stopped = true;
  const after = seen.failed.length;
  server.failNext(5, 500);
  server.cutWatches();
  await sleep(300);
  t.is(seen.failed.length, after);
  t.is(server.watchCount(), 0);
});

interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET on a new connection: the answer, or the error code (ECONNREFUSED). */
function httpGet(host: string, port: number): Promise<HttpAnswer | string> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/healthz', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** A port free on 127.0.0.1 now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** kube-proxy's body for a service, as the e2e test reads it. */
function hcBody(name: string, localEndpoints: number, healthy = true): string {
  return (
    `{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "${name}"\n\t},\n` +
    `\t"localEndpoints": ${localEndpoints},\n\t"serviceProxyHealthy": ${healthy}\n}`
  );
}

test('health check node ports: 200 or 503 with kube-proxy body and headers, synced by diff, a port in use warned by service', async (t) => {
  let healthy = true;
  const servers = new HealthCheckServers({ healthy: () => healthy });
  t.teardown(() => servers.stop());
  const [p1, p2, p3, busyPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const HOST = '127.0.0.1';
  const hc = (name: string, port: number, localEndpoints: number) => ({
    namespace: 'default',
    name,
    port,
    localEndpoints,
  });

  let r = await servers.sync([HOST], [hc('web', p1, 2), hc('term', p2, 0)]);
  t.deepEqual(r, {
    opened: [`default/web port ${p1}`, `default/term port ${p2}`],
    closed: [],
    failures: [],
    notServed: [],
  });
  const web = (await httpGet(HOST, p1)) as HttpAnswer;
  t.is(web.status, 200);
  t.is(web.body, hcBody('web', 2));
  t.like(web.headers, {
    'content-type': 'application/json',
    'x-content-type-options': 'nosniff',
    'x-load-balancing-endpoint-weight': '2',
  });
  t.deepEqual(JSON.parse(web.body), {
    service: { namespace: 'default', name: 'web' },
    localEndpoints: 2,
    serviceProxyHealthy: true,
  });
  const term = (await httpGet(HOST, p2)) as HttpAnswer;
  t.is(term.status, 503, 'no local ready endpoint: 503');
  t.is(term.body, hcBody('term', 0));

  // Counts change in place: nothing opened or closed, the answers follow.
  r = await servers.sync([HOST], [hc('web', p1, 0), hc('term', p2, 1)]);
  t.deepEqual([r.opened, r.closed], [[], []]);
  t.is(((await httpGet(HOST, p1)) as HttpAnswer).status, 503);
  t.like(await httpGet(HOST, p2), { status: 200, body: hcBody('term', 1) });

  // The agent unhealthy (its last apply failed): 503 whatever the count, and it says so.
  healthy = false;
  t.like(await httpGet(HOST, p2), { status: 503, body: hcBody('term', 1, false) });
  healthy = true;

  // A port changed: the old one closes, the new one opens. A port someone else holds: that service is not
  // served and is named; the others keep working; freed, it is bound at the next sync.
  const squatter = net.createServer();
  await new Promise<void>((res) => squatter.listen(busyPort, HOST, () => res()));
  r = await servers.sync([HOST], [hc('web', p3, 1), hc('term', p2, 1), hc('busy', busyPort, 1)]);
  t.deepEqual(r.opened, [`default/web port ${p3}`]);
  t.deepEqual(r.closed, [`default/web port ${p1}`]);
  t.deepEqual(r.failures, [
    `default/busy: healthCheckNodePort ${busyPort} on ${HOST}: EADDRINUSE (the port is in use); not served, tried again at the next change`,
  ]);
  t.deepEqual(r.notServed, ['default/busy']);
  t.is(await httpGet(HOST, p1), 'ECONNREFUSED');
  t.like(await httpGet(HOST, p3), { status: 200, body: hcBody('web', 1) });
  t.like(await httpGet(HOST, p2), { status: 200 });
  await new Promise((res) => squatter.close(res));
  r = await servers.sync([HOST], [hc('web', p3, 1), hc('term', p2, 1), hc('busy', busyPort, 1)]);
  t.deepEqual([r.opened, r.failures], [[`default/busy port ${busyPort}`], []]);
  t.like(await httpGet(HOST, busyPort), { status: 200, body: hcBody('busy', 1) });

  // A node address that is not this host's (an ExternalIP a cloud translates) is skipped, and said.
  const NOT_MINE = '10.200.250.1';
  r = await servers.sync([HOST, NOT_MINE], [hc('web', p3, 1)]);
  t.deepEqual(r.closed.sort(), [`default/busy port ${busyPort}`, `default/term port ${p2}`, `default/web port ${p3}`]);
  t.deepEqual(r.opened, [`default/web port ${p3}`], 'the address set changed: opened again');
  t.deepEqual(r.failures, [
    `default/web: healthCheckNodePort ${p3} on ${NOT_MINE}: EADDRNOTAVAIL (not an address of this host); served on the other addresses`,
  ]);
  t.deepEqual(servers.serving(), [{ namespace: 'default', name: 'web', port: p3, localEndpoints: 1, addrs: [HOST] }]);
  t.is(await httpGet(HOST, p2), 'ECONNREFUSED', 'a service no longer given is closed');

  // Stopped: nothing listens, later syncs do nothing.
  await servers.stop();
  t.is(await httpGet(HOST, p3), 'ECONNREFUSED');
  r = await servers.sync([HOST], [hc('web', p3, 1)]);
  t.deepEqual(r.opened, []);
  t.is(await httpGet(HOST, p3), 'ECONNREFUSED');
});

test('a kubeconfig the agent cannot use is refused in one line before anything starts', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-kubeconfig-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const config = (cluster: string) =>
    'apiVersion: v1\nkind: Config\n' +
    `clusters: [{name: c, cluster: ${cluster}}]\n` +
    'users: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n';
  const cases: Array<[string, RegExp]> = [
    [path.join(dir, 'missing'), /: cannot read it: ENOENT$/],
    [file('empty', ''), /: the file is empty; give a kubeconfig$/],
    [file('broken', 'clusters: [\n'), /: not a kubeconfig: /],
    [file('text', 'hello\n'), /: its current-context names no cluster; set current-context/],
    [
      file('http', config('{server: "http://127.0.0.1:1"}')),
      /is plain HTTP, which the client takes only with insecure/,
    ],
    [file('notaurl', config('{server: "127.0.0.1"}')), /server '127.0.0.1' is not a URL/],
    [file('ca', config(`{server: "https://127.0.0.1:1", certificate-authority: ${dir}/nope.crt}`)), /ENOENT/],
  ];
  for (const [f, re] of cases) {
    const e = await t.throwsAsync(loadKubeConfig(f), undefined, f);
    t.is(e?.name, 'UsageError', f);
    t.regex(e?.message ?? '', new RegExp(`^--k8s-kubeconfig-path: ${f}: `), f);
    t.regex(e?.message ?? '', re, f);
    t.false((e?.message ?? '').includes('\n'), `${f}: one line`);
  }
  const server = new StandInApiServer();
  await server.start();
  t.teardown(() => server.stop());
  const conn = await loadKubeConfig(server.kubeconfig());
  t.is(conn.server, server.url);
  t.is(conn.source, server.kubeconfig());
});

function oneLine(t: ExecutionContext, r: CliResult, pattern: RegExp, what: string): void {
  t.is(r.code, 2, `${what}: exit 2`);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, `${what}: one line, got:\n${r.stderr}`);
  t.regex(lines[0], /^tsct: /, what);
  t.regex(lines[0], pattern, what);
}

privTest(
  'the agent refuses a kubeconfig it cannot use, and a services file with Kubernetes, in one line each',
  async (t) => {
    const lab = new NamespaceLab('tsct-k8sbad');
    try {
      const ns = lab.addNamespace('x');
      const root = `/sys/fs/bpf/${lab.id}`;
      const agent = (...args: string[]) => tsctIn(ns, ['agent', ...labAgentArgs(root, 'lo', args)]);
      oneLine(
        t,
        await agent('--k8s-kubeconfig-path', '/nonexistent/kubeconfig'),
        /--k8s-kubeconfig-path: \/nonexistent\/kubeconfig: cannot read it: ENOENT/,
        'missing kubeconfig',
      );
      oneLine(
        t,
        await agent('--k8s-kubeconfig-path', '/etc/hostname'),
        /--k8s-kubeconfig-path: \/etc\/hostname: its current-context names no cluster/,
        'not a kubeconfig',
      );
      oneLine(
        t,
        await agent('--k8s-kubeconfig-path', '/etc/hostname', '--services-file', '/etc/hostname'),
        /--services-file and --k8s-kubeconfig-path both program the services; use one of them/,
        'both',
      );
      oneLine(
        t,
        await tsctIn(ns, ['agent', ...labAgentArgs(root, 'lo', ['--services-file', '/etc/hostname'])], {
          ...process.env,
          KUBERNETES_SERVICE_HOST: '10.96.0.1',
        }),
        /--services-file and Kubernetes \(in a pod: KUBERNETES_SERVICE_HOST is set\) both program the services/,
        'a services file in a pod',
      );
      t.false(fs.existsSync(root), 'nothing pinned');
    } finally {
      lab.destroy();
    }
  },
);
