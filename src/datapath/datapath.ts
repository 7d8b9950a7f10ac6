// Loading the datapath object: sizing its maps, writing its configuration,
// registering devices, reading its counters. The agent builds on this; tests
// use it to run the real programs with BPF_PROG_TEST_RUN.
import * as path from 'node:path';
import { BpfMap, BpfObject, BpfProgram } from 'libbpf-ts';
import { ENUMS, StructView, enumNames } from '../bpf/layouts';
import { parseAddr } from '../net/addr';
import { DEFAULT_CONFIG, DatapathConfig, encodeConfig } from './config';
import { MigrationResult, PinPlanEntry, applyPins, planPins } from './pins';

export const DATAPATH_OBJECT = path.resolve(__dirname, '..', '..', '..', 'bpf', 'build', 'datapath.bpf.o');

export const CT_MAPS = ['tsct_ct4_global', 'tsct_ct_any4_global', 'tsct_ct6_global', 'tsct_ct_any6_global'] as const;
export type CtMapName = (typeof CT_MAPS)[number];

export const MAP_NAMES = [
  ...CT_MAPS,
  'tsct_ct4_ring',
  'tsct_ct_any4_ring',
  'tsct_ct6_ring',
  'tsct_ct_any6_ring',
  'tsct_ct_ring_head',
  'tsct_frag4',
  'tsct_frag6',
  'tsct_devices',
  'tsct_config',
  'tsct_metrics',
  'tsct_gc_state',
  'tsct_snat_v4_external',
  'tsct_snat_v6_external',
  'tsct_masq_src4',
  'tsct_masq_src6',
  'tsct_events',
  'tsct_events_reader',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

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
}

/** Cilium's defaults. */
export const DEFAULT_SIZES: MapSizes = {
  ctTcp: 512 * 1024,
  ctAny: 256 * 1024,
  frag: 8192,
  nat: 512 * 1024,
  events: 1 << 20,
};

export interface MasqueradeSpec {
  /** The address to translate IPv4 sources to (the device's primary address). */
  snat4?: string;
  snat6?: string;
}

export interface LoadOptions {
  sizes?: Partial<MapSizes>;
  config?: Partial<DatapathConfig>;
  objectPath?: string;
  /** Pin every map under this folder (on bpffs), reusing or migrating what is pinned there. */
  pinRoot?: string;
}

export const REASON_NAMES = enumNames('tsct_reason', 'REASON_');

export interface ReasonCount {
  reason: string;
  code: number;
  hook: 'ingress' | 'egress';
  count: number;
  bytes: number;
}

export class Datapath {
  private constructor(
    readonly object: BpfObject,
    readonly maps: Record<MapName, BpfMap>,
    readonly ingress: BpfProgram,
    readonly egress: BpfProgram,
    readonly gc: BpfProgram,
    readonly xdp: BpfProgram,
    readonly sizes: MapSizes,
    private config: DatapathConfig,
    /** What was done with each pinned map, when loaded with pinRoot. */
    readonly pins: PinPlanEntry[] = [],
    readonly migrations: MigrationResult[] = [],
  ) {}

  static async load(opts: LoadOptions = {}): Promise<Datapath> {
    const sizes = { ...DEFAULT_SIZES, ...opts.sizes };
    const obj = BpfObject.open(opts.objectPath ?? DATAPATH_OBJECT);
    try {
      for (const [map, n] of tableSizes(sizes)) obj.setMaxEntries(map, n);
      const pins = opts.pinRoot ? planPins(obj, opts.pinRoot, MAP_NAMES) : [];
      await obj.load();
      const migrations = await applyPins(obj, pins);
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, obj.map(m)])) as Record<MapName, BpfMap>;
      const config = {
        ...DEFAULT_CONFIG,
        ...opts.config,
        timeouts: { ...DEFAULT_CONFIG.timeouts, ...opts.config?.timeouts },
      };
      const progs = [
        obj.program('tsct_ingress'),
        obj.program('tsct_egress'),
        obj.program('tsct_gc'),
        obj.program('tsct_xdp'),
      ] as const;
      const dp = new Datapath(obj, maps, ...progs, sizes, config, pins, migrations);
      dp.writeConfig(dp.config);
      return dp;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  writeConfig(cfg: DatapathConfig): void {
    this.config = cfg;
    const rings: [number, number, number, number] = [
      this.sizes.ctTcp,
      this.sizes.ctAny,
      this.sizes.ctTcp,
      this.sizes.ctAny,
    ];
    this.maps.tsct_config.update(Buffer.alloc(4), encodeConfig(cfg, rings));
  }

  /**
   * Registers a managed device, its zone, whether it masquerades (and to
   * what), and whether the XDP fast path is attached to it (and so may
   * forward to it).
   */
  setDevice(ifindex: number, zone: number, masquerade?: MasqueradeSpec, xdp = false): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(ifindex);
    const v = StructView.alloc('device_info').set('zone', zone);
    const F = ENUMS.device_flag;
    v.set('flags', (masquerade ? F.DEVICE_F_MASQUERADE : 0) | (xdp ? F.DEVICE_F_XDP : 0));
    if (masquerade) {
      if (masquerade.snat4) parseAddr(masquerade.snat4).copy(v.bytes('snat4'));
      if (masquerade.snat6) parseAddr(masquerade.snat6).copy(v.bytes('snat6'));
    }
    this.maps.tsct_devices.update(key, v.buf);
  }

  /**
   * The sources to masquerade (CIDRs); an empty list means every source but
   * the masquerading device's own address (tsct_config's CFG_F_MASQ_ALL_SOURCES).
   */
  setMasqueradeSources(cidrs: string[]): void {
    for (const m of [this.maps.tsct_masq_src4, this.maps.tsct_masq_src6]) for (const k of [...m.keys()]) m.delete(k);
    for (const cidr of cidrs) {
      const [addr, len] = cidr.split('/');
      const bytes = parseAddr(addr);
      const v4 = bytes.length === 4;
      const key = StructView.alloc(v4 ? 'masq4_key' : 'masq6_key');
      key.set('prefixlen', Number(len ?? (v4 ? 32 : 128)));
      bytes.copy(key.bytes('addr'));
      (v4 ? this.maps.tsct_masq_src4 : this.maps.tsct_masq_src6).update(key.buf, Buffer.from([1]));
    }
    this.writeConfig({ ...this.config, masqueradeAll: cidrs.length === 0 });
  }

  removeDevice(ifindex: number): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(ifindex);
    this.maps.tsct_devices.delete(key);
  }

  /** Every non-zero counter of tsct_metrics, summed over CPUs. */
  metrics(): ReasonCount[] {
    return readMetrics(this.maps.tsct_metrics);
  }

  close(): void {
    for (const m of Object.values(this.maps)) m.close();
    this.ingress.close();
    this.egress.close();
    this.gc.close();
    this.xdp.close();
    this.object.close();
  }
}

/** max_entries per map for given sizes: each ring is as large as its table. */
export function tableSizes(s: MapSizes): Array<[string, number]> {
  return [
    ['tsct_ct4_global', s.ctTcp],
    ['tsct_ct4_ring', s.ctTcp],
    ['tsct_ct6_global', s.ctTcp],
    ['tsct_ct6_ring', s.ctTcp],
    ['tsct_ct_any4_global', s.ctAny],
    ['tsct_ct_any4_ring', s.ctAny],
    ['tsct_ct_any6_global', s.ctAny],
    ['tsct_ct_any6_ring', s.ctAny],
    ['tsct_frag4', s.frag],
    ['tsct_frag6', s.frag],
    ['tsct_snat_v4_external', s.nat],
    ['tsct_snat_v6_external', s.nat],
    ['tsct_events', s.events],
  ];
}

export function readMetrics(map: BpfMap): ReasonCount[] {
  const out: ReasonCount[] = [];
  const key = Buffer.alloc(4);
  for (let idx = 0; idx < map.maxEntries; idx++) {
    key.writeUInt32LE(idx);
    const perCpu = map.lookupPerCpu(key);
    if (!perCpu) continue;
    let count = 0;
    let bytes = 0;
    for (const v of perCpu) {
      const s = new StructView('metrics_value', v);
      count += s.u('count');
      bytes += s.u('bytes');
    }
    if (count === 0) continue;
    const code = idx >> 1;
    out.push({
      reason: REASON_NAMES.get(code) ?? `REASON_${code}`,
      code,
      hook: idx & 1 ? 'egress' : 'ingress',
      count,
      bytes,
    });
  }
  return out;
}

/** The counters of the datapath pinned under root. */
export function readPinnedMetrics(root: string): ReasonCount[] {
  const m = BpfMap.openPinned(path.join(root, 'tsct_metrics'));
  try {
    return readMetrics(m);
  } finally {
    m.close();
  }
}

/** One reason's count, summed over hooks unless one is named. */
export function reasonTotal(metrics: ReasonCount[], reason: string, hook?: 'ingress' | 'egress'): number {
  return metrics.filter((m) => m.reason === reason && (!hook || m.hook === hook)).reduce((s, m) => s + m.count, 0);
}
