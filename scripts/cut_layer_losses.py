#!/usr/bin/env python
"""Developer script (issue 30): the intermediate losses of students before their first step, cut from the teacher
against random layers of the same shape.

Each variant is a distill command's flags; the script runs the recipe up to the trainer (the student built, cut and
its projections made), then averages every loss term over the first `--batches` validation batches without
training. Prints a table and writes JSON (no machine paths: the teacher as given on the command line).

    python scripts/cut_layer_losses.py --teacher ~/.cache/distillkit-bench/sst2-full/teacher \\
        --train_file ../shared/data/glue/sst2/train.tsv --validation_file ../shared/data/glue/sst2/dev.tsv \\
        --out docs/results/cut-layer-losses.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch

from distillkit.cli import text_table
from distillkit.recipe import DistillRecipe
from distillkit.recipes import parse_args
from distillkit.sst2_benchmark.measure import machine

SHAPES = {  # the SST-2 table's students (recipes/sst2/benchmark.yaml)
    "4 x 312": ["--num_layers", "4", "--hidden_size", "312", "--num_heads", "12", "--intermediate_size", "1200"],
    "4 x 192": ["--num_layers", "4", "--hidden_size", "192", "--num_heads", "12", "--intermediate_size", "768"],
}
STUDENTS = {  # how each student of a shape is made
    "cut, pruned map, selection": ["--student", "pruned"],
    "cut, uniform map, random projection": [
        "--student",
        "pruned",
        "--layer_map",
        "uniform",
        "--cut_projection",
        "random",
    ],  # fmt: skip
    "random layers, uniform map": ["--student", "custom", "--init_from_teacher", "true"],
}
VARIANTS = {  # name: (shape, flags)
    "teacher's shape, cut (nothing removed)": (None, ["--student", "pruned", "--num_layers", "12"]),
    **{f"{shape}, {name}": (shape, flags) for shape in SHAPES for name, flags in STUDENTS.items()},
}
HIDDEN_LOSSES = ("mse", "ln_mse")


def step0_terms(flags: list[str], batches: int) -> dict[str, dict[str, float]]:
    """The recipe up to its trainer; for each hidden-state distance, the mean unweighted terms over the first
    validation batches, in eval mode."""
    recipe = DistillRecipe(*parse_args(flags), command=["cut_layer_losses"])
    recipe.check_arguments()
    recipe.load_data()
    recipe.resume = None
    for step in ("load_teachers", "build_student", "choose_defaults", "tokenize", "check", "teacher_stage",
                 "finish_student", "make_trainer"):  # fmt: skip
        getattr(recipe, step)()
    trainer = recipe.trainer
    trainer.model.eval()
    inputs = [trainer._prepare_inputs(b) for b, _ in zip(trainer.get_eval_dataloader(), range(batches))]
    out = {}
    for kind in HIDDEN_LOSSES:
        trainer.args.hidden_loss = kind  # read by the hidden-state loss at each call
        sums: dict[str, float] = {}
        with torch.no_grad():
            for batch in inputs:
                for name, value in trainer.loss_terms(trainer.model, batch)[1].items():
                    sums[name] = sums.get(name, 0.0) + value.item()
        out[kind] = {name: round(total / len(inputs), 4) for name, total in sums.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="the fine-tuned teacher (a sequence classifier)")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--batches", type=int, default=8, help="validation batches of 32 (default 8: 256 sentences)")
    parser.add_argument("--out", default=None, help="JSON file to write")
    cli = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (shape, flags) in VARIANTS.items():
            common = ["--teacher", cli.teacher, "--train_file", cli.train_file, "--validation_file",
                      cli.validation_file, "--output_dir", os.path.join(tmp, "run"), "--hidden_weight", "1",
                      "--attention_weight", "1", "--max_seq_length", "64", "--per_device_eval_batch_size", "32",
                      "--prune_samples", "512", "--prune_eval", "false", "--report_to", "none",
                      "--seed", "0"]  # fmt: skip
            for loss, terms in step0_terms([*common, *SHAPES.get(shape, []), *flags], cli.batches).items():
                rows.append({"student": name, "hidden_loss": loss, **terms})
                print(rows[-1], flush=True)
    names = sorted({k for r in rows for k in r} - {"student", "hidden_loss"})
    table = [[r["student"], r["hidden_loss"], *[r.get(n, "") for n in names]] for r in rows]
    print(text_table(["student", "hidden_loss", *names], table))
    if cli.out:
        teacher = cli.teacher.replace(os.path.expanduser("~"), "~")  # no machine paths in published JSON
        record = {"command": f"python scripts/cut_layer_losses.py --teacher {teacher} --batches {cli.batches}",
                  "machine": machine(), "sentences": 32 * cli.batches,
                  "note": "unweighted loss terms before the first step, averaged over the first validation batches "
                          "(SST-2 dev), eval mode", "rows": rows}  # fmt: skip
        with open(cli.out, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        print("written:", cli.out)


if __name__ == "__main__":
    main()
