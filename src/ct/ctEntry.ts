// Connection entries of tsct_ct{4,6}_global and tsct_ct_any{4,6}_global:
// canonical keys, decoded entries, and the names users see.
import { ENUMS, STRUCTS, StructView, enumNames } from '../bpf/layouts';
import { formatAddr, parseAddr } from '../net/addr';

export type Family = 4 | 6;

/** A connection's tuple in its original direction. */
export interface CtTuple {
  family: Family;
  proto: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  zone: number;
}

export interface CtEntry {
  tuple: CtTuple;
  /** CLOCK_MONOTONIC nanoseconds, as doubles: exact for 104 days of uptime, within a few ns after. */
  createdNs: number;
  lastSeenNs: number;
  expiresNs: number;
  /** [original, reply], as Cilium's Tx and Rx. */
  packets: [number, number];
  bytes: [number, number];
  lastReportNs: [number, number];
  tcpFlagsSeen: [number, number];
  tcpState: number;
  flags: number;
  ifindex: number;
  mark: number;
  /** The 128-bit label in hex, without leading zeros ('0' when none). */
  label: string;
  revNatIndex: number;
  /** The translated address, for SNAT connections; null otherwise. */
  natAddr: string | null;
  natPort: number;
  backendId: number;
}

export const CtFlag = ENUMS.ct_entry_flag;
export const CtState = ENUMS.ct_state_bit;
export const TcpState = ENUMS.tcp_ct_state;
export const TCP_STATE_NAMES = enumNames('tcp_ct_state', 'TCP_CT_');

export function keyStruct(family: Family): 'ct4_key' | 'ct6_key' {
  return family === 4 ? 'ct4_key' : 'ct6_key';
}

function compare(a: Buffer, ap: number, b: Buffer, bp: number): number {
  const c = Buffer.compare(a, b);
  return c !== 0 ? c : ap - bp;
}

/**
 * The canonical key of a tuple, as the datapath builds it: side a is the
 * smaller (address, port). srcIsB says whether the tuple's source is side b.
 */
export function encodeCtKey(t: CtTuple): { key: Buffer; srcIsB: boolean } {
  const v = StructView.alloc(keyStruct(t.family));
  const s = parseAddr(t.src);
  const d = parseAddr(t.dst);
  const swap = compare(s, t.sport, d, t.dport) > 0;
  const [a, ap, b, bp] = swap ? [d, t.dport, s, t.sport] : [s, t.sport, d, t.dport];
  a.copy(v.bytes('addr_a'));
  b.copy(v.bytes('addr_b'));
  v.bytes('port_a').writeUInt16BE(ap);
  v.bytes('port_b').writeUInt16BE(bp);
  v.set('proto', t.proto).set('zone', t.zone);
  return { key: v.buf, srcIsB: swap };
}

// Field offsets, read once from the generated layouts: decoding runs a
// million times in a listing.
const K4 = STRUCTS.ct4_key.fields;
const K6 = STRUCTS.ct6_key.fields;
const E = STRUCTS.ct_entry.fields;

function u64n(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x100000000;
}

function addr(b: Buffer, at: number, family: Family): string {
  return family === 4 ? `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}` : formatAddr(b.subarray(at, at + 16));
}

/** The label's four host-order words, word k holding bits 32k..32k+31 (a rule's `set label` writes them so). */
function labelHex(b: Buffer, at: number): string {
  let hex = '';
  for (let k = 3; k >= 0; k--)
    hex += b
      .readUInt32LE(at + 4 * k)
      .toString(16)
      .padStart(8, '0');
  return hex.replace(/^0+/, '') || '0';
}

/** Decodes the entry whose key and value start at koff and voff: no Buffer views are made. */
export function decodeCtEntryAt(family: Family, key: Buffer, koff: number, value: Buffer, voff: number): CtEntry {
  const K = family === 4 ? K4 : K6;
  const flags = value.readUInt32LE(voff + E.flags.offset);
  const aIsOrig = !(flags & CtFlag.CT_F_ORIG_IS_B);
  const a = addr(key, koff + K.addr_a.offset, family);
  const b = addr(key, koff + K.addr_b.offset, family);
  const ap = key.readUInt16BE(koff + K.port_a.offset);
  const bp = key.readUInt16BE(koff + K.port_b.offset);
  return {
    tuple: {
      family,
      proto: key[koff + K.proto.offset],
      src: aIsOrig ? a : b,
      dst: aIsOrig ? b : a,
      sport: aIsOrig ? ap : bp,
      dport: aIsOrig ? bp : ap,
      zone: key.readUInt16LE(koff + K.zone.offset),
    },
    createdNs: u64n(value, voff + E.created_ns.offset),
    lastSeenNs: u64n(value, voff + E.last_seen_ns.offset),
    expiresNs: u64n(value, voff + E.expires_ns.offset),
    packets: [u64n(value, voff + E.packets.offset), u64n(value, voff + E.packets.offset + 8)],
    bytes: [u64n(value, voff + E.bytes.offset), u64n(value, voff + E.bytes.offset + 8)],
    lastReportNs: [u64n(value, voff + E.last_report_ns.offset), u64n(value, voff + E.last_report_ns.offset + 8)],
    tcpFlagsSeen: [value[voff + E.tcp_flags_seen.offset], value[voff + E.tcp_flags_seen.offset + 1]],
    tcpState: value[voff + E.tcp_state.offset],
    flags,
    ifindex: value.readUInt32LE(voff + E.ifindex.offset),
    mark: value.readUInt32LE(voff + E.mark.offset),
    label: labelHex(value, voff + E.label.offset),
    revNatIndex: value.readUInt16LE(voff + E.rev_nat_index.offset),
    natAddr: flags & CtFlag.CT_F_SNAT ? addr(value, voff + E.nat_addr.offset, family) : null,
    natPort: value.readUInt16BE(voff + E.nat_port.offset),
    backendId: value.readUInt32LE(voff + E.backend_id.offset),
  };
}

export function decodeCtEntry(family: Family, key: Buffer, value: Buffer): CtEntry {
  return decodeCtEntryAt(family, key, 0, value, 0);
}

/** ct_state bits as OVS prints them: +trk+est+rpl. */
export function formatCtState(state: number): string {
  const order: Array<[number, string]> = [
    [CtState.CT_STATE_TRK, 'trk'],
    [CtState.CT_STATE_NEW, 'new'],
    [CtState.CT_STATE_EST, 'est'],
    [CtState.CT_STATE_REL, 'rel'],
    [CtState.CT_STATE_RPL, 'rpl'],
    [CtState.CT_STATE_INV, 'inv'],
    [CtState.CT_STATE_SNAT, 'snat'],
    [CtState.CT_STATE_DNAT, 'dnat'],
  ];
  return (
    order
      .filter(([bit]) => state & bit)
      .map(([, n]) => `+${n}`)
      .join('') || '-trk'
  );
}
