// Imports the filter table of an `iptables-save` dump into the policy model,
// so a host's existing firewall loads as is: INPUT, FORWARD and OUTPUT become
// the input, forward and output hooks (their policies the hooks' policies),
// every other chain a custom chain, and each rule keeps its line.
//
// Lines read: `*filter` ... `COMMIT`, `:CHAIN POLICY [p:b]` (and `:NAME - [p:b]`
// for a custom chain), `-N`, `-P`, `-A`, `-I CHAIN [n]`, optional `[p:b]`
// counters in front (iptables-save -c), `#` comments; and the plain command
// form `iptables [-t filter] -A|-I|-N|-P ...` anywhere, which needs no table
// block. What a rule may say is in iptablesRule.ts. Anything else (another
// table, another command, match, option or target) is refused with its line:
// a firewall that loads with a piece missing is not the firewall it was.
//
// iptables sees only IPv4, so every imported rule matches family 4; the hooks'
// policies, which the model has once per hook, apply to IPv6 packets too.
//
// Tables: a table is imported by a TableImporter; only filter has one. A nat
// importer would implement the same interface over its own model and be
// registered in TABLES; the framing (blocks, declarations, commands, the
// command form) is the same for every table.
import { parseRuleSpec, RuleSpec } from './iptablesRule';
import { tokenize } from './iptablesTokens';
import {
  emptyRuleSet,
  Hook,
  PolicyRule,
  PolicyRuleSet,
  REJECT_WITH,
  RejectWith,
  RuleAction,
  SourceRef,
  Verdict,
} from './policyRule';
import { checkRuleSet } from './ruleSetCheck';
import { located, ValueError } from './valueError';

export const DEFAULT_DUMP_NAME = 'iptables-save';

/** -A, -I, -N and -P, parsed: what every table's importer is given. */
export type TableCommand =
  | { kind: 'append'; chain: string; spec: string[] }
  | { kind: 'insert'; chain: string; position: number; spec: string[] }
  | { kind: 'new-chain'; chain: string }
  | { kind: 'policy'; chain: string; policy: string };

export interface TableImporter {
  /** `:NAME POLICY`: a built-in chain's policy, or `-` declaring a custom chain. */
  declare(chain: string, policy: string, source: SourceRef): void;
  command(cmd: TableCommand, source: SourceRef): void;
}

const NOT_IMPORTED = 'only the filter table is imported for now; dump it alone with iptables-save -t filter';

/** Each table iptables has: its importer, or why it is refused. */
const TABLES: Readonly<Record<string, string | undefined>> = {
  filter: undefined,
  nat: `the nat table is not imported: ${NOT_IMPORTED}`,
  mangle: `the mangle table is not imported: ${NOT_IMPORTED}`,
  raw: `the raw table is not imported: ${NOT_IMPORTED}`,
  security: `the security table is not imported: ${NOT_IMPORTED}`,
};

export function importIptablesSave(text: string, fileName = DEFAULT_DUMP_NAME): PolicyRuleSet {
  const filter = new FilterTableImporter();
  const dump = new DumpReader(fileName, { filter });
  text.split(/\r?\n/).forEach((line, i) => dump.line(line, i + 1));
  dump.finish();
  checkRuleSet(filter.ruleSet);
  return filter.ruleSet;
}

const COMMANDS: Readonly<Record<string, TableCommand['kind']>> = {
  '-A': 'append',
  '--append': 'append',
  '-I': 'insert',
  '--insert': 'insert',
  '-N': 'new-chain',
  '--new-chain': 'new-chain',
  '--new': 'new-chain',
  '-P': 'policy',
  '--policy': 'policy',
};

/** The framing of a dump: table blocks, declarations, commands, the command form. */
class DumpReader {
  private open?: { table: string; line: number };
  private readonly seen = new Set<string>();

  constructor(
    private readonly file: string,
    private readonly importers: Readonly<Record<string, TableImporter>>,
  ) {}

  line(raw: string, line: number): void {
    const text = raw.trim();
    if (text === '' || text.startsWith('#')) return;
    const source = { file: this.file, line };
    located(source, () => this.statement(text, source));
  }

  finish(): void {
    if (this.open) {
      located({ file: this.file, line: this.open.line }, () => {
        throw new ValueError(`*${this.open!.table} has no COMMIT; the dump is cut short, take it again`);
      });
    }
  }

  private statement(text: string, source: SourceRef): void {
    if (text.startsWith('*')) return this.openTable(text.slice(1), source);
    if (text === 'COMMIT') return this.commit();
    const words = tokenize(text);
    if (/^\[\d+:\d+\]$/.test(words[0])) words.shift();
    if (words[0] === 'iptables') return this.commandForm(words.slice(1), source);
    if (text.startsWith(':')) return this.declaration(words, source);
    if (!this.open) {
      throw new ValueError(`'${words[0]}' outside a table; a dump's rules follow *filter, or write iptables ${text}`);
    }
    this.tableCommand(this.open.table, words, source);
  }

  private importer(table: string): TableImporter {
    if (!(table in TABLES)) {
      throw new ValueError(`unknown table '${table}'; iptables has filter, nat, mangle, raw and security`);
    }
    const refusal = TABLES[table];
    const importer = this.importers[table];
    if (refusal || !importer) throw new ValueError(refusal ?? `the ${table} table is not imported`);
    return importer;
  }

  private openTable(table: string, source: SourceRef): void {
    if (this.open) throw new ValueError(`*${table} while *${this.open.table} (line ${this.open.line}) has no COMMIT`);
    this.importer(table);
    if (this.seen.has(table)) throw new ValueError(`a second *${table}; a dump has each table once`);
    this.seen.add(table);
    this.open = { table, line: source.line };
  }

  private commit(): void {
    if (!this.open) throw new ValueError('COMMIT without a table; a table starts with *filter');
    this.open = undefined;
  }

  private declaration(words: string[], source: SourceRef): void {
    if (!this.open) throw new ValueError('a chain declaration outside a table; it follows *filter');
    const [head, policy, counters, ...more] = words;
    if (policy === undefined || more.length > 0 || (counters !== undefined && !/^\[\d+:\d+\]$/.test(counters))) {
      throw new ValueError(`'${words.join(' ')}' is not ':CHAIN POLICY [packets:bytes]'`);
    }
    this.importer(this.open.table).declare(head.slice(1), policy, source);
  }

  /** `iptables [-t TABLE] COMMAND ...`: the table defaults to filter, and -t may stand anywhere. */
  private commandForm(words: string[], source: SourceRef): void {
    let table = 'filter';
    const t = words.findIndex((w) => w === '-t' || w === '--table');
    if (t >= 0) {
      if (words[t + 1] === undefined) throw new ValueError('-t needs a table name');
      table = words[t + 1];
      words.splice(t, 2);
    }
    if (this.open && this.open.table !== table) {
      throw new ValueError(`an iptables -t ${table} command inside *${this.open.table}; put it outside the block`);
    }
    this.tableCommand(table, words, source);
  }

  private tableCommand(table: string, words: string[], source: SourceRef): void {
    const importer = this.importer(table);
    const [verb, chain, ...rest] = words;
    const kind = COMMANDS[verb];
    if (!kind) {
      throw new ValueError(`command '${verb}' is not imported; only -A, -I, -N and -P (and the save format) are`);
    }
    if (chain === undefined) throw new ValueError(`${verb} needs a chain name`);
    importer.command(parseCommand(kind, chain, rest), source);
  }
}

function parseCommand(kind: TableCommand['kind'], chain: string, rest: string[]): TableCommand {
  switch (kind) {
    case 'append':
      return { kind, chain, spec: rest };
    case 'insert': {
      const hasPosition = rest.length > 0 && /^\d+$/.test(rest[0]);
      return { kind, chain, position: hasPosition ? Number(rest[0]) : 1, spec: hasPosition ? rest.slice(1) : rest };
    }
    case 'new-chain':
      if (rest.length > 0) throw new ValueError(`-N ${chain}: unexpected '${rest[0]}'`);
      return { kind, chain };
    case 'policy':
      if (rest.length !== 1) throw new ValueError(`-P ${chain} needs one policy, ACCEPT or DROP`);
      return { kind, chain, policy: rest[0] };
  }
}

// ---- the filter table ----

const BUILTIN: Readonly<Record<string, Hook>> = { INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output' };
const SIMPLE_TARGETS = ['ACCEPT', 'DROP', 'RETURN'];
const REJECT_ALIASES: Readonly<Record<string, RejectWith>> = { 'tcp-rst': 'tcp-reset' };
/** Targets of other tables or extensions, named so that the message says "not supported", not "no such chain". */
const OTHER_TARGETS = new Set(
  (
    'LOG NFLOG ULOG MARK CONNMARK CT NOTRACK MASQUERADE SNAT DNAT REDIRECT TPROXY NFQUEUE QUEUE TRACE TCPMSS ' +
    'CLASSIFY SET AUDIT CHECKSUM DSCP TOS TTL HMARK IDLETIMER LED SECMARK CONNSECMARK SYNPROXY TEE'
  ).split(' '),
);
const CHAIN_NAME_RE = /^[^\s!-][^\s]{0,28}$/;

class FilterTableImporter implements TableImporter {
  readonly ruleSet: PolicyRuleSet = emptyRuleSet({ input: 'INPUT', forward: 'FORWARD', output: 'OUTPUT' });

  declare(chain: string, policy: string, source: SourceRef): void {
    if (BUILTIN[chain]) return this.setPolicy(chain, policy);
    if (policy !== '-') {
      throw new ValueError(`custom chain ${chain} cannot have a policy (${policy}); declare it with :${chain} -`);
    }
    this.newChain(chain, source);
  }

  command(cmd: TableCommand, source: SourceRef): void {
    switch (cmd.kind) {
      case 'new-chain':
        return this.newChain(cmd.chain, source);
      case 'policy':
        return this.setPolicy(cmd.chain, cmd.policy);
      case 'append':
      case 'insert':
        return this.addRule(cmd, source);
    }
  }

  private newChain(name: string, source: SourceRef): void {
    if (BUILTIN[name] || this.ruleSet.chains.has(name)) throw new ValueError(`chain ${name} already exists`);
    if (!CHAIN_NAME_RE.test(name) || SIMPLE_TARGETS.includes(name) || name === 'REJECT') {
      throw new ValueError(`'${name}' is not a chain name iptables allows (up to 29 characters, not a target)`);
    }
    this.ruleSet.chains.set(name, { name, rules: [], source });
  }

  private setPolicy(chain: string, policy: string): void {
    const hook = BUILTIN[chain];
    if (!hook) throw new ValueError(`-P ${chain}: only INPUT, FORWARD and OUTPUT have a policy`);
    const verdicts: Record<string, Verdict> = { ACCEPT: 'accept', DROP: 'drop' };
    if (!verdicts[policy]) throw new ValueError(`policy '${policy}' of ${chain} is not ACCEPT or DROP`);
    this.ruleSet.hooks[hook].policy = verdicts[policy];
  }

  private addRule(cmd: Extract<TableCommand, { kind: 'append' | 'insert' }>, source: SourceRef): void {
    const chain = this.ruleSet.chains.get(cmd.chain);
    if (!chain) {
      throw new ValueError(`no chain ${cmd.chain}; declare it with -N ${cmd.chain} (or :${cmd.chain} - [0:0]) first`);
    }
    const spec = parseRuleSpec(cmd.spec, (target) => this.targetOptions(target));
    refuseWrongDevice(cmd.chain, spec);
    const rule: PolicyRule = { match: spec.match, action: this.action(spec), source };
    if (spec.comment !== undefined) rule.comment = spec.comment;
    if (cmd.kind === 'append') {
      chain.rules.push(rule);
      return;
    }
    if (cmd.position < 1 || cmd.position > chain.rules.length + 1) {
      throw new ValueError(`-I ${cmd.chain} ${cmd.position}: the chain has ${chain.rules.length} rules`);
    }
    chain.rules.splice(cmd.position - 1, 0, rule);
  }

  /** The options a target takes; refuses a target the filter importer does not support. */
  private targetOptions(target: string): readonly string[] {
    if (SIMPLE_TARGETS.includes(target) || this.ruleSet.chains.has(target)) return [];
    if (target === 'REJECT') return ['--reject-with'];
    if (OTHER_TARGETS.has(target)) {
      throw new ValueError(`target -j ${target} is not supported (only ACCEPT, DROP, REJECT, RETURN and chains)`);
    }
    throw new ValueError(`-j ${target}: no such chain or supported target; declare the chain with -N ${target} first`);
  }

  private action(spec: RuleSpec): RuleAction {
    const target = spec.target;
    if (target === undefined) {
      throw new ValueError('the rule has no -j target (a counting rule); give it one, or leave it out');
    }
    if (target === 'ACCEPT') return { kind: 'accept' };
    if (target === 'DROP') return { kind: 'drop' };
    if (target === 'RETURN') return { kind: 'return' };
    if (target === 'REJECT') return { kind: 'reject', with: rejectWith(spec.targetOptions.get('--reject-with')) };
    return { kind: 'jump', chain: target };
  }
}

function rejectWith(text: string | undefined): RejectWith {
  if (text === undefined) return 'icmp-port-unreachable';
  const kind = REJECT_ALIASES[text] ?? text;
  if (!(REJECT_WITH as readonly string[]).includes(kind)) {
    throw new ValueError(`--reject-with '${text}' is not supported; use one of ${REJECT_WITH.join(', ')}`);
  }
  return kind as RejectWith;
}

/** iptables refuses -i in OUTPUT and -o in INPUT: there is no such device for those packets. */
function refuseWrongDevice(chain: string, spec: RuleSpec): void {
  if (chain === 'OUTPUT' && spec.match.inDev)
    throw new ValueError("-i in OUTPUT: the node's own packets have no in-device");
  if (chain === 'INPUT' && spec.match.outDev)
    throw new ValueError('-o in INPUT: packets for the node have no out-device');
}
