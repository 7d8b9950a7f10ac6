// `tsct bpf ct list global` and `tsct bpf ct flush global`.
import { CtFilterOptions, parseCtFilter } from '../ct/ctFilter';
import { forEachCt, openCtTables } from '../ct/ctTables';
import { formatCilium, formatConntrack, toJson } from '../ct/ctFormat';
import { UsageError } from '../agent/options';
import { monotonicNs } from '../agent/state';
import { LineWriter } from './output';
import { CtEntry } from '../ct/ctEntry';
import { natKeysOf } from '../nat/natEntry';
import { openPinnedMap } from '../ct/ctTables';

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
  const now = Number(monotonicNs());
  let n = 0;
  try {
    const render = format === 'json' ? (e: CtEntry) => JSON.stringify(toJson(e, now)) : format === 'conntrack' ? (e: CtEntry) => formatConntrack(e, now) : formatCilium;
    await forEachCt(tables, (entry) => {
      if (!filter(entry)) return;
      n++;
      if (!o.count) out.line(render(entry));
    }, () => out.gone);
    if (o.count) out.line(String(n));
    out.flush();
  } finally {
    for (const t of tables) t.map.close();
  }
}

/** Deletes the matching connections and, with them, their NAT entries. */
export async function ctFlush(o: ListOptions): Promise<void> {
  const filter = parseCtFilter(o);
  const tables = openCtTables(o.bpfRoot);
  const nat = { 4: openPinnedMap(o.bpfRoot, 'tsct_snat_v4_external'), 6: openPinnedMap(o.bpfRoot, 'tsct_snat_v6_external') };
  try {
    let deleted = 0;
    let natDeleted = 0;
    for (const table of tables) {
      const doomed: Array<[Buffer, Buffer[]]> = [];
      await forEachCt([table], (e, _t, keys, at) => {
        if (filter(e)) doomed.push([Buffer.from(keys.subarray(at, at + table.map.keySize)), natKeysOf(e)]);
      });
      for (const [k, natKeys] of doomed) {
        if (table.map.delete(k)) deleted++;
        for (const nk of natKeys) if (nat[table.family].delete(nk)) natDeleted++;
      }
    }
    process.stdout.write(`flushed ${deleted} connection${deleted === 1 ? '' : 's'}${natDeleted ? ` and ${natDeleted} NAT entries` : ''}\n`);
  } finally {
    for (const t of tables) t.map.close();
    nat[4].close();
    nat[6].close();
  }
}
