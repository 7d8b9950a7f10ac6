// murmur3 x64 128 (Austin Appleby's MurmurHash3_x64_128), the hash Maglev
// tables are built with, as Cilium builds them: the same backend name and
// seed give the same table on every node. With BigInt for the 64-bit words:
// about twenty times faster than the pure-JS library it replaces here, which
// emulates 64-bit words with arrays (a table of 1000 backends hashes 1000
// names each time it is rebuilt).
const MASK64 = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

const mul = (a: bigint, b: bigint) => (a * b) & MASK64;
const add = (a: bigint, b: bigint) => (a + b) & MASK64;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & MASK64;

function fmix(k: bigint): bigint {
  k ^= k >> 33n;
  k = mul(k, 0xff51afd7ed558ccdn);
  k ^= k >> 33n;
  k = mul(k, 0xc4ceb9fe1a85ec53n);
  k ^= k >> 33n;
  return k;
}

/** Little-endian 64-bit word of `n` bytes (up to 8) of b from `at`. */
function le64(b: Uint8Array, at: number, n: number): bigint {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < n && i < 4; i++) lo |= b[at + i] << (8 * i);
  for (let i = 4; i < n; i++) hi |= b[at + i] << (8 * (i - 4));
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** The two 64-bit halves (h1, h2) of murmur3 x64 128 of `data` with a 32-bit seed. */
export function murmur3x64128(data: Uint8Array, seed: number): [bigint, bigint] {
  let h1 = BigInt(seed >>> 0);
  let h2 = h1;
  const blocks = data.length >> 4;
  for (let i = 0; i < blocks; i++) {
    let k1 = le64(data, i * 16, 8);
    let k2 = le64(data, i * 16 + 8, 8);
    k1 = mul(rotl(mul(k1, C1), 31n), C2);
    h1 ^= k1;
    h1 = add(mul(add(rotl(h1, 27n), h2), 5n), 0x52dce729n);
    k2 = mul(rotl(mul(k2, C2), 33n), C1);
    h2 ^= k2;
    h2 = add(mul(add(rotl(h2, 31n), h1), 5n), 0x38495ab5n);
  }
  const tail = data.length & 15;
  const at = blocks * 16;
  if (tail > 8) h2 ^= mul(rotl(mul(le64(data, at + 8, tail - 8), C2), 33n), C1);
  if (tail > 0) h1 ^= mul(rotl(mul(le64(data, at, Math.min(tail, 8)), C1), 31n), C2);
  const len = BigInt(data.length);
  h1 ^= len;
  h2 ^= len;
  h1 = add(h1, h2);
  h2 = add(h2, h1);
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 = add(h1, h2);
  h2 = add(h2, h1);
  return [h1, h2];
}
