// ct_state matches: OVS's `+flag-flag` terms and iptables' state names, both
// onto the same bits, and the complement that `! --ctstate` needs.
//
// iptables' names are mapped by what nf_conntrack reports, not one flag each:
// OVS sets `rel` on every packet of a related connection, while iptables calls
// a related connection's packets RELATED only until its reply is seen (then
// ESTABLISHED) and never NEW. So NEW is +trk+new-rel and RELATED is
// +trk+rel-est; with plain +trk+new and +trk+rel an imported `--ctstate NEW -j
// DROP` ahead of `--ctstate RELATED -j ACCEPT` would drop FTP data connections
// that iptables passes.
import { CT_STATE_ALL, CT_STATE_BITS, CtFlag, CtStateMatch, CtStateTerm } from './policyRule';
import { ValueError } from './valueError';

const { new: NEW, est: EST, rel: REL, rpl: RPL, inv: INV, trk: TRK, snat: SNAT, dnat: DNAT } = CT_STATE_BITS;

export const IPTABLES_CT_STATES: Readonly<Record<string, CtStateTerm>> = {
  NEW: { set: TRK | NEW, clear: REL },
  ESTABLISHED: { set: TRK | EST, clear: 0 },
  RELATED: { set: TRK | REL, clear: EST },
  INVALID: { set: INV, clear: 0 },
  UNTRACKED: { set: 0, clear: TRK },
  SNAT: { set: SNAT, clear: 0 },
  DNAT: { set: DNAT, clear: 0 },
};

/** The order flags are printed in: trk first, as OVS flows are usually written. */
const PRINT_ORDER: readonly CtFlag[] = ['trk', 'new', 'est', 'rel', 'rpl', 'inv', 'snat', 'dnat'];

const FLAG_NAMES = Object.keys(CT_STATE_BITS).join(', ');

/** Parses one OVS term such as `+trk+est-rel`. */
export function parseOvsCtState(text: string): CtStateTerm {
  if (!/^([+-][a-z]+)+$/.test(text)) {
    throw new ValueError(
      `'${text}' is not +flag-flag terms; write it like +trk+est or +trk-new (flags: ${FLAG_NAMES})`,
    );
  }
  const term = { set: 0, clear: 0 };
  for (const [, sign, name] of text.matchAll(/([+-])([a-z]+)/g)) {
    const bit = (CT_STATE_BITS as Record<string, number>)[name];
    if (bit === undefined) throw new ValueError(`'${text}': unknown flag '${name}'; flags are ${FLAG_NAMES}`);
    if ((term.set | term.clear) & bit) throw new ValueError(`'${text}' names '${name}' twice; keep one`);
    if (sign === '+') term.set |= bit;
    else term.clear |= bit;
  }
  const impossible = impossibleReason(term);
  if (impossible) throw new ValueError(`'${text}' never matches: ${impossible}; drop the rule or fix the flags`);
  return term;
}

/** Why no packet can have this state (OVS's rules on which flags go together), or undefined. */
function impossibleReason(t: CtStateTerm): string | undefined {
  if (t.clear & TRK && t.set) return 'an untracked packet (-trk) carries no other flag';
  if (t.set & NEW && t.set & EST) return 'new and est exclude each other';
  if (t.set & NEW && t.set & RPL) return 'new and rpl exclude each other';
  if (t.set & INV && t.set & ~(INV | TRK)) return 'an invalid packet carries no flag but trk';
  return undefined;
}

/** Parses one item: an OVS term (starts with + or -) or an iptables state name, in any case. */
export function parseCtStateItem(text: string): CtStateTerm {
  if (text.startsWith('+') || text.startsWith('-')) return parseOvsCtState(text);
  const term = IPTABLES_CT_STATES[text.toUpperCase()];
  if (!term) {
    const names = Object.keys(IPTABLES_CT_STATES).join(', ');
    throw new ValueError(`unknown connection state '${text}'; use ${names} or an OVS term like +trk+est`);
  }
  return { ...term };
}

/** An OR of items, e.g. iptables' `NEW,ESTABLISHED` split at the commas. */
export function parseCtStateList(items: readonly string[]): CtStateMatch {
  if (items.length === 0) throw new ValueError('empty ct_state list; name at least one state');
  return { anyOf: items.map(parseCtStateItem) };
}

export function ctStateTermMatches(term: CtStateTerm, state: number): boolean {
  return (state & term.set) === term.set && (state & term.clear) === 0;
}

export function ctStateMatches(match: CtStateMatch, state: number): boolean {
  return match.anyOf.some((t) => ctStateTermMatches(t, state));
}

/**
 * The states `match` does not match, as terms again (for `! --ctstate`): De Morgan turns the OR of
 * ANDs into an AND of ORs of single flags, multiplied back out; with 8 bits it stays small.
 */
export function complementCtState(match: CtStateMatch): CtStateMatch {
  let product: CtStateTerm[] = [{ set: 0, clear: 0 }];
  for (const term of match.anyOf) {
    const negated = singleFlagNegation(term);
    const next: CtStateTerm[] = [];
    for (const p of product) {
      for (const n of negated) {
        const t = { set: p.set | n.set, clear: p.clear | n.clear };
        if ((t.set & t.clear) === 0) next.push(t);
      }
    }
    product = withoutSubsumed(next);
  }
  return { anyOf: product };
}

/** NOT (+a+b-c) = -a OR -b OR +c. */
function singleFlagNegation(term: CtStateTerm): CtStateTerm[] {
  const out: CtStateTerm[] = [];
  for (let bit = 1; bit <= CT_STATE_ALL; bit <<= 1) {
    if (term.set & bit) out.push({ set: 0, clear: bit });
    if (term.clear & bit) out.push({ set: bit, clear: 0 });
  }
  return out;
}

/** Drops terms implied by a more general one (fewer constraints) and duplicates. */
function withoutSubsumed(terms: CtStateTerm[]): CtStateTerm[] {
  const general = (a: CtStateTerm, b: CtStateTerm) => (a.set & ~b.set) === 0 && (a.clear & ~b.clear) === 0;
  return terms.filter((t, i) => !terms.some((u, j) => j !== i && general(u, t) && (!general(t, u) || j < i)));
}

export function formatCtStateTerm(term: CtStateTerm): string {
  let out = '';
  for (const flag of PRINT_ORDER) {
    const bit = CT_STATE_BITS[flag];
    if (term.set & bit) out += `+${flag}`;
    else if (term.clear & bit) out += `-${flag}`;
  }
  return out === '' ? 'any' : out;
}

/** A packet's state bits as OVS prints them (+trk+est+rpl); 0 is an untracked packet. */
export function formatCtStateBits(state: number): string {
  return state === 0 ? '-trk (untracked)' : formatCtStateTerm({ set: state, clear: 0 });
}

export function formatCtState(match: CtStateMatch): string {
  return match.anyOf.length === 0 ? 'none' : match.anyOf.map(formatCtStateTerm).join(',');
}
