#!/usr/bin/env bash
# Create .venv and install distillkit into it (with --dev: pytest and ruff too).
# torch is installed first and pinned: a plain `torch` requirement with no torch present pulls a multi-GB CUDA
# build, while torch==2.13.0 is a CPU wheel. On a GPU machine install your CUDA torch into .venv before this script:
# pip keeps any torch that satisfies the project's range.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extra}"
