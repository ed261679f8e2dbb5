"""The SST-2 benchmark: a base teacher fine-tuned by the teacher stage, distilled into small students, each next to
its hard-label baseline (the same student and initialisation trained on the gold labels alone). `distillkit
benchmark` runs it; `plan.py` reads the plan, `runner.py` and `student_run.py` run it, `measure.py` times the models,
`report.py` makes the table and the plot."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from ..cli import portable
from ..resilience import atomic_write_text
from .plan import load_plan, precision_note
from .report import markdown, summarize, svg_plot, targets
from .runner import LATENCY_PROBE, Bench

__all__ = ["Bench", "load_plan", "markdown", "run_benchmark", "summarize", "svg_plot", "targets"]


def run_benchmark(cli: Any, command: list[str], plan: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    """Run (or, with --report_only, read) the `plan`'s teacher and students (`load_plan`); write results.json,
    results.md and results.svg into --out. Returns (the output folder, the table's rows)."""
    if cli.teacher_train_samples:
        plan["overrides"]["teacher_train_samples"] = cli.teacher_train_samples
    for student in plan["students"]:
        student["train_samples"] = cli.train_samples or student["train_samples"]
        student["seeds"] = cli.seeds or student["seeds"]
    bench = Bench(plan, cli)
    bench.out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    teacher = bench.teacher()
    runs = bench.students(cli.only)
    bench.remeasure_latency(teacher, runs, everything=cli.remeasure_latency)
    baselines = {s["name"]: s["baseline"] for s in plan["students"] if isinstance(s.get("baseline"), str)}
    rows = summarize(teacher, runs, baselines)
    anchors = {s["name"]: s.get("anchor") for s in plan["students"]}
    for row in rows:  # the plan's anchor, for runs recorded before the plan named one
        row["anchor"] = row.get("anchor") or anchors.get(row["name"])
    # other teachers (of an ensemble) and ensembles, after the plan's teacher; retained % stays against that teacher
    others = [
        *bench.extra_teachers.values(),
        *(json.loads(p.read_text()) for p in sorted(bench.out.glob("ensemble-*.json"))),
    ]
    rows[1:1] = [
        {**r, "seeds": 1, "accuracy_std": 0.0, "retained": round(r["accuracy"] / teacher["accuracy"], 4),
         "speedup_fp32": round(teacher["latency_fp32_ms"] / r["latency_fp32_ms"], 2)}
        for r in others
    ]  # fmt: skip
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not cli.use_cpu else "CPU"
    header = (
        f"SST-2 dev ({len(bench.validation)} sentences); profile {cli.profile or 'none'}; trained on {device}, "
        f"{os.cpu_count()} CPU cores; latency: batch 1 on the CPU, {torch.get_num_threads()} threads, "
        f"{LATENCY_PROBE} dev sentences"
        + (", all re-timed after training" if cli.remeasure_latency else "")
        + precision_note(plan)
        + f". Command: {portable(shlex.join(command))}"  # no machine paths: ~ for the home folder
    )
    result = {"header": header, "teacher": teacher, "rows": rows, "runs": runs, "targets": targets(rows),
              "wall_s": round(time.perf_counter() - wall, 1)}  # fmt: skip
    atomic_write_text(str(bench.out / "results.json"), json.dumps(result, indent=2))
    atomic_write_text(str(bench.out / "results.md"), markdown(rows, header))
    atomic_write_text(
        str(bench.out / "results.svg"), svg_plot(rows, "distillkit on SST-2 (" + (cli.profile or "") + ")")
    )
    return bench.out, rows
