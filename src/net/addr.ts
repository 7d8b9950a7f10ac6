import { isIPv4, isIPv6 } from 'node:net';

/** Parses an IPv4 or IPv6 address to its 4 or 16 network-order bytes; throws a one-line Error when it is not one. */
export function parseAddr(text: string): Buffer {
  if (isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!isIPv6(text)) throw new Error(`'${text}' is not an IPv4 or IPv6 address`);
  let s = text;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Formats 4 or 16 network-order bytes; IPv6 in RFC 5952 form (longest zero run compressed). */
export function formatAddr(buf: Buffer): string {
  if (buf.length === 4) return `${buf[0]}.${buf[1]}.${buf[2]}.${buf[3]}`;
  // IPv4-mapped: the dotted tail, as RFC 5952 section 5 recommends and inet_ntop prints.
  if (buf.subarray(0, 10).every((b) => b === 0) && buf.readUInt16BE(10) === 0xffff) {
    return `::ffff:${buf[12]}.${buf[13]}.${buf[14]}.${buf[15]}`;
  }
  const g = Array.from({ length: 8 }, (_, i) => buf.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function familyOf(text: string): 4 | 6 {
  if (isIPv4(text)) return 4;
  if (isIPv6(text)) return 6;
  throw new Error(`'${text}' is not an IPv4 or IPv6 address`);
}
