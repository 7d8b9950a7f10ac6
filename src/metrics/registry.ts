// The agent's Prometheus metrics. Datapath counters live in per-CPU BPF maps
// and are read and summed when Prometheus scrapes; nothing runs per packet in
// user space. Names follow Cilium's, with the tsct_ prefix.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ReasonCount } from './reasons';
import { reasonKind } from './reasonNames';
import { LbServiceStats } from './lbStats';

/** Passed without tracking: by design (not IP, ND), or because a full table let it through. */
const UNTRACKED_REASONS = new Set(['UNTRACKED', 'CT_FULL_PASSED']);
import { GcResult } from '../gc/gcSweep';

export interface MetricsSource {
  /** tsct_metrics, summed over CPUs. */
  reasons(): ReasonCount[];
  lastGc(): GcResult | null;
  gcRuns(): number;
  gcIntervalS(): number;
  /** Sizes of the maps whose fill is reported as pressure. */
  mapSizes(): Record<string, number>;
  /** The load balancer's per-service counters and backends by state; absent where there is no load balancer. */
  lb?: {
    services(): Promise<LbServiceStats[]>;
    backendStates(): Promise<Record<string, number>>;
    /** Service id -> name (namespace/name), where the agent knows one. */
    names(): Map<number, string>;
    tablesRebuilt(): number;
  };
  /** The firewall's counters of the rule set in force, summed per chain; null when none is applied. */
  policy?: () => PolicyCounts | null;
}

export interface PolicyCounts {
  /** Packets and bytes the rules of each chain decided. */
  chains: Map<string, { packets: bigint; bytes: bigint }>;
  /** Packets and bytes each hook's default policy decided. */
  hooks: Record<string, { packets: bigint; bytes: bigint }>;
}

export function buildRegistry(src: MetricsSource): { registry: Registry; gcDuration: Histogram<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tsct_' });
  // prom-client names three gauges *_total (active handles, requests,
  // resources); promtool rightly flags that, and they say little here.
  for (const m of registry.getMetricsAsArray()) {
    if (m.name.endsWith('_total') && (m as unknown as { type?: string }).type !== 'counter')
      registry.removeSingleMetric(m.name);
  }

  // One read of tsct_metrics per scrape, shared by the collectors below.
  let cache: { at: number; rows: ReasonCount[] } = { at: 0, rows: [] };
  const rows = () => {
    const now = Date.now();
    if (now - cache.at > 200) cache = { at: now, rows: src.reasons() };
    return cache.rows;
  };
  const counterFrom = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>) => void) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        fill(this);
      },
    });

  counterFrom('tsct_forward_count_total', 'Packets passed by the datapath, by direction', ['direction'], (c) => {
    for (const r of rows()) if (r.reason === 'FORWARDED') c.inc({ direction: r.hook.toUpperCase() }, r.count);
  });
  counterFrom('tsct_forward_bytes_total', 'Bytes passed by the datapath, by direction', ['direction'], (c) => {
    for (const r of rows()) if (r.reason === 'FORWARDED') c.inc({ direction: r.hook.toUpperCase() }, r.bytes);
  });
  // A packet that passes is never counted as a drop: drops are the DROP_*
  // reasons only; invalid and untracked packets have counters of their own.
  counterFrom('tsct_drop_count_total', 'Packets dropped, by reason and direction', ['reason', 'direction'], (c) => {
    for (const r of rows()) {
      if (reasonKind(r.reason) === 'drop') c.inc({ reason: r.reason, direction: r.hook.toUpperCase() }, r.count);
    }
  });
  counterFrom(
    'tsct_drop_bytes_total',
    'Bytes of the packets counted in tsct_drop_count_total',
    ['reason', 'direction'],
    (c) => {
      for (const r of rows()) {
        if (reasonKind(r.reason) === 'drop') c.inc({ reason: r.reason, direction: r.hook.toUpperCase() }, r.bytes);
      }
    },
  );
  counterFrom(
    'tsct_invalid_count_total',
    'Packets whose ct_state was inv, by reason and direction: passed, unless --bpf-ct-drop-invalid (then also DROP_INVALID)',
    ['reason', 'direction'],
    (c) => {
      for (const r of rows()) {
        if (reasonKind(r.reason) === 'invalid') c.inc({ reason: r.reason, direction: r.hook.toUpperCase() }, r.count);
      }
    },
  );
  counterFrom(
    'tsct_untracked_count_total',
    'Packets passed untracked, by reason: UNTRACKED (not tracked by design: not IP, ND, MLD), ' +
      'CT_FULL_PASSED (a full table, with --bpf-ct-full-pass-untracked)',
    ['reason', 'direction'],
    (c) => {
      for (const r of rows()) {
        if (UNTRACKED_REASONS.has(r.reason)) c.inc({ reason: r.reason, direction: r.hook.toUpperCase() }, r.count);
      }
    },
  );
  counterFrom(
    'tsct_datapath_conntrack_created_total',
    'Connections created; its rate is new connections per second',
    ['direction'],
    (c) => {
      for (const r of rows()) if (r.reason === 'CT_NEW') c.inc({ direction: r.hook.toUpperCase() }, r.count);
    },
  );
  counterFrom(
    'tsct_datapath_events_total',
    'Other datapath events, by kind (related ICMP, evictions, NAT translations, ...)',
    ['event', 'direction'],
    (c) => {
      for (const r of rows())
        if (
          reasonKind(r.reason) === 'event' &&
          !UNTRACKED_REASONS.has(r.reason) &&
          r.reason !== 'FORWARDED' &&
          r.reason !== 'CT_NEW'
        )
          c.inc({ event: r.reason, direction: r.hook.toUpperCase() }, r.count);
    },
  );
  counterFrom('tsct_nat_port_allocation_retries_total', 'Ports tried and found taken while masquerading', [], (c) => {
    for (const r of rows()) if (r.reason === 'NAT_PORT_RETRY') c.inc(r.bytes);
  });
  counterFrom(
    'tsct_nat_port_allocation_failures_total',
    'New connections dropped because no NAT port was free',
    [],
    (c) => {
      for (const r of rows()) if (r.reason === 'DROP_NAT_PORT_EXHAUSTED') c.inc(r.count);
    },
  );

  counterFrom('tsct_datapath_conntrack_gc_runs_total', 'Garbage collection sweeps', ['status'], (c) => {
    c.inc({ status: 'completed' }, src.gcRuns());
  });
  new Gauge({
    name: 'tsct_datapath_conntrack_gc_entries',
    help: 'Connections found by the last sweep, alive or deleted, by family and protocol',
    labelNames: ['family', 'protocol', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of src.lastGc()?.tables ?? []) {
        const labels = { family: `ipv${t.family}`, protocol: t.proto };
        this.set({ ...labels, status: 'alive' }, t.alive);
        this.set({ ...labels, status: 'deleted' }, t.deleted);
      }
    },
  });
  new Gauge({
    name: 'tsct_datapath_conntrack_connections',
    help: 'Connections alive at the last sweep, by family, protocol and TCP state',
    labelNames: ['family', 'protocol', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of src.lastGc()?.tables ?? []) {
        if (t.proto === 'TCP')
          for (const [state, n] of Object.entries(t.aliveByState))
            this.set({ family: `ipv${t.family}`, protocol: 'TCP', state }, n);
        else this.set({ family: `ipv${t.family}`, protocol: t.proto, state: 'none' }, t.alive);
      }
    },
  });
  new Gauge({
    name: 'tsct_datapath_conntrack_gc_interval_seconds',
    help: 'Interval until the next sweep',
    registers: [registry],
    collect() {
      this.set(src.gcIntervalS());
    },
  });
  const gcDuration = new Histogram({
    name: 'tsct_datapath_conntrack_gc_duration_seconds',
    help: 'Duration of garbage collection sweeps',
    labelNames: ['status'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: 'tsct_bpf_map_pressure',
    help: 'Fill of a map, entries over its size (connection and NAT tables, as of the last sweep)',
    labelNames: ['map_name'],
    registers: [registry],
    collect() {
      this.reset();
      const gc = src.lastGc();
      if (!gc) return;
      const sizes = src.mapSizes();
      for (const t of gc.tables) if (sizes[t.map]) this.set({ map_name: t.map }, t.alive / sizes[t.map]);
      for (const [fam, map] of [
        [4, 'tsct_snat_v4_external'],
        [6, 'tsct_snat_v6_external'],
      ] as const) {
        if (sizes[map]) this.set({ map_name: map }, gc.natAlive[fam] / sizes[map]);
      }
    },
  });
  if (src.lb) addLbMetrics(registry, src.lb);
  if (src.policy) addPolicyMetrics(registry, src.policy);
  return { registry, gcDuration };
}

/** Per chain and per hook, not per rule: 10,000 rules are a handful of series (tsct policy list has the rules). */
function addPolicyMetrics(registry: Registry, policy: () => PolicyCounts | null): void {
  let cache: { at: number; counts: PolicyCounts | null } = { at: 0, counts: null };
  const counts = () => {
    const now = Date.now();
    if (now - cache.at > 200) cache = { at: now, counts: policy() };
    return cache.counts;
  };
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (c: Counter<string>, p: PolicyCounts) => void,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        const p = counts();
        if (p) fill(this, p);
      },
    });
  for (const field of ['packets', 'bytes'] as const) {
    counter(
      `tsct_policy_chain_${field}_total`,
      `${field} the firewall's rules of each chain decided`,
      ['chain'],
      (c, p) => {
        for (const [chain, v] of p.chains) c.inc({ chain }, Number(v[field]));
      },
    );
    counter(`tsct_policy_default_${field}_total`, `${field} each hook's default policy decided`, ['hook'], (c, p) => {
      for (const [hook, v] of Object.entries(p.hooks)) c.inc({ hook }, Number(v[field]));
    });
  }
}

/** Per service: by id and, where known, name (bounded by the number of services, at most 65535). */
function addLbMetrics(registry: Registry, lb: NonNullable<MetricsSource['lb']>): void {
  const perService = (name: string, help: string, field: 'packets' | 'bytes' | 'connections') =>
    new Counter({
      name,
      help,
      labelNames: ['service_id', 'service'],
      registers: [registry],
      async collect() {
        this.reset();
        const names = lb.names();
        for (const s of await lb.services()) {
          this.inc({ service_id: String(s.id), service: names.get(s.id) ?? '' }, s[field]);
        }
      },
    });
  perService('tsct_lb_service_packets_total', 'Packets to and from each service (requests and replies)', 'packets');
  perService('tsct_lb_service_bytes_total', 'Bytes to and from each service', 'bytes');
  perService('tsct_lb_service_connections_total', 'New connections each service sent to a backend', 'connections');
  new Gauge({
    name: 'tsct_lb_backends',
    help: 'Backends programmed, by state (active, terminating, quarantined, maintenance)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [state, n] of Object.entries(await lb.backendStates())) this.set({ state }, n);
    },
  });
  new Counter({
    name: 'tsct_lb_maglev_table_rebuilds_total',
    help: 'Backend tables the agent rebuilt and swapped in',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(lb.tablesRebuilt());
    },
  });
}
