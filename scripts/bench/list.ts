// Benchmark `list`: `tsct bpf ct list global` of 1,000,000 entries to a file,
// against `bpftool map dump` of the same pinned map, in the same run, with the
// CLI's peak memory.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Datapath } from '../../src/datapath/datapath';
import { ensureBpffs } from '../../src/datapath/bpffs';
import { fillCt4 } from './ctFill';
import { ROOT, benchPinDir, figure, series, verdict, fmt } from './common';

const ENTRIES = 1_000_000;
const ROUNDS = 3;

/** Wall seconds and peak RSS (KiB) of a command, its stdout to a file. */
function timed(cmd: string[], out: string): { s: number; rssKb: number } {
  const fd = fs.openSync(out, 'w');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', ...cmd], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
  fs.closeSync(fd);
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} failed: ${r.stderr}`);
  const [s, kb] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { s, rssKb: kb };
}

async function main(): Promise<void> {
  ensureBpffs();
  const root = benchPinDir('list');
  const dp = await Datapath.load({ sizes: { ctTcp: ENTRIES, ctAny: 1024 }, pinRoot: root });
  const out = path.join(os.tmpdir(), `tsct-bench-list-${process.pid}.txt`);
  try {
    await fillCt4(dp.maps.tsct_ct4_global, ENTRIES, process.hrtime.bigint(), 1 << 30);
    const cli: number[] = [];
    const bpftool: number[] = [];
    let rss = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const c = timed(
        [process.execPath, path.join(ROOT, 'bin', 'tsct'), 'bpf', 'ct', 'list', 'global', '--bpf-root', root],
        out,
      );
      const lines = Number(execFileSync('wc', ['-l', out], { encoding: 'utf8' }).trim().split(' ')[0]);
      if (lines !== ENTRIES) throw new Error(`the CLI listed ${lines} lines, expected ${ENTRIES}`);
      cli.push(c.s);
      rss = Math.max(rss, c.rssKb);
      bpftool.push(timed(['bpftool', 'map', 'dump', 'pinned', path.join(root, 'tsct_ct4_global')], out).s);
    }
    const c = series('cli_list_1m_s', cli);
    const b = series('bpftool_dump_1m_s', bpftool);
    figure('bpftool_over_cli', b / c);
    figure('cli_peak_rss_mb', rss / 1024);
    figure(
      'summary',
      `listing 1M connections: ${fmt(c)} s (<= 2: ${verdict(c <= 2)}), ${fmt(b / c, 1)}x faster than bpftool (>= 4: ${verdict(b / c >= 4)}), ` +
        `peak ${fmt(rss / 1024, 0)} MB (< 250: ${verdict(rss / 1024 < 250)})`,
    );
  } finally {
    dp.close();
    fs.rmSync(out, { force: true });
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`list benchmark could not measure: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
