#!/usr/bin/env bash
# Lint: ESLint and Prettier for the TypeScript, clang-format for the C of bpf/,
# test/fixtures/ and native/src/ (each folder's .clang-format). Exits non-zero
# on the first kind of problem found, with what to run to fix it.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
node_modules/.bin/eslint . || { echo "lint: eslint found problems" >&2; status=1; }
node_modules/.bin/prettier --check --log-level warn . || { echo "lint: run 'npx prettier --write .'" >&2; status=1; }
mapfile -t C_FILES < <(ls bpf/*.c bpf/include/*.h test/fixtures/*.bpf.c native/src/*.cc native/src/*.h 2>/dev/null)
clang-format --dry-run -Werror "${C_FILES[@]}" || { echo "lint: run 'clang-format -i' on the files above" >&2; status=1; }
# The struct layouts TypeScript reads are generated from the object's BTF and
# committed (so that the unit tests need no BPF toolchain): they must match.
if [[ -f bpf/build/datapath.bpf.o ]] && ! git diff --quiet -- src/bpf/generated 2>/dev/null; then
  echo "lint: src/bpf/generated/layouts.ts changed with the build: commit it" >&2; status=1
fi
exit $status
