// libbpf-ts against the real kernel: maps, pins, test runs, attach and detach, errors.
import * as fs from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  BpfError,
  BpfObject,
  BpfMap,
  MapType,
  TcAction,
  UpdateFlags,
  detachTc,
  detachXdp,
  queryTc,
  queryXdp,
  destroyTcHook,
  ifindex,
} from 'libbpf-ts';
import { privTest } from './helpers/privilege';
import { FIXTURE_OBJ, NODE, ROOT } from './helpers/paths';
import { NamespaceLab } from '../lab/namespaceLab';

const N = 100_000;

function u64Key(i: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(i));
  return b;
}

function testValue(i: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(i) * 3n, 0);
  b.writeBigUInt64LE(BigInt(i) ^ 0xdeadbeefn, 8);
  return b;
}

async function loadFixture(sizes: Record<string, number> = {}): Promise<BpfObject> {
  const obj = BpfObject.open(FIXTURE_OBJ);
  for (const [map, n] of Object.entries(sizes)) obj.setMaxEntries(map, n);
  return obj.load();
}

async function roundTrip(t: import('ava').ExecutionContext, map: BpfMap): Promise<void> {
  const keys = Buffer.alloc(N * 8);
  const values = Buffer.alloc(N * 16);
  for (let i = 0; i < N; i++) {
    u64Key(i).copy(keys, i * 8);
    testValue(i).copy(values, i * 16);
  }
  t.is(await map.updateBatch(keys, values), N);

  const seen = new Set<number>();
  let chunks = 0;
  for await (const chunk of map.batches({ chunkSize: 4096 })) {
    chunks++;
    t.true(chunk.count <= 8192, 'a chunk stays near the asked size');
    for (let i = 0; i < chunk.count; i++) {
      const k = Number(chunk.key(i).readBigUInt64LE());
      if (!chunk.value(i).equals(testValue(k))) t.fail(`value of key ${k} differs`);
      seen.add(k);
    }
  }
  t.is(seen.size, N, 'every entry came back exactly once');
  t.true(chunks >= N / 8192, 'the dump was streamed in chunks');

  t.is(await map.deleteBatch(keys), N);
  t.is(map.nextKey(null), null, 'the map is empty after the batch delete');
}

privTest('batch update, dump and delete round-trip 100,000 entries on a hash map', async (t) => {
  const obj = await loadFixture({ test_hash: N });
  const map = obj.map('test_hash');
  t.is(map.type, MapType.hash);
  await roundTrip(t, map);
  // Filled to max_entries, one more insert is refused with a readable error.
  await map.updateBatch(
    Array.from({ length: N }, (_, i) => u64Key(i)),
    Array.from({ length: N }, (_, i) => testValue(i)),
  );
  const err = t.throws(() => map.update(u64Key(N + 1), testValue(1)), { instanceOf: BpfError }) as BpfError;
  t.is(err.code, 'E2BIG');
  t.is(err.message, 'bpf_map_update_elem(test_hash): E2BIG: map is full');
  obj.close();
  map.close();
});

privTest('batch update, dump and delete round-trip 100,000 entries on an LRU hash map', async (t) => {
  // LRU maps keep per-CPU free lists and may evict before they are full; leave room.
  const obj = await loadFixture({ test_lru: 2 * N });
  const map = obj.map('test_lru');
  t.is(map.type, MapType.lru_hash);
  await roundTrip(t, map);
  obj.close();
});

privTest('single-key operations: lookup, update flags, delete, next key', async (t) => {
  const obj = await loadFixture();
  const map = obj.map('test_hash');
  t.is(map.lookup(u64Key(1)), null);
  map.update(u64Key(1), testValue(1), UpdateFlags.noExist);
  t.deepEqual(map.lookup(u64Key(1)), testValue(1));
  t.is((t.throws(() => map.update(u64Key(1), testValue(2), UpdateFlags.noExist)) as BpfError).code, 'EEXIST');
  t.is((t.throws(() => map.update(u64Key(2), testValue(2), UpdateFlags.exist)) as BpfError).code, 'ENOENT');
  t.deepEqual(map.nextKey(null), u64Key(1));
  t.is(map.nextKey(u64Key(1)), null);
  t.true(map.delete(u64Key(1)));
  t.false(map.delete(u64Key(1)));
  obj.close();
});

privTest('per-CPU array values read back per CPU', async (t) => {
  const obj = await loadFixture();
  const map = obj.map('test_counts');
  t.is(map.type, MapType.percpu_array);
  t.true(map.perCpu);
  const perCpu = Array.from({ length: map.possibleCpus }, (_, c) => u64Key(1000 + c));
  map.update(Buffer.alloc(4), perCpu);
  const back = map.lookupPerCpu(Buffer.alloc(4));
  t.is(back?.length, map.possibleCpus);
  back!.forEach((v, c) => t.is(v.readBigUInt64LE(), BigInt(1000 + c)));
  t.is((t.throws(() => map.update(Buffer.alloc(4), [u64Key(1)])) as BpfError).code, 'EINVAL');
  obj.close();
});

privTest('a map pinned by one process is reopened and read in another; max_entries is what was set', async (t) => {
  const dir = `/sys/fs/bpf/tsct-test-${process.pid}-pin`;
  fs.mkdirSync(dir, { recursive: true });
  try {
    const obj = await loadFixture({ test_hash: 4321 });
    const map = obj.map('test_hash');
    t.is(map.info().maxEntries, 4321);
    map.update(u64Key(7), testValue(7));
    map.pin(`${dir}/test_hash`);
    t.is((t.throws(() => map.pin(`${dir}/test_hash`)) as BpfError).code, 'EEXIST');
    obj.close();
    map.close();

    const script = `
      const { BpfMap } = require('libbpf-ts');
      const m = BpfMap.openPinned(${JSON.stringify(dir + '/test_hash')});
      const k = Buffer.alloc(8); k.writeBigUInt64LE(7n);
      console.log(JSON.stringify({ maxEntries: m.maxEntries, name: m.name, value: m.lookup(k).toString('hex') }));`;
    const out = JSON.parse(execFileSync(NODE, ['-e', script], { cwd: ROOT, encoding: 'utf8' }));
    t.deepEqual(out, { maxEntries: 4321, name: 'test_hash', value: testValue(7).toString('hex') });

    // The object can be told to use the pinned map instead of making its own.
    const again = BpfObject.open(FIXTURE_OBJ)
      .setMaxEntries('test_hash', 4321)
      .reusePinnedMap('test_hash', `${dir}/test_hash`);
    await again.load();
    t.deepEqual(again.map('test_hash').lookup(u64Key(7)), testValue(7));
    again.close();

    // A layout that differs is refused with what differs.
    const wrong = BpfObject.open(FIXTURE_OBJ).setMaxEntries('test_hash', 99);
    const err = t.throws(() => wrong.reusePinnedMap('test_hash', `${dir}/test_hash`), {
      instanceOf: BpfError,
    }) as BpfError;
    t.is(err.code, 'EINVAL');
    t.regex(err.message, /max entries 4321 \(pinned\) vs 99 \(object\)/);
    wrong.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

privTest('testRun returns the verdict, the changed packet and the changed context', async (t) => {
  const obj = await loadFixture();
  const prog = obj.program('rewrite_tc');
  const pkt = Buffer.alloc(64);
  pkt.fill(0xaa, 0, 6);
  pkt.fill(0xbb, 6, 12);
  pkt.writeUInt16BE(0x0800, 12);
  // One run: the program swaps the addresses, so an even repeat would swap them back.
  const r = await prog.testRun({ data: pkt, ctx: Buffer.alloc(192), repeat: 1 });
  t.is(r.retval, TcAction.shot);
  t.deepEqual(r.data!.subarray(0, 12), Buffer.concat([Buffer.alloc(6, 0xbb), Buffer.alloc(6, 0xaa)]));
  t.is(r.data!.length, 64);
  // struct __sk_buff: mark at offset 8, cb[0] at 48.
  t.is(r.ctx!.readUInt32LE(8), 0xc0ffee);
  t.is(r.ctx!.readUInt32LE(48), 64);
  t.true(r.durationNs > 0);
  obj.close();
});

privTest('a syscall program runs with its argument and writes it back', async (t) => {
  const obj = await loadFixture();
  const args = Buffer.alloc(24);
  args.writeBigUInt64LE(40n, 0);
  args.writeBigUInt64LE(2n, 8);
  const r = await obj.program('add_syscall').run(args);
  t.is(r.retval, 7);
  t.is(r.ctx!.readBigUInt64LE(16), 42n);
  t.is(obj.map('test_syscall_out').lookup(Buffer.alloc(4))!.readBigUInt64LE(), 42n);
  obj.close();
});

privTest('tc and XDP attach on a veth in namespaces, count a real ping, and leave nothing behind', async (t) => {
  const lab = new NamespaceLab('tsct-bind');
  try {
    const a = lab.addNamespace('a');
    const b = lab.addNamespace('b');
    lab.link({ ns: a, dev: 'va', addrs: ['10.200.1.1/24'] }, { ns: b, dev: 'vb', addrs: ['10.200.1.2/24'] });
    const netns = NamespaceLab.path(b);
    const obj = await loadFixture();
    const counts = obj.map('test_counts');
    const slot = (i: number) => {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      return counts.lookupPerCpu(k)!.reduce((s, v) => s + v.readBigUInt64LE(), 0n);
    };

    const tc = obj.program('count_tc');
    const att = tc.attachTc('vb', 'ingress', { netns });
    t.is(att.ifindex, ifindex('vb', { netns }));
    t.is(queryTc('vb', 'ingress', { netns }), tc.id);
    lab.exec(a, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', '10.200.1.2']);
    t.is(slot(1), 3n, 'three echo requests seen at tc ingress');
    t.true(slot(0) >= 3n);

    const xdp = obj.program('count_xdp');
    xdp.attachXdp('vb', { mode: 'generic', netns });
    t.is(queryXdp('vb', { netns }), xdp.id);
    const second = t.throws(() => xdp.attachXdp('vb', { mode: 'generic', netns }), {
      instanceOf: BpfError,
    }) as BpfError;
    t.regex(second.message, /already attached/);
    lab.exec(a, 'ping', ['-c', '2', '-i', '0.2', '-W', '2', '10.200.1.2']);
    t.is(slot(3), 2n, 'two echo requests seen at XDP');
    t.is(slot(1), 5n, 'and after XDP passed them, at tc too');

    t.false(detachXdp('vb', { netns, expectedProgId: xdp.id + 100000 }), 'another program id is left alone');
    t.true(detachXdp('vb', { netns, expectedProgId: xdp.id }));
    t.true(detachTc('vb', 'ingress', { netns }));
    t.false(detachTc('vb', 'ingress', { netns }), 'a second detach finds nothing');
    t.true(destroyTcHook('vb', { netns }));
    t.is(queryTc('vb', 'ingress', { netns }), null);
    t.is(queryXdp('vb', { netns }), null);
    const link = lab.exec(b, 'ip', ['-d', 'link', 'show', 'vb']);
    t.notRegex(link, /xdp/);
    t.is(lab.exec(b, 'tc', ['qdisc', 'show', 'dev', 'vb']).includes('clsact'), false);
    lab.exec(a, 'ping', ['-c', '1', '-W', '2', '10.200.1.2']);
    t.is(slot(1), 5n, 'nothing counts after detach');
    obj.close();
  } finally {
    lab.destroy();
  }
});

privTest('bad input gives the right code and a readable message', async (t) => {
  const missing = t.throws(() => BpfObject.open('/nonexistent/x.bpf.o'), { instanceOf: BpfError }) as BpfError;
  t.is(missing.code, 'ENOENT');
  t.regex(missing.message, /cannot read BPF object file \/nonexistent\/x\.bpf\.o/);

  const notElf = t.throws(() => BpfObject.open(`${ROOT}/package.json`), { instanceOf: BpfError }) as BpfError;
  t.regex(notElf.message, /^bpf_object__open_file\(.*package\.json\): E\w+: not a loadable BPF object/);

  const obj = await loadFixture();
  const noMap = t.throws(() => obj.map('nope'), { instanceOf: BpfError }) as BpfError;
  t.is(noMap.code, 'ENOENT');
  t.regex(noMap.message, /no map named 'nope'.*\(maps: .*test_hash/);
  const noProg = t.throws(() => obj.program('nope'), { instanceOf: BpfError }) as BpfError;
  t.is(noProg.code, 'ENOENT');
  t.regex(noProg.message, /no program named 'nope'.*count_tc/);

  const noDev = t.throws(() => obj.program('count_tc').attachTc('tsct-no-such0', 'ingress'), {
    instanceOf: BpfError,
  }) as BpfError;
  t.is(noDev.code, 'ENODEV');
  t.regex(noDev.message, /no interface named 'tsct-no-such0'/);
  t.is((t.throws(() => ifindex('tsct-no-such0'), { instanceOf: BpfError }) as BpfError).code, 'ENODEV');
  const noNs = t.throws(() => queryTc('lo', 'ingress', { netns: '/run/netns/tsct-no-such-ns' }), {
    instanceOf: BpfError,
  }) as BpfError;
  t.is(noNs.code, 'ENOENT');

  const map = obj.map('test_hash');
  const badKey = t.throws(() => map.lookup(Buffer.alloc(3)), { instanceOf: BpfError }) as BpfError;
  t.is(badKey.code, 'EINVAL');
  t.is(badKey.message, 'bpf_map_lookup_elem(test_hash): EINVAL: key is 3 bytes, map test_hash has 8-byte keys');
  t.is((t.throws(() => map.update(u64Key(1), Buffer.alloc(3))) as BpfError).code, 'EINVAL');

  const sizeAfterLoad = t.throws(() => obj.setMaxEntries('test_hash', 10), { instanceOf: BpfError }) as BpfError;
  t.is(sizeAfterLoad.code, 'EBUSY');

  const prog = obj.program('count_tc');
  map.close();
  prog.close();
  obj.close();
  t.is((t.throws(() => map.lookup(u64Key(1)), { instanceOf: BpfError }) as BpfError).code, 'EBADF');
  t.regex((t.throws(() => map.lookup(u64Key(1))) as BpfError).message, /test_hash.*closed/);
  t.is((t.throws(() => prog.attachTc('lo', 'ingress'), { instanceOf: BpfError }) as BpfError).code, 'EBADF');
  t.is((t.throws(() => obj.map('test_hash'), { instanceOf: BpfError }) as BpfError).code, 'EBADF');
  await t.throwsAsync(map.batches().next(), { instanceOf: BpfError, code: 'EBADF' } as never);
});

privTest('without CAP_BPF and CAP_SYS_ADMIN a load fails with EPERM and says what to do', (t) => {
  const script = `
    const { BpfObject } = require('libbpf-ts');
    BpfObject.open(${JSON.stringify(FIXTURE_OBJ)}).load().then(
      () => console.log(JSON.stringify({ ok: true })),
      (e) => console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })));`;
  const r = spawnSync(
    'capsh',
    [
      '--drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin',
      '--',
      '-c',
      `exec ${NODE} -e '${script.replace(/'/g, "'\\''")}'`,
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  );
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  t.is(out.name, 'BpfError');
  t.is(out.code, 'EPERM');
  t.regex(out.message, /^bpf_object__load\(.*binding\.bpf\.o\): EPERM: operation not permitted: run as root/);
});
