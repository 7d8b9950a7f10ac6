// Runs the in-kernel GC (SEC("syscall") tsct_gc) and decodes what it found.
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
  /** NAT entries kept, by family. */
  natAlive: { 4: number; 6: number };
  scanned: number;
  deleted: number;
  alive: number;
  durationNs: number;
}

/** One sweep of every table. `nowNs` overrides the kernel's clock (tests). */
export async function gcSweep(prog: BpfProgram, nowNs?: bigint): Promise<GcResult> {
  const args = StructView.alloc('gc_args');
  if (nowNs !== undefined) args.set('now_ns', nowNs);
  const start = process.hrtime.bigint();
  const { ctx } = await prog.run(args.buf);
  const durationNs = Number(process.hrtime.bigint() - start);
  const out = new StructView('gc_args', ctx!);
  const statsAt = STRUCTS.gc_args.fields.stats.offset;
  const size = STRUCTS.gc_table_stats.size;
  const tables = GC_TABLES.map(({ table, map, family, proto }) => {
    const s = new StructView('gc_table_stats', out.buf.subarray(statsAt + table * size, statsAt + (table + 1) * size));
    const byState = (f: 'alive_by_state' | 'deleted_by_state') => {
      const r: Record<string, number> = {};
      if (proto !== 'TCP') return r;
      for (const [code, name] of TCP_STATE_NAMES) {
        if (code >= ENUMS.tcp_ct_state.TCP_CT_MAX) continue;
        const n = s.u(f, code);
        if (n) r[name] = n;
      }
      return r;
    };
    return {
      map,
      family,
      proto,
      scanned: s.u('scanned'),
      deleted: s.u('deleted'),
      alive: s.u('alive'),
      aliveByState: byState('alive_by_state'),
      deletedByState: byState('deleted_by_state'),
    } as GcTableResult;
  });
  const sum = (k: 'scanned' | 'deleted' | 'alive') => tables.reduce((a, t) => a + t[k], 0);
  return {
    tables,
    scanned: sum('scanned'),
    deleted: sum('deleted'),
    alive: sum('alive'),
    natDeleted: out.u('nat_deleted', 0) + out.u('nat_deleted', 1),
    natOrphans: out.u('nat_orphans', 0) + out.u('nat_orphans', 1),
    natAlive: { 4: out.u('nat_alive', 0), 6: out.u('nat_alive', 1) },
    durationNs,
  };
}
