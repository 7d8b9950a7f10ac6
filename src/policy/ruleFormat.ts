// Text for matches and actions, in the rules file's own words, for trace steps,
// error messages and `tsct policy list`.
import { formatCidr } from './cidr';
import { formatCtState } from './ctState';
import { formatPortRange } from './ports';
import {
  AddressItem,
  AddressMatch,
  DeviceMatch,
  MaskedLabel,
  MaskedValue,
  PortItem,
  PortMatch,
  PROTOCOLS,
  RuleAction,
  RuleMatch,
} from './policyRule';

export function formatAddressItem(item: AddressItem): string {
  return 'set' in item ? `$${item.set}` : formatCidr(item.cidr);
}

export function formatAddressMatch(m: AddressMatch): string {
  const any = m.anyOf.length === 0 ? 'any' : m.anyOf.map(formatAddressItem).join(',');
  return m.except.length === 0 ? any : `${any} except ${m.except.map(formatAddressItem).join(',')}`;
}

export function formatPortItem(item: PortItem): string {
  return 'set' in item ? `$${item.set}` : formatPortRange(item.range);
}

export function formatPortMatch(m: PortMatch): string {
  return m.anyOf.length === 0 ? 'none' : m.anyOf.map(formatPortItem).join(',');
}

export function formatDeviceMatch(m: DeviceMatch): string {
  const any = m.anyOf.length === 0 ? 'any' : m.anyOf.join(',');
  return m.except.length === 0 ? any : `${any} except ${m.except.join(',')}`;
}

export function formatMasked(m: MaskedValue): string {
  return `0x${m.value.toString(16)}/0x${m.mask.toString(16)}`;
}

export function formatMaskedLabel(m: MaskedLabel): string {
  return `0x${m.value.toString(16)}/0x${m.mask.toString(16)}`;
}

export function formatProto(proto: number): string {
  const name = Object.entries(PROTOCOLS).find(([, n]) => n === proto)?.[0];
  return name ?? String(proto);
}

/** `field=value` pairs for every field the match sets, in the order the classifier tests them. */
export function formatMatch(m: RuleMatch): string {
  const parts: string[] = [];
  const add = (name: string, value: string | undefined) => {
    if (value !== undefined) parts.push(`${name}=${value}`);
  };
  add('family', m.family === undefined ? undefined : `ipv${m.family}`);
  add('protocol', m.proto === undefined ? undefined : formatProto(m.proto));
  add('ct-state', m.ctState && formatCtState(m.ctState));
  add('zone', m.zone?.toString());
  add('ct-mark', m.ctMark && formatMasked(m.ctMark));
  add('ct-label', m.ctLabel && formatMaskedLabel(m.ctLabel));
  add('packet-mark', m.packetMark && formatMasked(m.packetMark));
  add('in-dev', m.inDev && formatDeviceMatch(m.inDev));
  add('out-dev', m.outDev && formatDeviceMatch(m.outDev));
  add('src', m.src && formatAddressMatch(m.src));
  add('dst', m.dst && formatAddressMatch(m.dst));
  add('sport', m.sport && formatPortMatch(m.sport));
  add('dport', m.dport && formatPortMatch(m.dport));
  add('icmp-type', m.icmpType?.toString());
  add('icmp-code', m.icmpCode?.toString());
  add('ct-orig-src', m.ctOrigSrc && formatAddressMatch(m.ctOrigSrc));
  add('ct-orig-dst', m.ctOrigDst && formatAddressMatch(m.ctOrigDst));
  add('ct-orig-sport', m.ctOrigSport && formatPortMatch(m.ctOrigSport));
  add('ct-orig-dport', m.ctOrigDport && formatPortMatch(m.ctOrigDport));
  return parts.length === 0 ? 'all' : parts.join(' ');
}

/** The action in the rules file's `action:` syntax. */
export function formatAction(a: RuleAction): string {
  switch (a.kind) {
    case 'accept': {
      if (!a.commit) return 'accept';
      const c = a.commit;
      const parts = ['accept commit'];
      if (c.mark) parts.push(`set mark=${formatMasked(c.mark)}`);
      if (c.label) parts.push(`set label=${formatMaskedLabel(c.label)}`);
      if (c.helper) parts.push(`helper ${c.helper}`);
      return parts.join(' ');
    }
    case 'reject':
      return `reject with ${a.with}`;
    case 'jump':
      return `jump ${a.chain}`;
    default:
      return a.kind;
  }
}
