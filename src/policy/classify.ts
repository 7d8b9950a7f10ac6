// The datapath's classifier, emulated over the tables compilePolicy makes, to
// prove them right against the reference evaluator (policyTrace) and to count
// what a lookup costs. It does what the BPF program will do and nothing more
// clever: the maps are held as the kernel holds them (LPM tries searched by
// prefix length, hashes, arrays indexed with the generation), both generations
// side by side, and the active one picked by one value.
//
// Per packet: the hook's entry; the judged-device test; one lookup per indexed
// field the hook asks for (ct_state always) giving vector ids; the AND of the
// vectors word by word over the intersection of their [lo, hi] ranges; per set
// bit the rule's residual checks; a matched skip continues at its target, any
// other matched rule decides; no candidate left: the hook's policy.
import { UsageError } from '../errors';
import {
  ACTION,
  addrKey,
  CHECK,
  Check,
  COMMIT_LABEL,
  COMMIT_MARK,
  CompiledPolicy,
  CompiledRule,
  CounterOrigin,
  DEV_FIELD,
  FIELD,
  Generation,
  HOOK_INDEX,
  LpmKey,
  MAX_RULES,
  MAX_VECTORS,
  NO_DEVICE,
  PORT_FIELD,
  portKey,
  ADDR_FIELD,
  RESIDUAL_KIND_PORT,
  residualKey,
} from './compile';
import { CommitSettings, HELPERS, Hook, PORT_PROTOCOLS, REJECT_WITH, RejectWith } from './policyRule';
import { PolicyPacket, PreparedPacket, preparePacket } from './ruleMatch';

/** The ifindex of a device the tables cannot know (ifindexOf has none): a hash miss, so the "other device" vector. */
const UNKNOWN_IFINDEX = 0xffffffff;

export interface ClassifyCost {
  /** Map lookups other than vector words and rules: hook entry, judged devices, field tables, residual sets. */
  lookups: number;
  /** 64-bit word positions at which the field vectors were ANDed. */
  words: number;
  /** Set bits whose rule's residual checks were evaluated. */
  candidates: number;
}

export interface Classification {
  verdict: 'accept' | 'drop' | 'reject';
  rejectWith?: RejectWith;
  commit?: CommitSettings;
  /** The deciding rule's index in the hook's flat list, or what decided without one. */
  rule: number | 'policy' | 'unjudged';
  /** The deciding rule's counter. */
  counter?: number;
  cost: ClassifyCost;
}

/** An LPM trie as the kernel answers it: the entry with the longest prefix of the key. */
class LpmTrie {
  private readonly byLen = new Map<number, Map<string, { data: Buffer; value: number }>>();
  private lengths: number[] = [];

  update(key: LpmKey, value: number): void {
    let m = this.byLen.get(key.prefixLen);
    if (!m) {
      m = new Map();
      this.byLen.set(key.prefixLen, m);
      this.lengths = [...this.byLen.keys()].sort((a, b) => b - a);
    }
    m.set(maskedHex(key.data, key.prefixLen), { data: key.data, value });
  }

  lookup(data: Buffer): number | undefined {
    for (const len of this.lengths) {
      const hit = this.byLen.get(len)!.get(maskedHex(data, len));
      if (hit) return hit.value;
    }
    return undefined;
  }

  deleteWhere(doomed: (data: Buffer) => boolean): void {
    for (const m of this.byLen.values()) for (const [k, e] of m) if (doomed(e.data)) m.delete(k);
  }
}

function maskedHex(data: Buffer, bits: number): string {
  const whole = bits >> 3;
  let hex = data.subarray(0, whole).toString('hex');
  const rest = bits & 7;
  if (rest) hex += (data[whole] & ((0xff << (8 - rest)) & 0xff)).toString(16).padStart(2, '0');
  return hex;
}

interface HookEntry {
  nRules: number;
  words: number;
  policy: number;
  judgeAll: boolean;
  fields: number;
  inDevOther: number;
  outDevOther: number;
}

const ctz = (x: number) => 31 - Math.clz32(x & -x);

/** [low, high] with the bits below `k` (0..63) cleared. */
function clearBelow(low: number, high: number, k: number): [number, number] {
  if (k === 0) return [low, high];
  if (k < 32) return [(low & (0xffffffff << k)) >>> 0, high];
  return [0, (high & (0xffffffff << (k - 32))) >>> 0];
}

function labelOf(words: readonly number[]): bigint {
  return words.reduce((acc, w, k) => acc | (BigInt(w >>> 0) << BigInt(32 * k)), 0n);
}

/** The classifier's maps, both generations of them. */
export class ClassifierMaps {
  /** The one value a swap writes. */
  active: Generation = 0;
  private readonly loaded: [boolean, boolean] = [false, false];
  private readonly hooks: Array<HookEntry | undefined> = [];
  private readonly ctState = new Uint32Array(2 * 3 * 256);
  private readonly rules = new Map<number, CompiledRule>();
  private readonly addr = new LpmTrie();
  private readonly port = new LpmTrie();
  private readonly residual = new LpmTrie();
  private readonly devices = new Map<string, number>();
  private readonly judged = new Set<string>();
  private readonly vecLo = new Uint16Array(2 * MAX_VECTORS);
  private readonly vecHi = new Uint16Array(2 * MAX_VECTORS);
  private readonly vecOff = new Uint32Array(2 * MAX_VECTORS);
  /** Per generation the vector words as 32-bit halves, low first (index gen * MAX_VECTOR_WORDS + off in the map). */
  private readonly words: [Uint32Array, Uint32Array] = [new Uint32Array(0), new Uint32Array(0)];
  private readonly counters: [CounterOrigin[], CounterOrigin[]] = [[], []];

  /** `ifindexOf` stands for the kernel handing the program the packet's ifindexes. */
  constructor(private readonly ifindexOf: (name: string) => number | null) {}

  /** Writes a generation's tables beside the live ones; the live generation cannot be written. */
  load(c: CompiledPolicy): void {
    const g = c.generation;
    if (g === this.active && this.loaded[g]) {
      throw new Error(`classifier: generation ${g} is live; write the other one and activate it`);
    }
    this.clear(g);
    for (const h of c.hooks) {
      this.hooks[g * 3 + h.index] = {
        nRules: h.rules.length,
        words: h.words,
        policy: h.policy,
        judgeAll: h.judgeAll,
        fields: h.fields,
        inDevOther: h.inDevOther,
        outDevOther: h.outDevOther,
      };
      this.ctState.set(h.ctState, (g * 3 + h.index) * 256);
      h.rules.forEach((r, i) => this.rules.set((g * 3 + h.index) * MAX_RULES + i, r));
    }
    for (const e of c.addr) this.addr.update(addrKey(g, e.hook, e.field, e.family, e.prefix, e.prefixLen), e.vector);
    for (const e of c.port) this.port.update(portKey(g, e.hook, e.field, e.proto, e.port, e.prefixLen), e.vector);
    for (const e of c.residual) this.residual.update(residualKey(g, e.kind, e.set, e.prefix, e.prefixLen), e.accept);
    for (const e of c.devices) this.devices.set(`${g}.${e.hook}.${e.field}.${e.ifindex}`, e.vector);
    for (const e of c.judged) this.judged.add(`${g}.${e.hook}.${e.ifindex}`);
    const v = c.vectors;
    this.vecLo.set(v.lo, g * MAX_VECTORS);
    this.vecHi.set(v.hi, g * MAX_VECTORS);
    this.vecOff.set(v.off, g * MAX_VECTORS);
    const halves = new Uint32Array(v.words.length * 2);
    v.words.forEach((w, i) => {
      halves[2 * i] = Number(w & 0xffffffffn);
      halves[2 * i + 1] = Number(w >> 32n);
    });
    this.words[g] = halves;
    this.counters[g] = c.counters;
    this.loaded[g] = true;
  }

  activate(g: Generation): void {
    if (!this.loaded[g]) throw new Error(`classifier: generation ${g} was not written`);
    this.active = g;
  }

  /** Deletes a generation's entries (the old one, after a swap); the live generation cannot be deleted. */
  clear(g: Generation): void {
    if (g === this.active && this.loaded[g]) throw new Error(`classifier: generation ${g} is live`);
    for (let h = 0; h < 3; h++) {
      const hook = this.hooks[g * 3 + h];
      for (let i = 0; hook && i < hook.nRules; i++) this.rules.delete((g * 3 + h) * MAX_RULES + i);
      this.hooks[g * 3 + h] = undefined;
    }
    const ofGen = (data: Buffer) => data[0] === g;
    this.addr.deleteWhere(ofGen);
    this.port.deleteWhere(ofGen);
    this.residual.deleteWhere(ofGen);
    for (const k of this.devices.keys()) if (k.startsWith(`${g}.`)) this.devices.delete(k);
    for (const k of this.judged) if (k.startsWith(`${g}.`)) this.judged.delete(k);
    this.words[g] = new Uint32Array(0);
    this.counters[g] = [];
    this.loaded[g] = false;
  }

  /** The origin rule a counter of the live generation counts. */
  counterOrigin(counter: number): CounterOrigin | undefined {
    return this.counters[this.active][counter];
  }

  classify(hook: Hook, packet: PolicyPacket): Classification {
    const g = this.active;
    const h = HOOK_INDEX[hook];
    const meta = this.hooks[g * 3 + h];
    if (!meta) throw new Error(`classifier: generation ${g} has no tables`);
    const cost: ClassifyCost = { lookups: 1, words: 0, candidates: 0 };
    const inIf = this.ifindex(packet.inDev);
    const outIf = this.ifindex(packet.outDev);
    if (!meta.judgeAll && !this.judges(g, hook, inIf, outIf, cost)) {
      return { verdict: 'accept', rule: 'unjudged', cost };
    }
    const pp = preparePacket(packet);
    const ids = this.fieldVectors(g, h, meta, pp, inIf, outIf, cost);
    return this.search(g, h, meta, ids, pp, cost);
  }

  private ifindex(name: string | undefined): number {
    if (name === undefined) return NO_DEVICE;
    return this.ifindexOf(name) ?? UNKNOWN_IFINDEX;
  }

  private judges(g: number, hook: Hook, inIf: number, outIf: number, cost: ClassifyCost): boolean {
    const h = HOOK_INDEX[hook];
    const listed = (ifindex: number) => {
      if (ifindex === NO_DEVICE) return false;
      cost.lookups++;
      return this.judged.has(`${g}.${h}.${ifindex}`);
    };
    if (hook === 'input') return listed(inIf);
    if (hook === 'output') return listed(outIf);
    return listed(inIf) || listed(outIf);
  }

  private fieldVectors(
    g: number,
    h: number,
    meta: HookEntry,
    pp: PreparedPacket,
    inIf: number,
    outIf: number,
    cost: ClassifyCost,
  ): number[] {
    const p = pp.packet;
    const ids = [this.ctState[(g * 3 + h) * 256 + (p.ctState & 0xff)]];
    cost.lookups++;
    const lpm = (trie: LpmTrie, key: LpmKey) => {
      cost.lookups++;
      const v = trie.lookup(key.data);
      // Every table has its /0 entry, so a miss means the tables were not written whole.
      if (v === undefined) throw new Error(`classifier: no entry for key ${key.data.toString('hex')}`);
      return v;
    };
    if (meta.fields & FIELD.src)
      ids.push(lpm(this.addr, addrKey(g, h, ADDR_FIELD.src, p.family, pp.src, pp.src.length * 8)));
    if (meta.fields & FIELD.dst)
      ids.push(lpm(this.addr, addrKey(g, h, ADDR_FIELD.dst, p.family, pp.dst, pp.dst.length * 8)));
    if (meta.fields & (FIELD.dport | FIELD.sport)) {
      // Only tcp, udp and sctp headers are read for ports; other protocols' entries are /8 or /0.
      const ported = PORT_PROTOCOLS.includes(p.proto);
      if (ported && (p.sport === undefined || p.dport === undefined)) {
        throw new UsageError(`a protocol ${p.proto} packet carries ports; give it sport and dport`);
      }
      const port = (n: number | undefined) => (ported && n !== undefined ? n : 0);
      if (meta.fields & FIELD.dport) {
        ids.push(lpm(this.port, portKey(g, h, PORT_FIELD.dport, p.proto, port(p.dport), 24)));
      }
      if (meta.fields & FIELD.sport) {
        ids.push(lpm(this.port, portKey(g, h, PORT_FIELD.sport, p.proto, port(p.sport), 24)));
      }
    }
    const device = (field: number, ifindex: number, other: number) => {
      cost.lookups++;
      return this.devices.get(`${g}.${h}.${field}.${ifindex}`) ?? other;
    };
    if (meta.fields & FIELD.inDev) ids.push(device(DEV_FIELD.in, inIf, meta.inDevOther));
    if (meta.fields & FIELD.outDev) ids.push(device(DEV_FIELD.out, outIf, meta.outDevOther));
    return ids;
  }

  private search(
    g: number,
    h: number,
    meta: HookEntry,
    ids: readonly number[],
    pp: PreparedPacket,
    cost: ClassifyCost,
  ): Classification {
    const words = this.words[g];
    const vec = ids.map((id) => g * MAX_VECTORS + id);
    let lo = 0;
    let hi = meta.words - 1;
    for (const v of vec) {
      lo = Math.max(lo, this.vecLo[v]);
      hi = Math.min(hi, this.vecHi[v]);
    }
    // Where each vector's word `lo` sits in the pool; word w is `w - lo` further.
    const base = vec.map((v) => this.vecOff[v] - this.vecLo[v]);
    /** The first rule index still to be considered: past a matched skip, its target. */
    let from = 0;
    let w = lo;
    while (w <= hi) {
      let low = 0xffffffff;
      let high = 0xffffffff;
      for (const b of base) {
        low &= words[2 * (b + w)];
        high &= words[2 * (b + w) + 1];
      }
      cost.words++;
      [low, high] = w === from >>> 6 ? clearBelow(low >>> 0, high >>> 0, from & 63) : [low >>> 0, high >>> 0];
      let next = w + 1;
      while (low !== 0 || high !== 0) {
        const bit = low !== 0 ? ctz(low) : 32 + ctz(high);
        const i = w * 64 + bit;
        cost.candidates++;
        const rule = this.rules.get((g * 3 + h) * MAX_RULES + i);
        if (!rule) throw new Error(`classifier: vector bit ${i} names no rule`);
        if (rule.checks.every((c) => this.checkHolds(g, c, pp, cost))) {
          if (rule.action !== ACTION.skip) return decided(rule, i, cost);
          from = rule.skipTo;
          if (from >>> 6 === w) {
            [low, high] = clearBelow(low, high, from & 63);
            continue;
          }
          next = from >>> 6;
          break;
        }
        if (bit < 32) low = (low & (low - 1)) >>> 0;
        else high = (high & (high - 1)) >>> 0;
      }
      w = Math.max(next, lo);
    }
    return { verdict: meta.policy === 0 ? 'accept' : 'drop', rule: 'policy', cost };
  }

  private checkHolds(g: number, c: Check, pp: PreparedPacket, cost: ClassifyCost): boolean {
    const p = pp.packet;
    const masked = (x: number) => (x & c.mask) >>> 0 === c.value;
    const inSet = (kind: number, bytes: Buffer | undefined) => {
      if (!bytes) return false;
      cost.lookups++;
      return this.residual.lookup(residualKey(g, kind, c.arg, bytes, bytes.length * 8).data) === 1;
    };
    const port = (n: number | undefined) => (n === undefined ? undefined : Buffer.from([n >> 8, n & 0xff]));
    switch (c.op) {
      case CHECK.zone:
        return (p.zone ?? 0) === c.value;
      case CHECK.ctMark:
        return masked(p.mark ?? 0);
      case CHECK.packetMark:
        return masked(p.packetMark ?? 0);
      case CHECK.ctLabel:
        return masked(Number(((p.label ?? 0n) >> BigInt(32 * c.arg)) & 0xffffffffn));
      case CHECK.icmp:
        if (p.icmpType === undefined || (c.mask & 0xff00 && p.icmpCode === undefined)) return false;
        return masked(p.icmpType | ((p.icmpCode ?? 0) << 8));
      case CHECK.origSrc:
        return inSet(p.family, pp.origSrc);
      case CHECK.origDst:
        return inSet(p.family, pp.origDst);
      case CHECK.origSport:
        return inSet(RESIDUAL_KIND_PORT, port(p.origSport));
      case CHECK.origDport:
        return inSet(RESIDUAL_KIND_PORT, port(p.origDport));
      default:
        throw new Error(`classifier: unknown check op ${c.op}`);
    }
  }
}

function decided(rule: CompiledRule, index: number, cost: ClassifyCost): Classification {
  const out: Classification = { verdict: 'accept', rule: index, counter: rule.counter, cost };
  if (rule.action === ACTION.drop) out.verdict = 'drop';
  if (rule.action === ACTION.reject) {
    out.verdict = 'reject';
    out.rejectWith = REJECT_WITH[rule.rejectWith];
  }
  if (rule.action === ACTION.accept && (rule.commitFlags || rule.helper)) {
    const commit: CommitSettings = {};
    if (rule.commitFlags & COMMIT_MARK) commit.mark = { ...rule.commitMark };
    if (rule.commitFlags & COMMIT_LABEL) {
      commit.label = { value: labelOf(rule.commitLabel.value), mask: labelOf(rule.commitLabel.mask) };
    }
    if (rule.helper) commit.helper = HELPERS[rule.helper - 1];
    out.commit = commit;
  }
  return out;
}

/** Fresh maps with one compiled policy written and active. */
export function loadClassifier(c: CompiledPolicy, ifindexOf: (name: string) => number | null): ClassifierMaps {
  const maps = new ClassifierMaps(ifindexOf);
  maps.active = c.generation === 0 ? 1 : 0;
  maps.load(c);
  maps.activate(c.generation);
  return maps;
}
