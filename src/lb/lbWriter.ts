// Programs the load balancer's maps from a list of services, changing only the entries that differ, in an order
// that never shows a packet half a service:
//   1. backend entries (tsct_lb_backends[id]) and member entries (tsct_lb_members) that are new or changed;
//   2. per service, its new table into a free range of tsct_lb_maglev, then tsct_lb_reverse_nat[id], then the
//      service entry in one update that points at the new range;
//   3. wildcard entries of new VIPs (not of addresses that have only NodePort frontends: a node address's other
//      ports are the node's own, its kubelet's or SSH's, which kube-proxy leaves alone too);
//   4. only then removals: service and wildcard entries no longer wanted, reverse NAT of removed ids, members and
//      backends no longer used (a backend's array entry is zeroed: LB_BE_NONE), and the old ranges are freed.
// Old ranges are freed at the end of an apply, never reused within it: a packet that read a service entry just
// before it changed may still be reading the old range.
//
// apply(all) makes the maps hold exactly a list of services (a start, a full resync, the CLI); applyChanges(upserts,
// removedIds) changes only those services and costs only their entries (the agent's Kubernetes events): the
// writer keeps, per service, its members, and per backend and per VIP how many services use them.
//
// The writer keeps a mirror of what it wrote and can rebuild it from the maps (restore), so that the agent and
// the CLI can program the same pinned maps, and a restarted agent rewrites nothing that is unchanged. The maps do
// not hold the backends' Maglev names, so a restored table's names are checked against its content the first time
// a service is applied again (its table is built and compared with the slots in the map; nothing is written when
// they agree).
import { ENUMS, StructView } from '../bpf/layouts';
import { LB_MAPS, LbMapName } from '../datapath/tables';
import { UsageError } from '../errors';
import { formatAddr, parseAddr } from '../net/addr';
import { buildMaglevTable, maglevTableSizeFor } from './maglev';
import {
  backendKey,
  backendName,
  canonicalAddr,
  familyOfAddr,
  frontendText,
  isCanonicalIPv4,
  LB_BACKEND_STATES,
  LB_PROTO_NUMBERS,
  LbAlgorithm,
  LbBackend,
  LbBackendState,
  LbService,
  LbServiceType,
  protoName,
  tableBackends,
  validateServices,
} from './lbService';

/** What the writer needs of a map: BpfMap has it, and so can an in-memory fake. */
export interface LbMapLike {
  readonly maxEntries: number;
  /** Bytes of a value as lookups return it and updates take it (per-CPU maps: all CPUs' values). */
  readonly valueStride: number;
  lookup(key: Buffer): Buffer | null;
  update(key: Buffer, value: Buffer): void;
  delete(key: Buffer): boolean;
  updateBatch(keys: Buffer, values: Buffer): Promise<number>;
  /** Every entry; the Buffers may be views that the next step reuses. */
  entries(): AsyncIterable<[Buffer, Buffer]>;
  /** Array maps created with BPF_F_MMAPABLE: the values as shared memory (each rounded up to 8 bytes). */
  mmap?(): ArrayBuffer;
}

export type LbMaps = Record<LbMapName, LbMapLike>;

export interface LbWriterOptions {
  /** One M for every Maglev service (--bpf-lb-maglev-table-size); else maglevTableSizeFor(its backend count). */
  maglevTableSize?: number;
  /** The murmur3 seed of the tables: parseMaglevHashSeed(...).murmur. Every node must use the same. */
  hashSeed: number;
}

export interface LbWrites {
  /** Service and wildcard entries, both families. */
  services: number;
  backends: number;
  members: number;
  revNat: number;
  /** Slots of tsct_lb_maglev. */
  slots: number;
}

export interface LbRemovals {
  services: number;
  backends: number;
  members: number;
  revNat: number;
  /** Session affinity entries of removed services. */
  affinity: number;
  /** Counters of removed services zeroed, so that an id given to a new service starts from nothing. */
  stats: number;
}

export interface LbApplyResult {
  written: LbWrites;
  removed: LbRemovals;
  tablesRebuilt: number;
  /** Slots of tsct_lb_maglev given back (bookkeeping: nothing is written for them). */
  slotsFreed: number;
  /** Ids of the services whose model was new or differed from the one in force (whether or not an entry changed). */
  changedIds: number[];
}

/** How many map entries an apply wrote or removed, all maps together. */
export function lbTouched(r: LbApplyResult): number {
  const sum = (o: object) => Object.values(o).reduce((a: number, b: number) => a + b, 0);
  return sum(r.written) + sum(r.removed);
}

/** A service entry of tsct_lb4/6_services as the bpf lb listing shows it. */
export interface LbEntryView {
  family: 4 | 6;
  addr: string;
  port: number;
  /** The protocol number (0 for a wildcard). */
  proto: number;
  revNatId: number;
  flags: number;
  algorithm: number;
  tableOffset: number;
  tableSize: number;
  affinityTimeout: number;
  /** The service's members in slot order (active first), each with its backend entry when there is one. */
  backends: Array<{ id: number; addr?: string; port?: number; state?: LbBackendState }>;
}

const SF = ENUMS.lb_service_flag;
const BS = ENUMS.lb_backend_state;
const ALG = ENUMS.lb_algorithm;
const MF = ENUMS.lb_member_flag;

const STATE_VALUES: Record<LbBackendState, number> = {
  active: BS.LB_BE_ACTIVE,
  terminating: BS.LB_BE_TERMINATING,
  quarantined: BS.LB_BE_QUARANTINED,
  maintenance: BS.LB_BE_MAINTENANCE,
};
const TYPE_FLAGS: Record<LbServiceType, number> = {
  ClusterIP: 0,
  NodePort: SF.LB_SVC_F_NODEPORT,
  ExternalIP: SF.LB_SVC_F_EXTERNAL_IP,
  LoadBalancer: SF.LB_SVC_F_LOADBALANCER,
};
const ALGORITHM_VALUES: Record<LbAlgorithm, number> = { maglev: ALG.LB_ALG_MAGLEV, random: ALG.LB_ALG_RANDOM };

function stateName(v: number): LbBackendState | undefined {
  return LB_BACKEND_STATES.find((s) => STATE_VALUES[s] === v);
}

/** Slot order of a service's members: active first, then terminating, quarantined, maintenance; by id within. */
function memberOrder(a: { id: number; state?: LbBackendState }, b: { id: number; state?: LbBackendState }): number {
  const rank = (s?: LbBackendState) => (s === undefined ? LB_BACKEND_STATES.length : LB_BACKEND_STATES.indexOf(s));
  return rank(a.state) - rank(b.state) || a.id - b.id;
}

/**
 * Free ranges of tsct_lb_maglev: first fit over [0, total), merged when freed. Ranges are few (about one per
 * service), so a sorted list is enough.
 */
export class SlotAllocator {
  private free: Array<[number, number]>;

  constructor(
    readonly total: number,
    free?: ReadonlyArray<readonly [number, number]>,
  ) {
    this.free = free ? free.map(([a, b]) => [a, b]) : total > 0 ? [[0, total]] : [];
  }

  clone(): SlotAllocator {
    return new SlotAllocator(this.total, this.free);
  }

  get freeSlots(): number {
    return this.free.reduce((n, [a, b]) => n + b - a, 0);
  }

  get largestFree(): number {
    return this.free.reduce((n, [a, b]) => Math.max(n, b - a), 0);
  }

  /** The first free range of `size` slots, taken; undefined when none is large enough. */
  alloc(size: number): number | undefined {
    const i = this.free.findIndex(([a, b]) => b - a >= size);
    if (i < 0) return undefined;
    const at = this.free[i][0];
    this.take(i, at, size);
    return at;
  }

  /** Takes [offset, offset + size) if it is all free (restoring what a service entry points at). */
  markUsed(offset: number, size: number): boolean {
    const i = this.free.findIndex(([a, b]) => a <= offset && offset + size <= b);
    if (i < 0) return false;
    this.take(i, offset, size);
    return true;
  }

  release(offset: number, size: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i][0] < offset) i++;
    this.free.splice(i, 0, [offset, offset + size]);
    // Merge with the neighbours it touches.
    if (i + 1 < this.free.length && this.free[i][1] === this.free[i + 1][0]) {
      this.free[i][1] = this.free[i + 1][1];
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1][1] === this.free[i][0]) {
      this.free[i - 1][1] = this.free[i][1];
      this.free.splice(i, 1);
    }
  }

  private take(i: number, offset: number, size: number): void {
    const [a, b] = this.free[i];
    const parts: Array<[number, number]> = [];
    if (offset > a) parts.push([a, offset]);
    if (offset + size < b) parts.push([offset + size, b]);
    this.free.splice(i, 1, ...parts);
  }
}

interface EntryMirror {
  family: 4 | 6;
  key: Buffer;
  value: Buffer;
}

interface TableState {
  offset: number;
  size: number;
  /** What the table was built from (algorithm, M, names, ids, weights); null when restored (names unknown). */
  signature: string | null;
  /** The same without the names, which the maps do not hold. */
  nameless: string;
  /** Whether this service owns [offset, offset + size): false for a restored range that overlapped another. */
  owned: boolean;
}

interface ServiceState {
  model: LbService;
  /** Whether the model's names and source ranges are the user's (false: decoded from the maps). */
  known: boolean;
  entryId: string;
  table: TableState;
}

interface MaglevInput {
  name: string;
  id: number;
  weight: number;
}

interface TablePlan {
  algorithm: LbAlgorithm;
  size: number;
  members: MaglevInput[];
  signature: string;
  nameless: string;
}

interface ServiceStep {
  id: number;
  /** A new table: written to [offset, offset + slots.length) before the service entry changes. */
  /**
   * A new table in [offset, offset + size), written before the service entry changes: already written when the
   * slot array is mapped (a free range no entry points at: see planService), else `slots`, written by execute.
   */
  table?: { offset: number; size: number; slots?: Uint32Array };
  revNat?: Buffer;
  entry?: EntryMirror;
}

interface Plan {
  /** Id, key (ADDR:PORT), state, and the backend (for its value, built when written). */
  backendWrites: Array<[number, string, LbBackendState, LbBackend]>;
  /** Member codes (memberCode) and value codes (memberValueCode). */
  memberWrites: Array<[number, number]>;
  steps: ServiceStep[];
  wildcardWrites: EntryMirror[];
  entryRemovals: EntryMirror[];
  revNatRemovals: number[];
  memberRemovals: number[];
  /** Restored member keys that are no member code (pad bytes set): removed. */
  oddMemberRemovals: Buffer[];
  backendRemovals: number[];
  rangesToFree: Array<[number, number]>;
  removedIds: number[];
  /** The services after the apply: all of them (apply), or only the changed ones, null for removed (applyChanges). */
  services: Map<number, ServiceState | null>;
  delta: boolean;
  backendIds: Map<string, number>;
  /** New backend ids: how many of the writer's free ids the plan takes (lowest first), then ids from `top` on. */
  freeTaken: number;
  top: number;
  changedIds: number[];
}

function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function entryId(family: 4 | 6, key: Buffer): string {
  return `${family}:${key.toString('hex')}`;
}

function serviceKey(family: 4 | 6, addr: string, port: number, proto: number): Buffer {
  const k = StructView.alloc(family === 4 ? 'lb4_key' : 'lb6_key');
  parseAddr(addr).copy(k.bytes('addr'));
  k.bytes('port').writeUInt16BE(port);
  k.set('proto', proto);
  return k.buf;
}

function decodeServiceKey(family: 4 | 6, key: Buffer): { addr: string; port: number; proto: number } {
  const k = new StructView(family === 4 ? 'lb4_key' : 'lb6_key', key);
  return { addr: formatAddr(Buffer.from(k.bytes('addr'))), port: k.bytes('port').readUInt16BE(), proto: k.u('proto') };
}

/** A canonical address into its field: IPv4 (no colon) by hand, the writer's hottest path in a full sync. */
function addrField(addr: string, field: Buffer): void {
  if (!addr.includes(':')) {
    let at = 0;
    let n = 0;
    for (let i = 0; i < addr.length; i++) {
      const c = addr.charCodeAt(i);
      if (c === 46) {
        field[at++] = n;
        n = 0;
      } else n = n * 10 + (c - 48);
    }
    field[at] = n;
    return;
  }
  parseAddr(addr).copy(field);
}

function fieldAddr(family: number, field: Buffer): string {
  return formatAddr(Buffer.from(field.subarray(0, family === 4 ? 4 : 16)));
}

function backendValue(b: LbBackend): Buffer {
  const buf = Buffer.alloc(StructView.sizeOf('lb_backend'));
  backendValueInto(b, buf);
  return buf;
}

/** A backend's value written into `buf` (zeroed, of lb_backend's size). */
function backendValueInto(b: LbBackend, buf: Buffer): void {
  const v = new StructView('lb_backend', buf);
  addrField(b.addr, v.bytes('addr'));
  v.bytes('port').writeUInt16BE(b.port);
  v.set('family', familyOfAddr(b.addr));
  v.set('state', STATE_VALUES[b.state]);
}

function revNatValue(svc: LbService): Buffer {
  const v = StructView.alloc('lb_reverse_nat');
  addrField(svc.frontend.addr, v.bytes('addr'));
  v.bytes('port').writeUInt16BE(svc.frontend.port);
  v.set('family', familyOfAddr(svc.frontend.addr));
  return v.buf;
}

function memberKey(backendId: number, serviceId: number): Buffer {
  return StructView.alloc('lb_member_key').set('backend_id', backendId).set('rev_nat_index', serviceId).buf;
}

// The writer's mirror of tsct_lb_members holds numbers, not Buffers: a hundred thousand members were two Buffers
// and a hex string each. A member key (backend id u32, service id u16, pad 0) is backendId * 2^16 + serviceId, an
// exact integer; a value (weight u16, flags u8, pad 0) is weight + flags * 2^16, with MEMBER_ODD set for a
// restored value whose pad is not 0 (so that no wanted value equals it and it is written again).
const MEMBER_ODD = 1 << 24;

function memberCode(backendId: number, serviceId: number): number {
  return backendId * 0x10000 + serviceId;
}

function memberKeyOf(code: number): Buffer {
  return memberKey(Math.floor(code / 0x10000), code % 0x10000);
}

function memberValueCode(b: LbBackend): number {
  return b.weight + (b.local ? MF.LB_MEMBER_F_LOCAL : 0) * 0x10000;
}

/** Two services' models say the same (the writer's model is normalized: a caller's equal one is then canonical). */
function sameService(a: LbService, b: LbService): boolean {
  if (
    a.id !== b.id ||
    a.name !== b.name ||
    a.frontend.addr !== b.frontend.addr ||
    a.frontend.port !== b.frontend.port ||
    a.frontend.proto !== b.frontend.proto ||
    a.type !== b.type ||
    a.algorithm !== b.algorithm ||
    a.affinityTimeoutS !== b.affinityTimeoutS ||
    a.trafficPolicy !== b.trafficPolicy ||
    a.fullNat !== b.fullNat ||
    a.sourceRanges.length !== b.sourceRanges.length ||
    a.backends.length !== b.backends.length
  ) {
    return false;
  }
  for (let i = 0; i < a.sourceRanges.length; i++) if (a.sourceRanges[i] !== b.sourceRanges[i]) return false;
  for (let i = 0; i < a.backends.length; i++) {
    const x = a.backends[i];
    const y = b.backends[i];
    if (
      x.addr !== y.addr ||
      x.port !== y.port ||
      x.state !== y.state ||
      x.weight !== y.weight ||
      x.local !== y.local ||
      x.name !== y.name
    ) {
      return false;
    }
  }
  return true;
}

function serviceFlags(svc: LbService): number {
  return (
    (svc.affinityTimeoutS > 0 ? SF.LB_SVC_F_AFFINITY : 0) |
    (svc.trafficPolicy === 'local' ? SF.LB_SVC_F_LOCAL : 0) |
    (svc.sourceRanges.length > 0 ? SF.LB_SVC_F_SOURCE_RANGE : 0) |
    TYPE_FLAGS[svc.type] |
    (svc.fullNat ? SF.LB_SVC_F_SNAT : 0)
  );
}

function serviceValue(svc: LbService, offset: number, size: number): Buffer {
  return StructView.alloc('lb_service')
    .set('table_offset', offset)
    .set('table_size', size)
    .set('affinity_timeout', svc.affinityTimeoutS)
    .set('rev_nat_index', svc.id)
    .set('algorithm', ALGORITHM_VALUES[svc.algorithm])
    .set('flags', serviceFlags(svc)).buf;
}

function wildcardValue(): Buffer {
  return StructView.alloc('lb_service').set('flags', SF.LB_SVC_F_WILDCARD).buf;
}

function isZero(b: Buffer): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

/** Whether every address of a service is canonical already (then an adopted service needs no copy). */
function isCanonical(svc: LbService): boolean {
  const ok = (a: string) => {
    if (isCanonicalIPv4(a)) return true;
    try {
      return a.includes(':') && canonicalAddr('', a) === a;
    } catch {
      return false; // normalize says what is wrong with it
    }
  };
  return ok(svc.frontend.addr) && svc.backends.every((b) => ok(b.addr));
}

/** A deep copy with canonical addresses, so that the caller's later changes do not reach the writer's mirror. */
function normalize(svc: LbService): LbService {
  const canon = (a: string) => canonicalAddr(`service ${svc.id}`, a);
  return {
    ...svc,
    frontend: { ...svc.frontend, addr: canon(svc.frontend.addr) },
    sourceRanges: [...svc.sourceRanges],
    backends: svc.backends.map((b) => ({ ...b, addr: canon(b.addr) })),
  };
}

function emptyResult(): LbApplyResult {
  return {
    written: { services: 0, backends: 0, members: 0, revNat: 0, slots: 0 },
    removed: { services: 0, backends: 0, members: 0, revNat: 0, affinity: 0, stats: 0 },
    tablesRebuilt: 0,
    slotsFreed: 0,
    changedIds: [],
  };
}

/** Whether a service's VIP gets a wildcard entry: not a NodePort's (a node address's other ports are the node's). */
function wantsWildcard(svc: LbService): boolean {
  return svc.type !== 'NodePort';
}

function emptyPlan(delta: boolean, top: number): Plan {
  return {
    backendWrites: [],
    memberWrites: [],
    steps: [],
    wildcardWrites: [],
    entryRemovals: [],
    revNatRemovals: [],
    memberRemovals: [],
    oddMemberRemovals: [],
    backendRemovals: [],
    rangesToFree: [],
    removedIds: [],
    services: new Map(),
    delta,
    backendIds: new Map(),
    freeTaken: 0,
    top,
    changedIds: [],
  };
}

/** Up to this many entries are written one update each: a batch call costs more than a few single updates. */
const SINGLE_UPDATES_MAX = 32;

/** n entries (keys and values back to back) in one batch call, or one update each when they are few. */
async function writeSome(map: LbMapLike, keys: Buffer, values: Buffer, n: number): Promise<void> {
  if (n > SINGLE_UPDATES_MAX) {
    await map.updateBatch(keys, values);
    return;
  }
  const ks = keys.length / n;
  const vs = values.length / n;
  for (let i = 0; i < n; i++) map.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs));
}

/** Slots written per batch call when tables are written (4 MiB of keys and values). */
const TABLE_BATCH_SLOTS = 1 << 19;

export class LbWriter {
  /** Every non-empty entry of both services maps (services, wildcards, and whatever else is there). */
  private entries = new Map<string, EntryMirror>();
  private services = new Map<number, ServiceState>();
  /** Non-empty entries of tsct_lb_backends by id. */
  /** state: what the value says, when it is exactly backendValue of key and state (else written again). */
  private backends = new Map<number, { key: string | undefined; state?: LbBackendState; raw?: Buffer }>();
  private backendIds = new Map<string, number>();
  /** tsct_lb_members by memberCode: memberValueCode. */
  private members = new Map<number, number>();
  /** Restored member keys with their pad bytes set: no memberCode says them; the next apply removes them. */
  private oddMembers: Buffer[] = [];
  /** Per service id, its member codes (an index of members). */
  private serviceMembers = new Map<number, Set<number>>();
  /** Per backend id, how many members (services) use it. */
  private backendRefs = new Map<number, number>();
  /** Per VIP, how many services want its wildcard entry. */
  private vipUsers = new Map<string, number>();
  /** Per service entry id, the service whose entry it is. */
  private entryOwners = new Map<string, number>();
  /** Entries of this.entries per family. */
  private entryCounts: Record<4 | 6, number> = { 4: 0, 6: 0 };
  /** Backend ids below backendTop that no entry holds, ascending; every id from backendTop on is free. */
  private freeIds: number[] = [];
  private backendTop = 1;
  /** Non-zero entries of tsct_lb_reverse_nat by id. */
  private revNat = new Map<number, Buffer>();
  private slots: SlotAllocator;
  /** Applies run one at a time: each plans against the state the previous one left. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly maps: LbMaps,
    private readonly opts: LbWriterOptions,
  ) {
    for (const name of LB_MAPS) if (!maps[name]) throw new Error(`LbWriter: map ${name} is missing`);
    this.slots = new SlotAllocator(maps.tsct_lb_maglev.maxEntries);
  }

  /** A writer whose state is what the maps hold (empty maps: an empty writer). */
  static async restore(maps: LbMaps, opts: LbWriterOptions): Promise<LbWriter> {
    const w = new LbWriter(maps, opts);
    await w.reload();
    return w;
  }

  /**
   * Makes the maps hold exactly `desired`. Refuses (UsageError) before writing anything when they cannot.
   * `adopt`: the caller hands the services over and will not change them, so the writer keeps them as its model
   * instead of a copy (those whose addresses are canonical): what the Kubernetes agent does, to hold one copy.
   */
  apply(desired: readonly LbService[], opts: { adopt?: boolean } = {}): Promise<LbApplyResult> {
    return this.serial(() => this.applyNow(desired, opts.adopt === true));
  }

  /**
   * Adds or replaces the services `upserts` (by id) and removes the services `removedIds`, leaving every other
   * service as it is: what one Kubernetes event changes, at the cost of those services' entries only. The checks
   * of apply hold across the changed services and the others (one frontend per service, one state per backend).
   */
  applyChanges(
    upserts: readonly LbService[],
    removedIds: readonly number[] = [],
    opts: { adopt?: boolean } = {},
  ): Promise<LbApplyResult> {
    return this.serial(() => this.applyChangesNow(upserts, removedIds, opts.adopt === true));
  }

  /** Adds service svc or replaces the one with its id; the other services are left as they are. */
  upsert(svc: LbService): Promise<LbApplyResult> {
    return this.serial(() => {
      const rest = [...this.services.entries()].filter(([id]) => id !== svc.id).map(([, s]) => s.model);
      return this.applyNow([...rest, svc]);
    });
  }

  /** Removes service id; UsageError when there is none. */
  remove(id: number): Promise<LbApplyResult> {
    return this.serial(() => {
      if (!this.services.has(id)) {
        throw new UsageError(`there is no service ${id}; tsct service list shows the services and their ids`);
      }
      return this.applyNow([...this.services.values()].filter((s) => s.model.id !== id).map((s) => s.model));
    });
  }

  /**
   * The services as the maps hold them, by id: decoded from the entries (type and options from the flags, backends
   * from the members in slot order). Names and source-range CIDRs are not in the maps: they are there only for
   * services this writer applied itself.
   */
  lbState(): LbService[] {
    const out: LbService[] = [];
    const byService = this.membersByService();
    for (const id of [...this.services.keys()].sort((a, b) => a - b)) {
      const st = this.services.get(id)!;
      const e = this.entries.get(st.entryId);
      if (!e) continue;
      const decoded = this.decodeService(e, byService);
      if (!decoded) continue;
      if (st.known) {
        const names = new Map(st.model.backends.map((b) => [backendKey(b), b.name]));
        for (const b of decoded.backends) {
          const name = names.get(backendKey(b));
          if (name !== undefined) b.name = name;
        }
        if (st.model.name !== undefined) decoded.name = st.model.name;
        decoded.sourceRanges = [...st.model.sourceRanges];
      }
      out.push(decoded);
    }
    return out;
  }

  /** Every entry of the services maps, wildcards included, sorted by family, address, port and protocol. */
  lbEntries(): LbEntryView[] {
    const byService = this.membersByService();
    const views = [...this.entries.values()].map((e): LbEntryView => {
      const k = decodeServiceKey(e.family, e.key);
      const v = new StructView('lb_service', e.value);
      const revNatId = v.u('rev_nat_index');
      const wildcard = (v.u('flags') & SF.LB_SVC_F_WILDCARD) !== 0;
      const backends = wildcard
        ? []
        : (byService.get(revNatId) ?? [])
            .map((m) => {
              const be = this.backendOf(m.backendId);
              return { id: m.backendId, addr: be?.addr, port: be?.port, state: be?.state };
            })
            .sort(memberOrder);
      return {
        family: e.family,
        ...k,
        revNatId,
        flags: v.u('flags'),
        algorithm: v.u('algorithm'),
        tableOffset: v.u('table_offset'),
        tableSize: v.u('table_size'),
        affinityTimeout: v.u('affinity_timeout'),
        backends,
      };
    });
    const addrBytes = (x: LbEntryView) => parseAddr(x.addr);
    return views.sort(
      (a, b) =>
        a.family - b.family ||
        Buffer.compare(addrBytes(a), addrBytes(b)) ||
        a.port - b.port ||
        a.proto - b.proto ||
        a.revNatId - b.revNatId,
    );
  }

  /** The Maglev services' lookup tables (backend ids), by service id, as the map holds them. */
  async maglevTables(): Promise<Array<{ id: number; table: Uint32Array }>> {
    const out: Array<{ id: number; table: Uint32Array }> = [];
    for (const id of [...this.services.keys()].sort((a, b) => a - b)) {
      const e = this.entries.get(this.services.get(id)!.entryId);
      if (!e) continue;
      const v = new StructView('lb_service', e.value);
      if (v.u('algorithm') !== ALG.LB_ALG_MAGLEV) continue;
      out.push({ id, table: this.readSlots(v.u('table_offset'), v.u('table_size')) });
    }
    return out;
  }

  /** Slots of tsct_lb_maglev not used by any table. */
  get freeSlots(): number {
    return this.slots.freeSlots;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(desiredIn: readonly LbService[], adopt = false): Promise<LbApplyResult> {
    // A service passed back as the writer's own model (upsert, remove) is unchanged: its entries are kept as they
    // are, which matters for what a restored model cannot say (its source-range CIDRs, its backends' names). So is
    // one equal to a model the writer applied itself (the agent translates every service again at each change):
    // its model is kept, and nothing of it is built again.
    const unchanged = new Set<number>();
    const desired = desiredIn.map((s) => {
      const cur = this.services.get(s.id);
      if (cur && (cur.model === s || (cur.known && sameService(s, cur.model)))) {
        unchanged.add(s.id);
        return cur.model;
      }
      return adopt && isCanonical(s) ? s : normalize(s);
    });
    validateServices(desired);
    const plan = await this.plan(desired, unchanged);
    try {
      return await this.execute(plan);
    } catch (e) {
      // Part of the plan may be written: the maps are the truth, so the mirror is rebuilt from them.
      await this.reload();
      throw e;
    }
  }

  private async applyChangesNow(
    upsertsIn: readonly LbService[],
    removedIn: readonly number[],
    adopt: boolean,
  ): Promise<LbApplyResult> {
    const removed = new Set(removedIn.filter((id) => this.services.has(id)));
    const unchanged = new Set<number>();
    const upserts = upsertsIn.map((s) => {
      if (removed.has(s.id)) throw new UsageError(`service ${s.id} is both changed and removed; give it once`);
      const cur = this.services.get(s.id);
      if (cur && (cur.model === s || (cur.known && sameService(s, cur.model)))) {
        unchanged.add(s.id);
        return cur.model;
      }
      return adopt && isCanonical(s) ? s : normalize(s);
    });
    validateServices(upserts);
    const plan = await this.planChanges(upserts, unchanged, removed);
    try {
      return await this.execute(plan);
    } catch (e) {
      await this.reload();
      throw e;
    }
  }

  private async plan(desired: LbService[], unchanged: Set<number>): Promise<Plan> {
    const plan = emptyPlan(false, this.backendTop);
    const { idOf, taken } = this.backendIdAllocator(plan);
    const wantedMembers = new Set<number>();
    const wantedEntries = new Map<string, EntryMirror>();
    const sim = this.slots.clone();

    for (const svc of [...desired].sort((a, b) => a.id - b.id)) {
      for (const b of svc.backends) {
        const code = memberCode(idOf(b), svc.id);
        const value = memberValueCode(b);
        wantedMembers.add(code);
        if (this.members.get(code) !== value) plan.memberWrites.push([code, value]);
      }
      const cur = this.services.get(svc.id);
      if (cur && unchanged.has(svc.id)) {
        const kept = this.entries.get(cur.entryId);
        if (kept) wantedEntries.set(cur.entryId, kept);
        plan.services.set(svc.id, cur);
        continue;
      }
      plan.changedIds.push(svc.id);
      await this.planService(plan, svc, idOf, sim, wantedEntries);
    }

    // One wildcard entry per VIP in use, so that the VIP's other ports are refused rather than passed.
    for (const svc of desired) {
      if (!wantsWildcard(svc)) continue;
      const family = familyOfAddr(svc.frontend.addr);
      const key = serviceKey(family, svc.frontend.addr, 0, 0);
      const id = entryId(family, key);
      if (wantedEntries.has(id)) continue;
      const entry = { family, key, value: wildcardValue() };
      wantedEntries.set(id, entry);
      const curEntry = this.entries.get(id);
      if (!curEntry || !curEntry.value.equals(entry.value)) plan.wildcardWrites.push(entry);
    }

    // Capacity: removals come last, so the old and the new entries are in the maps together for a moment.
    for (const family of [4, 6] as const) {
      let count = 0;
      for (const e of wantedEntries.values()) if (e.family === family) count++;
      for (const [id, e] of this.entries) if (e.family === family && !wantedEntries.has(id)) count++;
      this.checkEntryCapacity(family, count);
    }
    let memberCount = wantedMembers.size + this.oddMembers.length;
    for (const code of this.members.keys()) if (!wantedMembers.has(code)) memberCount++;
    this.checkMemberCapacity(memberCount);

    for (const [id, e] of this.entries) if (!wantedEntries.has(id)) plan.entryRemovals.push(e);
    for (const id of this.revNat.keys()) if (!plan.services.has(id)) plan.revNatRemovals.push(id);
    for (const code of this.members.keys()) if (!wantedMembers.has(code)) plan.memberRemovals.push(code);
    plan.oddMemberRemovals.push(...this.oddMembers);
    for (const id of this.backends.keys()) if (!taken.has(id)) plan.backendRemovals.push(id);
    for (const [id, s] of this.services) {
      if (plan.services.has(id)) continue;
      plan.removedIds.push(id);
      if (s.table.owned && s.table.size > 0) plan.rangesToFree.push([s.table.offset, s.table.size]);
    }
    return plan;
  }

  /**
   * The plan of applyChanges: only the changed services' entries, members and backends, with every other service
   * as it is. Costs what the changed services hold (and, for a removed service, a pass over the affinity map).
   */
  private async planChanges(upserts: LbService[], unchanged: Set<number>, removed: Set<number>): Promise<Plan> {
    const plan = emptyPlan(true, this.backendTop);
    const { idOf } = this.backendIdAllocator(plan);
    const sim = this.slots.clone();
    const wantedEntries = new Map<string, EntryMirror>();
    const changing = new Set<number>([...removed]);
    for (const svc of upserts) if (!unchanged.has(svc.id)) changing.add(svc.id);
    /** Members (by backend) of every changing service before the change, and after it. */
    const refDelta = new Map<number, number>();
    const bump = (backendId: number, by: number) => refDelta.set(backendId, (refDelta.get(backendId) ?? 0) + by);
    const oldMembers = new Set<number>();
    for (const id of changing) {
      for (const code of this.serviceMembers.get(id) ?? []) {
        oldMembers.add(code);
        bump(Math.floor(code / 0x10000), -1);
      }
    }
    const newMembers = new Set<number>();
    const wildcardDelta = new Map<string, number>();
    const vip = (svc: LbService, by: number) => {
      if (wantsWildcard(svc)) wildcardDelta.set(svc.frontend.addr, (wildcardDelta.get(svc.frontend.addr) ?? 0) + by);
    };
    for (const id of changing) {
      const cur = this.services.get(id);
      if (cur) vip(cur.model, -1);
    }

    for (const svc of [...upserts].sort((a, b) => a.id - b.id)) {
      if (unchanged.has(svc.id)) continue;
      for (const b of svc.backends) {
        const backendId = idOf(b);
        const code = memberCode(backendId, svc.id);
        const value = memberValueCode(b);
        newMembers.add(code);
        bump(backendId, 1);
        if (this.members.get(code) !== value) plan.memberWrites.push([code, value]);
      }
      // A frontend another service holds, and keeps, is refused (apply would refuse the two as well).
      const family = familyOfAddr(svc.frontend.addr);
      const eid = entryId(
        family,
        serviceKey(family, svc.frontend.addr, svc.frontend.port, LB_PROTO_NUMBERS[svc.frontend.proto]),
      );
      const holder = this.entryOwners.get(eid);
      if (holder !== undefined && holder !== svc.id && !changing.has(holder)) {
        throw new UsageError(
          `frontend ${frontendText(svc.frontend)} is service ${holder}'s already; one frontend is one service`,
        );
      }
      vip(svc, 1);
      plan.changedIds.push(svc.id);
      await this.planService(plan, svc, idOf, sim, wantedEntries);
    }
    // One state per backend address: a backend another service keeps may not change its state here.
    for (const [backendId, key, state] of plan.backendWrites) {
      const cur = this.backends.get(backendId);
      if (!cur || cur.key !== key || cur.state === undefined || cur.state === state) continue;
      let others = this.backendRefs.get(backendId) ?? 0;
      for (const code of oldMembers) if (Math.floor(code / 0x10000) === backendId) others--;
      if (others > 0) {
        throw new UsageError(
          `backend ${key} is ${state} here but ${cur.state} in ${others} other service(s); a backend address has ` +
            'one state (change them together)',
        );
      }
    }

    for (const [addr, by] of wildcardDelta) {
      if (by === 0) continue;
      const before = this.vipUsers.get(addr) ?? 0;
      const family = familyOfAddr(addr);
      const key = serviceKey(family, addr, 0, 0);
      const id = entryId(family, key);
      if (before + by > 0) {
        const entry = { family, key, value: wildcardValue() };
        wantedEntries.set(id, entry);
        const curEntry = this.entries.get(id);
        if (!curEntry || !curEntry.value.equals(entry.value)) plan.wildcardWrites.push(entry);
      } else {
        const curEntry = this.entries.get(id);
        if (curEntry && !wantedEntries.has(id)) plan.entryRemovals.push(curEntry);
      }
    }
    for (const id of changing) {
      const cur = this.services.get(id);
      if (!cur) continue;
      if (!wantedEntries.has(cur.entryId) && this.entryOwners.get(cur.entryId) === id) {
        const e = this.entries.get(cur.entryId);
        if (e) plan.entryRemovals.push(e);
      }
      if (removed.has(id)) {
        plan.services.set(id, null);
        if (this.revNat.has(id)) plan.revNatRemovals.push(id);
        plan.removedIds.push(id);
        if (cur.table.owned && cur.table.size > 0) plan.rangesToFree.push([cur.table.offset, cur.table.size]);
      }
    }
    for (const code of oldMembers) if (!newMembers.has(code)) plan.memberRemovals.push(code);
    for (const [backendId, by] of refDelta) {
      if (by < 0 && (this.backendRefs.get(backendId) ?? 0) + by <= 0) plan.backendRemovals.push(backendId);
    }

    for (const family of [4, 6] as const) {
      let count = this.entryCounts[family];
      for (const [id, e] of wantedEntries) if (e.family === family && !this.entries.has(id)) count++;
      this.checkEntryCapacity(family, count);
    }
    let memberCount = this.members.size + this.oddMembers.length;
    for (const code of newMembers) if (!this.members.has(code)) memberCount++;
    this.checkMemberCapacity(memberCount);
    return plan;
  }

  /** Backend ids: kept while used; a new backend takes the lowest id that no entry holds now. */
  private backendIdAllocator(plan: Plan): { idOf: (b: LbBackend) => number; taken: Set<number> } {
    // Ids given up by this apply stay taken until its end, since the old tables still point at them.
    const backendsMax = this.maps.tsct_lb_backends.maxEntries;
    const taken = new Set<number>();
    const idOf = (b: LbBackend): number => {
      const key = backendKey(b);
      let id = plan.backendIds.get(key);
      if (id !== undefined) return id;
      id = this.backendIds.get(key);
      if (id === undefined) {
        if (plan.freeTaken < this.freeIds.length) id = this.freeIds[plan.freeTaken++];
        else {
          if (plan.top >= backendsMax) {
            throw new UsageError(
              `no backend id left for ${key}: tsct_lb_backends holds ids 1 to ${backendsMax - 1}, all in use ` +
                `(ids of backends removed now are free from the next update on); raise --bpf-lb-map-max`,
            );
          }
          id = plan.top++;
        }
      }
      taken.add(id);
      plan.backendIds.set(key, id);
      // The value follows from the key (address and port) and the state.
      const cur = this.backends.get(id);
      if (!cur || cur.key !== key || cur.state !== b.state) plan.backendWrites.push([id, key, b.state, b]);
      return id;
    };
    return { idOf, taken };
  }

  /** One changed service's steps: its table (kept or built into a free range), reverse NAT and entry. */
  private async planService(
    plan: Plan,
    svc: LbService,
    idOf: (b: LbBackend) => number,
    sim: SlotAllocator,
    wantedEntries: Map<string, EntryMirror>,
  ): Promise<void> {
    const revNatMax = this.maps.tsct_lb_reverse_nat.maxEntries;
    if (svc.id >= revNatMax) {
      throw new UsageError(`service id ${svc.id} does not fit tsct_lb_reverse_nat (ids 1 to ${revNatMax - 1})`);
    }
    const family = familyOfAddr(svc.frontend.addr);
    const cur = this.services.get(svc.id);
    const step: ServiceStep = { id: svc.id };
    const want = this.tablePlan(svc, idOf);
    const built = await this.keptOrBuilt(cur?.table, want);
    let table: TableState;
    if (built === 'kept') {
      table = { ...cur!.table, signature: want.signature };
    } else {
      let offset = 0;
      if (want.size > 0) {
        const at = sim.alloc(want.size);
        if (at === undefined) {
          throw new UsageError(
            `tsct_lb_maglev has no free range of ${want.size} slots for service ${svc.id}'s table ` +
              `(${sim.freeSlots} of ${sim.total} free, the largest range ${sim.largestFree}; a changed table ` +
              `is written next to the one it replaces); raise --bpf-lb-maglev-map-max`,
          );
        }
        offset = at;
        const mapped = this.maglevMemory();
        if (mapped) {
          // Written now, into a range no service entry points at: a full sync then never holds ten thousand
          // tables at once. A plan refused later leaves the range unused, and free (the allocator is a copy).
          for (let i = 0; i < built.length; i++) mapped[(offset + i) * 2] = built[i];
          step.table = { offset, size: built.length };
        } else step.table = { offset, size: built.length, slots: built };
      }
      table = { offset, size: want.size, signature: want.signature, nameless: want.nameless, owned: true };
      if (cur && cur.table.owned && cur.table.size > 0) plan.rangesToFree.push([cur.table.offset, cur.table.size]);
    }
    const revNat = revNatValue(svc);
    const curRevNat = this.revNat.get(svc.id);
    if (!curRevNat || !curRevNat.equals(revNat)) step.revNat = revNat;
    const key = serviceKey(family, svc.frontend.addr, svc.frontend.port, LB_PROTO_NUMBERS[svc.frontend.proto]);
    const id = entryId(family, key);
    const entry: EntryMirror = { family, key, value: serviceValue(svc, table.offset, table.size) };
    wantedEntries.set(id, entry);
    const curEntry = this.entries.get(id);
    if (!curEntry || !curEntry.value.equals(entry.value)) step.entry = entry;
    if (step.table || step.revNat || step.entry) plan.steps.push(step);
    plan.services.set(svc.id, { model: svc, known: true, entryId: id, table });
  }

  private checkEntryCapacity(family: 4 | 6, count: number): void {
    const mapName = family === 4 ? 'tsct_lb4_services' : 'tsct_lb6_services';
    if (count > this.maps[mapName].maxEntries) {
      throw new UsageError(
        `${count} IPv${family} frontend and VIP entries (old and new together while the update runs) do not ` +
          `fit ${mapName} (${this.maps[mapName].maxEntries}); raise --bpf-lb-map-max`,
      );
    }
  }

  private checkMemberCapacity(count: number): void {
    if (count > this.maps.tsct_lb_members.maxEntries) {
      throw new UsageError(
        `${count} service-backend pairs (old and new together while the update runs) do not fit ` +
          `tsct_lb_members (${this.maps.tsct_lb_members.maxEntries}); raise --bpf-lb-map-max`,
      );
    }
  }

  /** What a service's table is made of, and its signature (what a change of it is judged by). */
  private tablePlan(svc: LbService, idOf: (b: LbBackend) => number, storedSize?: number): TablePlan {
    const members = tableBackends(svc).map((b) => ({ name: backendName(b), id: idOf(b), weight: b.weight }));
    if (members.length === 0) {
      return { algorithm: svc.algorithm, size: 0, members, signature: 'none', nameless: 'none' };
    }
    if (svc.algorithm === 'random') {
      const ids = members.map((m) => m.id).sort((a, b) => a - b);
      const sig = `random|${ids.join(',')}`;
      return { algorithm: 'random', size: ids.length, members, signature: sig, nameless: sig };
    }
    // M follows the count of all the service's backends, not of those taking connections now, so that a backend
    // going terminating changes a few slots instead of resizing (and so reshuffling) the whole table.
    // A restored table is described with the size it has in the map, whatever this writer's options say.
    const m = storedSize ?? this.opts.maglevTableSize ?? maglevTableSizeFor(svc.backends.length);
    if (storedSize === undefined && members.length > m) {
      throw new UsageError(
        `service ${svc.id} has ${members.length} backends taking connections but a Maglev table of ${m} slots; ` +
          'give a larger Maglev table size (agent --bpf-lb-maglev-table-size, tsct service --maglev-table-size)',
      );
    }
    const byName = [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const byId = [...members].sort((a, b) => a.id - b.id);
    return {
      algorithm: 'maglev',
      size: m,
      members,
      signature: `maglev|${m}|${byName.map((x) => `${x.name}\u0000${x.id}*${x.weight}`).join('\u0000')}`,
      nameless: `maglev|${m}|${byId.map((x) => `${x.id}*${x.weight}`).join(',')}`,
    };
  }

  /**
   * 'kept' when the table in the map is already the wanted one; else the wanted table's slots. A restored table
   * (names unknown) whose ids, weights and size agree is compared slot by slot with the one built.
   */
  private async keptOrBuilt(cur: TableState | undefined, want: TablePlan): Promise<'kept' | Uint32Array> {
    if (cur && cur.owned && cur.signature === want.signature) return 'kept';
    const slots = this.buildSlots(want);
    if (cur && cur.owned && cur.signature === null && cur.nameless === want.nameless) {
      const stored = this.readSlots(cur.offset, cur.size);
      if (stored.length === slots.length && stored.every((x, i) => x === slots[i])) return 'kept';
    }
    return slots;
  }

  private buildSlots(want: TablePlan): Uint32Array {
    if (want.size === 0) return new Uint32Array(0);
    if (want.algorithm === 'random') return Uint32Array.from(want.members.map((m) => m.id).sort((a, b) => a - b));
    return buildMaglevTable(want.members, want.size, this.opts.hashSeed);
  }

  private readSlots(offset: number, size: number): Uint32Array {
    const out = new Uint32Array(size);
    const map = this.maps.tsct_lb_maglev;
    for (let i = 0; i < size; i++) {
      const v = map.lookup(u32Key(offset + i));
      out[i] = v ? v.readUInt32LE(0) : 0;
    }
    return out;
  }

  private async execute(plan: Plan): Promise<LbApplyResult> {
    const r = emptyResult();
    const maps = this.maps;
    // Backends and members in one batch call each: a full sync writes a hundred thousand of them.
    // Keys and values written in place into one buffer each: a full sync writes a hundred thousand of them.
    if (plan.backendWrites.length) {
      const n = plan.backendWrites.length;
      const size = StructView.sizeOf('lb_backend');
      const keys = Buffer.alloc(n * 4);
      const values = Buffer.alloc(n * size);
      plan.backendWrites.forEach(([id, , , b], i) => {
        keys.writeUInt32LE(id, i * 4);
        backendValueInto(b, values.subarray(i * size, (i + 1) * size));
      });
      await writeSome(maps.tsct_lb_backends, keys, values, n);
    }
    for (const [id, key, state] of plan.backendWrites) {
      const old = this.backends.get(id);
      if (old?.key !== undefined && old.key !== key) this.backendIds.delete(old.key);
      this.backends.set(id, { key, state });
      this.backendIds.set(key, id);
      r.written.backends++;
    }
    if (plan.memberWrites.length) {
      const n = plan.memberWrites.length;
      const ks = StructView.sizeOf('lb_member_key');
      const vs = StructView.sizeOf('lb_member');
      const keys = Buffer.alloc(n * ks);
      const values = Buffer.alloc(n * vs);
      plan.memberWrites.forEach(([code, value], i) => {
        new StructView('lb_member_key', keys.subarray(i * ks, (i + 1) * ks))
          .set('backend_id', Math.floor(code / 0x10000))
          .set('rev_nat_index', code % 0x10000);
        new StructView('lb_member', values.subarray(i * vs, (i + 1) * vs))
          .set('weight', value & 0xffff)
          .set('flags', (value >> 16) & 0xff);
      });
      await writeSome(maps.tsct_lb_members, keys, values, n);
    }
    for (const [code, value] of plan.memberWrites) {
      if (!this.members.has(code)) this.indexMember(code, 1);
      this.members.set(code, value);
      r.written.members++;
    }
    // Every new table first, in as few batch calls as fit (one call per table would make the
    // sync of thousands of services wait on thousands of round trips), then what points at them.
    const pending: Array<{ offset: number; slots: Uint32Array }> = [];
    let pendingSlots = 0;
    // Where the slot array can be mapped, tables were written straight into it while planning (ten thousand
    // services' tables are ten million slots: a syscall's copy per slot would take seconds); else in batches.
    const flush = async () => {
      if (!pending.length) return;
      const keys = Buffer.alloc(pendingSlots * 4);
      const values = Buffer.alloc(pendingSlots * 4);
      let at = 0;
      for (const { offset, slots } of pending) {
        for (let i = 0; i < slots.length; i++) keys.writeUInt32LE(offset + i, (at + i) * 4);
        Buffer.from(slots.buffer, slots.byteOffset, slots.byteLength).copy(values, at * 4);
        at += slots.length;
      }
      await maps.tsct_lb_maglev.updateBatch(keys, values);
      pending.length = 0;
      pendingSlots = 0;
    };
    for (const step of plan.steps) {
      if (!step.table) continue;
      const { offset, size, slots } = step.table;
      if (!this.slots.markUsed(offset, size)) throw new Error(`LbWriter: slots ${offset}+ are not free`);
      r.written.slots += size;
      r.tablesRebuilt++;
      if (!slots) continue;
      pending.push({ offset, slots });
      pendingSlots += slots.length;
      if (pendingSlots >= TABLE_BATCH_SLOTS) await flush();
    }
    await flush();
    for (const step of plan.steps) {
      if (step.revNat) {
        maps.tsct_lb_reverse_nat.update(u32Key(step.id), step.revNat);
        this.revNat.set(step.id, step.revNat);
        r.written.revNat++;
      }
      if (step.entry) {
        this.writeEntry(step.entry);
        r.written.services++;
      }
    }
    for (const e of plan.wildcardWrites) {
      this.writeEntry(e);
      r.written.services++;
    }
    this.setServices(plan);

    for (const e of plan.entryRemovals) {
      (e.family === 4 ? maps.tsct_lb4_services : maps.tsct_lb6_services).delete(e.key);
      if (this.entries.delete(entryId(e.family, e.key))) this.entryCounts[e.family]--;
      r.removed.services++;
    }
    const zeroRevNat = Buffer.alloc(StructView.sizeOf('lb_reverse_nat'));
    for (const id of plan.revNatRemovals) {
      maps.tsct_lb_reverse_nat.update(u32Key(id), zeroRevNat);
      this.revNat.delete(id);
      r.removed.revNat++;
    }
    for (const code of plan.memberRemovals) {
      maps.tsct_lb_members.delete(memberKeyOf(code));
      if (this.members.delete(code)) this.indexMember(code, -1);
      r.removed.members++;
    }
    for (const key of plan.oddMemberRemovals) {
      maps.tsct_lb_members.delete(key);
      this.oddMembers = this.oddMembers.filter((k) => !k.equals(key));
      r.removed.members++;
    }
    const zeroBackend = Buffer.alloc(StructView.sizeOf('lb_backend'));
    for (const id of plan.backendRemovals) {
      maps.tsct_lb_backends.update(u32Key(id), zeroBackend);
      const old = this.backends.get(id);
      if (old?.key !== undefined && this.backendIds.get(old.key) === id) this.backendIds.delete(old.key);
      this.backends.delete(id);
      r.removed.backends++;
    }
    // The ids this plan took are in use now; the removed ones are free from the next apply on.
    let free = plan.freeTaken > 0 ? this.freeIds.slice(plan.freeTaken) : this.freeIds;
    if (plan.backendRemovals.length > 0) free = [...free, ...plan.backendRemovals].sort((a, b) => a - b);
    this.freeIds = free;
    this.backendTop = plan.top;
    for (const [offset, size] of plan.rangesToFree) {
      this.slots.release(offset, size);
      r.slotsFreed += size;
    }
    if (plan.removedIds.length > 0) {
      const zeroStats = Buffer.alloc(maps.tsct_lb_stats.valueStride);
      for (const id of plan.removedIds) {
        maps.tsct_lb_stats.update(u32Key(id), zeroStats);
        r.removed.stats++;
      }
      r.removed.affinity = await this.forgetAffinity(new Set(plan.removedIds));
    }
    r.changedIds = plan.changedIds;
    return r;
  }

  /** A member added (1) or removed (-1) in the indexes by service and by backend. */
  private indexMember(code: number, by: 1 | -1): void {
    const serviceId = code % 0x10000;
    const backendId = Math.floor(code / 0x10000);
    let set = this.serviceMembers.get(serviceId);
    if (by > 0) {
      if (!set) this.serviceMembers.set(serviceId, (set = new Set()));
      set.add(code);
    } else if (set) {
      set.delete(code);
      if (set.size === 0) this.serviceMembers.delete(serviceId);
    }
    const refs = (this.backendRefs.get(backendId) ?? 0) + by;
    if (refs > 0) this.backendRefs.set(backendId, refs);
    else this.backendRefs.delete(backendId);
  }

  /** The services after a plan, with the indexes by VIP and by entry. */
  private setServices(plan: Plan): void {
    if (!plan.delta) {
      this.services = new Map();
      this.vipUsers = new Map();
      this.entryOwners = new Map();
    }
    for (const [id, st] of plan.services) {
      const old = this.services.get(id);
      if (old) {
        if (wantsWildcard(old.model)) this.countVip(old.model.frontend.addr, -1);
        if (this.entryOwners.get(old.entryId) === id) this.entryOwners.delete(old.entryId);
        this.services.delete(id);
      }
      if (st) this.addService(id, st);
    }
  }

  private addService(id: number, st: ServiceState): void {
    this.services.set(id, st);
    if (wantsWildcard(st.model)) this.countVip(st.model.frontend.addr, 1);
    this.entryOwners.set(st.entryId, id);
  }

  private countVip(addr: string, by: number): void {
    const n = (this.vipUsers.get(addr) ?? 0) + by;
    if (n > 0) this.vipUsers.set(addr, n);
    else this.vipUsers.delete(addr);
  }

  private maglevView: Uint32Array | null | undefined;

  /** tsct_lb_maglev as memory (u32 values at 8-byte strides), or null where the map cannot be mapped. */
  private maglevMemory(): Uint32Array | null {
    if (this.maglevView === undefined) {
      try {
        const buf = this.maps.tsct_lb_maglev.mmap?.();
        this.maglevView = buf ? new Uint32Array(buf) : null;
      } catch {
        this.maglevView = null; // pinned by a version without BPF_F_MMAPABLE: batch calls then
      }
    }
    return this.maglevView;
  }

  private writeEntry(e: EntryMirror): void {
    (e.family === 4 ? this.maps.tsct_lb4_services : this.maps.tsct_lb6_services).update(e.key, e.value);
    const id = entryId(e.family, e.key);
    if (!this.entries.has(id)) this.entryCounts[e.family]++;
    this.entries.set(id, e);
  }

  /** Deletes the affinity entries of removed services: a new service given one of their ids starts afresh. */
  private async forgetAffinity(ids: Set<number>): Promise<number> {
    const doomed: Buffer[] = [];
    for await (const [key] of this.maps.tsct_lb_affinity.entries()) {
      if (ids.has(new StructView('lb_affinity_key', key).u('rev_nat_index'))) doomed.push(Buffer.from(key));
    }
    let n = 0;
    for (const key of doomed) if (this.maps.tsct_lb_affinity.delete(key)) n++;
    return n;
  }

  /** Rebuilds the mirror from the maps. */
  private async reload(): Promise<void> {
    this.entries = new Map();
    this.services = new Map();
    this.backends = new Map();
    this.backendIds = new Map();
    this.members = new Map();
    this.oddMembers = [];
    this.serviceMembers = new Map();
    this.backendRefs = new Map();
    this.vipUsers = new Map();
    this.entryOwners = new Map();
    this.entryCounts = { 4: 0, 6: 0 };
    this.freeIds = [];
    this.backendTop = 1;
    this.revNat = new Map();
    this.slots = new SlotAllocator(this.maps.tsct_lb_maglev.maxEntries);

    for await (const [k, v] of this.maps.tsct_lb_backends.entries()) {
      const view = new StructView('lb_backend', v);
      if (view.u('state') === BS.LB_BE_NONE && isZero(v)) continue;
      const id = k.readUInt32LE(0);
      const family = view.u('family');
      const valid = id !== 0 && (family === 4 || family === 6) && stateName(view.u('state')) !== undefined;
      // An entry the writer cannot read is kept under its id, without a key, to be zeroed by the next apply.
      const key = valid
        ? backendKey({ addr: fieldAddr(family, view.bytes('addr')), port: view.bytes('port').readUInt16BE() })
        : undefined;
      // The state is recorded only when the value is exactly what the writer would write for it.
      const state = valid ? stateName(view.u('state')) : undefined;
      const exact =
        key !== undefined &&
        state !== undefined &&
        backendValue({
          addr: fieldAddr(family, view.bytes('addr')),
          port: view.bytes('port').readUInt16BE(),
          state,
          weight: 1,
          local: false,
        }).equals(v);
      // The value of an exact entry follows from its key and state; any other is kept to be decoded.
      this.backends.set(id, exact ? { key, state } : { key, state: undefined, raw: Buffer.from(v) });
      if (key !== undefined && !this.backendIds.has(key)) this.backendIds.set(key, id);
    }
    for (const id of this.backends.keys()) if (id >= this.backendTop) this.backendTop = id + 1;
    for (let id = 1; id < this.backendTop; id++) if (!this.backends.has(id)) this.freeIds.push(id);
    for await (const [k, v] of this.maps.tsct_lb_members.entries()) {
      const key = new StructView('lb_member_key', k);
      if (key.u('pad') !== 0) {
        this.oddMembers.push(Buffer.from(k));
        continue;
      }
      const value = new StructView('lb_member', v);
      const code = value.u('weight') + value.u('flags') * 0x10000 + (value.u('pad') !== 0 ? MEMBER_ODD : 0);
      const member = memberCode(key.u('backend_id'), key.u('rev_nat_index'));
      if (!this.members.has(member)) this.indexMember(member, 1);
      this.members.set(member, code);
    }
    for await (const [k, v] of this.maps.tsct_lb_reverse_nat.entries()) {
      if (!isZero(v)) this.revNat.set(k.readUInt32LE(0), Buffer.from(v));
    }
    const restored: Array<[EntryMirror, LbService]> = [];
    const byService = this.membersByService();
    for (const family of [4, 6] as const) {
      for await (const [k, v] of (family === 4 ? this.maps.tsct_lb4_services : this.maps.tsct_lb6_services).entries()) {
        const e: EntryMirror = { family, key: Buffer.from(k), value: Buffer.from(v) };
        this.entries.set(entryId(family, e.key), e);
        this.entryCounts[family]++;
        const model = this.decodeService(e, byService);
        if (model) restored.push([e, model]);
      }
    }
    // Entries in key order, so that of two entries claiming one id (only after a failed write) the same one wins.
    restored.sort(([a], [b]) => a.family - b.family || Buffer.compare(a.key, b.key));
    for (const [e, model] of restored) {
      if (this.services.has(model.id)) continue;
      const v = new StructView('lb_service', e.value);
      const offset = v.u('table_offset');
      const size = v.u('table_size');
      const owned = size === 0 || this.slots.markUsed(offset, size);
      const want = this.tablePlan(model, (b) => this.backendIds.get(backendKey(b))!, size);
      const table: TableState = { offset, size, signature: null, nameless: owned ? want.nameless : '', owned };
      this.addService(model.id, { model, known: false, entryId: entryId(e.family, e.key), table });
    }
  }

  private membersByService(): Map<number, Array<{ backendId: number; weight: number; local: boolean }>> {
    const out = new Map<number, Array<{ backendId: number; weight: number; local: boolean }>>();
    for (const [code, value] of this.members) {
      const id = code % 0x10000;
      if (!out.has(id)) out.set(id, []);
      out.get(id)!.push({
        backendId: Math.floor(code / 0x10000),
        weight: value & 0xffff,
        local: ((value >> 16) & 0xff & MF.LB_MEMBER_F_LOCAL) !== 0,
      });
    }
    return out;
  }

  private backendOf(id: number): { addr: string; port: number; state: LbBackendState } | undefined {
    const be = this.backends.get(id);
    if (!be || be.key === undefined) return undefined;
    if (be.state !== undefined && !be.raw) {
      const colon = be.key.lastIndexOf(':');
      const host = be.key.slice(0, colon);
      return {
        addr: host.startsWith('[') ? host.slice(1, -1) : host,
        port: Number(be.key.slice(colon + 1)),
        state: be.state,
      };
    }
    const v = new StructView('lb_backend', be.raw!);
    const state = stateName(v.u('state'));
    if (state === undefined) return undefined;
    return { addr: fieldAddr(v.u('family'), v.bytes('addr')), port: v.bytes('port').readUInt16BE(), state };
  }

  /** The service an entry of the services maps is, or undefined for a wildcard or an entry tsct did not write. */
  private decodeService(
    e: EntryMirror,
    byService: Map<number, Array<{ backendId: number; weight: number; local: boolean }>>,
  ): LbService | undefined {
    const v = new StructView('lb_service', e.value);
    const flags = v.u('flags');
    const id = v.u('rev_nat_index');
    const k = decodeServiceKey(e.family, e.key);
    const proto = protoName(k.proto);
    if (flags & SF.LB_SVC_F_WILDCARD || id === 0 || proto === undefined || k.port === 0) return undefined;
    const type: LbServiceType =
      flags & SF.LB_SVC_F_LOADBALANCER
        ? 'LoadBalancer'
        : flags & SF.LB_SVC_F_NODEPORT
          ? 'NodePort'
          : flags & SF.LB_SVC_F_EXTERNAL_IP
            ? 'ExternalIP'
            : 'ClusterIP';
    const backends: Array<LbBackend & { id: number }> = [];
    for (const m of byService.get(id) ?? []) {
      const be = this.backendOf(m.backendId);
      if (!be || familyOfAddr(be.addr) !== e.family) continue;
      backends.push({
        id: m.backendId,
        addr: be.addr,
        port: be.port,
        state: be.state,
        weight: m.weight,
        local: m.local,
      });
    }
    backends.sort(memberOrder);
    return {
      id,
      frontend: { addr: k.addr, port: k.port, proto },
      type,
      algorithm: v.u('algorithm') === ALG.LB_ALG_MAGLEV ? 'maglev' : 'random',
      affinityTimeoutS: flags & SF.LB_SVC_F_AFFINITY ? v.u('affinity_timeout') : 0,
      trafficPolicy: flags & SF.LB_SVC_F_LOCAL ? 'local' : 'cluster',
      // The CIDRs are not in the maps (only the flag is).
      sourceRanges: [],
      fullNat: (flags & SF.LB_SVC_F_SNAT) !== 0,
      backends: backends.map(({ addr, port, state, weight, local }) => ({ addr, port, state, weight, local })),
    };
  }
}
