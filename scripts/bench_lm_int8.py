#!/usr/bin/env python
"""Which layers of a decoder LM can take dynamic int8: perplexity of int8 copies that differ in what they quantize.

    python scripts/bench_lm_int8.py --model ~/.cache/distillkit-bench/models/SmolLM2-135M-Instruct \
        --text ~/.cache/distillkit-bench/wikitext2/validation.txt --out ~/.cache/distillkit-bench/lm-int8.json

The first `--blocks` blocks of `--block_size` tokens of the text (tokenized without special tokens, joined; each
block scored on its own, every next token counted) are scored by the fp32 model and by `torch.ao` dynamic int8 copies:
every linear layer with one scale per weight tensor (torch.ao's default), every linear layer with per-channel
weights, per-channel with the output layer kept fp32, and per-channel with the output layer and the MLPs' down
projections kept fp32 (`lm_export.quantize_lm_int8`, what distillkit exports). Prints a table and writes JSON (no
machine paths).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from distillkit.export import quantize_int8  # noqa: E402
from distillkit.lm_export import FLOAT_LAYERS, block_perplexity, float_copy, quantize_lm_int8  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a causal LM folder")
    parser.add_argument("--text", required=True, help="a text file to score")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--block_size", type=int, default=512)
    parser.add_argument("--out", default=None, help="JSON file to write")
    cli = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cli.model)
    with open(cli.text, encoding="utf-8") as f:
        ids = tokenizer(f.read(), add_special_tokens=False)["input_ids"]
    need = cli.blocks * cli.block_size
    if len(ids) < need:
        sys.exit(f"error: {cli.text} has {len(ids):,} tokens, fewer than --blocks x --block_size = {need:,}.")
    rows = [ids[i : i + cli.block_size] for i in range(0, need, cli.block_size)]
    blocks = {"input_ids": rows, "labels": rows}  # every next token counted, each block scored on its own
    model = AutoModelForCausalLM.from_pretrained(cli.model).float().eval()
    variants = [
        ("fp32 (none)", lambda m: m),
        ("every linear layer, one scale per weight tensor (torch.ao's default)", quantize_int8),
        ("every linear layer, per-channel weights", lambda m: quantize_lm_int8(m, float_layers=())),
        ("per-channel, output layer fp32", lambda m: quantize_lm_int8(m, float_layers=("lm_head",))),
        ("per-channel, output layer and down projections fp32 (distillkit)",
         lambda m: quantize_lm_int8(m, float_layers=FLOAT_LAYERS)),
    ]  # fmt: skip
    rows = []
    for name, make in variants:
        ppl = block_perplexity(make(float_copy(model)), blocks, batch_size=1)
        rows.append({"int8 copy": name, "perplexity": round(ppl, 2)})
        print(f"| {name} | {ppl:.2f} |", flush=True)
    result = {"model": os.path.basename(os.path.normpath(cli.model)), "text": os.path.basename(cli.text),
              "blocks": cli.blocks, "block_size": cli.block_size, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "rows": rows}  # fmt: skip
    if cli.out:
        with open(cli.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"written: {cli.out}")


if __name__ == "__main__":
    main()
