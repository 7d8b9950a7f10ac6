// The agent's settings: each has a flag (Cilium's name where Cilium has one),
// an environment variable (TSCT_ and the flag's name in capitals) and a key
// in the config file (the flag's name). A flag beats the environment, which
// beats the file, which beats the default. Every bad value is a UsageError
// with one line that says what was wrong and what to do.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { CtTimeouts, DEFAULT_CONFIG, DEFAULT_NAT_PORTS, DEFAULT_TIMEOUTS } from '../datapath/config';
import { DEFAULT_SIZES } from '../datapath/tables';
import { DEFAULT_MAGLEV_HASH_SEED, MaglevHashSeed, parseMaglevHashSeed, parseMaglevTableSize } from '../lb/maglev';
import { STRUCTS } from '../bpf/layouts';
import { formatAddr, parseAddr } from '../net/addr';
import { UsageError } from '../errors';

export { UsageError };

/** Cilium's bounds for table sizes (LimitTableMin, LimitTableMax) and its dynamic-sizing floors. */
export const TABLE_MIN = 1 << 10;
export const TABLE_MAX = 1 << 24;
export const AUTO_TCP_MIN = 1 << 18;
export const AUTO_ANY_MIN = 1 << 17;

export interface DeviceSpec {
  name: string;
  zone: number;
}

export interface AgentOptions {
  devices: DeviceSpec[];
  /** Devices that masquerade (a subset of devices). */
  masqueradeDevices: string[];
  /** Sources to masquerade; empty: every source but the device's own address. */
  masqueradeCidrs: string[];
  /** Addresses to translate to, instead of each device's primary address. */
  snatIps: string[];
  natPortMin: number;
  natPortMax: number;
  natRangeStrict: boolean;
  natMax: number;
  bpfRoot: string;
  ctTcpMax: number;
  ctAnyMax: number;
  /** Why the sizes are what they are, for the log. */
  sizeReason: string;
  timeouts: CtTimeouts;
  tcpLoose: boolean;
  dropInvalid: boolean;
  /** A full table passes new connections untracked instead of dropping them. */
  ctFullPass: boolean;
  /** Seconds; 0 = adaptive. */
  gcInterval: number;
  gcMaxInterval: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** host:port for /metrics, /healthz, /readyz; '' serves nothing. */
  prometheusServeAddr: string;
  events: 'none' | 'new-destroy' | 'all';
  eventsRingSize: number;
  fastPath: boolean;
  fastPathNew: boolean;
  xdpFastPath: boolean;
  /** The service load balancer: new connections look their destination up among the services. */
  lb: boolean;
  /** --bpf-lb-map-max: services per family, backends, members. */
  lbMapMax: number;
  lbAffinityMapMax: number;
  /** --bpf-lb-maglev-map-max: slots of all backend tables together. */
  lbMaglevSlots: number;
  /** --bpf-lb-maglev-table-size: one M for every service; undefined: per service, from its backend count. */
  maglevTableSize?: number;
  maglevHashSeed: MaglevHashSeed;
  /** --services-file: the services to program (watched; reloaded on change). */
  servicesFile?: string;
  /** --policy-file: the firewall's rule set (watched; swapped in on change). */
  policyFile?: string;
  /** Kubernetes Services, as kube-proxy: on with --k8s-kubeconfig-path, or in a pod (KUBERNETES_SERVICE_HOST). */
  k8s?: K8sOptions;
}

export interface K8sOptions {
  /** --k8s-kubeconfig-path; undefined: the in-cluster configuration. */
  kubeconfigPath?: string;
  /** --k8s-node-name, else $NODE_NAME, else the host name: this node in the API (local endpoints, NodePorts). */
  nodeName: string;
  /** --nodeport-addresses: CIDRs of the node addresses that serve NodePorts; empty: all of them. */
  nodePortAddresses: string[];
  /** --k8s-service-proxy-name: '' serves the services without service.kubernetes.io/service-proxy-name. */
  serviceProxyName: string;
}

export interface FlagSpec {
  flag: string;
  help: string;
  default?: string;
}

const d = (s: number) => `${s}s`;

export const AGENT_FLAGS: FlagSpec[] = [
  { flag: 'devices', help: 'devices to attach to, each with an optional zone: eth0,eth1:2 (zone 0 by default)' },
  { flag: 'bpf-root', help: 'folder on bpffs where maps are pinned', default: '/sys/fs/bpf/tsct' },
  { flag: 'bpf-ct-global-tcp-max', help: `TCP connection table size (${TABLE_MIN} to ${TABLE_MAX})` },
  { flag: 'bpf-ct-global-any-max', help: `non-TCP connection table size (${TABLE_MIN} to ${TABLE_MAX})` },
  {
    flag: 'bpf-nat-global-max',
    help: 'NAT table size; by default two thirds of the two connection tables together, as Cilium',
  },
  {
    flag: 'bpf-map-dynamic-size-ratio',
    help: 'size tables from this share of total memory (0 < ratio <= 1), as Cilium does',
    default: '0.0025',
  },
  { flag: 'bpf-ct-timeout-regular-tcp', help: 'TCP ESTABLISHED timeout', default: d(DEFAULT_TIMEOUTS.tcpEstablished) },
  {
    flag: 'bpf-ct-timeout-regular-tcp-syn',
    help: 'TCP SYN_SENT and SYN_RECV timeout',
    default: d(DEFAULT_TIMEOUTS.tcpSynSent),
  },
  { flag: 'bpf-ct-timeout-regular-tcp-fin', help: 'TCP FIN_WAIT timeout', default: d(DEFAULT_TIMEOUTS.tcpFinWait) },
  {
    flag: 'bpf-ct-timeout-regular-tcp-close-wait',
    help: 'TCP CLOSE_WAIT timeout',
    default: d(DEFAULT_TIMEOUTS.tcpCloseWait),
  },
  {
    flag: 'bpf-ct-timeout-regular-tcp-last-ack',
    help: 'TCP LAST_ACK timeout',
    default: d(DEFAULT_TIMEOUTS.tcpLastAck),
  },
  {
    flag: 'bpf-ct-timeout-regular-tcp-time-wait',
    help: 'TCP TIME_WAIT timeout',
    default: d(DEFAULT_TIMEOUTS.tcpTimeWait),
  },
  {
    flag: 'bpf-ct-timeout-regular-tcp-close',
    help: 'TCP CLOSE (after RST) timeout',
    default: d(DEFAULT_TIMEOUTS.tcpClose),
  },
  { flag: 'bpf-ct-timeout-regular-any', help: 'UDP and other non-TCP timeout', default: d(DEFAULT_TIMEOUTS.any) },
  { flag: 'bpf-ct-timeout-regular-icmp', help: 'ICMP and ICMPv6 timeout', default: d(DEFAULT_TIMEOUTS.icmp) },
  {
    flag: 'bpf-ct-tcp-loose',
    help: 'adopt TCP connections first seen mid-stream (true or false)',
    default: String(DEFAULT_CONFIG.tcpLoose),
  },
  {
    flag: 'bpf-fast-path',
    help:
      'forward established connections from tc ingress past the stack (and its netfilter hooks); ' +
      'false for the stack path (true or false)',
    default: String(DEFAULT_CONFIG.fastPath),
  },
  {
    flag: 'bpf-fast-path-new',
    help:
      "forward new connections' packets from tc ingress too, as the XDP path does (true or false): faster connection setup, " +
      "but new connections then bypass the stack's netfilter FORWARD rules as established ones do",
    default: String(DEFAULT_CONFIG.fastPathNew),
  },
  {
    flag: 'bpf-xdp-fast-path',
    help:
      'also forward between managed devices from XDP, before the kernel builds an skb (true or false). Every managed device must then take ' +
      'redirected XDP frames: a NIC whose driver implements XDP redirect, or a veth whose peer has GRO on or an XDP program',
    default: 'false',
  },
  {
    flag: 'bpf-ct-drop-invalid',
    help: 'drop packets whose ct_state is inv (true or false)',
    default: String(DEFAULT_CONFIG.dropInvalid),
  },
  {
    flag: 'bpf-ct-full-pass-untracked',
    help:
      'when a connection table is full and nothing in it can be evicted, pass new connections untracked ' +
      '(true) instead of dropping them as nf_conntrack and Cilium do (false)',
    default: String(DEFAULT_CONFIG.ctFullPass),
  },
  {
    flag: 'bpf-lb',
    help: 'the service load balancer: new connections look their destination up among the services (true or false)',
    default: String(DEFAULT_CONFIG.lb),
  },
  {
    flag: 'bpf-lb-map-max',
    help: `size of the load balancer's service, backend and member maps (${TABLE_MIN} to ${TABLE_MAX})`,
    default: String(DEFAULT_SIZES.lb),
  },
  {
    flag: 'bpf-lb-affinity-map-max',
    help: 'size of the session affinity map',
    default: String(DEFAULT_SIZES.lbAffinity),
  },
  {
    flag: 'bpf-lb-maglev-map-max',
    help: "slots of all services' backend tables together (Maglev's M per service, or its backend count)",
    default: String(DEFAULT_SIZES.lbMaglevSlots),
  },
  {
    flag: 'bpf-lb-maglev-table-size',
    help:
      "one Maglev table size M for every service, one of Cilium's primes (251 ... 131071); " +
      'by default each service gets the smallest allowed prime of at least 100 x its backends',
  },
  {
    flag: 'bpf-lb-maglev-hash-seed',
    help: 'seed of the Maglev hashes, base64 of 12 bytes; every node must use the same one',
    default: DEFAULT_MAGLEV_HASH_SEED,
  },
  { flag: 'services-file', help: 'YAML or JSON file of services to program; watched, and reloaded when it changes' },
  {
    flag: 'policy-file',
    help:
      "the firewall's rules file (YAML or JSON, as tsct policy apply takes); watched, and swapped in atomically " +
      'when it changes; without it, the rules last applied to the bpf-root stay in force',
  },
  {
    flag: 'k8s-kubeconfig-path',
    help:
      'program Kubernetes Services and EndpointSlices as kube-proxy does, from the API server this kubeconfig names; ' +
      'in a pod (KUBERNETES_SERVICE_HOST set) the in-cluster configuration is used without it',
  },
  {
    flag: 'k8s-node-name',
    help: "this node's name in Kubernetes (its local endpoints and NodePort addresses); by default $NODE_NAME, else the host name",
  },
  {
    flag: 'nodeport-addresses',
    help: "CIDRs of the node's addresses that serve NodePorts; by default every InternalIP and ExternalIP of its Node",
  },
  {
    flag: 'k8s-service-proxy-name',
    help:
      'serve only the Services whose service.kubernetes.io/service-proxy-name label is this; ' +
      'by default only those without the label (a Service whose label names another proxy is never served)',
  },
  { flag: 'masquerade-devices', help: 'devices whose outgoing traffic is masqueraded (among --devices)' },
  {
    flag: 'masquerade-cidrs',
    help: "sources to masquerade, as CIDRs; by default every source but the device's own address",
  },
  {
    flag: 'snat-ip',
    help: "address(es) to masquerade to, at most one IPv4 and one IPv6; by default each device's primary address",
  },
  {
    flag: 'nat-port-range',
    help: 'ports for masquerading, low-high; given, it is used even when the original port is free',
    default: `${DEFAULT_NAT_PORTS.min}-${DEFAULT_NAT_PORTS.max}`,
  },
  { flag: 'conntrack-gc-interval', help: 'fixed GC interval; 0s for adaptive', default: '0s' },
  { flag: 'conntrack-gc-max-interval', help: 'upper bound of the adaptive GC interval', default: '12h' },
  {
    flag: 'conntrack-events',
    help: "connection events for 'tsct bpf ct events': new,destroy; new,destroy,update; or none",
    default: 'new,destroy',
  },
  {
    flag: 'bpf-events-ring-size',
    help: 'bytes of the event ring buffer, a power of 2 from 4096; when full, events are lost (and counted), never packets',
    default: String(DEFAULT_SIZES.events),
  },
  { flag: 'log-level', help: 'debug, info, warn or error', default: 'info' },
  {
    flag: 'prometheus-serve-addr',
    help: "where to serve /metrics, /healthz and /readyz (host:port; ':9962' for every address; 'off' for nowhere)",
    default: '127.0.0.1:9962',
  },
];

/** '127.0.0.1:9962', '[::1]:9962', ':9962' (every address: an explicit choice). */
export function parseServeAddr(text: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d+)$/.exec(text.trim());
  if (!m || Number(m[3]) > 65535)
    throw new UsageError(
      `--prometheus-serve-addr: '${text}' is not host:port, e.g. 127.0.0.1:9962 or :9962 for every address`,
    );
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port: Number(m[3]) };
}

export function envName(flag: string): string {
  return `TSCT_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** '90s', '5m', '6h0m0s', '1h30m', '2s' -> seconds. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?$/.exec(text.trim());
  if (!m || text.trim() === '' || (!m[1] && !m[2] && !m[3])) {
    throw new UsageError(`--${flag}: '${text}' is not a duration; write it like 30s, 5m or 6h`);
  }
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

export function parseSize(flag: string, text: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t))
    throw new UsageError(
      `--${flag}: '${text}' is not a whole number; give a table size from ${TABLE_MIN} to ${TABLE_MAX}`,
    );
  const n = Number(t);
  if (n < TABLE_MIN || n > TABLE_MAX)
    throw new UsageError(`--${flag}: ${n} is out of range; give a table size from ${TABLE_MIN} to ${TABLE_MAX}`);
  return n;
}

function parseRatio(flag: string, text: string): number {
  const n = Number(text);
  if (!/^\d*\.?\d+$/.test(text.trim()) || !(n > 0 && n <= 1))
    throw new UsageError(`--${flag}: '${text}' is not a ratio; give a number above 0 and at most 1, e.g. 0.0025`);
  return n;
}

function parseBool(flag: string, text: string): boolean {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  throw new UsageError(`--${flag}: '${text}' is not true or false`);
}

export function parseDevices(flag: string, text: string): DeviceSpec[] {
  const out: DeviceSpec[] = [];
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9_.@-]{1,15})(?::(\d+))?$/.exec(part);
    if (!m) throw new UsageError(`--${flag}: '${part}' is not a device name, or name:zone with a zone from 0 to 65535`);
    const zone = Number(m[2] ?? 0);
    if (zone > 65535) throw new UsageError(`--${flag}: zone ${zone} of ${m[1]} is above 65535`);
    if (out.some((x) => x.name === m[1])) throw new UsageError(`--${flag}: ${m[1]} is listed twice`);
    out.push({ name: m[1], zone });
  }
  if (!out.length) throw new UsageError(`--${flag}: no device given; name at least one, e.g. --devices eth0`);
  return out;
}

/** Where options come from besides the flags: passed in, so that parsing is testable without a host. */
export interface OptionSources {
  env?: NodeJS.ProcessEnv;
  /** Reads the --config file (fs.readFileSync by default). */
  readFile?: (path: string) => string;
  /** Bytes of memory, for --bpf-map-dynamic-size-ratio (os.totalmem() by default). */
  totalMem?: number;
}

function readConfigFile(file: string, read: (path: string) => string): Record<string, string> {
  let raw: string;
  try {
    raw = read(file);
  } catch (e) {
    throw new UsageError(`--config: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new UsageError(`--config: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new UsageError(`--config: ${file} must hold one JSON object of flag names and values`);
  const known = new Set(AGENT_FLAGS.map((f) => f.flag));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (!known.has(k))
      throw new UsageError(
        `--config: ${file} has an unknown setting '${k}'; settings are the agent's flag names, e.g. "bpf-ct-global-tcp-max"`,
      );
    out[k] = Array.isArray(v) ? v.join(',') : String(v);
  }
  return out;
}

function parseEvents(text: string): AgentOptions['events'] {
  const kinds = new Set(
    text
      .split(',')
      .map((x) => x.trim().toLowerCase())
      .filter(Boolean),
  );
  if (kinds.size === 1 && kinds.has('none')) return 'none';
  const known = ['new', 'destroy', 'update'];
  const bad = [...kinds].find((k) => !known.includes(k));
  if (bad || !kinds.has('new') || !kinds.has('destroy')) {
    throw new UsageError(`--conntrack-events: '${text}' is not one of new,destroy; new,destroy,update; none`);
  }
  return kinds.has('update') ? 'all' : 'new-destroy';
}

function parseRingSize(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 4096 || n > 1 << 30 || (n & (n - 1)) !== 0) {
    throw new UsageError(`--bpf-events-ring-size: '${text}' is not a power of 2 from 4096 to 1073741824 (bytes)`);
  }
  return n;
}

function servePromAddr(text: string): string {
  if (text === 'off' || text === '') return '';
  parseServeAddr(text);
  return text;
}

function parseCidr(flag: string, text: string): string {
  const [addr, len, extra] = text.split('/');
  let bytes: Buffer;
  try {
    bytes = parseAddr(addr);
  } catch {
    throw new UsageError(`--${flag}: '${text}' is not a CIDR such as 10.0.0.0/8 or fd00::/64`);
  }
  const max = bytes.length * 8;
  const n = len === undefined ? max : Number(len);
  if (extra !== undefined || !Number.isInteger(n) || n < 0 || n > max || (len !== undefined && !/^\d+$/.test(len))) {
    throw new UsageError(`--${flag}: '${text}' is not a CIDR such as 10.0.0.0/8 or fd00::/64`);
  }
  return `${formatAddr(bytes)}/${n}`;
}

function natRangeGiven(
  flags: Record<string, string | undefined>,
  env: NodeJS.ProcessEnv,
  file: Record<string, string>,
): boolean {
  return (
    flags.natPortRange !== undefined ||
    env[envName('nat-port-range')] !== undefined ||
    file['nat-port-range'] !== undefined
  );
}

/** Table sizes from total memory, as Cilium's --bpf-map-dynamic-size-ratio does. */
export function dynamicSizes(ratio: number, totalMem = os.totalmem()): { tcp: number; any: number } {
  // Per entry: key + value in the table, key in the eviction ring, and the
  // hash table's own overhead per element.
  const perEntry = (key: number) => key + STRUCTS.ct_entry.size + key + 48;
  const budget = totalMem * ratio;
  const tcp = Math.floor((budget * 2) / 3 / perEntry(STRUCTS.ct6_key.size));
  const any = Math.floor(budget / 3 / perEntry(STRUCTS.ct6_key.size));
  const clamp = (n: number, min: number) => Math.min(TABLE_MAX, Math.max(min, n));
  return { tcp: clamp(tcp, AUTO_TCP_MIN), any: clamp(any, AUTO_ANY_MIN) };
}

/**
 * Resolves the agent's options from parsed flags (commander's camel-case
 * values, strings as typed), the environment and an optional config file.
 */
export function resolveAgentOptions(
  flags: Record<string, string | undefined>,
  sources: OptionSources = {},
): AgentOptions {
  const env = sources.env ?? process.env;
  const totalMem = sources.totalMem ?? os.totalmem();
  const file = flags.config ?? env.TSCT_CONFIG;
  const fromFile = file ? readConfigFile(file, sources.readFile ?? ((p) => fs.readFileSync(p, 'utf8'))) : {};
  const get = (flag: string): string | undefined => {
    const camel = flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    return flags[camel] ?? env[envName(flag)] ?? fromFile[flag] ?? AGENT_FLAGS.find((f) => f.flag === flag)?.default;
  };
  const dur = (flag: string) => parseDuration(flag, get(flag)!);
  const devicesText = get('devices');
  if (!devicesText)
    throw new UsageError('--devices is required: name the devices to attach to, e.g. --devices eth0,eth1');

  const tcpText = get('bpf-ct-global-tcp-max');
  const anyText = get('bpf-ct-global-any-max');
  const ratio = parseRatio('bpf-map-dynamic-size-ratio', get('bpf-map-dynamic-size-ratio')!);
  const dyn = dynamicSizes(ratio, totalMem);
  const ctTcpMax = tcpText ? parseSize('bpf-ct-global-tcp-max', tcpText) : dyn.tcp;
  const ctAnyMax = anyText ? parseSize('bpf-ct-global-any-max', anyText) : dyn.any;
  const why = (given: string | undefined, name: string) =>
    given ? `${name} as given` : `${name} from ${ratio} of ${(totalMem / 2 ** 30).toFixed(1)} GiB memory`;
  const timeouts: CtTimeouts = {
    tcpEstablished: dur('bpf-ct-timeout-regular-tcp'),
    tcpSynSent: dur('bpf-ct-timeout-regular-tcp-syn'),
    tcpSynRecv: dur('bpf-ct-timeout-regular-tcp-syn'),
    tcpFinWait: dur('bpf-ct-timeout-regular-tcp-fin'),
    tcpCloseWait: dur('bpf-ct-timeout-regular-tcp-close-wait'),
    tcpLastAck: dur('bpf-ct-timeout-regular-tcp-last-ack'),
    tcpTimeWait: dur('bpf-ct-timeout-regular-tcp-time-wait'),
    tcpClose: dur('bpf-ct-timeout-regular-tcp-close'),
    any: dur('bpf-ct-timeout-regular-any'),
    icmp: dur('bpf-ct-timeout-regular-icmp'),
  };
  for (const flag of AGENT_FLAGS.map((f) => f.flag).filter((f) => f.startsWith('bpf-ct-timeout-'))) {
    if (dur(flag) < 1)
      throw new UsageError(`--${flag}: ${get(flag)} is too short: connection timeouts must be at least 1s`);
  }
  const level = get('log-level')!;
  if (!['debug', 'info', 'warn', 'error'].includes(level))
    throw new UsageError(`--log-level: '${level}' is not one of debug, info, warn, error`);
  const gcMaxInterval = dur('conntrack-gc-max-interval');
  if (gcMaxInterval < 1) throw new UsageError('--conntrack-gc-max-interval must be at least 1s');
  const devices = parseDevices('devices', devicesText);
  const list = (flag: string) =>
    (get(flag) ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const masqueradeDevices = list('masquerade-devices');
  for (const m of masqueradeDevices) {
    if (!devices.some((d) => d.name === m))
      throw new UsageError(`--masquerade-devices: ${m} is not in --devices; a device must be managed to masquerade`);
  }
  const masqueradeCidrs = list('masquerade-cidrs').map((c) => parseCidr('masquerade-cidrs', c));
  const snatIps = list('snat-ip').map((a) => {
    try {
      return formatAddr(parseAddr(a));
    } catch {
      throw new UsageError(`--snat-ip: '${a}' is not an IPv4 or IPv6 address`);
    }
  });
  if (snatIps.filter((a) => a.includes(':')).length > 1 || snatIps.filter((a) => !a.includes(':')).length > 1) {
    throw new UsageError('--snat-ip: give at most one IPv4 and one IPv6 address');
  }
  const rangeText = get('nat-port-range')!;
  const range = /^(\d+)-(\d+)$/.exec(rangeText.trim());
  const [pmin, pmax] = range ? [Number(range[1]), Number(range[2])] : [NaN, NaN];
  if (!range || pmin < 1 || pmax > 65535 || pmin > pmax)
    throw new UsageError(`--nat-port-range: '${rangeText}' is not a port range; write it low-high, e.g. 32768-60999`);
  const fastPath = parseBool('bpf-fast-path', get('bpf-fast-path')!);
  const xdpFastPath = parseBool('bpf-xdp-fast-path', get('bpf-xdp-fast-path')!);
  if (xdpFastPath && !fastPath)
    throw new UsageError('--bpf-xdp-fast-path needs --bpf-fast-path true: the XDP path is the fast path, earlier');
  const fastPathNew = parseBool('bpf-fast-path-new', get('bpf-fast-path-new')!);
  if (fastPathNew && !fastPath)
    throw new UsageError('--bpf-fast-path-new needs --bpf-fast-path true: it widens the fast path to new connections');
  const natText = get('bpf-nat-global-max');
  const natMax = natText
    ? parseSize('bpf-nat-global-max', natText)
    : Math.min(TABLE_MAX, Math.max(TABLE_MIN, Math.round(((ctTcpMax + ctAnyMax) * 2) / 3)));
  return {
    devices,
    masqueradeDevices,
    masqueradeCidrs,
    snatIps,
    natPortMin: pmin,
    natPortMax: pmax,
    natRangeStrict: natRangeGiven(flags, env, fromFile),
    natMax,
    bpfRoot: get('bpf-root')!,
    ctTcpMax,
    ctAnyMax,
    sizeReason: `${why(tcpText, 'TCP')}, ${why(anyText, 'non-TCP')}`,
    timeouts,
    tcpLoose: parseBool('bpf-ct-tcp-loose', get('bpf-ct-tcp-loose')!),
    dropInvalid: parseBool('bpf-ct-drop-invalid', get('bpf-ct-drop-invalid')!),
    ctFullPass: parseBool('bpf-ct-full-pass-untracked', get('bpf-ct-full-pass-untracked')!),
    gcInterval: dur('conntrack-gc-interval'),
    gcMaxInterval,
    logLevel: level as AgentOptions['logLevel'],
    prometheusServeAddr: servePromAddr(get('prometheus-serve-addr')!),
    events: parseEvents(get('conntrack-events')!),
    eventsRingSize: parseRingSize(get('bpf-events-ring-size')!),
    fastPath,
    fastPathNew,
    xdpFastPath,
    lb: parseBool('bpf-lb', get('bpf-lb')!),
    lbMapMax: parseSize('bpf-lb-map-max', get('bpf-lb-map-max')!),
    lbAffinityMapMax: parseSize('bpf-lb-affinity-map-max', get('bpf-lb-affinity-map-max')!),
    lbMaglevSlots: parseSlots(get('bpf-lb-maglev-map-max')!),
    maglevTableSize: get('bpf-lb-maglev-table-size')
      ? parseMaglevTableSize(get('bpf-lb-maglev-table-size')!)
      : undefined,
    maglevHashSeed: parseMaglevHashSeed(get('bpf-lb-maglev-hash-seed')!),
    servicesFile: get('services-file') || undefined,
    policyFile: get('policy-file') || undefined,
    k8s: resolveK8sOptions(get, env, get('services-file') || undefined),
  };
}

/** Kubernetes mode: --k8s-kubeconfig-path, or in a pod; undefined when neither. Refused with --services-file. */
function resolveK8sOptions(
  get: (flag: string) => string | undefined,
  env: NodeJS.ProcessEnv,
  servicesFile: string | undefined,
): K8sOptions | undefined {
  const kubeconfigPath = get('k8s-kubeconfig-path') || undefined;
  const inCluster = !kubeconfigPath && !!env.KUBERNETES_SERVICE_HOST;
  if (!kubeconfigPath && !inCluster) return undefined;
  if (servicesFile) {
    const k8s = kubeconfigPath ? '--k8s-kubeconfig-path' : 'Kubernetes (in a pod: KUBERNETES_SERVICE_HOST is set)';
    throw new UsageError(`--services-file and ${k8s} both program the services; use one of them`);
  }
  const nodeName = (get('k8s-node-name') || env.NODE_NAME || os.hostname()).trim().toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) {
    throw new UsageError(`--k8s-node-name: '${nodeName}' is not a node name (a DNS subdomain such as node-1)`);
  }
  const nodePortAddresses = (get('nodeport-addresses') ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map((c) => parseCidr('nodeport-addresses', c));
  return {
    kubeconfigPath,
    nodeName,
    nodePortAddresses,
    serviceProxyName: (get('k8s-service-proxy-name') ?? '').trim(),
  };
}

/** Slots of the backend tables: at least one table of the smallest size, at most 2^28 (1 GiB). */
function parseSlots(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 251 || n > 1 << 28) {
    throw new UsageError(`--bpf-lb-maglev-map-max: '${text}' is not a slot count from 251 to ${1 << 28}`);
  }
  return n;
}
