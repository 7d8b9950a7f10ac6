// `tsct policy ...`: the stateful firewall's rule set, loaded into the pinned
// maps of a running agent's bpf-root and listed with its counters in the
// layout of `iptables -L -v -n`. The applied rule set's text is kept beside
// the agent's lock file, so that `list` names each counter by its rule.
import * as fs from 'node:fs';
import { Command } from 'commander';
import {
  applyPolicy,
  compileStoredPolicy,
  parseStoredPolicy,
  readStoredPolicy,
  StoredPolicy,
  storedPolicyPath,
} from '../agent/policyFile';
import { openPinnedMap } from '../ct/ctTables';
import { FW_MAPS } from '../datapath/tables';
import { UsageError } from '../errors';
import { flatPolicyOf, FwMaps, PolicyWriter, RuleCounters } from '../policy/policyMaps';
import { HOOKS, PolicyRuleSet, PORT_PROTOCOLS, PROTOCOLS } from '../policy/policyRule';
import { parseOvsCtState } from '../policy/ctState';
import { parseAddr } from '../net/addr';
import { tracePolicy } from '../policy/policyTrace';
import { formatAction, formatMatch } from '../policy/ruleFormat';
import { LineWriter } from './output';
import { rootOption } from './rootOption';

function withWriter<T>(root: string, fn: (w: PolicyWriter) => Promise<T>): Promise<T> {
  const opened = FW_MAPS.map((m) => openPinnedMap(root, m));
  const maps = Object.fromEntries(FW_MAPS.map((m, i) => [m, opened[i]])) as unknown as FwMaps;
  return fn(new PolicyWriter(maps)).finally(() => opened.forEach((m) => m.close()));
}

async function applyStored(root: string, stored: StoredPolicy, out: LineWriter): Promise<void> {
  const ruleSet = parseStoredPolicy(stored);
  const rules = await withWriter(root, (w) => applyPolicy(w, root, stored, ruleSet));
  out.line(`policy: ${stored.file} applied: ${rules} rules after inlining the chains`);
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
      fs.rmSync(storedPolicyPath(o.bpfRoot), { force: true });
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
      const stored = readStoredPolicy(o.bpfRoot);
      if (!stored) {
        out.line('policy: none applied (every hook accepts)');
        out.flush();
        return;
      }
      const ruleSet = parseStoredPolicy(stored);
      const compiled = compileStoredPolicy(stored);
      const counters = await withWriter(o.bpfRoot, async (w) => w.counters(compiled.counters.length));
      for (const line of formatPolicyList(ruleSet, counters, compiled.counters)) out.line(line);
      out.flush();
    });
  policy
    .command('trace')
    .description('which rule of a hook decides one packet, and why each rule before it did not')
    .requiredOption('--hook <hook>', 'input, forward or output')
    .requiredOption('--src <addr>', 'source address')
    .requiredOption('--dst <addr>', 'destination address')
    .option('--proto <proto>', 'tcp, udp, icmp, icmpv6, sctp or a number', 'tcp')
    .option('--sport <port>', 'source port')
    .option('--dport <port>', 'destination port')
    .option('--in-dev <dev>', 'the device it comes in on')
    .option('--out-dev <dev>', 'the device it goes out on')
    .option('--ct-state <flags>', 'its connection state, as +trk+new', '+trk+new')
    .option('-f, --file <file>', 'a rules file to trace instead of the rules applied')
    .addOption(rootOption())
    .action((o: TraceOptions) => policyTrace(o));
}

interface TraceOptions {
  hook: string;
  src: string;
  dst: string;
  proto: string;
  sport?: string;
  dport?: string;
  inDev?: string;
  outDev?: string;
  ctState: string;
  file?: string;
  bpfRoot: string;
}

function traceNumber(flag: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > max) throw new UsageError(`--${flag}: '${text}' is not a number from 0 to ${max}`);
  return n;
}

function policyTrace(o: TraceOptions): void {
  const hook = HOOKS.find((h) => h === o.hook);
  if (!hook) throw new UsageError(`--hook: '${o.hook}' is not input, forward or output`);
  const stored: StoredPolicy | null = o.file
    ? { kind: 'rules', file: o.file, text: readInput(o.file) }
    : readStoredPolicy(o.bpfRoot);
  if (!stored) throw new UsageError('no rules applied to trace: give -f FILE, or apply some with tsct policy apply');
  let src: Buffer;
  let dst: Buffer;
  try {
    src = parseAddr(o.src);
    dst = parseAddr(o.dst);
  } catch {
    throw new UsageError(`--src/--dst: '${o.src}' or '${o.dst}' is not an IPv4 or IPv6 address`);
  }
  if (src.length !== dst.length) throw new UsageError('--src and --dst are of different families');
  const proto = (PROTOCOLS as Record<string, number>)[o.proto] ?? traceNumber('proto', o.proto, 255)!;
  let ctState: number;
  try {
    const term = parseOvsCtState(o.ctState);
    ctState = term.set;
  } catch (e) {
    throw new UsageError(`--ct-state: ${(e as Error).message}`);
  }
  const ported = PORT_PROTOCOLS.includes(proto);
  const sport = traceNumber('sport', o.sport, 65535) ?? (ported ? 0 : undefined);
  const dport = traceNumber('dport', o.dport, 65535) ?? (ported ? 0 : undefined);
  const r = tracePolicy(flatPolicyOf(parseStoredPolicy(stored)), hook, {
    family: src.length === 4 ? 4 : 6,
    src: o.src,
    dst: o.dst,
    proto,
    sport,
    dport,
    inDev: o.inDev,
    outDev: o.outDev,
    ctState,
    origSrc: o.src,
    origDst: o.dst,
    origSport: sport,
    origDport: dport,
  });
  const out = new LineWriter();
  for (const step of r.steps) out.line(step);
  out.line(`verdict: ${r.verdict}${r.rejectWith ? ` with ${r.rejectWith}` : ''}`);
  out.flush();
}
