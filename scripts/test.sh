#!/usr/bin/env bash
# The test command: bootstrap, then every ava test. Privileged tests need root;
# with TSCT_REQUIRE_PRIV=1 (as CI sets it) a missing privilege fails them.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
log=$(mktemp)
node_modules/.bin/ava "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# One plain closing line that any CI reader understands.
# ava marks each test: ✔ passed, ✘ [fail], - [skip].
passed=$(grep -c '✔' "$log" || true); failed=$(grep -c '✘' "$log" || true); skipped=$(grep -c '\[skip\]' "$log" || true)
rm -f "$log"
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
