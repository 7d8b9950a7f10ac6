// IPv4/IPv6 prefixes of the policy model: parse (strictly for the rules file,
// clearing host bits for iptables, which does so itself), test and print.
import { isIPv4, isIPv6 } from 'node:net';
import { formatAddr, parseAddr } from '../net/addr';
import { Cidr, Family } from './policyRule';
import { ValueError } from './valueError';

export type HostBits = 'refuse' | 'clear';

/** Parses `ADDR/LEN` or a bare address (a /32 or /128). */
export function parseCidr(text: string, hostBits: HostBits): Cidr {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const family = familyOrThrow(text, addrText);
  const max = family === 4 ? 32 : 128;
  const prefix = slash < 0 ? max : parsePrefix(text, text.slice(slash + 1), max);
  const bytes = parseAddr(addrText);
  const network = maskBytes(bytes, prefix);
  if (hostBits === 'refuse' && !network.equals(bytes)) {
    throw new ValueError(`'${text}' has host bits set; write ${formatAddr(network)}/${prefix}`);
  }
  return { family, addr: formatAddr(network), prefix };
}

function familyOrThrow(text: string, addrText: string): Family {
  if (isIPv4(addrText)) return 4;
  if (isIPv6(addrText) && !addrText.includes('%')) return 6;
  throw new ValueError(`'${text}' is not an address or prefix; write it like 10.0.0.0/8 or 2001:db8::/32`);
}

function parsePrefix(text: string, lenText: string, max: number): number {
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new ValueError(`'${text}': prefix length '${lenText}' is not 0 to ${max}`);
  }
  return Number(lenText);
}

/**
 * Converts a dotted IPv4 netmask (iptables-save prints one for a mask that is not a prefix) to a
 * prefix length; a mask with holes has none.
 */
export function netmaskToPrefix(mask: string): number | undefined {
  if (!isIPv4(mask)) return undefined;
  const bits = parseAddr(mask).readUInt32BE(0);
  const prefix = 32 - Math.log2((~bits >>> 0) + 1);
  return Number.isInteger(prefix) ? prefix : undefined;
}

function maskBytes(bytes: Buffer, prefix: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/** The network bytes of each prefix, parsed once: a set of 10,000 prefixes is scanned per packet in a trace. */
const networkCache = new WeakMap<Cidr, Buffer>();

function networkOf(cidr: Cidr): Buffer {
  let net = networkCache.get(cidr);
  if (!net) {
    net = parseAddr(cidr.addr);
    networkCache.set(cidr, net);
  }
  return net;
}

/** Whether the address (4 or 16 network-order bytes) is inside the prefix; another family never is. */
export function cidrContains(cidr: Cidr, addr: Buffer): boolean {
  const net = networkOf(cidr);
  if (net.length !== addr.length) return false;
  const whole = cidr.prefix >> 3;
  for (let i = 0; i < whole; i++) if (net[i] !== addr[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (net[whole] & mask) === (addr[whole] & mask);
}

export function formatCidr(cidr: Cidr): string {
  return `${cidr.addr}/${cidr.prefix}`;
}
