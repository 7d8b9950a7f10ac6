// One rule's match against one packet: the reference semantics the BPF
// classifier must reproduce. A check answers why the packet does not match
// (for trace steps) or undefined when it does.
import { isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../errors';
import { parseAddr } from '../net/addr';
import { cidrContains } from './cidr';
import { ctStateMatches, formatCtState, formatCtStateBits } from './ctState';
import { inRange } from './ports';
import {
  AddressItem,
  AddressMatch,
  DeviceMatch,
  Family,
  MaskedValue,
  NamedSet,
  PortMatch,
  RuleMatch,
} from './policyRule';
import {
  formatAddressMatch,
  formatDeviceMatch,
  formatMasked,
  formatMaskedLabel,
  formatPortMatch,
  formatProto,
} from './ruleFormat';

/** What the classifier knows of a packet when it judges it. */
export interface PolicyPacket {
  family: Family;
  src: string;
  dst: string;
  /** IP protocol number. */
  proto: number;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  inDev?: string;
  outDev?: string;
  /** ct_state bits (CT_STATE_BITS). */
  ctState: number;
  /** The connection's zone, mark and label; 0 when absent. */
  zone?: number;
  mark?: number;
  label?: bigint;
  /** The connection's original-direction tuple; absent for an untracked packet. */
  origSrc?: string;
  origDst?: string;
  origSport?: number;
  origDport?: number;
  /** skb->mark; 0 when absent. */
  packetMark?: number;
}

/** A packet with its addresses parsed once. */
export interface PreparedPacket {
  packet: PolicyPacket;
  src: Buffer;
  dst: Buffer;
  origSrc?: Buffer;
  origDst?: Buffer;
}

export type SetLookup = ReadonlyMap<string, NamedSet>;

export function preparePacket(packet: PolicyPacket): PreparedPacket {
  return {
    packet,
    src: addrOfFamily('src', packet.src, packet.family),
    dst: addrOfFamily('dst', packet.dst, packet.family),
    origSrc: packet.origSrc === undefined ? undefined : addrOfFamily('origSrc', packet.origSrc, packet.family),
    origDst: packet.origDst === undefined ? undefined : addrOfFamily('origDst', packet.origDst, packet.family),
  };
}

function addrOfFamily(field: string, text: string, family: Family): Buffer {
  const ok = family === 4 ? isIPv4(text) : isIPv6(text);
  if (!ok)
    throw new UsageError(`packet ${field} '${text}' is not an IPv${family} address; give one of the packet's family`);
  return parseAddr(text);
}

/** Why the packet fails the match, or undefined when every field holds. */
export function matchFailure(m: RuleMatch, pp: PreparedPacket, sets: SetLookup): string | undefined {
  const p = pp.packet;
  if (m.family !== undefined && m.family !== p.family) return `family ipv${p.family} is not ipv${m.family}`;
  if (m.proto !== undefined && m.proto !== p.proto) {
    return `protocol ${formatProto(p.proto)} is not ${formatProto(m.proto)}`;
  }
  if (m.ctState && !ctStateMatches(m.ctState, p.ctState)) {
    return `ct_state ${formatCtStateBits(p.ctState)} is not ${formatCtState(m.ctState)}`;
  }
  if (m.zone !== undefined && m.zone !== (p.zone ?? 0)) return `zone ${p.zone ?? 0} is not ${m.zone}`;
  return (
    maskedFailure('ct_mark', m.ctMark, p.mark ?? 0) ??
    labelFailure(m, p.label ?? 0n) ??
    maskedFailure('packet mark', m.packetMark, p.packetMark ?? 0) ??
    deviceFailure('in-dev', m.inDev, p.inDev) ??
    deviceFailure('out-dev', m.outDev, p.outDev) ??
    addressFailure('src', m.src, pp.src, p.src, sets) ??
    addressFailure('dst', m.dst, pp.dst, p.dst, sets) ??
    portFailure('sport', m.sport, p.sport, sets) ??
    portFailure('dport', m.dport, p.dport, sets) ??
    icmpFailure(m, p) ??
    addressFailure('ct-orig-src', m.ctOrigSrc, pp.origSrc, p.origSrc, sets) ??
    addressFailure('ct-orig-dst', m.ctOrigDst, pp.origDst, p.origDst, sets) ??
    portFailure('ct-orig-sport', m.ctOrigSport, p.origSport, sets) ??
    portFailure('ct-orig-dport', m.ctOrigDport, p.origDport, sets)
  );
}

function maskedFailure(name: string, m: MaskedValue | undefined, value: number): string | undefined {
  if (!m || (value & m.mask) >>> 0 === m.value) return undefined;
  return `${name} 0x${(value >>> 0).toString(16)} is not ${formatMasked(m)}`;
}

function labelFailure(m: RuleMatch, label: bigint): string | undefined {
  if (!m.ctLabel || (label & m.ctLabel.mask) === m.ctLabel.value) return undefined;
  return `ct_label 0x${label.toString(16)} is not ${formatMaskedLabel(m.ctLabel)}`;
}

export function deviceNameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function deviceFailure(field: string, m: DeviceMatch | undefined, name: string | undefined): string | undefined {
  if (!m) return undefined;
  if (name === undefined) return `the packet has no ${field}`;
  const listed = m.anyOf.length === 0 || m.anyOf.some((pat) => deviceNameMatches(pat, name));
  if (listed && !m.except.some((pat) => deviceNameMatches(pat, name))) return undefined;
  return `${field} ${name} is not ${formatDeviceMatch(m)}`;
}

function inAddressItem(item: AddressItem, addr: Buffer, sets: SetLookup): boolean {
  if ('cidr' in item) return cidrContains(item.cidr, addr);
  const set = namedSet(sets, item.set, 'address');
  return set.kind === 'address' && set.cidrs.some((c) => cidrContains(c, addr));
}

function addressFailure(
  field: string,
  m: AddressMatch | undefined,
  addr: Buffer | undefined,
  text: string | undefined,
  sets: SetLookup,
): string | undefined {
  if (!m) return undefined;
  if (!addr) return `the packet has no ${field}`;
  const listed = m.anyOf.length === 0 || m.anyOf.some((item) => inAddressItem(item, addr, sets));
  if (listed && !m.except.some((item) => inAddressItem(item, addr, sets))) return undefined;
  return `${field} ${text} is not in ${formatAddressMatch(m)}`;
}

function portFailure(field: string, m: PortMatch | undefined, port: number | undefined, sets: SetLookup) {
  if (!m) return undefined;
  if (port === undefined) return `the packet has no ${field}`;
  const hit = m.anyOf.some((item) => {
    if ('range' in item) return inRange(item.range, port);
    const set = namedSet(sets, item.set, 'port');
    return set.kind === 'port' && set.ports.some((r) => inRange(r, port));
  });
  return hit ? undefined : `${field} ${port} is not in ${formatPortMatch(m)}`;
}

function icmpFailure(m: RuleMatch, p: PolicyPacket): string | undefined {
  if (m.icmpType !== undefined && m.icmpType !== p.icmpType) return `icmp type ${p.icmpType} is not ${m.icmpType}`;
  if (m.icmpCode !== undefined && m.icmpCode !== p.icmpCode) return `icmp code ${p.icmpCode} is not ${m.icmpCode}`;
  return undefined;
}

/** Rule sets are checked before they are evaluated, so a missing set here is a bug, not a user's mistake. */
function namedSet(sets: SetLookup, name: string, kind: NamedSet['kind']): NamedSet {
  const set = sets.get(name);
  if (!set || set.kind !== kind) throw new Error(`policy: no ${kind} set '${name}' (the rule set was not checked)`);
  return set;
}
