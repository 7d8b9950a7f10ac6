// Port numbers and inclusive port ranges: the rules file writes a range as
// `8000-8099`, iptables as `8000:8099` (with `:N` and `N:` for open ends).
import { PortRange } from './policyRule';
import { ValueError } from './valueError';

export const MAX_PORT = 65535;

export function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > MAX_PORT) {
    throw new ValueError(`'${text}' is not a port; use a number from 0 to ${MAX_PORT}`);
  }
  return Number(text);
}

/** `N` or `A-B` (the rules file). */
export function parsePortRange(text: string): PortRange {
  const dash = text.indexOf('-');
  if (dash < 0) {
    const port = parsePort(text);
    return { from: port, to: port };
  }
  return orderedRange(text, parsePort(text.slice(0, dash)), parsePort(text.slice(dash + 1)));
}

/** `N`, `A:B`, `:B` or `A:` (iptables). */
export function parseIptablesPortRange(text: string): PortRange {
  const colon = text.indexOf(':');
  if (colon < 0) {
    const port = parsePort(text);
    return { from: port, to: port };
  }
  const from = colon === 0 ? 0 : parsePort(text.slice(0, colon));
  const to = colon === text.length - 1 ? MAX_PORT : parsePort(text.slice(colon + 1));
  return orderedRange(text, from, to);
}

function orderedRange(text: string, from: number, to: number): PortRange {
  if (from > to) throw new ValueError(`port range '${text}' runs backwards; write the lower port first`);
  return { from, to };
}

/** The ports in none of the ranges (for iptables' `! --dport`). */
export function complementPorts(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: PortRange[] = [];
  let next = 0;
  for (const r of sorted) {
    if (r.from > next) out.push({ from: next, to: r.from - 1 });
    next = Math.max(next, r.to + 1);
  }
  if (next <= MAX_PORT) out.push({ from: next, to: MAX_PORT });
  return out;
}

export function inRange(range: PortRange, port: number): boolean {
  return port >= range.from && port <= range.to;
}

export function formatPortRange(range: PortRange): string {
  return range.from === range.to ? `${range.from}` : `${range.from}-${range.to}`;
}
