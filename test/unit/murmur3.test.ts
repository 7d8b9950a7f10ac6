// murmur3 x64 128: the reference test vectors (the empty input and seed 0, and
// the published values of the SMHasher implementation for short strings),
// since every node must build the same Maglev tables as every other, Cilium's
// included.
import test from 'ava';
import { murmur3x64128 } from '../../src/lb/murmur3';

const hex = (data: string, seed: number) => {
  const [h1, h2] = murmur3x64128(new TextEncoder().encode(data), seed);
  return h1.toString(16).padStart(16, '0') + h2.toString(16).padStart(16, '0');
};

test('murmur3 x64 128 gives the reference values', (t) => {
  t.is(hex('', 0), '00000000000000000000000000000000');
  t.is(hex('', 1), '4610abe56eff5cb551622daa78f83583');
  t.is(hex('hello', 0), 'cbd8a7b341bd9b025b1e906a48ae1d19');
  t.is(hex('The quick brown fox jumps over the lazy dog', 0), 'e34bbc7bbc071b6c7a433ca9c49a9347');
});
