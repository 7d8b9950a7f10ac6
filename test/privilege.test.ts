// With TSCT_REQUIRE_PRIV=1 a privileged test without privilege fails the run;
// without it, it shows as skipped. Checked by running ava on a probe test in a
// subprocess whose capabilities are dropped.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { ROOT } from './helpers/paths';
import { missingPrivilege } from './helpers/privilege';

function runProbeUnprivileged(requirePriv: boolean) {
  const env = { ...process.env, TSCT_REQUIRE_PRIV: requirePriv ? '1' : '' };
  return spawnSync(
    'capsh',
    [
      '--drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin',
      '--',
      '-c',
      'exec node_modules/.bin/ava dist/test/probe.test.js',
    ],
    { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 },
  );
}

// This test itself needs privilege to drop it; as root it always runs.
const canDrop = process.getuid?.() === 0 && !missingPrivilege();
(canDrop || process.env.TSCT_REQUIRE_PRIV === '1' ? test : test.skip)(
  'TSCT_REQUIRE_PRIV=1 turns a missing privilege into a failure',
  (t) => {
    const required = runProbeUnprivileged(true);
    t.not(required.status, 0, 'the run fails');
    t.regex(required.stdout + required.stderr, /TSCT_REQUIRE_PRIV=1 makes this a failure/);

    const relaxed = runProbeUnprivileged(false);
    t.is(relaxed.status, 0, relaxed.stdout + relaxed.stderr);
    t.regex(relaxed.stdout + relaxed.stderr, /skipped: needs root with CAP_BPF/);
  },
);
