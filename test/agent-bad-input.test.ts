// Every bad input to the agent and the CLI gets one clear line and a non-zero
// exit, and nothing pinned is lost. The agent runs inside a namespace of its
// own (only lo), so nothing here can touch the host's interfaces.
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { ExecutionContext } from 'ava';
import { BpfObject, BpfMap } from 'libbpf-ts';
import { privTest } from './helpers/privilege';
import { FIXTURE_OBJ } from './helpers/paths';
import { NamespaceLab } from '../lab/namespaceLab';
import { CliResult, TSCT_BIN, startAgentIn, tsctIn } from '../lab/agentProcess';

function oneLine(t: ExecutionContext, r: CliResult, pattern: RegExp, what: string): void {
  t.not(r.code, 0, `${what}: non-zero exit`);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 1, `${what}: one line, got:\n${r.stderr}`);
  t.regex(lines[0], /^tsct: /, what);
  t.regex(lines[0], pattern, what);
  t.notRegex(r.stderr, /^\s+at /m, `${what}: no stack trace`);
}

privTest('the agent refuses bad flags, sizes, durations, devices, roots and config with one line each', async (t) => {
  const lab = new NamespaceLab('tsct-bad');
  const ns = lab.addNamespace('x');
  const root = `/sys/fs/bpf/${lab.id}`;
  const agent = (...args: string[]) => tsctIn(ns, ['agent', '--bpf-root', root, ...args]);
  try {
    oneLine(t, await agent('--devices', 'lo', '--bogus', '1'), /unknown option '--bogus'/, 'unknown flag');
    for (const bad of ['0', '-5', 'abc', '99999999', '1.5']) {
      oneLine(
        t,
        await agent('--devices', 'lo', '--bpf-ct-global-tcp-max', bad),
        /--bpf-ct-global-tcp-max: .*(out of range|not a whole number)/,
        `size ${bad}`,
      );
    }
    for (const bad of ['soon', '5x', '']) {
      oneLine(
        t,
        await agent('--devices', 'lo', '--bpf-ct-timeout-regular-tcp', bad),
        /--bpf-ct-timeout-regular-tcp: '.*' is not a duration; write it like 30s/,
        `duration '${bad}'`,
      );
    }
    oneLine(t, await agent('--devices', 'lo', '--bpf-map-dynamic-size-ratio', '2'), /not a ratio/, 'ratio');
    oneLine(t, await agent('--devices', 'nosuchdev0'), /no interface named 'nosuchdev0'/, 'unknown device');
    oneLine(t, await agent(), /--devices is required/, 'no device');
    oneLine(t, await agent('--devices', 'lo', '--log-level', 'loud'), /--log-level: 'loud'/, 'log level');
    oneLine(
      t,
      await agent('--devices', 'lo', '--bpf-fast-path', 'false', '--bpf-fast-path-new', 'true'),
      /--bpf-fast-path-new needs --bpf-fast-path true/,
      'new connections on a fast path that is off',
    );
    oneLine(
      t,
      await agent('--devices', 'lo', '--bpf-fast-path-new', 'maybe'),
      /--bpf-fast-path-new: 'maybe'/,
      'not a boolean',
    );
    fs.mkdirSync(`/tmp/${lab.id}`, { recursive: true });
    oneLine(
      t,
      await tsctIn(ns, ['agent', '--devices', 'lo', '--bpf-root', `/tmp/${lab.id}`]),
      /is not on a bpffs mount/,
      'root not on bpffs',
    );
    fs.rmSync(`/tmp/${lab.id}`, { recursive: true, force: true });

    const cfg = `/tmp/${lab.id}.json`;
    fs.writeFileSync(cfg, '{ "bpf-ct-global-tcp-max": 4096, "colour": "blue" }');
    oneLine(t, await agent('--devices', 'lo', '--config', cfg), /unknown setting 'colour'/, 'config file key');
    fs.writeFileSync(cfg, '{ nope');
    oneLine(t, await agent('--devices', 'lo', '--config', cfg), /is not valid JSON/, 'config file syntax');
    fs.rmSync(cfg);
    oneLine(
      t,
      await tsctIn(ns, ['agent', '--devices', 'lo', '--bpf-root', root], {
        ...process.env,
        TSCT_BPF_CT_GLOBAL_ANY_MAX: 'lots',
      }),
      /--bpf-ct-global-any-max: 'lots'/,
      'environment variable',
    );
    t.false(fs.existsSync(root), 'no state was created by any of them');
  } finally {
    lab.destroy();
  }
});

privTest('the CLI says when nothing is pinned, and refuses filters that do not parse', async (t) => {
  const root = `/sys/fs/bpf/tsct-empty-${process.pid}`;
  oneLine(
    t,
    await tsctIn(null, ['bpf', 'ct', 'list', 'global', '--bpf-root', root]),
    new RegExp(`no tsct state under ${root}: is the agent running\\?`),
    'list with nothing pinned',
  );
  oneLine(t, await tsctIn(null, ['status', '--bpf-root', root]), /no tsct state under/, 'status with nothing pinned');
  oneLine(
    t,
    await tsctIn(null, ['uninstall', '--bpf-root', root]),
    /no tsct state under/,
    'uninstall with nothing pinned',
  );
  const lab = new NamespaceLab('tsct-badf');
  const ns = lab.addNamespace('x');
  const live = `/sys/fs/bpf/${lab.id}`;
  try {
    // A real (empty) state to filter: an agent that ran, and stopped on SIGTERM once it had started.
    const agent = await startAgentIn(ns, [
      '--devices',
      'lo',
      '--bpf-root',
      live,
      '--bpf-ct-global-tcp-max',
      '4096',
      '--bpf-ct-global-any-max',
      '4096',
    ]);
    t.is(await agent.stop(), 0);
    t.true(
      agent.log.some((l) => /SIGTERM: stopping; programs stay attached/.test(l)),
      'the agent ran and stopped on SIGTERM',
    );
    const list = (...f: string[]) => tsctIn(ns, ['bpf', 'ct', 'list', 'global', '--bpf-root', live, ...f]);
    t.is((await list()).code, 0);
    oneLine(t, await list('--ct-state', 'est'), /--ct-state: 'est' does not parse/, 'ct-state without sign');
    oneLine(t, await list('--ct-state', '+bogus'), /unknown flag 'bogus'/, 'unknown ct-state flag');
    oneLine(t, await list('--src', '10.1.2'), /--src: '10.1.2' is not an IPv4 or IPv6 address/, 'bad address');
    oneLine(t, await list('--dport', '70000'), /--dport: '70000' is not a port/, 'bad port');
    oneLine(t, await list('--proto', 'tcpp'), /--proto: 'tcpp' is not a protocol/, 'bad protocol');
    oneLine(t, await list('--state', 'OPEN'), /--state: 'OPEN' is not a TCP state/, 'bad state');
    oneLine(t, await list('-o', 'xml'), /-o: 'xml' is not an output format/, 'bad format');
    oneLine(
      t,
      await tsctIn(ns, ['bpf', 'ct', 'list', 'local', '--bpf-root', live]),
      /unknown table 'local'/,
      'bad table',
    );
  } finally {
    await tsctIn(ns, ['uninstall', '--bpf-root', live]);
    lab.destroy();
  }
});

privTest('a pinned map of another layout is refused with what differs, and kept', async (t) => {
  const lab = new NamespaceLab('tsct-lay');
  const ns = lab.addNamespace('x');
  const root = `/sys/fs/bpf/${lab.id}`;
  fs.mkdirSync(root, { recursive: true });
  try {
    // An "older version's" table: 8-byte keys and 16-byte values, with an entry in it.
    const obj = await BpfObject.open(FIXTURE_OBJ).setMaxEntries('test_hash', 4096).load();
    const old = obj.map('test_hash');
    old.update(Buffer.alloc(8, 1), Buffer.alloc(16, 2));
    old.pin(`${root}/tsct_ct4_global`);
    old.close();
    obj.close();

    const r = await tsctIn(ns, ['agent', '--devices', 'lo', '--bpf-root', root, '--bpf-ct-global-tcp-max', '4096']);
    oneLine(
      t,
      r,
      /pinned map .*tsct_ct4_global was made by a version of tsct with another layout \(key size 8 vs 16, value size 16 vs 136\).*tsct uninstall/,
      'layout mismatch',
    );
    const kept = BpfMap.openPinned(`${root}/tsct_ct4_global`);
    t.deepEqual(kept.lookup(Buffer.alloc(8, 1)), Buffer.alloc(16, 2), 'the pinned map and its entry are untouched');
    kept.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    lab.destroy();
  }
});

privTest('without CAP_BPF the agent fails with one line that says to run as root', async (t) => {
  const lab = new NamespaceLab('tsct-cap');
  const ns = lab.addNamespace('x');
  const root = `/sys/fs/bpf/${lab.id}`;
  try {
    const r = spawnSync(
      'nsenter',
      [
        `--net=${NamespaceLab.path(ns)}`,
        'capsh',
        '--drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin',
        '--',
        '-c',
        `exec ${process.execPath} ${TSCT_BIN} agent --devices lo --bpf-root ${root} --bpf-ct-global-tcp-max 4096 --bpf-ct-global-any-max 4096`,
      ],
      { encoding: 'utf8' },
    );
    oneLine(
      t,
      { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr },
      /EPERM: operation not permitted: run as root/,
      'no privilege',
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    lab.destroy();
  }
});
