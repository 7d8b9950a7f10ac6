// The firewall's rule set from the agent's side: --policy-file, read and
// checked before the agent touches anything, applied once the datapath is
// loaded, then watched; a change is compiled and swapped in atomically, and
// a file that no longer parses or compiles is reported in one line while the
// rules in force stay. What was applied is kept beside the agent's lock file
// (`tsct policy list` names the counters by it).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Datapath } from '../datapath/datapath';
import { FW_MAPS } from '../datapath/tables';
import { UsageError } from '../errors';
import { PolicyCounts } from '../metrics/registry';
import { CompiledPolicy, compilePolicy } from '../policy/compile';
import { importIptablesSave } from '../policy/iptablesImport';
import { flatPolicyOf, FwMaps, PolicyWriter } from '../policy/policyMaps';
import { PolicyRuleSet } from '../policy/policyRule';
import { parseRulesFile } from '../policy/rulesFile';
import { lockPathFor } from './lock';
import { watchFile } from './fileWatch';
import { Logger } from './log';

/** What was applied, for `tsct policy list`: the text and how to parse it. */
export interface StoredPolicy {
  kind: 'rules' | 'iptables';
  file: string;
  text: string;
}

/** Where the applied rule set of a bpf-root is kept: beside its lock file, under /run/tsct. */
export function storedPolicyPath(root: string): string {
  return lockPathFor(root).replace(/\.lock$/, '.policy.json');
}

export function parseStoredPolicy(p: StoredPolicy): PolicyRuleSet {
  return p.kind === 'iptables' ? importIptablesSave(p.text, p.file) : parseRulesFile(p.text, p.file);
}

export function readStoredPolicy(root: string): StoredPolicy | null {
  try {
    return JSON.parse(fs.readFileSync(storedPolicyPath(root), 'utf8')) as StoredPolicy;
  } catch {
    return null;
  }
}

export function writeStoredPolicy(root: string, p: StoredPolicy): void {
  fs.mkdirSync(path.dirname(storedPolicyPath(root)), { recursive: true });
  fs.writeFileSync(storedPolicyPath(root), JSON.stringify(p));
}

/**
 * This network namespace's devices by name, as the compiler resolves them: from netlink (`ip -j link`), not
 * /sys/class/net, which shows the namespace sysfs was mounted in (the host's, under `nsenter --net`).
 */
export function hostDevices(): { ifindexOf: (name: string) => number | null; devices: string[] } {
  let links: Array<{ ifindex: number; ifname: string }> = [];
  try {
    links = JSON.parse(
      execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    );
  } catch (e) {
    throw new UsageError(`cannot list this namespace's devices with ip -j link show: ${(e as Error).message}`);
  }
  const byName = new Map(links.map((l) => [l.ifname, l.ifindex]));
  return { ifindexOf: (name) => byName.get(name) ?? null, devices: [...byName.keys()] };
}

/** The applied rule set compiled as the datapath holds it: its counter origins name what `counters()` counts. */
export function compileStoredPolicy(stored: StoredPolicy): CompiledPolicy {
  const { ifindexOf, devices } = hostDevices();
  // Compilation is deterministic: the generation only places the tables, not the counters.
  return compilePolicy(flatPolicyOf(parseStoredPolicy(stored)), { generation: 0, ifindexOf, devices });
}

/** Reads and checks --policy-file: a UsageError naming the line when it does not parse. */
export function readPolicyFile(file: string): { stored: StoredPolicy; ruleSet: PolicyRuleSet } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--policy-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  const stored: StoredPolicy = { kind: 'rules', file, text };
  return { stored, ruleSet: parseStoredPolicy(stored) };
}

/** Compiles and swaps in a rule set; resolves to the number of rules after inlining. */
export async function applyPolicy(
  writer: PolicyWriter,
  root: string,
  stored: StoredPolicy,
  ruleSet: PolicyRuleSet,
): Promise<number> {
  const { ifindexOf, devices } = hostDevices();
  const compiled = await writer.apply(flatPolicyOf(ruleSet), ifindexOf, devices);
  writeStoredPolicy(root, stored);
  return compiled.hooks.reduce((n, h) => n + h.rules.length, 0);
}

export function fwMapsOf(dp: Datapath): FwMaps {
  return Object.fromEntries(FW_MAPS.map((m) => [m, dp.maps[m]])) as unknown as FwMaps;
}

export interface PolicyFileWatch {
  stop(): void;
}

export async function startPolicyFile(
  dp: Datapath,
  root: string,
  first: { stored: StoredPolicy; ruleSet: PolicyRuleSet },
  log: Logger,
): Promise<PolicyFileWatch> {
  const file = first.stored.file;
  const writer = new PolicyWriter(fwMapsOf(dp));
  const apply = async (p: { stored: StoredPolicy; ruleSet: PolicyRuleSet }, why: string) => {
    const t0 = process.hrtime.bigint();
    const n = await applyPolicy(writer, root, p.stored, p.ruleSet);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    log.info(`policy (${why}): ${n} rules from ${file} in force (swapped in ${ms.toFixed(0)} ms)`);
  };
  await apply(first, 'start');
  let running = Promise.resolve();
  const reload = () => {
    let next: { stored: StoredPolicy; ruleSet: PolicyRuleSet };
    try {
      next = readPolicyFile(file);
    } catch (e) {
      log.warn(`${(e as Error).message}; the rules in force stay as they are`);
      return;
    }
    running = running.then(() =>
      apply(next, 'changed').catch((e) =>
        log.warn(`policy from ${file} not applied: ${(e as Error).message}; the rules in force stay`),
      ),
    );
  };
  return watchFile(file, reload);
}

/** The counters of the rule set in force on root, per chain, for /metrics; the origins compiled once per rule set. */
export function policyCountsOf(dp: Datapath, root: string): () => PolicyCounts | null {
  const writer = new PolicyWriter(fwMapsOf(dp));
  let known: { text: string; origins: Array<{ chain: string }> } | null = null;
  return () => {
    const stored = readStoredPolicy(root);
    if (!stored || !writer.control().active) return null;
    if (known?.text !== stored.text) {
      known = { text: stored.text, origins: compileStoredPolicy(stored).counters };
    }
    const c = writer.counters(known.origins.length);
    const chains = new Map<string, { packets: bigint; bytes: bigint }>();
    known.origins.forEach((o, i) => {
      const sum = chains.get(o.chain) ?? { packets: 0n, bytes: 0n };
      sum.packets += c.rules[i].packets;
      sum.bytes += c.rules[i].bytes;
      chains.set(o.chain, sum);
    });
    return { chains, hooks: c.policy };
  };
}
