// The declarative policy rules file (`--policy-file`), YAML or JSON: JSON is
// YAML, so one parser reads both and reports each mistake at its line.
//
// Schema (every top-level key is optional; an unknown key anywhere is an error):
//
//   keep-established: BOOL      true: packets of established connections (+trk+est) pass ahead of
//                               every rule, so changing the rules never cuts a live connection;
//                               false (default): every packet is judged by the current rules
//   sets:                       named sets, referred to as $NAME where addresses or ports go
//     NAME:
//       addresses: [CIDR, ...]  an address set (IPv4 and IPv6 may mix), or
//       ports: [PORTS, ...]     a port set: exactly one of the two
//   hooks:
//     input | forward | output: input/output: the node's own traffic; forward: between devices
//       policy: accept | drop   what happens when no rule decides (default accept)
//       devices: [DEV, ...]     judge only these devices' packets (input: in-device, output:
//                               out-device, forward: either); default every device
//       rules: [RULE, ...]      in order; the first rule that matches decides
//   chains:
//     NAME: [RULE, ...]         a custom chain, entered by `jump NAME`
//   security-groups:
//     NAME:
//       devices: [DEV, ...]     the devices the group guards
//       members: [CIDR, ...]    the addresses behind them (what remote-group NAME means)
//       rules:                  what is allowed; everything else to or from the devices is dropped,
//                               while replies and related packets of allowed connections pass
//         - direction: ingress | egress   towards the devices, or opened by them
//           family: ipv4 | ipv6
//           protocol: PROTO
//           ports: PORTS                  destination ports (needs tcp, udp or sctp)
//           remote-cidr: CIDR | [CIDR, ...]   the other end, or
//           remote-group: GROUP               the members of a group
//
//   RULE (a mapping; `action` is required, every other key narrows the match, all must hold):
//     action: ACTION
//     comment: TEXT
//     family: ipv4 | ipv6
//     protocol: tcp | udp | icmp | icmpv6 | sctp | 0-255
//     ct-state: STATE | [STATE, ...]     a list is an OR; a STATE is an OVS term of +flag/-flag
//                                        (flags trk new est rel rpl inv snat dnat, e.g. +trk+est-rpl)
//                                        or an iptables name, and "A,B" lists names in one string:
//                                        NEW = +trk+new-rel, ESTABLISHED = +trk+est,
//                                        RELATED = +trk+rel-est, INVALID = +inv, UNTRACKED = -trk,
//                                        SNAT = +snat, DNAT = +dnat
//     zone: 0-65535                      the connection's zone
//     ct-mark: VALUE[/MASK]              32-bit, decimal or 0x hex; mask default all ones
//     ct-label: VALUE[/MASK]             128-bit, the same
//     packet-mark: VALUE[/MASK]          the packet's own mark (skb->mark)
//     src | dst: ADDRESSES
//     sport | dport: PORTS               need protocol tcp, udp or sctp
//     icmp-type | icmp-code: 0-255       need protocol icmp or icmpv6
//     in-dev | out-dev: DEVICES
//     ct-orig-src | ct-orig-dst: ADDRESSES    the connection's original direction
//     ct-orig-sport | ct-orig-dport: PORTS    (OVS ct_nw_src/ct_nw_dst/ct_tp_src/ct_tp_dst)
//
//   ADDRESSES: ITEM | [ITEM, ...] | { any: [ITEM, ...], except: [ITEM, ...] }
//              an ITEM is ADDR/LEN with no host bits set, a bare address, or $SET;
//              `any` omitted means every address; a prefix never matches the other family
//   PORTS:     PORT | LOW-HIGH | $SET, or a list of them
//   DEVICES:   DEV | [DEV, ...] | { any: [DEV, ...], except: [DEV, ...] }; a DEV ending in + is a
//              prefix (eth+ is every eth device)
//   ACTION:    accept [commit [set mark=V[/M]] [set label=V[/M]] [helper ftp|tftp]]
//                  every accepted new connection is committed; `commit` adds what is set on it
//              drop
//              reject [with tcp-reset | icmp-port-unreachable | icmp-admin-prohibited |
//                      icmp-net-unreachable | icmp-host-unreachable | icmp-proto-unreachable |
//                      icmp-net-prohibited | icmp-host-prohibited]   (default icmp-port-unreachable)
//              jump CHAIN     run CHAIN's rules here; a hook's chain cannot be jumped to
//              return         leave this chain, continue after the jump (in a hook: its policy)
//
// Nothing is returned unless the whole file is right: jumps to unknown chains, loops of jumps,
// jumps nested deeper than MAX_JUMP_DEPTH and references to unknown sets are errors as well.
import { UsageError } from '../errors';
import { parseCidr } from './cidr';
import { parseCtStateList } from './ctState';
import { parsePortRange } from './ports';
import {
  AddressItem,
  AddressMatch,
  Cidr,
  CommitSettings,
  DeviceMatch,
  emptyRuleSet,
  Family,
  Helper,
  HELPERS,
  Hook,
  HOOKS,
  NamedSet,
  PolicyRule,
  PolicyRuleSet,
  PortItem,
  PortMatch,
  PORT_PROTOCOLS,
  PortRange,
  PROTOCOLS,
  REJECT_WITH,
  RejectWith,
  RuleAction,
  RuleMatch,
  SecurityGroup,
  SecurityGroupRemote,
  SecurityGroupRule,
} from './policyRule';
import { checkRuleSet, setRefProblem } from './ruleSetCheck';
import { expandSecurityGroups } from './securityGroup';
import { parseMasked32, parseMaskedLabel } from './marks';
import { ValueError } from './valueError';
import { readTree, Tree, TreeEntry, TreeMap } from './yamlTree';

/** A rules file that uses every part of the schema; it parses, and the tests keep it so. */
export const EXAMPLE_RULES_YAML = `# tsct policy: a host with a web server, an FTP server and two guarded guests
keep-established: true
sets:
  admin-nets:
    addresses: [10.10.0.0/16, "2001:db8:a::/48"]
  web-ports:
    ports: [80, 443, 8000-8099]
hooks:
  input:
    policy: drop
    rules:
      - ct-state: [ESTABLISHED, RELATED]
        action: accept
      - ct-state: INVALID
        action: drop
      - in-dev: lo
        action: accept
      - protocol: tcp
        dport: 22
        src: $admin-nets
        ct-state: +trk+new
        action: accept commit set mark=0x1/0xff
      - protocol: tcp
        action: jump in-web
      - protocol: tcp
        dport: 21
        action: accept commit helper ftp
      - protocol: icmp
        icmp-type: 8
        action: accept
      - protocol: icmpv6
        action: accept
      - protocol: tcp
        action: reject with tcp-reset
  forward:
    devices: [veth-a, veth-b, eth0]
    rules:
      - ct-state: -trk
        action: drop
        comment: untracked traffic is not forwarded
      - ct-orig-dst: 192.0.2.10
        ct-orig-dport: 8080
        ct-state: +dnat
        action: accept
  output:
    rules:
      - dst: { any: [0.0.0.0/0], except: [10.0.0.0/8, 192.168.0.0/16] }
        out-dev: { except: [lo] }
        protocol: udp
        dport: 53
        action: accept commit set label=0x10000000000000000/0x10000000000000000
chains:
  in-web:
    - src: { except: [10.0.0.0/8] }
      zone: 0
      ct-mark: 0x0/0x1
      action: jump in-web-public
    - dport: $web-ports
      protocol: tcp
      action: accept
  in-web-public:
    - src: 203.0.113.0/24
      action: drop
      comment: a known scanner
    - ct-label: 0x1/0x1
      action: return
    - protocol: tcp
      dport: [80, 443]
      action: accept
security-groups:
  web:
    devices: [veth-a]
    members: [10.20.1.0/24]
    rules:
      - direction: ingress
        protocol: tcp
        ports: [80, 443]
        remote-cidr: 0.0.0.0/0
      - direction: ingress
        protocol: tcp
        ports: 22
        remote-group: admin
      - direction: egress
  admin:
    devices: [veth-b]
    members: [10.20.2.0/24, "2001:db8:20:2::/64"]
    rules:
      - direction: egress
      - direction: ingress
        family: ipv6
        protocol: icmpv6
`;

/** Each hook's own chain is named after the hook; a custom chain may not take these names. */
const HOOK_CHAINS: Record<Hook, string> = { input: 'input', forward: 'forward', output: 'output' };

const TOP_FIELDS = ['keep-established', 'sets', 'hooks', 'chains', 'security-groups'] as const;
const HOOK_FIELDS = ['policy', 'devices', 'rules'] as const;
const SET_FIELDS = ['addresses', 'ports'] as const;
const GROUP_FIELDS = ['devices', 'members', 'rules'] as const;
const GROUP_RULE_FIELDS = ['direction', 'family', 'protocol', 'ports', 'remote-cidr', 'remote-group'] as const;
const RANGE_FIELDS = ['any', 'except'] as const;
const MATCH_FIELDS = [
  'family',
  'protocol',
  'ct-state',
  'zone',
  'ct-mark',
  'ct-label',
  'packet-mark',
  'src',
  'dst',
  'sport',
  'dport',
  'icmp-type',
  'icmp-code',
  'in-dev',
  'out-dev',
  'ct-orig-src',
  'ct-orig-dst',
  'ct-orig-sport',
  'ct-orig-dport',
] as const;
const RULE_FIELDS = ['action', 'comment', ...MATCH_FIELDS] as const;
type MatchField = (typeof MATCH_FIELDS)[number];

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;
const NAME_RULE = '1 to 64 letters, digits, _ . : -, not starting with . : -';
/** Linux's IFNAMSIZ less the NUL; a trailing + makes a prefix. */
const DEVICE_RE = /^[^\s/:+]{1,15}\+?$/;

export function parseRulesFile(text: string, fileName: string): PolicyRuleSet {
  const root = readTree(text, fileName);
  if (!root) throw new UsageError(`${fileName}:1: the rules file is empty; write at least hooks:`);
  return new RulesFileReader(fileName).ruleSet(root);
}

// ---- from the tree to the model ----

type Fields<K extends string> = Partial<Record<K, TreeEntry>>;

class RulesFileReader {
  private sets = new Map<string, NamedSet>();
  private chainNames = new Set<string>();
  private groupNames = new Set<string>();

  constructor(private readonly file: string) {}

  ruleSet(root: Tree): PolicyRuleSet {
    const top = this.fields(this.map(root, 'the rules file'), TOP_FIELDS, 'at the top level');
    const rs = emptyRuleSet(HOOK_CHAINS);
    if (top['keep-established']) rs.keepEstablished = this.bool(top['keep-established'].value, 'keep-established');
    if (top.sets) this.readSets(top.sets.value);
    rs.sets = this.sets;
    const chains = top.chains ? this.map(top.chains.value, 'chains').entries : [];
    const groups = top['security-groups'] ? this.map(top['security-groups'].value, 'security-groups').entries : [];
    for (const c of chains) this.chainNames.add(this.chainName(c));
    for (const g of groups) this.groupNames.add(this.name(g, 'security group'));
    if (top.hooks) this.readHooks(top.hooks.value, rs);
    for (const c of chains) {
      const source = this.at(c.line);
      rs.chains.set(c.key, { name: c.key, rules: this.rules(c.value, `chain ${c.key}`), source });
    }
    for (const g of groups) rs.securityGroups.set(g.key, this.group(g));
    checkRuleSet(expandSecurityGroups(rs));
    return rs;
  }

  // -- generic readers --

  private at(line: number) {
    return { file: this.file, line };
  }

  private fail(line: number, message: string): never {
    throw new UsageError(`${this.file}:${line}: ${message}`);
  }

  /** Runs a value parser; its ValueError becomes a UsageError at the value's line. */
  private parseValue<T>(node: Tree, parse: (text: string) => T, what: string): T {
    const text = this.scalar(node, what);
    try {
      return parse(text);
    } catch (err) {
      if (err instanceof ValueError) this.fail(node.line, `${what}: ${err.message}`);
      throw err;
    }
  }

  private map(node: Tree, what: string): TreeMap {
    if (node.kind === 'map') return node;
    if (node.kind === 'scalar' && node.value === null) return { kind: 'map', line: node.line, entries: [] };
    return this.fail(node.line, `${what} must be a mapping of name: value; indent its keys under it`);
  }

  /** A list, or one item written without brackets; nothing written is an empty list. */
  private list(node: Tree): Tree[] {
    if (node.kind === 'seq') return node.items;
    if (node.kind === 'scalar' && node.value === null) return [];
    return [node];
  }

  private fields<K extends string>(map: TreeMap, allowed: readonly K[], where: string): Fields<K> {
    const out: Fields<K> = {};
    for (const e of map.entries) {
      if (!(allowed as readonly string[]).includes(e.key)) {
        const near = closest(e.key, allowed);
        const hint = near ? `did you mean '${near}'? ` : '';
        this.fail(e.line, `unknown field '${e.key}' ${where}; ${hint}fields here: ${allowed.join(', ')}`);
      }
      out[e.key as K] = e;
    }
    return out;
  }

  private scalar(node: Tree, what: string): string {
    if (node.kind !== 'scalar' || node.value === null) {
      this.fail(
        node.line,
        `${what} must be a single value, not ${node.kind === 'scalar' ? 'empty' : 'a ' + node.kind}`,
      );
    }
    return node.text;
  }

  private bool(node: Tree, what: string): boolean {
    if (node.kind === 'scalar' && typeof node.value === 'boolean') return node.value;
    return this.fail(node.line, `${what} must be true or false`);
  }

  private int(node: Tree, what: string, max: number): number {
    const text = this.scalar(node, what);
    if (!/^(\d+|0x[0-9a-fA-F]+)$/.test(text) || Number(text) > max) {
      this.fail(node.line, `${what} '${text}' is not a whole number from 0 to ${max}`);
    }
    return Number(text);
  }

  private oneOf<T extends string>(node: Tree, allowed: readonly T[], what: string): T {
    const text = this.scalar(node, what);
    if (!(allowed as readonly string[]).includes(text))
      this.fail(node.line, `${what} '${text}' is not ${orList(allowed)}`);
    return text as T;
  }

  private name(e: TreeEntry, what: string): string {
    if (!NAME_RE.test(e.key)) this.fail(e.line, `${what} name '${e.key}' is not ${NAME_RULE}; rename it`);
    return e.key;
  }

  private chainName(e: TreeEntry): string {
    const name = this.name(e, 'chain');
    if ((HOOKS as readonly string[]).includes(name)) {
      this.fail(e.line, `chain '${name}' is the ${name} hook's chain; put its rules under hooks: ${name}: rules:`);
    }
    return name;
  }

  // -- sets, hooks, chains --

  private readSets(node: Tree): void {
    for (const e of this.map(node, 'sets').entries) {
      const name = this.name(e, 'set');
      const f = this.fields(this.map(e.value, `set ${name}`), SET_FIELDS, `in set ${name}`);
      const source = this.at(e.line);
      if (!!f.addresses === !!f.ports) this.fail(e.line, `set ${name} needs exactly one of addresses: or ports:`);
      if (f.addresses) {
        const cidrs = this.list(f.addresses.value).map((n) =>
          this.parseValue(n, (t) => parseCidr(t, 'refuse'), 'address'),
        );
        this.sets.set(name, { kind: 'address', name, cidrs, source });
      } else if (f.ports) {
        const ports = this.list(f.ports.value).map((n) => this.portRange(n, 'port'));
        this.sets.set(name, { kind: 'port', name, ports, source });
      }
    }
  }

  private readHooks(node: Tree, rs: PolicyRuleSet): void {
    for (const e of this.map(node, 'hooks').entries) {
      if (!(HOOKS as readonly string[]).includes(e.key)) {
        this.fail(e.line, `unknown hook '${e.key}'; hooks are ${HOOKS.join(', ')}`);
      }
      const hook = e.key as Hook;
      const f = this.fields(this.map(e.value, `hook ${hook}`), HOOK_FIELDS, `in hook ${hook}`);
      const binding = rs.hooks[hook];
      binding.source = this.at(e.line);
      if (f.policy) binding.policy = this.oneOf(f.policy.value, ['accept', 'drop'] as const, 'policy');
      if (f.devices) binding.devices = this.devices(f.devices.value, 'devices');
      const chain = rs.chains.get(binding.chain);
      if (chain && f.rules) {
        chain.rules = this.rules(f.rules.value, `hook ${hook}`);
        chain.source = this.at(e.line);
      }
    }
  }

  private devices(node: Tree, what: string): string[] {
    return this.list(node).map((n) => {
      const name = this.scalar(n, what);
      if (!DEVICE_RE.test(name)) {
        this.fail(n.line, `'${name}' is not a device name (1 to 15 characters, no / : or spaces, + only last)`);
      }
      return name;
    });
  }

  private rules(node: Tree, where: string): PolicyRule[] {
    if (node.kind === 'map' || (node.kind === 'scalar' && node.value !== null)) {
      this.fail(node.line, `the rules of ${where} must be a list: start each rule with '- '`);
    }
    return this.list(node).map((n) => this.rule(n));
  }

  private rule(node: Tree): PolicyRule {
    const f = this.fields(this.map(node, 'a rule'), RULE_FIELDS, 'in a rule');
    if (!f.action)
      this.fail(node.line, 'the rule has no action; add action: accept, drop, reject, jump CHAIN or return');
    const match: RuleMatch = {};
    for (const field of MATCH_FIELDS) {
      const e = f[field];
      if (e) this.matchField(field, e.value, match);
    }
    const rule: PolicyRule = { match, action: this.action(f.action.value), source: this.at(node.line) };
    if (f.comment) rule.comment = this.scalar(f.comment.value, 'comment');
    return rule;
  }

  private matchField(field: MatchField, node: Tree, m: RuleMatch): void {
    switch (field) {
      case 'family':
        m.family = this.family(node);
        return;
      case 'protocol':
        m.proto = this.protocol(node);
        return;
      case 'ct-state':
        m.ctState = { anyOf: this.nonEmpty(node, 'ct-state').flatMap((n) => this.ctStateItems(n)) };
        return;
      case 'zone':
        m.zone = this.int(node, 'zone', 0xffff);
        return;
      case 'ct-mark':
      case 'packet-mark':
        m[field === 'ct-mark' ? 'ctMark' : 'packetMark'] = this.parseValue(node, parseMasked32, field);
        return;
      case 'ct-label':
        m.ctLabel = this.parseValue(node, parseMaskedLabel, field);
        return;
      case 'icmp-type':
      case 'icmp-code':
        m[field === 'icmp-type' ? 'icmpType' : 'icmpCode'] = this.int(node, field, 255);
        return;
      case 'in-dev':
      case 'out-dev':
        m[field === 'in-dev' ? 'inDev' : 'outDev'] = this.deviceMatch(node, field);
        return;
      default:
        this.addressOrPortField(field, node, m);
    }
  }

  private addressOrPortField(field: MatchField, node: Tree, m: RuleMatch): void {
    const address = { src: 'src', dst: 'dst', 'ct-orig-src': 'ctOrigSrc', 'ct-orig-dst': 'ctOrigDst' } as const;
    const port = {
      sport: 'sport',
      dport: 'dport',
      'ct-orig-sport': 'ctOrigSport',
      'ct-orig-dport': 'ctOrigDport',
    } as const;
    if (field in address) m[address[field as keyof typeof address]] = this.addressMatch(node, field);
    else if (field in port) m[port[field as keyof typeof port]] = this.portMatch(node, field);
  }

  private ctStateItems(node: Tree) {
    return this.parseValue(node, (t) => parseCtStateList(splitList(t)), 'ct-state').anyOf;
  }

  private family(node: Tree): Family {
    return this.oneOf(node, ['ipv4', 'ipv6'] as const, 'family') === 'ipv4' ? 4 : 6;
  }

  private protocol(node: Tree): number {
    const text = this.scalar(node, 'protocol');
    const named = (PROTOCOLS as Record<string, number>)[text];
    if (named !== undefined) return named;
    if (/^\d{1,3}$/.test(text) && Number(text) <= 255) return Number(text);
    return this.fail(node.line, `protocol '${text}' is not ${Object.keys(PROTOCOLS).join(', ')} or a number 0-255`);
  }

  private nonEmpty(node: Tree, what: string): Tree[] {
    const items = this.list(node);
    if (items.length === 0)
      this.fail(node.line, `${what}: an empty list matches nothing; list something or drop the field`);
    return items;
  }

  private addressMatch(node: Tree, what: string): AddressMatch {
    if (node.kind !== 'map')
      return { anyOf: this.nonEmpty(node, what).map((n) => this.addressItem(n, what)), except: [] };
    const f = this.fields(node, RANGE_FIELDS, `in ${what}`);
    if (!f.any && !f.except) this.fail(node.line, `${what} needs any:, except: or both`);
    return {
      anyOf: f.any ? this.nonEmpty(f.any.value, `${what} any`).map((n) => this.addressItem(n, what)) : [],
      except: f.except ? this.list(f.except.value).map((n) => this.addressItem(n, what)) : [],
    };
  }

  private addressItem(node: Tree, what: string): AddressItem {
    const text = this.scalar(node, what);
    if (text.startsWith('$')) return { set: this.setRef(node, text.slice(1), 'address') };
    return { cidr: this.parseValue(node, (t) => parseCidr(t, 'refuse'), what) };
  }

  private setRef(node: Tree, name: string, kind: NamedSet['kind']): string {
    const problem = setRefProblem(this.sets, name, kind);
    if (problem) this.fail(node.line, problem);
    return name;
  }

  private portRange(node: Tree, what: string): PortRange {
    return this.parseValue(node, parsePortRange, what);
  }

  private portMatch(node: Tree, what: string): PortMatch {
    const anyOf = this.nonEmpty(node, what).map((n): PortItem => {
      const text = this.scalar(n, what);
      if (text.startsWith('$')) return { set: this.setRef(n, text.slice(1), 'port') };
      return { range: this.portRange(n, what) };
    });
    return { anyOf };
  }

  private deviceMatch(node: Tree, what: string): DeviceMatch {
    if (node.kind !== 'map') {
      this.nonEmpty(node, what);
      return { anyOf: this.devices(node, what), except: [] };
    }
    const f = this.fields(node, RANGE_FIELDS, `in ${what}`);
    if (!f.any && !f.except) this.fail(node.line, `${what} needs any:, except: or both`);
    return {
      anyOf: f.any ? this.devices(f.any.value, what) : [],
      except: f.except ? this.devices(f.except.value, what) : [],
    };
  }

  private action(node: Tree): RuleAction {
    const text = this.scalar(node, 'action');
    const words = text.trim().split(/\s+/);
    const [verb, ...rest] = words;
    const extra = (n: number) => {
      if (rest.length > n) this.fail(node.line, `action '${text}': unexpected '${rest[n]}'; see the action syntax`);
    };
    switch (verb) {
      case 'accept':
        return this.acceptAction(node, text, rest);
      case 'drop':
      case 'return':
        extra(0);
        return { kind: verb };
      case 'reject':
        return this.rejectAction(node, text, rest);
      case 'jump': {
        extra(1);
        const chain = rest[0];
        if (!chain) this.fail(node.line, 'jump needs a chain: write jump CHAIN');
        if ((HOOKS as readonly string[]).includes(chain)) {
          this.fail(node.line, `jump to '${chain}', the ${chain} hook's chain; jump to a chain of your own instead`);
        }
        if (!this.chainNames.has(chain)) {
          this.fail(node.line, `jump to unknown chain '${chain}'; define it under chains: or fix the name`);
        }
        return { kind: 'jump', chain };
      }
      default:
        return this.fail(node.line, `unknown action '${text}'; use accept, drop, reject, jump CHAIN or return`);
    }
  }

  private rejectAction(node: Tree, text: string, rest: string[]): RuleAction {
    if (rest.length === 0) return { kind: 'reject', with: 'icmp-port-unreachable' };
    if (rest.length !== 2 || rest[0] !== 'with' || !(REJECT_WITH as readonly string[]).includes(rest[1])) {
      this.fail(node.line, `action '${text}': write reject or reject with ${REJECT_WITH.join('|')}`);
    }
    return { kind: 'reject', with: rest[1] as RejectWith };
  }

  private acceptAction(node: Tree, text: string, rest: string[]): RuleAction {
    if (rest.length === 0) return { kind: 'accept' };
    const bad = (why: string): never => this.fail(node.line, `action '${text}': ${why}`);
    if (rest[0] !== 'commit')
      bad("write accept, or accept commit followed by 'set mark=V/M', 'set label=V/M', 'helper ftp'");
    const commit: CommitSettings = {};
    for (let i = 1; i < rest.length; i += 2) {
      const [word, arg] = [rest[i], rest[i + 1]];
      if (arg === undefined) bad(`'${word}' needs a value`);
      if (word === 'helper') {
        if (commit.helper) bad('helper is given twice');
        if (!(HELPERS as readonly string[]).includes(arg)) bad(`helper '${arg}' is not ${orList(HELPERS)}`);
        commit.helper = arg as Helper;
      } else if (word === 'set' && /^(mark|label)=/.test(arg)) {
        const [key, value] = [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)];
        if (commit[key as 'mark' | 'label']) bad(`${key} is set twice`);
        try {
          if (key === 'mark') commit.mark = parseMasked32(value);
          else commit.label = parseMaskedLabel(value);
        } catch (err) {
          if (err instanceof ValueError) bad(err.message);
          throw err;
        }
      } else {
        bad(`'${word} ${arg}' is not 'set mark=V/M', 'set label=V/M' or 'helper ftp|tftp'`);
      }
    }
    return Object.keys(commit).length === 0 ? { kind: 'accept' } : { kind: 'accept', commit };
  }

  // -- security groups --

  private group(e: TreeEntry): SecurityGroup {
    const f = this.fields(this.map(e.value, `security group ${e.key}`), GROUP_FIELDS, `in security group ${e.key}`);
    const members: Cidr[] = f.members
      ? this.list(f.members.value).map((n) => this.parseValue(n, (t) => parseCidr(t, 'refuse'), 'member'))
      : [];
    return {
      name: e.key,
      devices: f.devices ? this.devices(f.devices.value, 'devices') : [],
      members,
      rules: f.rules ? this.list(f.rules.value).map((n) => this.groupRule(n, e.key)) : [],
      source: this.at(e.line),
    };
  }

  private groupRule(node: Tree, group: string): SecurityGroupRule {
    const f = this.fields(this.map(node, 'a security group rule'), GROUP_RULE_FIELDS, `in a rule of group ${group}`);
    if (!f.direction)
      this.fail(node.line, 'the security group rule has no direction; add direction: ingress or egress');
    const rule: SecurityGroupRule = {
      direction: this.oneOf(f.direction.value, ['ingress', 'egress'] as const, 'direction'),
      source: this.at(node.line),
    };
    if (f.family) rule.family = this.family(f.family.value);
    if (f.protocol) rule.proto = this.protocol(f.protocol.value);
    if (f.ports) {
      if (rule.proto === undefined || !PORT_PROTOCOLS.includes(rule.proto)) {
        this.fail(f.ports.line, 'ports need protocol tcp, udp or sctp; add protocol: to the rule');
      }
      rule.ports = this.nonEmpty(f.ports.value, 'ports').map((n) => this.portRange(n, 'ports'));
    }
    const remote = this.groupRemote(f, node);
    if (remote) rule.remote = remote;
    return rule;
  }

  private groupRemote(f: Fields<(typeof GROUP_RULE_FIELDS)[number]>, node: Tree): SecurityGroupRemote | undefined {
    const cidr = f['remote-cidr'];
    const group = f['remote-group'];
    if (cidr && group) this.fail(node.line, 'give remote-cidr or remote-group, not both; split the rule in two');
    if (cidr) {
      const items = this.nonEmpty(cidr.value, 'remote-cidr');
      return { cidrs: items.map((n) => this.parseValue(n, (t) => parseCidr(t, 'refuse'), 'remote-cidr')) };
    }
    if (!group) return undefined;
    const name = this.scalar(group.value, 'remote-group');
    if (!this.groupNames.has(name)) {
      this.fail(group.line, `remote-group '${name}' is not a security group; define it under security-groups:`);
    }
    return { group: name };
  }
}

// ---- small helpers ----

/** "NEW,ESTABLISHED" and "NEW, ESTABLISHED" both name two states. */
function splitList(text: string): string[] {
  return text.split(',').map((s) => s.trim());
}

function orList(items: readonly string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** The allowed word nearest a mistyped one (at most two edits away), for "did you mean". */
function closest(word: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of allowed) {
    const d = editDistance(word, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
