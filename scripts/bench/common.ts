// Shared by the benchmarks: timing, medians, key=value output.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..', '..');

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

export function fmt(x: number, digits = 2): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

/** Prints one figure as key=value. */
export function figure(key: string, value: number | string): void {
  console.log(`${key}=${typeof value === 'number' ? fmt(value) : value}`);
}

/** Prints median, min and max of a series under one key prefix. */
export function series(key: string, xs: number[]): number {
  const m = median(xs);
  figure(`${key}_median`, m);
  figure(`${key}_min`, Math.min(...xs));
  figure(`${key}_max`, Math.max(...xs));
  return m;
}

export function verdict(ok: boolean): string {
  return ok ? 'met' : 'NOT met';
}

/** Compiles a C helper of the benchmarks against libbpf, once per source change. */
export function buildC(name: string): string {
  const src = path.join(ROOT, 'scripts', 'bench', `${name}.c`);
  const outDir = path.join(ROOT, 'dist', 'bench-bin');
  const out = path.join(outDir, name);
  fs.mkdirSync(outDir, { recursive: true });
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    execFileSync('cc', ['-O2', '-Wall', '-o', out, src, '-lbpf'], { stdio: 'inherit' });
  }
  return out;
}

/** A unique folder on bpffs for a benchmark's pins, removed by the caller. */
export function benchPinDir(name: string): string {
  const dir = `/sys/fs/bpf/tsct-bench-${name}-${process.pid}`;
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * The per-packet benchmarks measure the tracker, NAT and the load balancer:
 * in a test run there is no route, so the fast path (on in the agent) would
 * only add a FIB lookup that fails. The forward benchmark measures it.
 */
export const NO_FAST_PATH = { fastPath: false } as const;
