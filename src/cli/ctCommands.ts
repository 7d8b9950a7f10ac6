// `tsct bpf ct list global` and `tsct bpf ct flush global`.
import { CtFilterOptions, parseCtFilter } from '../ct/ctFilter';
import { ctEntries, openCtTables } from '../ct/ctTables';
import { formatCilium, formatConntrack, toJson } from '../ct/ctFormat';
import { UsageError } from '../agent/options';
import { monotonicNs } from '../agent/state';
import { LineWriter } from './output';

export interface ListOptions extends CtFilterOptions {
  bpfRoot: string;
  output?: string;
  count?: boolean;
}

export async function ctList(o: ListOptions): Promise<void> {
  const format = o.output ?? 'cilium';
  if (!['cilium', 'json', 'conntrack'].includes(format)) throw new UsageError(`-o: '${format}' is not an output format; use json, conntrack, or leave it out for Cilium's format`);
  const filter = parseCtFilter(o);
  const tables = openCtTables(o.bpfRoot);
  const out = new LineWriter();
  const now = monotonicNs();
  let n = 0;
  try {
    for await (const { entry } of ctEntries(tables)) {
      if (!filter(entry)) continue;
      n++;
      if (o.count) continue;
      await out.line(format === 'json' ? JSON.stringify(toJson(entry, now)) : format === 'conntrack' ? formatConntrack(entry, now) : formatCilium(entry));
      if (out.gone) return;
    }
    if (o.count) await out.line(String(n));
    await out.flush();
  } finally {
    for (const t of tables) t.map.close();
  }
}

export async function ctFlush(o: ListOptions): Promise<void> {
  const filter = parseCtFilter(o);
  const tables = openCtTables(o.bpfRoot);
  try {
    let deleted = 0;
    for (const table of tables) {
      const doomed: Buffer[] = [];
      for await (const { key, entry } of ctEntries([table])) if (filter(entry)) doomed.push(Buffer.from(key));
      for (const k of doomed) if (table.map.delete(k)) deleted++;
    }
    process.stdout.write(`flushed ${deleted} connection${deleted === 1 ? '' : 's'}\n`);
  } finally {
    for (const t of tables) t.map.close();
  }
}
