#!/usr/bin/env bash
# Build the `pinokiocloud` wheel: the `pinokio` binary packaged for pip with maturin's `bin`
# bindings (as ruff and uv ship), into dist/.
#
#   scripts/build-wheel.sh          release build for old glibc: `maturin build --release --zig
#                                   --compatibility manylinux2014` (glibc 2.17, so it installs on
#                                   Ubuntu 20.04 and later), in its own target folder
#                                   ($PINOKIO_WHEEL_TARGET, default ~/.cache/pinokiocloud-wheel-target)
#   scripts/build-wheel.sh --fast   dev profile, no zig, tagged `linux_x86_64` for this machine's
#                                   glibc; reuses $CARGO_TARGET_DIR (the CI smoke test uses it)
#
# maturin, ziglang and auditwheel come from PyPI into a tools venv ($PINOKIO_WHEEL_TOOLS, default
# ~/.cache/pinokio-wheel-tools). The release wheel is checked: the highest GLIBC symbol version
# its binary needs is printed and must not exceed 2.17. Prints the wheel's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=release
case "${1:-}" in
  --fast) mode=fast ;;
  "") ;;
  *) echo "usage: $0 [--fast]" >&2; exit 2 ;;
esac

tools="${PINOKIO_WHEEL_TOOLS:-$HOME/.cache/pinokio-wheel-tools}"
reqs=(maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2)
if [ "$(cat "$tools/.reqs" 2>/dev/null)" != "${reqs[*]}" ]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"
  echo "${reqs[*]}" > "$tools/.reqs"
fi
export PATH="$tools/bin:$PATH"

out=dist
mkdir -p "$out"
if [ "$mode" = fast ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pinokiocloud-target}"
  rm -f "$out"/pinokiocloud-*-linux_x86_64.whl
  maturin build --profile dev --compatibility linux --auditwheel skip --out "$out" >&2
  wheel=$(ls -t "$out"/pinokiocloud-*-linux_x86_64.whl | head -1)
else
  export CARGO_TARGET_DIR="${PINOKIO_WHEEL_TARGET:-$HOME/.cache/pinokiocloud-wheel-target}"
  rm -f "$out"/pinokiocloud-*manylinux*.whl
  maturin build --release --strip --zig --compatibility manylinux2014 \
    --target x86_64-unknown-linux-gnu --out "$out" >&2
  wheel=$(ls -t "$out"/pinokiocloud-*manylinux*.whl | head -1)
  # the glibc floor: the highest GLIBC_x.y symbol version the binary imports
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith(".data/scripts/pinokio")][0]; open(sys.argv[2], "wb").write(z.read(n))' "$wheel" "$tmp/pinokio"
  floor=$(objdump -T "$tmp/pinokio" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  echo "glibc floor: $floor (binary $(du -h "$tmp/pinokio" | cut -f1), wheel $(du -h "$wheel" | cut -f1))" >&2
  if [ "$(printf '%s\n' "${floor#GLIBC_}" 2.17 | sort -V | tail -1)" != 2.17 ]; then
    echo "the binary needs $floor, newer than manylinux2014's 2.17" >&2
    exit 1
  fi
  auditwheel show "$wheel" >&2
fi
echo "$wheel"
