// Masked marks and labels as `VALUE[/MASK]`, the form OVS, tc and iptables
// share: ct_mark and the packet mark are 32-bit, ct_label is 128-bit.
import { MaskedLabel, MaskedValue } from './policyRule';
import { ValueError } from './valueError';

/** `V` or `V/M`, decimal or 0x hex, at most `max`; the value may not have bits outside the mask. */
function parseMasked(text: string, max: bigint, what: string): { value: bigint; mask: bigint } {
  const [v, m, more] = text.split('/');
  const num = (s: string | undefined) =>
    s !== undefined && /^(\d+|0x[0-9a-fA-F]+)$/.test(s) && BigInt(s) <= max ? BigInt(s) : undefined;
  const value = num(v);
  const mask = m === undefined ? max : num(m);
  if (more !== undefined || value === undefined || mask === undefined) {
    throw new ValueError(`'${text}' is not a ${what} VALUE[/MASK] (decimal or 0x hex, at most 0x${max.toString(16)})`);
  }
  if ((value & ~mask) !== 0n) {
    throw new ValueError(`'${text}': the value has bits outside the mask; clear them or widen the mask`);
  }
  return { value, mask };
}

export function parseMasked32(text: string): MaskedValue {
  const { value, mask } = parseMasked(text, 0xffffffffn, '32-bit');
  return { value: Number(value), mask: Number(mask) };
}

export function parseMaskedLabel(text: string): MaskedLabel {
  return parseMasked(text, (1n << 128n) - 1n, '128-bit');
}
