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
count() { grep -Eo "[0-9]+ $1" "$log" | tail -1 | grep -Eo '^[0-9]+' || echo 0; }
passed=$(count 'tests? passed'); failed=$(count 'tests? failed'); skipped=$(count 'tests? skipped')
known=$(count 'known failures?'); uncaught=$(count 'uncaught exceptions?')
rm -f "$log"
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=$((uncaught > 0 ? uncaught : 1)); fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
