// What the agent needs from the host before it loads anything: a pin folder
// on bpffs, and each masquerading device's address.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { MasqueradeSpec } from '../datapath/datapath';
import { DEFAULT_BPFFS, ensureBpffs, isOnBpffs } from '../datapath/bpffs';
import { UsageError } from '../errors';

/** Makes sure the pin folder exists on bpffs, mounting bpffs at its usual place when needed. */
export function preparePinRoot(root: string): void {
  if (root === DEFAULT_BPFFS || root.startsWith(DEFAULT_BPFFS + '/')) ensureBpffs(DEFAULT_BPFFS);
  try {
    fs.mkdirSync(root, { recursive: true });
  } catch (e) {
    throw new UsageError(`--bpf-root: cannot create ${root}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (!isOnBpffs(root)) {
    throw new UsageError(
      `--bpf-root: ${root} is not on a bpffs mount; pick a folder under ${DEFAULT_BPFFS}, ` +
        `or mount one there: mount -t bpf bpf ${root}`,
    );
  }
}

/** The device's primary global addresses (or those given), to masquerade to. */
export function masqueradeAddresses(dev: string, given: string[]): MasqueradeSpec {
  const spec: MasqueradeSpec = {
    snat4: given.find((a) => !a.includes(':')),
    snat6: given.find((a) => a.includes(':')),
  };
  if (spec.snat4 && spec.snat6) return spec;
  let info: Array<{ addr_info?: Array<{ family: string; local: string; scope: string }> }> = [];
  try {
    const out = execFileSync('ip', ['-j', 'addr', 'show', 'dev', dev], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    info = JSON.parse(out);
  } catch {
    // Reported below as "no address".
  }
  const addrs = info.flatMap((i) => i.addr_info ?? []).filter((a) => a.scope === 'global');
  spec.snat4 ??= addrs.find((a) => a.family === 'inet')?.local;
  spec.snat6 ??= addrs.find((a) => a.family === 'inet6')?.local;
  if (!spec.snat4 && !spec.snat6) {
    throw new UsageError(
      `--masquerade-devices: ${dev} has no global address to masquerade to; give one with --snat-ip`,
    );
  }
  return spec;
}
