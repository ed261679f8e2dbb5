#!/usr/bin/env python
"""Developer script (issue 30): the intermediate losses of students before their first step, cut from the teacher
against random layers of the same shape.

Each variant is a distill command's flags; the script runs the recipe up to the trainer (the student built, cut and
its projections made), then averages every loss term over the first `--batches` validation batches without
training. Prints a table and writes JSON (no machine paths: the teacher as given on the command line).

`--projections`: for the cut 4 x 312 student (pruned map), where each matched layer's plain-MSE error lies at step 0:
in the kept channels (what a fixed selection projection can reduce) or in the channels the cut dropped (compared with
0 by the selection: only a learned projection can predict them), and the MSE of the best linear map from the student's
states to the teacher's (least squares fitted on half the tokens, scored on the other half): how far a learned
projection could go before the student changes.

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
PROJECTION_NOTE = ("the 4 x 312 cut (pruned map) before its first step, eval mode, the non-padding tokens of the first "
                   "validation batches (SST-2 dev): plain MSE over the teacher's width through the selection, its "
                   "kept-channel and dropped-channel parts, and a least-squares linear map (with bias) fitted on the "
                   "first half of the tokens, scored on the second")  # fmt: skip


def trainer_before_step_0(flags: list[str]):
    """A distill command's recipe run up to its trainer (the student built, cut, its projections made), eval mode."""
    recipe = DistillRecipe(*parse_args(flags), command=["cut_layer_losses"])
    recipe.check_arguments()
    recipe.load_data()
    recipe.resume = None
    for step in ("load_teachers", "build_student", "choose_defaults", "tokenize", "check", "teacher_stage",
                 "finish_student", "make_trainer"):  # fmt: skip
        getattr(recipe, step)()
    recipe.trainer.model.eval()
    return recipe.trainer


def step0_terms(flags: list[str], batches: int) -> dict[str, dict[str, float]]:
    """The recipe up to its trainer; for each hidden-state distance, the mean unweighted terms over the first
    validation batches, in eval mode."""
    trainer = trainer_before_step_0(flags)
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


def projection_split(flags: list[str], batches: int) -> list[dict[str, float]]:
    """Per matched layer pair of a cut student: the step-0 plain MSE through the selection, split into its kept and
    dropped channels, and a held-out least-squares linear map's MSE (see the module's doc)."""
    trainer = trainer_before_step_0(flags)
    kept = list(trainer.cut.hidden)
    pairs = list(trainer.layer_map)
    states: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [([], []) for _ in pairs]
    with torch.no_grad():
        for batch, _ in zip(trainer.get_eval_dataloader(), range(batches)):
            batch = trainer._prepare_inputs(batch)
            mask = batch["attention_mask"].bool()
            student = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    output_hidden_states=True)  # fmt: skip
            teacher = trainer.teacher(batch)
            for (s_list, t_list), (s, t) in zip(states, pairs):
                s_list.append(student.hidden_states[s][mask].float())
                t_list.append(teacher.hidden_states[t][mask].float())
    rows = []
    for (s_list, t_list), (s, t) in zip(states, pairs):
        x, y = torch.cat(s_list), torch.cat(t_list)  # (tokens, 312), (tokens, 768)
        rows.append({"student_layer": s, "teacher_layer": t, "tokens": x.shape[0], **channel_split(x, y, kept)})
    return rows


def channel_split(x: torch.Tensor, y: torch.Tensor, kept: list[int]) -> dict[str, float]:
    """Student states x (tokens, d_s) against teacher states y (tokens, d_t), student channel k cut from teacher
    channel kept[k]: plain MSE through the selection (the dropped channels compared with 0), its two parts, and the
    MSE of the least-squares linear map x -> y (with bias) fitted on the first half of the tokens, scored on the
    second half."""
    chosen = set(kept)
    dropped = [c for c in range(y.shape[1]) if c not in chosen]
    kept_err = (x - y[:, kept]).pow(2).sum(-1).mean() / y.shape[1]
    dropped_err = y[:, dropped].pow(2).sum(-1).mean() / y.shape[1]
    half = x.shape[0] // 2
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1).double()
    w = torch.linalg.lstsq(design[:half], y[:half].double()).solution
    fitted = (design[half:] @ w - y[half:].double()).pow(2).mean()
    figures = {"mse_selection": kept_err + dropped_err, "kept_channels": kept_err, "dropped_channels": dropped_err,
               "mse_least_squares": fitted, "teacher_mean_square": y.pow(2).mean()}  # fmt: skip
    return {k: round(float(v), 5) for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="the fine-tuned teacher (a sequence classifier)")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--batches", type=int, default=8, help="validation batches of 32 (default 8: 256 sentences)")
    parser.add_argument("--out", default=None, help="JSON file to write")
    parser.add_argument("--projections", action="store_true",
                        help="the kept / dropped split, a least-squares projection (4 x 312, cut) instead")  # fmt: skip
    cli = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--teacher", cli.teacher, "--train_file", cli.train_file, "--validation_file",
                  cli.validation_file, "--output_dir", os.path.join(tmp, "run"), "--hidden_weight", "1",
                  "--attention_weight", "1", "--max_seq_length", "64", "--per_device_eval_batch_size", "32",
                  "--prune_samples", "512", "--prune_eval", "false", "--report_to", "none",
                  "--seed", "0"]  # fmt: skip
        if cli.projections:
            rows = projection_split([*common, *SHAPES["4 x 312"], "--student", "pruned", "--hidden_loss", "mse"],
                                    cli.batches)  # fmt: skip
        for name, (shape, flags) in VARIANTS.items() if not cli.projections else ():
            for loss, terms in step0_terms([*common, *SHAPES.get(shape, []), *flags], cli.batches).items():
                rows.append({"student": name, "hidden_loss": loss, **terms})
                print(rows[-1], flush=True)
    keys = ["student_layer", "teacher_layer"] if cli.projections else ["student", "hidden_loss"]
    names = sorted({k for r in rows for k in r} - set(keys))
    table = [[*(r[k] for k in keys), *[r.get(n, "") for n in names]] for r in rows]
    print(text_table([*keys, *names], table))
    if cli.out:
        teacher = cli.teacher.replace(os.path.expanduser("~"), "~")  # no machine paths in published JSON
        flag = " --projections" if cli.projections else ""
        record = {"command": f"python scripts/cut_layer_losses.py --teacher {teacher} --batches {cli.batches}{flag}",
                  "machine": machine(), "sentences": 32 * cli.batches,
                  "note": PROJECTION_NOTE if cli.projections else "unweighted loss terms before the first step, "
                  "averaged over the first validation batches (SST-2 dev), eval mode", "rows": rows}  # fmt: skip
        with open(cli.out, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        print("written:", cli.out)


if __name__ == "__main__":
    main()
