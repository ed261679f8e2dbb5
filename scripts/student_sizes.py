#!/usr/bin/env python
"""Size of every student preset next to BERT-base: plain, ALBERT-shared, factorized (E=128), both.

    python scripts/student_sizes.py [--output sizes.json] [--seq_len 128]

Prints a table (parameters, fp32 / fp16 size, FLOPs per token) and writes it as JSON. Nothing is downloaded:
the models are built on the meta device from configs (BERT-base: 12 x 768, vocab 30,522, 2 labels).
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import BertConfig, BertForSequenceClassification

from distillkit import build_student
from distillkit.students import PRESETS, format_size_table, size_report

VARIANTS = {
    "plain": {},
    "shared": {"share_layers": True},
    "factorized E=128": {"embedding_size": 128},
    "shared + factorized E=128": {"share_layers": True, "embedding_size": 128},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="student_sizes.json")
    parser.add_argument("--seq_len", type=int, default=128)
    opts = parser.parse_args()
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        teacher = BertForSequenceClassification(BertConfig(num_labels=2))
        reports = {"bert-base (teacher)": size_report(teacher, opts.seq_len)}
        for preset in PRESETS:
            for variant, kwargs in VARIANTS.items():
                if kwargs.get("embedding_size", 0) >= PRESETS[preset][1]:
                    continue  # factorizing needs E < width
                student = build_student(preset, teacher, init_from_teacher=False, **kwargs)
                reports[f"{preset} {variant}"] = size_report(student, opts.seq_len)
    print(format_size_table(reports))
    with open(opts.output, "w", encoding="utf-8") as f:
        json.dump(reports, f, indent=2)
    print(f"\nwritten to {opts.output}")


if __name__ == "__main__":
    main()
