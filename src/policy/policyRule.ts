// The stateful-firewall policy model: what the rules file, the iptables
// importer and the security-group expander produce, what flatten compiles and
// policyTrace evaluates. It is plain data (strings, numbers, and bigints for
// the 128-bit ct_label) so that rule sets compare with deepEqual in tests and
// print in `tsct policy list` without a second representation.
//
// Every list in a match is an OR of its items and every field of a match is
// ANDed with the others; an absent field matches everything. Nothing in the
// model is negated: a negation from iptables (`! --dport 22`, `! --ctstate
// NEW`) is rewritten into the positive complement when it is imported, and
// address/device negations live in `except` lists. That keeps the BPF
// classifier's job to "all fields hold", with no NOT node.

export const HOOKS = ['input', 'forward', 'output'] as const;
/** input and output: the node's own traffic; forward: between managed devices. */
export type Hook = (typeof HOOKS)[number];

export type Family = 4 | 6;

/** Where a rule (or a set, a chain) was written, for error messages and `tsct policy list`. */
export interface SourceRef {
  file: string;
  line: number;
}

/** ct_state bits, numbered as OVS numbers them and as the datapath stores them. */
export const CT_STATE_BITS = {
  new: 0x01,
  est: 0x02,
  rel: 0x04,
  rpl: 0x08,
  inv: 0x10,
  trk: 0x20,
  snat: 0x40,
  dnat: 0x80,
} as const;
export type CtFlag = keyof typeof CT_STATE_BITS;
export const CT_STATE_ALL = 0xff;

/** One alternative of a ct_state match: every bit of `set` is 1 and every bit of `clear` is 0 (OVS `+a-b`). */
export interface CtStateTerm {
  set: number;
  clear: number;
}

/** A ct_state match: the packet's state satisfies at least one term. An empty list matches nothing. */
export interface CtStateMatch {
  anyOf: CtStateTerm[];
}

/** An IPv4 or IPv6 prefix; `addr` is the canonical text of the network address (host bits zero). */
export interface Cidr {
  family: Family;
  addr: string;
  prefix: number;
}

/** An item of an address list: a literal prefix, or every prefix of a named address set. */
export type AddressItem = { cidr: Cidr } | { set: string };

/**
 * The address is in some item of `anyOf` (an empty `anyOf` means every address) and in no item of
 * `except`. A prefix of one family never contains an address of the other.
 */
export interface AddressMatch {
  anyOf: AddressItem[];
  except: AddressItem[];
}

/** Inclusive port range; a single port is from === to. */
export interface PortRange {
  from: number;
  to: number;
}

export type PortItem = { range: PortRange } | { set: string };

/** The port is in some item. A packet without ports (ICMP, or no original tuple) never matches. */
export interface PortMatch {
  anyOf: PortItem[];
}

/**
 * Device names as iptables writes them: a name ending in `+` matches every name that starts with
 * what precedes the `+`. An empty `anyOf` means every device; a packet without that device (no
 * in-device on output) never matches.
 */
export interface DeviceMatch {
  anyOf: string[];
  except: string[];
}

/** (field & mask) === value, 32-bit. */
export interface MaskedValue {
  value: number;
  mask: number;
}

/** (label & mask) === value, 128-bit. */
export interface MaskedLabel {
  value: bigint;
  mask: bigint;
}

export const PROTOCOLS = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const;
export type ProtocolName = keyof typeof PROTOCOLS;
/** Protocols whose packets carry the ports a port match reads. */
export const PORT_PROTOCOLS: readonly number[] = [PROTOCOLS.tcp, PROTOCOLS.udp, PROTOCOLS.sctp];
export const ICMP_PROTOCOLS: readonly number[] = [PROTOCOLS.icmp, PROTOCOLS.icmpv6];

export interface RuleMatch {
  family?: Family;
  ctState?: CtStateMatch;
  /** Conntrack zone, 16-bit. */
  zone?: number;
  ctMark?: MaskedValue;
  ctLabel?: MaskedLabel;
  /** The packet's own mark (skb->mark, iptables `-m mark`), not the connection's. */
  packetMark?: MaskedValue;
  src?: AddressMatch;
  dst?: AddressMatch;
  /** IP protocol number. */
  proto?: number;
  sport?: PortMatch;
  dport?: PortMatch;
  icmpType?: number;
  icmpCode?: number;
  inDev?: DeviceMatch;
  outDev?: DeviceMatch;
  /** The connection's original-direction tuple (OVS ct_nw_src/ct_nw_dst/ct_tp_src/ct_tp_dst). */
  ctOrigSrc?: AddressMatch;
  ctOrigDst?: AddressMatch;
  ctOrigSport?: PortMatch;
  ctOrigDport?: PortMatch;
}

/**
 * What a reject answers with. The ICMP kinds are named as iptables names them and are sent as
 * their ICMPv6 counterpart to an IPv6 packet.
 */
export const REJECT_WITH = [
  'icmp-port-unreachable',
  'icmp-admin-prohibited',
  'tcp-reset',
  'icmp-net-unreachable',
  'icmp-host-unreachable',
  'icmp-proto-unreachable',
  'icmp-net-prohibited',
  'icmp-host-prohibited',
] as const;
export type RejectWith = (typeof REJECT_WITH)[number];

export const HELPERS = ['ftp', 'tftp'] as const;
export type Helper = (typeof HELPERS)[number];

/**
 * What an accepting rule writes onto a new connection when it is committed. Every accepted new
 * connection is committed (the datapath commits on accept); these only add mark, label and helper.
 */
export interface CommitSettings {
  mark?: MaskedValue;
  label?: MaskedLabel;
  helper?: Helper;
}

export type RuleAction =
  | { kind: 'accept'; commit?: CommitSettings }
  | { kind: 'drop' }
  | { kind: 'reject'; with: RejectWith }
  | { kind: 'jump'; chain: string }
  /** Leave the current chain and continue after the rule that jumped to it; in a hook's chain, apply the policy. */
  | { kind: 'return' };

export interface PolicyRule {
  match: RuleMatch;
  action: RuleAction;
  comment?: string;
  source?: SourceRef;
}

/** Ordered rules; the first that matches decides (or jumps, or returns). */
export interface PolicyChain {
  name: string;
  rules: PolicyRule[];
  source?: SourceRef;
}

export type Verdict = 'accept' | 'drop';

/**
 * A hook's entry chain and default policy. With `devices`, the hook judges only packets of those
 * devices (input: in-device; output: out-device; forward: either) and every other packet passes
 * unjudged; without, it judges all.
 */
export interface HookBinding {
  chain: string;
  policy: Verdict;
  devices?: string[];
  source?: SourceRef;
}

/** A named set a match refers to by name, so that 10,000 prefixes are one rule and one set. */
export type NamedSet =
  | { kind: 'address'; name: string; cidrs: Cidr[]; source?: SourceRef }
  | { kind: 'port'; name: string; ports: PortRange[]; source?: SourceRef };

export type SecurityGroupDirection = 'ingress' | 'egress';

/** The other end of an allowed connection: prefixes, or the members of a (possibly the same) group. */
export type SecurityGroupRemote = { cidrs: Cidr[] } | { group: string };

/**
 * One allow rule of a security group. ingress: connections opened towards the group's devices
 * (the remote is their source); egress: connections the devices open (the remote is their
 * destination). An absent field allows every value.
 */
export interface SecurityGroupRule {
  direction: SecurityGroupDirection;
  family?: Family;
  proto?: number;
  ports?: PortRange[];
  remote?: SecurityGroupRemote;
  source?: SourceRef;
}

/**
 * A named set of stateful allow rules bound to devices: what no group of a device allows is
 * dropped, while replies and related packets of allowed connections pass. `members` are the
 * addresses behind the group's devices, which a `remote: { group }` rule refers to.
 */
export interface SecurityGroup {
  name: string;
  devices: string[];
  members: Cidr[];
  rules: SecurityGroupRule[];
  source?: SourceRef;
}

export interface PolicyRuleSet {
  /** true: packets of established connections pass ahead of every rule, so changing rules never cuts one. */
  keepEstablished: boolean;
  hooks: Record<Hook, HookBinding>;
  /** Every chain, the hooks' entry chains included. */
  chains: Map<string, PolicyChain>;
  sets: Map<string, NamedSet>;
  securityGroups: Map<string, SecurityGroup>;
}

/** A rule set that accepts everything, with one empty entry chain per hook named by `chainNames`. */
export function emptyRuleSet(chainNames: Record<Hook, string>): PolicyRuleSet {
  const chains = new Map<string, PolicyChain>();
  const hooks = {} as Record<Hook, HookBinding>;
  for (const hook of HOOKS) {
    chains.set(chainNames[hook], { name: chainNames[hook], rules: [] });
    hooks[hook] = { chain: chainNames[hook], policy: 'accept' };
  }
  return { keepEstablished: false, hooks, chains, sets: new Map(), securityGroups: new Map() };
}

/** The hook whose entry chain is `chain`, if any. */
export function hookOfChain(ruleSet: PolicyRuleSet, chain: string): Hook | undefined {
  return HOOKS.find((h) => ruleSet.hooks[h].chain === chain);
}

export function formatSource(source: SourceRef): string {
  return `${source.file}:${source.line}`;
}

/** "file:line: " for a message, or "" when the rule was built in code. */
export function where(source: SourceRef | undefined): string {
  return source ? `${formatSource(source)}: ` : '';
}
