// The Maglev lookup-table builder: table sizes and flags, agreement with Cilium's tables, balance, disruption when a
// backend goes away, weights, speed and bad input. Pure computation: no root, no kernel.
import test from 'ava';
import { UsageError } from '../../src/errors';
import {
  buildMaglevTable,
  DEFAULT_MAGLEV_HASH_SEED,
  MAGLEV_TABLE_SIZES,
  MaglevBackend,
  maglevDisruption,
  maglevTableSizeFor,
  parseMaglevHashSeed,
  parseMaglevTableSize,
} from '../../src/lb/maglev';

const SEED = parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED).murmur;

function backendsNamed(count: number): MaglevBackend[] {
  return Array.from({ length: count }, (_, i) => ({ name: `10.0.${i >> 8}.${i & 255}:8080/TCP`, id: i + 1 }));
}

function slotCounts(table: Uint32Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const id of table) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

// A fixed shuffle (a small LCG), so a failure can be reproduced.
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function runLengths(table: Uint32Array): string {
  const runs: string[] = [];
  let start = 0;
  for (let i = 1; i <= table.length; i++) {
    if (i === table.length || table[i] !== table[start]) {
      runs.push(`${table[start]}(${i - start})`);
      start = i;
    }
  }
  return runs.join(',');
}

test('table size: the smallest allowed prime ≥ 100 × backends, 251 at least, 131071 at most', (t) => {
  const cases: [number, number][] = [
    [0, 251],
    [1, 251],
    [2, 251],
    [3, 509],
    [10, 1021],
    [160, 16381],
    [163, 16381],
    [164, 32749],
    [650, 65521],
    [1000, 131071],
    [5000, 131071],
  ];
  for (const [backends, size] of cases) t.is(maglevTableSizeFor(backends), size, `${backends} backends`);
  t.throws(() => maglevTableSizeFor(-1), { instanceOf: RangeError });
  t.throws(() => maglevTableSizeFor(1.5), { instanceOf: RangeError });
});

test('--bpf-lb-maglev-table-size accepts the allowed primes and refuses anything else in one line', (t) => {
  for (const size of MAGLEV_TABLE_SIZES) t.is(parseMaglevTableSize(String(size)), size);
  for (const bad of ['1000', 'abc', '65537', '', ' 16381', '16381.0', '0x3ffd']) {
    const error = t.throws(() => parseMaglevTableSize(bad), { instanceOf: UsageError });
    t.true(error.message.includes('--bpf-lb-maglev-table-size'), error.message);
    t.true(error.message.includes(JSON.stringify(bad)), error.message);
    t.true(error.message.includes('251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071'), error.message);
    t.false(error.message.includes('\n'), error.message);
  }
});

test('--bpf-lb-maglev-hash-seed: 12 bytes of base64 read as three big-endian u32, as Cilium reads them', (t) => {
  // JLfvgnHc2kaSUFaI = 24 b7 ef 82 | 71 dc da 46 | 92 50 56 88
  t.deepEqual(parseMaglevHashSeed(DEFAULT_MAGLEV_HASH_SEED), {
    murmur: 0x24b7ef82,
    jhash0: 0x71dcda46,
    jhash1: 0x92505688,
  });
  t.deepEqual(parseMaglevHashSeed('////////////////'), {
    murmur: 0xffffffff,
    jhash0: 0xffffffff,
    jhash1: 0xffffffff,
  });
  const bad = [
    '',
    'abc',
    'JLfvgnHc2kaSUFa',
    'JLfvgnHc2kaSUFaI====',
    'JLfvgnHc2kaSUFa!',
    ' JLfvgnHc2kaSUFaI',
    'AAAAAAAAAAAAAAA=',
    'AAAAAAAAAAAAAAAAAAA=',
  ];
  for (const text of bad) {
    const error = t.throws(() => parseMaglevHashSeed(text), { instanceOf: UsageError });
    t.true(error.message.includes('--bpf-lb-maglev-hash-seed'), error.message);
    t.true(error.message.includes(JSON.stringify(text)), error.message);
    t.false(error.message.includes('\n'), error.message);
  }
  t.regex(t.throws(() => parseMaglevHashSeed('AAAAAAAAAAAAAAA='))!.message, /decodes to 11 bytes, not 12/);
});

// The hash strings, weights, ids and expected tables of Cilium's own tests (pkg/maglev/maglev_test.go,
// TestReproducible and TestWeightedBackendWithRemoval): the same seed and names must give Cilium's tables.
function ciliumTestBackendName(i: number): string {
  return `[0.0.0.${i}:${i}/TCP,State:active]`;
}

test("the table is Cilium's for the same names, weights, M and seed", (t) => {
  const table = buildMaglevTable(
    [
      { name: ciliumTestBackendName(1), weight: 2, id: 0 },
      { name: ciliumTestBackendName(3), weight: 13, id: 1 },
      { name: ciliumTestBackendName(4), weight: 111, id: 2 },
      { name: ciliumTestBackendName(5), weight: 10, id: 3 },
    ],
    251,
    SEED,
  );
  const expected =
    '2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1),' +
    '1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3),' +
    '1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1),' +
    '3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1),' +
    '2(4),3(1),2(2),1(1),2(7)';
  t.is(runLengths(table), expected);

  const weighted = buildMaglevTable(
    [2, 13, 111, 10].map((weight, i) => ({ name: ciliumTestBackendName(i + 1), weight, id: i + 1 })),
    1021,
    SEED,
  );
  t.deepEqual(
    [...slotCounts(weighted)].sort((a, b) => a[0] - b[0]),
    [
      [1, 16],
      [2, 98],
      [3, 832],
      [4, 75],
    ],
  );
});

test('determinism: the same backends in any order give the same table; another seed gives another', (t) => {
  const backends = backendsNamed(100);
  const m = maglevTableSizeFor(backends.length);
  const table = buildMaglevTable(backends, m, SEED);
  t.is(table.length, m);
  for (const shuffleSeed of [1, 2, 3]) {
    t.deepEqual(buildMaglevTable(shuffled(backends, shuffleSeed), m, SEED), table, `shuffle ${shuffleSeed}`);
  }
  t.deepEqual(buildMaglevTable([...backends].reverse(), m, SEED), table);
  const otherSeed = buildMaglevTable(backends, m, SEED ^ 1);
  t.true(maglevDisruption(table, otherSeed) > 0.5, 'a different seed reshuffles most slots');
  // Seeds with the top bit set are seeds like any other.
  t.deepEqual(buildMaglevTable(shuffled(backends, 9), m, 0xfedcba98), buildMaglevTable(backends, m, 0xfedcba98));
});

test('balance without weights: every backend holds ⌊M/N⌋ or ⌈M/N⌉ slots', (t) => {
  for (const count of [3, 10, 100]) {
    const m = maglevTableSizeFor(count);
    const counts = slotCounts(buildMaglevTable(backendsNamed(count), m, SEED));
    t.is(counts.size, count, `N=${count}: every backend has slots`);
    for (const [id, slots] of counts) {
      t.true(slots === Math.floor(m / count) || slots === Math.ceil(m / count), `N=${count} M=${m}: id ${id} ${slots}`);
    }
  }
});

// Removing one backend must move all of its own slots (about 1/N of the table) and nothing else would be ideal.
// Maglev gives up some of that for balance: survivors' turns shift, so they also trade some slots among themselves.
function removalDisruptions(count: number, m: number, removedIndexes: number[]) {
  const backends = backendsNamed(count);
  const before = buildMaglevTable(backends, m, SEED);
  return removedIndexes.map((removed) => {
    const after = buildMaglevTable(
      backends.filter((_, i) => i !== removed),
      m,
      SEED,
    );
    const removedId = backends[removed].id;
    let removedSlotsKept = 0;
    for (let slot = 0; slot < m; slot++) {
      if (after[slot] === removedId) removedSlotsKept++;
    }
    return { removed, disruption: maglevDisruption(before, after), removedSlotsKept };
  });
}

const REMOVAL_CASES: { count: number; m: number; removed: number[] }[] = [
  { count: 3, m: maglevTableSizeFor(3), removed: [0, 1, 2] },
  { count: 10, m: maglevTableSizeFor(10), removed: [...Array(10).keys()] },
  { count: 100, m: maglevTableSizeFor(100), removed: [...Array(100).keys()] },
  { count: 1000, m: maglevTableSizeFor(1000), removed: [0, 111, 250, 499, 500, 777, 998, 999] },
  { count: 1000, m: 65521, removed: [0, 111, 250, 499, 500, 777, 998, 999] },
];

// What Cilium's algorithm (and so this one, which builds Cilium's tables) measured, as multiples of the ideal 1/N,
// worst removal, with these names and the default seed: N=3 1.04, N=10 1.40, N=100 2.61, N=1000 (M=131071) 7.2,
// N=1000 (M=65521) 7.5. The bounds are a little above those, to catch a regression, not a promise.
const MEASURED_WORST_DISRUPTION_RATIO: Record<string, number> = {
  '3/509': 1.2,
  '10/1021': 1.6,
  '100/16381': 3,
  '1000/131071': 8.5,
  '1000/65521': 8.5,
};

for (const { count, m, removed } of REMOVAL_CASES) {
  test(`disruption: removing one of ${count} backends (M=${m}) moves its slots and few others`, (t) => {
    const results = removalDisruptions(count, m, removed);
    for (const r of results) t.is(r.removedSlotsKept, 0, `removed #${r.removed} left no slot behind`);
    const worst = Math.max(...results.map((r) => r.disruption));
    const mean = results.reduce((sum, r) => sum + r.disruption, 0) / results.length;
    t.log(
      `N=${count} M=${m}: worst ${(worst * 100).toFixed(3)}% of slots changed = ${(worst * count).toFixed(2)}× ` +
        `the ideal 1/N, mean ${(mean * count).toFixed(2)}× over ${results.length} removals`,
    );
    t.true(worst >= 1 / count - 1 / m, 'at least the removed backend’s own share moves');
    t.true(worst * count <= MEASURED_WORST_DISRUPTION_RATIO[`${count}/${m}`], `${(worst * count).toFixed(2)}× ideal`);
  });
}

// The target ("within 1.2× the ideal 1/N") holds for N=3 only; Maglev as Cilium builds it does not meet it for
// larger N (figures above). Kept as a known failure so the gap shows in every run until someone decides otherwise.
test('disruption within 1.2× the ideal 1/N, N=3', (t) => {
  const worst = Math.max(...removalDisruptions(3, maglevTableSizeFor(3), [0, 1, 2]).map((r) => r.disruption));
  t.true(worst <= 1.2 / 3, `${(worst * 3).toFixed(3)}× ideal`);
});

test.failing('disruption within 1.2× the ideal 1/N, N=10 and 100 (issue target; Maglev does not meet it)', (t) => {
  for (const count of [10, 100]) {
    const indexes = [...Array(count).keys()];
    const worst = Math.max(...removalDisruptions(count, maglevTableSizeFor(count), indexes).map((r) => r.disruption));
    t.true(worst <= 1.2 / count, `N=${count}: ${(worst * count).toFixed(3)}× ideal`);
  }
});

test('weights 1, 2, 3 hold about 1/6, 2/6 and 3/6 of the table', (t) => {
  const backends = [
    { name: 'a', id: 1, weight: 1 },
    { name: 'b', id: 2, weight: 2 },
    { name: 'c', id: 3, weight: 3 },
  ];
  for (const m of [maglevTableSizeFor(3), 16381]) {
    const counts = slotCounts(buildMaglevTable(shuffled(backends, m), m, SEED));
    for (const { id, weight } of backends) {
      const share = (counts.get(id) ?? 0) / m;
      t.true(Math.abs(share / (weight / 6) - 1) < 0.02, `M=${m} weight ${weight}: share ${share.toFixed(4)}`);
    }
  }
  // Equal weights change nothing: the table is the unweighted one.
  const unweighted = backends.map(({ name, id }) => ({ name, id }));
  const equal = backends.map((b) => ({ ...b, weight: 7 }));
  t.deepEqual(buildMaglevTable(equal, 509, SEED), buildMaglevTable(unweighted, 509, SEED));
});

test('speed: M=65521 with 1000 backends', (t) => {
  const backends = backendsNamed(1000);
  const timeBuild = (): number => {
    const start = process.hrtime.bigint();
    buildMaglevTable(backends, 65521, SEED);
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const first = timeBuild();
  const later = Array.from({ length: 5 }, timeBuild).sort((a, b) => a - b);
  t.log(
    `first build here ${first.toFixed(1)} ms (earlier tests may have warmed the JIT), then best ${later[0].toFixed(1)} ms, median ${later[2].toFixed(1)} ms`,
  );
  // A smoke check only: shared CI machines are slow and noisy.
  t.true(first < 300, `${first.toFixed(1)} ms`);
  t.true(later[2] < 300, `${later[2].toFixed(1)} ms`);
});

test('maglevDisruption is the share of slots whose backend differs', (t) => {
  t.is(maglevDisruption(Uint32Array.of(1, 2, 3, 4), Uint32Array.of(1, 2, 3, 4)), 0);
  t.is(maglevDisruption(Uint32Array.of(1, 2, 3, 4), Uint32Array.of(1, 9, 3, 9)), 0.5);
  t.is(maglevDisruption(new Uint32Array(0), new Uint32Array(0)), 0);
  t.throws(() => maglevDisruption(new Uint32Array(3), new Uint32Array(4)), { instanceOf: RangeError });
});

test('bad input: no backends, an M that is not prime, duplicate names, bad ids, weights and seeds', (t) => {
  const two = backendsNamed(2);
  t.throws(() => buildMaglevTable([], 251, SEED), { instanceOf: RangeError, message: /no backends/ });
  for (const m of [0, 1, -7, 1000, 65537.5, NaN, 2 ** 31 - 1]) {
    t.throws(() => buildMaglevTable(two, m, SEED), { instanceOf: RangeError, message: /prime/ }, `m=${m}`);
  }
  t.throws(() => buildMaglevTable([...two, { name: two[1].name, id: 99 }], 251, SEED), {
    instanceOf: RangeError,
    message: new RegExp(`"${two[1].name}" appears twice`),
  });
  for (const id of [-1, 1.5, 2 ** 32]) {
    t.throws(() => buildMaglevTable([{ name: 'x', id }], 251, SEED), { instanceOf: RangeError, message: /id/ });
  }
  for (const weight of [0, -1, 2.5, 65536]) {
    t.throws(() => buildMaglevTable([{ name: 'x', id: 1, weight }], 251, SEED), {
      instanceOf: RangeError,
      message: /weight/,
    });
  }
  for (const seed of [-1, 2 ** 32, 0.5]) {
    t.throws(() => buildMaglevTable(two, 251, seed), { instanceOf: RangeError, message: /seed/ });
  }
  // Ids are any u32, and a table smaller than the backend count is still a table (some backends get no slot).
  t.deepEqual([...buildMaglevTable([{ name: 'x', id: 0xffffffff }], 2, SEED)], [0xffffffff, 0xffffffff]);
  t.is(slotCounts(buildMaglevTable(backendsNamed(300), 251, SEED)).size, 251);
});
