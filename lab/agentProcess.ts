// Running `tsct agent` (and the CLI) inside a lab namespace, as a real process.
// nsenter, not `ip netns exec`: the latter remounts /sys, hiding bpffs pins.
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { NamespaceLab } from './namespaceLab';

export const TSCT_BIN = path.resolve(__dirname, '..', '..', 'bin', 'tsct');

export interface AgentHandle {
  child: ChildProcess;
  log: string[];
  /** SIGTERM and wait for the exit. */
  stop(): Promise<number | null>;
}

/**
 * Starts the agent in `ns`; resolves when it has attached to every device. `nodeArgs` go to node itself
 * (e.g. --cpu-prof, for profiling a benchmark's agent).
 */
export function startAgentIn(
  ns: string,
  args: string[],
  timeoutMs = 120_000,
  nodeArgs: readonly string[] = [],
): Promise<AgentHandle> {
  const child = spawn(
    'nsenter',
    [`--net=${NamespaceLab.path(ns)}`, process.execPath, ...nodeArgs, TSCT_BIN, 'agent', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  const devices = (args[args.indexOf('--devices') + 1] ?? '').split(',').length;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`agent did not attach within ${timeoutMs} ms:\n${log.join('\n')}`));
    }, timeoutMs);
    let attached = 0;
    const onLine = (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        log.push(line);
        if (line.includes(' attached to ')) attached++;
        if (attached === devices && line.includes('gc: ')) {
          clearTimeout(timer);
          resolve({
            child,
            log,
            stop: () =>
              new Promise((r) => {
                if (child.exitCode !== null) return r(child.exitCode);
                child.once('close', (code) => r(code));
                child.kill('SIGTERM');
              }),
          });
        }
      }
    };
    child.stdout!.on('data', onLine);
    child.stderr!.on('data', onLine);
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code}) before attaching:\n${log.join('\n')}`));
    });
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `tsct ...` inside `ns` (or here, with ns null). */
export function tsctIn(ns: string | null, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  const [cmd, argv] = ns
    ? ['nsenter', [`--net=${NamespaceLab.path(ns)}`, process.execPath, TSCT_BIN, ...args]]
    : [process.execPath, [TSCT_BIN, ...args]];
  return new Promise((resolve) => {
    execFile(cmd, argv as string[], { env, maxBuffer: 1 << 28, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}
