// Benchmark `binding`: the cost of a libbpf-ts call against the same call
// from C, and streaming a 1,000,000-entry map against bpftool's dump.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfObject } from 'libbpf-ts';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { ROOT, benchPinDir, buildC, figure, nowNs, series, verdict, fmt } from './common';

const ROUNDS = 5;
const LOOKUPS = 300_000;
const ENTRIES = 1_000_000;

async function main(): Promise<void> {
  ensureBpffs();
  const baseline = buildC('lookup_baseline');
  const dir = benchPinDir('binding');
  const obj = BpfObject.open(path.join(ROOT, 'test', 'fixtures', 'build', 'binding.bpf.o'));
  obj.setMaxEntries('test_hash', ENTRIES);
  await obj.load();
  const map = obj.map('test_hash');
  const pin = path.join(dir, 'test_hash');
  map.pin(pin);
  try {
    // Fill: key i -> value (i, ~i).
    const keys = Buffer.alloc(ENTRIES * 8);
    const values = Buffer.alloc(ENTRIES * 16);
    for (let i = 0; i < ENTRIES; i++) {
      keys.writeBigUInt64LE(BigInt(i), i * 8);
      values.writeBigUInt64LE(BigInt(i), i * 16);
      values.writeBigUInt64LE(BigInt(~i >>> 0), i * 16 + 8);
    }
    await map.updateBatch(keys, values);

    const key = keys.subarray(12345 * 8, 12346 * 8);
    const out = Buffer.alloc(16);
    const c: number[] = [];
    const js: number[] = [];
    const jsInto: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const line = execFileSync(baseline, [pin, key.toString('hex'), String(LOOKUPS)], { encoding: 'utf8' });
      c.push(Number(/ns_per_lookup=([\d.]+)/.exec(line)![1]));
      let t = nowNs();
      for (let i = 0; i < LOOKUPS; i++) map.lookup(key);
      js.push((nowNs() - t) / LOOKUPS);
      t = nowNs();
      for (let i = 0; i < LOOKUPS; i++) map.lookupInto(key, out);
      jsInto.push((nowNs() - t) / LOOKUPS);
    }
    const cMed = series('lookup_c_ns', c);
    const jsMed = series('lookup_js_ns', js);
    const intoMed = series('lookup_into_js_ns', jsInto);
    const lookupRatio = jsMed / cMed;
    figure('lookup_js_over_c', lookupRatio);
    figure('lookup_into_js_over_c', intoMed / cMed);

    const tsDump: number[] = [];
    const bpftool: number[] = [];
    let peakRss = 0;
    for (let r = 0; r < 3; r++) {
      let t = nowNs();
      let n = 0;
      let check = 0n;
      for await (const chunk of map.batches({ chunkSize: 16384 })) {
        n += chunk.count;
        check += chunk.keys.readBigUInt64LE(0);
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
      }
      tsDump.push((nowNs() - t) / 1e6);
      if (n !== ENTRIES) throw new Error(`dump saw ${n} entries, expected ${ENTRIES}`);
      void check;
      t = nowNs();
      const b = spawnSync('bpftool', ['map', 'dump', 'pinned', pin], {
        stdio: ['ignore', fs.openSync('/dev/null', 'w'), 'pipe'],
      });
      if (b.status !== 0) throw new Error(`bpftool map dump failed: ${b.stderr}`);
      bpftool.push((nowNs() - t) / 1e6);
    }
    const tsMed = series('dump_1m_ts_ms', tsDump);
    const btMed = series('dump_1m_bpftool_ms', bpftool);
    figure('dump_bpftool_over_ts', btMed / tsMed);
    figure('dump_peak_rss_mb', peakRss / 2 ** 20);
    figure(
      'summary',
      `lookup js/c ${fmt(lookupRatio)}x (target <= 1.5x: ${verdict(lookupRatio <= 1.5)}); ` +
        `1M-entry dump ${fmt(tsMed, 0)} ms vs bpftool ${fmt(btMed, 0)} ms (${fmt(btMed / tsMed, 1)}x faster)`,
    );
  } finally {
    map.close();
    obj.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`binding benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
