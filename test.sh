#!/usr/bin/env bash
# Runs the whole test suite (after making sure the environment is set up and the extension
# is built). Extra arguments go to pytest, e.g. ./test.sh -k parity
#
# Two pytest-xdist workers share the cores (tests/conftest.py gives each its share of torch
# threads and hands out the slowest test files first); CENDETECT_TEST_WORKERS=0 runs
# everything in one process.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/python -m pytest -n "${CENDETECT_TEST_WORKERS:-2}" --dist loadfile \
    --no-loadscope-reorder "$@"
