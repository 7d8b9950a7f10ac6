// A stand-in Kubernetes API server for tests, demos and benchmarks: no
// kube-apiserver can be installed on these machines, so this one speaks the
// list/watch protocol that @kubernetes/client-node 2.x uses (JSON lists with a
// collection resourceVersion; NDJSON watch streams replaying every retained
// event after the requested resourceVersion; 410 Expired once that history is
// compacted away) from an in-memory store, on loopback only, with hooks to
// inject the faults an agent must survive.
//
// What the client sends and expects was read from its dist/watch.js,
// cache.js, informer.js and config.js (2.0.1); the server side follows the
// Kubernetes "API concepts" page. Objects are created and changed from the
// test side (apply, delete); over HTTP the stand-in only answers GET.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { stringify as yamlStringify } from 'yaml';

/** A collection the stand-in serves, as the API names it. */
export interface ResourceType {
  /** '' for the core group (paths under /api). */
  group: string;
  version: string;
  kind: string;
  /** The collection's path segment. */
  plural: string;
  namespaced: boolean;
}

/** The collections served unless the options add more. */
export const BUILTIN_RESOURCE_TYPES: readonly ResourceType[] = [
  { group: '', version: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  { group: '', version: 'v1', kind: 'Endpoints', plural: 'endpoints', namespaced: true },
  { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
  { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false },
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  { group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true },
  { group: 'networking.k8s.io', version: 'v1', kind: 'NetworkPolicy', plural: 'networkpolicies', namespaced: true },
];

/** An object as stored and served: plain JSON with the metadata the server owns filled in. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    resourceVersion: string;
    uid: string;
    creationTimestamp: string;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

/**
 * What apply accepts: anything shaped like a Kubernetes object (a literal, a
 * client-node model instance, a kubernetes-models object); checked when applied.
 */
export interface KubeObjectInput {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; [field: string]: unknown };
  [field: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/**
 * How a watch from a compacted resourceVersion is refused. Real servers
 * mostly answer 200 and one ERROR event carrying a 410 Status, then end the
 * stream; a plain HTTP 410 is the other form the client handles.
 */
export type ExpiredResponse = 'error-event' | 'http-410';

export type RequestVerb = 'list' | 'watch' | 'get' | 'other';

/** One request as the stand-in saw it, for tests that assert what the client did. */
export interface RequestRecord {
  verb: RequestVerb;
  method: string;
  path: string;
  /** The query string without its '?'. */
  query: string;
  /** The resourceVersion parameter, if the client sent one. */
  resourceVersion?: string;
  /** The status answered (0 while the request is still held by a stall). */
  status: number;
}

export interface StandInApiServerOptions {
  /** 0 (the default) picks a free port; restart keeps whichever port was bound. */
  port?: number;
  /** The bearer token the kubeconfig carries and every request must present. */
  token?: string;
  /** How many events are retained for watches to replay (default 1000). */
  historyLimit?: number;
  expiredResponse?: ExpiredResponse;
  /** Where the resourceVersion counter starts, so RVs look like a live cluster's rather than small integers. */
  initialResourceVersion?: number;
  /** Collections served besides the built-in ones. */
  extraResourceTypes?: readonly ResourceType[];
}

export interface CutOptions {
  /**
   * Destroy the sockets instead of ending the responses: the client sees a
   * body that breaks off before the chunked terminator, as after a crash.
   */
  abrupt?: boolean;
}

export interface RestartOptions extends CutOptions {
  /**
   * Come back without the event history, and count the restart itself as a
   * write (as a real apiserver's lease and endpoint updates are), so every
   * resourceVersion a client holds is older than what can be replayed and its
   * next watch is refused as expired.
   */
  loseHistory?: boolean;
  /** Stop listening for this long, so clients that reconnect meanwhile are refused. */
  downMs?: number;
}

export interface RequestFilter {
  verb?: RequestVerb;
  path?: string;
}

const LOOPBACK = '127.0.0.1';
const REQUEST_LOG_LIMIT = 10_000;
const CLOSE_GRACE_MS = 100;

interface StoredEvent {
  rv: number;
  type: WatchEventType;
  resourceType: ResourceType;
  object: KubeObject;
  /** The state before a MODIFIED, so selector-filtered watches can tell entering from leaving. */
  previous?: KubeObject;
}

interface LabelRequirement {
  key: string;
  op: '=' | '!=' | 'exists' | '!exists' | 'in' | 'notin';
  values: string[];
}

interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** Which objects of one collection a list or watch asks for. */
interface Selection {
  resourceType: ResourceType;
  namespace?: string;
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

interface OpenWatch {
  selection: Selection;
  path: string;
  res: http.ServerResponse;
  /** Lines held while the server is stalled, written in order when it resumes. */
  held: string[];
}

interface Route {
  resourceType: ResourceType;
  namespace?: string;
  name?: string;
}

interface Stall {
  until: number;
  timer: NodeJS.Timeout;
  released: Promise<void>;
  release: () => void;
}

interface PlannedFailure {
  remaining: number;
  status: number;
  verb?: RequestVerb;
}

/** A client error detected while serving, answered as a Status. */
class StatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class StandInApiServer {
  readonly token: string;
  /** Changing it takes effect at the next change (the window is trimmed as events are added). */
  historyLimit: number;
  expiredResponse: ExpiredResponse;
  /** The most recent requests, oldest first (bounded; counts are kept separately and are exact). */
  readonly requests: RequestRecord[] = [];

  private readonly http: http.Server;
  private port: number;
  private listening = false;
  private rv: number;
  /** Every event with an RV at or below this one is gone; a watch from an older RV is expired. */
  private compactedRv: number;
  private history: StoredEvent[] = [];
  private readonly resourceTypes: ResourceType[];
  /** apiVersion/kind → namespace/name → object. */
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private readonly watches = new Set<OpenWatch>();
  private readonly counts = new Map<string, number>();
  private stallState?: Stall;
  private failures: PlannedFailure[] = [];
  private tempDir?: string;

  constructor(options: StandInApiServerOptions = {}) {
    this.port = options.port ?? 0;
    this.token = options.token ?? `stand-in-${randomUUID()}`;
    this.historyLimit = options.historyLimit ?? 1000;
    this.expiredResponse = options.expiredResponse ?? 'error-event';
    this.rv = options.initialResourceVersion ?? 1000;
    this.compactedRv = this.rv;
    this.resourceTypes = [...BUILTIN_RESOURCE_TYPES, ...(options.extraResourceTypes ?? [])];
    this.http = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) sendStatus(res, 500, `stand-in failure: ${String(err)}`);
        else res.destroy();
      });
    });
  }

  async start(): Promise<void> {
    if (this.listening) return;
    await this.listen();
  }

  /** Ends every watch, drops every connection and stops listening; removes the kubeconfig it wrote. */
  async stop(): Promise<void> {
    this.releaseStall();
    this.cutWatches();
    if (this.listening) await this.closeListener();
    if (this.tempDir) {
      fs.rmSync(this.tempDir, { recursive: true, force: true });
      this.tempDir = undefined;
    }
  }

  get url(): string {
    if (!this.listening) throw new Error('the stand-in API server is not started');
    return `http://${LOOPBACK}:${this.port}`;
  }

  /** The current (latest) resourceVersion, as lists report it. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /**
   * Writes a kubeconfig whose current context reaches this server with its
   * token; by default into a temporary directory that stop removes.
   */
  kubeconfig(file?: string): string {
    if (file === undefined) {
      this.tempDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-apiserver-'));
      file = path.join(this.tempDir, 'kubeconfig');
    }
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      preferences: {},
      clusters: [
        // The 2.x client refuses an http: server unless TLS verification is
        // declared skipped (config.js createDispatcherOptions).
        { name: 'stand-in', cluster: { server: this.url, 'insecure-skip-tls-verify': true } },
      ],
      users: [{ name: 'stand-in', user: { token: this.token } }],
      contexts: [{ name: 'stand-in', context: { cluster: 'stand-in', user: 'stand-in', namespace: 'default' } }],
      'current-context': 'stand-in',
    };
    fs.writeFileSync(file, yamlStringify(config), { mode: 0o600 });
    return file;
  }

  /**
   * Creates the object or updates it (keeping its uid and creationTimestamp),
   * bumping the resourceVersion and telling the watches. An update that
   * changes nothing is no write at all, as on a real server. Namespaced
   * objects without a namespace go to 'default'. Returns the stored state.
   */
  apply(input: KubeObjectInput): KubeObject {
    const resourceType = this.typeOf(input);
    const name = input.metadata?.name;
    if (!name) throw new Error(`apply: a ${resourceType.kind} needs metadata.name`);
    const object = structuredClone(plain(input)) as KubeObject;
    if (resourceType.namespaced) object.metadata.namespace = input.metadata?.namespace || 'default';
    else delete object.metadata.namespace;
    const objects = this.objectsOf(resourceType);
    const key = objectKey(object.metadata.namespace, name);
    const previous = objects.get(key);
    if (previous && canonical(withoutServerFields(previous)) === canonical(withoutServerFields(object))) {
      return structuredClone(previous);
    }
    this.rv += 1;
    object.metadata.uid = previous?.metadata.uid ?? randomUUID();
    object.metadata.creationTimestamp = previous?.metadata.creationTimestamp ?? nowTimestamp();
    object.metadata.resourceVersion = String(this.rv);
    objects.set(key, object);
    this.record({ rv: this.rv, type: previous ? 'MODIFIED' : 'ADDED', resourceType, object, previous });
    return structuredClone(object);
  }

  /**
   * Deletes an object; kind is 'Service' or qualified, 'discovery.k8s.io/v1/EndpointSlice'.
   * Returns its last state with the deletion's resourceVersion (what the
   * DELETED event carries), or undefined when there was no such object.
   */
  delete(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const resourceType = this.typeNamed(kind);
    const objects = this.objectsOf(resourceType);
    const key = objectKey(resourceType.namespaced ? namespace || 'default' : undefined, name);
    const previous = objects.get(key);
    if (!previous) return undefined;
    objects.delete(key);
    this.rv += 1;
    const object = structuredClone(previous);
    object.metadata.resourceVersion = String(this.rv);
    this.record({ rv: this.rv, type: 'DELETED', resourceType, object });
    return structuredClone(object);
  }

  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const resourceType = this.typeNamed(kind);
    const found = this.objectsOf(resourceType).get(objectKey(resourceType.namespaced ? namespace : undefined, name));
    return found && structuredClone(found);
  }

  /** The stored objects of a kind, sorted by namespace and name (etcd's key order). */
  list(kind: string, namespace?: string): KubeObject[] {
    const selection: Selection = { resourceType: this.typeNamed(kind), namespace, labels: [], fields: [] };
    return this.select(selection).map((object) => structuredClone(object));
  }

  /**
   * Forgets the retained events up to and including rv (default: all), as
   * etcd compaction does: a watch from an older resourceVersion is then
   * refused as expired, one from the current resourceVersion is still served.
   */
  compact(rv: number = this.rv): void {
    this.history = this.history.filter((event) => event.rv > rv);
    this.compactedRv = Math.max(this.compactedRv, Math.min(rv, this.rv));
  }

  /** How many watches are open now (on one path, or on all). */
  watchCount(path?: string): number {
    let count = 0;
    for (const watch of this.watches) if (path === undefined || watch.path === path) count += 1;
    return count;
  }

  /** How many requests arrived (failed and held ones included) matching the filter. */
  requestCount(filter: RequestFilter = {}): number {
    let count = 0;
    for (const [key, n] of this.counts) {
      const [verb, requestPath] = splitCountKey(key);
      if (
        (filter.verb === undefined || filter.verb === verb) &&
        (filter.path === undefined || filter.path === requestPath)
      )
        count += n;
    }
    return count;
  }

  /**
   * Ends every open watch mid-stream (cleanly unless abrupt); returns how
   * many. Lines a stall was holding for them are lost with them, as bytes in
   * flight would be; the client's next watch replays them from history.
   */
  cutWatches(options: CutOptions = {}): number {
    const open = [...this.watches];
    this.watches.clear();
    for (const watch of open) {
      if (options.abrupt) watch.res.socket?.destroy();
      else watch.res.end();
    }
    return open.length;
  }

  /**
   * Holds every response for ms: requests arriving meanwhile wait, and events
   * for open watches are queued; then everything proceeds in order. A second
   * stall while one is on extends it. Resolves when the stall ends.
   */
  stall(ms: number): Promise<void> {
    const until = Date.now() + ms;
    if (this.stallState) {
      if (until > this.stallState.until) {
        clearTimeout(this.stallState.timer);
        this.stallState.until = until;
        this.stallState.timer = setTimeout(() => this.releaseStall(), ms);
      }
      return this.stallState.released;
    }
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    this.stallState = { until, timer: setTimeout(() => this.releaseStall(), ms), released, release };
    return released;
  }

  /** Answers the next n requests (of one verb, if given) with a Status of that code instead of serving them. */
  failNext(n: number, status = 500, verb?: RequestVerb): void {
    this.failures.push({ remaining: n, status, verb });
  }

  /**
   * Drops every watch and connection, as a restarting apiserver does, and
   * comes back on the same port: at once (the listener stays open) or, with
   * downMs, after refusing connections for that long.
   */
  async restart(options: RestartOptions = {}): Promise<void> {
    // History goes first, so a client that reconnects at once is already refused.
    if (options.loseHistory) {
      this.rv += 1;
      this.compact();
    }
    this.cutWatches(options);
    if (options.abrupt) this.http.closeAllConnections();
    else this.http.closeIdleConnections();
    if (options.downMs && options.downMs > 0) {
      await this.closeListener();
      await new Promise((resolve) => setTimeout(resolve, options.downMs));
      await this.listen();
    }
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.http.once('error', onError);
      this.http.listen(this.port, LOOPBACK, () => {
        this.http.off('error', onError);
        this.port = (this.http.address() as AddressInfo).port;
        this.listening = true;
        resolve();
      });
    });
  }

  private closeListener(): Promise<void> {
    this.listening = false;
    return new Promise((resolve) => {
      // close() stops accepting and drops idle connections; the grace period
      // lets just-ended watch streams flush their last chunk (so a clean cut
      // stays clean) before whatever is still open is dropped.
      const dropTheRest = setTimeout(() => this.http.closeAllConnections(), CLOSE_GRACE_MS);
      this.http.close(() => {
        clearTimeout(dropTheRest);
        resolve();
      });
    });
  }

  private releaseStall(): void {
    const stall = this.stallState;
    if (!stall) return;
    this.stallState = undefined;
    clearTimeout(stall.timer);
    for (const watch of this.watches) {
      for (const line of watch.held) watch.res.write(line);
      watch.held = [];
    }
    stall.release();
  }

  private record(event: StoredEvent): void {
    this.history.push(event);
    const excess = this.history.length - Math.max(0, this.historyLimit);
    if (excess > 0) {
      const dropped = this.history.splice(0, excess);
      this.compactedRv = Math.max(this.compactedRv, dropped[dropped.length - 1].rv);
    }
    for (const watch of this.watches) {
      const out = eventFor(watch.selection, event);
      if (out) this.send(watch, out);
    }
  }

  private send(watch: OpenWatch, event: { type: string; object: unknown }): void {
    const line = `${JSON.stringify(event)}\n`;
    if (this.stallState) watch.held.push(line);
    else watch.res.write(line);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', `http://${LOOPBACK}`);
    const route = this.route(url.pathname);
    const isWatch = ['true', '1'].includes(url.searchParams.get('watch') ?? '');
    const verb: RequestVerb = !route ? 'other' : route.name !== undefined ? 'get' : isWatch ? 'watch' : 'list';
    const record: RequestRecord = {
      verb,
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search.slice(1),
      resourceVersion: url.searchParams.get('resourceVersion') ?? undefined,
      status: 0,
    };
    this.log(record);
    res.once('finish', () => (record.status = res.statusCode));
    res.once('close', () => {
      if (record.status === 0 && res.headersSent) record.status = res.statusCode;
    });
    // A stall can be extended while a request waits, hence the loop; each wait is finite.
    while (this.stallState) await this.stallState.released;
    if (res.destroyed) return; // the client gave up, or a restart dropped it, while it was held

    const failure = this.failures.find((f) => f.verb === undefined || f.verb === verb);
    if (failure) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) this.failures.splice(this.failures.indexOf(failure), 1);
      sendStatus(res, failure.status, `injected failure (${failure.status})`);
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      sendStatus(res, 401, 'Unauthorized');
      return;
    }
    if (req.method !== 'GET') {
      sendStatus(res, 405, `the stand-in API server only answers GET, not ${req.method}`);
      return;
    }
    if (['/version', '/healthz', '/livez', '/readyz'].includes(url.pathname)) {
      if (url.pathname === '/version') sendJson(res, 200, { major: '1', minor: '34', gitVersion: 'v1.34.0-stand-in' });
      else sendText(res, 200, 'ok');
      return;
    }
    if (!route) {
      sendStatus(res, 404, `the server could not find the requested resource (${url.pathname})`);
      return;
    }
    try {
      const selection: Selection = {
        resourceType: route.resourceType,
        namespace: route.namespace,
        labels: parseLabelSelector(url.searchParams.get('labelSelector') ?? ''),
        fields: parseFieldSelector(url.searchParams.get('fieldSelector') ?? ''),
      };
      if (verb === 'get') this.serveGet(res, route);
      else if (verb === 'watch') this.serveWatch(res, selection, url.pathname, record.resourceVersion);
      else this.serveList(res, selection);
    } catch (err) {
      if (!(err instanceof StatusError)) throw err;
      sendStatus(res, err.code, err.message);
    }
    // An open watch has its status as soon as its headers are out, long before it finishes.
    if (res.headersSent) record.status = res.statusCode;
  }

  private serveGet(res: http.ServerResponse, route: Route): void {
    const { resourceType, namespace, name } = route;
    const found = this.objectsOf(resourceType).get(objectKey(namespace, name ?? ''));
    if (!found) {
      const qualified = resourceType.group ? `${resourceType.plural}.${resourceType.group}` : resourceType.plural;
      sendStatus(res, 404, `${qualified} "${name}" not found`, {
        name,
        group: resourceType.group,
        kind: resourceType.plural,
      });
      return;
    }
    sendJson(res, 200, found);
  }

  private serveList(res: http.ServerResponse, selection: Selection): void {
    const { resourceType } = selection;
    sendJson(res, 200, {
      kind: `${resourceType.kind}List`,
      apiVersion: apiVersionOf(resourceType),
      metadata: { resourceVersion: String(this.rv) },
      // A real server leaves kind and apiVersion out of list items (only watch
      // events carry them); mirroring that keeps code from relying on them.
      items: this.select(selection).map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest),
    });
  }

  private serveWatch(
    res: http.ServerResponse,
    selection: Selection,
    requestPath: string,
    resourceVersion: string | undefined,
  ): void {
    const from = resourceVersion === undefined || resourceVersion === '' ? 0 : Number(resourceVersion);
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new StatusError(400, `invalid resource version "${resourceVersion}"`);
    }
    const expired = from !== 0 && from < this.compactedRv;
    if (expired && this.expiredResponse === 'http-410') {
      sendStatus(res, 410, `too old resource version: ${from} (${this.compactedRv + 1})`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    if (expired) {
      const gone = statusBody(410, `too old resource version: ${from} (${this.compactedRv + 1})`);
      res.end(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      return;
    }
    const watch: OpenWatch = { selection, path: requestPath, res, held: [] };
    // Replay and registration happen in one synchronous step, so no change can fall between them.
    if (from === 0) {
      for (const object of this.select(selection)) this.send(watch, { type: 'ADDED', object });
    } else {
      for (const event of this.history) {
        if (event.rv <= from) continue;
        const out = eventFor(selection, event);
        if (out) this.send(watch, out);
      }
    }
    this.watches.add(watch);
    res.once('close', () => this.watches.delete(watch));
  }

  private route(pathname: string): Route | undefined {
    const segments = pathname.split('/').filter((s) => s !== '');
    let group: string;
    let rest: string[];
    if (segments[0] === 'api' && segments.length >= 3) {
      group = '';
      rest = segments.slice(1);
    } else if (segments[0] === 'apis' && segments.length >= 4) {
      group = segments[1];
      rest = segments.slice(2);
    } else {
      return undefined;
    }
    const [version, ...tail] = rest.map(decodeURIComponent);
    const find = (plural: string) =>
      this.resourceTypes.find((t) => t.group === group && t.version === version && t.plural === plural);
    if (tail[0] === 'namespaces' && (tail.length === 3 || tail.length === 4)) {
      const resourceType = find(tail[2]);
      if (resourceType?.namespaced) return { resourceType, namespace: tail[1], name: tail[3] };
      return undefined;
    }
    if (tail.length === 1 || tail.length === 2) {
      const resourceType = find(tail[0]);
      if (!resourceType) return undefined;
      // A single namespaced object is only reachable under its namespace.
      if (tail.length === 2 && resourceType.namespaced) return undefined;
      return { resourceType, name: tail[1] };
    }
    return undefined;
  }

  private select(selection: Selection): KubeObject[] {
    const found = [...this.objectsOf(selection.resourceType).values()].filter((o) => matches(selection, o));
    return found.sort((a, b) =>
      objectKey(a.metadata.namespace, a.metadata.name).localeCompare(objectKey(b.metadata.namespace, b.metadata.name)),
    );
  }

  private objectsOf(resourceType: ResourceType): Map<string, KubeObject> {
    const key = `${apiVersionOf(resourceType)}/${resourceType.kind}`;
    let objects = this.store.get(key);
    if (!objects) {
      objects = new Map();
      this.store.set(key, objects);
    }
    return objects;
  }

  private typeOf(input: KubeObjectInput): ResourceType {
    if (!input.apiVersion || !input.kind) throw new Error('apply: the object needs apiVersion and kind');
    return this.typeNamed(`${input.apiVersion}/${input.kind}`);
  }

  /** 'Service', 'v1/Service' or 'discovery.k8s.io/v1/EndpointSlice'. */
  private typeNamed(kind: string): ResourceType {
    const found = kind.includes('/')
      ? this.resourceTypes.find((t) => `${apiVersionOf(t)}/${t.kind}` === kind)
      : this.resourceTypes.find((t) => t.kind === kind);
    if (!found) throw new Error(`the stand-in API server does not serve ${kind}`);
    return found;
  }

  private log(record: RequestRecord): void {
    const key = `${record.verb} ${record.path}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.requests.push(record);
    if (this.requests.length > REQUEST_LOG_LIMIT) this.requests.splice(0, this.requests.length - REQUEST_LOG_LIMIT);
  }
}

function apiVersionOf(resourceType: ResourceType): string {
  return resourceType.group ? `${resourceType.group}/${resourceType.version}` : resourceType.version;
}

function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function splitCountKey(key: string): [string, string] {
  const space = key.indexOf(' ');
  return [key.slice(0, space), key.slice(space + 1)];
}

/** Metav1 timestamps have whole seconds. */
function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Model instances (client-node's classes, Dates) become the JSON a client would have sent. */
function plain(input: KubeObjectInput): unknown {
  return JSON.parse(JSON.stringify(input));
}

function withoutServerFields(object: KubeObject): unknown {
  const { resourceVersion: _rv, uid: _uid, creationTimestamp: _created, ...metadata } = object.metadata;
  return { ...object, metadata };
}

/** JSON with sorted keys, so that key order does not make an unchanged object look changed. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * What one stored event looks like to a watch with a selection: an object
 * that starts matching arrives as ADDED, one that stops matching leaves as
 * DELETED with its previous content and the new resourceVersion (as the
 * apiserver's watch cache does).
 */
function eventFor(selection: Selection, event: StoredEvent): { type: WatchEventType; object: KubeObject } | undefined {
  if (event.resourceType !== selection.resourceType) return undefined;
  const now = matches(selection, event.object);
  if (event.type !== 'MODIFIED') return now ? { type: event.type, object: event.object } : undefined;
  const before = event.previous !== undefined && matches(selection, event.previous);
  if (now) return { type: before ? 'MODIFIED' : 'ADDED', object: event.object };
  if (!before || !event.previous) return undefined;
  const left = structuredClone(event.previous);
  left.metadata.resourceVersion = event.object.metadata.resourceVersion;
  return { type: 'DELETED', object: left };
}

function matches(selection: Selection, object: KubeObject): boolean {
  if (selection.namespace !== undefined && object.metadata.namespace !== selection.namespace) return false;
  const labels = object.metadata.labels ?? {};
  for (const { key, op, values } of selection.labels) {
    const has = Object.prototype.hasOwnProperty.call(labels, key);
    const value = labels[key];
    const ok =
      op === '='
        ? has && value === values[0]
        : op === '!='
          ? !has || value !== values[0]
          : op === 'exists'
            ? has
            : op === '!exists'
              ? !has
              : op === 'in'
                ? has && values.includes(value)
                : !has || !values.includes(value);
    if (!ok) return false;
  }
  for (const { field, op, value } of selection.fields) {
    const actual = fieldValue(object, field);
    if ((actual === value) !== (op === '=')) return false;
  }
  return true;
}

/** A dotted field path's value as a string; a missing field reads as ''. */
function fieldValue(object: KubeObject, field: string): string {
  let at: unknown = object;
  for (const part of field.split('.')) {
    if (at === null || typeof at !== 'object') return '';
    at = (at as Record<string, unknown>)[part];
  }
  return at === undefined || at === null ? '' : String(at);
}

/** Splits on the commas that separate requirements, not those inside an "in (a,b)" set. */
function splitRequirements(selector: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    if (selector[i] === '(') depth += 1;
    else if (selector[i] === ')') depth -= 1;
    else if (selector[i] === ',' && depth === 0) {
      parts.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(selector.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

const LABEL_KEY = '[A-Za-z0-9][-A-Za-z0-9_./]*';
const LABEL_VALUE = '[-A-Za-z0-9_.]*';

function parseLabelSelector(selector: string): LabelRequirement[] {
  return splitRequirements(selector).map((part) => {
    let m = new RegExp(`^(${LABEL_KEY})\\s+(in|notin)\\s*\\(([^)]*)\\)$`).exec(part);
    if (m) {
      const values = m[3].split(',').map((v) => v.trim());
      return { key: m[1], op: m[2] as 'in' | 'notin', values };
    }
    m = new RegExp(`^(${LABEL_KEY})\\s*(==|=|!=)\\s*(${LABEL_VALUE})$`).exec(part);
    if (m) return { key: m[1], op: m[2] === '!=' ? '!=' : '=', values: [m[3]] };
    m = new RegExp(`^!\\s*(${LABEL_KEY})$`).exec(part);
    if (m) return { key: m[1], op: '!exists', values: [] };
    m = new RegExp(`^(${LABEL_KEY})$`).exec(part);
    if (m) return { key: m[1], op: 'exists', values: [] };
    throw new StatusError(400, `unable to parse requirement: "${part}"`);
  });
}

function parseFieldSelector(selector: string): FieldRequirement[] {
  return splitRequirements(selector).map((part) => {
    const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw new StatusError(400, `invalid field selector: "${part}"`);
    return { field: m[1], op: m[2] === '!=' ? '!=' : '=', value: m[3] };
  });
}

const STATUS_REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

function statusBody(code: number, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: STATUS_REASONS[code] ?? 'Unknown',
    ...(details ? { details } : {}),
    code,
  };
}

function sendStatus(res: http.ServerResponse, code: number, message: string, details?: Record<string, unknown>): void {
  sendJson(res, code, statusBody(code, message, details));
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: http.ServerResponse, code: number, body: string): void {
  res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
