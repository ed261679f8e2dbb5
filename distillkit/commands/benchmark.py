"""The SST-2 benchmark: a base teacher fine-tuned by the teacher stage, distilled into small students, each next to
its hard-label baseline (the same student and initialisation trained on the gold labels alone).

    distillkit benchmark --plan recipes/sst2/benchmark.yaml --profile gpu --out runs/sst2

Offline: `distillkit fetch-models --out models`, then add `--local_models models` (hub names
`sentence-transformers/X` are read from `models/X`) and `--train_file .../train.tsv --validation_file .../dev.tsv`.

For every model it records parameters, size on disk, CPU latency per example at batch 1 (fp32 and the int8 export),
dev accuracy, accuracy retained relative to the teacher, training time and examples per second. It writes
`results.json`, `results.md` (the table, with the targets met or missed) and `results.svg` (accuracy against
parameters and against CPU latency) into --out. Each finished run leaves `runs/<student>/<variant>-seed<k>.json`: an
interrupted benchmark started again skips what is done.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from distillkit.cli import text_table
from distillkit.recipe_benchmark import plan_task_type, run_recipe_benchmark
from distillkit.sst2_benchmark import load_plan, run_benchmark, targets

from . import invocation

# the benchmark's pieces, for callers that used to find them here
__all__ = ["load_plan", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=" ".join(invocation("benchmark")),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", default="recipes/sst2/benchmark.yaml")
    parser.add_argument("--profile", help="a profile of the plan (gpu, cpu)")
    parser.add_argument("--out", default="runs/sst2")
    parser.add_argument("--teacher", help="override the plan's teacher (hub name or directory)")
    parser.add_argument("--local_models", help="folder of models made by distillkit fetch-models")
    parser.add_argument("--train_file")
    parser.add_argument("--validation_file")
    parser.add_argument("--max_eval_samples", type=int)
    parser.add_argument("--max_steps", type=int, help="cap every training run (smoke tests)")
    parser.add_argument("--train_samples", type=int, help="override the students' training subset")
    parser.add_argument("--teacher_train_samples", type=int, help="override the teacher stage's training subset")
    parser.add_argument("--only", action="append", help="run only this student (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds of every student (one seed of each first)")
    parser.add_argument("--use_cpu", action="store_true", help="train on the CPU even where a GPU is present")
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="train nothing: the table of the runs already finished in --out (the plan's, or --only's)",
    )
    parser.add_argument(
        "--remeasure_latency", action="store_true", help="time every saved model again at the end, on an idle CPU"
    )
    cli = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("onnx_ir", "onnxscript"):  # the ONNX export's graph passes log every rewrite
        logging.getLogger(name).setLevel(logging.WARNING)
    command = [*invocation("benchmark"), *(sys.argv[1:] if argv is None else argv)]
    plan = load_plan(cli.plan, cli.profile, on_cpu=cli.use_cpu or not torch.cuda.is_available())
    if plan_task_type(plan) == "causal-lm":  # perplexity and generation speed: a table of its own
        from distillkit.lm_benchmark import lm_verdicts, run_lm_benchmark

        for student in plan["students"]:
            student["seeds"] = cli.seeds or student["seeds"]
        out, rows = run_lm_benchmark(plan, cli, command)
        cols = ["name", "variant", "parameters", "perplexity", "retained", "kd_gain", "generation_tokens_per_s"]
        print(text_table(cols, [[r.get(c, "") for c in cols] for r in rows]))
        print("\n".join(lm_verdicts(rows)))
        print(f"written: {out / 'results.md'}, results.json")
        return
    if plan_task_type(plan) != "sequence-classification":  # token classification, ...: every run a recipe run
        for student in plan["students"]:
            student["seeds"] = cli.seeds or student["seeds"]
        out, rows = run_recipe_benchmark(plan, cli, command)
        goals = [(int(g["params"]), float(g["retained"])) for g in plan.get("targets", [])] or None
    else:
        out, rows = run_benchmark(cli, command, plan)
        goals = None
    cols = ["name", "variant", "parameters", "latency_fp32_ms", "latency_int8_ms", "accuracy", "retained", "kd_gain"]
    print(text_table(cols, [[r.get(c, "") for c in cols] for r in rows]))
    print("\n".join(targets(rows, goals)))
    print(f"written: {out / 'results.md'}, results.json, results.svg")
