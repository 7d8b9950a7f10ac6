// Checks a whole rule set before it is flattened or loaded: what each rule
// needs of its other fields (a port needs tcp, udp or sctp), that every set it
// names exists, and that the jumps between chains form no loop and nest no
// deeper than MAX_JUMP_DEPTH. The parsers check single values where they read
// them; these checks see whole rules and chains, so the rules file, the
// iptables importer and rule sets built in code all pass through them.
import { UsageError } from '../errors';
import {
  AddressMatch,
  Family,
  hookOfChain,
  HOOKS,
  ICMP_PROTOCOLS,
  NamedSet,
  PolicyChain,
  PolicyRule,
  PolicyRuleSet,
  PORT_PROTOCOLS,
  PortMatch,
  PROTOCOLS,
  RuleMatch,
  where,
} from './policyRule';

/** How many jumps may nest below a hook's chain; flatten inlines each level, so this also bounds its work. */
export const MAX_JUMP_DEPTH = 32;

export function checkRuleSet(ruleSet: PolicyRuleSet): void {
  for (const hook of HOOKS) {
    const binding = ruleSet.hooks[hook];
    if (!ruleSet.chains.has(binding.chain)) {
      throw new UsageError(
        `${where(binding.source)}hook ${hook} enters chain '${binding.chain}', which is not defined`,
      );
    }
  }
  for (const chain of ruleSet.chains.values()) {
    for (const rule of chain.rules) {
      const problem = ruleProblem(rule, ruleSet.sets);
      if (problem) throw new UsageError(`${where(rule.source)}${problem}`);
    }
  }
  checkJumps(ruleSet);
}

/** What is wrong with one rule on its own, as "what; what to do", or undefined. */
export function ruleProblem(rule: PolicyRule, sets: ReadonlyMap<string, NamedSet>): string | undefined {
  return (
    familyProblem(rule.match) ?? protocolProblem(rule.match) ?? actionProblem(rule) ?? setProblem(rule.match, sets)
  );
}

/** The families a match's literal prefixes and ICMP protocol pin it to. */
function familiesOf(m: RuleMatch): Set<Family> {
  const families = new Set<Family>();
  if (m.family) families.add(m.family);
  if (m.proto === PROTOCOLS.icmp) families.add(4);
  if (m.proto === PROTOCOLS.icmpv6) families.add(6);
  for (const a of [m.src, m.dst, m.ctOrigSrc, m.ctOrigDst]) {
    // An address match that lists prefixes of both families pins nothing.
    const listed = new Set(a?.anyOf.flatMap((item) => ('cidr' in item ? [item.cidr.family] : [])));
    if (listed.size === 1 && !a?.anyOf.some((item) => 'set' in item)) families.add([...listed][0]);
  }
  return families;
}

function familyProblem(m: RuleMatch): string | undefined {
  if (familiesOf(m).size < 2) return undefined;
  return 'the rule mixes IPv4 and IPv6 (addresses, family or icmp/icmpv6), so no packet matches it; split it in two';
}

function protocolProblem(m: RuleMatch): string | undefined {
  const ports = (['sport', 'dport'] as const).find((f) => m[f] !== undefined);
  if (ports && (m.proto === undefined || !PORT_PROTOCOLS.includes(m.proto))) {
    return `${ports} needs protocol tcp, udp or sctp; add protocol: to the rule`;
  }
  if ((m.icmpType !== undefined || m.icmpCode !== undefined) && !ICMP_PROTOCOLS.includes(m.proto ?? -1)) {
    return 'icmp-type and icmp-code need protocol icmp or icmpv6; add protocol: to the rule';
  }
  if (m.icmpCode !== undefined && m.icmpType === undefined) return 'icmp-code needs an icmp-type; add one';
  return undefined;
}

function actionProblem(rule: PolicyRule): string | undefined {
  const a = rule.action;
  if (a.kind === 'reject' && a.with === 'tcp-reset' && rule.match.proto !== PROTOCOLS.tcp) {
    return 'reject with tcp-reset needs protocol tcp; add protocol: tcp or reject with an icmp kind';
  }
  const helper = a.kind === 'accept' ? a.commit?.helper : undefined;
  const helperProto = helper === 'ftp' ? PROTOCOLS.tcp : PROTOCOLS.udp;
  if (helper && rule.match.proto !== helperProto) {
    return `helper ${helper} runs on ${helper === 'ftp' ? 'tcp' : 'udp'} connections; add protocol: ${helper === 'ftp' ? 'tcp' : 'udp'}`;
  }
  return undefined;
}

function setProblem(m: RuleMatch, sets: ReadonlyMap<string, NamedSet>): string | undefined {
  const addressFields = [m.src, m.dst, m.ctOrigSrc, m.ctOrigDst].filter((a): a is AddressMatch => !!a);
  const portFields = [m.sport, m.dport, m.ctOrigSport, m.ctOrigDport].filter((p): p is PortMatch => !!p);
  const wanted = [
    ...addressFields
      .flatMap((a) => [...a.anyOf, ...a.except])
      .map((i) => ['address', 'set' in i ? i.set : ''] as const),
    ...portFields.flatMap((p) => p.anyOf).map((i) => ['port', 'set' in i ? i.set : ''] as const),
  ];
  for (const [kind, name] of wanted) {
    if (name === '') continue;
    const problem = setRefProblem(sets, name, kind);
    if (problem) return problem;
  }
  return undefined;
}

/** Why `$name` cannot be used where a set of `kind` is wanted, or undefined. */
export function setRefProblem(
  sets: ReadonlyMap<string, NamedSet>,
  name: string,
  kind: NamedSet['kind'],
): string | undefined {
  const set = sets.get(name);
  if (!set) return `unknown set '$${name}'; define it under sets: or fix the name`;
  const plural = { address: 'addresses', port: 'ports' };
  if (set.kind !== kind) {
    return `set '$${name}' holds ${plural[set.kind]}, not ${plural[kind]}; use a set of ${plural[kind]} here`;
  }
  return undefined;
}

/**
 * Every jump names a defined chain that is not a hook's (a hook's chain has a policy, so it is
 * entered only from its hook), and the jumps form no loop and nest at most MAX_JUMP_DEPTH deep.
 */
function checkJumps(ruleSet: PolicyRuleSet): void {
  const height = new Map<string, number>();
  const path: string[] = [];
  const visit = (chain: PolicyChain): number => {
    const known = height.get(chain.name);
    if (known !== undefined) return known;
    path.push(chain.name);
    let h = 0;
    for (const rule of chain.rules) {
      if (rule.action.kind !== 'jump') continue;
      const callee = jumpTarget(ruleSet, chain, rule, rule.action.chain, path);
      const below = visit(callee);
      // A chain first met on a short path is not walked again, so its height decides the depth here.
      if (path.length + below > MAX_JUMP_DEPTH) throw depthError(rule, [...path, callee.name, `(${below} more)`]);
      h = Math.max(h, 1 + below);
    }
    path.pop();
    height.set(chain.name, h);
    return h;
  };
  const hookChains = HOOKS.map((h) => ruleSet.chains.get(ruleSet.hooks[h].chain)).filter((c) => !!c);
  for (const chain of [...hookChains, ...ruleSet.chains.values()]) visit(chain);
}

function jumpTarget(
  ruleSet: PolicyRuleSet,
  chain: PolicyChain,
  rule: PolicyRule,
  target: string,
  path: readonly string[],
): PolicyChain {
  const at = where(rule.source);
  if (target === chain.name) {
    throw new UsageError(`${at}chain '${target}' jumps to itself; a chain cannot call itself, remove the jump`);
  }
  const callee = ruleSet.chains.get(target);
  if (!callee) throw new UsageError(`${at}jump to unknown chain '${target}'; define the chain or fix the name`);
  const hook = hookOfChain(ruleSet, target);
  if (hook) {
    throw new UsageError(`${at}jump to '${target}', the ${hook} hook's chain; jump to a chain of your own instead`);
  }
  const loopStart = path.indexOf(target);
  if (loopStart >= 0) {
    const loop = [...path.slice(loopStart), target].join(' → ');
    throw new UsageError(`${at}jump to '${target}' makes a loop ${loop}; remove one of these jumps`);
  }
  if (path.length > MAX_JUMP_DEPTH) throw depthError(rule, [...path, target]);
  return callee;
}

function depthError(rule: PolicyRule, path: readonly string[]): UsageError {
  const shown = path.length > 6 ? [...path.slice(0, 2), '…', ...path.slice(-3)] : path;
  return new UsageError(
    `${where(rule.source)}jumps nest more than ${MAX_JUMP_DEPTH} deep (${shown.join(' → ')}); ` +
      'inline some chains into their callers',
  );
}
