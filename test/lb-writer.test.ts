// The load balancer's writer and CLI over the real maps of a loaded datapath: what the kernel holds after an apply,
// that a second apply and a restored writer's identical apply write nothing, a 1000-backend Maglev service
// (M = 65521) rebuilt after one backend change (timed), and the tsct service / tsct bpf lb commands on a pinned
// root, including a refused command that changes nothing. Needs root.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExecutionContext } from 'ava';
import { privTest, privTestSerial } from './helpers/privilege';
import { Datapath } from '../src/datapath/datapath';
import { LB_MAPS } from '../src/datapath/tables';
import { ENUMS, StructView } from '../src/bpf/layouts';
import { ensureBpffs } from '../src/datapath/bpffs';
import { tsctIn } from '../lab/agentProcess';
import { LbService } from '../src/lb/lbService';
import { LbMaps, lbTouched, LbWriter } from '../src/lb/lbWriter';
import { buildMaglevTable, DEFAULT_MAGLEV_HASH_SEED, maglevDisruption, parseMaglevHashSeed } from '../src/lb/maglev';
import { be, svc, u32, v4Key } from './helpers/lbFixtures';

const SEED = parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur;
const SF = ENUMS.lb_service_flag;
const SIZES = { ctTcp: 1024, ctAny: 1024, nat: 1024, frag: 1024, lb: 4096, lbAffinity: 1024, lbMaglevSlots: 262144 };

function lbMaps(dp: Datapath): LbMaps {
  const out: Partial<LbMaps> = {};
  for (const m of LB_MAPS) out[m] = dp.maps[m];
  return out as LbMaps;
}

const services = (): LbService[] => [
  svc(1, '10.96.0.10', 53, [be('10.0.1.5', 53, { name: 'dns-a' }), be('10.0.2.7', 53, { state: 'terminating' })]),
  svc(2, 'fd00::10', 443, [be('fd00::1:5', 8443), be('fd00::1:6', 8443, { weight: 3 })], {
    frontend: { addr: 'fd00::10', port: 443, proto: 'tcp' },
    type: 'NodePort',
    algorithm: 'random',
    affinityTimeoutS: 600,
  }),
  svc(3, '10.96.0.10', 53, [be('10.0.1.5', 53)], { frontend: { addr: '10.96.0.10', port: 53, proto: 'tcp' } }),
];

function table(dp: Datapath, v: StructView<'lb_service'>): Uint32Array {
  const out = new Uint32Array(v.u('table_size'));
  for (let i = 0; i < out.length; i++)
    out[i] = dp.maps.tsct_lb_maglev.lookup(u32(v.u('table_offset') + i))!.readUInt32LE(0);
  return out;
}

async function withDatapath(t: ExecutionContext, fn: (dp: Datapath) => Promise<void>): Promise<void> {
  const dp = await Datapath.load({ sizes: SIZES });
  try {
    await fn(dp);
  } finally {
    dp.close();
  }
  t.pass();
}

privTest('the writer over the real maps: one apply writes all, the same apply nothing, a restored one nothing', (t) =>
  withDatapath(t, async (dp) => {
    const maps = lbMaps(dp);
    const w = await LbWriter.restore(maps, { hashSeed: SEED });
    const r = await w.apply(services());
    // Five entries but one: the NodePort's address (fd00::10) has no wildcard, its other ports are the node's.
    t.deepEqual(r.written, { services: 4, backends: 4, members: 5, revNat: 3, slots: 251 + 2 + 251 });
    t.is(r.tablesRebuilt, 3);

    const dns = new StructView('lb_service', dp.maps.tsct_lb4_services.lookup(v4Key('10.96.0.10', 53, 17))!);
    t.is(dns.u('rev_nat_index'), 1);
    t.is(dns.u('table_size'), 251);
    t.deepEqual(
      table(dp, dns),
      buildMaglevTable([{ name: 'dns-a', id: 1 }], 251, SEED),
      'the terminating backend is left out while one is active',
    );
    const wildcard = new StructView('lb_service', dp.maps.tsct_lb4_services.lookup(v4Key('10.96.0.10', 0, 0))!);
    t.is(wildcard.u('flags'), SF.LB_SVC_F_WILDCARD);
    const backend = new StructView('lb_backend', dp.maps.tsct_lb_backends.lookup(u32(2))!);
    t.is(backend.bytes('port').readUInt16BE(), 53);
    t.is(backend.u('state'), ENUMS.lb_backend_state.LB_BE_TERMINATING);
    t.deepEqual(w.lbState(), services());

    const again = await w.apply(services());
    t.is(lbTouched(again), 0);

    const restored = await LbWriter.restore(maps, { hashSeed: SEED });
    t.deepEqual(
      restored.lbState().map((s) => s.backends.length),
      [2, 2, 1],
    );
    const r2 = await restored.apply(services());
    t.is(lbTouched(r2), 0, 'the restored writer finds every entry and table as wanted');

    const r3 = await restored.apply(services().slice(1));
    t.deepEqual(r3.removed, { services: 1, backends: 1, members: 2, revNat: 1, affinity: 0, stats: 1 });
    t.is(dp.maps.tsct_lb4_services.lookup(v4Key('10.96.0.10', 53, 17)), null);
    t.is(new StructView('lb_backend', dp.maps.tsct_lb_backends.lookup(u32(2))!).u('state'), 0);
  }),
);

privTest('a 1000-backend Maglev service (M = 65521) is rebuilt after one backend change', (t) =>
  withDatapath(t, async (dp) => {
    const maps = lbMaps(dp);
    const w = await LbWriter.restore(maps, { hashSeed: SEED, maglevTableSize: 65521 });
    const backends = Array.from({ length: 1000 }, (_, i) => be(`10.1.${i >> 8}.${i & 255}`, 8080));
    const big = () =>
      svc(
        7,
        '10.96.7.7',
        80,
        backends.map((b) => ({ ...b })),
      );
    let start = process.hrtime.bigint();
    const first = await w.apply([big()]);
    const firstMs = Number(process.hrtime.bigint() - start) / 1e6;
    t.is(first.written.slots, 65521);
    t.is(first.written.backends, 1000);
    const before = table(
      dp,
      new StructView('lb_service', dp.maps.tsct_lb4_services.lookup(v4Key('10.96.7.7', 80, 17))!),
    );

    const changed = big();
    changed.backends[500].state = 'terminating';
    start = process.hrtime.bigint();
    const r = await w.apply([changed]);
    const changeMs = Number(process.hrtime.bigint() - start) / 1e6;
    t.log(
      `1000 backends, M=65521: first apply ${firstMs.toFixed(1)} ms, one backend terminating ${changeMs.toFixed(1)} ms`,
    );
    t.deepEqual(r.written, { services: 1, backends: 1, members: 0, revNat: 0, slots: 65521 });
    t.is(r.tablesRebuilt, 1);
    t.is(r.slotsFreed, 65521);
    const after = table(
      dp,
      new StructView('lb_service', dp.maps.tsct_lb4_services.lookup(v4Key('10.96.7.7', 80, 17))!),
    );
    t.false(after.includes(501), 'the terminating backend (id 501) takes no new connections');
    const moved = maglevDisruption(before, after);
    t.true(moved < 0.01, `only about the leaving backend's share of slots moves (${(moved * 100).toFixed(2)}%)`);

    start = process.hrtime.bigint();
    const restored = await LbWriter.restore(maps, { hashSeed: SEED, maglevTableSize: 65521 });
    const same = await restored.apply([changed]);
    const restoreMs = Number(process.hrtime.bigint() - start) / 1e6;
    t.log(`restore and the same apply (the table checked slot by slot): ${restoreMs.toFixed(1)} ms`);
    t.is(lbTouched(same), 0);
  }),
);

privTestSerial(
  'tsct service and tsct bpf lb program and list the pinned maps; a refused command changes nothing',
  async (t) => {
    ensureBpffs();
    const root = `/sys/fs/bpf/tsct-lb-${process.pid.toString(36)}`;
    fs.mkdirSync(root, { recursive: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-lb-'));
    const dp = await Datapath.load({ sizes: SIZES, pinRoot: root });
    const tsct = (...args: string[]) => tsctIn(null, [...args, '--bpf-root', root]);
    try {
      let r = await tsct(
        'service',
        'update',
        '--id',
        '1',
        '--frontend',
        '10.96.0.10:53/udp',
        '--backends',
        '10.0.1.5:53,10.0.2.7=terminating',
        '--algorithm',
        'maglev',
      );
      t.is(r.code, 0, r.stderr);
      t.regex(
        r.stdout,
        /^service 1 10\.96\.0\.10:53\/UDP: wrote 7 entries \(2 service, 2 backend, 2 member, 1 reverse NAT\) and 1 table \(251 slots\); removed 0 entries\n$/,
      );
      r = await tsct(
        'service',
        'update',
        '--id',
        '2',
        '--frontend',
        '[fd00::10]:443',
        '--backends',
        '[fd00::1:5]:8443',
        '--type',
        'NodePort',
      );
      t.is(r.code, 0, r.stderr);

      r = await tsct('service', 'list');
      t.is(r.code, 0, r.stderr);
      t.deepEqual(r.stdout.trimEnd().split('\n'), [
        'ID   Frontend             Service Type   Backend',
        '1    10.96.0.10:53/UDP    ClusterIP      1 => 10.0.1.5:53/UDP (active)',
        '                                         2 => 10.0.2.7:53/UDP (terminating)',
        '2    [fd00::10]:443/TCP   NodePort       1 => [fd00::1:5]:8443/TCP (active)',
      ]);
      r = await tsct('bpf', 'lb', 'list');
      t.deepEqual(r.stdout.trimEnd().split('\n'), [
        'SERVICE ADDRESS      BACKEND ADDRESS (REVNAT_ID) (SLOT)',
        '10.96.0.10:0/ANY     0.0.0.0:0 (0) (0) [wildcard]',
        '10.96.0.10:53/UDP    10.0.1.5:53/UDP (1) (1)',
        '                     10.0.2.7:53/UDP (1) (2)',
        '                     0.0.0.0:0 (1) (0) [ClusterIP]',
        '[fd00::10]:443/TCP   [fd00::1:5]:8443/TCP (2) (1)',
        '                     [::]:0 (2) (0) [NodePort]',
      ]);
      r = await tsct('bpf', 'lb', 'maglev', 'list');
      const [header, row] = r.stdout.trimEnd().split('\n');
      t.is(header, 'SVC ID   LOOKUP TABLE');
      t.is(row, `1        [${Array.from(buildMaglevTable([{ name: '10.0.1.5:53', id: 1 }], 251, SEED)).join(' ')}]`);

      // Refused: a backend of the other family. One line, exit 2, and the maps as they were.
      const before = (await tsct('service', 'list', '-o', 'json')).stdout;
      r = await tsct('service', 'update', '--id', '1', '--frontend', '10.96.0.10:53/udp', '--backends', '[fd00::9]:53');
      t.is(r.code, 2);
      t.is(
        r.stderr,
        'tsct: backend [fd00::9]:53 is IPv6 but frontend 10.96.0.10:53/UDP is IPv4; a service balances within one family\n',
      );
      r = await tsct(
        'service',
        'update',
        '--id',
        '3',
        '--frontend',
        '10.96.0.10:53',
        '--backends',
        '10.0.1.5',
        '--affinity-timeout',
        '2d',
      );
      t.is(r.code, 2);
      t.is(r.stderr.split('\n').length, 2, 'one line');
      r = await tsct('service', 'delete', '9');
      t.is(r.code, 2);
      t.is(r.stderr, 'tsct: there is no service 9; tsct service list shows the services and their ids\n');
      t.is((await tsct('service', 'list', '-o', 'json')).stdout, before);

      // apply -f: the file is the whole set.
      const file = path.join(dir, 'services.yaml');
      fs.writeFileSync(file, 'services:\n  - id: 5\n    frontend: 10.96.0.5:80/tcp\n    backends: [10.0.1.5:8080]\n');
      r = await tsct('service', 'apply', '-f', file);
      t.is(r.code, 0, r.stderr);
      t.regex(r.stdout, /^1 service applied: /);
      const list = JSON.parse((await tsct('service', 'list', '-o', 'json')).stdout) as LbService[];
      t.deepEqual(
        list.map((s) => s.id),
        [5],
      );
      fs.writeFileSync(file, 'services:\n  - id: 5\n    frontend: 10.96.0.5:80/tcp\n    backends: [10.0.1.5:http]\n');
      r = await tsct('service', 'apply', '-f', file);
      t.is(r.code, 2);
      t.regex(
        r.stderr,
        /^tsct: .*services\.yaml:4: backend: '10\.0\.1\.5:http' has port 'http'; a port is 1 to 65535\n$/,
      );
      r = await tsct('service', 'delete', '5');
      t.is(r.code, 0, r.stderr);
      t.is((await tsct('bpf', 'lb', 'list')).stdout, 'SERVICE ADDRESS   BACKEND ADDRESS (REVNAT_ID) (SLOT)\n');
    } finally {
      dp.close();
      await tsctIn(null, ['uninstall', '--bpf-root', root]);
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
