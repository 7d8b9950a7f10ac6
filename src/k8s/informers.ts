// The agent's view of the Kubernetes API: @kubernetes/client-node informers (list, then watch) for Services,
// EndpointSlices (discovery.k8s.io/v1) and this node's Node object (fieldSelector metadata.name=NODE), kept alive.
//
// What the client does by itself (test/k8s-apiserver.test.ts shows each case against the stand-in): a watch that
// ends cleanly, or times out, is resumed from the last resourceVersion; a 410 (an ERROR event or the HTTP status)
// clears it and the next attempt lists again, reporting what changed meanwhile. Any other error (a 500, a refused
// connection, a stream broken off) is emitted and the informer stops. Here such an informer is started again after
// a backoff of 1 s doubling to 30 s, reset once an attempt has listed and opened its watch, for as long as the
// agent runs; the restarts are counted. Its cache is kept meanwhile, and a restart resumes from its
// resourceVersion (or relists when that is too old).
//
// The client is an ES module (and this code CommonJS): it is loaded with a dynamic import. It needs Node 20.18.1
// or later with the undici 7 that package.json pins for it.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type * as K8s from '@kubernetes/client-node' with { 'resolution-mode': 'import' };
import { UsageError } from '../errors';

export type K8sClient = typeof K8s;

let clientModule: Promise<K8sClient> | undefined;

export function loadK8sClient(): Promise<K8sClient> {
  clientModule ??= import('@kubernetes/client-node');
  return clientModule;
}

export interface K8sConnection {
  client: K8sClient;
  kubeConfig: K8s.KubeConfig;
  /** The API server's URL, for messages. */
  server: string;
  /** Where the configuration came from, for messages: the kubeconfig's path, or 'in-cluster'. */
  source: string;
}

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

function firstLine(text: string): string {
  const line = text.split('\n')[0].trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * The kubeconfig at `path`, or the in-cluster configuration (the service account and KUBERNETES_SERVICE_HOST)
 * without one. Refused in one line (UsageError) when the file is missing or does not parse, names no cluster, or
 * names a server the client would refuse; nothing is asked of the server here.
 */
export async function loadKubeConfig(path: string | undefined): Promise<K8sConnection> {
  const client = await loadK8sClient();
  const kc = new client.KubeConfig();
  const what = path === undefined ? 'in-cluster Kubernetes config' : `--k8s-kubeconfig-path: ${path}`;
  if (path !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(path, 'utf8');
    } catch (e) {
      throw new UsageError(`${what}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (text.trim() === '') throw new UsageError(`${what}: the file is empty; give a kubeconfig`);
    try {
      kc.loadFromFile(path);
    } catch (e) {
      throw new UsageError(`${what}: not a kubeconfig: ${firstLine((e as Error).message)}`);
    }
  } else {
    if (!fs.existsSync(SERVICE_ACCOUNT_TOKEN)) {
      throw new UsageError(
        `${what}: no service account token at ${SERVICE_ACCOUNT_TOKEN}; outside a pod give --k8s-kubeconfig-path`,
      );
    }
    kc.loadFromCluster();
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new UsageError(`${what}: its current-context names no cluster; set current-context to a context with one`);
  }
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new UsageError(`${what}: server '${cluster.server}' is not a URL, e.g. https://10.0.0.1:6443`);
  }
  if (url.protocol === 'http:' && !cluster.skipTLSVerify) {
    throw new UsageError(
      `${what}: server ${cluster.server} is plain HTTP, which the client takes only with insecure-skip-tls-verify: true`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${what}: server ${cluster.server} is not http: or https:`);
  }
  try {
    // Reads the certificate and key files the configuration names, so that a missing one is refused now.
    await kc.applyToHTTPSOptions({});
  } catch (e) {
    throw new UsageError(`${what}: ${firstLine((e as Error).message)}`);
  }
  return { client, kubeConfig: kc, server: cluster.server, source: path ?? 'in-cluster' };
}

/** One line for what an attempt failed with: an HTTP status, a socket error's code, or the message's first line. */
export function describeK8sError(err: unknown): string {
  if (err === null || typeof err !== 'object') return String(err);
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: string; cause?: unknown };
  // The generated clients' ApiException: code and body (a Status, maybe as text).
  if (typeof e.code === 'number') {
    let body: unknown = e.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON
      }
    }
    const message = (body as { message?: unknown } | undefined)?.message;
    return `HTTP ${e.code}${typeof message === 'string' ? ` ${firstLine(message)}` : ''}`;
  }
  if (typeof e.statusCode === 'number') return `HTTP ${e.statusCode} ${e.message ?? ''}`.trim();
  const cause = (e.cause as { code?: unknown } | undefined)?.code;
  const message = firstLine(e.message ?? String(err));
  return typeof cause === 'string' ? `${message} (${cause})` : message;
}

export type K8sResource = 'services' | 'endpointslices' | 'node';

export const K8S_RESOURCES: readonly K8sResource[] = ['services', 'endpointslices', 'node'];

export interface InformerEvents {
  /** An object was added, changed or deleted (a relist reports each difference), with the object. */
  change(resource: K8sResource, verb: 'add' | 'update' | 'delete', obj: K8s.KubernetesObject): void;
  /** The first list is in and the watch is open: the cache is complete. */
  synced(resource: K8sResource): void;
  /** An attempt failed; the informer starts again in restartInMs. */
  failed(resource: K8sResource, err: unknown, restartInMs: number): void;
  /** An attempt succeeded after failures. */
  recovered(resource: K8sResource): void;
}

export interface BackoffOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** One informer, started again after every error until stop(). */
export class KeptInformer<T extends K8s.KubernetesObject> {
  /** Starts after an error. */
  restarts = 0;
  synced = false;
  failing = false;
  private stopped = false;
  private started = false;
  private attemptFailed = false;
  private delayMs: number;
  private timer: NodeJS.Timeout | null = null;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    readonly resource: K8sResource,
    private readonly informer: K8s.Informer<T> & K8s.ObjectCache<T>,
    private readonly events: InformerEvents,
    opts: BackoffOptions = {},
  ) {
    this.baseDelayMs = opts.baseDelayMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 30_000;
    this.delayMs = this.baseDelayMs;
    for (const verb of ['add', 'update', 'delete'] as const)
      informer.on(verb, (obj) => events.change(resource, verb, obj));
    informer.on('error', (err) => this.onError(err));
  }

  list(): readonly T[] {
    return this.informer.list();
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    void this.attempt();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // The client reports its own abort as an error: onError ignores it, as stopped.
    await this.informer.stop();
  }

  private async attempt(): Promise<void> {
    this.attemptFailed = false;
    try {
      // Resolves once the list is in and the watch's headers are, or once an error is emitted.
      await this.informer.start();
    } catch (e) {
      this.onError(e);
    }
    if (this.stopped || this.attemptFailed) return;
    this.delayMs = this.baseDelayMs;
    if (this.failing) {
      this.failing = false;
      this.events.recovered(this.resource);
    }
    if (!this.synced) {
      this.synced = true;
      this.events.synced(this.resource);
    }
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    this.attemptFailed = true;
    if (this.timer) return; // a restart is already planned
    this.failing = true;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.maxDelayMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      this.restarts += 1;
      void this.attempt();
    }, delay);
    this.events.failed(this.resource, err, delay);
  }
}

type PlainList = { metadata?: { resourceVersion?: string }; items: K8s.KubernetesObject[] };

/**
 * A list as the API server sends it, parsed as plain JSON: what the watch delivers too. The generated client's
 * list would turn it into model objects besides (a second copy of every object while it does, and a good part
 * of a 10,000-service sync's time). Authenticated as the client is (applyToHTTPSOptions: token, certificates,
 * CA); a status other than 200 is an error with `code` and `body`, as the client's ApiException, and a socket
 * error is 'fetch failed' with its cause, as the watch's.
 */
export async function listPlain(
  kc: K8s.KubeConfig,
  path: string,
  query: Record<string, string> = {},
): Promise<PlainList> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('No currently active cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const opts: https.RequestOptions = { headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  if (url.protocol === 'http:') delete opts.agent; // an https.Agent: plain HTTP (a test's stand-in) needs none
  const get = url.protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        chunks.length = 0;
        if (res.statusCode !== 200) {
          reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { code: res.statusCode, body }));
          return;
        }
        try {
          resolve(JSON.parse(body) as PlainList);
        } catch (e) {
          reject(e);
        }
      });
    });
    // A socket error as the watch's fetch reports it ('fetch failed', the cause's code): one message for both.
    req.on('error', (err) => reject(new Error('fetch failed', { cause: err })));
  });
}

export interface K8sInformers {
  services: KeptInformer<K8s.V1Service>;
  endpointslices: KeptInformer<K8s.V1EndpointSlice>;
  node: KeptInformer<K8s.V1Node>;
  all: ReadonlyArray<KeptInformer<K8s.KubernetesObject>>;
  stop(): Promise<void>;
}

/** The three informers, started (none is awaited: each syncs, or fails and starts again, on its own). */
export function startK8sInformers(
  conn: K8sConnection,
  nodeName: string,
  events: InformerEvents,
  opts: BackoffOptions = {},
): K8sInformers {
  const { client, kubeConfig } = conn;
  // Lists as plain JSON (listPlain), as the watch's objects are: the agent reads both through the same shapes.
  const plain =
    <T extends K8s.KubernetesObject>(path: string, query?: Record<string, string>) =>
    () =>
      listPlain(kubeConfig, path, query) as unknown as Promise<K8s.KubernetesListObject<T>>;
  const services = new KeptInformer(
    'services',
    client.makeInformer(kubeConfig, '/api/v1/services', plain<K8s.V1Service>('/api/v1/services')),
    events,
    opts,
  );
  const endpointslices = new KeptInformer(
    'endpointslices',
    client.makeInformer(
      kubeConfig,
      '/apis/discovery.k8s.io/v1/endpointslices',
      plain<K8s.V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices'),
    ),
    events,
    opts,
  );
  // makeInformer takes no field selector; ListWatch does.
  const fieldSelector = `metadata.name=${nodeName}`;
  const node = new KeptInformer(
    'node',
    new client.ListWatch(
      '/api/v1/nodes',
      new client.Watch(kubeConfig),
      plain<K8s.V1Node>('/api/v1/nodes', { fieldSelector }),
      false,
      undefined,
      fieldSelector,
    ),
    events,
    opts,
  );
  const all = [services, endpointslices, node] as ReadonlyArray<KeptInformer<K8s.KubernetesObject>>;
  for (const i of all) i.start();
  return {
    services,
    endpointslices,
    node,
    all,
    async stop() {
      await Promise.all(all.map((i) => i.stop()));
    },
  };
}
