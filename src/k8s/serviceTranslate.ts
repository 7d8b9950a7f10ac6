// Kubernetes Services and EndpointSlices as the load balancer's services, with kube-proxy's semantics: what
// `tsct agent` programs on a node instead of kube-proxy. Pure: the informers' objects in, LbService[] and
// warnings out; no I/O, no clock but the one ServiceIdMap is given.
//
// What a Service becomes (one LbService per frontend: address, port, protocol):
// - ClusterIP: every address of spec.clusterIPs (dual-stack), each port and protocol; traffic policy from
//   internalTrafficPolicy.
// - NodePort (type NodePort or LoadBalancer, with a nodePort): every address of this node's Node object
//   (InternalIP, ExternalIP) inside --nodeport-addresses, each its own frontend; traffic policy from
//   externalTrafficPolicy.
// - externalIPs and status.loadBalancer.ingress[].ip (not those with ipMode Proxy, which a load balancer
//   proxies itself): on the service port, externalTrafficPolicy; loadBalancerSourceRanges on the LoadBalancer
//   frontends only, of their family. A service whose ranges are all of the other family gets no LoadBalancer
//   frontend of this one (closed, where kube-proxy would open it to everyone).
// - NodePort, external and LoadBalancer frontends of externalTrafficPolicy Cluster translate the client's source
//   too (full NAT), as kube-proxy masquerades them, so that the backend's reply comes back through this node;
//   Local keeps the client's address. ClusterIP frontends keep it (kube-proxy masquerades only sources outside
//   the cluster's pod CIDR, which the agent does not know).
// - Frontends other than ClusterIP exist only in the families the service has a cluster IP of: its endpoints
//   are of those families.
// - sessionAffinity ClientIP: the timeout of sessionAffinityConfig.clientIP.timeoutSeconds, 10800 by default.
// Ignored: services whose service.kubernetes.io/service-proxy-name is not this agent's (--k8s-service-proxy-name;
// without it, every service that has the label), services labelled service.kubernetes.io/headless, headless
// services (clusterIP None) and ExternalName services.
//
// The backends of a service port are the endpoints of every EndpointSlice labelled kubernetes.io/service-name
// with its name, in its namespace, of the frontend's family, merged (an address in two slices counts once, the
// ready one preferred), on the slice port of the service port's name and protocol (the target port as the
// EndpointSlice controller resolved it). An endpoint is 'active' when ready (a missing condition is ready),
// 'terminating' when serving and terminating, left out otherwise; publishNotReadyAddresses makes every endpoint
// active. tableBackends (lbService.ts) then takes kube-proxy's choice: ready, or serving-terminating when nothing
// is ready, separately for a frontend of traffic policy cluster and one of local. `local` is an endpoint whose
// nodeName is this node. Topology hints narrow a cluster-policy frontend's ready endpoints as kube-proxy's do
// (withTopology): to those for this node (hints.forNodes) when every ready endpoint has node hints and one is for
// this node; else to those for this node's zone (hints.forZones, the node's label topology.kubernetes.io/zone)
// when every ready endpoint has zone hints and one is for the zone; otherwise hints are ignored.
//
// healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local) is a HealthCheck in the result, with the count
// of local ready endpoints: the agent serves it (src/k8s/healthCheckServer.ts).
//
// A backend's name (Maglev's input, which must be the same on every node) is its targetRef's namespace/name, or
// its address, and its port: `default/web-1:8080`, `10.1.0.5:8080`.
//
// A Service or EndpointSlice the agent cannot use (an address that is not one, a port out of range, an unknown
// protocol, an affinity timeout out of range, a source range that is no CIDR) is left out with a warning
// `namespace/name: what is wrong`; the rest is translated. A frontend two services claim goes to the first by
// namespace/name; the other is warned about. One backend address that is active for one service and terminating
// for another (publishNotReadyAddresses on one of them) is active for both: the datapath keeps one state per
// backend address.
import { isIPv4, isIPv6 } from 'node:net';
import {
  backendKey,
  DEFAULT_AFFINITY_TIMEOUT_S,
  DEFAULT_ALGORITHM,
  familyOfAddr,
  frontendText,
  hostPort,
  isCanonicalIPv4,
  LbBackend,
  LbFrontend,
  LbProto,
  LbService,
  LbServiceType,
  LbTrafficPolicy,
  MAX_AFFINITY_TIMEOUT_S,
  MAX_SERVICE_ID,
} from '../lb/lbService';
import { formatAddr, parseAddr } from '../net/addr';
import { cidrContains, parseCidr } from '../policy/cidr';
import { Cidr } from '../policy/policyRule';

// The shapes read here: what @kubernetes/client-node's models and the watch's plain JSON have in common. Every
// field is optional (and may be null in JSON): objects come from outside and are checked as they are read.

export interface K8sObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string> | null;
}

export interface K8sServicePort {
  name?: string | null;
  port?: number | null;
  protocol?: string | null;
  nodePort?: number | null;
  targetPort?: number | string | null;
}

export interface K8sService {
  metadata?: K8sObjectMeta;
  spec?: {
    type?: string | null;
    clusterIP?: string | null;
    clusterIPs?: string[] | null;
    ports?: K8sServicePort[] | null;
    externalIPs?: string[] | null;
    sessionAffinity?: string | null;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number | null } | null } | null;
    externalTrafficPolicy?: string | null;
    internalTrafficPolicy?: string | null;
    loadBalancerSourceRanges?: string[] | null;
    publishNotReadyAddresses?: boolean | null;
    healthCheckNodePort?: number | null;
  } | null;
  status?: {
    loadBalancer?: { ingress?: Array<{ ip?: string | null; hostname?: string | null; ipMode?: string | null }> | null };
  } | null;
}

export interface K8sEndpoint {
  addresses?: string[] | null;
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null } | null;
  nodeName?: string | null;
  /** Older slices name the node here only. */
  deprecatedTopology?: Record<string, string> | null;
  hints?: {
    forZones?: Array<{ name?: string | null }> | null;
    /** Kubernetes 1.33+ (trafficDistribution PreferSameNode). */
    forNodes?: Array<{ name?: string | null }> | null;
  } | null;
  targetRef?: { kind?: string | null; namespace?: string | null; name?: string | null } | null;
}

export interface K8sEndpointSlice {
  metadata?: K8sObjectMeta;
  addressType?: string | null;
  endpoints?: K8sEndpoint[] | null;
  ports?: Array<{ name?: string | null; port?: number | null; protocol?: string | null }> | null;
}

export interface K8sNode {
  metadata?: K8sObjectMeta;
  status?: { addresses?: Array<{ type?: string | null; address?: string | null }> | null } | null;
}

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
const HOSTNAME_TOPOLOGY = 'kubernetes.io/hostname';

export interface TranslateInput {
  services: readonly K8sService[];
  slices: readonly K8sEndpointSlice[];
  /** This node's Node object; without it no NodePort frontend (its addresses are unknown) and no zone. */
  node?: K8sNode;
  /** This node's name: endpoints whose nodeName it is are local. */
  nodeName: string;
  /** --nodeport-addresses: the node addresses that serve NodePorts; empty: all of them. */
  nodePortAddresses?: readonly string[];
  /** --k8s-service-proxy-name: the value of service.kubernetes.io/service-proxy-name this agent serves. */
  serviceProxyName?: string;
}

/** Which of a service's addresses a frontend is on; part of its key. */
export type FrontendKind = 'cluster-ip' | 'node-port' | 'external-ip' | 'load-balancer';

/** A frontend before it has an id: the key names it across translations and agent restarts. */
export interface KeyedService extends Omit<LbService, 'id'> {
  /** `namespace/name:portname kind ADDR:PORT/PROTO`. */
  key: string;
  /** namespace/name of the Service. */
  owner: string;
}

/**
 * A healthCheckNodePort to serve on this node (kube-proxy's service health server): for a LoadBalancer service
 * of externalTrafficPolicy Local that has one, as kube-proxy's NeedsHealthCheck (the API server allocates it for
 * no other service).
 */
export interface HealthCheck {
  namespace: string;
  name: string;
  port: number;
  /**
   * The service's local ready endpoints, counted by address over all its ports as kube-proxy's
   * LocalReadyEndpoints; terminating ones do not count (only ready ones tell a load balancer to send new
   * traffic here). Of a dual-stack service, the larger of its families' counts: one pod is one endpoint.
   */
  localEndpoints: number;
}

export interface TranslateResult {
  services: KeyedService[];
  /** The health check node ports, by namespace/name. */
  healthChecks: HealthCheck[];
  /** This node's addresses inside --nodeport-addresses: where NodePorts (and health check ports) are served. */
  nodeAddrs: string[];
  /** `namespace/name: what is wrong`, one per object or frontend left out. */
  warnings: string[];
}

/** Something about an object the agent cannot use: the object is left out with this message. */
class BadObject extends Error {}

const PROTOCOLS: Record<string, LbProto> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

function labelsOf(o: { metadata?: K8sObjectMeta }): Record<string, string> {
  return o.metadata?.labels ?? {};
}

function nameOf(o: { metadata?: K8sObjectMeta }): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

/** A canonical address of the given family (or either), or BadObject naming `what`. */
function ipOf(what: string, text: unknown, family?: 4 | 6): string {
  if (typeof text === 'string' && family !== 6 && isCanonicalIPv4(text)) return text;
  const ok = typeof text === 'string' && !text.includes('%') && (isIPv4(text) || isIPv6(text));
  if (!ok) throw new BadObject(`${what} '${String(text)}' is not an IP address`);
  const canon = formatAddr(parseAddr(text));
  if (family !== undefined && familyOfAddr(canon) !== family) {
    throw new BadObject(`${what} '${text}' is not an IPv${family} address`);
  }
  return canon;
}

function portOf(what: string, n: unknown): number {
  if (!(typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 0xffff)) {
    throw new BadObject(`${what} ${String(n)} is not a port (1 to 65535)`);
  }
  return n;
}

function protoOf(what: string, p: unknown): LbProto {
  const proto = PROTOCOLS[p === undefined || p === null ? 'TCP' : String(p)];
  if (!proto) throw new BadObject(`${what} protocol '${String(p)}' is not TCP, UDP or SCTP`);
  return proto;
}

/** Whether this agent programs the service (proxy name and headless labels), as kube-proxy's label selector. */
export function servedByThisProxy(svc: K8sService, serviceProxyName = ''): boolean {
  const labels = labelsOf(svc);
  if (HEADLESS_LABEL in labels) return false;
  const proxy = labels[SERVICE_PROXY_NAME_LABEL];
  return serviceProxyName === '' ? proxy === undefined : proxy === serviceProxyName;
}

interface SlicePort {
  name: string;
  port: number;
  proto: LbProto;
}

interface CheckedEndpoint {
  addr: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zones?: Set<string>;
  nodes?: Set<string>;
  /** targetRef's namespace/name, when the endpoint has one. */
  ref?: string;
}

interface CheckedSlice {
  family: 4 | 6;
  ports: SlicePort[];
  endpoints: CheckedEndpoint[];
}

/** A slice's content checked, or BadObject. FQDN slices (and other address types) are no slice for the LB. */
function checkSlice(slice: K8sEndpointSlice): CheckedSlice | null {
  const type = slice.addressType;
  if (type !== 'IPv4' && type !== 'IPv6') return null;
  const family = type === 'IPv4' ? 4 : 6;
  const ports = (slice.ports ?? []).map((p) => ({
    name: p.name ?? '',
    port: portOf(`port '${p.name ?? ''}'`, p.port),
    proto: protoOf(`port '${p.name ?? ''}'`, p.protocol),
  }));
  const endpoints = (slice.endpoints ?? []).map((ep, i): CheckedEndpoint => {
    const first = ep.addresses?.[0];
    if (first === undefined) throw new BadObject(`endpoint ${i} has no address`);
    const addr = ipOf('endpoint address', first, family);
    const c = ep.conditions ?? {};
    const ready = c.ready ?? true;
    const zones = ep.hints?.forZones?.map((z) => z.name ?? '').filter((z) => z !== '');
    const nodes = ep.hints?.forNodes?.map((n) => n.name ?? '').filter((n) => n !== '');
    const ref = ep.targetRef?.name
      ? `${ep.targetRef.namespace ?? slice.metadata?.namespace ?? ''}/${ep.targetRef.name}`
      : undefined;
    return {
      addr,
      ready,
      serving: c.serving ?? ready,
      terminating: c.terminating ?? false,
      nodeName: ep.nodeName ?? ep.deprecatedTopology?.[HOSTNAME_TOPOLOGY] ?? undefined,
      zones: zones && zones.length > 0 ? new Set(zones) : undefined,
      nodes: nodes && nodes.length > 0 ? new Set(nodes) : undefined,
      ref,
    };
  });
  return { family, ports, endpoints };
}

interface Candidate {
  backend: LbBackend;
  ready: boolean;
  zones?: Set<string>;
  nodes?: Set<string>;
}

/** The merged endpoints of a service port in one family: one per address and port, by slice name order. */
function endpointsFor(
  slices: readonly CheckedSlice[],
  family: 4 | 6,
  portName: string,
  proto: LbProto,
  publishNotReady: boolean,
  nodeName: string,
): Candidate[] {
  const byAddr = new Map<string, Candidate>();
  const names = new Set<string>();
  for (const slice of slices) {
    if (slice.family !== family) continue;
    const sp = slice.ports.find((p) => p.name === portName && p.proto === proto);
    if (!sp) continue;
    for (const ep of slice.endpoints) {
      const state = publishNotReady || ep.ready ? 'active' : ep.serving && ep.terminating ? 'terminating' : undefined;
      if (!state) continue;
      const key = hostPort(ep.addr, sp.port);
      const have = byAddr.get(key);
      // kube-proxy's merge: the first one, unless a later one is ready and it is not.
      if (have && (have.backend.state === 'active' || state !== 'active')) continue;
      if (have) names.delete(have.backend.name!);
      let name = ep.ref !== undefined ? `${ep.ref}:${sp.port}` : key;
      if (names.has(name)) name = key; // one pod in two slices under two addresses: its address tells them apart
      names.add(name);
      byAddr.set(key, {
        backend: {
          addr: ep.addr,
          port: sp.port,
          state,
          weight: 1,
          local: ep.nodeName !== undefined && ep.nodeName === nodeName,
          name,
        },
        ready: state === 'active',
        zones: ep.zones,
        nodes: ep.nodes,
      });
    }
  }
  return [...byAddr.values()];
}

/**
 * A cluster-policy frontend's backends narrowed by topology hints, as kube-proxy's topologyModeFromHints and
 * availableForTopology (pkg/proxy/topology.go) with the PreferSameTrafficDistribution gate on (its default
 * since 1.34): node hints first, if every ready endpoint has node hints (hints.forNodes) and one is for this
 * node, only the ready endpoints hinted for this node; otherwise zone hints, if every ready endpoint has zone
 * hints and one is for this node's zone, only those for the zone; otherwise all of them. Node hints that are
 * not usable fall back to zone hints, never to nothing. Endpoints that are not ready stay (tableBackends takes
 * them only when none is ready: the terminating fallback, which ignores topology as kube-proxy's does).
 */
function withTopology(candidates: readonly Candidate[], nodeName: string, zone: string | undefined): LbBackend[] {
  const ready = candidates.filter((c) => c.ready);
  const usable = (hints: (c: Candidate) => Set<string> | undefined, want: string | undefined) =>
    want !== undefined &&
    want !== '' &&
    ready.length > 0 &&
    ready.every((c) => hints(c) !== undefined) &&
    ready.some((c) => hints(c)!.has(want));
  const keep: ((c: Candidate) => boolean) | null = usable((c) => c.nodes, nodeName)
    ? (c) => c.nodes!.has(nodeName)
    : usable((c) => c.zones, zone)
      ? (c) => c.zones!.has(zone!)
      : null;
  return candidates.filter((c) => keep === null || !c.ready || keep(c)).map((c) => ({ ...c.backend }));
}

interface NodeAddresses {
  addrs: string[];
  zone?: string;
}

function nodeAddresses(input: TranslateInput, warnings: string[]): NodeAddresses {
  const node = input.node;
  if (!node) return { addrs: [] };
  const zone = labelsOf(node)[ZONE_LABEL] || undefined;
  const cidrs: Cidr[] = (input.nodePortAddresses ?? []).map((c) => parseCidr(c, 'clear'));
  const addrs: string[] = [];
  for (const a of node.status?.addresses ?? []) {
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') continue;
    let addr: string;
    try {
      addr = ipOf(`node address (${a.type})`, a.address);
    } catch (e) {
      warnings.push(`${node.metadata?.name ?? '?'}: ${(e as Error).message}; NodePorts are not served on it`);
      continue;
    }
    if (cidrs.length > 0 && !cidrs.some((c) => cidrContains(c, parseAddr(addr)))) continue;
    if (!addrs.includes(addr)) addrs.push(addr);
  }
  return { addrs, zone };
}

function trafficPolicy(text: string | null | undefined): LbTrafficPolicy {
  return text === 'Local' ? 'local' : 'cluster';
}

function affinityOf(spec: NonNullable<K8sService['spec']>): number {
  if (spec.sessionAffinity !== 'ClientIP') return 0;
  const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_S;
  if (!(Number.isInteger(t) && t >= 1 && t <= MAX_AFFINITY_TIMEOUT_S)) {
    throw new BadObject(`sessionAffinityConfig.clientIP.timeoutSeconds ${t} is not 1 to ${MAX_AFFINITY_TIMEOUT_S}`);
  }
  return t;
}

/** One Service's frontends, or BadObject. */
function translateService(
  svc: K8sService,
  slices: readonly CheckedSlice[],
  input: TranslateInput,
  node: NodeAddresses,
  notes: string[],
  healthChecks: HealthCheck[],
): KeyedService[] {
  const owner = nameOf(svc);
  const spec = svc.spec ?? {};
  const type = spec.type ?? 'ClusterIP';
  if (type === 'ExternalName') return [];
  const ipTexts =
    spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [];
  if (ipTexts.length === 0 || ipTexts.includes('None')) return [];
  const clusterIPs = ipTexts.map((ip) => ipOf('clusterIP', ip));
  const families = clusterIPs.map(familyOfAddr);
  if (new Set(families).size !== families.length) {
    throw new BadObject(`clusterIPs ${ipTexts.join(', ')} has two addresses of one family`);
  }
  const externalIPs = (spec.externalIPs ?? []).map((ip) => ipOf('externalIP', ip));
  const lbIPs =
    type === 'LoadBalancer'
      ? (svc.status?.loadBalancer?.ingress ?? [])
          .filter((i) => i.ip && i.ipMode !== 'Proxy')
          .map((i) => ipOf('status.loadBalancer.ingress ip', i.ip))
      : [];
  const ranges = (spec.loadBalancerSourceRanges ?? []).map((r) => {
    try {
      const c = parseCidr(String(r).trim(), 'clear');
      return `${c.addr}/${c.prefix}`;
    } catch {
      throw new BadObject(`loadBalancerSourceRanges '${r}' is not a CIDR`);
    }
  });
  const affinityTimeoutS = affinityOf(spec);
  const publishNotReady = spec.publishNotReadyAddresses === true;
  const itp = trafficPolicy(spec.internalTrafficPolicy);
  const etp = trafficPolicy(spec.externalTrafficPolicy);
  const ports = (spec.ports ?? []).map((p, i) => {
    const what = `port '${p.name ?? i}'`;
    const port = portOf(what, p.port);
    const proto = protoOf(what, p.protocol);
    const nodePort =
      (type === 'NodePort' || type === 'LoadBalancer') &&
      p.nodePort !== undefined &&
      p.nodePort !== null &&
      p.nodePort !== 0
        ? portOf(`${what} nodePort`, p.nodePort)
        : undefined;
    return { name: p.name ?? '', port, proto, nodePort };
  });
  for (const ip of [...externalIPs, ...lbIPs]) {
    if (!families.includes(familyOfAddr(ip))) {
      notes.push(
        `${owner}: ${ip} is IPv${familyOfAddr(ip)} but the service has no IPv${familyOfAddr(ip)} cluster IP; left out`,
      );
    }
  }
  const hcPort =
    type === 'LoadBalancer' &&
    etp === 'local' &&
    spec.healthCheckNodePort !== undefined &&
    spec.healthCheckNodePort !== null &&
    spec.healthCheckNodePort !== 0
      ? portOf('healthCheckNodePort', spec.healthCheckNodePort)
      : undefined;
  /** Local ready endpoint addresses, by family, for the health check. */
  const localReady = new Map<4 | 6, Set<string>>();
  const out: KeyedService[] = [];
  for (const p of ports) {
    const portLabel = p.name ? `${owner}:${p.name}` : owner;
    for (const family of families) {
      const candidates = endpointsFor(slices, family, p.name, p.proto, publishNotReady, input.nodeName);
      const clusterBackends = withTopology(candidates, input.nodeName, node.zone);
      for (const c of candidates) {
        if (!c.ready || !c.backend.local) continue;
        const set = localReady.get(family) ?? new Set<string>();
        set.add(c.backend.addr);
        localReady.set(family, set);
      }
      const localBackends = candidates.map((c) => ({ ...c.backend }));
      const add = (kind: FrontendKind, addr: string, port: number, policy: LbTrafficPolicy, sourceRanges: string[]) => {
        const frontend: LbFrontend = { addr, port, proto: p.proto };
        const lbType: LbServiceType = LB_TYPES[kind];
        out.push({
          key: `${portLabel} ${kind} ${frontendText(frontend)}`,
          owner,
          name: portLabel,
          frontend,
          type: lbType,
          algorithm: DEFAULT_ALGORITHM,
          affinityTimeoutS,
          trafficPolicy: policy,
          sourceRanges,
          // kube-proxy masquerades external traffic of traffic policy Cluster, so that the reply comes back here.
          fullNat: kind !== 'cluster-ip' && policy === 'cluster',
          backends: policy === 'local' ? localBackends.map((b) => ({ ...b })) : clusterBackends.map((b) => ({ ...b })),
        });
      };
      add('cluster-ip', clusterIPs[families.indexOf(family)], p.port, itp, []);
      if (p.nodePort !== undefined) {
        for (const addr of node.addrs.filter((a) => familyOfAddr(a) === family))
          add('node-port', addr, p.nodePort, etp, []);
      }
      for (const addr of externalIPs.filter((a) => familyOfAddr(a) === family))
        add('external-ip', addr, p.port, etp, []);
      const familyRanges = ranges.filter((r) => familyOfAddr(r.split('/')[0]) === family);
      for (const addr of lbIPs.filter((a) => familyOfAddr(a) === family)) {
        if (ranges.length > 0 && familyRanges.length === 0) {
          notes.push(
            `${owner}: loadBalancerSourceRanges has no IPv${family} range; load balancer IP ${addr} is left out`,
          );
          continue;
        }
        add('load-balancer', addr, p.port, etp, familyRanges);
      }
    }
  }
  if (hcPort !== undefined) {
    healthChecks.push({
      namespace: svc.metadata?.namespace ?? '',
      name: svc.metadata?.name ?? '',
      port: hcPort,
      localEndpoints: Math.max(0, ...[...localReady.values()].map((s) => s.size)),
    });
  }
  return out;
}

const LB_TYPES: Record<FrontendKind, LbServiceType> = {
  'cluster-ip': 'ClusterIP',
  'node-port': 'NodePort',
  'external-ip': 'ExternalIP',
  'load-balancer': 'LoadBalancer',
};

function byName(a: { metadata?: K8sObjectMeta }, b: { metadata?: K8sObjectMeta }): number {
  const x = nameOf(a);
  const y = nameOf(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Services, EndpointSlices and this node's Node object: the frontends to program, without ids, and warnings. */
export function translateServices(input: TranslateInput): TranslateResult {
  const warnings: string[] = [];
  const node = nodeAddresses(input, warnings);
  // The slices of each service, checked once, by slice name.
  const slicesOf = new Map<string, CheckedSlice[]>();
  for (const slice of [...input.slices].sort(byName)) {
    const service = labelsOf(slice)[SERVICE_NAME_LABEL];
    if (!service) continue;
    let checked: CheckedSlice | null;
    try {
      checked = checkSlice(slice);
    } catch (e) {
      if (!(e instanceof BadObject)) throw e;
      warnings.push(`${nameOf(slice)}: ${e.message}; the EndpointSlice is left out`);
      continue;
    }
    if (!checked) continue;
    const key = `${slice.metadata?.namespace ?? ''}/${service}`;
    const list = slicesOf.get(key) ?? [];
    list.push(checked);
    slicesOf.set(key, list);
  }
  const out: KeyedService[] = [];
  const owners = new Map<string, string>();
  const healthChecks: HealthCheck[] = [];
  const hcOwners = new Map<number, string>();
  for (const svc of [...input.services].sort(byName)) {
    if (!servedByThisProxy(svc, input.serviceProxyName ?? '')) continue;
    const owner = nameOf(svc);
    const notes: string[] = [];
    const checks: HealthCheck[] = [];
    let frontends: KeyedService[];
    try {
      frontends = translateService(svc, slicesOf.get(owner) ?? [], input, node, notes, checks);
    } catch (e) {
      if (!(e instanceof BadObject)) throw e;
      warnings.push(`${owner}: ${e.message}; the Service is left out`);
      continue;
    }
    warnings.push(...notes);
    for (const h of checks) {
      const other = hcOwners.get(h.port);
      if (other !== undefined) {
        warnings.push(`${owner}: healthCheckNodePort ${h.port} is ${other}'s already; not served`);
        continue;
      }
      hcOwners.set(h.port, owner);
      healthChecks.push(h);
    }
    for (const f of frontends) {
      const fe = frontendText(f.frontend);
      const other = owners.get(fe);
      if (other !== undefined) {
        warnings.push(
          `${owner}: frontend ${fe} is ${other === owner ? 'given twice' : `${other}'s already`}; left out`,
        );
        continue;
      }
      owners.set(fe, owner);
      out.push(f);
    }
  }
  // One state per backend address in the datapath: active where any service has it active.
  const active = new Set<string>();
  for (const s of out) for (const b of s.backends) if (b.state === 'active') active.add(backendKey(b));
  for (const s of out) for (const b of s.backends) if (active.has(backendKey(b))) b.state = 'active';
  return { services: out, healthChecks, nodeAddrs: node.addrs, warnings };
}

export interface ServiceIdMapOptions {
  /**
   * How long an id given back stays unused while other ids are free (default 60 s), so that the replies of a
   * removed service's last connections are not counted as, or translated to, a new service's.
   */
  reuseAfterMs?: number;
  now?: () => number;
}

/**
 * Service ids (the datapath's rev_nat_index) for keyed frontends. An id is kept for as long as its key is wanted;
 * a new key takes the id the maps held for its frontend when the agent started (`restored`, from the writer's
 * restore), so a restarted agent rewrites nothing that is unchanged, else the lowest free id. The key holds the
 * frontend's port: a frontend's reverse translation is its id's, so a changed port is a new id.
 */
export class ServiceIdMap {
  private readonly byKey = new Map<string, number>();
  /** The ids of byKey. */
  private used = new Set<number>();
  private restored: Map<string, number> | null;
  /** Ids given back, with when. */
  private readonly released = new Map<number, number>();
  private readonly reuseAfterMs: number;
  private readonly now: () => number;

  constructor(restored: Iterable<{ id: number; frontend: LbFrontend }> = [], opts: ServiceIdMapOptions = {}) {
    this.restored = new Map([...restored].map((s) => [frontendText(s.frontend), s.id]));
    this.reuseAfterMs = opts.reuseAfterMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /** The id of a key, if it has one. */
  idOf(key: string): number | undefined {
    return this.byKey.get(key);
  }

  /**
   * Ids for exactly these frontends (others' ids are given back). More frontends than ids: the last keys get
   * none and are returned in `left`.
   */
  assign(wanted: readonly KeyedService[]): { services: LbService[]; left: KeyedService[] } {
    const now = this.now();
    const keys = new Set(wanted.map((w) => w.key));
    for (const [key, id] of this.byKey) {
      if (!keys.has(key)) {
        this.byKey.delete(key);
        this.released.set(id, now);
      }
    }
    const inUse = new Set(this.byKey.values());
    const fresh = wanted.filter((w) => !this.byKey.has(w.key)).sort((a, b) => (a.key < b.key ? -1 : 1));
    const restored = this.restored ?? new Map<string, number>();
    const needNew: KeyedService[] = [];
    for (const w of fresh) {
      const id = restored.get(frontendText(w.frontend));
      if (id !== undefined && !inUse.has(id)) {
        this.take(w.key, id, inUse);
        restored.delete(frontendText(w.frontend));
      } else needNew.push(w);
    }
    // The ids of restored services no longer wanted are given back now: this assignment's apply removes them.
    for (const id of restored.values()) if (!inUse.has(id)) this.released.set(id, now);
    this.restored = null;
    const left: KeyedService[] = [];
    let cursor = 1;
    let cooling: number[] | null = null;
    for (const w of needNew) {
      while (cursor <= MAX_SERVICE_ID && (inUse.has(cursor) || this.cooling(cursor, now))) cursor++;
      if (cursor <= MAX_SERVICE_ID) {
        this.take(w.key, cursor, inUse);
        continue;
      }
      cooling ??= [...this.released.keys()].filter((id) => !inUse.has(id)).sort((a, b) => a - b);
      const id = cooling.shift();
      if (id === undefined) left.push(w);
      else this.take(w.key, id, inUse);
    }
    this.used = new Set(this.byKey.values());
    const services = wanted
      .filter((w) => this.byKey.has(w.key))
      .map((w): LbService => {
        const { key: _key, owner: _owner, ...svc } = w;
        return { id: this.byKey.get(w.key)!, ...svc };
      })
      .sort((a, b) => a.id - b.id);
    return { services, left };
  }

  /** How many frontends have an id. */
  get size(): number {
    return this.byKey.size;
  }

  /**
   * Ids for what changed since the last assignment: upserts keep their ids or take new ones (the lowest free, as
   * assign), removed keys give theirs back. Costs the changes, not the frontends in force. `added`: upserts that
   * had no id before.
   */
  assignChanges(
    upserts: readonly KeyedService[],
    removed: readonly string[],
  ): { services: LbService[]; removedIds: number[]; added: Set<number>; left: KeyedService[] } {
    const now = this.now();
    const removedIds: number[] = [];
    for (const key of removed) {
      const id = this.byKey.get(key);
      if (id === undefined) continue;
      this.byKey.delete(key);
      this.used.delete(id);
      this.released.set(id, now);
      removedIds.push(id);
    }
    const added = new Set<number>();
    const left: KeyedService[] = [];
    const services: LbService[] = [];
    let cursor = 1;
    for (const w of [...upserts].sort((a, b) => (a.key < b.key ? -1 : 1))) {
      let id = this.byKey.get(w.key);
      if (id === undefined) {
        while (cursor <= MAX_SERVICE_ID && (this.used.has(cursor) || this.cooling(cursor, now))) cursor++;
        if (cursor <= MAX_SERVICE_ID) id = cursor;
        else id = [...this.released.keys()].filter((x) => !this.used.has(x)).sort((a, b) => a - b)[0];
        if (id === undefined) {
          left.push(w);
          continue;
        }
        this.take(w.key, id, this.used);
        added.add(id);
      }
      const { key: _key, owner: _owner, ...svc } = w;
      services.push({ id, ...svc });
    }
    // An id given back and taken again in one call is a changed service, not a removed one.
    const taken = new Set(services.map((s) => s.id));
    return { services, removedIds: removedIds.filter((id) => !taken.has(id)), added, left };
  }

  private take(key: string, id: number, inUse: Set<number>): void {
    this.byKey.set(key, id);
    inUse.add(id);
    this.released.delete(id);
  }

  private cooling(id: number, now: number): boolean {
    const at = this.released.get(id);
    if (at === undefined) return false;
    if (now - at >= this.reuseAfterMs) {
      this.released.delete(id);
      return false;
    }
    return true;
  }
}

export interface TranslatorOptions {
  nodeName: string;
  nodePortAddresses?: readonly string[];
  serviceProxyName?: string;
}

/** What changed since the last call: the full frontend set of each service that changed, and keys gone. */
export interface TranslatorChanges {
  upserts: KeyedService[];
  /** Keys of frontends no longer wanted. */
  removed: string[];
  /** Services (namespace/name) translated again, for the log. */
  translated: number;
}

/** What the translator keeps of a service between events: names and keys only, not its frontends. */
interface OwnerState {
  /** The frontends it claims (frontendText), before conflicts. */
  claims: string[];
  /** The keys of the frontends it has in force. */
  keys: string[];
  /** Backend keys active in its frontends in force (their share of "one state per backend address"). */
  active: string[];
  /** Backend keys it has but not active: it is translated again when one of them becomes active elsewhere. */
  inactive: string[];
  warnings: string[];
  healthChecks: HealthCheck[];
}

interface OwnerTranslation {
  frontends: KeyedService[];
  healthChecks: HealthCheck[];
  warnings: string[];
}

/** One service (and its slices) alone, as translateServices translates it, before the choices across services. */
function translateOwner(
  owner: string,
  svc: K8sService | undefined,
  slices: readonly K8sEndpointSlice[],
  input: TranslateInput,
  node: NodeAddresses,
): OwnerTranslation {
  const warnings: string[] = [];
  const checked: CheckedSlice[] = [];
  for (const slice of [...slices].sort(byName)) {
    let c: CheckedSlice | null;
    try {
      c = checkSlice(slice);
    } catch (e) {
      if (!(e instanceof BadObject)) throw e;
      warnings.push(`${nameOf(slice)}: ${e.message}; the EndpointSlice is left out`);
      continue;
    }
    if (c) checked.push(c);
  }
  const out: OwnerTranslation = { frontends: [], healthChecks: [], warnings };
  if (!svc || !servedByThisProxy(svc, input.serviceProxyName ?? '')) return out;
  const notes: string[] = [];
  let frontends: KeyedService[];
  try {
    frontends = translateService(svc, checked, input, node, notes, out.healthChecks);
  } catch (e) {
    if (!(e instanceof BadObject)) throw e;
    warnings.push(`${owner}: ${e.message}; the Service is left out`);
    out.healthChecks.length = 0;
    return out;
  }
  warnings.push(...notes);
  const seen = new Set<string>();
  for (const f of frontends) {
    const fe = frontendText(f.frontend);
    if (seen.has(fe)) {
      warnings.push(`${owner}: frontend ${fe} is given twice; left out`);
      continue;
    }
    seen.add(fe);
    out.frontends.push(f);
  }
  return out;
}

/**
 * One instance of what a hundred thousand endpoints repeat (node names, 'Pod', namespaces, the usual conditions),
 * replaced in the slice as the informer caches it: the same values, a fraction of the memory. Objects of the
 * cache are only read; the condition objects shared are frozen.
 */
function compact(slice: K8sEndpointSlice, interned: Map<string, unknown>): void {
  const str = (v: string | null | undefined) => {
    if (typeof v !== 'string') return v;
    const have = interned.get(`s:${v}`);
    if (have !== undefined) return have as string;
    if (interned.size < 100_000) interned.set(`s:${v}`, v);
    return v;
  };
  for (const ep of slice.endpoints ?? []) {
    if (ep.nodeName) ep.nodeName = str(ep.nodeName);
    const c = ep.conditions;
    if (c && Object.keys(c).every((k) => k === 'ready' || k === 'serving' || k === 'terminating')) {
      const k = `c:${c.ready}|${c.serving}|${c.terminating}`;
      let shared = interned.get(k) as K8sEndpoint['conditions'] | undefined;
      if (!shared) interned.set(k, (shared = Object.freeze({ ...c })));
      ep.conditions = shared;
    }
    const ref = ep.targetRef;
    if (ref) {
      if (ref.kind) ref.kind = str(ref.kind);
      if (ref.namespace) ref.namespace = str(ref.namespace);
    }
  }
}

function ownerOfSlice(slice: K8sEndpointSlice): string | undefined {
  const service = labelsOf(slice)[SERVICE_NAME_LABEL];
  return service ? `${slice.metadata?.namespace ?? ''}/${service}` : undefined;
}

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(v);
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

/**
 * translateServices kept up to date event by event: the agent hands it every Service, EndpointSlice and Node event
 * and asks for the changes; only the services an event touched are translated again (a slice's service is its
 * kubernetes.io/service-name label; a Node whose addresses or zone change touches every service). The choices
 * across services are kept by counts: a frontend two services claim goes to the first by namespace/name (the
 * others claiming it are translated again when it changes hands), and a backend address active in any service is
 * active in all (the services that have it otherwise are translated again when that changes). The result, after
 * any sequence of events, is what translateServices gives for the objects then (test/unit/k8s-translate.test.ts).
 * It keeps the objects the informers hold (references, no copies), and per service its keys, not its frontends.
 */
export class ServiceTranslator {
  private readonly services = new Map<string, K8sService>();
  /** namespace/name of each slice: its owner and the object. */
  private readonly slices = new Map<string, { owner: string; slice: K8sEndpointSlice }>();
  private readonly slicesOf = new Map<string, Set<string>>();
  private node: K8sNode | undefined;
  private nodeInfo: NodeAddresses = { addrs: [] };
  private nodeWarnings: string[] = [];
  private nodeSig = '';
  private readonly dirty = new Set<string>();
  private allDirty = true;
  private readonly owners = new Map<string, OwnerState>();
  private readonly claims = new Map<string, Set<string>>();
  private readonly activeCount = new Map<string, number>();
  private readonly inactiveUsers = new Map<string, Set<string>>();
  private readonly withHealthChecks = new Set<string>();
  private readonly withWarnings = new Set<string>();
  private frontendCount = 0;
  /** Strings and condition objects many endpoints repeat, one instance each (see compact). */
  private readonly interned = new Map<string, unknown>();
  /** Services with a frontend in force. */
  private servedCount = 0;

  constructor(private readonly opts: TranslatorOptions) {
    this.setNode(undefined);
  }

  setService(svc: K8sService): void {
    const owner = nameOf(svc);
    this.services.set(owner, svc);
    this.dirty.add(owner);
  }

  deleteService(svc: K8sService): void {
    const owner = nameOf(svc);
    this.services.delete(owner);
    this.dirty.add(owner);
  }

  setSlice(slice: K8sEndpointSlice): void {
    compact(slice, this.interned);
    const key = nameOf(slice);
    const had = this.slices.get(key);
    if (had) {
      removeFrom(this.slicesOf, had.owner, key);
      this.dirty.add(had.owner);
    }
    const owner = ownerOfSlice(slice);
    if (owner === undefined) {
      this.slices.delete(key);
      return;
    }
    this.slices.set(key, { owner, slice });
    addTo(this.slicesOf, owner, key);
    this.dirty.add(owner);
  }

  deleteSlice(slice: K8sEndpointSlice): void {
    const key = nameOf(slice);
    const had = this.slices.get(key);
    if (!had) return;
    this.slices.delete(key);
    removeFrom(this.slicesOf, had.owner, key);
    this.dirty.add(had.owner);
  }

  /** This node's Node object (undefined: none). Every service is translated again when its addresses or zone change. */
  setNode(node: K8sNode | undefined): void {
    this.node = node;
    const warnings: string[] = [];
    this.nodeInfo = nodeAddresses(this.input(), warnings);
    this.nodeWarnings = warnings;
    const sig = `${node ? 'node' : 'none'}|${this.nodeInfo.addrs.join(',')}|${this.nodeInfo.zone ?? ''}`;
    if (sig !== this.nodeSig) this.allDirty = true;
    this.nodeSig = sig;
  }

  /** Translate everything again at the next changes() (after an apply that failed). */
  markAllDirty(): void {
    this.allDirty = true;
  }

  get nodeAddrs(): string[] {
    return this.nodeInfo.addrs;
  }

  /** Frontends in force and the services that have one. */
  get counts(): { frontends: number; services: number } {
    return { frontends: this.frontendCount, services: this.servedCount };
  }

  /** The health check node ports, one per port (the first service by namespace/name), as translateServices. */
  healthChecks(): HealthCheck[] {
    const out: HealthCheck[] = [];
    const byPort = new Set<number>();
    for (const owner of [...this.withHealthChecks].sort()) {
      for (const h of this.owners.get(owner)?.healthChecks ?? []) {
        if (byPort.has(h.port)) continue;
        byPort.add(h.port);
        out.push(h);
      }
    }
    return out;
  }

  /** Every warning in force: the Node's, then each service's. */
  warnings(): string[] {
    const out = [...this.nodeWarnings];
    for (const owner of [...this.withWarnings].sort()) out.push(...this.owners.get(owner)!.warnings);
    const ports = new Map<number, string>();
    for (const owner of [...this.withHealthChecks].sort()) {
      for (const h of this.owners.get(owner)?.healthChecks ?? []) {
        const other = ports.get(h.port);
        if (other === undefined) ports.set(h.port, owner);
        else out.push(`${owner}: healthCheckNodePort ${h.port} is ${other}'s already; not served`);
      }
    }
    return out;
  }

  private input(): TranslateInput {
    return {
      services: [],
      slices: [],
      node: this.node,
      nodeName: this.opts.nodeName,
      nodePortAddresses: this.opts.nodePortAddresses,
      serviceProxyName: this.opts.serviceProxyName,
    };
  }

  private translate(owner: string): OwnerTranslation {
    const slices = [...(this.slicesOf.get(owner) ?? [])].map((k) => this.slices.get(k)!.slice);
    return translateOwner(owner, this.services.get(owner), slices, this.input(), this.nodeInfo);
  }

  private winner(fe: string): string | undefined {
    let best: string | undefined;
    for (const o of this.claims.get(fe) ?? []) if (best === undefined || o < best) best = o;
    return best;
  }

  /** The services the events since the last call changed, translated again. */
  changes(): TranslatorChanges {
    const dirty = this.allDirty
      ? new Set([...this.services.keys(), ...this.slicesOf.keys(), ...this.owners.keys()])
      : new Set(this.dirty);
    this.allDirty = false;
    this.dirty.clear();
    const raw = new Map<string, OwnerTranslation>();
    // 1. Claims of the services touched; those who claim the same frontends are translated again too.
    const contested = new Set<string>();
    for (const owner of dirty) {
      const t = this.translate(owner);
      raw.set(owner, t);
      const old = this.owners.get(owner);
      for (const fe of old?.claims ?? []) {
        removeFrom(this.claims, fe, owner);
        contested.add(fe);
      }
      for (const f of t.frontends) {
        const fe = frontendText(f.frontend);
        addTo(this.claims, fe, owner);
        contested.add(fe);
      }
    }
    for (const fe of contested) {
      for (const o of this.claims.get(fe) ?? []) if (!raw.has(o)) raw.set(o, this.translate(o));
    }
    // 2. The frontends each keeps, and its share of the active backends.
    const kept = new Map<string, KeyedService[]>();
    const flipped = new Set<string>();
    const settle = (owner: string, t: OwnerTranslation, countActive: boolean) => {
      const warnings = [...t.warnings];
      const mine: KeyedService[] = [];
      for (const f of t.frontends) {
        const fe = frontendText(f.frontend);
        const w = this.winner(fe);
        if (w !== owner) {
          warnings.push(`${owner}: frontend ${fe} is ${w}'s already; left out`);
          continue;
        }
        mine.push(f);
      }
      kept.set(owner, mine);
      const active = new Set<string>();
      const inactive = new Set<string>();
      for (const f of mine) for (const b of f.backends) (b.state === 'active' ? active : inactive).add(backendKey(b));
      for (const k of active) inactive.delete(k);
      const old = this.owners.get(owner);
      if (countActive) {
        for (const k of old?.active ?? []) {
          const n = this.activeCount.get(k)! - 1;
          if (n === 0) {
            this.activeCount.delete(k);
            flipped.add(k);
          } else this.activeCount.set(k, n);
        }
        for (const k of active) {
          const n = (this.activeCount.get(k) ?? 0) + 1;
          this.activeCount.set(k, n);
          if (n === 1) flipped.add(k);
        }
      }
      for (const k of old?.inactive ?? []) removeFrom(this.inactiveUsers, k, owner);
      for (const k of inactive) addTo(this.inactiveUsers, k, owner);
      const state: OwnerState = {
        claims: t.frontends.map((f) => frontendText(f.frontend)),
        keys: old?.keys ?? [],
        active: [...active],
        inactive: [...inactive],
        warnings,
        healthChecks: t.healthChecks,
      };
      this.owners.set(owner, state);
      if (warnings.length) this.withWarnings.add(owner);
      else this.withWarnings.delete(owner);
      if (t.healthChecks.length) this.withHealthChecks.add(owner);
      else this.withHealthChecks.delete(owner);
    };
    for (const [owner, t] of raw) settle(owner, t, true);
    // 3. Services with a backend whose "active somewhere" changed take the new state (their own share is the same).
    for (const k of flipped) {
      for (const o of this.inactiveUsers.get(k) ?? []) {
        if (!raw.has(o)) {
          const t = this.translate(o);
          raw.set(o, t);
          settle(o, t, false);
        }
      }
    }
    // 4. What each of them has in force now.
    const upserts: KeyedService[] = [];
    const removed: string[] = [];
    for (const [owner, mine] of kept) {
      const state = this.owners.get(owner)!;
      for (const f of mine) for (const b of f.backends) if (this.activeCount.has(backendKey(b))) b.state = 'active';
      const keys = mine.map((f) => f.key);
      const now = new Set(keys);
      for (const k of state.keys) if (!now.has(k)) removed.push(k);
      this.frontendCount += keys.length - state.keys.length;
      this.servedCount += (keys.length > 0 ? 1 : 0) - (state.keys.length > 0 ? 1 : 0);
      state.keys = keys;
      upserts.push(...mine);
      if (keys.length === 0 && state.claims.length === 0 && !this.services.has(owner) && !this.slicesOf.has(owner)) {
        this.owners.delete(owner);
        this.withWarnings.delete(owner);
        this.withHealthChecks.delete(owner);
      }
    }
    return { upserts, removed, translated: raw.size };
  }
}
