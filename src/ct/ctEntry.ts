// Connection entries of tsct_ct{4,6}_global and tsct_ct_any{4,6}_global:
// canonical keys, decoded entries, and the names users see.
import { ENUMS, StructView, enumNames } from '../bpf/layouts';
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
  createdNs: bigint;
  lastSeenNs: bigint;
  expiresNs: bigint;
  /** [original, reply], as Cilium's Tx and Rx. */
  packets: [number, number];
  bytes: [number, number];
  lastReportNs: [bigint, bigint];
  tcpFlagsSeen: [number, number];
  tcpState: number;
  flags: number;
  ifindex: number;
  mark: number;
  label: Buffer;
  revNatIndex: number;
  natAddr: Buffer;
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

export function decodeCtEntry(family: Family, key: Buffer, value: Buffer): CtEntry {
  const k = new StructView(keyStruct(family), key);
  const e = new StructView('ct_entry', value);
  const a = { addr: formatAddr(Buffer.from(k.bytes('addr_a'))), port: k.bytes('port_a').readUInt16BE() };
  const b = { addr: formatAddr(Buffer.from(k.bytes('addr_b'))), port: k.bytes('port_b').readUInt16BE() };
  const flags = e.u('flags');
  const [orig, reply] = flags & CtFlag.CT_F_ORIG_IS_B ? [b, a] : [a, b];
  return {
    tuple: { family, proto: k.u('proto'), src: orig.addr, dst: reply.addr, sport: orig.port, dport: reply.port, zone: k.u('zone') },
    createdNs: e.u64('created_ns'),
    lastSeenNs: e.u64('last_seen_ns'),
    expiresNs: e.u64('expires_ns'),
    packets: [e.u('packets', 0), e.u('packets', 1)],
    bytes: [e.u('bytes', 0), e.u('bytes', 1)],
    lastReportNs: [e.u64('last_report_ns', 0), e.u64('last_report_ns', 1)],
    tcpFlagsSeen: [e.u('tcp_flags_seen', 0), e.u('tcp_flags_seen', 1)],
    tcpState: e.u('tcp_state'),
    flags,
    ifindex: e.u('ifindex'),
    mark: e.u('mark'),
    label: Buffer.from(e.bytes('label')),
    revNatIndex: e.u('rev_nat_index'),
    natAddr: Buffer.from(e.bytes('nat_addr')),
    natPort: e.bytes('nat_port').readUInt16BE(),
    backendId: e.u('backend_id'),
  };
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
  return order.filter(([bit]) => state & bit).map(([, n]) => `+${n}`).join('') || '-trk';
}
