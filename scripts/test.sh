#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (what .ci/run calls).
#   bash scripts/test.sh            # lint + tests (slow and gpu tests are off by default)
#   bash scripts/test.sh -m slow    # extra pytest arguments are passed on
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
