// One agent per bpf-root. A second agent on a root that a running agent
// manages would replace its programs, resize maps under it, and both would
// run their GC and write the config; it is refused before it touches
// anything. The lock is a flock on a file under /run/tsct/, named after the
// root: the kernel releases it when its holder dies, so a stale lock file of
// a dead agent is simply taken over. A holder that stops removes its file.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileLock, isBpfError } from 'libbpf-ts';
import { UsageError } from '../errors';

export const LOCK_DIR = process.env.TSCT_LOCK_DIR ?? '/run/tsct';

export interface AgentLock {
  path: string;
  release(): void;
}

/** The lock file of a bpf-root: readable names for the usual roots, a hash for the rest. */
export function lockPathFor(bpfRoot: string, dir = LOCK_DIR): string {
  const root = path.resolve(bpfRoot);
  const slug = root.replace(/^\/sys\/fs\/bpf\/?/, '').replace(/[^A-Za-z0-9_.-]+/g, '_') || 'bpffs';
  const hash = crypto.createHash('sha256').update(root).digest('hex').slice(0, 8);
  return path.join(dir, `agent-${slug.slice(0, 64)}-${hash}.lock`);
}

export function lockBpfRoot(bpfRoot: string, dir = LOCK_DIR): AgentLock {
  const file = lockPathFor(bpfRoot, dir);
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UsageError(`cannot create ${dir} for the agent's lock: ${(e as NodeJS.ErrnoException).code}`);
  }
  let lock: FileLock;
  try {
    lock = FileLock.acquire(file);
  } catch (e) {
    if (isBpfError(e, 'EAGAIN') || isBpfError(e, 'EWOULDBLOCK')) {
      const pid = readPid(file);
      throw new UsageError(
        `another tsct agent${pid ? ` (pid ${pid})` : ''} manages --bpf-root ${bpfRoot}: ` +
          `stop it first, or give this one another --bpf-root`,
      );
    }
    throw e;
  }
  // Whoever holds the lock writes its pid, for the message above.
  fs.writeFileSync(file, `${process.pid}\n`);
  return {
    path: file,
    release() {
      // Removed while still held: a waiting agent then locks the file that is there next (see lockFile).
      fs.rmSync(file, { force: true });
      lock.unlock();
    },
  };
}

function readPid(file: string): number | null {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
