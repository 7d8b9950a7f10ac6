#!/usr/bin/env bash
# The test command: bootstrap, lint, then every ava test. Privileged tests need
# root; with TSCT_REQUIRE_PRIV=1 (as CI sets it) a missing privilege fails them.
#   scripts/test.sh           everything (npm test)
#   scripts/test.sh --unit    the unit tests only (npm run test:unit): no root,
#                             no kernel, no Debian packages; npm ci and tsc
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --unit ]]; then
  shift
  [[ -d node_modules/.bin ]] || npm ci --no-audit --no-fund --loglevel=error --ignore-scripts || exit 1
  node_modules/.bin/tsc -b || exit 1
  files=(dist/test/unit/*.test.js)
else
  bash scripts/bootstrap.sh || exit 1
  bash scripts/lint.sh || exit 1
  files=()
fi
log=$(mktemp)
node_modules/.bin/ava "${files[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# One plain closing line that any CI reader understands.
# ava marks each test: ✔ passed, ✘ [fail], - [skip].
passed=$(grep -c '✔' "$log" || true); failed=$(grep -c '✘' "$log" || true); skipped=$(grep -c '\[skip\]' "$log" || true)
rm -f "$log"
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
