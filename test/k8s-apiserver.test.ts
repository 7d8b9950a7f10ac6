// The stand-in API server against the real @kubernetes/client-node 2.0.1:
// first the wire protocol as seen by a plain HTTP client, then the typed API
// clients and informers through a kubeconfig, and what the informer does on
// each fault the stand-in can inject. No root, loopback only.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
// Default imports: the module objects themselves, which the fill-ins below must change (a namespace import is a copy).
import workerThreads from 'node:worker_threads';
import zlib from 'node:zlib';
import type * as K8s from '@kubernetes/client-node' with { 'resolution-mode': 'import' };
import { StandInApiServer, type KubeObjectInput, type StandInApiServerOptions } from '../lab/k8s/apiServer';

/** Every wait polls at this period until its deadline. */
const POLL_MS = 10;
const WAIT_MS = 5000;
/** Long enough for a reconnect the informer would make (its backoff starts at 1 s) to have shown up. */
const QUIET_MS = 1500;
/** A recorder stops recording beyond this, so a runaway informer cannot grow memory without bound. */
const MAX_EVENTS = 200;

// @kubernetes/client-node 2.0.1 depends on undici 8, which declares Node >= 22.19
// and does not even load on the Node 20 these machines run: it reads
// zlib.createZstdDecompress, worker_threads.markAsUncloneable and
// Promise.withResolvers at load or first fetch. Until the project settles that
// (a newer Node, or a client whose undici runs on 20), this test process fills
// in those three: zstd is never negotiated with the stand-in, marking undici's
// objects uncloneable only guards structuredClone, and the Promise.withResolvers
// polyfill is exact. Each test file is its own process, so nothing else sees them.
function fillInNode22Apis(): void {
  const zlibExports = zlib as unknown as Record<string, unknown>;
  if (typeof zlibExports.createZstdDecompress !== 'function') {
    zlibExports.createZstdDecompress = () => {
      throw new Error('zstd content-encoding is not available on this Node');
    };
  }
  const workerExports = workerThreads as unknown as Record<string, unknown>;
  if (typeof workerExports.markAsUncloneable !== 'function') workerExports.markAsUncloneable = () => undefined;
  const promiseStatics = Promise as unknown as Record<string, unknown>;
  if (typeof promiseStatics.withResolvers !== 'function') {
    promiseStatics.withResolvers = function withResolvers<T>() {
      let resolve!: (value: T) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    };
  }
}

let clientModule: Promise<typeof K8s> | undefined;

/** The client is an ES module and this test is CommonJS, hence the dynamic import. */
function loadClient(): Promise<typeof K8s> {
  fillInNode22Apis();
  clientModule ??= import('@kubernetes/client-node');
  return clientModule;
}

async function eventually(what: string, predicate: () => boolean, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function service(name: string, namespace = 'default', labels: Record<string, string> = {}, port = 80): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, labels },
    spec: { type: 'ClusterIP', ports: [{ name: 'http', port, protocol: 'TCP', targetPort: 8080 }] },
  };
}

function endpointSlice(name: string, serviceName: string, addresses: string[]): KubeObjectInput {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true }, nodeName: 'node-1' })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function node(name: string, address: string): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    status: { addresses: [{ type: 'InternalIP', address }] },
  };
}

function pod(name: string, nodeName: string): KubeObjectInput {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: { nodeName, containers: [{ name: 'app', image: 'app:1' }] },
  };
}

// ---------------------------------------------------------------------------
// Plain HTTP, to see the bytes a client gets.

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- watch events and list bodies are read field by field
type Json = any;

function rawGet(
  server: StandInApiServer,
  pathAndQuery: string,
  token: string | null = server.token,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers = token === null ? {} : { Authorization: `Bearer ${token}` };
    const req = http.get(`${server.url}${pathAndQuery}`, { headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

interface RawWatch {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: Json[];
  ended: boolean;
  close(): void;
}

/** Opens a watch and parses its NDJSON lines as they come; resolves once the headers are in. */
function rawWatch(server: StandInApiServer, pathAndQuery: string): Promise<RawWatch> {
  return new Promise((resolve, reject) => {
    const headers = { Authorization: `Bearer ${server.token}` };
    const req = http.get(`${server.url}${pathAndQuery}`, { headers, agent: false }, (res) => {
      const watch: RawWatch = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        ended: false,
        close: () => req.destroy(),
      };
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk;
        for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line !== '' && watch.events.length < MAX_EVENTS) watch.events.push(JSON.parse(line));
        }
      });
      res.on('end', () => (watch.ended = true));
      res.on('error', () => (watch.ended = true)); // our own close()
      resolve(watch);
    });
    req.on('error', reject);
  });
}

function names(items: Json[]): string[] {
  return items.map((item) => `${item.metadata.namespace ?? ''}/${item.metadata.name}`);
}

function eventSummary(events: Json[]): string[] {
  return events.map((e) => `${e.type} ${e.object.metadata?.name ?? e.object.reason}`);
}

async function startedServer(t: ExecutionContext, options?: StandInApiServerOptions): Promise<StandInApiServer> {
  const server = new StandInApiServer(options);
  await server.start();
  t.teardown(() => server.stop());
  return server;
}

test('the stand-in serves lists, selectors, gets and watches in the API server wire format', async (t) => {
  const server = await startedServer(t);
  t.regex(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const a = server.apply(service('a', 'default', { app: 'web' }));
  server.apply(service('b', 'default', { app: 'db' }));
  server.apply(service('c', 'other'));
  server.apply(node('node-1', '10.0.0.1'));
  t.is(a.metadata.resourceVersion, '1001');
  t.truthy(a.metadata.uid);
  t.regex(a.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  const unauthenticated = await rawGet(server, '/api/v1/services', null);
  t.is(unauthenticated.status, 401);
  t.like(unauthenticated.body as Json, { kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401 });

  const list = await rawGet(server, '/api/v1/services');
  t.is(list.status, 200);
  t.is(list.headers['content-type'], 'application/json');
  const body = list.body as Json;
  t.like(body, { kind: 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: server.resourceVersion } });
  t.deepEqual(names(body.items), ['default/a', 'default/b', 'other/c']);
  t.is(body.items[0].kind, undefined, 'list items carry no kind, as from a real server');

  const selected = async (query: string) =>
    names(((await rawGet(server, `/api/v1/services?${query}`)).body as Json).items);
  t.deepEqual(await selected('labelSelector=app%3Dweb'), ['default/a']);
  t.deepEqual(
    await selected('labelSelector=app!%3Dweb'),
    ['default/b', 'other/c'],
    '!= matches objects without the label',
  );
  t.deepEqual(await selected('labelSelector=!app'), ['other/c']);
  t.deepEqual(await selected('labelSelector=app,app!%3Ddb'), ['default/a']);
  t.deepEqual(await selected('labelSelector=app%20in%20(web,db)'), ['default/a', 'default/b']);
  t.deepEqual(await selected('fieldSelector=metadata.namespace%3Dother'), ['other/c']);
  t.deepEqual(await selected('fieldSelector=metadata.name%3Db'), ['default/b']);
  t.is((await rawGet(server, '/api/v1/services?labelSelector=a%3D%3D%3Db')).status, 400);
  t.deepEqual(names(((await rawGet(server, '/api/v1/namespaces/other/services')).body as Json).items), ['other/c']);

  const nodeGet = await rawGet(server, '/api/v1/nodes/node-1');
  t.like(nodeGet.body as Json, { kind: 'Node', apiVersion: 'v1', metadata: { name: 'node-1' } });
  const missing = await rawGet(server, '/api/v1/nodes/node-9');
  t.is(missing.status, 404);
  t.like(missing.body as Json, { kind: 'Status', reason: 'NotFound', message: 'nodes "node-9" not found' });
  t.is((await rawGet(server, '/api/v1/widgets')).status, 404);

  // From a's RV: b and c are replayed, then live changes follow, on one chunked stream.
  const fromA = await rawWatch(server, `/api/v1/services?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
  t.teardown(() => fromA.close());
  t.is(fromA.status, 200);
  t.is(fromA.headers['content-type'], 'application/json');
  t.is(fromA.headers['transfer-encoding'], 'chunked');
  const webOnly = await rawWatch(server, '/api/v1/services?watch=1&labelSelector=app%3Dweb');
  t.teardown(() => webOnly.close());
  await eventually('the replay', () => fromA.events.length === 2 && webOnly.events.length === 1);
  server.apply(service('a', 'default', { app: 'web' }, 81));
  const deleted = server.delete('Service', 'default', 'b');
  server.apply(service('a', 'default', { app: 'moved' }, 81));
  server.apply(service('a', 'default', { app: 'web' }, 81));
  await eventually('the live events', () => fromA.events.length === 6 && webOnly.events.length === 4);
  t.deepEqual(eventSummary(fromA.events), [
    'ADDED b',
    'ADDED c',
    'MODIFIED a',
    'DELETED b',
    'MODIFIED a',
    'MODIFIED a',
  ]);
  t.is(fromA.events[3].object.metadata.resourceVersion, deleted?.metadata.resourceVersion);
  t.deepEqual(fromA.events[3].object.spec, (body.items as Json[])[1].spec, 'DELETED carries the last state');
  const rvs = fromA.events.map((e: Json) => Number(e.object.metadata.resourceVersion));
  t.deepEqual(
    rvs,
    [...rvs].sort((x, y) => x - y),
    'resourceVersions only grow',
  );
  // Without a resourceVersion the current state comes as ADDED; leaving and
  // re-entering the selector look like a delete and an add.
  t.deepEqual(eventSummary(webOnly.events), ['ADDED a', 'MODIFIED a', 'DELETED a', 'ADDED a']);
  t.is(webOnly.events[2].object.metadata.labels.app, 'web', 'the DELETED of a leaving object has its old content');

  // Compaction: from before it the watch is refused, from the current RV it is served.
  const beforeCompaction = a.metadata.resourceVersion;
  server.compact();
  const refused = await rawWatch(server, `/api/v1/services?watch=true&resourceVersion=${beforeCompaction}`);
  await eventually('the ERROR event and the end of the stream', () => refused.ended);
  t.is(refused.status, 200);
  t.deepEqual(refused.events, [
    {
      type: 'ERROR',
      object: {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: `too old resource version: ${beforeCompaction} (${Number(server.resourceVersion) + 1})`,
        reason: 'Expired',
        code: 410,
      },
    },
  ]);
  server.expiredResponse = 'http-410';
  const gone = await rawGet(server, `/api/v1/services?watch=true&resourceVersion=${beforeCompaction}`);
  t.is(gone.status, 410);
  t.like(gone.body as Json, { kind: 'Status', reason: 'Expired', code: 410 });
  const current = await rawWatch(server, `/api/v1/services?watch=true&resourceVersion=${server.resourceVersion}`);
  t.teardown(() => current.close());
  t.is(current.status, 200);
  server.apply(service('d'));
  await eventually('the event after compaction', () => current.events.length === 1);
  t.deepEqual(eventSummary(current.events), ['ADDED d']);
  t.is(server.watchCount('/api/v1/services'), 3);
  t.is(server.requestCount({ verb: 'watch', path: '/api/v1/services' }), 5);
});

// ---------------------------------------------------------------------------
// The real client.

interface ClientFixture {
  k8s: typeof K8s;
  server: StandInApiServer;
  kubeConfig: K8s.KubeConfig;
  core: K8s.CoreV1Api;
}

async function clientFixture(t: ExecutionContext, options?: StandInApiServerOptions): Promise<ClientFixture> {
  const k8s = await loadClient();
  const server = await startedServer(t, options);
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromFile(server.kubeconfig());
  return { k8s, server, kubeConfig, core: kubeConfig.makeApiClient(k8s.CoreV1Api) };
}

interface Change {
  verb: 'add' | 'update' | 'delete';
  name: string;
  resourceVersion: string;
}

/** An informer and everything it reported, in order. */
class InformerRecord<T extends K8s.KubernetesObject> {
  readonly changes: Change[] = [];
  readonly errors: unknown[] = [];
  connects = 0;
  /** informer.stop() itself reports an AbortError; errors after it are not the server's doing. */
  stopping = false;

  constructor(readonly informer: K8s.Informer<T> & K8s.ObjectCache<T>) {
    for (const verb of ['add', 'update', 'delete'] as const) {
      informer.on(verb, (object) => {
        if (this.changes.length >= MAX_EVENTS) return;
        const { name = '', resourceVersion = '' } = object.metadata ?? {};
        this.changes.push({ verb, name, resourceVersion });
      });
    }
    informer.on('connect', () => (this.connects += 1));
    informer.on('error', (err) => {
      if (!this.stopping && this.errors.length < MAX_EVENTS) this.errors.push(err);
    });
  }

  /** The changes as 'verb name', from the index'th on. */
  summary(from = 0): string[] {
    return this.changes.slice(from).map((c) => `${c.verb} ${c.name}`);
  }

  cachedNames(): string[] {
    return this.informer
      .list()
      .map((o) => o.metadata?.name ?? '')
      .sort();
  }
}

async function startInformer<T extends K8s.KubernetesObject>(
  t: ExecutionContext,
  fx: ClientFixture,
  path: string,
  list: K8s.ListPromise<T>,
  labelSelector?: string,
): Promise<InformerRecord<T>> {
  const record = new InformerRecord(fx.k8s.makeInformer(fx.kubeConfig, path, list, labelSelector));
  t.teardown(async () => {
    record.stopping = true;
    await record.informer.stop();
  });
  // start() returns once the list is cached and the watch's headers are in.
  await record.informer.start();
  return record;
}

function servicesInformer(t: ExecutionContext, fx: ClientFixture): Promise<InformerRecord<K8s.V1Service>> {
  return startInformer(t, fx, '/api/v1/services', () => fx.core.listServiceForAllNamespaces());
}

function watchRequests(server: StandInApiServer, path: string) {
  return server.requests.filter((r) => r.verb === 'watch' && r.path === path);
}

test('the typed clients read nodes, services, namespaces, pods and policies through the kubeconfig', async (t) => {
  const fx = await clientFixture(t);
  const { k8s, server, core } = fx;
  t.is(fx.kubeConfig.getCurrentCluster()?.server, server.url);
  server.apply(node('node-1', '10.0.0.1'));
  server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } });
  server.apply(service('web', 'other', { app: 'web' }));
  server.apply(service('db', 'other', { app: 'db' }));
  server.apply(service('web', 'default', { app: 'web' }));
  server.apply(pod('on-1', 'node-1'));
  server.apply(pod('on-2', 'node-2'));
  server.apply({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'deny', namespace: 'other', labels: { tier: 'base' } },
    spec: { podSelector: {}, policyTypes: ['Ingress'] },
  });

  const read = await core.readNode({ name: 'node-1' });
  t.is(read.metadata?.name, 'node-1');
  t.is(read.status?.addresses?.[0].address, '10.0.0.1');
  t.true(read.metadata?.creationTimestamp instanceof Date, 'the generated client parsed the object');
  const error = await t.throwsAsync(core.readNode({ name: 'node-9' }));
  t.is((error as unknown as { code: number }).code, 404);

  const namespaced = await core.listNamespacedService({ namespace: 'other', labelSelector: 'app=web' });
  t.deepEqual(
    namespaced.items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`),
    ['other/web'],
  );
  t.is(namespaced.metadata?.resourceVersion, server.resourceVersion);
  t.deepEqual(
    (await core.listNamespace()).items.map((n) => n.metadata?.name),
    ['other'],
  );
  const onNode = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-1' });
  t.deepEqual(
    onNode.items.map((p) => p.metadata?.name),
    ['on-1'],
  );
  const networking = fx.kubeConfig.makeApiClient(k8s.NetworkingV1Api);
  const policies = await networking.listNetworkPolicyForAllNamespaces({ labelSelector: 'tier=base' });
  t.deepEqual(
    policies.items.map((p) => p.metadata?.name),
    ['deny'],
  );

  const wrongToken = new k8s.KubeConfig();
  wrongToken.loadFromString(
    readFileSync(server.kubeconfig(), 'utf8').replace(`token: ${server.token}`, 'token: not-the-token'),
  );
  const refused = await t.throwsAsync(wrongToken.makeApiClient(k8s.CoreV1Api).listNode());
  t.is((refused as unknown as { code: number }).code, 401);
});

test('a services informer lists, then sees ADDED, MODIFIED and DELETED in order', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  const a = server.apply(service('a'));
  const b = server.apply(service('b'));
  const record = await servicesInformer(t, fx);
  t.deepEqual(record.changes, [
    { verb: 'add', name: 'a', resourceVersion: a.metadata.resourceVersion },
    { verb: 'add', name: 'b', resourceVersion: b.metadata.resourceVersion },
  ]);

  const c = server.apply(service('c', 'other'));
  const b2 = server.apply(service('b', 'default', {}, 8080));
  const aGone = server.delete('Service', 'default', 'a');
  // An apply that changes nothing is no write, so the next event is c's.
  t.is(server.apply(service('b', 'default', {}, 8080)).metadata.resourceVersion, b2.metadata.resourceVersion);
  const c2 = server.apply(service('c', 'other', { tier: 'front' }));
  await eventually('five changes', () => record.changes.length >= 5);
  t.deepEqual(record.changes.slice(2), [
    { verb: 'add', name: 'c', resourceVersion: c.metadata.resourceVersion },
    { verb: 'update', name: 'b', resourceVersion: b2.metadata.resourceVersion },
    { verb: 'delete', name: 'a', resourceVersion: aGone?.metadata.resourceVersion ?? '' },
    { verb: 'update', name: 'c', resourceVersion: c2.metadata.resourceVersion },
  ]);
  t.deepEqual(record.cachedNames(), ['b', 'c']);
  t.is(record.informer.get('b', 'default')?.spec?.ports?.[0].port, 8080);
  t.deepEqual(record.errors, []);
  t.is(server.requestCount({ verb: 'list', path: '/api/v1/services' }), 1);
  t.is(server.requestCount({ verb: 'watch', path: '/api/v1/services' }), 1);
  const [watch] = watchRequests(server, '/api/v1/services');
  t.is(watch.query, `watch=true&resourceVersion=${b.metadata.resourceVersion}`, 'no bookmarks, no timeout asked');

  // Stopping is reported as an error too: the agent must tell it from a real one.
  const stoppedErrors: unknown[] = [];
  record.informer.on('error', (err) => stoppedErrors.push(err));
  await record.informer.stop();
  await eventually('the AbortError of stop()', () => stoppedErrors.length > 0);
  t.is((stoppedErrors[0] as Error).name, 'AbortError');
  await eventually('the watch to close', () => server.watchCount() === 0);
});

test('an EndpointSlice informer with a labelSelector sees only the matching slices', async (t) => {
  const fx = await clientFixture(t);
  const { k8s, server } = fx;
  const discovery = fx.kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
  const selector = 'kubernetes.io/service-name=web';
  server.apply(endpointSlice('web-abc', 'web', ['10.1.0.1']));
  server.apply(endpointSlice('web-def', 'web', ['10.1.0.2']));
  server.apply(endpointSlice('db-xyz', 'db', ['10.2.0.1']));
  const record = await startInformer(
    t,
    fx,
    '/apis/discovery.k8s.io/v1/endpointslices',
    () => discovery.listEndpointSliceForAllNamespaces({ labelSelector: selector }),
    selector,
  );
  t.deepEqual(record.summary(), ['add web-abc', 'add web-def']);

  server.apply(endpointSlice('db-uvw', 'db', ['10.2.0.2']));
  server.apply(endpointSlice('web-ghi', 'web', ['10.1.0.3']));
  server.apply(endpointSlice('db-xyz', 'db', ['10.2.0.9']));
  server.apply(endpointSlice('web-abc', 'web', ['10.1.0.1', '10.1.0.4']));
  // Relabelled away from the selector: the watch reports it as deleted.
  server.apply(endpointSlice('web-def', 'db', ['10.1.0.2']));
  server.delete('EndpointSlice', 'default', 'db-uvw');
  server.apply(endpointSlice('web-jkl', 'web', ['10.1.0.5']));
  await eventually('the matching changes', () => record.changes.length >= 6);
  t.deepEqual(record.summary(2), ['add web-ghi', 'update web-abc', 'delete web-def', 'add web-jkl']);
  t.deepEqual(record.cachedNames(), ['web-abc', 'web-ghi', 'web-jkl']);
  const [watch] = watchRequests(server, '/apis/discovery.k8s.io/v1/endpointslices');
  t.is(new URLSearchParams(watch.query).get('labelSelector'), selector);
  const [list] = server.requests.filter((r) => r.verb === 'list');
  t.is(new URLSearchParams(list.query).get('labelSelector'), selector);
});

test('after cutWatches the informer rewatches from its last resourceVersion and misses nothing', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  server.apply(service('a'));
  server.apply(service('b'));
  const record = await servicesInformer(t, fx);
  const lastSeen = server.resourceVersion;

  // The stall holds the client's reconnect while the changes are made, so
  // they can only reach it through the replay.
  const held = server.stall(300);
  t.is(server.cutWatches(), 1);
  server.apply(service('c'));
  server.apply(service('a', 'default', {}, 81));
  server.delete('Service', 'default', 'b');
  await held;
  await eventually('the replayed changes', () => record.changes.length >= 5);
  t.deepEqual(record.summary(2), ['add c', 'update a', 'delete b']);
  t.deepEqual(record.cachedNames(), ['a', 'c']);
  t.is(server.requestCount({ verb: 'list' }), 1, 'no relist');
  const watches = watchRequests(server, '/api/v1/services');
  t.is(watches.length, 2);
  t.is(watches[1].resourceVersion, lastSeen);
  t.is(record.connects, 2);
  t.deepEqual(record.errors, []);

  // And live events keep coming on the new stream.
  server.apply(service('d'));
  await eventually('a live change', () => record.changes.length >= 6);
  t.deepEqual(record.summary(5), ['add d']);
});

test('a watch stream broken off mid-body is an error: the informer stops; start() resumes without a relist', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  server.apply(service('a'));
  const record = await servicesInformer(t, fx);
  t.is(server.cutWatches({ abrupt: true }), 1);
  await eventually('the error', () => record.errors.length > 0);
  const error = record.errors[0] as Error & { cause?: { code?: string } };
  t.is(error.name, 'TypeError');
  t.is(error.message, 'terminated');
  t.is(error.cause?.code, 'UND_ERR_SOCKET');
  server.apply(service('b'));
  await sleep(QUIET_MS);
  t.is(server.requestCount({ verb: 'watch' }), 1, 'no reconnect by itself');
  t.deepEqual(record.summary(), ['add a']);

  await record.informer.start();
  await eventually('the change made while stopped', () => record.changes.length >= 2);
  t.deepEqual(record.summary(1), ['add b']);
  t.is(server.requestCount({ verb: 'list' }), 1, 'the resourceVersion survived the stop');
});

for (const expiredResponse of ['http-410', 'error-event'] as const) {
  test(`history lost on restart (${expiredResponse}): the informer relists and its cache converges`, async (t) => {
    const fx = await clientFixture(t, { expiredResponse });
    const { server } = fx;
    server.apply(service('a'));
    server.apply(service('b'));
    const record = await servicesInformer(t, fx);
    const lastSeen = server.resourceVersion;

    const held = server.stall(300);
    await server.restart({ loseHistory: true });
    server.delete('Service', 'default', 'b');
    server.apply(service('c'));
    await held;
    await eventually('the relist', () => record.changes.length >= 4);
    // The relist reports what went missing, then what is new; a, unchanged, is not reported.
    t.deepEqual(record.summary(2), ['delete b', 'add c']);
    t.deepEqual(record.cachedNames(), ['a', 'c']);
    t.deepEqual(
      record.cachedNames(),
      server.list('Service').map((s) => s.metadata.name),
    );
    t.deepEqual(record.errors, []);
    const watches = watchRequests(server, '/api/v1/services');
    t.is(watches[1].resourceVersion, lastSeen);
    t.is(watches[1].status, expiredResponse === 'http-410' ? 410 : 200);
    t.is(server.requestCount({ verb: 'list' }), 2);

    // The watch after the relist is a live one again (it may wait out the client's 1 s backoff).
    await eventually('the new watch', () => server.watchCount() === 1);
    server.apply(service('d'));
    await eventually('a live change', () => record.changes.length >= 5);
    t.deepEqual(record.summary(4), ['add d']);
  });
}

test('history overflowing historyLimit: the ERROR event makes the informer relist', async (t) => {
  const fx = await clientFixture(t, { historyLimit: 3 });
  const { server } = fx;
  server.apply(service('a'));
  const record = await servicesInformer(t, fx);
  const held = server.stall(300);
  server.cutWatches();
  for (let i = 1; i <= 4; i++) server.apply(service(`s${i}`));
  server.delete('Service', 'default', 'a');
  await held;
  await eventually('the relist', () => record.changes.length >= 6);
  t.deepEqual(record.summary(1), ['delete a', 'add s1', 'add s2', 'add s3', 'add s4']);
  t.deepEqual(
    record.cachedNames(),
    server.list('Service').map((s) => s.metadata.name),
  );
  t.is(server.requestCount({ verb: 'list' }), 2);
  t.deepEqual(record.errors, []);
});

test('a 500 on the watch: the informer emits error and stops; start() resumes from its resourceVersion', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  server.apply(service('a'));
  const record = await servicesInformer(t, fx);
  server.failNext(1, 500, 'watch');
  server.cutWatches();
  await eventually('the error', () => record.errors.length > 0);
  const error = record.errors[0] as Error & { statusCode?: number };
  t.is(error.statusCode, 500);
  t.is(error.message, 'Internal Server Error');
  server.apply(service('b'));
  await sleep(QUIET_MS);
  t.is(server.requestCount({ verb: 'watch' }), 2, 'no retry by itself');
  t.is(server.watchCount(), 0);

  await record.informer.start();
  await eventually('the change made while stopped', () => record.changes.length >= 2);
  t.deepEqual(record.summary(), ['add a', 'add b']);
  t.is(server.requestCount({ verb: 'list' }), 1);
  t.is(record.errors.length, 1);
});

test('a 503 on the list: the informer emits error before watching; start() lists again', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  server.apply(service('a'));
  server.failNext(1, 503, 'list');
  const record = await servicesInformer(t, fx);
  t.is(record.errors.length, 1);
  t.is((record.errors[0] as { code?: number }).code, 503, "the generated client's ApiException");
  t.is(server.requestCount({ verb: 'watch' }), 0);
  await record.informer.start();
  t.deepEqual(record.summary(), ['add a']);
  t.is(server.requestCount({ verb: 'list' }), 2);
  t.is(server.watchCount(), 1);
});

test('a restart with downtime: the reconnect is refused, the informer errors and stops; start() resumes', async (t) => {
  const fx = await clientFixture(t);
  const { server } = fx;
  server.apply(service('a'));
  const record = await servicesInformer(t, fx);
  const url = server.url;
  const restarted = server.restart({ downMs: 300 });
  await eventually('the error', () => record.errors.length > 0);
  const error = record.errors[0] as Error & { cause?: { code?: string } };
  t.is(error.message, 'fetch failed');
  t.is(error.cause?.code, 'ECONNREFUSED');
  await restarted;
  t.is(server.url, url, 'back on the same port');
  server.apply(service('b'));
  await record.informer.start();
  await eventually('the change made while down', () => record.changes.length >= 2);
  t.deepEqual(record.summary(), ['add a', 'add b']);
  t.is(server.requestCount({ verb: 'list' }), 1);
});
