// The declarative services file (`tsct service apply -f FILE`), YAML or JSON: JSON is YAML, so one parser reads
// both and reports each mistake at its line. The file is the whole set: services it does not list are removed.
//
// Schema (an unknown key anywhere is an error):
//
//   services:                       the list; empty or absent: no service
//     - id: 1-65535                 required: the service id (rev_nat_index), unique
//       name: TEXT                  what the service is called (e.g. kube-system/kube-dns:dns)
//       frontend: ADDR:PORT[/PROTO] required: 10.96.0.10:53/udp, [fd00::10]:53/udp; PROTO tcp (default), udp, sctp
//       type: ClusterIP | NodePort | ExternalIP | LoadBalancer       (default ClusterIP)
//       algorithm: maglev | random  (default maglev: every node picks the same backend)
//       affinity-timeout: DURATION  ClientIP session affinity for this long: seconds (10800) or 3h, 90m, 10800s;
//                                   true: 10800 (Kubernetes' default); false, 0 or absent: no affinity; at most 24h
//       traffic-policy: cluster | local     local: only the backends marked local (on this node)
//       source-ranges: [CIDR, ...]  loadBalancerSourceRanges: the clients allowed (frontend family)
//       full-nat: BOOL              translate the client's source too (default false)
//       backends:                   the service's backends; empty or absent: none (the frontend refuses)
//         - address: ADDR[:PORT]    required; the port defaults to the frontend's; IPv6 in brackets with a port
//           state: active | terminating | quarantined | maintenance   (default active)
//           weight: 1-65535         share of a Maglev table (default 1)
//           local: BOOL             runs on this node (default false)
//           name: TEXT              the name Maglev orders and hashes by (default ADDR:PORT); the same on every node
//         - ADDR[:PORT]             a backend with every default, written as its address alone
//
// Nothing is returned unless the whole file is right: ids and frontends given twice, backends of the other family,
// a backend listed twice, or one backend address with two states are errors as well, each at its line.
import { UsageError } from '../errors';
import { readTree, Tree, TreeEntry, TreeMap } from '../policy/yamlTree';
import {
  DEFAULT_AFFINITY_TIMEOUT_S,
  DEFAULT_ALGORITHM,
  LbBackend,
  LbService,
  parseAffinityTimeout,
  parseAlgorithm,
  parseBackend,
  parseBackendState,
  parseFrontend,
  parseServiceId,
  parseServiceType,
  parseSourceRange,
  parseTrafficPolicy,
  parseWeight,
  validateServices,
} from './lbService';

export const EXAMPLE_SERVICES_YAML = `# tsct service apply -f services.yaml
services:
  - id: 1
    name: kube-system/kube-dns:dns
    frontend: 10.96.0.10:53/udp
    algorithm: maglev
    backends:
      - address: 10.0.1.5:53
      - address: 10.0.2.7:53
        state: terminating
  - id: 2
    name: default/web:http
    frontend: 192.0.2.10:80/tcp
    type: LoadBalancer
    algorithm: random
    affinity-timeout: 3h
    traffic-policy: local
    source-ranges: [198.51.100.0/24]
    backends:
      - address: 10.0.1.8:8080
        local: true
        weight: 2
      - 10.0.2.9:8080
  - id: 3
    frontend: "[fd00::10]:443/tcp"
    backends:
      - address: "[fd00::1:5]:8443"
`;

const SERVICE_KEYS = [
  'id',
  'name',
  'frontend',
  'type',
  'algorithm',
  'affinity-timeout',
  'traffic-policy',
  'source-ranges',
  'full-nat',
  'backends',
];
const BACKEND_KEYS = ['address', 'state', 'weight', 'local', 'name'];

/** A mistake already located at its line: passed through as it is by located(). */
class LocatedError extends UsageError {}

class FileContext {
  constructor(readonly file: string) {}

  at(line: number): string {
    return `${this.file}:${line}: `;
  }

  fail(line: number, message: string): never {
    throw new LocatedError(`${this.at(line)}${message}`);
  }

  /** Runs a value parser, putting FILE:LINE in front of its one-line error. */
  located<T>(line: number, parse: () => T): T {
    try {
      return parse();
    } catch (e) {
      if (e instanceof UsageError && !(e instanceof LocatedError))
        throw new LocatedError(`${this.at(line)}${e.message}`);
      throw e;
    }
  }

  map(tree: Tree, what: string, allowed: readonly string[]): Map<string, TreeEntry> {
    if (tree.kind !== 'map') this.fail(tree.line, `${what} must be a mapping of ${allowed.join(', ')}`);
    const out = new Map<string, TreeEntry>();
    for (const e of (tree as TreeMap).entries) {
      if (!allowed.includes(e.key))
        this.fail(e.line, `unknown key '${e.key}' in ${what}; the keys are ${allowed.join(', ')}`);
      out.set(e.key, e);
    }
    return out;
  }

  list(tree: Tree, what: string): Tree[] {
    if (tree.kind === 'scalar' && tree.value === null) return [];
    if (tree.kind !== 'seq') this.fail(tree.line, `${what} must be a list`);
    return tree.items;
  }

  /** A scalar as text: a string, or a number as written (so that an id of 007 is refused as written). */
  text(e: TreeEntry, what: string): string {
    const v = e.value;
    if (v.kind !== 'scalar' || v.value === null || typeof v.value === 'boolean' || typeof v.value === 'object') {
      this.fail(e.line, `${what} must be a single value`);
    }
    return typeof v.value === 'string' ? v.value : v.text;
  }

  string(e: TreeEntry, what: string): string {
    const v = e.value;
    if (v.kind !== 'scalar' || typeof v.value !== 'string') this.fail(e.line, `${what} must be text`);
    return v.value as string;
  }

  bool(e: TreeEntry, what: string): boolean {
    const v = e.value;
    if (v.kind !== 'scalar' || typeof v.value !== 'boolean') this.fail(e.line, `${what} must be true or false`);
    return v.value as boolean;
  }
}

interface Lines {
  service: number;
  fields: Map<string, number>;
  backends: number[];
}

/** The services of a services file (see the schema above); a UsageError "FILE:LINE: ..." for the first mistake. */
export function parseServicesFile(text: string, fileName: string): LbService[] {
  const ctx = new FileContext(fileName);
  const root = readTree(text, fileName);
  if (root === undefined) return [];
  const top = ctx.map(root, 'the file', ['services']);
  const servicesEntry = top.get('services');
  if (!servicesEntry) return [];
  const lines: Lines[] = [];
  const services = ctx.list(servicesEntry.value, 'services').map((item) => {
    const l: Lines = { service: item.line, fields: new Map(), backends: [] };
    lines.push(l);
    return parseService(ctx, item, l);
  });
  validateServices(services, (i, be, field) => {
    const l = lines[i];
    if (be !== undefined) return ctx.at(l.backends[be] ?? l.service);
    return ctx.at((field === undefined ? undefined : l.fields.get(field)) ?? l.service);
  });
  return services;
}

function parseService(ctx: FileContext, item: Tree, lines: Lines): LbService {
  const m = ctx.map(item, 'a service', SERVICE_KEYS);
  for (const [k, e] of m) lines.fields.set(k, e.line);
  const required = (key: string): TreeEntry => m.get(key) ?? ctx.fail(item.line, `a service needs '${key}'`);
  const idEntry = required('id');
  const id = ctx.located(idEntry.line, () => parseServiceId(ctx.text(idEntry, 'id'), 'id'));
  const feEntry = required('frontend');
  const frontend = ctx.located(feEntry.line, () => parseFrontend(ctx.string(feEntry, 'frontend'), 'frontend'));
  const opt = <T>(key: string, parse: (e: TreeEntry) => T, fallback: T): T => {
    const e = m.get(key);
    return e ? ctx.located(e.line, () => parse(e)) : fallback;
  };
  const svc: LbService = {
    id,
    frontend,
    type: opt('type', (e) => parseServiceType(ctx.string(e, 'type'), 'type'), 'ClusterIP'),
    algorithm: opt('algorithm', (e) => parseAlgorithm(ctx.string(e, 'algorithm'), 'algorithm'), DEFAULT_ALGORITHM),
    affinityTimeoutS: opt('affinity-timeout', (e) => affinityTimeout(ctx, e), 0),
    trafficPolicy: opt(
      'traffic-policy',
      (e) => parseTrafficPolicy(ctx.string(e, 'traffic-policy'), 'traffic-policy'),
      'cluster',
    ),
    sourceRanges: opt('source-ranges', (e) => sourceRanges(ctx, e), []),
    fullNat: opt('full-nat', (e) => ctx.bool(e, 'full-nat'), false),
    backends: [],
  };
  const name = m.get('name');
  if (name) svc.name = ctx.string(name, 'name');
  const backends = m.get('backends');
  if (backends) {
    svc.backends = ctx.list(backends.value, 'backends').map((b) => {
      lines.backends.push(b.line);
      return parseBackendItem(ctx, b, frontend.port);
    });
  }
  return svc;
}

function affinityTimeout(ctx: FileContext, e: TreeEntry): number {
  const v = e.value;
  if (v.kind === 'scalar' && typeof v.value === 'boolean') return v.value ? DEFAULT_AFFINITY_TIMEOUT_S : 0;
  return parseAffinityTimeout(ctx.text(e, 'affinity-timeout'), 'affinity-timeout');
}

function sourceRanges(ctx: FileContext, e: TreeEntry): string[] {
  return ctx.list(e.value, 'source-ranges').map((item) => {
    if (item.kind !== 'scalar' || typeof item.value !== 'string') ctx.fail(item.line, 'a source range must be a CIDR');
    return ctx.located(item.line, () => parseSourceRange(item.value as string, 'source-ranges'));
  });
}

function parseBackendItem(ctx: FileContext, item: Tree, defaultPort: number): LbBackend {
  if (item.kind === 'scalar' && typeof item.value === 'string') {
    const text = item.value;
    if (text.includes('=')) {
      ctx.fail(item.line, `'${text}': write a backend's state and weight as keys (address: ..., state: ...)`);
    }
    return ctx.located(item.line, () => parseBackend(text, defaultPort, 'backend'));
  }
  const m = ctx.map(item, 'a backend', BACKEND_KEYS);
  const addr = m.get('address') ?? ctx.fail(item.line, "a backend needs 'address'");
  const text = ctx.string(addr, 'address');
  if (text.includes('=')) ctx.fail(addr.line, `'${text}' is not an address; give the state as state: ...`);
  const b = ctx.located(addr.line, () => parseBackend(text, defaultPort, 'address'));
  const state = m.get('state');
  if (state) b.state = ctx.located(state.line, () => parseBackendState(ctx.string(state, 'state'), 'state'));
  const weight = m.get('weight');
  if (weight) b.weight = ctx.located(weight.line, () => parseWeight('weight', ctx.text(weight, 'weight')));
  const local = m.get('local');
  if (local) b.local = ctx.bool(local, 'local');
  const name = m.get('name');
  if (name) b.name = ctx.string(name, 'name');
  return b;
}
