// `tsct policy ...`: the stateful firewall's rule set, loaded into the pinned
// maps of a running agent's bpf-root and listed with its counters in the
// layout of `iptables -L -v -n`. The applied rule set's text is kept beside
// the agent's lock file, so that `list` names each counter by its rule.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { lockPathFor } from '../agent/lock';
import { openPinnedMap } from '../ct/ctTables';
import { FW_MAPS } from '../datapath/tables';
import { UsageError } from '../errors';
import { compilePolicy } from '../policy/compile';
import { importIptablesSave } from '../policy/iptablesImport';
import { flatPolicyOf, FwMaps, PolicyWriter, RuleCounters } from '../policy/policyMaps';
import { HOOKS, PolicyRuleSet } from '../policy/policyRule';
import { formatAction, formatMatch } from '../policy/ruleFormat';
import { parseRulesFile } from '../policy/rulesFile';
import { LineWriter } from './output';

const DEFAULT_ROOT = '/sys/fs/bpf/tsct';

function rootOption(): Option {
  return new Option('--bpf-root <dir>', 'folder on bpffs where the agent pins its maps').default(
    process.env.TSCT_BPF_ROOT ?? DEFAULT_ROOT,
  );
}

/** What was applied, for `list`: the text and how to parse it. */
interface StoredPolicy {
  kind: 'rules' | 'iptables';
  file: string;
  text: string;
}

function storedPath(root: string): string {
  return lockPathFor(root).replace(/\.lock$/, '.policy.json');
}

export function parseStoredPolicy(p: StoredPolicy): PolicyRuleSet {
  return p.kind === 'iptables' ? importIptablesSave(p.text, p.file) : parseRulesFile(p.text, p.file);
}

/** This namespace's devices, by name, as the compiler resolves them. */
export function hostDevices(): { ifindexOf: (name: string) => number | null; devices: string[] } {
  const devices = fs.readdirSync('/sys/class/net');
  const ifindexOf = (name: string) => {
    try {
      return Number(fs.readFileSync(path.join('/sys/class/net', name, 'ifindex'), 'utf8'));
    } catch {
      return null;
    }
  };
  return { ifindexOf, devices };
}

function withWriter<T>(root: string, fn: (w: PolicyWriter) => Promise<T>): Promise<T> {
  const opened = FW_MAPS.map((m) => openPinnedMap(root, m));
  const maps = Object.fromEntries(FW_MAPS.map((m, i) => [m, opened[i]])) as unknown as FwMaps;
  return fn(new PolicyWriter(maps)).finally(() => opened.forEach((m) => m.close()));
}

async function applyStored(root: string, stored: StoredPolicy, out: LineWriter): Promise<void> {
  const ruleSet = parseStoredPolicy(stored);
  const { ifindexOf, devices } = hostDevices();
  const compiled = await withWriter(root, (w) => w.apply(flatPolicyOf(ruleSet), ifindexOf, devices));
  fs.mkdirSync(path.dirname(storedPath(root)), { recursive: true });
  fs.writeFileSync(storedPath(root), JSON.stringify(stored));
  const rules = compiled.hooks.reduce((n, h) => n + h.rules.length, 0);
  out.line(`policy: ${stored.file} applied: ${rules} rules in ${compiled.hooks.length} hooks`);
  out.flush();
}

function readInput(file: string): string {
  try {
    return fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

function pad(s: string | bigint, n: number): string {
  return String(s).padStart(n);
}

/** The rule set and its counters as `iptables -L -v -n` lays them out. */
export function formatPolicyList(
  ruleSet: PolicyRuleSet,
  counters: RuleCounters,
  origins: Array<{ chain: string; index: number }>,
): string[] {
  const lines: string[] = [];
  const byOrigin = new Map<string, { packets: bigint; bytes: bigint }>();
  origins.forEach((o, i) => byOrigin.set(`${o.chain}\0${o.index}`, counters.rules[i]));
  const hooked = new Map(HOOKS.map((h) => [ruleSet.hooks[h].chain, h]));
  for (const chain of ruleSet.chains.values()) {
    const hook = hooked.get(chain.name);
    if (hook) {
      const p = counters.policy[hook];
      const policy = ruleSet.hooks[hook].policy.toUpperCase();
      lines.push(`Chain ${chain.name} (policy ${policy} ${p.packets} packets, ${p.bytes} bytes)`);
    } else {
      lines.push(`Chain ${chain.name}`);
    }
    lines.push(`${pad('pkts', 8)} ${pad('bytes', 10)} ${'target'.padEnd(10)} match`);
    chain.rules.forEach((r, i) => {
      const c = byOrigin.get(`${chain.name}\0${i}`) ?? { packets: 0n, bytes: 0n };
      const comment = r.comment ? ` /* ${r.comment} */` : '';
      lines.push(
        `${pad(c.packets, 8)} ${pad(c.bytes, 10)} ${formatAction(r.action).padEnd(10)} ${formatMatch(r.match)}${comment}`,
      );
    });
    lines.push('');
  }
  return lines;
}

export function registerPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('the stateful firewall: rules on connection state');
  policy
    .command('apply')
    .description('replace the rule set with a rules file (YAML or JSON), atomically; a bad file changes nothing')
    .requiredOption('-f, --file <file>', "the rules file ('-' for stdin)")
    .addOption(rootOption())
    .action(async (o: { file: string; bpfRoot: string }) => {
      await applyStored(o.bpfRoot, { kind: 'rules', file: o.file, text: readInput(o.file) }, new LineWriter());
    });
  policy
    .command('import-iptables')
    .description(
      'load the filter table of iptables-save output (stdin, or -f); what cannot be mapped is refused by line',
    )
    .option('-f, --file <file>', 'the iptables-save dump', '-')
    .addOption(rootOption())
    .action(async (o: { file: string; bpfRoot: string }) => {
      const file = o.file === '-' ? 'iptables-save' : o.file;
      await applyStored(o.bpfRoot, { kind: 'iptables', file, text: readInput(o.file) }, new LineWriter());
    });
  policy
    .command('flush')
    .description('remove every rule: all hooks accept, connections are tracked as without a firewall')
    .addOption(rootOption())
    .action(async (o: { bpfRoot: string }) => {
      await withWriter(o.bpfRoot, (w) => w.flush());
      fs.rmSync(storedPath(o.bpfRoot), { force: true });
      const out = new LineWriter();
      out.line('policy: flushed');
      out.flush();
    });
  policy
    .command('list')
    .description('the rules with per-rule packets and bytes, as iptables -L -v -n')
    .addOption(rootOption())
    .action(async (o: { bpfRoot: string }) => {
      const out = new LineWriter();
      let stored: StoredPolicy;
      try {
        stored = JSON.parse(fs.readFileSync(storedPath(o.bpfRoot), 'utf8')) as StoredPolicy;
      } catch {
        out.line('policy: none applied (every hook accepts)');
        out.flush();
        return;
      }
      const ruleSet = parseStoredPolicy(stored);
      const { ifindexOf, devices } = hostDevices();
      // The counters' origins, as the applied rule set compiled them (compilation is deterministic).
      const compiled = compilePolicy(flatPolicyOf(ruleSet), { generation: 0, ifindexOf, devices });
      const counters = await withWriter(o.bpfRoot, async (w) => w.counters(compiled.counters.length));
      for (const line of formatPolicyList(ruleSet, counters, compiled.counters)) out.line(line);
      out.flush();
    });
}
