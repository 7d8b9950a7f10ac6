#!/usr/bin/env bash
# The main job: set up (idempotent), then the demo in a namespace lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec node dist/scripts/demo.js "$@"
