// The one registry of the datapath's tables: each connection and NAT table
// with its family, protocol, enum ct_table slot, the flag that sizes it and
// the maps sized with it. The map list, the sizes, the GC's tables and the
// CLI's lookups all derive from this.
import { ENUMS } from '../bpf/layouts';

export type Family = 4 | 6;

/** The compiled defaults of bpf/include/common.h (enum tsct_default), through BTF. */
export const DEFAULTS = ENUMS.tsct_default;

export interface MapSizes {
  /** --bpf-ct-global-tcp-max */
  ctTcp: number;
  /** --bpf-ct-global-any-max */
  ctAny: number;
  frag: number;
  /** --bpf-nat-global-max */
  nat: number;
  /** Bytes of the event ring buffer (a power of 2, at least a page). */
  events: number;
  /** --bpf-lb-map-max: services (each family), backends. */
  lb: number;
  /** --bpf-lb-affinity-map-max */
  lbAffinity: number;
  /** --bpf-lb-maglev-map-max: slots for the backend tables of all services together. */
  lbMaglevSlots: number;
}

/** Cilium's defaults, as compiled into the object. */
export const DEFAULT_SIZES: MapSizes = {
  ctTcp: DEFAULTS.DEFAULT_CT_MAP_TCP,
  ctAny: DEFAULTS.DEFAULT_CT_MAP_ANY,
  frag: DEFAULTS.DEFAULT_FRAG_MAP,
  nat: DEFAULTS.DEFAULT_NAT_MAP,
  events: DEFAULTS.DEFAULT_EVENTS_RING,
  lb: DEFAULTS.DEFAULT_LB_MAP,
  lbAffinity: DEFAULTS.DEFAULT_LB_MAP,
  lbMaglevSlots: DEFAULTS.DEFAULT_LB_MAGLEV_SLOTS,
};

export const CT_TABLES = [
  { map: 'tsct_ct4_global', ring: 'tsct_ct4_ring', family: 4, tcp: true, table: ENUMS.ct_table.CT_TABLE_TCP4 },
  { map: 'tsct_ct_any4_global', ring: 'tsct_ct_any4_ring', family: 4, tcp: false, table: ENUMS.ct_table.CT_TABLE_ANY4 },
  { map: 'tsct_ct6_global', ring: 'tsct_ct6_ring', family: 6, tcp: true, table: ENUMS.ct_table.CT_TABLE_TCP6 },
  { map: 'tsct_ct_any6_global', ring: 'tsct_ct_any6_ring', family: 6, tcp: false, table: ENUMS.ct_table.CT_TABLE_ANY6 },
] as const;

export type CtTableSpec = (typeof CT_TABLES)[number];
export type CtMapName = CtTableSpec['map'];
export const CT_MAPS: readonly CtMapName[] = CT_TABLES.map((t) => t.map);

export const NAT_TABLES = [
  { map: 'tsct_snat_v4_external', family: 4 },
  { map: 'tsct_snat_v6_external', family: 6 },
] as const;
export type NatMapName = (typeof NAT_TABLES)[number]['map'];

/** The service load balancer's maps (bpf/include/maps.h). */
export const LB_MAPS = [
  'tsct_lb4_services',
  'tsct_lb6_services',
  'tsct_lb_backends',
  'tsct_lb_reverse_nat',
  'tsct_lb_members',
  'tsct_lb_maglev',
  'tsct_lb_affinity',
  'tsct_lb_stats',
] as const;
export type LbMapName = (typeof LB_MAPS)[number];

/** loadBalancerSourceRanges, per family (src/lb/sourceRanges.ts writes them). */
export const LB_SOURCE_RANGE_MAPS = ['tsct_lb4_source_range', 'tsct_lb6_source_range'] as const;

/** The stateful firewall's maps (src/policy/policyMaps.ts writes them). */
export const FW_MAPS = [
  'tsct_fw_control',
  'tsct_fw_hooks',
  'tsct_fw_ct_state',
  'tsct_fw_addr',
  'tsct_fw_port',
  'tsct_fw_devices',
  'tsct_fw_judged',
  'tsct_fw_residual',
  'tsct_fw_vectors',
  'tsct_fw_vector_words',
  'tsct_fw_rules',
  'tsct_fw_counters',
  'tsct_fw_policy_counters',
] as const;
export type FwMapName = (typeof FW_MAPS)[number];

/** Every map the agent pins, and so reuses, migrates and uninstalls. Scratch maps are per load: not pinned. */
export const MAP_NAMES = [
  ...CT_TABLES.map((t) => t.map),
  ...CT_TABLES.map((t) => t.ring),
  'tsct_ct_ring_head',
  'tsct_frag4',
  'tsct_frag6',
  'tsct_devices',
  'tsct_config',
  'tsct_metrics',
  'tsct_gc_state',
  'tsct_gc_wake',
  ...NAT_TABLES.map((t) => t.map),
  'tsct_masq_src4',
  'tsct_masq_src6',
  'tsct_events',
  'tsct_events_reader',
  ...LB_MAPS,
  ...LB_SOURCE_RANGE_MAPS,
  ...FW_MAPS,
] as const;
export type MapName = (typeof MAP_NAMES)[number];

/** Programs pinned next to the maps for the CLI to run: SEC("syscall") programs that change entries in the kernel. */
export const PROGRAM_PINS = ['tsct_nat_forget'] as const;

/** The table a connection of this family and protocol lives in (ct_map_for in bpf/include/ct_map.h). */
export function ctTableFor(family: Family, proto: number): CtTableSpec {
  return CT_TABLES.find((t) => t.family === family && t.tcp === (proto === 6))!;
}

export function ctMapFor(family: Family, proto: number): CtMapName {
  return ctTableFor(family, proto).map;
}

export function natMapFor(family: Family): NatMapName {
  return NAT_TABLES.find((t) => t.family === family)!.map;
}

/** max_entries per map for given sizes: each ring is as large as its table. */
export function tableSizes(s: MapSizes): Array<[string, number]> {
  return [
    ...CT_TABLES.flatMap((t): Array<[string, number]> => {
      const n = t.tcp ? s.ctTcp : s.ctAny;
      return [
        [t.map, n],
        [t.ring, n],
      ];
    }),
    ['tsct_frag4', s.frag],
    ['tsct_frag6', s.frag],
    ...NAT_TABLES.map((t): [string, number] => [t.map, s.nat]),
    ['tsct_events', s.events],
    ['tsct_lb4_services', s.lb],
    ['tsct_lb6_services', s.lb],
    ['tsct_lb_backends', s.lb],
    ['tsct_lb_members', s.lb],
    ['tsct_lb_affinity', s.lbAffinity],
    ['tsct_lb_maglev', s.lbMaglevSlots],
  ];
}

/** The rings' sizes in enum ct_table order, as tsct_config.ring_size takes them. */
export function ringSizes(s: MapSizes): number[] {
  const out: number[] = [];
  for (const t of CT_TABLES) out[t.table] = t.tcp ? s.ctTcp : s.ctAny;
  return out;
}
