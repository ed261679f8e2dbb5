"""`distillkit push`: push an already trained student directory (weights, tokenizer, card, recipe) to a model hub.

    distillkit push outputs/sst2-tiny --hub_model_id your-name/bert-tiny-sst2 [--private]

The token comes from --hub_token, else the usual discovery (HF_TOKEN, or `hf auth login`). Checkpoints, the
fine-tuned teacher and pickled files stay local.
"""

from __future__ import annotations

import argparse

from ..hub import push_student
from . import invocation


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog=" ".join(invocation("push")), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output_dir", help="a student directory written by distillkit distill")
    parser.add_argument("--hub_model_id", required=True, help="the repository to create or update, owner/name")
    parser.add_argument("--hub_token", default=None, help="a write token (default: HF_TOKEN or the cached login)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    opts = parser.parse_args(argv)
    url = push_student(opts.output_dir, opts.hub_model_id, opts.hub_token, opts.private or None)
    print(f"pushed {opts.output_dir} to {opts.hub_model_id}: {url}")
    return url
