// The service load balancer's model: a service is one frontend (VIP, port, protocol) with its id (the datapath's
// rev_nat_index) and its backends. The parsers here read the CLI's flags and the services file's values; each
// refuses bad input with one line that says what is wrong and what to write instead. Which backends take new
// connections (tableBackends) follows kube-proxy (KEP-1669), so that a node running tsct picks from the same set
// as a node running kube-proxy or Cilium.
import { isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../errors';
import { formatAddr, parseAddr } from '../net/addr';
import { parseCidr } from '../policy/cidr';
import { ValueError } from '../policy/valueError';

export type LbProto = 'tcp' | 'udp' | 'sctp';
export type LbBackendState = 'active' | 'terminating' | 'quarantined' | 'maintenance';
export type LbServiceType = 'ClusterIP' | 'NodePort' | 'ExternalIP' | 'LoadBalancer';
export type LbAlgorithm = 'maglev' | 'random';
export type LbTrafficPolicy = 'cluster' | 'local';

export interface LbFrontend {
  /** Canonical text (formatAddr of parseAddr): one spelling per address, so that equal frontends compare equal. */
  addr: string;
  port: number;
  proto: LbProto;
}

export interface LbBackend {
  addr: string;
  port: number;
  state: LbBackendState;
  /** 1..65535: the backend's share of a Maglev table relative to the others'. */
  weight: number;
  /** Runs on this node: the only kind a service with traffic policy local sends to. */
  local: boolean;
  /** What Maglev sorts and hashes by; it must be the same on every node (see backendName). */
  name?: string;
}

export interface LbService {
  /** 1..65535: the datapath's rev_nat_index, naming the service's reverse translation and counters. */
  id: number;
  name?: string;
  frontend: LbFrontend;
  type: LbServiceType;
  algorithm: LbAlgorithm;
  /** Seconds a client keeps its backend (sessionAffinity ClientIP); 0: no affinity. */
  affinityTimeoutS: number;
  trafficPolicy: LbTrafficPolicy;
  /** loadBalancerSourceRanges: the CIDRs allowed to reach the frontend; empty: everyone. */
  sourceRanges: string[];
  /** Translate the client's source too, so that replies come back through this node. */
  fullNat: boolean;
  backends: LbBackend[];
}

export const LB_PROTO_NUMBERS: Readonly<Record<LbProto, number>> = Object.freeze({ tcp: 6, udp: 17, sctp: 132 });
export const LB_BACKEND_STATES: readonly LbBackendState[] = ['active', 'terminating', 'quarantined', 'maintenance'];
export const LB_SERVICE_TYPES: readonly LbServiceType[] = ['ClusterIP', 'NodePort', 'ExternalIP', 'LoadBalancer'];
export const LB_ALGORITHMS: readonly LbAlgorithm[] = ['maglev', 'random'];
export const LB_TRAFFIC_POLICIES: readonly LbTrafficPolicy[] = ['cluster', 'local'];

export const MAX_SERVICE_ID = 0xffff;
export const MAX_BACKEND_WEIGHT = 0xffff;
/** Kubernetes' sessionAffinityConfig.clientIP.timeoutSeconds: the default and the most the API server accepts. */
export const DEFAULT_AFFINITY_TIMEOUT_S = 10800;
export const MAX_AFFINITY_TIMEOUT_S = 86400;
/**
 * Maglev unless a service asks for random: the same backend for the same
 * connection on every node (Cilium's --bpf-lb-algorithm defaults to random).
 */
export const DEFAULT_ALGORITHM: LbAlgorithm = 'maglev';

/** What a service is when nothing else is said of it: a plain ClusterIP, Maglev, no affinity, no ranges. */
export const LB_SERVICE_DEFAULTS = {
  type: 'ClusterIP',
  algorithm: DEFAULT_ALGORITHM,
  affinityTimeoutS: 0,
  trafficPolicy: 'cluster',
  sourceRanges: [] as string[],
  fullNat: false,
} as const satisfies Partial<LbService>;

export function protoName(proto: number): LbProto | undefined {
  return (Object.keys(LB_PROTO_NUMBERS) as LbProto[]).find((p) => LB_PROTO_NUMBERS[p] === proto);
}

// An IPv6 address has a colon and an IPv4 address none: a character test instead of node:net's isIPv4 and isIPv6
// (regular expressions), which a sync of a hundred thousand backends called several times per backend per apply.
// Only text that is no address at all is told apart differently, and none reaches these: addresses are parsed first.

export function familyOfAddr(addr: string): 4 | 6 {
  return addr.includes(':') ? 6 : 4;
}

/** ADDR:PORT with IPv6 in brackets, as every listing and the default backend name write it. */
export function hostPort(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** The Maglev name of a backend: its own name, else ADDR:PORT, which is the same on every node. */
export function backendName(b: LbBackend): string {
  return b.name ?? hostPort(b.addr, b.port);
}

/** One key per backend entry of the datapath (address, port, and so family), shared by the services using it. */
export function backendKey(b: Pick<LbBackend, 'addr' | 'port'>): string {
  return hostPort(b.addr, b.port);
}

export function frontendText(f: LbFrontend): string {
  return `${hostPort(f.addr, f.port)}/${f.proto.toUpperCase()}`;
}

/**
 * The backends a service's table holds, kube-proxy's choice (KEP-1669, pkg/proxy/topology.go): the active ones
 * (only the local ones with traffic policy local); when none qualifies, the terminating ones of that same set, so
 * that a service whose pods are all shutting down still answers; quarantined and maintenance backends never.
 */
export function tableBackends(svc: LbService): LbBackend[] {
  const eligible = svc.trafficPolicy === 'local' ? svc.backends.filter((b) => b.local) : svc.backends;
  const active = eligible.filter((b) => b.state === 'active');
  return active.length > 0 ? active : eligible.filter((b) => b.state === 'terminating');
}

const FRONTEND_FORMAT = 'write ADDR:PORT[/PROTO], e.g. 10.96.0.10:53/udp or [fd00::10]:53/udp';

/** Dotted-quad IPv4 without leading zeros: canonical as it is (the common case, told without parsing). */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function isCanonicalIPv4(text: string): boolean {
  return CANONICAL_V4.test(text);
}

/** A canonical address, or a UsageError naming `what`. */
export function canonicalAddr(what: string, text: string): string {
  if (CANONICAL_V4.test(text)) return text;
  if (text.includes('%') || (!isIPv4(text) && !isIPv6(text))) {
    throw new UsageError(`${what}: '${text}' is not an IPv4 or IPv6 address; write e.g. 10.0.1.5 or fd00::5`);
  }
  return formatAddr(parseAddr(text));
}

function parsePort(what: string, text: string, whole: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 0xffff)) throw new UsageError(`${what}: '${whole}' has port '${text}'; a port is 1 to 65535`);
  return n;
}

function parseProto(what: string, text: string, whole: string): LbProto {
  const p = text.toLowerCase();
  if (p in LB_PROTO_NUMBERS) return p as LbProto;
  throw new UsageError(`${what}: '${whole}' has protocol '${text}'; use tcp, udp or sctp`);
}

/** Splits ADDR:PORT or [ADDR]:PORT (the port optional with `portOptional`). */
function splitHostPort(
  what: string,
  text: string,
  portOptional: boolean,
  format: string,
): { addr: string; port?: string } {
  if (text.includes('%')) {
    throw new UsageError(`${what}: '${text}' has a zone (%...); a service address has none, leave it out`);
  }
  const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (v6) {
    if (!isIPv6(v6[1])) throw new UsageError(`${what}: '${v6[1]}' in '${text}' is not an IPv6 address; ${format}`);
    if (v6[2] === undefined && !portOptional) throw new UsageError(`${what}: '${text}' needs a port; ${format}`);
    return { addr: v6[1], port: v6[2] };
  }
  if (isIPv6(text)) {
    if (portOptional) return { addr: text };
    throw new UsageError(
      `${what}: '${text}' needs a port, and an IPv6 address with a port goes in brackets; ${format}`,
    );
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) {
    if (portOptional) return { addr: text };
    throw new UsageError(`${what}: '${text}' needs a port; ${format}`);
  }
  const addr = text.slice(0, colon);
  if (addr.includes(':')) throw new UsageError(`${what}: '${text}': write an IPv6 address in brackets; ${format}`);
  return { addr, port: text.slice(colon + 1) };
}

/** `10.96.0.10:53/udp`, `[fd00::10]:53/udp` or `10.96.0.10:80` (tcp). The protocol may be written in capitals. */
export function parseFrontend(text: string, what = '--frontend'): LbFrontend {
  const slash = text.lastIndexOf('/');
  const hp = slash < 0 ? text : text.slice(0, slash);
  const proto = slash < 0 ? 'tcp' : parseProto(what, text.slice(slash + 1), text);
  const { addr, port } = splitHostPort(what, hp, false, FRONTEND_FORMAT);
  return { addr: canonicalAddr(what, addr), port: parsePort(what, port!, text), proto };
}

const BACKEND_FORMAT =
  'write ADDR[:PORT][=ATTR+ATTR...] with ATTR a state (active, terminating, quarantined, maintenance), local or weight:N, ' +
  'e.g. 10.0.1.5:53=terminating or [fd00::5]:53=local+weight:2';

/** `10.0.1.5:53=terminating+local+weight:2`: one backend of the CLI's list; the port defaults to `defaultPort`. */
export function parseBackend(text: string, defaultPort: number, what = '--backends'): LbBackend {
  const eq = text.indexOf('=');
  const hp = eq < 0 ? text : text.slice(0, eq);
  if (hp === '') throw new UsageError(`${what}: '${text}' has no address; ${BACKEND_FORMAT}`);
  if (hp.includes('/')) {
    throw new UsageError(
      `${what}: '${text}': a backend takes its frontend's protocol; leave out '/${hp.split('/')[1]}'`,
    );
  }
  const { addr, port } = splitHostPort(what, hp, true, BACKEND_FORMAT);
  const b: LbBackend = {
    addr: canonicalAddr(what, addr),
    port: port === undefined ? defaultPort : parsePort(what, port, text),
    state: 'active',
    weight: 1,
    local: false,
  };
  if (eq < 0) return b;
  const seen = new Set<string>();
  for (const attr of text.slice(eq + 1).split('+')) {
    const kind = attr.startsWith('weight:')
      ? 'weight'
      : LB_BACKEND_STATES.includes(attr as LbBackendState)
        ? 'state'
        : attr;
    if (seen.has(kind)) throw new UsageError(`${what}: '${text}' gives ${kind} twice; give it once`);
    seen.add(kind);
    if (kind === 'state') b.state = attr as LbBackendState;
    else if (kind === 'local') b.local = true;
    else if (kind === 'weight') b.weight = parseWeight(what, attr.slice('weight:'.length));
    else throw new UsageError(`${what}: '${attr}' in '${text}' is not a backend attribute; ${BACKEND_FORMAT}`);
  }
  return b;
}

/** `10.0.1.5:53,10.0.2.7:53=terminating`: a backend's port defaults to the frontend's. An empty list is no backend. */
export function parseBackendList(text: string, frontend: LbFrontend, what = '--backends'): LbBackend[] {
  if (text.trim() === '') return [];
  return text.split(',').map((item) => parseBackend(item.trim(), frontend.port, what));
}

export function parseWeight(what: string, text: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_BACKEND_WEIGHT)) {
    throw new UsageError(
      `${what}: '${text}' is not a weight; a weight is 1 to ${MAX_BACKEND_WEIGHT} (leave out a backend of weight 0)`,
    );
  }
  return n;
}

export function parseServiceId(text: string, what = '--id'): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_SERVICE_ID)) {
    throw new UsageError(`${what}: '${text}' is not a service id; an id is 1 to ${MAX_SERVICE_ID}`);
  }
  return n;
}

// Seconds per unit, in the order a duration writes them: 1h30m.
const DURATION_UNITS = [3600, 60, 1];

/**
 * A ClientIP affinity timeout in seconds: `10800`, `10800s`, `3h`, `1h30m`; undefined or '' (the flag without a
 * value) is Kubernetes' default, 10800; 0 is no affinity. Above 86400 is refused, as the API server refuses it.
 */
export function parseAffinityTimeout(text: string | undefined, what = '--affinity-timeout'): number {
  if (text === undefined || text === '') return DEFAULT_AFFINITY_TIMEOUT_S;
  const t = text.trim();
  let seconds: number;
  if (/^[0-9]+$/.test(t)) {
    seconds = Number(t);
  } else {
    const m = /^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/.exec(t);
    if (!m || t === '') {
      throw new UsageError(`${what}: '${text}' is not a duration; write seconds (10800) or e.g. 3h, 90m, 10800s`);
    }
    seconds = [m[1], m[2], m[3]].reduce((sum, v, i) => sum + (v === undefined ? 0 : Number(v) * DURATION_UNITS[i]), 0);
  }
  if (seconds > MAX_AFFINITY_TIMEOUT_S) {
    throw new UsageError(
      `${what}: '${text}' is ${seconds}s; Kubernetes allows at most ${MAX_AFFINITY_TIMEOUT_S}s (24h), so tsct does too`,
    );
  }
  return seconds;
}

function oneOf<T extends string>(
  what: string,
  text: string,
  allowed: readonly T[],
  aliases: Record<string, T> = {},
): T {
  const hit = allowed.find((a) => a.toLowerCase() === text.toLowerCase()) ?? aliases[text.toLowerCase()];
  if (hit === undefined) throw new UsageError(`${what}: '${text}' is not one of ${allowed.join(', ')}`);
  return hit;
}

export function parseServiceType(text: string, what = '--type'): LbServiceType {
  // Cilium prints ExternalIPs; either spelling is taken.
  return oneOf(what, text, LB_SERVICE_TYPES, { externalips: 'ExternalIP' });
}

export function parseAlgorithm(text: string, what = '--algorithm'): LbAlgorithm {
  return oneOf(what, text, LB_ALGORITHMS);
}

export function parseTrafficPolicy(text: string, what = '--traffic-policy'): LbTrafficPolicy {
  return oneOf(what, text, LB_TRAFFIC_POLICIES);
}

export function parseBackendState(text: string, what = 'state'): LbBackendState {
  return oneOf(what, text, LB_BACKEND_STATES);
}

/** One CIDR of loadBalancerSourceRanges, canonical (host bits refused: a range that says what it allows). */
export function parseSourceRange(text: string, what = '--source-ranges'): string {
  try {
    const c = parseCidr(text.trim(), 'refuse');
    return `${c.addr}/${c.prefix}`;
  } catch (e) {
    if (e instanceof ValueError) throw new UsageError(`${what}: ${e.message}`);
    throw e;
  }
}

export function parseSourceRanges(text: string, what = '--source-ranges'): string[] {
  if (text.trim() === '') return [];
  return text.split(',').map((s) => parseSourceRange(s, what));
}

/** Where a mistake is, for messages: '' for the CLI, 'FILE:LINE: ' for the services file. */
export type Locate = (service: number, backend?: number, field?: string) => string;

/**
 * Refuses a set of services the datapath cannot hold as given: an id out of range or given twice, a frontend given
 * twice, a backend of the other family, a backend listed twice or two backends of one Maglev name in a service, a
 * weight or timeout out of range, a source range of the other family, and one backend address with two states
 * (the datapath keeps one entry, and so one state, per backend address).
 */
export function validateServices(list: readonly LbService[], locate: Locate = () => ''): void {
  if (list.length > MAX_SERVICE_ID) {
    throw new UsageError(`${list.length} services: at most ${MAX_SERVICE_ID} fit (service ids are 16 bits)`);
  }
  const ids = new Map<number, number>();
  const frontends = new Map<string, number>();
  const states = new Map<string, { state: LbBackendState; svc: number; be: number }>();
  list.forEach((svc, i) => {
    const at = (field?: string, be?: number) => locate(i, be, field);
    if (!Number.isInteger(svc.id) || svc.id < 1 || svc.id > MAX_SERVICE_ID) {
      throw new UsageError(`${at('id')}service id ${svc.id} is not 1 to ${MAX_SERVICE_ID}`);
    }
    const dupId = ids.get(svc.id);
    if (dupId !== undefined) {
      throw new UsageError(
        `${at('id')}service id ${svc.id} is given twice (${frontendText(list[dupId].frontend)} and ` +
          `${frontendText(svc.frontend)}); give each frontend its own id`,
      );
    }
    ids.set(svc.id, i);
    const fe = frontendText(svc.frontend);
    const dupFe = frontends.get(fe);
    if (dupFe !== undefined) {
      throw new UsageError(
        `${at('frontend')}frontend ${fe} is service ${list[dupFe].id}'s already; one frontend is one service`,
      );
    }
    frontends.set(fe, i);
    if (!Number.isInteger(svc.affinityTimeoutS) || svc.affinityTimeoutS < 0) {
      throw new UsageError(`${at('affinity-timeout')}affinity timeout ${svc.affinityTimeoutS} is not whole seconds`);
    }
    if (svc.affinityTimeoutS > MAX_AFFINITY_TIMEOUT_S) {
      throw new UsageError(
        `${at('affinity-timeout')}affinity timeout ${svc.affinityTimeoutS}s is above ${MAX_AFFINITY_TIMEOUT_S}s (24h)`,
      );
    }
    const family = familyOfAddr(svc.frontend.addr);
    for (const r of svc.sourceRanges) {
      if (familyOfAddr(r.split('/')[0]) !== family) {
        throw new UsageError(
          `${at('source-ranges')}source range ${r} is IPv${family === 4 ? 6 : 4} but frontend ${fe} is IPv${family}; ` +
            'give ranges of the frontend family',
        );
      }
    }
    const seen = new Map<string, number>();
    const names = new Map<string, number>();
    svc.backends.forEach((b, j) => {
      const where = at(undefined, j);
      const addr = hostPort(b.addr, b.port);
      if (familyOfAddr(b.addr) !== family) {
        throw new UsageError(
          `${where}backend ${addr} is IPv${family === 4 ? 6 : 4} but frontend ${fe} is IPv${family}; ` +
            'a service balances within one family',
        );
      }
      if (seen.has(addr)) throw new UsageError(`${where}backend ${addr} is listed twice in service ${svc.id}`);
      seen.set(addr, j);
      const name = backendName(b);
      if (names.has(name)) {
        throw new UsageError(
          `${where}two backends of service ${svc.id} are named '${name}'; Maglev needs unique names`,
        );
      }
      names.set(name, j);
      if (!Number.isInteger(b.weight) || b.weight < 1 || b.weight > MAX_BACKEND_WEIGHT) {
        throw new UsageError(`${where}backend ${addr} has weight ${b.weight}; a weight is 1 to ${MAX_BACKEND_WEIGHT}`);
      }
      const other = states.get(addr);
      if (other && other.state !== b.state) {
        throw new UsageError(
          `${where}backend ${addr} is ${b.state} here but ${other.state} in service ${list[other.svc].id}; ` +
            'a backend address has one state',
        );
      }
      if (!other) states.set(addr, { state: b.state, svc: i, be: j });
    });
  });
}
