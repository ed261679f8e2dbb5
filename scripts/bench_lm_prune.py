#!/usr/bin/env python
"""Decoder cuts before any training (the causal-LM pruning issue): which cut of a decoder LM starts closest to its
teacher? The teacher's perplexity, then for each student shape the perplexity straight after the cut, by layer
criterion (perplexity without each layer, block-influence cosine, spread = teacher:K), depth-only against width
cuts of about the same size. Each dimension cut alone is scored for the width cuts (`pruned_alone`).

    distillkit fetch-models --out ~/.cache/distillkit-bench/models --only SmolLM2-135M-Instruct
    python scripts/split_wikitext.py ../shared/data/wikitext-2-raw/wiki.valid.raw \\
        --out ~/.cache/distillkit-bench/wikitext2 --validation_articles 10 --train_articles 30
    python scripts/bench_lm_prune.py --teacher ~/.cache/distillkit-bench/models/SmolLM2-135M-Instruct \\
        --train_file ~/.cache/distillkit-bench/wikitext2/train.txt \\
        --validation_file ~/.cache/distillkit-bench/wikitext2/validation.txt --out lm-prune.json

Calibration: the first --calibration_blocks blocks of the training text; scored on the first --eval_blocks blocks
of the validation text (block --block tokens, stride = block). Prints a table and writes JSON (no machine paths).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name, (layers, width, heads, key-value heads, MLP), layer criterion
SHAPES = [
    ("le50M depth 6 x 576 (teacher:6)", (6, 576, 9, 3, 1536), "spread"),
    ("le50M depth 6 x 576", (6, 576, 9, 3, 1536), "perplexity"),
    ("le50M depth 6 x 576", (6, 576, 9, 3, 1536), "cosine"),
    ("le50M width+depth 19 x 384", (19, 384, 6, 2, 1024), "perplexity"),
    ("le50M width+depth 19 x 384", (19, 384, 6, 2, 1024), "spread"),
    ("le50M width 30 x 256", (30, 256, 4, 2, 768), "spread"),
    ("le25M width+depth 15 x 256", (15, 256, 4, 2, 768), "perplexity"),
    ("le25M width+depth 15 x 256", (15, 256, 4, 2, 768), "spread"),
    ("le25M width 30 x 192", (30, 192, 3, 1, 512), "spread"),
]


def blocks_of(path: str, tokenizer, block: int, count: int, batch: int) -> list[torch.Tensor]:
    from distillkit.data.lm_text import pack_documents, read_lm_file

    docs = [row["text"] for row in read_lm_file(path, None)]
    ids = pack_documents(docs, tokenizer, block, keep_last=False)["input_ids"][:count]
    return [torch.tensor(ids[i : i + batch]) for i in range(0, len(ids), batch)]


@torch.no_grad()
def cache_loss(teacher, blocks: list[torch.Tensor], ks: list[int]) -> dict[str, dict[str, float]]:
    """What the top-k teacher cache loses on held-out text: per k, the mean and the 99th percentile over tokens of
    KL(full || cached) in nats (the cached distribution: the top-k probabilities, the rest spread evenly), and the
    bytes a token (uint16 ids, fp16 log-probabilities, one fp16 rest mass)."""
    from distillkit.lm_cache import cached_tail_kl

    per_k: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for ids in blocks:
        logits = teacher(input_ids=ids, use_cache=False).logits[:, :-1].reshape(-1, teacher.config.vocab_size)
        for k in ks:
            per_k[k].append(cached_tail_kl(logits, k))
    out = {}
    for k, parts in per_k.items():
        kl = torch.cat(parts)
        out[str(k)] = {"kl_mean_nats": round(float(kl.mean()), 5), "kl_p99_nats": round(float(kl.quantile(0.99)), 5),
                       "bytes_per_token": 2 * k + 2 * k + 2, "tokens": len(kl)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--calibration_blocks", type=int, default=4)
    parser.add_argument("--eval_blocks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="shape names to run (default: all)")
    parser.add_argument("--cache_k", type=int, nargs="*", default=[8, 32, 128], help="top-k cache sizes to measure")
    opts = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distillkit.sst2_benchmark.measure import machine
    from distillkit.students.prune_lm import (
        LMPruneShape,
        _nll,
        bias_parts,
        lm_parameter_count,
        measure_lm_importance,
        prune_lm,
        prune_lm_report,
    )

    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_pretrained(opts.teacher, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(opts.teacher)
    calibration = blocks_of(opts.train_file, tokenizer, opts.block, opts.calibration_blocks, opts.batch)
    evaluation = blocks_of(opts.validation_file, tokenizer, opts.block, opts.eval_blocks, opts.batch)

    def ppl(model) -> dict[str, float]:
        return {"perplexity": round(math.exp(_nll(model.eval(), evaluation, "cpu")), 3)}

    started = time.perf_counter()
    teacher_ppl = ppl(teacher)["perplexity"]
    print(f"teacher: {teacher.num_parameters():,} parameters, perplexity {teacher_ppl:.3f}", flush=True)
    cache = cache_loss(teacher, evaluation, opts.cache_k)
    print(f"top-k cache on the held-out blocks: {cache}", flush=True)
    t0 = time.perf_counter()
    by_ppl = measure_lm_importance(teacher, calibration, layers_by="perplexity")
    scoring_s = time.perf_counter() - t0
    criteria = {"perplexity": by_ppl, "cosine": dataclasses.replace(by_ppl, layers=by_ppl.block_influence,
                                                                   layers_by="cosine"),
                "spread": dataclasses.replace(by_ppl, layers_by="spread")}  # fmt: skip
    print(f"scored on {by_ppl.samples} calibration blocks in {scoring_s:.0f} s; calibration perplexity "
          f"{by_ppl.base_perplexity:.3f}; without each layer: {[round(p, 2) for p in by_ppl.layer_perplexity]}",
          flush=True)  # fmt: skip
    rows = []
    for name, dims, criterion in SHAPES:
        if opts.only and name not in opts.only:
            continue
        shape = LMPruneShape(*dims)
        config = teacher.config.__class__(**{**teacher.config.to_dict(), "num_hidden_layers": dims[0],
                                             "hidden_size": dims[1], "num_attention_heads": dims[2],
                                             "num_key_value_heads": dims[3], "intermediate_size": dims[4]})  # fmt: skip
        width_cut = dims[1] < teacher.config.hidden_size
        scores = criteria[criterion]
        if width_cut and criterion == "perplexity":  # each dimension alone, for the cut that Minitron prefers
            student, report = prune_lm_report(teacher, config, scores, evaluate=ppl)
            alone = {k: v["perplexity"] for k, v in report["pruned_alone"].items()}
            before = report["student_score_before_training"]["perplexity"]
        else:
            student, alone = prune_lm(teacher, shape, scores), None
            before = ppl(student)["perplexity"]
        params = student.num_parameters()
        assert params == lm_parameter_count(teacher.config, shape, bias_parts(teacher)), name
        row = {"name": name, "criterion": criterion, "shape": dims, "parameters": params,
               "layers_kept": [i + 1 for i in student.distillkit_prune_plan.layers], "perplexity_after_cut": before,
               "x_teacher": round(before / teacher_ppl, 2), "pruned_alone": alone}  # fmt: skip
        rows.append(row)
        print(
            f"{name} [{criterion}]: {params / 1e6:.1f}M, perplexity {before:.2f} ({row['x_teacher']}x the "
            f"teacher), layers {row['layers_kept']}" + (f", each cut alone {alone}" if alone else ""),
            flush=True,
        )
        del student
    result = {**machine(), "teacher": Path(opts.teacher).name, "teacher_parameters": teacher.num_parameters(),
              "teacher_perplexity": teacher_ppl, "block": opts.block, "calibration_blocks": by_ppl.samples,
              "eval_blocks": sum(len(b) for b in evaluation), "scoring_s": round(scoring_s, 1),
              "calibration_perplexity": round(by_ppl.base_perplexity, 3),
              "layer_perplexity_without": [round(p, 3) for p in by_ppl.layer_perplexity],
              "block_influence": [round(float(v), 5) for v in by_ppl.block_influence], "top_k_cache": cache,
              "rows": rows,
              "wall_s": round(time.perf_counter() - started, 1),
              "command": "python scripts/bench_lm_prune.py " + " ".join(
                  a.replace(str(Path.home()), "~") for a in (argv if argv is not None else sys.argv[1:]))}  # fmt: skip
    Path(opts.out).write_text(json.dumps(result, indent=2))
    print(f"written: {opts.out}")


if __name__ == "__main__":
    main()
