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
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used); the load-balancer test
# runs deploy/serve.py, which needs Debian's nginx.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python -m pytest "$@"
