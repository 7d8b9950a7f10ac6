// Security groups become ordinary chains and rules, so the datapath has one
// engine. For each bound device and direction there is one chain:
//
//   sg-egress-DEV / sg-ingress-DEV
//     +trk+inv          drop      invalid packets are never allowed
//     +trk+est          return    replies and later packets of allowed connections
//     +trk+rel          return    related connections (ICMP errors, FTP data)
//     <each rule of each group bound to DEV, for this direction>   return
//     (anything else)   drop      what no group allows
//
// A chain returns rather than accepts when it allows: a forwarded packet
// between two guarded devices must pass the sender's egress and the receiver's
// ingress, and after both the hook's own rules and policy still apply, so a
// group only ever narrows what the rest of the rule set allows. The jumps go
// first in each hook's chain: egress of the in-device on forward and input,
// ingress of the out-device on forward and output. A remote group is the
// address set sg-members-GROUP made from that group's members.
//
// When a hook judges only listed devices, the guarded devices are added to its
// list and a rule right after the jumps accepts packets of the other devices
// unjudged, as before. On forward that rule needs both devices of the packet.
import { UsageError } from '../errors';
import {
  AddressMatch,
  DeviceMatch,
  Hook,
  NamedSet,
  PolicyChain,
  PolicyRule,
  PolicyRuleSet,
  SecurityGroup,
  SecurityGroupDirection,
  SecurityGroupRule,
  SourceRef,
  where,
  CT_STATE_BITS,
  RuleMatch,
} from './policyRule';

/** Chains and sets whose names start with this are made here; a rule set may not define its own. */
export const SG_PREFIX = 'sg-';

export function sgChainName(direction: SecurityGroupDirection, device: string): string {
  return `${SG_PREFIX}${direction}-${device}`;
}

export function sgMembersSetName(group: string): string {
  return `${SG_PREFIX}members-${group}`;
}

/** The rule set with its security groups turned into chains, sets and jumps; the same rule set when it has none. */
export function expandSecurityGroups(ruleSet: PolicyRuleSet): PolicyRuleSet {
  if (ruleSet.securityGroups.size === 0) return ruleSet;
  refuseReservedNames(ruleSet);
  const groups = [...ruleSet.securityGroups.values()];
  const chains = new Map(ruleSet.chains);
  const sets = new Map(ruleSet.sets);
  for (const g of groups) sets.set(sgMembersSetName(g.name), membersSet(g));
  const byDevice = groupsByDevice(groups);
  for (const [device, deviceGroups] of byDevice) {
    for (const direction of ['egress', 'ingress'] as const) {
      const chain = deviceChain(ruleSet, device, direction, deviceGroups);
      chains.set(chain.name, chain);
    }
  }
  const devices = [...byDevice.keys()];
  const hooks = { ...ruleSet.hooks };
  for (const hook of ['input', 'forward', 'output'] as const) {
    const binding = ruleSet.hooks[hook];
    const base = chains.get(binding.chain);
    if (!base)
      throw new UsageError(
        `${where(binding.source)}hook ${hook} enters chain '${binding.chain}', which is not defined`,
      );
    const guard = [...hookJumps(hook, devices, groups[0].source)];
    if (binding.devices) {
      guard.push(unjudgedPassRule(hook, binding.devices, groups[0].source));
      hooks[hook] = {
        ...binding,
        devices: [...binding.devices, ...devices.filter((d) => !binding.devices!.includes(d))],
      };
    }
    chains.set(base.name, { ...base, rules: [...guard, ...base.rules] });
  }
  return { ...ruleSet, hooks, chains, sets, securityGroups: new Map() };
}

function refuseReservedNames(ruleSet: PolicyRuleSet): void {
  const named: Array<{ name: string; source?: SourceRef; what: string }> = [
    ...[...ruleSet.chains.values()].map((c) => ({ name: c.name, source: c.source, what: 'chain' })),
    ...[...ruleSet.sets.values()].map((s) => ({ name: s.name, source: s.source, what: 'set' })),
  ];
  const clash = named.find((n) => n.name.startsWith(SG_PREFIX));
  if (clash) {
    throw new UsageError(
      `${where(clash.source)}${clash.what} '${clash.name}' starts with '${SG_PREFIX}', which names what security ` +
        'groups make; rename it',
    );
  }
}

function membersSet(g: SecurityGroup): NamedSet {
  return { kind: 'address', name: sgMembersSetName(g.name), cidrs: [...g.members], source: g.source };
}

/** Each bound device with its groups, in the order the groups and their devices are written. */
function groupsByDevice(groups: readonly SecurityGroup[]): Map<string, SecurityGroup[]> {
  const out = new Map<string, SecurityGroup[]>();
  for (const g of groups) {
    for (const d of g.devices) {
      const list = out.get(d) ?? [];
      if (!list.includes(g)) list.push(g);
      out.set(d, list);
    }
  }
  return out;
}

function ctState(bits: number): RuleMatch {
  return { ctState: { anyOf: [{ set: CT_STATE_BITS.trk | bits, clear: 0 }] } };
}

function deviceChain(
  ruleSet: PolicyRuleSet,
  device: string,
  direction: SecurityGroupDirection,
  groups: readonly SecurityGroup[],
): PolicyChain {
  const source = groups[0].source;
  const allowed = groups.flatMap((g) =>
    g.rules.filter((r) => r.direction === direction).map((r) => allowRule(ruleSet, g, r)),
  );
  const rules: PolicyRule[] = [
    { match: ctState(CT_STATE_BITS.inv), action: { kind: 'drop' }, comment: 'security groups: invalid', source },
    { match: ctState(CT_STATE_BITS.est), action: { kind: 'return' }, comment: 'security groups: established', source },
    { match: ctState(CT_STATE_BITS.rel), action: { kind: 'return' }, comment: 'security groups: related', source },
    ...allowed,
    { match: {}, action: { kind: 'drop' }, comment: `security groups of ${device}: not allowed`, source },
  ];
  return { name: sgChainName(direction, device), rules, source };
}

function allowRule(ruleSet: PolicyRuleSet, g: SecurityGroup, r: SecurityGroupRule): PolicyRule {
  const match: RuleMatch = {};
  if (r.family !== undefined) match.family = r.family;
  if (r.proto !== undefined) match.proto = r.proto;
  if (r.ports) match.dport = { anyOf: r.ports.map((range) => ({ range })) };
  if (r.remote) match[r.direction === 'ingress' ? 'src' : 'dst'] = remoteMatch(ruleSet, r);
  const rule: PolicyRule = { match, action: { kind: 'return' }, comment: `security group ${g.name}` };
  if (r.source) rule.source = r.source;
  return rule;
}

function remoteMatch(ruleSet: PolicyRuleSet, r: SecurityGroupRule): AddressMatch {
  if (!r.remote || 'cidrs' in r.remote) return { anyOf: (r.remote?.cidrs ?? []).map((cidr) => ({ cidr })), except: [] };
  if (!ruleSet.securityGroups.has(r.remote.group)) {
    throw new UsageError(
      `${where(r.source)}remote group '${r.remote.group}' is not a security group; define it or fix the name`,
    );
  }
  return { anyOf: [{ set: sgMembersSetName(r.remote.group) }], except: [] };
}

function devices(names: readonly string[]): DeviceMatch {
  return { anyOf: [...names], except: [] };
}

function* hookJumps(hook: Hook, guarded: readonly string[], source: SourceRef | undefined): Generator<PolicyRule> {
  const jump = (field: 'inDev' | 'outDev', direction: SecurityGroupDirection, d: string): PolicyRule => ({
    match: { [field]: devices([d]) },
    action: { kind: 'jump', chain: sgChainName(direction, d) },
    comment: `security groups: ${direction} of ${d}`,
    source,
  });
  if (hook !== 'output') for (const d of guarded) yield jump('inDev', 'egress', d);
  if (hook !== 'input') for (const d of guarded) yield jump('outDev', 'ingress', d);
}

/** Accepts, unjudged, what the hook did not judge before guarded devices joined its list. */
function unjudgedPassRule(hook: Hook, judged: readonly string[], source: SourceRef | undefined): PolicyRule {
  const others: DeviceMatch = { anyOf: [], except: [...judged] };
  const match: RuleMatch = {};
  if (hook !== 'output') match.inDev = others;
  if (hook !== 'input') match.outDev = others;
  return { match, action: { kind: 'accept' }, comment: 'security groups: device the hook does not judge', source };
}
