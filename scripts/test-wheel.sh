#!/usr/bin/env bash
# CI check of the pip distribution: build a wheel, install it into a fresh venv, and run
# `pinokio --version` and `pinokio doctor` from that venv. Exits non-zero on any failure.
#
#   scripts/test-wheel.sh             the fast wheel (`scripts/build-wheel.sh --fast`: dev profile,
#                                     no zig, reuses $CARGO_TARGET_DIR's test build)
#   scripts/test-wheel.sh --release   the release wheel (manylinux2014 through zig; many minutes)
#   scripts/test-wheel.sh WHEEL       an existing wheel
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pinokiocloud-target}"

case "${1:-}" in
  "") wheel=$(scripts/build-wheel.sh --fast) ;;
  --release) wheel=$(scripts/build-wheel.sh) ;;
  *.whl) wheel="$1" ;;
  *) echo "usage: $0 [--release | WHEEL]" >&2; exit 2 ;;
esac
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
# the wheel only: nothing else may be needed from an index
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$wheel"

bin="$tmp/venv/bin/pinokio"
[ -x "$bin" ] || { echo "the wheel did not install $bin" >&2; exit 1; }
# on PATH once the venv is active, as after `pip install pinokiocloud`
( . "$tmp/venv/bin/activate" && [ "$(command -v pinokio)" = "$bin" ] ) \
  || { echo "pinokio is not on the venv's PATH" >&2; exit 1; }

version=$("$bin" --version)
echo "$version"
expected="pinokio $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
[ "$version" = "$expected" ] || { echo "expected '$expected'" >&2; exit 1; }

home="$tmp/home"
"$bin" --home "$home" doctor
"$bin" --home "$home" doctor --json > "$tmp/doctor.json"
python3 - "$tmp/doctor.json" "$home" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for key in ("platform", "layout", "gpus", "tools"):
    assert key in d, "doctor --json has no %r" % key
assert d["layout"]["home"] == sys.argv[2], d["layout"]["home"]
PY
echo "ok: the wheel installs and runs"
