#!/usr/bin/env bash
# CLI benchmarks (issue 4 targets): `pinokio --version` cold under 20 ms,
# `pinokio status` with 20 apps registered under 50 ms. Median of N runs of
# the release binary. Usage: scripts/bench-cli.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-21}"
cargo build --release -q -p pinokio-cli
bin="${CARGO_TARGET_DIR:-target}/release/pinokio"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT

median_ms() { # command...
  local times=()
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
v=$(median_ms "$bin" --version)
for i in $(seq -w 1 20); do
  mkdir -p "$home/src/app$i"
  printf '{"run":[{"method":"log","params":{"raw":"hi"}}]}' > "$home/src/app$i/install.json"
  "$bin" --home "$home/home" install "$home/src/app$i" --no-run >/dev/null
done
s=$(median_ms "$bin" --home "$home/home" status)
echo "pinokio --version            median ${v} ms   (target 20 ms)"
echo "pinokio status, 20 apps      median ${s} ms   (target 50 ms)"
