#!/usr/bin/env bash
# Idempotent set-up for a bare Debian machine: installs the packages tsct needs
# when they are missing, installs npm dependencies when the lock file changed,
# and builds the BPF objects, the libbpf-ts addon and the TypeScript.
# A second run with nothing changed does no installing and little building.
#   scripts/bootstrap.sh               everything
#   scripts/bootstrap.sh --build-only  skip the Debian packages
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'bootstrap: %s\n' "$*"; }

# Build tools, the libbpf it links against, and the tools the tests and demo
# drive (ip, tc, ping, nc, capsh, conntrack/iptables for the benchmarks).
PACKAGES=(clang clang-format llvm make g++ python3 libbpf-dev libelf-dev zlib1g-dev pkg-config bpftool
  iproute2 iputils-ping netcat-openbsd libcap2-bin iptables conntrack procps time prometheus util-linux ethtool systemd)

if [[ ${1:-} != --build-only ]]; then
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null | awk '$2 ~ /^ii/ {print $1}' || true)
  missing=()
  for p in "${PACKAGES[@]}"; do grep -qx "$p" <<<"$installed" || missing+=("$p"); done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      say "missing Debian packages: ${missing[*]}; run this as root, or: sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# Node's headers ship with Debian's nodejs; point node-gyp at them so the
# addon builds without downloading anything.
if [[ -f /usr/include/node/node_api.h ]]; then export npm_config_nodedir=/usr; fi

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ||
      ! -f native/build/Release/addon.node ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
elif [[ native/binding.gyp -nt native/build/Makefile ]]; then
  # The list of sources changed: configure again.
  (cd native && ../node_modules/.bin/node-gyp rebuild --loglevel=error >/dev/null)
else
  # Incremental: make decides what to recompile.
  (cd native && ../node_modules/.bin/node-gyp build --loglevel=error >/dev/null)
fi

make -s -C bpf
node scripts/gen-layouts.js
node_modules/.bin/tsc -b
chmod +x bin/tsct 2>/dev/null || true
say "ready"
