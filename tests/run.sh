#!/usr/bin/env bash
# Installs everything the tests need, then runs the whole suite:
# model_core unit tests, the app's AppTest tests, and the real-browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --root-user-action=ignore -r requirements-dev.txt
# PyTorch, only for tests/model/test_torch_reference.py (the app never imports it): the CPU build of this exact
# version is on the machine's disk. If it cannot be installed the run goes on and that test skips, saying why.
python -m pip install --quiet --root-user-action=ignore torch==2.13.0+cpu ||
  echo "tests/run.sh: could not install torch==2.13.0+cpu; tests/model/test_torch_reference.py will be skipped" >&2
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
python -m pytest "$@"
