// Runs the in-kernel GC (SEC("syscall") tsct_gc) and decodes what it found.
import * as os from 'node:os';
import { BpfProgram } from 'libbpf-ts';
import { ENUMS, STRUCTS, StructView } from '../bpf/layouts';
import { TCP_STATE_NAMES } from '../ct/ctEntry';

export const GC_TABLES = [
  { table: ENUMS.ct_table.CT_TABLE_TCP4, map: 'tsct_ct4_global', family: 4, proto: 'TCP' },
  { table: ENUMS.ct_table.CT_TABLE_ANY4, map: 'tsct_ct_any4_global', family: 4, proto: 'non-TCP' },
  { table: ENUMS.ct_table.CT_TABLE_TCP6, map: 'tsct_ct6_global', family: 6, proto: 'TCP' },
  { table: ENUMS.ct_table.CT_TABLE_ANY6, map: 'tsct_ct_any6_global', family: 6, proto: 'non-TCP' },
] as const;

export interface GcTableResult {
  map: string;
  family: 4 | 6;
  proto: 'TCP' | 'non-TCP';
  scanned: number;
  deleted: number;
  alive: number;
  /** TCP tables: by state name. */
  aliveByState: Record<string, number>;
  deletedByState: Record<string, number>;
}

export interface GcResult {
  tables: GcTableResult[];
  /** NAT entries removed with their connection, and orphans (no connection) removed. */
  natDeleted: number;
  natOrphans: number;
  /** Lost NAT entries of live connections put back. */
  natRecreated: number;
  /** NAT entries kept, by family. */
  natAlive: { 4: number; 6: number };
  scanned: number;
  deleted: number;
  alive: number;
  durationNs: number;
}

/** Sweeps in parallel: one per CPU, each over a shard of the connections. */
export const DEFAULT_GC_SHARDS = Math.max(1, Math.min(os.availableParallelism(), 8));

async function sweepShard(
  prog: BpfProgram,
  shard: number,
  shards: number,
  nowNs?: bigint,
): Promise<StructView<'gc_args'>> {
  const args = StructView.alloc('gc_args');
  if (nowNs !== undefined) args.set('now_ns', nowNs);
  args.set('shard', shard).set('shards', shards);
  const { ctx } = await prog.run(args.buf);
  return new StructView('gc_args', ctx!);
}

/**
 * One sweep of every table, in `shards` parallel runs of the program (the
 * kernel deletes under per-bucket locks, so the shards do not wait on each
 * other). `nowNs` overrides the kernel's clock (tests).
 */
export async function gcSweep(prog: BpfProgram, nowNs?: bigint, shards = DEFAULT_GC_SHARDS): Promise<GcResult> {
  const start = process.hrtime.bigint();
  const outs = await Promise.all(Array.from({ length: shards }, (_, i) => sweepShard(prog, i, shards, nowNs)));
  const durationNs = Number(process.hrtime.bigint() - start);
  const statsAt = STRUCTS.gc_args.fields.stats.offset;
  const size = STRUCTS.gc_table_stats.size;
  const tables = GC_TABLES.map(({ table, map, family, proto }) => {
    const views = outs.map(
      (out) => new StructView('gc_table_stats', out.buf.subarray(statsAt + table * size, statsAt + (table + 1) * size)),
    );
    const sum = (f: 'scanned' | 'deleted' | 'alive') => views.reduce((a, v) => a + v.u(f), 0);
    const byState = (f: 'alive_by_state' | 'deleted_by_state') => {
      const r: Record<string, number> = {};
      if (proto !== 'TCP') return r;
      for (const [code, name] of TCP_STATE_NAMES) {
        if (code >= ENUMS.tcp_ct_state.TCP_CT_MAX) continue;
        const n = views.reduce((a, v) => a + v.u(f, code), 0);
        if (n) r[name] = n;
      }
      return r;
    };
    return {
      map,
      family,
      proto,
      scanned: sum('scanned'),
      deleted: sum('deleted'),
      alive: sum('alive'),
      aliveByState: byState('alive_by_state'),
      deletedByState: byState('deleted_by_state'),
    } as GcTableResult;
  });
  const total = (k: 'scanned' | 'deleted' | 'alive') => tables.reduce((a, t) => a + t[k], 0);
  const acrossShards = (f: 'nat_deleted' | 'nat_orphans', i: number) => outs.reduce((a, o) => a + o.u(f, i), 0);
  return {
    tables,
    scanned: total('scanned'),
    deleted: total('deleted'),
    alive: total('alive'),
    natDeleted: acrossShards('nat_deleted', 0) + acrossShards('nat_deleted', 1),
    natOrphans: acrossShards('nat_orphans', 0) + acrossShards('nat_orphans', 1),
    natRecreated: outs.reduce((a, o) => a + o.u('nat_recreated'), 0),
    // Shard 0 sweeps the NAT tables.
    natAlive: { 4: outs[0].u('nat_alive', 0), 6: outs[0].u('nat_alive', 1) },
    durationNs,
  };
}
