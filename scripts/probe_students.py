"""Developer script: where a student's attention goes and whether its first token still depends on the sentence.

For each model folder: the attention mass on special tokens per layer (averaged over heads and real query tokens),
and the first token's final hidden state across sentences (mean pairwise cosine; spread = mean distance from the mean
/ mean norm). A student whose first-token state is the same for every sentence predicts one class.

    python scripts/probe_students.py --tokenizer TEACHER_DIR --dev ../shared/data/glue/sst2/dev.tsv DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import csv

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--dev", required=True, help="a GLUE-style TSV with a sentence column")
    parser.add_argument("--sentences", type=int, default=128)
    cli = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(cli.tokenizer)
    with open(cli.dev, encoding="utf-8", newline="") as f:
        texts = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][: cli.sentences]
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    real = batch["attention_mask"].bool()
    special = torch.isin(batch["input_ids"], torch.tensor(tok.all_special_ids)) & real
    for path in cli.models:
        model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
        with torch.no_grad():
            out = model(**batch, output_attentions=True, output_hidden_states=True)
        mass = [round((a * special[:, None, None, :]).sum(-1).mean(1)[real].mean().item(), 3) for a in out.attentions]
        first = out.hidden_states[-1][:, 0]
        unit = torch.nn.functional.normalize(first, dim=-1)
        cosine = (unit @ unit.T)[~torch.eye(len(unit), dtype=torch.bool)].mean().item()
        spread = (first - first.mean(0)).norm(dim=-1).mean().item() / first.norm(dim=-1).mean().item()
        print(f"{path}: attention on special tokens per layer {mass}; first token's final state: mean pairwise "
              f"cosine {cosine:.3f}, spread {spread:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
