import { execFileSync, spawn, ChildProcess, SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';

/**
 * A set of network namespaces joined by veth pairs, for tests, the demo and
 * the benchmarks. Every address lives only inside these namespaces; nothing
 * is created in the caller's namespace. destroy() removes all of it (deleting
 * a namespace removes its links) and runs on process exit as a last resort.
 */
export class NamespaceLab {
  readonly id: string;
  private readonly namespaces = new Set<string>();
  private readonly children = new Set<ChildProcess>();
  private static readonly live = new Set<NamespaceLab>();

  constructor(prefix = 'tsct') {
    // Short, unique per process and lab, so parallel test files never collide.
    this.id = `${prefix}-${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
    NamespaceLab.live.add(this);
    NamespaceLab.installExitHook();
    NamespaceLab.reapStale();
  }

  /**
   * Removes labs left by processes that died before cleaning up (a test
   * killed at its timeout): their namespaces, and pins under /sys/fs/bpf/<lab id>.
   * A lab's name carries its creator's pid; only labs of dead processes go.
   */
  static reapStale(): number {
    let names: string[];
    try {
      names = fs.readdirSync('/run/netns');
    } catch {
      return 0;
    }
    let reaped = 0;
    for (const ns of names) {
      const m = /^(tsct(?:-[a-z]+)*-([0-9a-z]+)[0-9a-f]{4})-[a-z0-9]+$/.exec(ns);
      if (!m) continue;
      const pid = parseInt(m[2], 36);
      if (!pidGone(pid)) continue;
      try {
        sh('ip', ['netns', 'del', ns]);
        reaped++;
      } catch {
        // Someone else reaped it first.
      }
      fs.rmSync(`/sys/fs/bpf/${m[1]}`, { recursive: true, force: true });
    }
    return reaped;
  }

  /** Creates a namespace `<lab id>-<role>` with loopback up; returns its name. */
  addNamespace(role: string): string {
    const name = `${this.id}-${role}`;
    sh('ip', ['netns', 'add', name]);
    this.namespaces.add(name);
    this.exec(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  /** The namespace file, as libbpf-ts and nsenter take it. */
  static path(ns: string): string {
    return `/run/netns/${ns}`;
  }

  /**
   * A veth pair with one end in each namespace, each end up with its
   * addresses (CIDR notation, IPv4 or IPv6).
   */
  link(a: { ns: string; dev: string; addrs?: string[] }, b: { ns: string; dev: string; addrs?: string[] }): void {
    sh('ip', ['link', 'add', a.dev, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns]);
    for (const end of [a, b]) {
      for (const addr of end.addrs ?? []) {
        const v6 = addr.includes(':');
        this.exec(end.ns, 'ip', [...(v6 ? ['-6'] : []), 'addr', 'add', addr, 'dev', end.dev, ...(v6 ? ['nodad'] : [])]);
      }
      this.exec(end.ns, 'ip', ['link', 'set', end.dev, 'up']);
    }
  }

  /** Runs a command inside a namespace and returns its stdout; throws with its stderr on failure. */
  exec(ns: string, cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): string {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  /** Starts a long-running command inside a namespace; destroy() kills it. */
  spawn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  destroy(): void {
    for (const child of this.children) child.kill('SIGKILL');
    this.children.clear();
    for (const ns of this.namespaces) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // Already gone.
      }
    }
    this.namespaces.clear();
    NamespaceLab.live.delete(this);
  }

  private static hooked = false;
  private static installExitHook(): void {
    if (NamespaceLab.hooked) return;
    NamespaceLab.hooked = true;
    process.on('exit', () => {
      for (const lab of [...NamespaceLab.live]) lab.destroy();
    });
  }
}

function pidGone(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export function sh(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      timeout: opts.timeoutMs ?? 30_000,
      input: opts.input,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.stdout || err.message).trim()}`);
  }
}
