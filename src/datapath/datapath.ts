// Loading the datapath object: sizing its maps, writing its configuration,
// registering devices, reading its counters. The agent builds on this; tests
// use it to run the real programs with BPF_PROG_TEST_RUN.
import * as path from 'node:path';
import { BpfMap, BpfObject, BpfProgram } from 'libbpf-ts';
import { ENUMS, StructView } from '../bpf/layouts';
import { parseAddr } from '../net/addr';
import { DEFAULT_CONFIG, DatapathConfig, encodeConfig } from './config';
import { MigrationResult, PinPlanEntry, applyPins, planPins } from './pins';
import { DEFAULT_SIZES, MAP_NAMES, MapName, MapSizes, PROGRAM_PINS, ringSizes, tableSizes } from './tables';
import * as fs from 'node:fs';
import { ReasonCount, readMetrics } from '../metrics/reasons';

export const DATAPATH_OBJECT = path.resolve(__dirname, '..', '..', '..', 'bpf', 'build', 'datapath.bpf.o');

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

export class Datapath {
  private constructor(
    readonly object: BpfObject,
    readonly maps: Record<MapName, BpfMap>,
    readonly ingress: BpfProgram,
    readonly egress: BpfProgram,
    readonly gc: BpfProgram,
    readonly xdp: BpfProgram,
    /** SEC("syscall") tsct_nat_forget: a connection forgets its mapping, atomically. */
    readonly natForget: BpfProgram,
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
        obj.program('tsct_nat_forget'),
      ] as const;
      const dp = new Datapath(obj, maps, ...progs, sizes, config, pins, migrations);
      dp.writeConfig(dp.config);
      if (opts.pinRoot) dp.pinPrograms(opts.pinRoot);
      return dp;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  writeConfig(cfg: DatapathConfig): void {
    this.config = cfg;
    this.maps.tsct_config.update(Buffer.alloc(4), encodeConfig(cfg, ringSizes(this.sizes)));
  }

  /**
   * Registers a managed device, its zone, whether it masquerades (and to
   * what), whether the XDP fast path is attached to it (and so may forward
   * to it), and its own addresses.
   */
  setDevice(ifindex: number, zone: number, masquerade?: MasqueradeSpec, xdp = false, own?: MasqueradeSpec): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(ifindex);
    const v = StructView.alloc('device_info').set('zone', zone);
    const F = ENUMS.device_flag;
    v.set('flags', (masquerade ? F.DEVICE_F_MASQUERADE : 0) | (xdp ? F.DEVICE_F_XDP : 0));
    // A device that does not masquerade records its own address all the same: the load balancer's full
    // NAT translates to it, and a reply to it is looked up among the translations.
    const addrs = masquerade ?? own;
    if (addrs?.snat4) parseAddr(addrs.snat4).copy(v.bytes('snat4'));
    if (addrs?.snat6) parseAddr(addrs.snat6).copy(v.bytes('snat6'));
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

  /** Pins the programs the CLI runs (PROGRAM_PINS), replacing an earlier version's. */
  private pinPrograms(root: string): void {
    for (const name of PROGRAM_PINS) {
      const p = path.join(root, name);
      fs.rmSync(p, { force: true });
      const prog = this.object.program(name);
      try {
        prog.pin(p);
      } finally {
        prog.close();
      }
    }
  }

  close(): void {
    for (const m of Object.values(this.maps)) m.close();
    this.ingress.close();
    this.egress.close();
    this.gc.close();
    this.xdp.close();
    this.natForget.close();
    this.object.close();
  }
}
