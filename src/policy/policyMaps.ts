// The firewall's rule set in the datapath's maps (bpf/include/policy.h): a
// compiled policy written as the generation beside the live one, swapped in
// with one write of tsct_fw_control, and the old generation's entries deleted
// after, so that no packet sees half a rule set. The big arrays (rules,
// vectors, their words, the ct_state table) are written through mmap: 10,000
// rules are a few memory copies, not a syscall per entry.
import { ENUMS, StructView } from '../bpf/layouts';
import { FW_MAPS, FwMapName } from '../datapath/tables';
import { UsageError } from '../errors';
import { flattenPolicy, FlatPolicy } from './flatten';
import {
  addrKey,
  CompiledPolicy,
  compilePolicy,
  Generation,
  LpmKey,
  MAX_COUNTERS,
  MAX_RULES,
  MAX_VECTOR_WORDS,
  MAX_VECTORS,
  portKey,
  residualKey,
} from './compile';
import { HOOKS, Hook, PolicyRuleSet } from './policyRule';
import { expandSecurityGroups } from './securityGroup';

/** The maps as the binding gives them (BpfMap), as much of them as this writer uses. */
export interface FwMapLike {
  update(key: Buffer, value: Buffer | Buffer[]): void;
  delete(key: Buffer): boolean;
  lookup(key: Buffer): Buffer | null;
  lookupPerCpu(key: Buffer): Buffer[] | null;
  keys(): Iterable<Buffer>;
  mmap(): ArrayBuffer;
}

export type FwMaps = Record<FwMapName, FwMapLike>;
export { FW_MAPS };

const CTL = ENUMS.fw_control_flag;
const HOOKS_N = ENUMS.fw_limit.FW_HOOKS;
/** Per-CPU values are rounded up to 8 bytes by the kernel; a counter is 16. */
const COUNTER_BYTES = StructView.sizeOf('fw_counter');

export interface FwControl {
  generation: Generation;
  epoch: number;
  active: boolean;
  keepEstablished: boolean;
  /** Bit h: hook h has rules or a drop policy. */
  hooks: number;
}

/** A rules file's (or an import's) rule set, through security groups and jumps, as the compiler takes it. */
export function flatPolicyOf(ruleSet: PolicyRuleSet): FlatPolicy {
  return flattenPolicy(expandSecurityGroups(ruleSet));
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function lpmKey(k: LpmKey): Buffer {
  return Buffer.concat([u32(k.prefixLen), k.data]);
}

/** What the live rule set decided per rule: the counters summed over CPUs. */
export interface RuleCounters {
  /** By counter index (the compiled policy's counter origins). */
  rules: Array<{ packets: bigint; bytes: bigint }>;
  /** By hook: what its default policy decided. */
  policy: Record<Hook, { packets: bigint; bytes: bigint }>;
}

export class PolicyWriter {
  constructor(
    private readonly maps: FwMaps,
    /** How long a packet that read the old generation may still be using it (the kernel's RCU grace). */
    private readonly graceMs = 10,
  ) {}

  control(): FwControl {
    const raw = this.maps.tsct_fw_control.lookup(u32(0));
    const v = new StructView('fw_control', raw ?? Buffer.alloc(StructView.sizeOf('fw_control')));
    const flags = v.u('flags');
    return {
      generation: (v.u('generation') & 1) as Generation,
      epoch: v.u('epoch'),
      active: (flags & CTL.FW_CTL_ACTIVE) !== 0,
      keepEstablished: (flags & CTL.FW_CTL_KEEP_ESTABLISHED) !== 0,
      hooks: v.u('hooks'),
    };
  }

  private writeControl(c: FwControl): void {
    const v = StructView.alloc('fw_control')
      .set('generation', c.generation)
      .set('epoch', c.epoch >>> 0)
      .set('flags', (c.active ? CTL.FW_CTL_ACTIVE : 0) | (c.keepEstablished ? CTL.FW_CTL_KEEP_ESTABLISHED : 0))
      .set('hooks', c.hooks);
    this.maps.tsct_fw_control.update(u32(0), v.buf);
  }

  /**
   * Compiles and swaps in a flat policy. A policy the compiler refuses changes nothing (UsageError).
   * Resolves to the compiled policy, whose counter origins name what `counters()` counts.
   */
  async apply(
    flat: FlatPolicy,
    ifindexOf: (name: string) => number | null,
    devices?: readonly string[],
  ): Promise<CompiledPolicy> {
    const live = this.control();
    const target: Generation = live.active ? ((1 - live.generation) as Generation) : live.generation;
    const compiled = compilePolicy(flat, { generation: target, ifindexOf, devices });
    this.clearGeneration(target);
    this.write(compiled);
    let hooks = 0;
    for (const h of compiled.hooks) if (h.rules.length > 0 || h.policy !== 0) hooks |= 1 << h.index;
    this.writeControl({
      generation: target,
      epoch: live.epoch + 1,
      active: true,
      keepEstablished: flat.keepEstablished,
      hooks,
    });
    if (live.active) {
      await new Promise((r) => setTimeout(r, this.graceMs));
      this.clearGeneration(live.generation);
    }
    return compiled;
  }

  /** No rules: every hook accepts, connections are committed as without a firewall. */
  async flush(): Promise<void> {
    const live = this.control();
    this.writeControl({ ...live, epoch: live.epoch + 1, active: false, hooks: 0 });
    await new Promise((r) => setTimeout(r, this.graceMs));
    this.clearGeneration(0);
    this.clearGeneration(1);
  }

  /** The live generation's counters, for `count` origin rules. */
  counters(count: number): RuleCounters {
    const g = this.control().generation;
    const sum = (bufs: Buffer[] | null) => {
      let packets = 0n;
      let bytes = 0n;
      for (const b of bufs ?? []) {
        packets += b.readBigUInt64LE(0);
        bytes += b.readBigUInt64LE(8);
      }
      return { packets, bytes };
    };
    const rules = [];
    for (let i = 0; i < count; i++) rules.push(sum(this.maps.tsct_fw_counters.lookupPerCpu(u32(g * MAX_COUNTERS + i))));
    const policy = {} as RuleCounters['policy'];
    HOOKS.forEach((h, i) => {
      policy[h] = sum(this.maps.tsct_fw_policy_counters.lookupPerCpu(u32(g * HOOKS_N + i)));
    });
    return { rules, policy };
  }

  /** Deletes a generation's hash and trie entries and zeroes its counters; its arrays are overwritten on use. */
  private clearGeneration(g: Generation): void {
    const genAt = (map: FwMapLike, at: number) => {
      const doomed = [...map.keys()].filter((k) => k[at] === g);
      for (const k of doomed) map.delete(k);
    };
    genAt(this.maps.tsct_fw_addr, 4);
    genAt(this.maps.tsct_fw_port, 4);
    genAt(this.maps.tsct_fw_residual, 4);
    genAt(this.maps.tsct_fw_devices, 0);
    genAt(this.maps.tsct_fw_judged, 0);
    const empty = Buffer.alloc(StructView.sizeOf('fw_hook'));
    for (let h = 0; h < HOOKS_N; h++) this.maps.tsct_fw_hooks.update(u32(g * HOOKS_N + h), empty);
  }

  private zeroCounters(g: Generation, count: number): void {
    const cpus = this.maps.tsct_fw_policy_counters.lookupPerCpu(u32(0))?.length ?? 1;
    const zero = Array.from({ length: cpus }, () => Buffer.alloc(COUNTER_BYTES));
    for (let i = 0; i < count; i++) this.maps.tsct_fw_counters.update(u32(g * MAX_COUNTERS + i), zero);
    for (let h = 0; h < HOOKS_N; h++) this.maps.tsct_fw_policy_counters.update(u32(g * HOOKS_N + h), zero);
  }

  private write(c: CompiledPolicy): void {
    const g = c.generation;
    if (c.counters.length > MAX_COUNTERS) {
      throw new UsageError(`the rule set has ${c.counters.length} rules to count; the datapath counts ${MAX_COUNTERS}`);
    }
    this.zeroCounters(g, c.counters.length);
    // Arrays through mmap: the ct_state table (u32 at a stride of 8), vectors, words, rules.
    const ctState = new DataView(this.maps.tsct_fw_ct_state.mmap());
    const rules = Buffer.from(this.maps.tsct_fw_rules.mmap());
    const RULE = StructView.sizeOf('fw_rule');
    for (const h of c.hooks) {
      const base = (g * HOOKS_N + h.index) * 256;
      for (let s = 0; s < 256; s++) ctState.setUint32((base + s) * 8, h.ctState[s], true);
      h.rules.forEach((r, i) => {
        const v = new StructView(
          'fw_rule',
          rules.subarray(((g * HOOKS_N + h.index) * MAX_RULES + i) * RULE).subarray(0, RULE),
        );
        v.buf.fill(0);
        v.set('action', r.action)
          .set('reject_with', r.rejectWith)
          .set('helper', r.helper)
          .set('n_checks', r.checks.length)
          .set('skip_to', r.skipTo)
          .set('counter', r.counter)
          .set('commit_flags', r.commitFlags)
          .set('commit_mark_value', r.commitMark.value >>> 0)
          .set('commit_mark_mask', r.commitMark.mask >>> 0);
        for (let k = 0; k < 4; k++) {
          v.set('commit_label_value', (r.commitLabel.value[k] ?? 0) >>> 0, k);
          v.set('commit_label_mask', (r.commitLabel.mask[k] ?? 0) >>> 0, k);
        }
        const checks = v.bytes('checks');
        r.checks.forEach((ck, k) => {
          checks.writeUInt32LE(ck.op >>> 0, k * 16);
          checks.writeUInt32LE(ck.arg >>> 0, k * 16 + 4);
          checks.writeUInt32LE(ck.value >>> 0, k * 16 + 8);
          checks.writeUInt32LE(ck.mask >>> 0, k * 16 + 12);
        });
      });
    }
    const vec = new DataView(this.maps.tsct_fw_vectors.mmap());
    const v = c.vectors;
    for (let id = 0; id < v.count; id++) {
      const at = (g * MAX_VECTORS + id) * 8;
      vec.setUint16(at, v.lo[id], true);
      vec.setUint16(at + 2, v.hi[id], true);
      vec.setUint32(at + 4, v.off[id], true);
    }
    if (v.words.length > MAX_VECTOR_WORDS)
      throw new UsageError('the rule set needs more vector words than the datapath holds');
    new BigUint64Array(this.maps.tsct_fw_vector_words.mmap()).set(v.words, g * MAX_VECTOR_WORDS);
    // Tries and hashes, one entry each.
    for (const e of c.addr) {
      this.maps.tsct_fw_addr.update(
        lpmKey(addrKey(g, e.hook, e.field, e.family, e.prefix, e.prefixLen)),
        u32(e.vector),
      );
    }
    for (const e of c.port) {
      this.maps.tsct_fw_port.update(lpmKey(portKey(g, e.hook, e.field, e.proto, e.port, e.prefixLen)), u32(e.vector));
    }
    for (const e of c.residual) {
      this.maps.tsct_fw_residual.update(
        lpmKey(residualKey(g, e.kind, e.set, e.prefix, e.prefixLen)),
        Buffer.from([e.accept]),
      );
    }
    for (const e of c.devices) {
      const k = StructView.alloc('fw_device_key').set('gen', g).set('hook', e.hook).set('field', e.field);
      k.set('ifindex', e.ifindex);
      this.maps.tsct_fw_devices.update(k.buf, u32(e.vector));
    }
    for (const e of c.judged) {
      const k = StructView.alloc('fw_judged_key').set('gen', g).set('hook', e.hook).set('ifindex', e.ifindex);
      this.maps.tsct_fw_judged.update(k.buf, Buffer.from([1]));
    }
    // The hooks last: a hook entry is what makes the generation's tables reachable.
    for (const h of c.hooks) {
      const hv = StructView.alloc('fw_hook')
        .set('n_rules', h.rules.length)
        .set('words', h.words)
        .set('policy', h.policy)
        .set('judge_all', h.judgeAll ? 1 : 0)
        .set('fields', h.fields)
        .set('in_dev_other', h.inDevOther)
        .set('out_dev_other', h.outDevOther);
      this.maps.tsct_fw_hooks.update(u32(g * HOOKS_N + h.index), hv.buf);
    }
  }
}
