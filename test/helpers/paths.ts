import * as path from 'node:path';

/** The repository root (tests run from dist/test/...). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
export const FIXTURE_OBJ = path.join(ROOT, 'test', 'fixtures', 'build', 'binding.bpf.o');
export const NODE = process.execPath;
