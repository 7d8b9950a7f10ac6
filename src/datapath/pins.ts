// Pinned maps that outlive the agent: reuse them when they match, migrate
// them when only their size changed, refuse (saying what differs) when their
// layout changed. Nothing pinned is ever dropped silently.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, BpfObject, MapType, isBpfError, mapTypeName } from 'libbpf-ts';

export interface PinPlanEntry {
  map: string;
  path: string;
  action: 'create' | 'reuse' | 'migrate';
  /** For migrate: the pinned map's size. */
  fromEntries?: number;
  toEntries?: number;
}

export class PinnedLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PinnedLayoutError';
  }
}

/** Decides, per map, what to do with what is pinned, and wires reuse into the object (before load). */
export function planPins(obj: BpfObject, root: string, maps: readonly string[]): PinPlanEntry[] {
  const desc = new Map(obj.maps.map((m) => [m.name, m]));
  const plan: PinPlanEntry[] = [];
  for (const name of maps) {
    const want = desc.get(name);
    if (!want) throw new Error(`the datapath object has no map ${name}`);
    const p = path.join(root, name);
    if (!fs.existsSync(p)) {
      plan.push({ map: name, path: p, action: 'create' });
      continue;
    }
    const pinned = BpfMap.openPinned(p);
    const have = pinned.info();
    pinned.close();
    const diffs: string[] = [];
    if (have.type !== want.type)
      diffs.push(`type ${mapTypeName(have.type)} (pinned) vs ${want.typeName} (this version)`);
    if (have.keySize !== want.keySize) diffs.push(`key size ${have.keySize} vs ${want.keySize}`);
    if (have.valueSize !== want.valueSize) diffs.push(`value size ${have.valueSize} vs ${want.valueSize}`);
    if (have.flags !== want.flags) diffs.push(`flags ${have.flags} vs ${want.flags}`);
    if (diffs.length) {
      throw new PinnedLayoutError(
        `pinned map ${p} was made by a version of tsct with another layout (${diffs.join(', ')}); ` +
          `its entries cannot be carried over: run 'tsct uninstall --bpf-root ${root}' to start afresh, or run the version that made it`,
      );
    }
    if (have.maxEntries !== want.maxEntries) {
      plan.push({ map: name, path: p, action: 'migrate', fromEntries: have.maxEntries, toEntries: want.maxEntries });
      continue;
    }
    obj.reusePinnedMap(name, p);
    plan.push({ map: name, path: p, action: 'reuse' });
  }
  return plan;
}

export interface MigrationResult {
  map: string;
  moved: number;
  dropped: number;
}

/**
 * After load: copies the entries of each map to migrate from its pinned
 * predecessor, then pins the new map in its place; pins the created ones.
 */
export async function applyPins(obj: BpfObject, plan: PinPlanEntry[]): Promise<MigrationResult[]> {
  const results: MigrationResult[] = [];
  for (const step of plan) {
    const map = obj.map(step.map);
    try {
      if (step.action === 'migrate') {
        const old = BpfMap.openPinned(step.path);
        try {
          // A ring buffer holds events in flight, not state: a resized one starts empty.
          results.push({
            map: step.map,
            ...(old.type === MapType.ringbuf ? { moved: 0, dropped: 0 } : await copyEntries(old, map)),
          });
        } finally {
          old.close();
        }
        // Replace the pin: the old map lives on only while attached programs hold it.
        fs.unlinkSync(step.path);
        map.pin(step.path);
      } else if (step.action === 'create') {
        map.pin(step.path);
      }
    } finally {
      map.close();
    }
  }
  return results;
}

async function copyEntries(from: BpfMap, to: BpfMap): Promise<{ moved: number; dropped: number }> {
  const isArray = to.type === MapType.array || to.type === MapType.percpu_array;
  let moved = 0;
  let dropped = 0;
  for await (const chunk of from.batches({ chunkSize: 8192 })) {
    let keys = chunk.keys;
    let values = chunk.values;
    let n = chunk.count;
    if (isArray) {
      // Only the indices the new array has.
      const keep: number[] = [];
      for (let i = 0; i < n; i++) if (chunk.key(i).readUInt32LE() < to.maxEntries) keep.push(i);
      dropped += n - keep.length;
      keys = Buffer.concat(keep.map((i) => chunk.key(i)));
      values = Buffer.concat(keep.map((i) => chunk.value(i)));
      n = keep.length;
    }
    if (!n) continue;
    try {
      moved += await to.updateBatch(keys, values);
    } catch (e) {
      if (!isBpfError(e, 'E2BIG') && !isBpfError(e, 'ENOMEM')) throw e;
      // The new map is smaller than what was live: keep what fits.
      const fitted = Number(/after (\d+) of/.exec((e as Error).message)?.[1] ?? 0);
      moved += fitted;
      dropped += n - fitted;
    }
  }
  return { moved, dropped };
}

/** Removes every pin under root that this version of tsct makes, and the folder when it is empty. */
export function removePins(root: string, maps: readonly string[]): string[] {
  const removed: string[] = [];
  for (const name of maps) {
    const p = path.join(root, name);
    if (fs.existsSync(p)) {
      fs.unlinkSync(p);
      removed.push(p);
    }
  }
  try {
    fs.rmdirSync(root);
  } catch {
    // Not empty (someone else's pins) or already gone.
  }
  return removed;
}
