#!/usr/bin/env python
"""Teacher scoring throughput: random-order vs length-sorted batches, and each scoring backend, in one run.

    python scripts/bench_teacher.py --teacher runs/sst2-cpu/teacher --train_file .../train.tsv \
        --validation_file .../dev.tsv --rows 1024 --out runs/bench_teacher.json

Scores `--rows` training sentences with the fine-tuned teacher at batch `--batch_size`: PyTorch fp32 in random order
(what the cache did before it sorted by length), then length-sorted with every backend (torch, int8, onnx,
onnx-int8). For each backend it also reports the teacher's dev accuracy through that backend and how far its
probabilities (at temperature 1) are from fp32's on the dev set: mean KL(fp32 || backend) and argmax agreement.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from distillkit.cache import length_sorted_batches
from distillkit.cli import run_cli, text_table
from distillkit.data import load_files
from distillkit.scoring import BACKENDS, make_scorer


def encode(tokenizer, texts, max_length):
    return [dict(tokenizer(t, truncation=True, max_length=max_length)) for t in texts]


def score(scorer, rows, batches, collate):
    """Logits of every row (in row order) and the seconds it took."""
    out = [None] * len(rows)
    start = time.perf_counter()
    for batch in batches:
        logits = scorer(collate([rows[i] for i in batch]))
        for i, row in zip(batch, logits):
            out[i] = row
    return torch.stack(out), time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a fine-tuned teacher folder")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--text_column", default="sentence")
    parser.add_argument("--rows", type=int, default=1024, help="training sentences scored for the throughput")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--out", default="bench_teacher.json")
    opts = parser.parse_args(argv)

    data = load_files(opts.train_file, opts.validation_file, label_column="label")
    tokenizer = AutoTokenizer.from_pretrained(opts.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(opts.teacher).eval()
    collate = DataCollatorWithPadding(tokenizer)
    train_texts = data["train"][opts.text_column][: opts.rows]
    rows = encode(tokenizer, train_texts, opts.max_seq_length)
    dev = encode(tokenizer, data["validation"][opts.text_column], opts.max_seq_length)
    dev_labels = torch.tensor(data["validation"]["label"])
    lengths = [len(r["input_ids"]) for r in rows]
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    random_batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    sorted_batches = length_sorted_batches(lengths, range(len(rows)), opts.batch_size)
    dev_batches = length_sorted_batches([len(r["input_ids"]) for r in dev], range(len(dev)), opts.batch_size)
    example = collate(rows[: opts.batch_size])
    torch_scorer = make_scorer("torch", teacher, example)
    reference, _ = score(torch_scorer, dev, dev_batches, collate)
    reference_logp = reference.log_softmax(-1)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in random_batches)
    results = []
    _, seconds = score(torch_scorer, rows, random_batches, collate)
    results.append({"order": "random", "backend": "torch", "rows_per_s": len(rows) / seconds,
                    "padded_tokens": padded, "dev_accuracy": float((reference.argmax(-1) == dev_labels).float().mean()),
                    "mean_kl": 0.0, "agreement": 1.0})  # fmt: skip
    for backend in opts.backends:
        scorer = torch_scorer if backend == "torch" else make_scorer(backend, teacher, example)
        for batch in sorted_batches[:2]:  # warm-up (onnxruntime plans its first shapes)
            scorer(collate([rows[i] for i in batch]))
        _, seconds = score(scorer, rows, sorted_batches, collate)
        logits, _ = score(scorer, dev, dev_batches, collate)
        logp = logits.log_softmax(-1)
        print(f"{backend}: {len(rows) / seconds:.1f} rows/s", flush=True)
        kl = (reference_logp.exp() * (reference_logp - logp)).sum(-1).mean()
        results.append({
            "order": "length-sorted", "backend": backend, "rows_per_s": len(rows) / seconds,
            "padded_tokens": sum(max(lengths[i] for i in b) * len(b) for b in sorted_batches),
            "dev_accuracy": float((logits.argmax(-1) == dev_labels).float().mean()), "mean_kl": max(0.0, float(kl)),
            "agreement": float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
        })  # fmt: skip
    base = results[0]["rows_per_s"]
    for r in results:
        r["speedup"] = r["rows_per_s"] / base
    print(text_table(
        ("order", "backend", "rows/s", "x random fp32", "padded tokens", "dev acc %", "mean KL", "agreement %"),
        [(r["order"], r["backend"], f"{r['rows_per_s']:.1f}", f"{r['speedup']:.2f}", r["padded_tokens"],
          f"{100 * r['dev_accuracy']:.2f}", f"{r['mean_kl']:.5f}", f"{100 * r['agreement']:.1f}") for r in results],
    ))  # fmt: skip
    summary = {"teacher": opts.teacher, "rows": len(rows), "dev_rows": len(dev), "batch_size": opts.batch_size,
               "threads": torch.get_num_threads(), "results": results}  # fmt: skip
    with open(opts.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(f"written: {opts.out}")
    return results


if __name__ == "__main__":
    run_cli(main)
