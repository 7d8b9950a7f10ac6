// Maglev lookup tables for the service load balancer (Eisenbud et al., NSDI 2016, Pseudocode 1), built the way
// Cilium's pkg/maglev builds them so that a node running tsct and a node running Cilium with the same seed, table
// size and backend names pick the same backend for the same flow hash. Every node must agree on the table without
// talking to the others, so everything here depends only on the backend names, weights, M and the seed: never on
// the order backends arrive in, nor on node-local ids (those are only what the table stores).
import { UsageError } from '../errors';
import { murmur3x64128 } from './murmur3';

/** The table sizes (M, all prime) that `--bpf-lb-maglev-table-size` accepts, as Cilium does. */
export const MAGLEV_TABLE_SIZES: readonly number[] = Object.freeze([
  251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
]);

/** Cilium's default `--bpf-lb-maglev-hash-seed`: base64 of 12 bytes. Every node of a cluster must use the same. */
export const DEFAULT_MAGLEV_HASH_SEED = 'JLfvgnHc2kaSUFaI';

const TABLE_SIZE_FLAG = '--bpf-lb-maglev-table-size';
const HASH_SEED_FLAG = '--bpf-lb-maglev-hash-seed';
const HASH_SEED_BYTES = 12;
// Weights are u16 in Cilium's backend model; the bound also keeps every counter below exact-integer doubles.
const MAX_WEIGHT = 0xffff;
// Keeps slot + skip inside the Int32Array positions of the fill loop (and the table within 4 GiB).
const MAX_TABLE_SIZE = 2 ** 30;

export interface MaglevBackend {
  /** The name the table is hashed and ordered by; it must be the same string on every node. */
  name: string;
  /** What the table stores: the node-local backend id (u32). */
  id: number;
  /** Relative share of the table, an integer 1..65535; 1 when absent. Leave weight-0 backends out instead. */
  weight?: number;
}

/** The three u32 seeds carried by the 12-byte `--bpf-lb-maglev-hash-seed`. */
export interface MaglevHashSeed {
  /** Bytes 0-3: the murmur3 seed the lookup tables are built with. */
  murmur: number;
  /** Bytes 4-7: first seed of the datapath's jhash of the flow tuple. */
  jhash0: number;
  /** Bytes 8-11: second seed of the datapath's jhash of the flow tuple. */
  jhash1: number;
}

/**
 * The default per-service M: the smallest allowed size that is at least 100 × backendCount (the paper's "M larger
 * than 100 × N" keeps every backend's share within 1% of the others'), the largest allowed size beyond that.
 */
export function maglevTableSizeFor(backendCount: number): number {
  if (!Number.isSafeInteger(backendCount) || backendCount < 0) {
    throw new RangeError(`Maglev backend count must be a non-negative integer, not ${backendCount}`);
  }
  const wanted = 100 * backendCount;
  for (const size of MAGLEV_TABLE_SIZES) {
    if (size >= wanted) return size;
  }
  return MAGLEV_TABLE_SIZES[MAGLEV_TABLE_SIZES.length - 1];
}

/** `--bpf-lb-maglev-table-size`: one of MAGLEV_TABLE_SIZES, in decimal. */
export function parseMaglevTableSize(text: string): number {
  const size = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!MAGLEV_TABLE_SIZES.includes(size)) {
    throw new UsageError(
      `${TABLE_SIZE_FLAG}: ${JSON.stringify(text)} is not an allowed Maglev table size; ` +
        `use one of ${MAGLEV_TABLE_SIZES.join(', ')}`,
    );
  }
  return size;
}

/**
 * `--bpf-lb-maglev-hash-seed`: standard base64 of exactly 12 bytes. Each 4-byte group is read big-endian, as
 * Cilium's maglev.UserConfig.ToConfig reads it, so the same seed string gives the same numbers as on Cilium nodes.
 */
export function parseMaglevHashSeed(text: string): MaglevHashSeed {
  const refuse = (why: string): never => {
    throw new UsageError(
      `${HASH_SEED_FLAG}: ${JSON.stringify(text)} ${why}; give base64 of ${HASH_SEED_BYTES} bytes, ` +
        `e.g. the default ${DEFAULT_MAGLEV_HASH_SEED} (make one with: head -c12 /dev/urandom | base64)`,
    );
  };
  // Buffer.from(..., 'base64') skips characters it does not know, so the strict shape is checked first.
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    return refuse('is not base64');
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== HASH_SEED_BYTES) {
    return refuse(`decodes to ${bytes.length} bytes, not ${HASH_SEED_BYTES}`);
  }
  return { murmur: bytes.readUInt32BE(0), jhash0: bytes.readUInt32BE(4), jhash1: bytes.readUInt32BE(8) };
}

/**
 * The Maglev lookup table of size m for these backends: m backend ids, each backend holding about m × weight / Σweight
 * slots (⌊m/N⌋ or ⌈m/N⌉ when no weights differ). `seed` is the murmur3 seed (MaglevHashSeed.murmur).
 * Throws RangeError for no backends, a duplicate name, a bad id or weight, an m that is not prime, or a bad seed.
 */
export function buildMaglevTable(backends: readonly MaglevBackend[], m: number, seed: number): Uint32Array {
  if (backends.length === 0) throw new RangeError('Maglev table: no backends');
  if (!Number.isInteger(m) || m > MAX_TABLE_SIZE || !isPrime(m)) {
    throw new RangeError(`Maglev table size must be a prime no larger than ${MAX_TABLE_SIZE}, not ${m}`);
  }
  if (!isU32(seed)) throw new RangeError(`Maglev murmur3 seed must be a u32, not ${seed}`);

  const ordered = orderByName(backends);
  const count = ordered.length;
  const ids = new Uint32Array(count);
  const weights = new Float64Array(count);
  // Where each backend's permutation (offset + j × skip) mod m stands: its next candidate slot. Computing the
  // permutation as it is walked keeps memory at O(N) instead of Cilium's N × m scratch array.
  const position = new Int32Array(count);
  const skip = new Int32Array(count);
  const bigM = BigInt(m);
  const bigMMinus1 = BigInt(m - 1);
  let weightSum = 0;
  for (let i = 0; i < count; i++) {
    const { backend, utf8 } = ordered[i];
    if (!isU32(backend.id)) throw new RangeError(`Maglev backend ${backend.name}: id must be a u32, not ${backend.id}`);
    const weight = backend.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      throw new RangeError(
        `Maglev backend ${backend.name}: weight must be an integer 1..${MAX_WEIGHT} (leave weight-0 backends out), not ${weight}`,
      );
    }
    ids[i] = backend.id;
    weights[i] = weight;
    weightSum += weight;
    // The remainders must be exact on the full 64 bits of murmur3 x64 128's halves.
    const [h1, h2] = murmur3x64128(utf8, seed);
    position[i] = Number(h1 % bigM);
    skip[i] = Number(h2 % bigMMinus1) + 1;
  }

  // Envoy-style weights (envoyproxy/envoy#2982, as in Cilium): backends still take turns in name order, but a turn
  // is passed on while the backend's counter is ahead of (table slots filled so far + 1) × its weight; each slot it
  // takes pushes its counter on by Σweight. With equal weights no turn is ever passed on: the plain algorithm.
  // Cilium switches this on when Σweight / N > 1 (integer division); switching it on whenever weights differ gives
  // the same table in every case Cilium weighs, and honours weights such as 1, 1, 2 that Cilium's check ignores.
  const weighted = weights.some((w) => w !== weights[0]);
  const weightCounter = new Float64Array(count);
  for (let i = 0; i < count; i++) weightCounter[i] = weights[i] / count;

  const table = new Uint32Array(m);
  const taken = new Uint8Array(m);
  for (let n = 0; n < m; n++) {
    let i = n % count;
    if (weighted) {
      // Math.floor: Cilium compares against uint64(counter), which truncates.
      while ((n + 1) * weights[i] < Math.floor(weightCounter[i])) i = i + 1 === count ? 0 : i + 1;
      weightCounter[i] += weightSum;
    }
    const step = skip[i];
    let slot = position[i];
    while (taken[slot] !== 0) {
      slot += step;
      if (slot >= m) slot -= m;
    }
    taken[slot] = 1;
    table[slot] = ids[i];
    slot += step;
    position[i] = slot >= m ? slot - m : slot;
  }
  return table;
}

/** The share (0..1) of slots whose backend differs between two tables of the same size. */
export function maglevDisruption(a: Uint32Array, b: Uint32Array): number {
  if (a.length !== b.length) {
    throw new RangeError(`Maglev tables differ in size (${a.length} and ${b.length}); compare tables of one size`);
  }
  if (a.length === 0) return 0;
  let changed = 0;
  for (let slot = 0; slot < a.length; slot++) {
    if (a[slot] !== b[slot]) changed++;
  }
  return changed / a.length;
}

interface NamedBackend {
  backend: MaglevBackend;
  utf8: Uint8Array;
}

// Sorted by the UTF-8 bytes of the name, which is Go's string order (a plain JS sort compares UTF-16 code units and
// disagrees for characters beyond U+FFFF), so tsct and Cilium walk backends in the same order.
function orderByName(backends: readonly MaglevBackend[]): NamedBackend[] {
  const encoder = new TextEncoder();
  const named = backends.map((backend) => ({ backend, utf8: encoder.encode(backend.name) }));
  named.sort((a, b) => compareBytes(a.utf8, b.utf8));
  for (let i = 1; i < named.length; i++) {
    if (compareBytes(named[i - 1].utf8, named[i].utf8) === 0) {
      throw new RangeError(`Maglev table: backend name ${JSON.stringify(named[i].backend.name)} appears twice`);
    }
  }
  return named;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) {
    if (n % d === 0) return false;
  }
  return true;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}
