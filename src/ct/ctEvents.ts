// Connection events from tsct_events, printed as `conntrack -E` prints them.
import { ENUMS, STRUCTS } from '../bpf/layouts';
import { formatAddr } from '../net/addr';
import { CtEntry, CtFlag, Family } from './ctEntry';
import { formatConntrack, flagNames, protoName } from './ctFormat';

const F = STRUCTS.ct_event.fields;
const T = ENUMS.ct_event_type;
export const EVENT_NAMES: Record<number, string> = {
  [T.CT_EVENT_NEW]: 'NEW',
  [T.CT_EVENT_UPDATE]: 'UPDATE',
  [T.CT_EVENT_DESTROY]: 'DESTROY',
};

export interface CtEvent {
  type: 'NEW' | 'UPDATE' | 'DESTROY';
  tsNs: number;
  timeoutS: number;
  entry: CtEntry;
}

const u64 = (b: Buffer, at: number) => b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x100000000;

export function decodeEvent(b: Buffer): CtEvent {
  const family = b[F.family.offset] as Family;
  const len = family === 4 ? 4 : 16;
  const ts = u64(b, F.ts_ns.offset);
  const timeoutS = b.readUInt32LE(F.timeout_s.offset);
  return {
    type: (EVENT_NAMES[b[F.type.offset]] ?? 'UPDATE') as CtEvent['type'],
    tsNs: ts,
    timeoutS,
    entry: {
      tuple: {
        family,
        proto: b[F.proto.offset],
        src: formatAddr(b.subarray(F.src.offset, F.src.offset + len)),
        dst: formatAddr(b.subarray(F.dst.offset, F.dst.offset + len)),
        sport: b.readUInt16BE(F.sport.offset),
        dport: b.readUInt16BE(F.dport.offset),
        zone: b.readUInt16LE(F.zone.offset),
      },
      createdNs: ts,
      lastSeenNs: ts,
      expiresNs: ts + timeoutS * 1e9,
      packets: [u64(b, F.packets.offset), u64(b, F.packets.offset + 8)],
      bytes: [u64(b, F.bytes.offset), u64(b, F.bytes.offset + 8)],
      lastReportNs: [ts, ts],
      tcpFlagsSeen: [0, 0],
      tcpState: b[F.tcp_state.offset],
      flags: b.readUInt32LE(F.flags.offset),
      ifindex: 0,
      mark: 0,
      label: '0',
      revNatIndex: 0,
      natAddr:
        b.readUInt32LE(F.flags.offset) & CtFlag.CT_F_SNAT
          ? formatAddr(b.subarray(F.nat_addr.offset, F.nat_addr.offset + len))
          : null,
      natPort: b.readUInt16BE(F.nat_port.offset),
      backendId: 0,
    },
  };
}

/** `conntrack -E` line: "[NEW] tcp 6 120 SYN_SENT src=... [UNREPLIED] src=...". */
export function formatEvent(ev: CtEvent): string {
  let line = formatConntrack(ev.entry, ev.tsNs);
  if (ev.type === 'DESTROY') line = line.replace(/^(\S+ +\d+) \d+ /, '$1 '); // no timeout on a destroyed connection
  if (ev.type !== 'DESTROY') line = line.replace(/ packets=\d+ bytes=\d+/g, ''); // conntrack -E shows counters only at the end
  return `${`[${ev.type}]`.padStart(9)} ${line.replace(/ use=1$/, '')}`;
}

export function eventToJson(ev: CtEvent): Record<string, unknown> {
  const t = ev.entry.tuple;
  return {
    type: ev.type,
    proto: protoName(t.proto),
    family: t.family === 4 ? 'ipv4' : 'ipv6',
    src: t.src,
    dst: t.dst,
    sport: t.sport,
    dport: t.dport,
    zone: t.zone,
    timeoutS: ev.timeoutS,
    txPackets: ev.entry.packets[0],
    txBytes: ev.entry.bytes[0],
    rxPackets: ev.entry.packets[1],
    rxBytes: ev.entry.bytes[1],
    flags: flagNames(ev.entry.flags),
  };
}
