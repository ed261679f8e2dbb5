#!/usr/bin/env python
"""Developer script (issue 30): what a trimmed vocabulary's "student view" costs the teacher.

With `--trim_vocab` and a layer loss the teacher reads the student's tokens in its own ids (a word the trimmed
vocabulary lost arrives in pieces) instead of its own tokenization. This script trims the teacher's vocabulary as the
SST-2 benchmark does (the first `--train_samples` sentences of its fixed shuffle, plus the augmented sentences of a
benchmark's augmentation cache if given), counts the rows and tokens whose view changes, and scores the teacher on
the dev set in both views. Prints a table and writes JSON (no machine paths).

    python scripts/trim_teacher_view.py --teacher ~/.cache/distillkit-bench/sst2-cpu/teacher \\
        --train_file ../shared/data/glue/sst2/train.tsv --validation_file ../shared/data/glue/sst2/dev.tsv \\
        --train_samples 6000 --augmented ~/.cache/distillkit-bench/sst2-cpu/augment/augment-*.json \\
        --min_count 7 --out docs/results/trim-teacher-view-cpu.json
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distillkit.cli import portable, text_table
from distillkit.data import get_task, load_task_data
from distillkit.sst2_benchmark.measure import machine
from distillkit.students.vocab import trim_vocabulary


def views(tokenizer, trimmed, texts: list[str], max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Each text in the teacher's own ids, and as the student's tokens mapped back to the teacher's ids."""
    own = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    student = trimmed.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return own, [[trimmed.kept_ids[i] for i in ids] for ids in student]


@torch.no_grad()
def accuracy(model, rows: list[list[int]], gold: list[int], pad: int, batch: int = 32) -> float:
    right = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in chunk])
        predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist()
        right += sum(int(p == g) for p, g in zip(predicted, gold[i : i + batch]))
    return right / len(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--train_samples", type=int, default=6000)
    parser.add_argument("--augmented", default=None, help="a benchmark's augmentation cache (JSON with 'texts')")
    parser.add_argument("--min_count", type=int, default=7)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--out", default=None)
    cli = parser.parse_args(argv)

    raw = load_task_data(get_task("sst2"), cli.train_file, cli.validation_file)
    labelled = list(raw["train"].shuffle(seed=0).select(range(cli.train_samples))["sentence"])  # the benchmark's
    augmented = []
    if cli.augmented:
        with open(cli.augmented, encoding="utf-8") as f:
            augmented = json.load(f)["texts"]
    dev, gold = list(raw["validation"]["sentence"]), list(raw["validation"]["label"])
    tokenizer = AutoTokenizer.from_pretrained(cli.teacher)
    trimmed = trim_vocabulary(tokenizer, labelled + augmented, None, cli.min_count)
    rows = []
    for name, texts in (("labelled", labelled), ("augmented", augmented), ("dev", dev)):
        if not texts:
            continue
        own, student = views(tokenizer, trimmed, texts, cli.max_seq_length)
        changed = sum(a != b for a, b in zip(own, student))
        rows.append({"split": name, "rows": len(texts), "rows_changed": changed,
                     "tokens_own": sum(map(len, own)), "tokens_student": sum(map(len, student))})  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(cli.teacher).eval()
    own, student = views(tokenizer, trimmed, dev, cli.max_seq_length)
    scores = {"own": accuracy(model, own, gold, tokenizer.pad_token_id),
              "student": accuracy(model, student, gold, tokenizer.pad_token_id)}  # fmt: skip
    print(text_table(["split", "rows", "rows in pieces", "tokens own", "tokens student view"],
                     [(r["split"], r["rows"], f"{r['rows_changed']} ({r['rows_changed'] / r['rows']:.1%})",
                       r["tokens_own"], r["tokens_student"]) for r in rows]))  # fmt: skip
    print(f"vocabulary kept: {len(trimmed.kept_ids):,} of {len(tokenizer):,} tokens (min count {cli.min_count})")
    print(f"teacher dev accuracy: own tokens {scores['own']:.4f}, the student's tokens {scores['student']:.4f}")
    result = {"teacher": portable(cli.teacher), "train_samples": cli.train_samples, "augmented_rows": len(augmented),
              "min_count": cli.min_count, "vocab_size": len(trimmed.kept_ids), "splits": rows,
              "teacher_dev_accuracy": scores, "machine": machine()}  # fmt: skip
    if cli.out:
        with open(cli.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


if __name__ == "__main__":
    main()
