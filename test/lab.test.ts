// Labs left behind by a process that died (a test killed at its timeout) are
// removed by the next lab; labs of live processes are not.
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { privTest } from './helpers/privilege';
import { NamespaceLab } from '../lab/namespaceLab';

/** A pid no process has: beyond the kernel's pid_max. */
function deadPid(): number {
  return Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1000;
}

privTest('a new lab reaps the namespaces and pins of labs whose process died, and only those', (t) => {
  const staleId = `tsct-reap-${deadPid().toString(36)}beef`;
  const stale = `${staleId}-client`;
  execFileSync('ip', ['netns', 'add', stale]);
  fs.mkdirSync(`/sys/fs/bpf/${staleId}`, { recursive: true });
  const mine = new NamespaceLab('tsct-reap');
  try {
    const live = mine.addNamespace('server');
    new NamespaceLab('tsct-reap').destroy();
    const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    t.false(names.includes(stale), "the dead process's namespace is gone");
    t.false(fs.existsSync(`/sys/fs/bpf/${staleId}`), 'and its pins');
    t.true(names.includes(live), "a live process's lab is left alone");
  } finally {
    mine.destroy();
    try {
      execFileSync('ip', ['netns', 'del', stale], { stdio: 'ignore' });
    } catch {
      // reaped, as it should be
    }
  }
});
