// `tsct policy apply | list | flush` against a running agent in a namespace,
// with real TCP on the namespace's loopback: the input hook's drop rule
// stops a connection attempt, `list` counts it on that rule, a bad rules file
// is refused in one line and changes nothing, and flush lets traffic through.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lockPathFor } from '../src/agent/lock';
import { AgentHandle, startAgentIn, tsctIn } from '../lab/agentProcess';
import { httpGetIn } from '../lab/httpIn';
import { NamespaceLab } from '../lab/namespaceLab';
import { labAgentArgs } from '../lab/routerAgent';
import { privTestSerial } from './helpers/privilege';

const RULES = `hooks:
  input:
    policy: accept
    rules:
      - ct-state: INVALID
        action: drop
      - protocol: tcp
        dport: 5555
        action: drop
        comment: closed to everyone
`;

/** Exit status of a TCP connect to 127.0.0.1:port within 2 s: 0 connected, 1 refused, 124 no answer. */
function connect(ns: string, port: number): number {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], {
    timeout: 10_000,
  });
  return r.status ?? -1;
}

privTestSerial(
  'tsct policy: apply drops what the rules say, list counts it per rule, a bad file changes nothing, flush',
  async (t) => {
    const lab = new NamespaceLab('tsct-fwcli');
    const root = `/sys/fs/bpf/${lab.id}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.id}-`));
    let agent: AgentHandle | null = null;
    try {
      const ns = lab.addNamespace('x');
      agent = await startAgentIn(ns, labAgentArgs(root, 'lo', ['--prometheus-serve-addr', 'off']), 120_000);
      const tsct = (...args: string[]) => tsctIn(ns, [...args, '--bpf-root', root]);
      t.is(connect(ns, 5555), 1, 'without rules, a closed port refuses at once');

      const rules = path.join(dir, 'rules.yaml');
      fs.writeFileSync(rules, RULES);
      const applied = await tsct('policy', 'apply', '-f', rules);
      t.is(applied.code, 0, applied.stderr);
      t.regex(applied.stdout, /applied/);
      t.is(connect(ns, 5555), 124, 'the SYN is dropped: no answer');
      t.is(connect(ns, 5556), 1, 'other ports are not');

      const list = await tsct('policy', 'list');
      t.is(list.code, 0, list.stderr);
      t.regex(list.stdout, /^Chain input \(policy ACCEPT \d+ packets, \d+ bytes\)$/m);
      const dropLine = list.stdout.split('\n').find((l) => l.includes('dport=5555'));
      t.truthy(dropLine, list.stdout);
      t.true(Number(dropLine!.trim().split(/\s+/)[0]) >= 1, `the drop rule counted the SYN: ${dropLine}`);

      // A bad file: one line naming the line that is wrong, and the live rules stay.
      fs.writeFileSync(rules, `${RULES}      - protocol: tcp\n        dport: 5557\n        action: explode\n`);
      const bad = await tsct('policy', 'apply', '-f', rules);
      t.not(bad.code, 0);
      t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      t.regex(bad.stderr, /rules\.yaml:\d+/);
      t.is(connect(ns, 5555), 124, 'the rules applied before are still live');

      // trace: which rule decides a packet, from the rules applied.
      const trace = await tsct(
        'policy',
        'trace',
        '--hook',
        'input',
        '--src',
        '127.0.0.1',
        '--dst',
        '127.0.0.1',
        '--dport',
        '5555',
      );
      t.is(trace.code, 0, trace.stderr);
      t.regex(trace.stdout, /^verdict: drop$/m);
      t.regex(trace.stdout, /^#1 input\[1\] \(.*rules\.yaml:7\): match: drop$/m, 'names the deciding rule by its line');
      const traceBad = await tsct('policy', 'trace', '--hook', 'sideways', '--src', '127.0.0.1', '--dst', '127.0.0.1');
      t.not(traceBad.code, 0);
      t.regex(traceBad.stderr, /--hook: 'sideways'/);

      const flushed = await tsct('policy', 'flush');
      t.is(flushed.code, 0, flushed.stderr);
      t.is(connect(ns, 5555), 1, 'flushed: refused at once again');
      t.regex((await tsct('policy', 'list')).stdout, /none applied/);
    } finally {
      if (agent) await agent.stop();
      lab.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(lockPathFor(root).replace(/\.lock$/, '.policy.json'), { force: true });
    }
  },
);

privTestSerial(
  'tsct agent --policy-file: applied at start, swapped in when the file changes, a bad edit keeps the rules',
  async (t) => {
    const lab = new NamespaceLab('tsct-fwfile');
    const root = `/sys/fs/bpf/${lab.id}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.id}-`));
    const rules = path.join(dir, 'rules.yaml');
    let agent: AgentHandle | null = null;
    try {
      const ns = lab.addNamespace('x');
      // A file that does not parse stops the agent before it starts, in one line.
      fs.writeFileSync(rules, 'hooks:\n  input:\n    policy: maybe\n');
      const bad = await tsctIn(ns, ['agent', ...labAgentArgs(root, 'lo', ['--policy-file', rules])]);
      t.not(bad.code, 0);
      t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      t.regex(bad.stderr, /rules\.yaml:3/);

      fs.writeFileSync(rules, RULES);
      agent = await startAgentIn(
        ns,
        labAgentArgs(root, 'lo', ['--prometheus-serve-addr', '127.0.0.1:9962', '--policy-file', rules]),
        120_000,
      );
      t.true(
        agent.log.some((l) => /policy \(start\): \d+ rules from .*rules\.yaml in force/.test(l)),
        agent.log.join('\n'),
      );
      t.is(connect(ns, 5555), 124, 'dropped by the file applied at start');
      const waitLog = async (re: RegExp) => {
        for (let i = 0; i < 100 && !agent!.log.some((l) => re.test(l)); i++)
          await new Promise((r) => setTimeout(r, 100));
        t.true(
          agent!.log.some((l) => re.test(l)),
          agent!.log.join('\n'),
        );
      };
      // What a dashboard reads: the drop by its reason, and the chain that decided it.
      await waitLog(/serving \/metrics/);
      const metrics = (await httpGetIn(ns, 'http://127.0.0.1:9962/metrics')).body;
      t.regex(metrics, /^tsct_drop_count_total\{reason="DROP_POLICY_DENIED",direction="[A-Z]+"\} [1-9]\d*$/m);
      t.regex(metrics, /^tsct_policy_chain_packets_total\{chain="input"\} [1-9]\d*$/m);
      t.regex(metrics, /^tsct_policy_default_packets_total\{hook="input"\} \d+$/m);

      fs.writeFileSync(rules, `${RULES}      - protocol: tcp\n        action: explode\n`);
      await waitLog(/warn .*rules\.yaml:\d+.*the rules in force stay/);
      t.is(connect(ns, 5555), 124, 'a bad edit keeps the rules in force');

      fs.writeFileSync(rules, RULES.replace('dport: 5555', 'dport: 5556'));
      await waitLog(/policy \(changed\)/);
      t.is(connect(ns, 5555), 1, 'the new rules no longer drop 5555');
      t.is(connect(ns, 5556), 124, 'and drop 5556');
    } finally {
      if (agent) await agent.stop();
      lab.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(root, { recursive: true, force: true });
      fs.rmSync(lockPathFor(root).replace(/\.lock$/, '.policy.json'), { force: true });
    }
  },
);
