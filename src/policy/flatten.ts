// Compiles a rule set's chains into one linear list per hook, the shape the
// BPF classifier walks: no jumps, no call stack.
//
// A jump is inlined: the callee's rules are copied in its place, each with the
// jumping rule's match ANDed onto its own (`matches` holds the conjunction as
// a list, outermost first). A packet that fails the jump's match fails every
// copied rule, so it passes the block as it would pass the jump.
//
// A return cannot become "the remaining callee rules AND NOT the return's
// match": the negation of a conjunction is no single rule. Instead a matched
// return becomes a `skip` rule whose target is the index just past the
// callee's block, i.e. the rule after the jump. Targets always point forward,
// so a walk over the list ends, and first-match decisions are exactly those of
// the chains: a return in a hook's own chain skips to the end of the list,
// where the hook's policy decides, as iptables' RETURN in a built-in chain does.
//
// keep-established is a rule at index 0: +trk+est packets are accepted ahead
// of every rule, so a rule change never re-judges a live connection.
import { UsageError } from '../errors';
import { expandSecurityGroups } from './securityGroup';
import { checkRuleSet, MAX_JUMP_DEPTH } from './ruleSetCheck';
import {
  CommitSettings,
  CT_STATE_BITS,
  Hook,
  HOOKS,
  NamedSet,
  PolicyChain,
  PolicyRuleSet,
  RejectWith,
  RuleMatch,
  SourceRef,
  Verdict,
  where,
} from './policyRule';

/** A flat list grows with every place a chain is jumped to from; past this, something is wrong with the rules. */
export const MAX_FLAT_RULES = 200_000;

/** The chain and rule a flat rule was copied from. */
export interface RuleRef {
  chain: string;
  /** 0-based position in its chain. */
  index: number;
  source?: SourceRef;
}

/** A flat rule's rule, and the jumps (outermost first) through which the hook reached it. */
export interface FlatOrigin extends RuleRef {
  via: RuleRef[];
}

export type FlatAction =
  | { kind: 'accept'; commit?: CommitSettings }
  | { kind: 'drop' }
  | { kind: 'reject'; with: RejectWith }
  /** Matched: continue at rule index `to` (always past this rule); what a return becomes. */
  | { kind: 'skip'; to: number };

export interface FlatRule {
  /** All must match; the jumps' matches first, the rule's own last. Empty: every packet. */
  matches: RuleMatch[];
  action: FlatAction;
  origin: FlatOrigin;
  comment?: string;
}

export interface FlatHook {
  hook: Hook;
  policy: Verdict;
  devices?: string[];
  rules: FlatRule[];
}

export interface FlatPolicy {
  keepEstablished: boolean;
  hooks: Record<Hook, FlatHook>;
  sets: ReadonlyMap<string, NamedSet>;
}

/** The chain name keep-established's rule reports as its origin. */
export const KEEP_ESTABLISHED_CHAIN = '(keep-established)';

export function flattenPolicy(input: PolicyRuleSet): FlatPolicy {
  const ruleSet = expandSecurityGroups(input);
  checkRuleSet(ruleSet);
  const hooks = {} as Record<Hook, FlatHook>;
  for (const hook of HOOKS) hooks[hook] = flattenHook(ruleSet, hook);
  return { keepEstablished: ruleSet.keepEstablished, hooks, sets: ruleSet.sets };
}

function flattenHook(ruleSet: PolicyRuleSet, hook: Hook): FlatHook {
  const binding = ruleSet.hooks[hook];
  const out: FlatRule[] = ruleSet.keepEstablished ? [keepEstablishedRule()] : [];
  inlineChain(ruleSet, chainNamed(ruleSet, binding.chain), [], [], out);
  const flat: FlatHook = { hook, policy: binding.policy, rules: out };
  if (binding.devices) flat.devices = [...binding.devices];
  return flat;
}

function keepEstablishedRule(): FlatRule {
  const est = CT_STATE_BITS.trk | CT_STATE_BITS.est;
  return {
    matches: [{ ctState: { anyOf: [{ set: est, clear: 0 }] } }],
    action: { kind: 'accept' },
    origin: { chain: KEEP_ESTABLISHED_CHAIN, index: 0, via: [] },
  };
}

/** Appends the chain's rules to `out` under the jumps' matches; a return skips to the end of this block. */
function inlineChain(
  ruleSet: PolicyRuleSet,
  chain: PolicyChain,
  outer: readonly RuleMatch[],
  via: readonly RuleRef[],
  out: FlatRule[],
): void {
  if (via.length > MAX_JUMP_DEPTH) {
    throw new UsageError(`${where(via[via.length - 1].source)}jumps nest more than ${MAX_JUMP_DEPTH} deep`);
  }
  const returns: FlatRule[] = [];
  chain.rules.forEach((rule, index) => {
    const ref: RuleRef = { chain: chain.name, index, source: rule.source };
    const matches = isEmptyMatch(rule.match) ? [...outer] : [...outer, rule.match];
    const a = rule.action;
    if (a.kind === 'jump') {
      inlineChain(ruleSet, chainNamed(ruleSet, a.chain), matches, [...via, ref], out);
      return;
    }
    const action: FlatAction = a.kind === 'return' ? { kind: 'skip', to: -1 } : a;
    const flat: FlatRule = { matches, action, origin: { ...ref, via: [...via] } };
    if (rule.comment !== undefined) flat.comment = rule.comment;
    if (a.kind === 'return') returns.push(flat);
    if (out.length >= MAX_FLAT_RULES) throw tooManyRules(rule.source);
    out.push(flat);
  });
  for (const r of returns) r.action = { kind: 'skip', to: out.length };
}

function tooManyRules(source: SourceRef | undefined): UsageError {
  return new UsageError(
    `${where(source)}inlining the jumps makes more than ${MAX_FLAT_RULES} rules in one hook; ` +
      'jump to shared chains from fewer places, or match many addresses with one named set',
  );
}

function isEmptyMatch(m: RuleMatch): boolean {
  return Object.values(m).every((v) => v === undefined);
}

function chainNamed(ruleSet: PolicyRuleSet, name: string): PolicyChain {
  const chain = ruleSet.chains.get(name);
  if (!chain) throw new Error(`policy: chain '${name}' vanished after the rule set was checked`);
  return chain;
}
