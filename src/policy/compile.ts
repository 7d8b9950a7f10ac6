// Compiles a flattened policy into the classifier tables the BPF datapath
// looks a new connection's packet up in, so that classifying it is not a walk
// over the rules (bpf-iptables' "linear bit-vector search", Miano et al. 2019).
//
// THE ALGORITHM the tables serve (classify.ts emulates it step by step):
//
//   1. Per indexed field one lookup gives a vector id; vector v's bit i says
//      "rule i allows this packet's value of this field".
//   2. The vectors are ANDed word by word, but only over the intersection of
//      their non-zero word ranges [lo, hi]: a packet whose source matches one
//      /32 rule gets a one-word source vector, so the AND touches one word
//      whether the hook has 10 rules or 10,000.
//   3. The first set bit is a candidate; its residual checks (the fields not
//      indexed) decide. On a mismatch the bit is cleared and the search goes
//      on; a matched skip (what a return becomes) continues the search at rule
//      skipTo; any other matched rule decides. No candidate left: the policy.
//
//   The ranges bound the AND only while the rules a field's value allows sit
//   close together. A rule in every vector of a field (keep-established's rule
//   0, a catch-all drop at the end, as security groups expand) stretches every
//   range of it, and the words between are scanned: 157 of 157 words for
//   10,000 such rules (policy-compile.test.ts measures it).
//
// GENERATIONS. Every key holds a generation bit g (0/1): a new rule set is
// written beside the live one (compilePolicy's `generation`), then one write
// of the active generation swaps it in, and the old one's entries are deleted
// after. LPM and hash keys carry g as a field; the array maps hold both
// generations, local index x of generation g at g * CAPACITY + x with the
// capacities below. The active generation itself lives outside these tables.
//
// HOOKS are numbered input 0, forward 1, output 2 (HOOK_INDEX), h below.
// Every multi-byte field of an LPM key is big-endian (the trie compares bytes
// in order); other structs are host order. The tables, as the BPF side lays
// them out (compiledSizes counts their bytes from these layouts):
//
// hooks: array [g * 3 + h] of struct fw_hook (20 bytes) {
//     u32 n_rules;        rules R[0..n_rules) of this hook (≤ MAX_RULES)
//     u16 words;          W = ceil(n_rules / 64): every vector's hi < W
//     u8  policy;         POLICY: 0 accept, 1 drop, when no rule decides
//     u8  judge_all;      1: every packet is judged; 0: only packets whose device (input: in, output: out,
//                         forward: either) is in `judged`; the others pass unjudged (accepted)
//     u32 fields;         FIELD bits of the lookups to make: a field whose every vector is the
//                         hook's vector of all its rules is not looked up and has no entries
//     u32 in_dev_other;   vector of an in-device absent from `devices` (a device no pattern names)
//     u32 out_dev_other;  the same for the out-device
//   }
//
// ct_state: array [(g * 3 + h) * 256 + state] of u32 vector id. Always looked up (so the AND has
//   at least one vector): the rules whose ct_state alternatives (all of them, ANDed over the
//   rule's matches) accept that state byte (CT_STATE_BITS).
//
// addr: LPM trie, key { u32 prefixlen; u8 gen; u8 hook; u8 field (ADDR_FIELD: 0 src, 1 dst);
//   u8 family (4 or 6); u8 addr[16] (IPv4 in addr[0..3]) }, prefixlen = 32 + prefix length;
//   value u32 vector id. Per (hook, field, family) there is a /0 entry (the rules that accept an
//   address under no other entry) and one entry per prefix some rule names (its CIDRs, named
//   sets' CIDRs, except CIDRs) unless it has its parent's vector; the longest match's vector is
//   exactly the rules whose address matches (all ANDed) accept every address under it. A rule
//   whose family field excludes the family is in none of that family's vectors, so family needs
//   no residual check. Looked up with the packet's address at its full length.
//
// port: LPM trie, key { u32 prefixlen; u8 gen; u8 hook; u8 field (PORT_FIELD: 0 dport, 1 sport);
//   u8 proto; u16 port }, prefixlen = 24 + prefix length over the 24 bits proto.port; value u32
//   vector id. The /0 entry: rules without a protocol (so without ports) for protocols no rule
//   names. A named protocol gets a /8 entry (its most common vector) and, for tcp, udp and sctp,
//   the port ranges become elementary intervals, those with another vector written as prefixes.
//   Looked up with (proto, port) for tcp, udp and sctp and (proto, 0) for other protocols, which
//   carry no ports (their entries are /8 or /0, and a port match never holds for them).
//
// devices: hash, key { u8 gen; u8 hook; u8 field (DEV_FIELD: 0 in, 1 out); u8 pad; u32 ifindex },
//   value u32 vector id; ifindex 0 (NO_DEVICE) is the packet without that device (input's
//   out-device, output's in-device), for which only rules without a device match hold. An ifindex
//   absent from the map gets the hook's *_dev_other. Names are resolved with the ifindexOf given
//   to the compiler; a pattern like veth+ covers the devices named in `devices` that exist at
//   compile time, so a device created later must be followed by a recompile.
//
// judged: hash, key { u8 gen; u8 hook; u16 pad; u32 ifindex }, value u8 1: the devices a hook with
//   judge_all 0 judges.
//
// vectors: array [g * MAX_VECTORS + id] of struct fw_vector (8 bytes) { u16 lo; u16 hi; u32 off; },
//   and vector_words: array [g * MAX_VECTOR_WORDS + off + (w - lo)] of u64, the vector's word w for
//   lo ≤ w ≤ hi (bit b of word w is rule 64 * w + b); words outside [lo, hi] are zero and not
//   stored. Id 0 (EMPTY_VECTOR) is the empty vector, lo 1 > hi 0. Vectors are deduplicated.
//
// rules: array [(g * 3 + h) * MAX_RULES + i] of struct fw_rule (184 bytes) {
//     u8  action;              ACTION: 0 accept, 1 drop, 2 reject, 3 skip
//     u8  reject_with;         index in REJECT_WITH (reject)
//     u8  helper;              HELPER_CODE: 0 none, 1 ftp, 2 tftp (accept)
//     u8  n_checks;            0..MAX_CHECKS
//     u32 skip_to;             skip: continue the search at this rule index (> i; n_rules: the policy)
//     u32 counter;             index of the origin rule's counter (counters[] names the origin)
//     u32 commit_flags;        COMMIT_MARK 1, COMMIT_LABEL 2: what accept commits onto the connection
//     u32 commit_mark_value, commit_mark_mask;
//     u32 commit_label_value[4], commit_label_mask[4];   word k = bits 32k..32k+31 of the label
//     struct fw_check { u32 op; u32 arg; u32 value; u32 mask; } checks[8];
//   }
//   A rule is a candidate only when every indexed field allows it; it matches when all its checks
//   hold (CHECK):
//     1 zone         the connection's zone == value
//     2 ct_mark      (ct_mark & mask) == value
//     3 packet_mark  (skb->mark & mask) == value
//     4 ct_label     ((label >> 32 * arg) & 0xffffffff & mask) == value, arg 0..3
//     5 icmp         the packet has an ICMP/ICMPv6 header and ((type | code << 8) & mask) == value
//     6 orig_src     the connection has an original tuple and residual{gen, family, set arg,
//     7 orig_dst       orig src/dst} finds an entry whose value is 1
//     8 orig_sport   the original tuple has ports and residual{gen, kind 0, set arg, orig
//     9 orig_dport     sport/dport} finds an entry whose value is 1
//   A rule that no packet can match (conflicting zones or marks of a jump and a rule, an empty port
//   intersection) is in no vector. Every field the matches of a flat rule constrain is ANDed into
//   one index or one check, so a rule needs at most 12 checks; more than MAX_CHECKS is refused.
//
// residual: LPM trie, key { u32 prefixlen; u8 gen; u8 kind (RESIDUAL_KIND_PORT 0, or family 4/6);
//   u16 pad; u32 set; u8 data[16] (an address, or a port in data[0..1]) }, prefixlen = 64 +
//   prefix length; value u8 accept (0/1). An address set holds every prefix its matches name with
//   whether the matches accept all addresses under it, pruned where the parent says the same; a
//   miss is 0. A port set holds the accepted ports as prefixes with value 1.
//
// counters: per-CPU array [g * MAX_COUNTERS + counter] of { u64 packets; u64 bytes; }, one per
//   origin rule (chain, index) over all hooks, so `tsct policy list` counts a chain's rule once
//   however many places inline it; the agent carries totals over a swap by origin.
import { ENUMS } from '../bpf/layouts';
import { UsageError } from '../errors';
import { parseAddr } from '../net/addr';
import { ctStateMatches } from './ctState';
import { FlatHook, FlatPolicy, FlatRule } from './flatten';
import {
  AddressItem,
  AddressMatch,
  Cidr,
  CommitSettings,
  DeviceMatch,
  Family,
  HELPERS,
  Hook,
  HOOKS,
  MaskedLabel,
  MaskedValue,
  NamedSet,
  PORT_PROTOCOLS,
  PortMatch,
  PortRange,
  REJECT_WITH,
  SourceRef,
  where,
} from './policyRule';
import { deviceNameMatches } from './ruleMatch';
import { MAX_PORT } from './ports';

/** The datapath's bounds (enum fw_limit in bpf/include/common.h, through BTF): one source for both sides. */
const LIMITS = ENUMS.fw_limit;
/** Rules per hook after inlining; W ≤ 256 words, so a vector's lo and hi fit a u16 with room. */
export const MAX_RULES = LIMITS.FW_MAX_RULES;
/** Residual checks per rule: the bound of the datapath's check loop. */
export const MAX_CHECKS = LIMITS.FW_MAX_CHECKS;
/** Distinct vectors per generation. */
export const MAX_VECTORS = LIMITS.FW_MAX_VECTORS;
/** Stored vector words (u64) per generation: 16 MiB. */
export const MAX_VECTOR_WORDS = LIMITS.FW_MAX_VECTOR_WORDS;
/** Counters per generation: every origin rule counted once. */
export const MAX_COUNTERS = LIMITS.FW_MAX_COUNTERS;

export type Generation = 0 | 1;

export const HOOK_INDEX: Readonly<Record<Hook, number>> = { input: 0, forward: 1, output: 2 };
export const POLICY = { accept: 0, drop: 1 } as const;
export const ACTION = { accept: 0, drop: 1, reject: 2, skip: 3 } as const;
export const COMMIT_MARK = 1;
export const COMMIT_LABEL = 2;
export const CHECK = {
  zone: 1,
  ctMark: 2,
  packetMark: 3,
  ctLabel: 4,
  icmp: 5,
  origSrc: 6,
  origDst: 7,
  origSport: 8,
  origDport: 9,
} as const;
/** The hook's `fields` bits; ct_state has none because it is always looked up. */
export const FIELD = { src: 1, dst: 2, dport: 4, sport: 8, inDev: 16, outDev: 32 } as const;
export const ADDR_FIELD = { src: 0, dst: 1 } as const;
export const PORT_FIELD = { dport: 0, sport: 1 } as const;
export const DEV_FIELD = { in: 0, out: 1 } as const;
export const RESIDUAL_KIND_PORT = 0;
export const EMPTY_VECTOR = 0;
export const NO_DEVICE = 0;

export function helperCode(helper: CommitSettings['helper']): number {
  return helper === undefined ? 0 : 1 + HELPERS.indexOf(helper);
}

export interface CompileOptions {
  /** The generation the tables are written as; the live one is the other. */
  generation: Generation;
  /** A device's ifindex, or null when there is no such device now. */
  ifindexOf: (name: string) => number | null;
  /** The devices that exist, so that patterns such as veth+ resolve; exact names resolve without it. */
  devices?: readonly string[];
}

export interface AddrEntry {
  generation: Generation;
  hook: number;
  field: number;
  family: Family;
  /** 4 or 16 network-order bytes, host bits zero. */
  prefix: Buffer;
  /** Prefix length of the address (0..32 or 0..128), not of the key. */
  prefixLen: number;
  vector: number;
}

export interface PortEntry {
  generation: Generation;
  hook: number;
  field: number;
  proto: number;
  /** First port of the prefix; 0 for the /0 and /8 entries. */
  port: number;
  /** Prefix length over the 24 bits proto.port: 0 (any protocol), 8 (the protocol), up to 24 (one port). */
  prefixLen: number;
  vector: number;
}

export interface DeviceEntry {
  generation: Generation;
  hook: number;
  field: number;
  /** NO_DEVICE (0): the packet has no such device. */
  ifindex: number;
  vector: number;
}

export interface JudgedEntry {
  generation: Generation;
  hook: number;
  ifindex: number;
}

export interface ResidualEntry {
  generation: Generation;
  set: number;
  /** RESIDUAL_KIND_PORT, or the address family. */
  kind: number;
  /** 2 bytes (a port), 4 or 16 (an address), network order. */
  prefix: Buffer;
  prefixLen: number;
  accept: 0 | 1;
}

export interface Check {
  op: number;
  arg: number;
  value: number;
  mask: number;
}

export interface CompiledRule {
  action: number;
  rejectWith: number;
  helper: number;
  skipTo: number;
  counter: number;
  commitFlags: number;
  commitMark: MaskedValue;
  /** Four 32-bit words each, least significant first. */
  commitLabel: { value: readonly number[]; mask: readonly number[] };
  checks: readonly Check[];
}

export interface CompiledHook {
  hook: Hook;
  index: number;
  policy: number;
  judgeAll: boolean;
  rules: CompiledRule[];
  words: number;
  fields: number;
  inDevOther: number;
  outDevOther: number;
  /** Vector id per state byte. */
  ctState: Uint32Array;
}

export interface VectorTable {
  count: number;
  lo: Uint16Array;
  hi: Uint16Array;
  off: Uint32Array;
  words: BigUint64Array;
}

export interface CounterOrigin {
  chain: string;
  index: number;
  source?: SourceRef;
}

export interface CompiledPolicy {
  generation: Generation;
  /** Indexed by HOOK_INDEX. */
  hooks: CompiledHook[];
  addr: AddrEntry[];
  port: PortEntry[];
  devices: DeviceEntry[];
  judged: JudgedEntry[];
  residual: ResidualEntry[];
  vectors: VectorTable;
  counters: CounterOrigin[];
}

// ---- key layouts, shared with the emulation so that both read one definition ----

/** An LPM trie key as struct bpf_lpm_trie_key has it: `prefixLen` bits of `data` count. */
export interface LpmKey {
  prefixLen: number;
  data: Buffer;
}

export function addrKey(gen: number, hook: number, field: number, family: Family, addr: Buffer, len: number): LpmKey {
  const data = Buffer.alloc(20);
  data.set([gen, hook, field, family]);
  addr.copy(data, 4);
  return { prefixLen: 32 + len, data };
}

export function portKey(gen: number, hook: number, field: number, proto: number, port: number, len: number): LpmKey {
  const data = Buffer.from([gen, hook, field, proto, port >> 8, port & 0xff]);
  return { prefixLen: 24 + len, data };
}

export function residualKey(gen: number, kind: number, set: number, bytes: Buffer, len: number): LpmKey {
  const data = Buffer.alloc(24);
  data.set([gen, kind, 0, 0]);
  data.writeUInt32BE(set, 4);
  bytes.copy(data, 8);
  return { prefixLen: 64 + len, data };
}

// ---- bit vectors under construction ----

/** A rule bit vector as 32-bit halves, low half first, so that its buffer is the u64 words on a little-endian host. */
class Bits {
  readonly u32: Uint32Array;
  constructor(readonly words: number) {
    this.u32 = new Uint32Array(words * 2);
  }
  set(i: number): void {
    this.u32[i >>> 5] |= 1 << (i & 31);
  }
  assign(i: number, on: boolean): void {
    if (on) this.u32[i >>> 5] |= 1 << (i & 31);
    else this.u32[i >>> 5] &= ~(1 << (i & 31));
  }
}

/** The deduplicated vectors of one generation, their words packed from lo to hi. */
class VectorPool {
  private readonly lo: number[] = [1];
  private readonly hi: number[] = [0];
  private readonly off: number[] = [0];
  private halves = new Uint32Array(1 << 12);
  private used = 0;
  private readonly byHash = new Map<number, number[]>();

  intern(b: Bits): number {
    const a = b.u32;
    let lo = -1;
    let hi = -1;
    for (let w = 0; w < b.words; w++) {
      if (a[2 * w] | a[2 * w + 1]) {
        if (lo < 0) lo = w;
        hi = w;
      }
    }
    if (lo < 0) return EMPTY_VECTOR;
    let h = 0x811c9dc5 ^ lo;
    for (let i = 2 * lo; i < 2 * hi + 2; i++) h = Math.imul(h ^ a[i], 0x01000193);
    const same = this.byHash.get(h);
    for (const id of same ?? []) if (this.equals(id, a, lo, hi)) return id;
    if (this.lo.length >= MAX_VECTORS) {
      throw new UsageError(`the rule set needs more than ${MAX_VECTORS} distinct rule vectors; use fewer, wider rules`);
    }
    const n = (hi - lo + 1) * 2;
    if ((this.used + n) / 2 > MAX_VECTOR_WORDS) {
      throw new UsageError(
        `the rule set's vectors need more than ${MAX_VECTOR_WORDS} words; use fewer rules or named sets`,
      );
    }
    while (this.used + n > this.halves.length) {
      const grown = new Uint32Array(this.halves.length * 2);
      grown.set(this.halves);
      this.halves = grown;
    }
    this.halves.set(a.subarray(2 * lo, 2 * hi + 2), this.used);
    const id = this.lo.length;
    this.lo.push(lo);
    this.hi.push(hi);
    this.off.push(this.used / 2);
    this.used += n;
    if (same) same.push(id);
    else this.byHash.set(h, [id]);
    return id;
  }

  private equals(id: number, a: Uint32Array, lo: number, hi: number): boolean {
    if (this.lo[id] !== lo || this.hi[id] !== hi) return false;
    const base = this.off[id] * 2 - 2 * lo;
    for (let i = 2 * lo; i < 2 * hi + 2; i++) if (this.halves[base + i] !== a[i]) return false;
    return true;
  }

  table(): VectorTable {
    const words = new BigUint64Array(this.used / 2);
    for (let i = 0; i < words.length; i++) {
      words[i] = (BigInt(this.halves[2 * i + 1]) << 32n) | BigInt(this.halves[2 * i]);
    }
    return {
      count: this.lo.length,
      lo: Uint16Array.from(this.lo),
      hi: Uint16Array.from(this.hi),
      off: Uint32Array.from(this.off),
      words,
    };
  }
}

// ---- "all of an owner's clauses hold", maintained as a sweep enters and leaves prefixes or ports ----

/**
 * A clause is one match's condition on one field: the point is in some `anyOf` item (or `anyOf` is
 * empty) and in no `except` item. An owner (a rule, or the one rule of a residual set) holds when
 * all its clauses hold; `onChange` hears when that flips.
 */
class Conjunction {
  private readonly any: number[] = [];
  private readonly except: number[] = [];
  private readonly anyEmpty: boolean[] = [];
  private readonly owner: number[] = [];
  private readonly unsatisfied: Int32Array;

  constructor(
    owners: number,
    private readonly onChange: (owner: number, holds: boolean) => void,
  ) {
    this.unsatisfied = new Int32Array(owners);
  }

  add(owner: number, anyEmpty: boolean): number {
    this.any.push(0);
    this.except.push(0);
    this.anyEmpty.push(anyEmpty);
    this.owner.push(owner);
    if (!anyEmpty) this.unsatisfied[owner]++;
    return this.owner.length - 1;
  }

  holds(owner: number): boolean {
    return this.unsatisfied[owner] === 0;
  }

  private clauseHolds(c: number): boolean {
    return (this.anyEmpty[c] || this.any[c] > 0) && this.except[c] === 0;
  }

  apply(c: number, except: boolean, delta: number): void {
    const before = this.clauseHolds(c);
    if (except) this.except[c] += delta;
    else this.any[c] += delta;
    const after = this.clauseHolds(c);
    if (before === after) return;
    const o = this.owner[c];
    const was = this.unsatisfied[o] === 0;
    this.unsatisfied[o] += after ? -1 : 1;
    const now = this.unsatisfied[o] === 0;
    if (was !== now) this.onChange(o, now);
  }
}

interface PrefixNode {
  bytes: Buffer;
  len: number;
  items: Array<{ clause: number; except: boolean }>;
  value: number;
}

const cidrBytes = new WeakMap<Cidr, Buffer>();

function bytesOf(c: Cidr): Buffer {
  let b = cidrBytes.get(c);
  if (!b) {
    b = parseAddr(c.addr);
    cidrBytes.set(c, b);
  }
  return b;
}

function prefixContains(p: PrefixNode, q: PrefixNode): boolean {
  if (p.len > q.len) return false;
  const whole = p.len >> 3;
  for (let i = 0; i < whole; i++) if (p.bytes[i] !== q.bytes[i]) return false;
  const rest = p.len & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (p.bytes[whole] & mask) === (q.bytes[whole] & mask);
}

/** The prefixes of one family some clauses name, with the /0 always among them. */
class PrefixNodes {
  private readonly byKey = new Map<string, PrefixNode>();
  constructor(readonly family: Family) {
    this.node(Buffer.alloc(family === 4 ? 4 : 16), 0);
  }
  private node(bytes: Buffer, len: number): PrefixNode {
    const key = `${bytes.toString('hex')}/${len}`;
    let n = this.byKey.get(key);
    if (!n) {
      n = { bytes, len, items: [], value: -1 };
      this.byKey.set(key, n);
    }
    return n;
  }
  add(cidr: Cidr, clause: number, except: boolean): void {
    if (cidr.family === this.family) this.node(bytesOf(cidr), cidr.prefix).items.push({ clause, except });
  }
  /** Every node before its descendants: the walk order of sweepPrefixes. */
  sorted(): PrefixNode[] {
    return [...this.byKey.values()].sort((a, b) => Buffer.compare(a.bytes, b.bytes) || a.len - b.len);
  }
}

/**
 * Visits every node in depth-first order with the conjunction's state being that of an address
 * under the node and under no deeper node, and the node's nearest ancestor among the nodes.
 */
function sweepPrefixes(
  nodes: readonly PrefixNode[],
  conj: Conjunction,
  visit: (node: PrefixNode, parent: PrefixNode | undefined) => void,
): void {
  const stack: PrefixNode[] = [];
  for (const node of nodes) {
    while (stack.length > 0 && !prefixContains(stack[stack.length - 1], node)) {
      for (const it of stack.pop()!.items) conj.apply(it.clause, it.except, -1);
    }
    for (const it of node.items) conj.apply(it.clause, it.except, 1);
    visit(node, stack[stack.length - 1]);
    stack.push(node);
  }
}

/** Visits the elementary intervals of [0, MAX_PORT] the items' ranges make, the state being that of a port in it. */
function sweepPorts(
  items: ReadonlyArray<{ from: number; to: number; clause: number }>,
  conj: Conjunction,
  visit: (from: number, to: number) => void,
): void {
  const starts = new Map<number, number[]>();
  const ends = new Map<number, number[]>();
  for (const it of items) {
    starts.set(it.from, [...(starts.get(it.from) ?? []), it.clause]);
    ends.set(it.to + 1, [...(ends.get(it.to + 1) ?? []), it.clause]);
  }
  const points = [...new Set([0, ...starts.keys(), ...ends.keys()])].filter((p) => p <= MAX_PORT);
  points.sort((a, b) => a - b);
  points.forEach((p, i) => {
    for (const c of ends.get(p) ?? []) conj.apply(c, false, -1);
    for (const c of starts.get(p) ?? []) conj.apply(c, false, 1);
    visit(p, i + 1 < points.length ? points[i + 1] - 1 : MAX_PORT);
  });
}

/** [from, to] as prefixes of the 16-bit port space: first port and prefix length. */
function rangePrefixes(from: number, to: number): Array<{ port: number; len: number }> {
  const out: Array<{ port: number; len: number }> = [];
  let p = from;
  while (p <= to) {
    let size = 1;
    while (size < 65536 && p % (size * 2) === 0 && p + size * 2 - 1 <= to) size *= 2;
    out.push({ port: p, len: 16 - Math.log2(size) });
    p += size;
  }
  return out;
}

function cidrsOf(item: AddressItem, sets: ReadonlyMap<string, NamedSet>): readonly Cidr[] {
  if ('cidr' in item) return [item.cidr];
  const set = sets.get(item.set);
  if (!set || set.kind !== 'address') throw new Error(`policy: no address set '${item.set}' (not checked)`);
  return set.cidrs;
}

function rangesOf(m: PortMatch, sets: ReadonlyMap<string, NamedSet>): PortRange[] {
  return m.anyOf.flatMap((item) => {
    if ('range' in item) return [item.range];
    const set = sets.get(item.set);
    if (!set || set.kind !== 'port') throw new Error(`policy: no port set '${item.set}' (not checked)`);
    return set.ports;
  });
}

// ---- one rule's fields: what is indexed, what is left to check ----

interface RuleInfo {
  rule: FlatRule;
  /** false: no packet matches it (conflicting matches), so it is in no vector. */
  viable: boolean;
  family: Family | 'any';
  proto: number | 'any';
  checks: Check[];
}

/** The one value all defined `values` agree on, 'any' when none is defined, null when they disagree. */
function agreed<T>(values: ReadonlyArray<T | undefined>): T | 'any' | null {
  const set = new Set(values.filter((v): v is T => v !== undefined));
  if (set.size > 1) return null;
  return set.size === 0 ? 'any' : [...set][0];
}

/** One masked value equivalent to all of them, undefined when none, null when no value satisfies them all. */
function combineMasked(list: ReadonlyArray<MaskedValue | undefined>): MaskedValue | undefined | null {
  let out: MaskedValue | undefined;
  for (const m of list) {
    if (!m) continue;
    const v = m.value >>> 0;
    const k = m.mask >>> 0;
    if ((v & ~k) >>> 0 !== 0) return null;
    if (out && ((out.value ^ v) & out.mask & k) >>> 0 !== 0) return null;
    out = out ? { value: (out.value | v) >>> 0, mask: (out.mask | k) >>> 0 } : { value: v, mask: k };
  }
  return out;
}

function combineLabels(list: ReadonlyArray<MaskedLabel | undefined>): MaskedLabel | undefined | null {
  let out: MaskedLabel | undefined;
  for (const m of list) {
    if (!m) continue;
    if ((m.value & ~m.mask) !== 0n) return null;
    if (out && ((out.value ^ m.value) & out.mask & m.mask) !== 0n) return null;
    out = out ? { value: out.value | m.value, mask: out.mask | m.mask } : { value: m.value, mask: m.mask };
  }
  return out;
}

function labelWords(x: bigint): number[] {
  return [0, 1, 2, 3].map((k) => Number((x >> BigInt(32 * k)) & 0xffffffffn));
}

/** Residual sets of one generation, deduplicated by content. */
class ResidualSets {
  readonly entries: ResidualEntry[] = [];
  private readonly byContent = new Map<string, number>();

  constructor(
    private readonly generation: Generation,
    private readonly sets: ReadonlyMap<string, NamedSet>,
  ) {}

  /** A set accepting the addresses all `matches` accept, or null when they accept none. */
  addressSet(matches: readonly AddressMatch[]): number | null {
    const local: Array<Omit<ResidualEntry, 'generation' | 'set'>> = [];
    for (const family of [4, 6] as const) {
      const conj = new Conjunction(1, () => undefined);
      const nodes = new PrefixNodes(family);
      for (const m of matches) {
        const c = conj.add(0, m.anyOf.length === 0);
        for (const item of m.anyOf) for (const cidr of cidrsOf(item, this.sets)) nodes.add(cidr, c, false);
        for (const item of m.except) for (const cidr of cidrsOf(item, this.sets)) nodes.add(cidr, c, true);
      }
      sweepPrefixes(nodes.sorted(), conj, (node, parent) => {
        node.value = conj.holds(0) ? 1 : 0;
        // A miss rejects, so a rejecting /0 is left out.
        if (node.value !== (parent ? parent.value : 0)) {
          local.push({ kind: family, prefix: node.bytes, prefixLen: node.len, accept: node.value ? 1 : 0 });
        }
      });
    }
    return local.some((e) => e.accept === 1) ? this.intern(local) : null;
  }

  /** A set of the ports all `matches` accept, or null when they accept none. */
  portSet(matches: readonly PortMatch[]): number | null {
    let accepted: PortRange[] = [{ from: 0, to: MAX_PORT }];
    for (const m of matches) accepted = intersectRanges(accepted, unionRanges(rangesOf(m, this.sets)));
    if (accepted.length === 0) return null;
    const local = accepted.flatMap((r) =>
      rangePrefixes(r.from, r.to).map((p) => ({
        kind: RESIDUAL_KIND_PORT,
        prefix: Buffer.from([p.port >> 8, p.port & 0xff]),
        prefixLen: p.len,
        accept: 1 as const,
      })),
    );
    return this.intern(local);
  }

  private intern(local: Array<Omit<ResidualEntry, 'generation' | 'set'>>): number {
    const content = local.map((e) => `${e.kind}:${e.prefix.toString('hex')}/${e.prefixLen}=${e.accept}`).join(' ');
    const known = this.byContent.get(content);
    if (known !== undefined) return known;
    const set = this.byContent.size;
    this.byContent.set(content, set);
    for (const e of local) this.entries.push({ generation: this.generation, set, ...e });
    return set;
  }
}

function unionRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

function intersectRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  for (const x of a) {
    for (const y of b) {
      const from = Math.max(x.from, y.from);
      const to = Math.min(x.to, y.to);
      if (from <= to) out.push({ from, to });
    }
  }
  return out;
}

function checkNames(checks: readonly Check[]): string {
  const names: Record<number, string> = {
    [CHECK.zone]: 'zone',
    [CHECK.ctMark]: 'ct-mark',
    [CHECK.packetMark]: 'packet-mark',
    [CHECK.ctLabel]: 'a ct-label word',
    [CHECK.icmp]: 'icmp type/code',
    [CHECK.origSrc]: 'ct-orig-src',
    [CHECK.origDst]: 'ct-orig-dst',
    [CHECK.origSport]: 'ct-orig-sport',
    [CHECK.origDport]: 'ct-orig-dport',
  };
  return checks.map((c) => names[c.op]).join(', ');
}

function analyze(hook: Hook, index: number, rule: FlatRule, residual: ResidualSets): RuleInfo {
  const ms = rule.matches;
  const family = agreed(ms.map((m) => m.family));
  const proto = agreed(ms.map((m) => m.proto));
  const zone = agreed(ms.map((m) => m.zone));
  const ctMark = combineMasked(ms.map((m) => m.ctMark));
  const packetMark = combineMasked(ms.map((m) => m.packetMark));
  const label = combineLabels(ms.map((m) => m.ctLabel));
  const icmpType = agreed(ms.map((m) => m.icmpType));
  const icmpCode = agreed(ms.map((m) => m.icmpCode));
  const never: RuleInfo = { rule, viable: false, family: 'any', proto: 'any', checks: [] };
  if (family === null || proto === null || zone === null || ctMark === null || packetMark === null) return never;
  if (label === null || icmpType === null || icmpCode === null) return never;
  const checks: Check[] = [];
  if (zone !== 'any') checks.push({ op: CHECK.zone, arg: 0, value: zone, mask: 0xffff });
  if (ctMark && ctMark.mask !== 0) checks.push({ op: CHECK.ctMark, arg: 0, ...ctMark });
  if (packetMark && packetMark.mask !== 0) checks.push({ op: CHECK.packetMark, arg: 0, ...packetMark });
  if (label) {
    const [value, mask] = [labelWords(label.value), labelWords(label.mask)];
    for (let k = 0; k < 4; k++) if (mask[k]) checks.push({ op: CHECK.ctLabel, arg: k, value: value[k], mask: mask[k] });
  }
  if (icmpType !== 'any' || icmpCode !== 'any') {
    const value = (icmpType === 'any' ? 0 : icmpType) | ((icmpCode === 'any' ? 0 : icmpCode) << 8);
    const mask = (icmpType === 'any' ? 0 : 0xff) | (icmpCode === 'any' ? 0 : 0xff00);
    checks.push({ op: CHECK.icmp, arg: 0, value, mask });
  }
  const residualSets: Array<[number, number | null]> = [];
  const ports = (f: 'ctOrigSport' | 'ctOrigDport') => ms.flatMap((m) => (m[f] ? [m[f]] : []));
  const addrs = (f: 'ctOrigSrc' | 'ctOrigDst') => ms.flatMap((m) => (m[f] ? [m[f]] : []));
  for (const [op, f] of [
    [CHECK.origSport, 'ctOrigSport'],
    [CHECK.origDport, 'ctOrigDport'],
  ] as const) {
    if (ports(f).length > 0) residualSets.push([op, residual.portSet(ports(f))]);
  }
  for (const [op, f] of [
    [CHECK.origSrc, 'ctOrigSrc'],
    [CHECK.origDst, 'ctOrigDst'],
  ] as const) {
    if (addrs(f).length > 0) residualSets.push([op, residual.addressSet(addrs(f))]);
  }
  for (const [op, set] of residualSets) {
    if (set === null) return never;
    checks.push({ op, arg: set, value: 0, mask: 0 });
  }
  if (checks.length > MAX_CHECKS) {
    throw new UsageError(
      `${where(rule.origin.source)}the rule (${hook} #${index}, ${rule.origin.chain}[${rule.origin.index}]) needs ${checks.length} ` +
        `checks the classifier does not index (${checkNames(checks)}); it checks at most ${MAX_CHECKS} per rule: ` +
        'match fewer of these fields in one rule (a jump ANDs its matches into every rule it reaches)',
    );
  }
  return { rule, viable: true, family, proto, checks };
}

// ---- the tables of one hook ----

interface HookTables {
  hook: CompiledHook;
  addr: AddrEntry[];
  port: PortEntry[];
  devices: DeviceEntry[];
  judged: JudgedEntry[];
}

class Counters {
  readonly origins: CounterOrigin[] = [];
  private readonly byOrigin = new Map<string, number>();
  of(rule: FlatRule): number {
    const key = `${rule.origin.chain}\u0000${rule.origin.index}`;
    let id = this.byOrigin.get(key);
    if (id === undefined) {
      id = this.origins.length;
      this.byOrigin.set(key, id);
      const o: CounterOrigin = { chain: rule.origin.chain, index: rule.origin.index };
      if (rule.origin.source) o.source = rule.origin.source;
      this.origins.push(o);
    }
    return id;
  }
}

class HookCompiler {
  readonly n: number;
  readonly words: number;
  readonly hi: number;
  readonly infos: RuleInfo[];
  readonly universal: number;

  constructor(
    private readonly flat: FlatHook,
    private readonly sets: ReadonlyMap<string, NamedSet>,
    private readonly options: CompileOptions,
    private readonly pool: VectorPool,
    residual: ResidualSets,
  ) {
    this.n = flat.rules.length;
    if (this.n > MAX_RULES) {
      throw new UsageError(
        `${flat.hook}: ${this.n} rules after inlining the jumps, and the classifier holds at most ${MAX_RULES} ` +
          'per hook; match many addresses or ports with one named set instead of one rule each',
      );
    }
    this.words = Math.ceil(this.n / 64);
    this.hi = HOOK_INDEX[flat.hook];
    this.infos = flat.rules.map((r, i) => analyze(flat.hook, i, r, residual));
    this.universal = this.intern(this.infos.map((info) => info.viable));
  }

  private intern(member: readonly boolean[]): number {
    const b = new Bits(this.words);
    member.forEach((on, i) => on && b.set(i));
    return this.pool.intern(b);
  }

  compile(counters: Counters): HookTables {
    const g = this.options.generation;
    const hook = this.hi;
    const addr: AddrEntry[] = [];
    for (const [name, field] of [
      ['src', ADDR_FIELD.src],
      ['dst', ADDR_FIELD.dst],
    ] as const) {
      for (const family of [4, 6] as const) {
        for (const e of this.addressTable(name, family)) {
          addr.push({ generation: g, hook, field, family, prefix: e.bytes, prefixLen: e.len, vector: e.value });
        }
      }
    }
    const port = [
      ...this.portTable('dport').map((e) => ({ generation: g, hook, field: PORT_FIELD.dport, ...e })),
      ...this.portTable('sport').map((e) => ({ generation: g, hook, field: PORT_FIELD.sport, ...e })),
    ];
    const inDev = this.deviceTable('inDev');
    const outDev = this.deviceTable('outDev');
    const devices = [
      ...inDev.entries.map((e) => ({ generation: g, hook, field: DEV_FIELD.in, ...e })),
      ...outDev.entries.map((e) => ({ generation: g, hook, field: DEV_FIELD.out, ...e })),
    ];
    // A field is looked up only where some vector of it is not the vector of all rules.
    const used = (vectors: readonly number[]) => vectors.some((v) => v !== this.universal);
    let fields = 0;
    if (used(addr.filter((e) => e.field === ADDR_FIELD.src).map((e) => e.vector))) fields |= FIELD.src;
    if (used(addr.filter((e) => e.field === ADDR_FIELD.dst).map((e) => e.vector))) fields |= FIELD.dst;
    if (used(port.filter((e) => e.field === PORT_FIELD.dport).map((e) => e.vector))) fields |= FIELD.dport;
    if (used(port.filter((e) => e.field === PORT_FIELD.sport).map((e) => e.vector))) fields |= FIELD.sport;
    if (used([inDev.other, ...inDev.entries.map((e) => e.vector)])) fields |= FIELD.inDev;
    if (used([outDev.other, ...outDev.entries.map((e) => e.vector)])) fields |= FIELD.outDev;
    const keepAddr = (e: AddrEntry) => fields & (e.field === ADDR_FIELD.src ? FIELD.src : FIELD.dst);
    const keepPort = (e: PortEntry) => fields & (e.field === PORT_FIELD.dport ? FIELD.dport : FIELD.sport);
    const keepDev = (e: DeviceEntry) => fields & (e.field === DEV_FIELD.in ? FIELD.inDev : FIELD.outDev);
    const compiled: CompiledHook = {
      hook: this.flat.hook,
      index: hook,
      policy: POLICY[this.flat.policy],
      judgeAll: this.flat.devices === undefined,
      rules: this.infos.map((info) => encodeRule(info, counters.of(info.rule))),
      words: this.words,
      fields,
      inDevOther: fields & FIELD.inDev ? inDev.other : this.universal,
      outDevOther: fields & FIELD.outDev ? outDev.other : this.universal,
      ctState: this.ctStateTable(),
    };
    return {
      hook: compiled,
      addr: addr.filter(keepAddr),
      port: port.filter(keepPort),
      devices: devices.filter(keepDev),
      judged: this.judged(),
    };
  }

  private addressTable(field: 'src' | 'dst', family: Family): PrefixNode[] {
    const bits = new Bits(this.words);
    const conj = new Conjunction(this.n, (r, holds) => bits.assign(r, holds));
    const nodes = new PrefixNodes(family);
    this.infos.forEach((info, r) => {
      if (!info.viable || (info.family !== 'any' && info.family !== family)) return;
      for (const m of info.rule.matches) {
        const am = m[field];
        if (!am) continue;
        const c = conj.add(r, am.anyOf.length === 0);
        for (const item of am.anyOf) for (const cidr of cidrsOf(item, this.sets)) nodes.add(cidr, c, false);
        for (const item of am.except) for (const cidr of cidrsOf(item, this.sets)) nodes.add(cidr, c, true);
      }
      if (conj.holds(r)) bits.set(r);
    });
    const out: PrefixNode[] = [];
    sweepPrefixes(nodes.sorted(), conj, (node, parent) => {
      node.value = this.pool.intern(bits);
      if (!parent || node.value !== parent.value) out.push(node);
    });
    return out;
  }

  private portTable(field: 'dport' | 'sport'): Array<Omit<PortEntry, 'generation' | 'hook' | 'field'>> {
    const has = (info: RuleInfo) => info.rule.matches.some((m) => m[field] !== undefined);
    // A rule with ports names its protocol (checkRuleSet), so /0 holds the rules without one.
    const root = this.intern(this.infos.map((i) => i.viable && i.proto === 'any' && !has(i)));
    const out: Array<Omit<PortEntry, 'generation' | 'hook' | 'field'>> = [
      { proto: 0, port: 0, prefixLen: 0, vector: root },
    ];
    const protos = new Set(this.infos.flatMap((i) => (i.viable && i.proto !== 'any' ? [i.proto] : [])));
    for (const p of [...protos].sort((a, b) => a - b)) {
      const relevant = (i: RuleInfo) => i.viable && (i.proto === 'any' || i.proto === p);
      if (!PORT_PROTOCOLS.includes(p)) {
        // Packets of this protocol carry no ports, and a port match never holds for them.
        const v = this.intern(this.infos.map((i) => relevant(i) && !has(i)));
        if (v !== root) out.push({ proto: p, port: 0, prefixLen: 8, vector: v });
        continue;
      }
      const bits = new Bits(this.words);
      const conj = new Conjunction(this.n, (r, holds) => bits.assign(r, holds));
      const items: Array<{ from: number; to: number; clause: number }> = [];
      this.infos.forEach((info, r) => {
        if (!relevant(info)) return;
        for (const m of info.rule.matches) {
          const pm = m[field];
          if (!pm) continue;
          const clause = conj.add(r, false);
          for (const range of rangesOf(pm, this.sets)) items.push({ ...range, clause });
        }
        if (conj.holds(r)) bits.set(r);
      });
      const intervals: Array<{ from: number; to: number; vector: number }> = [];
      sweepPorts(items, conj, (from, to) => {
        const vector = this.pool.intern(bits);
        const last = intervals[intervals.length - 1];
        if (last && last.vector === vector) last.to = to;
        else intervals.push({ from, to, vector });
      });
      // The protocol's /8 entry takes the vector of most ports; the other intervals become prefixes.
      const width = new Map<number, number>();
      for (const iv of intervals) width.set(iv.vector, (width.get(iv.vector) ?? 0) + iv.to - iv.from + 1);
      const common = [...width.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
      if (common !== root) out.push({ proto: p, port: 0, prefixLen: 8, vector: common });
      for (const iv of intervals) {
        if (iv.vector === common) continue;
        for (const pre of rangePrefixes(iv.from, iv.to)) {
          out.push({ proto: p, port: pre.port, prefixLen: 8 + pre.len, vector: iv.vector });
        }
      }
    }
    return out;
  }

  private ctStateTable(): Uint32Array {
    const states = Array.from({ length: 256 }, () => new Bits(this.words));
    this.infos.forEach((info, r) => {
      if (!info.viable) return;
      const terms = info.rule.matches.flatMap((m) => (m.ctState ? [m.ctState] : []));
      for (let s = 0; s < 256; s++) if (terms.every((t) => ctStateMatches(t, s))) states[s].set(r);
    });
    return Uint32Array.from(states.map((b) => this.pool.intern(b)));
  }

  /** Candidate device names: every exact name a pattern gives, and every device that exists. */
  private deviceNames(patterns: readonly string[]): string[] {
    const exact = patterns.filter((p) => !p.endsWith('+'));
    return [...new Set([...exact, ...(this.options.devices ?? [])])].sort();
  }

  private ifindexes(names: readonly string[]): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    const owner = new Map<number, string>();
    for (const name of names) {
      const ifindex = this.options.ifindexOf(name);
      if (ifindex === null) continue;
      if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0xffffffff) {
        throw new Error(`policy: ifindexOf('${name}') gave ${ifindex}, not a positive 32-bit integer`);
      }
      const other = owner.get(ifindex);
      if (other !== undefined) throw new Error(`policy: devices '${other}' and '${name}' both have ifindex ${ifindex}`);
      owner.set(ifindex, name);
      out.push([name, ifindex]);
    }
    return out;
  }

  private deviceTable(field: 'inDev' | 'outDev'): {
    entries: Array<{ ifindex: number; vector: number }>;
    other: number;
  } {
    const matchesOf = (info: RuleInfo) => info.rule.matches.flatMap((m) => (m[field] ? [m[field]] : []));
    const accepts = (dm: DeviceMatch, name: string) =>
      (dm.anyOf.length === 0 || dm.anyOf.some((p) => deviceNameMatches(p, name))) &&
      !dm.except.some((p) => deviceNameMatches(p, name));
    // A device the table does not know is taken to match no pattern: only "any device" lists hold.
    const other = this.intern(this.infos.map((i) => i.viable && matchesOf(i).every((dm) => dm.anyOf.length === 0)));
    const none = this.intern(this.infos.map((i) => i.viable && matchesOf(i).length === 0));
    const entries: Array<{ ifindex: number; vector: number }> = [];
    if (none !== other) entries.push({ ifindex: NO_DEVICE, vector: none });
    const patterns = this.infos.flatMap((i) => matchesOf(i).flatMap((dm) => [...dm.anyOf, ...dm.except]));
    for (const [name, ifindex] of this.ifindexes(this.deviceNames(patterns))) {
      const v = this.intern(this.infos.map((i) => i.viable && matchesOf(i).every((dm) => accepts(dm, name))));
      if (v !== other) entries.push({ ifindex, vector: v });
    }
    return { entries, other };
  }

  private judged(): JudgedEntry[] {
    const listed = this.flat.devices;
    if (!listed) return [];
    const names = this.deviceNames(listed).filter((name) => listed.some((p) => deviceNameMatches(p, name)));
    const g = this.options.generation;
    return this.ifindexes(names).map(([, ifindex]) => ({ generation: g, hook: this.hi, ifindex }));
  }
}

function encodeRule(info: RuleInfo, counter: number): CompiledRule {
  const a = info.rule.action;
  const out: CompiledRule = {
    action: ACTION[a.kind],
    rejectWith: a.kind === 'reject' ? REJECT_WITH.indexOf(a.with) : 0,
    helper: a.kind === 'accept' ? helperCode(a.commit?.helper) : 0,
    skipTo: a.kind === 'skip' ? a.to : 0,
    counter,
    commitFlags: 0,
    commitMark: { value: 0, mask: 0 },
    commitLabel: { value: [0, 0, 0, 0], mask: [0, 0, 0, 0] },
    checks: info.checks,
  };
  if (a.kind === 'accept' && a.commit?.mark) {
    out.commitFlags |= COMMIT_MARK;
    out.commitMark = { value: a.commit.mark.value >>> 0, mask: a.commit.mark.mask >>> 0 };
  }
  if (a.kind === 'accept' && a.commit?.label) {
    out.commitFlags |= COMMIT_LABEL;
    out.commitLabel = { value: labelWords(a.commit.label.value), mask: labelWords(a.commit.label.mask) };
  }
  return out;
}

export function compilePolicy(flat: FlatPolicy, options: CompileOptions): CompiledPolicy {
  const pool = new VectorPool();
  const residual = new ResidualSets(options.generation, flat.sets);
  const counters = new Counters();
  const hooks: CompiledHook[] = [];
  const tables: HookTables[] = [];
  for (const hook of HOOKS) {
    const t = new HookCompiler(flat.hooks[hook], flat.sets, options, pool, residual).compile(counters);
    hooks[t.hook.index] = t.hook;
    tables.push(t);
  }
  return {
    generation: options.generation,
    hooks,
    addr: tables.flatMap((t) => t.addr),
    port: tables.flatMap((t) => t.port),
    devices: tables.flatMap((t) => t.devices),
    judged: tables.flatMap((t) => t.judged),
    residual: residual.entries,
    vectors: pool.table(),
    counters: counters.origins,
  };
}

// ---- sizes ----

/** Key + value bytes of one entry of each table, as the header lays them out (the kernel adds its own overhead). */
export const ENTRY_BYTES = {
  hooks: 20,
  ctState: 4,
  addr: 4 + 20 + 4,
  port: 4 + 6 + 4,
  devices: 8 + 4,
  judged: 8 + 1,
  residual: 4 + 24 + 1,
  vectors: 8,
  vectorWords: 8,
  rules: 184,
  counters: 16,
} as const;

export interface TableSize {
  table: keyof typeof ENTRY_BYTES;
  entries: number;
  bytes: number;
}

/** What one generation's entries take, table by table. */
export function compiledSizes(c: CompiledPolicy): TableSize[] {
  const counts: Record<keyof typeof ENTRY_BYTES, number> = {
    hooks: c.hooks.length,
    ctState: c.hooks.length * 256,
    addr: c.addr.length,
    port: c.port.length,
    devices: c.devices.length,
    judged: c.judged.length,
    residual: c.residual.length,
    vectors: c.vectors.count,
    vectorWords: c.vectors.words.length,
    rules: c.hooks.reduce((n, h) => n + h.rules.length, 0),
    counters: c.counters.length,
  };
  return (Object.keys(counts) as Array<keyof typeof ENTRY_BYTES>).map((table) => ({
    table,
    entries: counts[table],
    bytes: counts[table] * ENTRY_BYTES[table],
  }));
}
