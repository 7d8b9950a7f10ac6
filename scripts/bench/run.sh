#!/usr/bin/env bash
# Runs one benchmark, or all of them and rewrites docs/BENCHMARKS.md.
#   scripts/bench/run.sh NAME   (binding, ...)
#   scripts/bench/run.sh all
# Each prints key=value lines, the last one `summary=...`; it exits non-zero
# only when it could not measure. Needs a built checkout and root.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCHES=(binding ct-packet nat-packet gc list forward lb k8s policy)
name=${1:-}
if [[ -z $name ]]; then echo "usage: scripts/bench/run.sh NAME|all  (NAME: ${BENCHES[*]})" >&2; exit 2; fi
if [[ ! -f dist/scripts/bench/common.js ]]; then echo "not built: run npm run build first" >&2; exit 2; fi

run_one() {
  local n=$1
  if [[ ! -f dist/scripts/bench/$n.js ]]; then echo "unknown benchmark '$n' (known: ${BENCHES[*]})" >&2; return 2; fi
  node "dist/scripts/bench/$n.js"
}

if [[ $name != all ]]; then run_one "$name"; exit; fi

out=docs/BENCHMARKS.md
tmp=$(mktemp)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench/run.sh all\`; each section's figures come from \`scripts/bench/run.sh NAME\` in that run."
  echo "Medians over rounds interleaved with their baseline; ratios are against a baseline measured in the same run."
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  for n in "${BENCHES[@]}"; do
    echo
    echo "## $n"
    echo
    echo "Command: \`scripts/bench/run.sh $n\`"
    echo
    echo '```'
    run_one "$n" 2>&1 || echo "(could not measure)"
    echo '```'
    if [[ -f docs/bench-notes/$n.md ]]; then echo; cat "docs/bench-notes/$n.md"; fi
  done
} >"$tmp"
mv "$tmp" "$out"
cat "$out"
