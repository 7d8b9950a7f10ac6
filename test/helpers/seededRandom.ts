// Seeded randomness for tests that generate cases: the same seed, the same
// cases, so a failure names a seed that reproduces it.

/** mulberry32: small, seeded, good enough to pick test cases reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rand = () => number;
/** One of items. */
export const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)];
/** True with probability p. */
export const chance = (rand: Rand, p: number) => rand() < p;
