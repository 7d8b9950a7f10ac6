// Crafting packets for tests and benchmarks: Ethernet frames carrying IPv4 or
// IPv6 (with extension headers and fragments) and TCP, UDP, ICMP or ICMPv6,
// with correct checksums; and checking the checksums of a frame, independently
// of the datapath.
import { familyOf, parseAddr } from '../src/net/addr';

export const PROTO = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  hopopts: 0,
  routing: 43,
  fragment: 44,
  dstopts: 60,
  none: 59,
} as const;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
export const ETH_HLEN = 14;

const TCP_FLAG_BITS: Record<string, number> = {
  F: 0x01,
  S: 0x02,
  R: 0x04,
  P: 0x08,
  A: 0x10,
  U: 0x20,
  E: 0x40,
  C: 0x80,
};

/** 'SA' -> SYN|ACK; a number passes through. */
export function tcpFlags(f: string | number): number {
  if (typeof f === 'number') return f;
  let v = 0;
  for (const c of f) {
    const bit = TCP_FLAG_BITS[c];
    if (bit === undefined) throw new Error(`unknown TCP flag letter '${c}' (use F S R P A U E C)`);
    v |= bit;
  }
  return v;
}

export type L4Spec =
  | {
      tcp: {
        sport: number;
        dport: number;
        flags: string | number;
        seq?: number;
        ack?: number;
        window?: number;
        payload?: Buffer;
        doff?: number;
      };
    }
  | { udp: { sport: number; dport: number; payload?: Buffer; zeroChecksum?: boolean } }
  /**
   * ICMP for IPv4, ICMPv6 for IPv6. For errors, `payload` is the offending IP
   * packet; rest is the 4 bytes after the checksum.
   */
  | { icmp: { type: number; code?: number; id?: number; seq?: number; rest?: number; payload?: Buffer } }
  | { raw: { proto: number; data: Buffer } };

export interface IpSpec {
  src: string;
  dst: string;
  l4: L4Spec;
  ttl?: number;
  /** IPv4 identification. */
  id?: number;
  /** IPv6 extension headers before the L4 header, in order. */
  ext?: Array<{ type: number; data?: Buffer }>;
}

export function checksum(...parts: Buffer[]): number {
  let sum = 0;
  for (const b of parts) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length % 2) sum += b[b.length - 1] << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudoHeader(src: Buffer, dst: Buffer, proto: number, len: number): Buffer {
  if (src.length === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = proto;
    p.writeUInt16BE(len, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(len, 32);
  p[39] = proto;
  return p;
}

function l4Proto(l4: L4Spec, v6: boolean): number {
  if ('tcp' in l4) return PROTO.tcp;
  if ('udp' in l4) return PROTO.udp;
  if ('icmp' in l4) return v6 ? PROTO.icmpv6 : PROTO.icmp;
  return l4.raw.proto;
}

/** The L4 header and payload with its checksum over the pseudo-header. */
function buildL4(l4: L4Spec, src: Buffer, dst: Buffer): Buffer {
  const v6 = src.length === 16;
  if ('raw' in l4) return l4.raw.data;
  let seg: Buffer;
  let csumAt: number;
  if ('tcp' in l4) {
    const t = l4.tcp;
    const payload = t.payload ?? Buffer.alloc(0);
    const doff = t.doff ?? 5;
    const hlen = Math.max(doff, 5) * 4;
    seg = Buffer.alloc(hlen + payload.length);
    seg.writeUInt16BE(t.sport, 0);
    seg.writeUInt16BE(t.dport, 2);
    seg.writeUInt32BE((t.seq ?? 1000) >>> 0, 4);
    seg.writeUInt32BE((t.ack ?? 0) >>> 0, 8);
    seg[12] = (doff & 0xf) << 4;
    seg[13] = tcpFlags(t.flags);
    seg.writeUInt16BE(t.window ?? 65535, 14);
    payload.copy(seg, hlen);
    csumAt = 16;
  } else if ('udp' in l4) {
    const u = l4.udp;
    const payload = u.payload ?? Buffer.alloc(0);
    seg = Buffer.alloc(8 + payload.length);
    seg.writeUInt16BE(u.sport, 0);
    seg.writeUInt16BE(u.dport, 2);
    seg.writeUInt16BE(seg.length, 4);
    payload.copy(seg, 8);
    if (u.zeroChecksum && !v6) return seg;
    csumAt = 6;
  } else {
    const c = l4.icmp;
    const payload = c.payload ?? Buffer.alloc(0);
    seg = Buffer.alloc(8 + payload.length);
    seg[0] = c.type;
    seg[1] = c.code ?? 0;
    if (c.rest !== undefined) seg.writeUInt32BE(c.rest >>> 0, 4);
    else {
      seg.writeUInt16BE(c.id ?? 0, 4);
      seg.writeUInt16BE(c.seq ?? 0, 6);
    }
    payload.copy(seg, 8);
    // ICMPv4 has no pseudo-header; ICMPv6 does.
    seg.writeUInt16BE(v6 ? checksum(pseudoHeader(src, dst, PROTO.icmpv6, seg.length), seg) : checksum(seg), 2);
    return seg;
  }
  const proto = l4Proto(l4, v6);
  let sum = checksum(pseudoHeader(src, dst, proto, seg.length), seg);
  if (proto === PROTO.udp && sum === 0) sum = 0xffff;
  seg.writeUInt16BE(sum, csumAt);
  return seg;
}

/** An IPv4 header for a payload. */
export function ipv4Header(o: {
  src: Buffer;
  dst: Buffer;
  proto: number;
  payloadLen: number;
  ttl?: number;
  id?: number;
  fragOffset?: number;
  moreFragments?: boolean;
}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + o.payloadLen, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE(((o.fragOffset ?? 0) >> 3) | (o.moreFragments ? 0x2000 : 0), 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  o.src.copy(h, 12);
  o.dst.copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return h;
}

function extHeader(type: number, next: number, data?: Buffer): Buffer {
  if (type === PROTO.fragment) {
    const f = Buffer.alloc(8);
    f[0] = next;
    (data ?? Buffer.alloc(6)).copy(f, 2, 0, 6);
    return f;
  }
  // Length in 8-byte units beyond the first 8 bytes.
  const body = data ?? Buffer.alloc(6);
  const len = Math.ceil((body.length + 2) / 8) * 8;
  const h = Buffer.alloc(len);
  h[0] = next;
  h[1] = len / 8 - 1;
  body.copy(h, 2);
  return h;
}

/** An IP packet (no Ethernet header). */
export function ipPacket(spec: IpSpec): Buffer {
  const src = parseAddr(spec.src);
  const dst = parseAddr(spec.dst);
  if (src.length !== dst.length) throw new Error(`mixed families: ${spec.src} -> ${spec.dst}`);
  const v6 = src.length === 16;
  const l4 = buildL4(spec.l4, src, dst);
  const proto = l4Proto(spec.l4, v6);
  if (!v6)
    return Buffer.concat([ipv4Header({ src, dst, proto, payloadLen: l4.length, ttl: spec.ttl, id: spec.id }), l4]);
  const ext = spec.ext ?? [];
  const exts = ext.map((e, i) => extHeader(e.type, i + 1 < ext.length ? ext[i + 1].type : proto, e.data));
  const payload = Buffer.concat([...exts, l4]);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = ext.length ? ext[0].type : proto;
  h[7] = spec.ttl ?? 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

export function ethernet(ip: Buffer, opts: { ethertype?: number; src?: string; dst?: string } = {}): Buffer {
  const h = Buffer.alloc(ETH_HLEN);
  Buffer.from((opts.dst ?? '02:00:00:00:00:02').split(':').map((x) => parseInt(x, 16))).copy(h, 0);
  Buffer.from((opts.src ?? '02:00:00:00:00:01').split(':').map((x) => parseInt(x, 16))).copy(h, 6);
  const v = ip.length ? ip[0] >> 4 : 4;
  h.writeUInt16BE(opts.ethertype ?? (v === 6 ? ETH_P_IPV6 : ETH_P_IP), 12);
  return Buffer.concat([h, ip]);
}

/** A whole frame. */
export function frame(spec: IpSpec): Buffer {
  return ethernet(ipPacket(spec));
}

/**
 * Splits an IPv4 packet into fragments of at most `size` payload bytes
 * (a multiple of 8), as a router would.
 */
export function fragment4(ip: Buffer, size: number): Buffer[] {
  const ihl = (ip[0] & 0xf) * 4;
  const payload = ip.subarray(ihl);
  const src = ip.subarray(12, 16);
  const dst = ip.subarray(16, 20);
  const out: Buffer[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, off + size);
    const more = off + size < payload.length;
    out.push(
      Buffer.concat([
        ipv4Header({
          src,
          dst,
          proto: ip[9],
          payloadLen: part.length,
          ttl: ip[8],
          id: ip.readUInt16BE(4),
          fragOffset: off,
          moreFragments: more,
        }),
        part,
      ]),
    );
  }
  return out;
}

/** Splits an IPv6 packet (no extension headers) into fragments with a Fragment header. */
export function fragment6(ip: Buffer, size: number, id = 0xabcd): Buffer[] {
  const next = ip[6];
  const payload = ip.subarray(40);
  const out: Buffer[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, off + size);
    const more = off + size < payload.length;
    const fh = Buffer.alloc(8);
    fh[0] = next;
    fh.writeUInt16BE(off | (more ? 1 : 0), 2);
    fh.writeUInt32BE(id, 4);
    const h = Buffer.from(ip.subarray(0, 40));
    h[6] = PROTO.fragment;
    h.writeUInt16BE(8 + part.length, 4);
    out.push(Buffer.concat([h, fh, part]));
  }
  return out;
}

/**
 * Checks every checksum of a frame: the IPv4 header, and TCP, UDP (zero on
 * IPv4 means none), ICMP or ICMPv6 of an unfragmented packet, including the
 * inner headers of ICMP errors as far as they are present. Returns the
 * problems found (empty when all verify).
 */
export function verifyChecksums(frameBuf: Buffer): string[] {
  const problems: string[] = [];
  const ip = frameBuf.subarray(ETH_HLEN);
  const v = ip[0] >> 4;
  let src: Buffer;
  let dst: Buffer;
  let proto: number;
  let l4: Buffer;
  if (v === 4) {
    const ihl = (ip[0] & 0xf) * 4;
    if (checksum(ip.subarray(0, ihl)) !== 0) problems.push('IPv4 header checksum');
    src = ip.subarray(12, 16);
    dst = ip.subarray(16, 20);
    proto = ip[9];
    if (ip.readUInt16BE(6) & 0x3fff) return problems; // a fragment: no full L4 to check
    l4 = ip.subarray(ihl, ip.readUInt16BE(2));
  } else {
    src = ip.subarray(8, 24);
    dst = ip.subarray(24, 40);
    proto = ip[6];
    l4 = ip.subarray(40, 40 + ip.readUInt16BE(4));
  }
  if (
    proto === PROTO.tcp ||
    (proto === PROTO.udp && !(v === 4 && l4.readUInt16BE(6) === 0)) ||
    proto === PROTO.icmpv6
  ) {
    if (checksum(pseudoHeader(src, dst, proto, l4.length), l4) !== 0)
      problems.push(`${proto === PROTO.tcp ? 'TCP' : proto === PROTO.udp ? 'UDP' : 'ICMPv6'} checksum`);
  } else if (proto === PROTO.icmp) {
    if (checksum(l4) !== 0) problems.push('ICMP checksum');
  }
  // An ICMP error quotes an IP packet: its IPv4 header is complete and must verify.
  const isError =
    (proto === PROTO.icmp && [3, 11, 12].includes(l4[0])) || (proto === PROTO.icmpv6 && l4[0] >= 1 && l4[0] <= 4);
  if (isError && l4.length >= 28 && l4[8] >> 4 === 4) {
    const ihl = (l4[8] & 0xf) * 4;
    if (l4.length >= 8 + ihl && checksum(l4.subarray(8, 8 + ihl)) !== 0) problems.push('inner IPv4 header checksum');
  }
  return problems;
}

export { familyOf };
