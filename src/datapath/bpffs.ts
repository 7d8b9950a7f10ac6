import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/** statfs(2) f_type of a bpffs mount. */
export const BPF_FS_MAGIC = 0xcafe4a11;
export const DEFAULT_BPFFS = '/sys/fs/bpf';

export function isOnBpffs(path: string): boolean {
  try {
    return fs.statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Makes sure `mountPoint` is a bpffs mount, mounting one when it is not.
 * Throws an Error whose message says what to do when that is impossible.
 */
export function ensureBpffs(mountPoint: string = DEFAULT_BPFFS): void {
  if (isOnBpffs(mountPoint)) return;
  try {
    fs.mkdirSync(mountPoint, { recursive: true });
    execFileSync('mount', ['-t', 'bpf', 'bpf', mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = e instanceof Error && 'stderr' in e ? String((e as { stderr: Buffer }).stderr).trim() : String(e);
    throw new Error(
      `bpffs is not mounted at ${mountPoint} and mounting it failed (${why}): run as root, or mount it: mount -t bpf bpf ${mountPoint}`,
    );
  }
  if (!isOnBpffs(mountPoint))
    throw new Error(`${mountPoint} is still not a bpffs mount after mounting one: mount -t bpf bpf ${mountPoint}`);
}
