#!/usr/bin/env bash
# Sets up everything the test suite needs on a machine that has only the Rust toolchain and
# Python 3, then runs the whole suite. `.ci/run` runs exactly this.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh rfm        # extra arguments go to `cargo test` (e.g. a name filter)
#
# What it installs, and why:
#   .venv/  Python venv with DuckDB, pyarrow and openpyxl (scripts/requirements-test.txt): the
#           tests read segflow's Parquet output back with them, compare against a DuckDB
#           reference run, and write Excel fixtures the way other tools do.
#           Plus the data sets of scripts/requirements-data.txt, installed without their
#           dependencies because only their files are used: the CDNOW purchase sample from
#           `lifetimes`, against which the CLV models are checked, and the median household
#           income by US ZIP code from `median-income`, joined in an enrichment test.
#   chromium  (Debian package) when no Chromium is on PATH: the HTML report is rendered in
#           headless Chromium and screenshotted.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c "import duckdb, pyarrow, openpyxl" 2>/dev/null; then
  echo "setting up .venv (duckdb, pyarrow, openpyxl) for reader checks" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('lifetimes') is None)" 2>/dev/null; then
  echo "adding reference data sets to .venv (lifetimes: CDNOW sample)" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r scripts/requirements-data.txt
fi
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('median_income') is None)" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r scripts/requirements-data.txt
fi
export SEGFLOW_TEST_PYTHON="$PWD/.venv/bin/python"

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "installing chromium (Debian package) for the report rendering test" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

cargo test --workspace --locked "$@"
