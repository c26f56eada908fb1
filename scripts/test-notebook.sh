#!/usr/bin/env bash
# Tests of the notebook launcher (examples/launcher.ipynb, examples/notebook/pinokio_nb.py): runs
# the notebook in a real Jupyter kernel against a real `pinokio serve` and drives its widgets.
# A venv with nbclient, nbformat, ipykernel and ipywidgets is kept in
# $PINOKIO_NOTEBOOK_VENV (default ~/.cache/pinokiocloud-notebook-venv) and rebuilt when the
# requirements below change. Extra arguments go to test_notebook.py (test names).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pinokiocloud-target}"

cargo build -q -p pinokio-cli

venv="${PINOKIO_NOTEBOOK_VENV:-$HOME/.cache/pinokiocloud-notebook-venv}"
reqs=(nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 ipywidgets==8.1.9)
if [ "$(cat "$venv/.reqs" 2>/dev/null)" != "${reqs[*]}" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"
  echo "${reqs[*]}" > "$venv/.reqs"
fi

# the kernel must not see a PINOKIO_* setting of the caller (the test sets its own)
unset PINOKIO_HOME PINOKIO_WHEEL PINOKIO_SRC PINOKIO_URL PINOKIO_PORT || true
PINOKIO_BIN="$CARGO_TARGET_DIR/debug/pinokio" \
  "$venv/bin/python" examples/notebook/test_notebook.py "$@"
