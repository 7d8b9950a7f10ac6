// The names of the datapath's reasons (enum tsct_reason, through BTF), and
// what kind of count each is. Free of the binding, so that unit tests and
// formatting code can use it without loading the addon.
import { enumNames } from '../bpf/layouts';

/** REASON_CT_NEW -> CT_NEW. */
export const REASON_NAMES = enumNames('tsct_reason', 'REASON_');

export type ReasonKind = 'drop' | 'invalid' | 'event';

/** A reason's kind, from its name: DROP_* drops, INV_* invalid packets, the rest events of normal work. */
export function reasonKind(name: string): ReasonKind {
  if (name.startsWith('DROP_')) return 'drop';
  if (name.startsWith('INV_')) return 'invalid';
  return 'event';
}
