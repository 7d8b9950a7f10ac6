// deploy/systemd: `systemd-analyze verify` on the unit (a copy whose ExecStart is this checkout's bin/tsct,
// since verify checks that the binary exists), the settings systemd would ignore with at most a debug line
// (capability names), and every TSCT_ name of the environment file, set or commented out, is a variable the
// agent reads, with values the agent takes. No root: nothing is started.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AGENT_FLAGS, envName, resolveAgentOptions } from '../src/agent/options';
import { ROOT } from './helpers/paths';

const UNIT = path.join(ROOT, 'deploy', 'systemd', 'tsct-agent.service');
const ENV_FILE = path.join(ROOT, 'deploy', 'systemd', 'tsct-agent.env');
const INSTALLED_BIN = '/opt/tsct/bin/tsct';
/** The DaemonSet's capabilities (test/unit/deploy-manifests.test.ts), with systemd's CAP_ prefix. */
const CAPABILITIES = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN'];

/** The agent's variables: one per flag (envName), and TSCT_CONFIG for --config. */
const AGENT_VARIABLES = new Set(['TSCT_CONFIG', ...AGENT_FLAGS.map((f) => envName(f.flag))]);

/** `Key=value` lines of one section of a unit file (no continuation lines in ours). */
function section(text: string, name: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) current = header[1];
    else if (current === name) {
      const eq = line.indexOf('=');
      out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
    }
  }
  return out;
}

/** The environment file's assignments: those in force, and those commented out (`#TSCT_X=...`). */
function envAssignments(text: string): { set: Record<string, string>; commented: Record<string, string> } {
  const set: Record<string, string> = {};
  const commented: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const m = /^(#?)\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) (m[1] ? commented : set)[m[2]] = m[3].replace(/^"(.*)"$/, '$1');
    else if (line && !line.startsWith('#') && !line.startsWith(';')) throw new Error(`not KEY=value: ${line}`);
  }
  return { set, commented };
}

test('systemd-analyze verify finds nothing wrong with tsct-agent.service', (t) => {
  const which = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (which.error) {
    t.fail('systemd-analyze is missing: scripts/bootstrap.sh installs it (Debian package systemd)');
    return;
  }
  const text = fs.readFileSync(UNIT, 'utf8');
  t.regex(text, new RegExp(`^ExecStart=${INSTALLED_BIN} agent$`, 'm'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsct-unit-'));
  try {
    // verify checks that ExecStart's binary is executable: point it at this checkout's.
    const unit = path.join(dir, 'tsct-agent.service');
    fs.writeFileSync(unit, text.replace(`ExecStart=${INSTALLED_BIN}`, `ExecStart=${path.join(ROOT, 'bin', 'tsct')}`));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', '--recursive-errors=no', unit], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const about = (r.stdout + r.stderr)
      .split('\n')
      .filter((l) => l.includes('tsct-agent.service'))
      .join('\n');
    t.is(r.status, 0, r.stdout + r.stderr);
    t.is(about, '', 'verify said something about the unit');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the unit: simple, restarted on failure, SIGTERM, the four capabilities, memlock, the env file', (t) => {
  const service = new Map(section(fs.readFileSync(UNIT, 'utf8'), 'Service'));
  t.is(service.get('Type'), 'simple');
  t.is(service.get('Restart'), 'on-failure');
  t.is(service.get('KillSignal'), 'SIGTERM');
  t.is(service.get('LimitMEMLOCK'), 'infinity');
  t.is(service.get('EnvironmentFile'), '/etc/tsct/tsct-agent.env');
  // systemd skips a capability name it does not know without a word: verify would not catch a typo.
  for (const key of ['CapabilityBoundingSet', 'AmbientCapabilities'])
    t.deepEqual((service.get(key) ?? '').split(/\s+/).sort(), [...CAPABILITIES].sort(), key);
  for (const key of ['PrivateTmp', 'ProtectSystem', 'ProtectHome', 'PrivateMounts', 'User', 'DynamicUser'])
    t.false(service.has(key), `${key}: a private mount namespace would hide a bpffs the agent mounts; it runs as root`);
});

test('every TSCT_ name in tsct-agent.env is a variable of the agent, and the agent takes the values', (t) => {
  const { set, commented } = envAssignments(fs.readFileSync(ENV_FILE, 'utf8'));
  const names = [...Object.keys(set), ...Object.keys(commented)];
  t.true(Object.keys(set).length > 0);
  t.deepEqual(
    names.filter((n) => !AGENT_VARIABLES.has(n)),
    [],
    'not a TSCT_<FLAG> of src/agent/options.ts (envName of an AGENT_FLAGS flag, or TSCT_CONFIG)',
  );
  t.truthy(set.TSCT_DEVICES, 'the one required setting is set');
  const memory = { totalMem: 16 * 2 ** 30 };
  t.notThrows(() => resolveAgentOptions({}, { env: set, ...memory }), 'as shipped');
  // Uncommented too (but TSCT_CONFIG, which names a file that is not here), the values still go together.
  const all = { ...set, ...commented };
  delete all.TSCT_CONFIG;
  t.notThrows(() => resolveAgentOptions({}, { env: all, ...memory }), 'every line uncommented');
});
