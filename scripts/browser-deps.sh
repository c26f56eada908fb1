#!/usr/bin/env bash
# Install what the real-browser test (pinokio-cli/tests/browser.rs) needs:
# Chromium at /usr/bin/chromium and tests/browser/node_modules (playwright-core).
# Idempotent: does nothing when both are present. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "browser-deps: installing chromium" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  fi
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser-deps: node and npm are needed (apt-get install -y nodejs npm)" >&2
  exit 1
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "browser-deps: npm ci in tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
