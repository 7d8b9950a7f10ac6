// The reference evaluator: walks a hook's flat rule list for one packet and
// says which rule decided and why each earlier rule did not. It backs `tsct
// policy trace` and is the oracle the BPF classifier is tested against.
import { deviceNameMatches, matchFailure, PolicyPacket, preparePacket, PreparedPacket, SetLookup } from './ruleMatch';
import { FlatHook, FlatOrigin, FlatPolicy, FlatRule, KEEP_ESTABLISHED_CHAIN } from './flatten';
import { CommitSettings, formatSource, Hook, RejectWith } from './policyRule';
import { formatAction } from './ruleFormat';

export type { PolicyPacket } from './ruleMatch';

export type TraceVerdict = 'accept' | 'drop' | 'reject';

export interface TraceResult {
  verdict: TraceVerdict;
  /** With verdict reject: what is sent back. */
  rejectWith?: RejectWith;
  /** With verdict accept by a rule that sets them: what the connection is committed with. */
  commit?: CommitSettings;
  /** The rule that decided; 'policy' when none did; 'unjudged' when the hook does not judge this packet's devices. */
  rule: FlatOrigin | 'policy' | 'unjudged';
  /** The index of the deciding rule in the hook's flat list. */
  index?: number;
  /** One line per rule looked at, then the decision. */
  steps: string[];
}

export function tracePolicy(flat: FlatPolicy, hook: Hook, packet: PolicyPacket): TraceResult {
  const h = flat.hooks[hook];
  const pp = preparePacket(packet);
  const steps: string[] = [];
  if (!judgesDevices(h, packet)) {
    steps.push(`${hook} judges only devices ${h.devices?.join(',')}; this packet passes unjudged`);
    return { verdict: 'accept', rule: 'unjudged', steps };
  }
  let i = 0;
  while (i < h.rules.length) {
    const rule = h.rules[i];
    const why = failure(rule, pp, flat.sets);
    if (why !== undefined) {
      steps.push(`#${i} ${describeOrigin(rule.origin)}: no match: ${why}`);
      i++;
      continue;
    }
    if (rule.action.kind === 'skip') {
      // flattenPolicy only makes forward skips; a backward one from elsewhere would never end.
      if (rule.action.to <= i) throw new Error(`policy: flat rule #${i} of ${hook} skips back to #${rule.action.to}`);
      steps.push(`#${i} ${describeOrigin(rule.origin)}: return: continue at #${rule.action.to}`);
      i = rule.action.to;
      continue;
    }
    steps.push(`#${i} ${describeOrigin(rule.origin)}: match: ${formatAction(rule.action)}`);
    return decided(rule, i, steps);
  }
  steps.push(`no rule decided: ${hook} policy ${h.policy}`);
  return { verdict: h.policy, rule: 'policy', steps };
}

function decided(rule: FlatRule, index: number, steps: string[]): TraceResult {
  const a = rule.action;
  const result: TraceResult = { verdict: 'accept', rule: rule.origin, index, steps };
  if (a.kind === 'drop') result.verdict = 'drop';
  if (a.kind === 'reject') {
    result.verdict = 'reject';
    result.rejectWith = a.with;
  }
  if (a.kind === 'accept' && a.commit) result.commit = a.commit;
  return result;
}

function failure(rule: FlatRule, pp: PreparedPacket, sets: SetLookup): string | undefined {
  for (const m of rule.matches) {
    const why = matchFailure(m, pp, sets);
    if (why !== undefined) return why;
  }
  return undefined;
}

/** Whether the hook's device list covers the packet (input: in-device, output: out-device, forward: either). */
function judgesDevices(h: FlatHook, p: PolicyPacket): boolean {
  const devices = h.devices;
  if (!devices) return true;
  const listed = (name: string | undefined) =>
    name !== undefined && devices.some((pattern) => deviceNameMatches(pattern, name));
  if (h.hook === 'input') return listed(p.inDev);
  if (h.hook === 'output') return listed(p.outDev);
  return listed(p.inDev) || listed(p.outDev);
}

/** `CHAIN[n] (file:line) via INPUT[2]`, with n 0-based as in the flat origin. */
export function describeOrigin(o: FlatOrigin): string {
  if (o.chain === KEEP_ESTABLISHED_CHAIN) return 'keep-established';
  const at = o.source ? ` (${formatSource(o.source)})` : '';
  const via = o.via.length === 0 ? '' : ` via ${o.via.map((r) => `${r.chain}[${r.index}]`).join(' > ')}`;
  return `${o.chain}[${o.index}]${at}${via}`;
}
