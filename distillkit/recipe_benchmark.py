"""A benchmark for any task type whose every run is an ordinary `DistillRecipe` run on the task's files (the
CoNLL-2003 and WNUT-17 plans: `recipes/conll2003/benchmark.yaml`). The SST-2 benchmark (`sst2_benchmark/`) shares
one tokenization between its runs; this one trades that for generality: each run reads and encodes its files
itself, exactly as `distillkit distill` does, which costs seconds on data of this size.

- The teacher: the plan's teacher through the teacher stage (`teacher_recipe`), once, into `<out>/teacher`.
- Each student of the plan, each seed, twice: distilled ("kd") and as its hard-label baseline ("baseline": the same
  student and initialisation, alpha 0, no intermediate losses, the teacher never run). A distilled run whose losses
  read only the teacher's logits uses a teacher cache shared by the runs on the same training rows and tokenizer.
- Each finished run writes `runs/<name>/<variant>-seed<k>.json`: a stopped benchmark started again skips what is
  done and trains an unfinished run again from its start (runs are minutes long).
- The score is the task type's first `score_keys()` (entity F1 for token classification); `retained` is the
  student's score over the teacher's.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding

from .cli import portable
from .config import INTERMEDIATE_WEIGHTS
from .export import feature_batches, input_names, score_predict
from .loading import load_tokenizer
from .metrics import evaluate_model
from .recipe import DistillRecipe
from .recipes import parse_args
from .resilience import atomic_write_text
from .sst2_benchmark.measure import cpu_latencies, machine, weights_mb
from .sst2_benchmark.plan import PLAN_KEYS, flag_list, local_name, precision_note
from .sst2_benchmark.report import markdown, summarize, svg_plot, targets
from .tasks import get_task_type

logger = logging.getLogger("benchmark")

LATENCY_PROBE = 32  # validation sentences timed one at a time


def plan_task_type(plan: dict[str, Any]) -> str:
    return plan.get("task_type") or "sequence-classification"


class BenchRecipe(DistillRecipe):
    """A student run of the benchmark: the recipe's steps, evaluated without the teacher. The student's scores come
    from a plain evaluation (the trainer's would run the teacher over the validation set for its loss), and the
    teacher's from the teacher stage's record (the same teacher on the same validation data)."""

    teacher_metrics: dict[str, float] = {}

    def evaluate(self) -> None:
        trainer, result = self.trainer, self.result
        collator = self.task_type.data_collator(self.student_tokenizer)
        metrics = evaluate_model(trainer.model, self.student_tokenizer, self.data["validation"], self.args,
                                 self.compute_metrics, data_collator=collator)  # fmt: skip
        trainer.save_metrics("eval", metrics)
        result.metrics.update(metrics)
        self.notes += self.task_type.prediction_notes("student", self.compute_metrics.last_summary)
        trainer.save_state()
        result.teacher_metrics = dict(self.teacher_metrics)


class RecipeBench:
    stage_student = "tiny"  # what the teacher's run builds as its (untrained) student: any the task type accepts

    def __init__(self, plan: dict[str, Any], cli: argparse.Namespace):
        self.plan, self.cli = plan, cli
        self.out = Path(cli.out)
        self.task_type = get_task_type(plan_task_type(plan))
        self.metric = self.task_type.score_keys()[0]
        self.files = ["--train_file", cli.train_file or "", "--validation_file", cli.validation_file or ""]
        if not cli.train_file:  # a hub data set (--task in the recipes)
            self.files = []
        self.max_length = 128  # the timed text's longest input where a record does not say (older records)
        self.goals = [(int(g["params"]), float(g["retained"])) for g in plan.get("targets", [])] or None

    def flags(self, recipe: str, extra: dict[str, Any]) -> list[str]:
        flags = ["--config", recipe, "--report_to", "none", "--save_strategy", "no", *self.files]
        if self.cli.use_cpu:
            flags += ["--use_cpu", "true"]
        if self.cli.max_steps:
            flags += ["--max_steps", str(self.cli.max_steps)]
        if self.cli.max_eval_samples:
            flags += ["--max_eval_samples", str(self.cli.max_eval_samples)]
        return flags + flag_list(extra)

    # -- the teacher ---------------------------------------------------------------------------------------------

    def teacher(self) -> dict[str, Any]:
        """The teacher stage of the plan's teacher, done once (resumed from its checkpoints), then read."""
        record_path = self.out / "teacher.json"
        self.teacher_dir = str(self.out / "teacher")
        if record_path.is_file() and (self.out / "teacher" / "config.json").is_file():
            record = json.loads(record_path.read_text())
            self.teacher_metrics = self.metrics_of(record)
            return record
        if self.cli.report_only:
            raise FileNotFoundError(f"{record_path}: no teacher yet; run the benchmark without --report_only first.")
        name = local_name(self.cli.teacher or self.plan["teacher"], self.cli.local_models)
        overrides = {k: v for k, v in self.plan["overrides"].items() if k not in PLAN_KEYS}
        samples = self.cli.teacher_train_samples or self.plan["overrides"].get("teacher_train_samples")
        extra = {**overrides, "teacher": name, "student": self.stage_student}  # the student is not trained here
        if samples:
            extra["max_train_samples"] = samples
        flags = self.flags(self.plan["teacher_recipe"], extra)
        flags += ["--output_dir", str(self.out), "--save_strategy", "steps", "--save_steps", "100"]
        recipe = DistillRecipe(*parse_args(flags), command=[])
        recipe.check_arguments()
        recipe.load_data()
        recipe.resume = None
        recipe.load_teachers()
        recipe.build_student()
        recipe.tokenize()
        recipe.check()
        start = time.perf_counter()
        needs_stage = recipe.setups[0].needs_stage
        if needs_stage:  # a stopped stage goes on from its checkpoint
            recipe.args.resume_from_checkpoint = "auto"
            recipe.teacher_stage()
            metrics = recipe.result.teacher_metrics
        else:  # already fine-tuned: a copy, so that the students read one folder
            recipe.teacher.save_pretrained(self.teacher_dir)
            recipe.tokenizer.save_pretrained(self.teacher_dir)
            collator = self.task_type.data_collator(recipe.tokenizer)
            metrics = evaluate_model(recipe.teacher, recipe.tokenizer, recipe.teacher_data["validation"], recipe.args,
                                     recipe.compute_metrics, prefix="teacher_eval", data_collator=collator)  # fmt: skip
        model = recipe.teacher
        seconds = getattr(model, "distillkit_train_seconds", None) or time.perf_counter() - start
        epochs = recipe.teacher_args.teacher_num_train_epochs
        rows = len(recipe.raw["train"])
        record = {
            "name": "teacher",
            "model": Path(name).name if os.path.isdir(name) else name,  # no machine paths in the results
            "variant": "fine-tuned" if needs_stage else "given",
            "parameters": model.num_parameters(),
            "size_mb": weights_mb(self.teacher_dir),
            **self.scores(metrics, "teacher_eval_"),
            "train_examples": rows if needs_stage else 0,
            "epochs": epochs if needs_stage else 0,
            "train_s": round(seconds, 1) if needs_stage else 0.0,
            "train_examples_per_s": round(rows * epochs / seconds, 1) if needs_stage else None,
            "machine": machine(),
            **self.latencies(model, recipe.tokenizer, recipe, recipe.teacher_data.get("validation")),
        }
        atomic_write_text(str(record_path), json.dumps(record, indent=2))
        self.teacher_metrics = self.metrics_of(record)
        del recipe, model
        gc.collect()
        return record

    def metrics_of(self, record: dict[str, Any]) -> dict[str, float]:
        """The teacher's metrics as its trainer reported them (SQuAD's in percent), for the students' cards."""
        return {f"teacher_eval_{k}": v * self.task_type.score_scale for k, v in record["scores"].items()}

    def scores(self, metrics: dict[str, float], prefix: str) -> dict[str, Any]:
        """The run's scores: the headline metric under its own name and as `accuracy` (the report's key), plus
        every other score the task type reports (per entity type for token classification)."""
        found = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}
        if self.metric not in found:
            raise KeyError(f"no {prefix}{self.metric} in the run's metrics {sorted(metrics)}")
        timing = ("runtime", "_time", "_per_second", "loss")
        scale = self.task_type.score_scale  # SQuAD's percentages as fractions, like every other table's scores
        keep = {k: round(v / scale, 6) for k, v in found.items() if isinstance(v, float) and not k.endswith(timing)}
        return {"accuracy": keep[self.metric], "scores": keep}

    def probe_texts(self, raw: Any) -> tuple[list[str], list[str] | None]:
        """The first LATENCY_PROBE validation rows as the models read them: a tagger's words joined, a question
        with its context (the task type's text columns)."""
        first, second = self.task_type.text_columns() or (None, None)
        if first not in raw.column_names:
            first, second = raw.column_names[0], None
        texts = [" ".join(r) if isinstance(r, list) else str(r) for r in raw[first][:LATENCY_PROBE]]
        pairs = [str(r) for r in raw[second][:LATENCY_PROBE]] if second in raw.column_names else None
        return texts, pairs

    def latencies(self, model: Any, tokenizer: Any, recipe: DistillRecipe, validation: Any = None) -> dict[str, Any]:
        """Timed at the recipe's max_seq_length (recorded: --remeasure_latency times at the same length); with the
        model's encoded `validation` rows, its int8 and ONNX exports are scored on them too."""
        texts, pairs = self.probe_texts(recipe.raw["validation"])
        length = recipe.data_args.max_seq_length
        score = None if validation is None else self.export_scorer(model, tokenizer, validation, recipe.compute_metrics)
        return {**self.time_model(model, tokenizer, texts, pairs, length, score), "latency_max_length": length}

    def export_scorer(self, model: Any, tokenizer: Any, validation: Any, compute: Any) -> Any:
        """Each export's headline score on the validation rows (`accuracy_int8`, `accuracy_onnx`, on the scale of
        the run's `accuracy`), computed as the run's evaluation computes it: a speed-up counts only where the export
        keeps the model's score (`report.EXPORT_TOLERANCE`)."""
        collate = self.task_type.data_collator(tokenizer) or DataCollatorWithPadding(tokenizer)
        names = [n for n in input_names(model) if n in validation.column_names]
        batches = feature_batches(validation, collate, 32, names, self.task_type.label_columns)

        def score(predict: Any, _tokenizer: Any) -> dict[str, float]:
            metrics, _, _ = score_predict(predict, batches, self.task_type, compute)
            return {"accuracy": round(metrics[self.metric] / self.task_type.score_scale, 6)}

        return score

    def time_model(self, model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None, length: int,
                   score: Any = None) -> dict[str, Any]:  # fmt: skip
        """Batch-1 CPU latency of the float model and its int8 / ONNX exports, each export scored by `score` (a
        language model's benchmark times generation instead: `lm_benchmark`)."""
        return cpu_latencies(model, tokenizer, texts, length, pairs, score=score)

    # -- the students --------------------------------------------------------------------------------------------

    def cache_dir(self, spec: dict[str, Any], flags: list[str]) -> str:
        """One teacher cache per training data: the rows and the student's tokenization (the flags that change them;
        augmented rows depend on the seed too)."""
        model_args, data_args, _, args = parse_args(flags)
        parts = [data_args.max_train_samples, model_args.trim_vocab, model_args.trim_vocab_min_count,
                 data_args.augment, data_args.unlabeled_file, data_args.max_seq_length, data_args.label_all_subwords,
                 model_args.student if os.path.isdir(model_args.student) else None]  # fmt: skip
        if data_args.augment and args.seed != 0:  # seed 0 keeps the key it always had (its caches stay found)
            parts.append(args.seed)
        parts += self.cache_key_extra(model_args, data_args, args)
        key = json.dumps(parts)
        return str(self.out / "teacher_cache" / hashlib.sha256(key.encode()).hexdigest()[:12])

    def cache_key_extra(self, model_args: Any, data_args: Any, args: Any) -> list[Any]:
        """More settings that change what a cache holds, for task types whose caches depend on them."""
        return []

    card_latency = True  # each run's card times teacher and student (a task type's benchmark may time them itself)
    timing_raw: Any = None  # the validation data `remeasure_latency` read

    def retime(self, record: dict[str, Any], model: Any, tokenizer: Any, texts: list[str], pairs: list[str] | None,
               length: int) -> dict[str, Any]:  # fmt: skip
        """A saved model's timings, measured again for its `record`."""
        return self.time_model(model, tokenizer, texts, pairs, length)

    def stale_timing(self, record: dict[str, Any]) -> bool:
        """A record to time again even without --remeasure_latency: the base benchmark's are never stale."""
        return False

    def prepare_run(self, model_args: Any, data_args: Any, args: Any) -> None:
        """A task type's settings for one student run, after the plan's flags are read."""

    def record_extra(self, recipe: DistillRecipe) -> dict[str, Any]:
        """More fields for a finished run's record (a task type's own counts)."""
        return {}

    def student_run(self, spec: dict[str, Any], variant: str, seed: int) -> dict[str, Any]:
        path = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}.json"
        if path.is_file():
            return json.loads(path.read_text())
        run_dir = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}"
        if run_dir.exists():  # an unfinished run: trained again from its start
            shutil.rmtree(run_dir)
        samples = self.cli.train_samples or spec.get("train_samples")
        flags = self.flags(spec["recipe"], {**spec["flags"], **({"max_train_samples": samples} if samples else {})})
        flags += ["--teacher", self.teacher_dir, "--output_dir", str(run_dir), "--seed", str(seed)]
        model_args, data_args, teacher_args, args = parse_args(flags)
        model_args.student = local_name(model_args.student, self.cli.local_models)
        plan_cache = "teacher_cache" in spec["flags"]  # the plan chose (`teacher_cache: none`: the live teacher)
        if variant == "baseline":  # the gold labels alone: plain fine-tuning of the same student
            args.alpha, args.extra_losses, args.intermediate_epochs = 0.0, [], 0.0
            data_args.augment, data_args.unlabeled_file = 0, None
            model_args.prune_eval = False  # the distilled run of this seed scores the same cut
            for weight in INTERMEDIATE_WEIGHTS:
                setattr(args, weight, 0.0)
        elif not any(getattr(args, w) for w in INTERMEDIATE_WEIGHTS) and not args.teacher_cache and not plan_cache:
            args.teacher_cache = self.cache_dir(spec, flags)  # logits only: scored once for every run on the rows
        self.prepare_run(model_args, data_args, args)
        recipe = BenchRecipe(model_args, data_args, teacher_args, args, command=[])
        recipe.teacher_metrics = self.teacher_metrics
        recipe.card_latency = self.card_latency
        result = recipe.run()
        student = recipe.trainer.model
        seconds = result.metrics.get("train_runtime")
        record = {
            "name": spec["name"],
            "model": Path(model_args.student).name,
            "variant": variant,
            "seed": seed,
            "architecture": type(student).__name__,
            "parameters": student.num_parameters(),
            "size_mb": weights_mb(str(run_dir)),
            **self.scores(result.metrics, "eval_"),
            "pruned": recipe.prune_report is not None,
            "train_examples": len(recipe.data["train"]),
            "labelled_examples": len(recipe.raw["train"]),
            "epochs": args.num_train_epochs if args.max_steps <= 0 else None,
            "steps": recipe.trainer.state.global_step,
            "train_s": round(seconds, 1) if seconds else None,
            "train_examples_per_s": round(recipe.trainer.state.global_step * args.train_batch_size / seconds, 1)
            if seconds
            else None,
            "anchor": spec.get("anchor"),
            "machine": machine(),
            "losses": recipe.trainer.loss_weights,
            "vocabulary": recipe.trimmed.report() if recipe.trimmed is not None else None,
            "initialisation": getattr(student, "distillkit_init_notes", []),
            "teacher_cache": bool(args.teacher_cache),
            **self.latencies(student, recipe.student_tokenizer, recipe, recipe.data.get("validation")),
            **self.record_extra(recipe),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(str(path), json.dumps(record, indent=2))
        del recipe, student, result
        gc.collect()
        return record

    def remeasure_latency(self, teacher: dict[str, Any], runs: list[dict[str, Any]], everything: bool) -> None:
        """Time the saved models again, one after the other, once training is over (`everything`: all of them, as
        latencies measured while other work shared the CPU are not comparable; else those without a timing)."""
        from types import SimpleNamespace

        files = SimpleNamespace(train_file=None, validation_file=self.cli.validation_file, tag_column=-1,
                                task=self.plan.get("task"))  # fmt: skip
        raw = self.timing_raw = self.task_type.read_data(files)  # kept: a task type's timing may read it too
        if raw is None or "validation" not in raw:
            raise ValueError("--remeasure_latency needs --validation_file (the text that is timed).")
        texts, pairs = self.probe_texts(raw["validation"])
        targets = [(teacher, self.out / "teacher", self.out / "teacher.json")]
        for run in runs:
            stem = self.out / "runs" / run["name"] / f"{run['variant']}-seed{run['seed']}"
            targets.append((run, stem, stem.with_suffix(".json")))
        for record, model_dir, json_path in targets:
            if not everything and not self.stale_timing(record):
                continue
            model = self.task_type.auto_model_class().from_pretrained(model_dir)
            tokenizer = load_tokenizer(str(model_dir))
            length = record.get("latency_max_length", self.max_length)
            timings = self.retime(record, model, tokenizer, texts, pairs, length)
            record.update(timings, latency_remeasured=True)
            atomic_write_text(str(json_path), json.dumps(record, indent=2))
            logger.info("latency %s %s: %s", record["name"], record["variant"], timings)
            del model
            gc.collect()

    def run_plan(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
        """The teacher and every student run (done now, or read when finished before), timed again on request;
        with the plan's shared baselines (student name -> the student whose baseline it is compared with)."""
        self.out.mkdir(parents=True, exist_ok=True)
        teacher = self.teacher()
        runs = self.students(self.cli.only)
        if self.cli.remeasure_latency or any(self.stale_timing(r) for r in [teacher, *runs]):
            self.remeasure_latency(teacher, runs, everything=bool(self.cli.remeasure_latency))
        students = self.plan["students"]
        return teacher, runs, {s["name"]: s["baseline"] for s in students if isinstance(s.get("baseline"), str)}

    def students(self, only: list[str] | None) -> list[dict[str, Any]]:
        records = []
        for spec in self.plan["students"]:
            if only and spec["name"] not in only:
                continue
            variants = ["kd", "baseline"] if spec.get("baseline", True) is True else ["kd"]
            for seed in spec["seeds"]:
                for variant in variants:
                    if self.cli.report_only:
                        path = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}.json"
                        records += [json.loads(path.read_text())] if path.is_file() else []
                        continue
                    logger.info("student %s, %s, seed %d", spec["name"], variant, seed)
                    records.append(self.student_run(spec, variant, seed))
        return records


def run_recipe_benchmark(plan: dict[str, Any], cli: argparse.Namespace, command: list[str]):
    """Run the plan (or, with --report_only, read what is done); write results.json, results.md and results.svg
    into --out. Returns (the output folder, the table's rows)."""
    bench = RecipeBench(plan, cli)
    wall = time.perf_counter()
    teacher, runs, baselines = bench.run_plan()
    rows = summarize(teacher, runs, baselines)
    for row, spec in ((r, s) for r in rows for s in plan["students"] if s["name"] == r["name"]):
        row["anchor"] = row.get("anchor") or spec.get("anchor")
        row["command"] = spec.get("command")
    label = plan.get("metric_label", bench.metric)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not cli.use_cpu else "CPU"
    header = (
        f"{plan.get('title', 'benchmark')}; score: {label}; profile {cli.profile or 'none'}; trained on {device}, "
        f"{os.cpu_count()} CPU cores ({machine()['cpu']}); latency: batch 1 on the CPU, {torch.get_num_threads()} "
        f"threads, {LATENCY_PROBE} validation sentences"
        + precision_note(plan)
        + f". Command: {portable(shlex.join(command))}"
    )
    goals = bench.goals
    result = {"header": header, "metric": bench.metric, "teacher": teacher, "rows": rows, "runs": runs,
              "targets": targets(rows, goals), "wall_s": round(time.perf_counter() - wall, 1)}  # fmt: skip
    atomic_write_text(str(bench.out / "results.json"), json.dumps(result, indent=2))
    atomic_write_text(str(bench.out / "results.md"), markdown(rows, header, label, goals))
    atomic_write_text(str(bench.out / "results.svg"), svg_plot(rows, plan.get("title", ""), label))
    return bench.out, rows


__all__ = ["RecipeBench", "load_tokenizer", "plan_task_type", "run_recipe_benchmark"]
