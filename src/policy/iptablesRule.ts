// One iptables rule specification (what follows `-A CHAIN`) turned into a
// RuleMatch and a target, independent of the table: the filter importer reads
// its targets from it, and a nat importer would read its own.
//
// Supported: -s/-d (with !, comma lists, /len or dotted masks), -p, -i/-o
// (with !), -m tcp|udp|sctp (--sport/--dport, ranges a:b, with !), -m icmp
// --icmp-type, -m state --state, -m conntrack --ctstate/--ctorigsrc/
// --ctorigdst/--ctorigsrcport/--ctorigdstport (with !), -m multiport
// --dports/--sports (with !), -m mark --mark (the packet's mark), -m connmark
// --mark (the connection's), -m comment --comment, -j TARGET with the options
// the table lets that target take. Anything else is refused by name: a rule
// that loads with a piece missing would let through what the original drops.
// Negations become positive complements (see policyRule.ts).
import { isIPv6 } from 'node:net';
import { netmaskToPrefix, parseCidr } from './cidr';
import { complementCtState, IPTABLES_CT_STATES, parseCtStateList } from './ctState';
import { parseMasked32 } from './marks';
import { complementPorts, parseIptablesPortRange } from './ports';
import { AddressMatch, CtStateMatch, DeviceMatch, PortMatch, PortRange, PROTOCOLS, RuleMatch } from './policyRule';
import { ValueError } from './valueError';

export interface RuleSpec {
  match: RuleMatch;
  comment?: string;
  /** The -j target as written, and its options (`--reject-with` → `icmp-port-unreachable`). */
  target?: string;
  targetOptions: Map<string, string>;
}

/** The options a target takes; throws a ValueError for a target the table does not support. */
export type TargetOptions = (target: string) => readonly string[];

/** Protocol names iptables-save prints (from /etc/protocols). */
const PROTOCOL_NAMES: Readonly<Record<string, number>> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  sctp: 132,
  udplite: 136,
};

const LONG_OPTIONS: Readonly<Record<string, string>> = {
  '--source': '-s',
  '--src': '-s',
  '--destination': '-d',
  '--dst': '-d',
  '--protocol': '-p',
  '--in-interface': '-i',
  '--out-interface': '-o',
  '--match': '-m',
  '--jump': '-j',
  '--goto': '-g',
  '--fragment': '-f',
  '--source-port': '--sport',
  '--destination-port': '--dport',
  '--source-ports': '--sports',
  '--destination-ports': '--dports',
};

type Apply = (b: SpecBuilder, arg: string, negated: boolean, option: string) => void;

const portOptions: Record<string, Apply> = {
  '--sport': (b, arg, neg, opt) => b.set('sport', portMatch([arg], neg), opt),
  '--dport': (b, arg, neg, opt) => b.set('dport', portMatch([arg], neg), opt),
};

/** The options of each supported match module. */
const MODULES: Readonly<Record<string, Readonly<Record<string, Apply>>>> = {
  tcp: portOptions,
  udp: portOptions,
  sctp: portOptions,
  icmp: { '--icmp-type': (b, arg, neg, opt) => b.icmpType(arg, neg, opt) },
  state: { '--state': (b, arg, neg, opt) => b.ctState(arg, neg, opt, ['SNAT', 'DNAT']) },
  conntrack: {
    '--ctstate': (b, arg, neg, opt) => b.ctState(arg, neg, opt, []),
    '--ctorigsrc': (b, arg, neg, opt) => b.set('ctOrigSrc', addressMatch(arg, neg), opt),
    '--ctorigdst': (b, arg, neg, opt) => b.set('ctOrigDst', addressMatch(arg, neg), opt),
    '--ctorigsrcport': (b, arg, neg, opt) => b.set('ctOrigSport', portMatch([arg], neg), opt),
    '--ctorigdstport': (b, arg, neg, opt) => b.set('ctOrigDport', portMatch([arg], neg), opt),
  },
  multiport: {
    '--sports': (b, arg, neg, opt) => b.set('sport', portMatch(arg.split(','), neg), opt),
    '--dports': (b, arg, neg, opt) => b.set('dport', portMatch(arg.split(','), neg), opt),
  },
  mark: {
    '--mark': (b, arg, neg, opt) =>
      b.set(
        'packetMark',
        notNegated(neg, opt, () => parseMasked32(arg)),
        opt,
      ),
  },
  connmark: {
    '--mark': (b, arg, neg, opt) =>
      b.set(
        'ctMark',
        notNegated(neg, opt, () => parseMasked32(arg)),
        opt,
      ),
  },
  comment: { '--comment': (b, arg, neg, opt) => b.setComment(notNegated(neg, opt, () => arg)) },
};

/** The protocol each module needs (-m tcp needs -p tcp); multiport needs one with ports. */
const MODULE_PROTOCOLS: Readonly<Record<string, readonly number[]>> = {
  tcp: [PROTOCOLS.tcp],
  udp: [PROTOCOLS.udp],
  sctp: [PROTOCOLS.sctp],
  icmp: [PROTOCOLS.icmp],
  multiport: [PROTOCOLS.tcp, PROTOCOLS.udp, PROTOCOLS.sctp],
};

/** Options of supported modules that are not supported, named with their module for the message. */
const UNSUPPORTED_OPTIONS: Readonly<Record<string, string>> = {
  '--syn': 'tcp',
  '--tcp-flags': 'tcp',
  '--tcp-option': 'tcp',
  '--ctproto': 'conntrack',
  '--ctstatus': 'conntrack',
  '--ctexpire': 'conntrack',
  '--ctdir': 'conntrack',
  '--ctreplsrc': 'conntrack',
  '--ctrepldst': 'conntrack',
  '--ctreplsrcport': 'conntrack',
  '--ctrepldstport': 'conntrack',
  '--ports': 'multiport',
};

/** ICMP type names iptables knows, as type or type/code. */
const ICMP_TYPES: Readonly<Record<string, string>> = {
  'echo-reply': '0',
  pong: '0',
  'destination-unreachable': '3',
  'network-unreachable': '3/0',
  'host-unreachable': '3/1',
  'protocol-unreachable': '3/2',
  'port-unreachable': '3/3',
  'fragmentation-needed': '3/4',
  'source-quench': '4',
  redirect: '5',
  'echo-request': '8',
  ping: '8',
  'router-advertisement': '9',
  'router-solicitation': '10',
  'time-exceeded': '11',
  'ttl-zero-during-transit': '11/0',
  'parameter-problem': '12',
  'timestamp-request': '13',
  'timestamp-reply': '14',
};

const DEVICE_RE = /^[^\s/:+]{1,15}\+?$/;

function notNegated<T>(negated: boolean, option: string, value: () => T): T {
  if (negated) throw new ValueError(`'! ${option}' (a negated ${option}) is not supported; rewrite the rule without !`);
  return value();
}

export function parseRuleSpec(words: readonly string[], targetOptions: TargetOptions): RuleSpec {
  const b = new SpecBuilder(targetOptions);
  let i = 0;
  while (i < words.length) {
    const negated = words[i] === '!';
    if (negated) i++;
    const option = LONG_OPTIONS[words[i]] ?? words[i];
    if (option === undefined) throw new ValueError("'!' ends the rule; put it before the option it negates");
    if (!option.startsWith('-')) throw new ValueError(`unexpected '${option}'; an option (-s, -m, -j, ...) goes here`);
    b.refuseWithoutValue(option);
    const arg = words[i + 1];
    if (arg === undefined || arg === '!') throw new ValueError(`option ${option} needs a value`);
    b.option(option, arg, negated);
    i += 2;
  }
  return b.finish();
}

class SpecBuilder {
  readonly match: RuleMatch = { family: 4 };
  private comment?: string;
  private target?: string;
  private targetTakes: readonly string[] = [];
  private readonly targetArgs = new Map<string, string>();
  /** Loaded match modules, the latest last: an option belongs to the latest module that has it. */
  private readonly modules: string[] = [];

  constructor(private readonly targetOptions: TargetOptions) {}

  refuseWithoutValue(option: string): void {
    if (option === '-f') throw new ValueError('the fragment match -f is not supported; remove it');
    const module = UNSUPPORTED_OPTIONS[option];
    if (module) throw new ValueError(`option ${option} of -m ${module} is not supported; remove it`);
  }

  option(option: string, arg: string, negated: boolean): void {
    switch (option) {
      case '-s':
      case '-d':
        this.set(option === '-s' ? 'src' : 'dst', addressMatch(arg, negated), option);
        return;
      case '-p':
        this.set(
          'proto',
          notNegated(negated, option, () => protocol(arg)),
          option,
        );
        return;
      case '-i':
      case '-o':
        this.set(option === '-i' ? 'inDev' : 'outDev', deviceMatch(arg, negated), option);
        return;
      case '-m':
        notNegated(negated, option, () => this.loadModule(arg));
        return;
      case '-j':
        notNegated(negated, option, () => this.setTarget(arg));
        return;
      case '-g':
        throw new ValueError(`goto (-g ${arg}) is not supported; use -j ${arg} where a return after it is harmless`);
      default:
        this.moduleOption(option, arg, negated);
    }
  }

  private loadModule(name: string): void {
    if (!MODULES[name]) {
      throw new ValueError(
        `match '-m ${name}' is not supported (only ${Object.keys(MODULES).join(', ')}); ` +
          'remove the rule or write it in the rules file',
      );
    }
    this.modules.push(name);
  }

  private setTarget(name: string): void {
    if (this.target !== undefined) throw new ValueError(`a second target -j ${name}; a rule has one`);
    this.targetTakes = this.targetOptions(name);
    this.target = name;
  }

  private moduleOption(option: string, arg: string, negated: boolean): void {
    if (this.targetTakes.includes(option)) {
      if (this.targetArgs.has(option)) throw new ValueError(`${option} is given twice`);
      notNegated(negated, option, () => this.targetArgs.set(option, arg));
      return;
    }
    // -p tcp makes tcp's options usable without -m tcp, as iptables does.
    const implicit = Object.entries(PROTOCOL_NAMES).find(([, n]) => n === this.match.proto)?.[0];
    const candidates = [...this.modules].reverse().concat(implicit && MODULES[implicit] ? [implicit] : []);
    const module = candidates.find((m) => MODULES[m][option]);
    if (!module) {
      const where = this.target ? ` (nor of target ${this.target})` : '';
      throw new ValueError(`option ${option} is not one of a loaded match${where}; it is not supported here`);
    }
    MODULES[module][option](this, arg, negated, option);
  }

  set<K extends keyof RuleMatch>(key: K, value: RuleMatch[K], option: string): void {
    if (this.match[key] !== undefined) {
      throw new ValueError(`${option} matches what an earlier option of this rule already matches; keep one`);
    }
    if (value !== undefined) this.match[key] = value;
  }

  setComment(text: string): void {
    if (this.comment !== undefined) throw new ValueError('a second --comment; a rule has one');
    this.comment = text;
  }

  /** --state and --ctstate may both appear: the rule needs both, so their terms are ANDed. */
  ctState(arg: string, negated: boolean, option: string, refused: readonly string[]): void {
    const names = arg.split(',');
    for (const name of names) {
      const upper = name.toUpperCase();
      if (!IPTABLES_CT_STATES[upper] || refused.includes(upper)) {
        const allowed = Object.keys(IPTABLES_CT_STATES).filter((s) => !refused.includes(s));
        throw new ValueError(`${option}: '${name}' is not a state; use ${allowed.join(', ')}`);
      }
    }
    const parsed = parseCtStateList(names);
    const m = negated ? complementCtState(parsed) : parsed;
    this.match.ctState = this.match.ctState ? andCtState(this.match.ctState, m) : m;
  }

  icmpType(arg: string, negated: boolean, option: string): void {
    notNegated(negated, option, () => undefined);
    if (arg === 'any') return;
    const text = ICMP_TYPES[arg] ?? arg;
    const [type, code, more] = text.split('/');
    const byte = (s: string | undefined) =>
      s !== undefined && /^\d{1,3}$/.test(s) && Number(s) <= 255 ? Number(s) : NaN;
    if (more !== undefined || Number.isNaN(byte(type)) || (code !== undefined && Number.isNaN(byte(code)))) {
      throw new ValueError(`--icmp-type '${arg}' is not TYPE[/CODE] or a known name like echo-request`);
    }
    this.set('icmpType', byte(type), option);
    if (code !== undefined) this.set('icmpCode', byte(code), option);
  }

  finish(): RuleSpec {
    for (const module of this.modules) {
      const needs = MODULE_PROTOCOLS[module];
      if (needs && !needs.includes(this.match.proto ?? -1)) {
        const names = needs.map((n) => Object.keys(PROTOCOL_NAMES).find((k) => PROTOCOL_NAMES[k] === n));
        throw new ValueError(`-m ${module} needs -p ${names.join(' or -p ')}; add it before -m ${module}`);
      }
    }
    const spec: RuleSpec = { match: this.match, targetOptions: this.targetArgs };
    if (this.comment !== undefined) spec.comment = this.comment;
    if (this.target !== undefined) spec.target = this.target;
    return spec;
  }
}

function andCtState(a: CtStateMatch, b: CtStateMatch): CtStateMatch {
  const anyOf = a.anyOf.flatMap((x) =>
    b.anyOf.map((y) => ({ set: x.set | y.set, clear: x.clear | y.clear })).filter((t) => (t.set & t.clear) === 0),
  );
  return { anyOf };
}

function protocol(text: string): number | undefined {
  const lower = text.toLowerCase();
  if (lower === 'all' || lower === '0') return undefined;
  const named = PROTOCOL_NAMES[lower];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(text) && Number(text) <= 255) return Number(text);
  throw new ValueError(`-p '${text}' is not a protocol name iptables-save prints or a number 0-255`);
}

/** ADDR, ADDR/LEN or ADDR/DOTTED-MASK, or a comma list of them. */
function addressMatch(text: string, negated: boolean): AddressMatch {
  const items = text.split(',');
  if (negated && items.length > 1) {
    throw new ValueError(`'! ${text}': a negated address takes one address, as in iptables; split the rule`);
  }
  const cidrs = items.map((item) => ({ cidr: parseIptablesAddress(item) }));
  return negated ? { anyOf: [], except: cidrs } : { anyOf: cidrs, except: [] };
}

function parseIptablesAddress(text: string): ReturnType<typeof parseCidr> {
  const [addr, mask] = text.split('/');
  if (isIPv6(addr)) throw new ValueError(`'${text}' is IPv6; iptables is IPv4 only (ip6tables-save is not imported)`);
  if (mask !== undefined && mask.includes('.')) {
    const prefix = netmaskToPrefix(mask);
    if (prefix === undefined) {
      throw new ValueError(`'${text}': the mask ${mask} is not a prefix (its ones are not contiguous); not supported`);
    }
    return parseCidr(`${addr}/${prefix}`, 'clear');
  }
  if (!/^[\d./]+$/.test(text)) throw new ValueError(`'${text}' is not an IPv4 address (host names are not resolved)`);
  return parseCidr(text, 'clear');
}

function portMatch(items: readonly string[], negated: boolean): PortMatch {
  const ranges: PortRange[] = items.map(parseIptablesPortRange);
  return { anyOf: (negated ? complementPorts(ranges) : ranges).map((range) => ({ range })) };
}

function deviceMatch(name: string, negated: boolean): DeviceMatch {
  if (!DEVICE_RE.test(name)) throw new ValueError(`'${name}' is not a device name`);
  return negated ? { anyOf: [], except: [name] } : { anyOf: [name], except: [] };
}
