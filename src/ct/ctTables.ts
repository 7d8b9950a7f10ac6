// The connection tables as the CLI sees them: opened from their pins and
// streamed in chunks, so that a million entries never sit in memory at once.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, BpfProgram } from 'libbpf-ts';
import { CT_TABLES, CtMapName } from '../datapath/tables';
import { CtEntry, Family, decodeCtEntryAt } from './ctEntry';
import { UsageError } from '../errors';

/** Opens a pinned map of root, with the one-line error users expect when nothing is there. */
export function openPinnedMap(root: string, name: string): BpfMap {
  return BpfMap.openPinned(pinnedPath(root, name));
}

/** Opens a program the agent pinned under root (a SEC("syscall") program the CLI runs). */
export function openPinnedProgram(root: string, name: string): BpfProgram {
  return BpfProgram.openPinned(pinnedPath(root, name));
}

function pinnedPath(root: string, name: string): string {
  const p = path.join(root, name);
  if (!fs.existsSync(p)) {
    throw new UsageError(
      `no tsct state under ${root}: is the agent running? ` +
        '(start it with tsct agent --devices ..., or point --bpf-root at its folder)',
    );
  }
  return p;
}

export interface CtTable {
  name: CtMapName;
  family: Family;
  map: BpfMap;
}

export function openCtTables(root: string): CtTable[] {
  return CT_TABLES.map((t) => ({ name: t.map, family: t.family, map: openPinnedMap(root, t.map) }));
}

/**
 * Calls `each` for every entry of every table, with its key's offset in
 * `keys` for deletes. One await per chunk, and nothing kept between entries:
 * a million entries list in a couple of seconds, in little memory.
 */
export async function forEachCt(
  tables: CtTable[],
  each: (entry: CtEntry, table: CtTable, keys: Buffer, keyOffset: number) => void,
  /** Checked after each chunk: true ends the walk (the reader went away). */
  stop: () => boolean = () => false,
  chunkSize = 16384,
): Promise<void> {
  for (const table of tables) {
    for await (const chunk of table.map.batches({ chunkSize })) {
      const ks = chunk.keySize;
      const vs = chunk.valueStride;
      for (let i = 0; i < chunk.count; i++)
        each(decodeCtEntryAt(table.family, chunk.keys, i * ks, chunk.values, i * vs), table, chunk.keys, i * ks);
      if (stop()) return;
    }
  }
}
