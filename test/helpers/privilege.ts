import test, { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import { ensureBpffs } from '../../src/datapath/bpffs';

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

function effectiveCaps(): bigint {
  const line = fs
    .readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('CapEff:'));
  return line ? BigInt('0x' + line.split(/\s+/)[1]) : 0n;
}

/** Why this process cannot run kernel tests, or null when it can. */
export function missingPrivilege(): string | null {
  const caps = effectiveCaps();
  const need = [
    [CAP_BPF, 'CAP_BPF'],
    [CAP_NET_ADMIN, 'CAP_NET_ADMIN'],
    [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN'],
  ] as const;
  const lacking = need.filter(([bit]) => (caps & (1n << BigInt(bit))) === 0n).map(([, name]) => name);
  if (lacking.length) return `needs root with ${lacking.join(', ')}`;
  try {
    ensureBpffs();
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

const why = missingPrivilege();
const required = process.env.TSCT_REQUIRE_PRIV === '1';

/**
 * Registers a test that needs the kernel. Without privilege it is skipped,
 * visibly; with TSCT_REQUIRE_PRIV=1 (CI) it fails instead.
 */
export function privTest(title: string, fn: (t: ExecutionContext) => Promise<void> | void): void {
  if (!why) {
    test(title, fn);
  } else if (required) {
    test(title, (t) => t.fail(`${why} (TSCT_REQUIRE_PRIV=1 makes this a failure, not a skip)`));
  } else {
    test.skip(`${title} [skipped: ${why}]`, () => {});
  }
}

/** As privTest, run serially within its file. */
export function privTestSerial(title: string, fn: (t: ExecutionContext) => Promise<void> | void): void {
  if (!why) {
    test.serial(title, fn);
  } else if (required) {
    test.serial(title, (t) => t.fail(`${why} (TSCT_REQUIRE_PRIV=1 makes this a failure, not a skip)`));
  } else {
    test.skip(`${title} [skipped: ${why}]`, () => {});
  }
}
