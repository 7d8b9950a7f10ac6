// Filters for `tsct bpf ct list` and `flush`: each option narrows the set;
// all must match. Parsed once, with one-line errors for what does not parse.
import { CtEntry, CtFlag, TCP_STATE_NAMES } from './ctEntry';
import { UsageError } from '../errors';
import { parseAddr, formatAddr } from '../net/addr';

export interface CtFilterOptions {
  src?: string;
  dst?: string;
  /** Either end. */
  host?: string;
  sport?: string;
  dport?: string;
  /** Either end. */
  port?: string;
  proto?: string;
  family?: string;
  zone?: string;
  /** TCP state name, e.g. ESTABLISHED or TIME_WAIT. */
  state?: string;
  /** ct_state-style flags: +est, -est+snat, +new... */
  ctState?: string;
}

export type CtFilter = (e: CtEntry) => boolean;

const PROTOS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };

/** An address filter in canonical form, so that it compares equal to decoded entries. */
export function canonicalAddr(flag: string, text: string): string {
  try {
    return formatAddr(parseAddr(text));
  } catch {
    throw new UsageError(`--${flag}: '${text}' is not an IPv4 or IPv6 address`);
  }
}

export function port(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535)
    throw new UsageError(`--${flag}: '${text}' is not a port (0 to 65535)`);
  return Number(text);
}

export function proto(text: string): number {
  const p = /^\d+$/.test(text) ? Number(text) : PROTOS[text.toLowerCase()];
  if (p === undefined || p > 255)
    throw new UsageError(`--proto: '${text}' is not a protocol; use tcp, udp, icmp, icmpv6 or a number`);
  return p;
}

export function family(text: string): 4 | 6 {
  const f = text.replace(/^ipv/i, '');
  if (f !== '4' && f !== '6') throw new UsageError(`--family: '${text}' is not 4 or 6`);
  return f === '4' ? 4 : 6;
}

const CT_STATE_TEST: Record<string, (e: CtEntry) => boolean> = {
  new: (e) => !(e.flags & CtFlag.CT_F_SEEN_REPLY),
  est: (e) => Boolean(e.flags & CtFlag.CT_F_SEEN_REPLY),
  assured: (e) => Boolean(e.flags & CtFlag.CT_F_ASSURED),
  snat: (e) => Boolean(e.flags & CtFlag.CT_F_SNAT),
  dnat: (e) => Boolean(e.flags & CtFlag.CT_F_DNAT),
  closing: (e) => Boolean(e.flags & (CtFlag.CT_F_RX_CLOSING | CtFlag.CT_F_TX_CLOSING)),
};

export function parseCtFilter(o: CtFilterOptions): CtFilter {
  const tests: CtFilter[] = [];
  if (o.src) {
    const a = canonicalAddr('src', o.src);
    tests.push((e) => e.tuple.src === a);
  }
  if (o.dst) {
    const a = canonicalAddr('dst', o.dst);
    tests.push((e) => e.tuple.dst === a);
  }
  if (o.host) {
    const a = canonicalAddr('host', o.host);
    tests.push((e) => e.tuple.src === a || e.tuple.dst === a);
  }
  if (o.sport) {
    const p = port('sport', o.sport);
    tests.push((e) => e.tuple.sport === p);
  }
  if (o.dport) {
    const p = port('dport', o.dport);
    tests.push((e) => e.tuple.dport === p);
  }
  if (o.port) {
    const p = port('port', o.port);
    tests.push((e) => e.tuple.sport === p || e.tuple.dport === p);
  }
  if (o.proto) {
    const p = proto(o.proto);
    tests.push((e) => e.tuple.proto === p);
  }
  if (o.family) {
    const f = family(o.family);
    tests.push((e) => e.tuple.family === f);
  }
  if (o.zone) {
    if (!/^\d+$/.test(o.zone) || Number(o.zone) > 65535)
      throw new UsageError(`--zone: '${o.zone}' is not a zone (0 to 65535)`);
    const z = Number(o.zone);
    tests.push((e) => e.tuple.zone === z);
  }
  if (o.state) {
    const want = o.state.toUpperCase();
    if (![...TCP_STATE_NAMES.values()].includes(want)) {
      throw new UsageError(
        `--state: '${o.state}' is not a TCP state; use one of ${[...TCP_STATE_NAMES.values()].filter((n) => !/MAX|INVALID|IGNORE|NONE/.test(n)).join(', ')}`,
      );
    }
    tests.push((e) => e.tuple.proto === 6 && TCP_STATE_NAMES.get(e.tcpState) === want);
  }
  if (o.ctState) {
    const terms = o.ctState.match(/[+-][a-z]+/g);
    if (!terms || terms.join('') !== o.ctState.replace(/\s/g, '')) {
      throw new UsageError(
        `--ct-state: '${o.ctState}' does not parse; write flags like +est, +new or -est+snat (flags: ${Object.keys(CT_STATE_TEST).join(', ')})`,
      );
    }
    for (const term of terms) {
      const test = CT_STATE_TEST[term.slice(1)];
      if (!test)
        throw new UsageError(
          `--ct-state: unknown flag '${term.slice(1)}'; flags: ${Object.keys(CT_STATE_TEST).join(', ')}`,
        );
      tests.push(term[0] === '+' ? test : (e) => !test(e));
    }
  }
  return (e) => tests.every((t) => t(e));
}
