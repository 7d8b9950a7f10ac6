// The usual end-to-end set-up: a router lab, `tsct agent` on the router's
// devices with small tables and its own bpf-root, optionally the echo server,
// and everything removed afterwards (agent stopped, pins uninstalled,
// namespaces deleted), also when the test fails.
import { buildRouterLab, RouterLab, RouterLabOptions } from './routerLab';
import { startEchoServer } from './traffic';
import { AgentHandle, startAgentIn, tsctIn } from './agentProcess';

export interface RouterAgentOptions {
  /** Namespace name prefix, unique per test file (labs of one process must not collide). */
  prefix: string;
  lab?: RouterLabOptions;
  /** Devices to manage; eth1,eth2 (client and server side) by default. */
  devices?: string;
  /** More agent flags, after the defaults (a flag given again wins). */
  args?: string[];
  /** Start the echo server on the server at this port (TCP and UDP) for this many seconds. */
  echo?: { port: number; seconds: number };
}

/** The agent's flags for a lab router: its devices, a bpf-root, 4096-entry tables. */
export function labAgentArgs(root: string, devices = 'eth1,eth2', extra: string[] = []): string[] {
  return [
    '--devices',
    devices,
    '--bpf-root',
    root,
    '--bpf-ct-global-tcp-max',
    '4096',
    '--bpf-ct-global-any-max',
    '4096',
    ...extra,
  ];
}

export async function withRouterAgent<T>(
  o: RouterAgentOptions,
  fn: (lab: RouterLab, root: string, agent: AgentHandle) => Promise<T>,
): Promise<T> {
  const lab = buildRouterLab(o.prefix, o.lab);
  const root = `/sys/fs/bpf/${lab.lab.id}`;
  let agent: AgentHandle | null = null;
  try {
    agent = await startAgentIn(lab.router, labAgentArgs(root, o.devices, o.args));
    if (o.echo) await startEchoServer(lab.lab, lab.server, o.echo.port, o.echo.seconds);
    return await fn(lab, root, agent);
  } finally {
    if (agent) await agent.stop();
    await tsctIn(lab.router, ['uninstall', '--bpf-root', root]);
    lab.lab.destroy();
  }
}
