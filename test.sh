#!/usr/bin/env bash
# Runs the whole test suite (after making sure the environment is set up and the extension
# is built). Extra arguments go to pytest, e.g. ./test.sh -k parity
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/python -m pytest "$@"
