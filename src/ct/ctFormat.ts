// How connections print: Cilium's `bpf ct list` line, conntrack-tools'
// `conntrack -L` line, and one JSON object per line.
import { CtEntry, CtFlag, TCP_STATE_NAMES } from './ctEntry';

const PROTO_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function protoName(p: number): string {
  return PROTO_NAMES[p] ?? `Proto(${p})`;
}

/** Flag names in bit order, Cilium's first. */
const FLAG_NAMES: Array<[number, string]> = [
  [CtFlag.CT_F_RX_CLOSING, 'RxClosing'],
  [CtFlag.CT_F_TX_CLOSING, 'TxClosing'],
  [CtFlag.CT_F_SEEN_NON_SYN, 'SeenNonSyn'],
  [CtFlag.CT_F_SEEN_REPLY, 'SeenReply'],
  [CtFlag.CT_F_ASSURED, 'Assured'],
  [CtFlag.CT_F_SNAT, 'SNAT'],
  [CtFlag.CT_F_DNAT, 'DNAT'],
  [CtFlag.CT_F_PICKED_UP, 'PickedUp'],
  [CtFlag.CT_F_SERVICE, 'Service'],
];

export function flagNames(flags: number): string[] {
  return FLAG_NAMES.filter(([bit]) => flags & bit).map(([, n]) => n);
}

const sec = (ns: number) => Math.floor(ns / 1e9);
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// Flags=0x.... [ names ] for each flags value seen: a handful of distinct values per listing.
const flagsText = new Map<number, string>();

function flagsPart(flags: number): string {
  let text = flagsText.get(flags);
  if (text === undefined) {
    const names = flagNames(flags);
    text = `Flags=0x${flags.toString(16).padStart(4, '0')} [ ${names.join(' ')}${names.length ? ' ' : ''}]`;
    flagsText.set(flags, text);
  }
  return text;
}
const hostPort = (family: 4 | 6, addr: string, port: number) =>
  family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;

/** Cilium's column: IN or OUT for a connection, SVC for a load-balanced connection's service entry. */
export function direction(e: CtEntry): 'IN' | 'OUT' | 'SVC' {
  if (e.flags & CtFlag.CT_F_SERVICE) return 'SVC';
  return e.flags & CtFlag.CT_F_EGRESS ? 'OUT' : 'IN';
}

export function tcpStateName(e: CtEntry): string {
  return e.tuple.proto === 6 ? (TCP_STATE_NAMES.get(e.tcpState) ?? String(e.tcpState)) : '-';
}

/** Cilium's `cilium bpf ct list global` line, then tsct's own fields. */
export function formatCilium(e: CtEntry): string {
  const t = e.tuple;
  return (
    `${protoName(t.proto)} ${direction(e)} ${hostPort(t.family, t.src, t.sport)} -> ${hostPort(t.family, t.dst, t.dport)} ` +
    `expires=${sec(e.expiresNs)} ` +
    `RxPackets=${e.packets[1]} RxBytes=${e.bytes[1]} RxFlagsSeen=0x${HEX2[e.tcpFlagsSeen[1]]} LastRxReport=${sec(e.lastReportNs[1])} ` +
    `TxPackets=${e.packets[0]} TxBytes=${e.bytes[0]} TxFlagsSeen=0x${HEX2[e.tcpFlagsSeen[0]]} LastTxReport=${sec(e.lastReportNs[0])} ` +
    `${flagsPart(e.flags)} ` +
    `RevNAT=${e.revNatIndex} SourceSecurityID=0 IfIndex=${e.ifindex} BackendID=${e.backendId} ` +
    `State=${tcpStateName(e)} Zone=${t.zone} Mark=0x${e.mark.toString(16)} Label=0x${e.label}`
  );
}

/** A service's address and port, as a load-balanced connection's client dialled it. */
export interface ServiceAddr {
  addr: string;
  port: number;
}

/**
 * A line as `conntrack -L` prints it. nowNs is the monotonic clock, for the
 * remaining timeout. For a load-balanced connection (its entry is keyed by
 * the backend), `service` is what the client dialled: the original tuple's
 * destination, as conntrack shows a DNATed connection.
 */
export function formatConntrack(e: CtEntry, nowNs: number, service?: ServiceAddr | null): string {
  const t = e.tuple;
  const name = protoName(t.proto).toLowerCase();
  const left = e.expiresNs > nowNs ? Math.floor((e.expiresNs - nowNs) / 1e9) : 0;
  const icmp = t.proto === 1 || t.proto === 58;
  const l4 = (sport: number, dport: number, reply: boolean) => {
    if (icmp) {
      const type = t.proto === 1 ? (reply ? 0 : 8) : reply ? 129 : 128;
      // An echo's id is both of its "ports": the reply's is the translated one.
      return `type=${type} code=0 id=${reply ? dport : sport}`;
    }
    return t.proto === 6 || t.proto === 17 || t.proto === 132 ? `sport=${sport} dport=${dport}` : '';
  };
  const snat = e.flags & CtFlag.CT_F_SNAT;
  const replyDst = snat && e.natAddr ? e.natAddr : t.src;
  const replyDport = snat ? e.natPort : t.sport;
  const origDst = service?.addr ?? t.dst;
  const origDport = service?.port ?? t.dport;
  const parts = [
    t.proto === 6 ? tcpStateName(e) : '',
    `src=${t.src} dst=${origDst} ${l4(t.sport, origDport, false)} packets=${e.packets[0]} bytes=${e.bytes[0]}`,
    e.flags & CtFlag.CT_F_SEEN_REPLY ? '' : '[UNREPLIED]',
    `src=${t.dst} dst=${replyDst} ${l4(t.dport, replyDport, true)} packets=${e.packets[1]} bytes=${e.bytes[1]}`,
    e.flags & CtFlag.CT_F_ASSURED ? '[ASSURED]' : '',
    `mark=${e.mark}`,
    t.zone ? `zone=${t.zone}` : '',
    'use=1',
  ];
  // conntrack's own layout: the L4 name padded to 8 columns, then single spaces.
  return `${name.padEnd(8)} ${t.proto} ${left} ` + parts.filter(Boolean).join(' ').replace(/ +/g, ' ');
}

export function toJson(e: CtEntry, nowNs: number): Record<string, unknown> {
  const t = e.tuple;
  return {
    family: t.family === 4 ? 'ipv4' : 'ipv6',
    proto: protoName(t.proto),
    protoNumber: t.proto,
    direction: direction(e),
    src: t.src,
    dst: t.dst,
    sport: t.sport,
    dport: t.dport,
    zone: t.zone,
    state: tcpStateName(e),
    established: Boolean(e.flags & CtFlag.CT_F_SEEN_REPLY),
    expiresInS: e.expiresNs > nowNs ? Math.floor((e.expiresNs - nowNs) / 1e9) : 0,
    ageS: Math.floor((nowNs - e.createdNs) / 1e9),
    txPackets: e.packets[0],
    txBytes: e.bytes[0],
    rxPackets: e.packets[1],
    rxBytes: e.bytes[1],
    txFlagsSeen: e.tcpFlagsSeen[0],
    rxFlagsSeen: e.tcpFlagsSeen[1],
    flags: flagNames(e.flags),
    ifindex: e.ifindex,
    mark: e.mark,
    label: e.label,
  };
}
