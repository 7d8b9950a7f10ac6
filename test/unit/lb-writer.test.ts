// The load balancer's writer over an in-memory fake of its eight maps: what an apply writes, that it writes only
// what changes, in which order, what it frees, what restore rebuilds, and how running out of slots or backend ids
// is refused before anything is written. No root, no kernel.
import test from 'ava';
import { ENUMS, StructView } from '../../src/bpf/layouts';
import { LB_MAPS, LbMapName } from '../../src/datapath/tables';
import { UsageError } from '../../src/errors';
import { formatAddr } from '../../src/net/addr';
import { frontendText, LbService } from '../../src/lb/lbService';
import { LbMapLike, LbMaps, lbTouched, LbWriter } from '../../src/lb/lbWriter';
import { buildMaglevTable, DEFAULT_MAGLEV_HASH_SEED, parseMaglevHashSeed } from '../../src/lb/maglev';
import { be, svc, u32, v4Key } from '../helpers/lbFixtures';

const SEED = parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur;
const SF = ENUMS.lb_service_flag;
const BS = ENUMS.lb_backend_state;

interface Op {
  map: LbMapName;
  op: 'update' | 'delete' | 'batch';
  key: string;
  /** An update that writes all zeros (an array entry cleared). */
  zero: boolean;
}

/** A map as the kernel keeps it: hash maps refuse a new key when full, arrays have every index and no delete. */
class FakeMap implements LbMapLike {
  readonly data = new Map<string, Buffer>();
  readonly valueStride: number;

  constructor(
    readonly name: LbMapName,
    readonly kind: 'hash' | 'array',
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    private readonly log: Op[],
    cpus = 1,
  ) {
    this.valueStride = valueSize * cpus;
  }

  private index(key: Buffer): number {
    if (key.length !== this.keySize) throw new Error(`${this.name}: key of ${key.length} bytes`);
    if (this.kind !== 'array') return -1;
    const i = key.readUInt32LE(0);
    if (i >= this.maxEntries) throw new Error(`${this.name}: index ${i} out of range`);
    return i;
  }

  lookup(key: Buffer): Buffer | null {
    this.index(key);
    const v = this.data.get(key.toString('hex'));
    if (v) return Buffer.from(v);
    return this.kind === 'array' ? Buffer.alloc(this.valueStride) : null;
  }

  update(key: Buffer, value: Buffer): void {
    this.index(key);
    if (value.length !== this.valueStride) throw new Error(`${this.name}: value of ${value.length} bytes`);
    const hex = key.toString('hex');
    if (this.kind === 'hash' && !this.data.has(hex) && this.data.size >= this.maxEntries) {
      throw new Error(`${this.name}: E2BIG`);
    }
    this.data.set(hex, Buffer.from(value));
    this.log.push({ map: this.name, op: 'update', key: hex, zero: value.every((b) => b === 0) });
  }

  delete(key: Buffer): boolean {
    if (this.kind === 'array') throw new Error(`${this.name}: EINVAL (arrays have no delete)`);
    const hex = key.toString('hex');
    this.log.push({ map: this.name, op: 'delete', key: hex, zero: false });
    return this.data.delete(hex);
  }

  async updateBatch(keys: Buffer, values: Buffer): Promise<number> {
    const n = keys.length / this.keySize;
    for (let i = 0; i < n; i++) {
      const key = keys.subarray(i * this.keySize, (i + 1) * this.keySize);
      this.index(key);
      this.data.set(
        key.toString('hex'),
        Buffer.from(values.subarray(i * this.valueStride, (i + 1) * this.valueStride)),
      );
    }
    this.log.push({ map: this.name, op: 'batch', key: keys.subarray(0, this.keySize).toString('hex'), zero: false });
    return n;
  }

  async *entries(): AsyncGenerator<[Buffer, Buffer]> {
    if (this.kind === 'hash') {
      for (const [k, v] of this.data) yield [Buffer.from(k, 'hex'), v];
      return;
    }
    for (let i = 0; i < this.maxEntries; i++) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(i);
      yield [key, this.data.get(key.toString('hex')) ?? Buffer.alloc(this.valueStride)];
    }
  }
}

interface Fake {
  maps: LbMaps & Record<LbMapName, FakeMap>;
  log: Op[];
}

function fakeMaps(sizes: { lb?: number; backends?: number; slots?: number } = {}): Fake {
  const log: Op[] = [];
  const lb = sizes.lb ?? 256;
  const size = (s: Parameters<typeof StructView.sizeOf>[0]) => StructView.sizeOf(s);
  const maps = {
    tsct_lb4_services: new FakeMap('tsct_lb4_services', 'hash', size('lb4_key'), size('lb_service'), lb, log),
    tsct_lb6_services: new FakeMap('tsct_lb6_services', 'hash', size('lb6_key'), size('lb_service'), lb, log),
    tsct_lb_backends: new FakeMap('tsct_lb_backends', 'array', 4, size('lb_backend'), sizes.backends ?? lb, log),
    tsct_lb_reverse_nat: new FakeMap('tsct_lb_reverse_nat', 'array', 4, size('lb_reverse_nat'), 1024, log),
    tsct_lb_members: new FakeMap('tsct_lb_members', 'hash', size('lb_member_key'), size('lb_member'), lb, log),
    tsct_lb_maglev: new FakeMap('tsct_lb_maglev', 'array', 4, 4, sizes.slots ?? 8192, log),
    tsct_lb_affinity: new FakeMap('tsct_lb_affinity', 'hash', size('lb_affinity_key'), size('lb_affinity'), lb, log),
    tsct_lb_stats: new FakeMap('tsct_lb_stats', 'array', 4, size('lb_stats'), 1024, log, 2),
  };
  for (const name of LB_MAPS) if (!maps[name]) throw new Error(name);
  return { maps, log };
}

const dns = () =>
  svc(1, '10.96.0.10', 53, [be('10.0.1.5', 53), be('10.0.2.7', 53)], { name: 'kube-system/kube-dns:dns' });
const web6 = () =>
  svc(2, 'fd00::10', 443, [be('fd00::1:5', 8443, { name: 'web-0' })], {
    frontend: { addr: 'fd00::10', port: 443, proto: 'tcp' },
    algorithm: 'random',
    type: 'LoadBalancer',
    affinityTimeoutS: 10800,
    trafficPolicy: 'local',
    sourceRanges: ['fd00:1::/64'],
    fullNat: true,
  });
const dnsTcp = () =>
  svc(3, '10.96.0.10', 53, [be('10.0.1.5', 53)], { frontend: { addr: '10.96.0.10', port: 53, proto: 'tcp' } });

const writer = (f: Fake, maglevTableSize?: number) => LbWriter.restore(f.maps, { hashSeed: SEED, maglevTableSize });

function serviceAt(f: Fake, key: Buffer): StructView<'lb_service'> | undefined {
  const v = f.maps.tsct_lb4_services.data.get(key.toString('hex'));
  return v ? new StructView('lb_service', v) : undefined;
}

function backendAt(f: Fake, id: number): { addr: string; port: number; family: number; state: number } {
  const v = new StructView('lb_backend', f.maps.tsct_lb_backends.lookup(u32(id))!);
  const family = v.u('family');
  const addr = family === 0 ? '' : formatAddr(Buffer.from(v.bytes('addr').subarray(0, family === 4 ? 4 : 16)));
  return { addr, port: v.bytes('port').readUInt16BE(), family, state: v.u('state') };
}

function tableOf(f: Fake, s: StructView<'lb_service'>): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.u('table_size'); i++)
    out.push(f.maps.tsct_lb_maglev.lookup(u32(s.u('table_offset') + i))!.readUInt32LE(0));
  return out;
}

test('an apply from nothing writes every entry: backends, members, tables, reverse NAT, services and wildcards', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  const r = await w.apply([dns(), web6()]);
  t.deepEqual(r.written, { services: 4, backends: 3, members: 3, revNat: 2, slots: 251 });
  t.is(r.tablesRebuilt, 1, 'web6 has no backend that takes connections (policy local, none local): no table');
  t.is(lbTouched(r), 4 + 3 + 3 + 2 + 251);

  const s = serviceAt(f, v4Key('10.96.0.10', 53, 17))!;
  t.is(s.u('rev_nat_index'), 1);
  t.is(s.u('algorithm'), ENUMS.lb_algorithm.LB_ALG_MAGLEV);
  t.is(s.u('table_size'), 251, 'M for 2 backends: the smallest allowed size of at least 200');
  t.is(s.u('flags'), 0);
  const wildcard = serviceAt(f, v4Key('10.96.0.10', 0, 0))!;
  t.is(wildcard.u('flags'), SF.LB_SVC_F_WILDCARD);
  t.is(wildcard.u('table_size'), 0);
  t.is(wildcard.u('rev_nat_index'), 0);

  t.deepEqual(backendAt(f, 1), { addr: '10.0.1.5', port: 53, family: 4, state: BS.LB_BE_ACTIVE });
  t.deepEqual(backendAt(f, 2), { addr: '10.0.2.7', port: 53, family: 4, state: BS.LB_BE_ACTIVE });
  t.deepEqual(backendAt(f, 3), { addr: 'fd00::1:5', port: 8443, family: 6, state: BS.LB_BE_ACTIVE });
  const want = buildMaglevTable(
    [
      { name: '10.0.1.5:53', id: 1 },
      { name: '10.0.2.7:53', id: 2 },
    ],
    251,
    SEED,
  );
  t.deepEqual(tableOf(f, s), Array.from(want), 'the Maglev table of the backends named ADDR:PORT');

  const rev = new StructView('lb_reverse_nat', f.maps.tsct_lb_reverse_nat.lookup(u32(1))!);
  t.deepEqual([...rev.bytes('addr').subarray(0, 4)], [10, 96, 0, 10]);
  t.is(rev.bytes('port').readUInt16BE(), 53);
  t.is(rev.u('family'), 4);

  const six = [...f.maps.tsct_lb6_services.data.values()].map((v) => new StructView('lb_service', v));
  const web = six.find((v) => v.u('rev_nat_index') === 2)!;
  t.is(
    web.u('flags'),
    SF.LB_SVC_F_AFFINITY | SF.LB_SVC_F_LOCAL | SF.LB_SVC_F_SOURCE_RANGE | SF.LB_SVC_F_LOADBALANCER | SF.LB_SVC_F_SNAT,
  );
  t.is(web.u('affinity_timeout'), 10800);
  t.is(web.u('algorithm'), ENUMS.lb_algorithm.LB_ALG_RANDOM);
  t.is(web.u('table_size'), 0, 'traffic policy local and no backend marked local: no table');
  t.is(six.length, 2, 'the service and its VIP wildcard');

  t.deepEqual(w.lbState(), [dns(), web6()], 'the state reads back as what was applied');
});

test('a second apply of the same services writes nothing', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns(), web6(), dnsTcp()]);
  f.log.length = 0;
  const r = await w.apply([dns(), web6(), dnsTcp()]);
  t.is(lbTouched(r), 0);
  t.is(r.tablesRebuilt, 0);
  t.deepEqual(f.log, []);
});

test('adding a backend rebuilds that one table and rewrites that one service entry', async (t) => {
  const f = fakeMaps();
  const w = await writer(f, 251);
  await w.apply([dns(), dnsTcp()]);
  const before = serviceAt(f, v4Key('10.96.0.10', 53, 6))!.buf.toString('hex');
  const oldOffset = serviceAt(f, v4Key('10.96.0.10', 53, 17))!.u('table_offset');
  f.log.length = 0;
  const more = dns();
  more.backends.push(be('10.0.3.9', 53));
  const r = await w.apply([more, dnsTcp()]);
  t.deepEqual(r.written, { services: 1, backends: 1, members: 1, revNat: 0, slots: 251 });
  t.deepEqual(r.removed, { services: 0, backends: 0, members: 0, revNat: 0, affinity: 0, stats: 0 });
  t.is(r.tablesRebuilt, 1);
  t.is(r.slotsFreed, 251, 'the old range is given back');
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 6))!.buf.toString('hex'), before, 'the other service is untouched');
  const now = serviceAt(f, v4Key('10.96.0.10', 53, 17))!;
  t.not(now.u('table_offset'), oldOffset, 'the new table went to a free range');
  t.true(tableOf(f, now).includes(3), 'the new backend (id 3) is in the new table');
  t.is(f.log.filter((o) => o.map === 'tsct_lb4_services').length, 1);
});

test('a backend going terminating changes its backend entry and its table, nothing else', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns()]);
  const s = dns();
  s.backends[1].state = 'terminating';
  const r = await w.apply([s]);
  t.deepEqual(r.written, { services: 1, backends: 1, members: 0, revNat: 0, slots: 251 });
  t.is(r.tablesRebuilt, 1);
  t.is(backendAt(f, 2).state, BS.LB_BE_TERMINATING);
  const table = tableOf(f, serviceAt(f, v4Key('10.96.0.10', 53, 17))!);
  t.true(
    table.every((id) => id === 1),
    'only the active backend takes new connections',
  );
  t.is(table.length, 251, 'M stays: it follows the count of all the backends');
});

test('removing a service frees its range, its reverse NAT, its counters, its affinities and its unused backends', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns(), dnsTcp(), web6()]);
  const free = w.freeSlots;
  // An affinity of the service to remove, and one of another service.
  for (const id of [1, 3]) {
    const k = StructView.alloc('lb_affinity_key').set('rev_nat_index', id).set('family', 4);
    f.maps.tsct_lb_affinity.update(k.buf, StructView.alloc('lb_affinity').set('backend_id', 1).buf);
  }
  f.maps.tsct_lb_stats.update(u32(1), Buffer.alloc(f.maps.tsct_lb_stats.valueStride, 7));
  f.log.length = 0;
  const r = await w.apply([dnsTcp(), web6()]);
  t.deepEqual(r.written, { services: 0, backends: 0, members: 0, revNat: 0, slots: 0 });
  t.deepEqual(r.removed, { services: 1, backends: 1, members: 2, revNat: 1, affinity: 1, stats: 1 });
  t.is(r.slotsFreed, 251);
  t.is(w.freeSlots, free + 251);
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 17)), undefined);
  t.truthy(serviceAt(f, v4Key('10.96.0.10', 0, 0)), 'the VIP still serves 53/tcp: its wildcard stays');
  t.is(backendAt(f, 1).state, BS.LB_BE_ACTIVE, '10.0.1.5:53 is still used by service 3');
  t.deepEqual(backendAt(f, 2), { addr: '', port: 0, family: 0, state: BS.LB_BE_NONE }, 'the unused backend is zeroed');
  t.true(f.maps.tsct_lb_reverse_nat.lookup(u32(1))!.every((b) => b === 0));
  t.true(f.maps.tsct_lb_stats.lookup(u32(1))!.every((b) => b === 0));
  t.is(f.maps.tsct_lb_affinity.data.size, 1, "only the other service's affinity is left");

  const r2 = await w.apply([web6()]);
  t.is(r2.removed.services, 2, 'the last service of a VIP takes its wildcard with it');
  t.is(f.maps.tsct_lb4_services.data.size, 0);
});

test('two services sharing a backend share its id', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns(), dnsTcp()]);
  t.is(f.maps.tsct_lb_backends.data.size, 2, 'three service-backend pairs, two backend entries');
  t.is(f.maps.tsct_lb_members.data.size, 3);
  const ids = [...f.maps.tsct_lb_members.data.keys()].map(
    (k) => new StructView('lb_member_key', Buffer.from(k, 'hex')),
  );
  const of = (svcId: number) =>
    ids
      .filter((k) => k.u('rev_nat_index') === svcId)
      .map((k) => k.u('backend_id'))
      .sort();
  t.deepEqual(of(1), [1, 2]);
  t.deepEqual(of(3), [1]);
});

test('writes come in an order no packet can see half of: backends and members, table, reverse NAT, service; then removals', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns(), web6()]);
  const first = f.log.map((o) => o.map);
  const lastPre = Math.max(first.lastIndexOf('tsct_lb_backends'), first.lastIndexOf('tsct_lb_members'));
  const firstTable = first.indexOf('tsct_lb_maglev');
  t.true(lastPre < firstTable, 'every backend and member entry before the first table');
  t.true(firstTable < first.indexOf('tsct_lb_reverse_nat'));
  t.true(first.indexOf('tsct_lb_reverse_nat') < first.indexOf('tsct_lb4_services'));

  // Replace a backend: the new one is written before the service entry, the old one removed after it.
  f.log.length = 0;
  const s = dns();
  s.backends[1] = be('10.0.9.9', 53);
  await w.apply([s, web6()]);
  const seq = f.log.map((o) => `${o.map}:${o.op}${o.zero ? ':zero' : ''}`);
  // A few entries are written one update each (a batch call costs more); many in one batch call.
  t.deepEqual(seq, [
    'tsct_lb_backends:update',
    'tsct_lb_members:update',
    'tsct_lb_maglev:batch',
    'tsct_lb4_services:update',
    'tsct_lb_members:delete',
    'tsct_lb_backends:update:zero',
  ]);
  t.is(backendAt(f, 4).addr, '10.0.9.9', 'a new id: the old one is still in use by the old table while it is written');
});

test('freed backend ids are reused lowest first, and id 0 never', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([svc(1, '10.96.0.1', 80, [be('10.0.0.1', 80), be('10.0.0.2', 80), be('10.0.0.3', 80)])]);
  await w.apply([svc(1, '10.96.0.1', 80, [be('10.0.0.3', 80)])]);
  await w.apply([svc(1, '10.96.0.1', 80, [be('10.0.0.3', 80), be('10.0.0.8', 80), be('10.0.0.9', 80)])]);
  t.deepEqual(
    [1, 2, 3].map((id) => backendAt(f, id).addr),
    ['10.0.0.8', '10.0.0.9', '10.0.0.3'],
  );
  t.is(backendAt(f, 0).family, 0);
});

test('a random service lists its table backends once each; a service without one has no table', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  const s = svc(
    5,
    '10.96.0.5',
    80,
    [be('10.0.0.3', 80), be('10.0.0.1', 80), be('10.0.0.2', 80, { state: 'maintenance' })],
    {
      algorithm: 'random',
    },
  );
  await w.apply([s, svc(6, '10.96.0.6', 80, [be('10.0.0.4', 80, { state: 'quarantined' })])]);
  const v = serviceAt(f, v4Key('10.96.0.5', 80, 17))!;
  t.is(v.u('table_size'), 2);
  t.deepEqual(tableOf(f, v), [1, 2], 'the ids of the active backends, in id order');
  t.is(
    serviceAt(f, v4Key('10.96.0.6', 80, 17))!.u('table_size'),
    0,
    'the datapath rejects: no backend takes connections',
  );
});

test('a fixed table size applies to every Maglev service', async (t) => {
  const f = fakeMaps();
  const w = await writer(f, 1021);
  await w.apply([dns()]);
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 17))!.u('table_size'), 1021);
});

test('a frontend given to another id moves in one update, and the old id is cleared after', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns()]);
  f.log.length = 0;
  const moved = { ...dns(), id: 7 };
  const r = await w.apply([moved]);
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 17))!.u('rev_nat_index'), 7);
  t.is(r.written.services, 1);
  t.is(r.removed.revNat, 1);
  t.is(r.removed.services, 0, 'the entry was overwritten, not deleted');
  t.true(f.maps.tsct_lb_reverse_nat.lookup(u32(1))!.every((b) => b === 0));
});

test('restore rebuilds the state: the next identical apply writes nothing, even with Maglev names the maps do not hold', async (t) => {
  const f = fakeMaps();
  const named = () => {
    const s = dns();
    s.backends = [be('10.0.1.5', 53, { name: 'pod-a' }), be('10.0.2.7', 53, { name: 'pod-b' }), be('10.0.3.1', 53)];
    return s;
  };
  await (await writer(f)).apply([named(), web6(), dnsTcp()]);
  const slots = new Map(f.maps.tsct_lb_maglev.data);

  const again = await writer(f);
  t.deepEqual(
    again.lbState().map((s) => s.id),
    [1, 2, 3],
  );
  const restored = again.lbState()[0];
  t.deepEqual(
    restored.backends.map((b) => b.name),
    [undefined, undefined, undefined],
    'names are not in the maps',
  );
  f.log.length = 0;
  const r = await again.apply([named(), web6(), dnsTcp()]);
  t.is(lbTouched(r), 0, 'the restored tables were checked against the ones built, and agreed');
  t.deepEqual(f.log, []);
  t.deepEqual(
    again.lbState()[0].backends.map((b) => b.name),
    ['pod-a', 'pod-b', undefined],
  );

  // Other names make another table: restored from scratch, the writer finds out from the content.
  const third = await writer(f);
  const renamed = named();
  renamed.backends[0].name = 'pod-z';
  const r2 = await third.apply([renamed, web6(), dnsTcp()]);
  t.is(r2.tablesRebuilt, 1);
  t.is(r2.written.services, 1);
  t.notDeepEqual(new Map(f.maps.tsct_lb_maglev.data), slots);
});

test('an upsert on a restored writer leaves the other services as the maps hold them', async (t) => {
  const f = fakeMaps();
  await (await writer(f)).apply([dns(), web6()]);
  const w = await writer(f);
  f.log.length = 0;
  const r = await w.upsert(dnsTcp());
  t.deepEqual(r.written, { services: 1, backends: 0, members: 1, revNat: 1, slots: 251 });
  t.is(lbTouched(r), 3 + 251, 'web6, whose source ranges the maps do not hold, keeps its flag and entry');
  const six = [...f.maps.tsct_lb6_services.data.values()].map((v) => new StructView('lb_service', v));
  t.truthy(six.find((v) => v.u('flags') & SF.LB_SVC_F_SOURCE_RANGE));

  const del = await w.remove(2);
  t.is(del.removed.services, 2, 'the IPv6 service and its wildcard');
  await t.throwsAsync(w.remove(2), { instanceOf: UsageError, message: /there is no service 2; tsct service list/ });
});

test('running out of slots is refused before anything is written, with the slots needed and the flag to raise', async (t) => {
  const f = fakeMaps({ slots: 600 });
  const w = await writer(f);
  await w.apply([svc(1, '10.96.0.1', 80, [be('10.0.0.1', 80)]), svc(2, '10.96.0.2', 80, [be('10.0.0.2', 80)])]);
  f.log.length = 0;
  const e = await t.throwsAsync(
    w.apply([
      svc(1, '10.96.0.1', 80, [be('10.0.0.1', 80), be('10.0.0.9', 80)]),
      svc(2, '10.96.0.2', 80, [be('10.0.0.2', 80)]),
    ]),
    { instanceOf: UsageError },
  );
  t.is(
    e!.message,
    "tsct_lb_maglev has no free range of 251 slots for service 1's table (98 of 600 free, the largest range 98; " +
      'a changed table is written next to the one it replaces); raise --bpf-lb-maglev-map-max',
  );
  t.deepEqual(f.log, [], 'nothing written');
  const r = await w.apply([
    svc(1, '10.96.0.1', 80, [be('10.0.0.1', 80)]),
    svc(2, '10.96.0.2', 80, [be('10.0.0.2', 80)]),
  ]);
  t.is(lbTouched(r), 0, 'the writer is as it was');
});

test('running out of backend ids is refused before anything is written, naming --bpf-lb-map-max', async (t) => {
  const f = fakeMaps({ backends: 4 });
  const w = await writer(f);
  const e = await t.throwsAsync(
    w.apply([
      svc(
        1,
        '10.96.0.1',
        80,
        [1, 2, 3, 4].map((i) => be(`10.0.0.${i}`, 80)),
      ),
    ]),
    { instanceOf: UsageError },
  );
  t.regex(e!.message, /^no backend id left for 10\.0\.0\.4:80: tsct_lb_backends holds ids 1 to 3, all in use/);
  t.regex(e!.message, /raise --bpf-lb-map-max$/);
  t.deepEqual(f.log, []);
  t.is(
    (
      await w.apply([
        svc(
          1,
          '10.96.0.1',
          80,
          [1, 2, 3].map((i) => be(`10.0.0.${i}`, 80)),
        ),
      ])
    ).written.backends,
    3,
  );
});

test('bad services are refused before anything is written', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns()]);
  f.log.length = 0;
  await t.throwsAsync(w.apply([dns(), { ...dnsTcp(), id: 1 }]), {
    instanceOf: UsageError,
    message: /^service id 1 is given twice \(10\.96\.0\.10:53\/UDP and 10\.96\.0\.10:53\/TCP\)/,
  });
  await t.throwsAsync(w.upsert({ ...dnsTcp(), frontend: dns().frontend }), {
    instanceOf: UsageError,
    message: "frontend 10.96.0.10:53/UDP is service 1's already; one frontend is one service",
  });
  const v6Backend = dns();
  v6Backend.backends.push(be('fd00::9', 53));
  await t.throwsAsync(w.apply([v6Backend]), {
    message: /^backend \[fd00::9\]:53 is IPv6 but frontend 10\.96\.0\.10:53\/UDP is IPv4/,
  });
  t.deepEqual(f.log, []);
});

test('a restored table keeps the size it has in the map: the same options write nothing, another size rebuilds', async (t) => {
  const f = fakeMaps();
  await (await writer(f, 1021)).apply([dns()]);
  t.is(lbTouched(await (await writer(f, 1021)).apply([dns()])), 0);
  const r = await (await writer(f)).apply([dns()]);
  t.is(r.tablesRebuilt, 1);
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 17))!.u('table_size'), 251, 'the per-service default M');
});

test('more backends taking connections than a fixed table size has slots is refused', async (t) => {
  const f = fakeMaps({ lb: 512 });
  const w = await writer(f, 251);
  const many = svc(
    1,
    '10.96.0.1',
    80,
    Array.from({ length: 252 }, (_, i) => be(`10.0.${i >> 8}.${i & 255}`, 80)),
  );
  await t.throwsAsync(w.apply([many]), {
    instanceOf: UsageError,
    message:
      'service 1 has 252 backends taking connections but a Maglev table of 251 slots; give a larger Maglev table ' +
      'size (agent --bpf-lb-maglev-table-size, tsct service --maglev-table-size)',
  });
  t.deepEqual(f.log, []);
});

const nodePort = (id: number, addr: string, port: number, backends = [be('10.0.1.5', 8080)]) =>
  svc(id, addr, port, backends, { type: 'NodePort', frontend: { addr, port, proto: 'tcp' }, fullNat: true });

test('no wildcard for an address whose frontends are all NodePorts: the node keeps its other ports', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  // 192.168.1.10 is a node address with two NodePorts; 10.96.0.10 a cluster IP.
  await w.apply([dns(), nodePort(4, '192.168.1.10', 30080), nodePort(5, '192.168.1.10', 30081)]);
  t.truthy(serviceAt(f, v4Key('10.96.0.10', 0, 0)), 'the cluster IP refuses its other ports');
  t.truthy(serviceAt(f, v4Key('192.168.1.10', 30080, 6)));
  t.truthy(serviceAt(f, v4Key('192.168.1.10', 30081, 6)));
  t.is(serviceAt(f, v4Key('192.168.1.10', 0, 0)), undefined, 'no wildcard on the node address');
  t.deepEqual(
    w.lbEntries().map((e) => `${e.addr}:${e.port}/${e.proto}`),
    ['10.96.0.10:0/0', '10.96.0.10:53/17', '192.168.1.10:30080/6', '192.168.1.10:30081/6'],
  );
  // An external IP on the same address is no NodePort: the address is a service address then.
  const ext = svc(6, '192.168.1.10', 80, [be('10.0.1.5', 8080)], {
    type: 'ExternalIP',
    frontend: { addr: '192.168.1.10', port: 80, proto: 'tcp' },
  });
  await w.applyChanges([ext]);
  t.truthy(serviceAt(f, v4Key('192.168.1.10', 0, 0)), 'a wildcard once a non-NodePort frontend is on it');
  await w.applyChanges([], [6]);
  t.is(serviceAt(f, v4Key('192.168.1.10', 0, 0)), undefined, 'and none once only NodePorts are left');
  await w.apply([dns(), nodePort(4, '192.168.1.10', 30080), ext]);
  t.truthy(serviceAt(f, v4Key('192.168.1.10', 0, 0)));
  await w.apply([dns(), nodePort(4, '192.168.1.10', 30080)]);
  t.is(serviceAt(f, v4Key('192.168.1.10', 0, 0)), undefined, 'apply removes it too');
});

test('a wildcard an older writer left on a NodePort address is removed by the next apply after a restore', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([nodePort(4, '192.168.1.10', 30080)]);
  // What the writer used to write: a wildcard for every frontend address.
  const wk = v4Key('192.168.1.10', 0, 0);
  f.maps.tsct_lb4_services.update(wk, StructView.alloc('lb_service').set('flags', SF.LB_SVC_F_WILDCARD).buf);
  const again = await writer(f);
  const r = await again.apply([nodePort(4, '192.168.1.10', 30080)]);
  t.is(r.removed.services, 1);
  t.is(serviceAt(f, wk), undefined);
});

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function dump(f: Fake): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of LB_MAPS) {
    out[name] = [...f.maps[name].data]
      .filter(([, v]) => v.some((x) => x !== 0))
      .map(([k, v]) => `${k}=${v.toString('hex')}`)
      .sort();
  }
  return out;
}

test('applyChanges writes the same maps as apply of the whole list, step by step, and costs only what changes', async (t) => {
  const next = rng(15);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)];
  const full = fakeMaps({ lb: 1024, slots: 65536 });
  const inc = fakeMaps({ lb: 1024, slots: 65536 });
  const a = await writer(full);
  const b = await writer(inc);
  const state = new Map<number, LbService>();
  // Backends shared between services (same address and port), so that reference counts matter.
  const pool = Array.from({ length: 24 }, (_, i) => `10.1.0.${i + 1}`);
  const make = (id: number): LbService => {
    const n = 1 + Math.floor(next() * 5);
    const addrs = [...new Set(Array.from({ length: n }, () => pick(pool)))];
    const kind = pick(['ClusterIP', 'ClusterIP', 'NodePort', 'ExternalIP'] as const);
    const addr =
      kind === 'NodePort'
        ? pick(['192.168.1.10', '192.168.1.11'])
        : kind === 'ExternalIP'
          ? '192.168.1.11'
          : `10.96.0.${id}`;
    const port = kind === 'NodePort' ? 30000 + id : pick([53, 80]);
    return svc(
      id,
      addr,
      port,
      addrs.map((x) => be(x, 8080, { state: 'active' })),
      {
        type: kind,
        frontend: { addr, port, proto: pick(['tcp', 'udp'] as const) },
        algorithm: pick(['maglev', 'random'] as const),
      },
    );
  };
  const frontendFree = (s: LbService) =>
    ![...state.values()].some((o) => o.id !== s.id && frontendText(o.frontend) === frontendText(s.frontend));
  for (let step = 0; step < 60; step++) {
    const upserts: LbService[] = [];
    const removed: number[] = [];
    const count = 1 + Math.floor(next() * 3);
    for (let i = 0; i < count; i++) {
      const id = 1 + Math.floor(next() * 20);
      if (upserts.some((u) => u.id === id) || removed.includes(id)) continue;
      if (state.has(id) && next() < 0.25) {
        removed.push(id);
        continue;
      }
      const s = make(id);
      if (!frontendFree(s) || upserts.some((u) => frontendText(u.frontend) === frontendText(s.frontend))) continue;
      upserts.push(s);
    }
    for (const id of removed) state.delete(id);
    for (const s of upserts) state.set(s.id, s);
    const list = [...state.values()].map((s) => structuredClone(s));
    await a.apply(list);
    inc.log.length = 0;
    const r = await b.applyChanges(
      upserts.map((s) => structuredClone(s)),
      removed,
      { adopt: true },
    );
    t.deepEqual(dump(inc), dump(full), `step ${step}: the same maps`);
    const touched = new Set(inc.log.filter((o) => o.map === 'tsct_lb4_services').map((o) => o.key));
    t.true(
      touched.size <= (upserts.length + removed.length) * 4,
      `step ${step}: only the changed services' entries (old and new, with their wildcards)`,
    );
    t.deepEqual(
      r.changedIds,
      upserts.map((s) => s.id).sort((x, y) => x - y),
    );
  }
  t.deepEqual(b.lbState(), a.lbState());
  // A restored writer agrees: the whole list again writes nothing.
  const c = await writer(inc);
  const r = await c.apply([...state.values()]);
  t.is(lbTouched(r), 0);
});

test('applyChanges refuses a frontend another service keeps, and a state change of a backend another service keeps', async (t) => {
  const f = fakeMaps();
  const w = await writer(f);
  await w.apply([dns(), dnsTcp()]);
  f.log.length = 0;
  const clash = svc(7, '10.96.0.10', 53, [be('10.0.9.9', 53)]);
  await t.throwsAsync(w.applyChanges([clash]), { instanceOf: UsageError, message: /service 1's already/ });
  const draining = dns();
  draining.backends[0].state = 'terminating'; // 10.0.1.5:53 is service 3's too, active there
  await t.throwsAsync(w.applyChanges([draining]), { instanceOf: UsageError, message: /one state/ });
  t.deepEqual(f.log, [], 'nothing written');
  // Both together are one state again; a moved frontend is free for another service in the same call.
  const tcp = dnsTcp();
  tcp.backends[0].state = 'terminating';
  const r = await w.applyChanges([draining, tcp]);
  t.deepEqual(r.changedIds, [1, 3]);
  const moved = svc(1, '10.96.0.11', 53, [be('10.0.1.5', 53, { state: 'terminating' })]);
  const taker = svc(8, '10.96.0.10', 53, [be('10.0.9.9', 53)]);
  await w.applyChanges([moved, taker]);
  t.is(serviceAt(f, v4Key('10.96.0.10', 53, 17))!.u('rev_nat_index'), 8);
  t.is(serviceAt(f, v4Key('10.96.0.11', 53, 17))!.u('rev_nat_index'), 1);
  t.truthy(serviceAt(f, v4Key('10.96.0.11', 0, 0)));
});
