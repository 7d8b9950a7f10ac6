// One agent per bpf-root: a second agent on a root a running agent manages is
// refused before it touches anything, and the lock of an agent that died is
// taken over.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, queryTc } from 'libbpf-ts';
import { privTest } from './helpers/privilege';
import { NamespaceLab } from '../lab/namespaceLab';
import { AgentHandle, startAgentIn, tsctIn } from '../lab/agentProcess';
import { MAP_NAMES } from '../src/datapath/tables';
import { lockPathFor } from '../src/agent/lock';
import { TC_HANDLE, TC_PRIORITY } from '../src/datapath/attach';

const ARGS = ['--devices', 'veth0', '--bpf-ct-global-tcp-max', '4096', '--bpf-ct-global-any-max', '4096'];

/** What a second agent must not change: the programs attached, the maps pinned, the configuration. */
function snapshot(ns: string, root: string): { progs: Array<number | null>; maps: number[]; config: string } {
  const maps = MAP_NAMES.map((name) => {
    const m = BpfMap.openPinned(path.join(root, name));
    try {
      return m.info().id;
    } finally {
      m.close();
    }
  });
  const config = BpfMap.openPinned(path.join(root, 'tsct_config'));
  try {
    const netns = NamespaceLab.path(ns);
    const at = { handle: TC_HANDLE, priority: TC_PRIORITY, netns };
    return {
      progs: [queryTc('veth0', 'ingress', at), queryTc('veth0', 'egress', at)],
      maps,
      config: config.lookup(Buffer.alloc(4))!.toString('hex'),
    };
  } finally {
    config.close();
  }
}

privTest('a second agent on the same bpf-root is refused with the first one’s pid, and changes nothing', async (t) => {
  const lab = new NamespaceLab('tsct-lock');
  const ns = lab.addNamespace('x');
  const peer = lab.addNamespace('y');
  lab.link({ ns, dev: 'veth0', addrs: ['10.200.9.1/24'] }, { ns: peer, dev: 'veth1', addrs: ['10.200.9.2/24'] });
  const root = `/sys/fs/bpf/${lab.id}`;
  let first: AgentHandle | null = null;
  try {
    first = await startAgentIn(ns, [...ARGS, '--bpf-root', root, '--prometheus-serve-addr', 'off']);
    const before = snapshot(ns, root);
    t.true(fs.existsSync(lockPathFor(root)), 'the running agent holds its lock file');

    // Other settings, which would resize maps and replace the programs if it went ahead.
    const second = await tsctIn(ns, [
      'agent',
      '--devices',
      'veth0',
      '--bpf-root',
      root,
      '--bpf-ct-global-tcp-max',
      '8192',
      '--prometheus-serve-addr',
      'off',
    ]);
    t.is(second.code, 2, second.stderr);
    const lines = second.stderr.trim().split('\n');
    t.is(lines.length, 1, 'one line');
    t.regex(lines[0], new RegExp(`another tsct agent \\(pid ${first.child.pid}\\) manages --bpf-root ${root}`));
    t.regex(lines[0], /stop it first, or give this one another --bpf-root/);
    t.deepEqual(snapshot(ns, root), before, 'program ids, map ids and the configuration are unchanged');

    // The first one dies without cleaning up: its lock goes with it, and the next agent takes over.
    first.child.kill('SIGKILL');
    await new Promise((r) => first!.child.once('close', r));
    first = null;
    t.true(fs.existsSync(lockPathFor(root)), 'a dead agent leaves its lock file behind');
    first = await startAgentIn(ns, [...ARGS, '--bpf-root', root, '--prometheus-serve-addr', 'off']);
    t.is(fs.readFileSync(lockPathFor(root), 'utf8').trim(), String(first.child.pid), 'the stale lock was taken over');
    t.is(await first.stop(), 0);
    first = null;
    t.false(fs.existsSync(lockPathFor(root)), 'an agent that stops removes its lock file');
  } finally {
    if (first) await first.stop();
    await tsctIn(ns, ['uninstall', '--bpf-root', root]);
    lab.destroy();
  }
});
