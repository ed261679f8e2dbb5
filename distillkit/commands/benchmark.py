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
import contextlib
import gc
import json
import logging
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import DatasetDict
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed

from distillkit import parse_args
from distillkit.benchmark import batches, dir_size_mb, latency_ms, model_latency_ms
from distillkit.checks import check_trim
from distillkit.cli import text_table
from distillkit.config import INTERMEDIATE_WEIGHTS
from distillkit.data import (
    get_task,
    load_task_data,
    member_prefix,
    resolve_columns,
    same_tokenizer,
    teacher_view,
    tokenize_dataset,
)
from distillkit.data.unlabeled import extra_rows, load_unlabeled, training_texts, with_teacher_only_rows
from distillkit.ensemble import evaluate_ensemble
from distillkit.export import export_int8, export_onnx
from distillkit.finetune import finetune_teacher, has_trained_head, load_teacher, load_tokenizer
from distillkit.metrics import build_compute_metrics
from distillkit.pipeline import evaluate_model, make_student, pick_student_tokenizer
from distillkit.resilience import TrainingClock, atomic_write_text, latest_checkpoint
from distillkit.students.prune import prune_on_data
from distillkit.students.vocab import trim_embeddings, trim_vocabulary
from distillkit.trainer import DistillTrainer

from . import invocation

logger = logging.getLogger("benchmark")

TARGETS = (  # (largest parameter count, accuracy retained relative to the teacher)
    (15_000_000, 0.98),
    (5_000_000, 0.93),
)
SPEEDUP_TARGET = 10.0
LATENCY_PROBE = 32  # dev sentences timed one at a time


# ---- the plan -----------------------------------------------------------------------------------------------------


def load_plan(path: str, profile: str | None) -> dict[str, Any]:
    """The plan with the profile's overrides applied; recipe paths made absolute."""
    plan_path = Path(path)
    if not plan_path.is_file():
        raise FileNotFoundError(f"benchmark plan {path!r} not found; see recipes/sst2/benchmark.yaml.")
    plan = yaml.safe_load(plan_path.read_text(encoding="utf-8")) or {}
    for key in ("teacher", "teacher_recipe", "students"):
        if key not in plan:
            raise ValueError(f"the benchmark plan {path} has no {key!r}.")
    profiles = plan.pop("profiles", {}) or {}
    overrides: dict[str, Any] = {}
    if profile:
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; the plan has {sorted(profiles)}.")
        overrides = dict(profiles[profile] or {})
    per_student = overrides.pop("students", {}) or {}
    plan["profile"] = profile
    plan["overrides"] = overrides
    plan["teacher_recipe"] = str(plan_path.parent / plan["teacher_recipe"])
    names = [s["name"] for s in plan["students"]]
    unknown = sorted(set(per_student) - set(names))
    if unknown:
        raise ValueError(f"profile {profile!r} names students {unknown} that the plan does not have ({names}).")
    for student in plan["students"]:
        student["recipe"] = str(plan_path.parent / student["recipe"])
        extra = dict(per_student.get(student["name"], {}) or {})
        if "baseline" in extra:  # a profile may compare a student with another baseline (its own epochs differ)
            student["baseline"] = extra.pop("baseline")
        student["seeds"] = extra.pop("seeds", student.get("seeds", overrides.get("seeds", plan.get("seeds", [0]))))
        student["train_samples"] = extra.pop("train_samples", overrides.get("train_samples"))
        # the profile's settings, then the student's own `flags`, then the profile's entry for this student
        shared = {k: v for k, v in overrides.items() if k not in _PLAN_KEYS}
        student["flags"] = {**shared, **(student.get("flags") or {}), **extra}
    return plan


_PLAN_KEYS = {"seeds", "train_samples", "teacher_train_samples"}


def local_name(name: str, local_models: str | None) -> str:
    """`sentence-transformers/X` -> `<local_models>/X` when that folder exists (machines without a hub)."""
    if local_models and not os.path.isdir(name):
        candidate = os.path.join(local_models, name.rsplit("/", 1)[-1])
        if os.path.isdir(candidate):
            return candidate
    return name


def flag_list(values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        out += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


# ---- measuring ----------------------------------------------------------------------------------------------------


def cpu_latencies(model: torch.nn.Module, tokenizer: Any, texts: list[str], max_length: int) -> dict[str, float]:
    """ms per example at batch 1 on the CPU: the float model, its dynamic int8 export, and its ONNX export in
    onnxruntime (fp32; only where onnxruntime is installed: the `export` extra)."""
    model = model.float().cpu().eval()
    inputs = batches(tokenizer, texts, 1, max_length)
    fp32 = model_latency_ms(model, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        runner = export_int8(model, inputs[0], tmp)
        int8 = latency_ms(runner.predict, inputs)
    timings = {"latency_fp32_ms": round(fp32, 3), "latency_int8_ms": round(int8, 3)}
    if find_spec("onnxruntime"):
        with tempfile.TemporaryDirectory() as tmp:
            runner = export_onnx(model, inputs[0], tmp)
            timings["latency_onnx_ms"] = round(latency_ms(runner.predict, inputs), 3)
    return timings


def machine() -> dict[str, Any]:
    """What a run was timed on: the CPU's model name, its cores, torch's threads, and the GPU if one trained it."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu}


def weights_mb(directory: str) -> float:
    """The saved model's weights: the folder's own safetensors files (not those of checkpoints inside it)."""
    files = [os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".safetensors")]
    return round(sum(dir_size_mb(f) for f in files), 2)


# ---- the stages ---------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: dict[str, Any], cli: argparse.Namespace):
        self.plan, self.cli = plan, cli
        self.out = Path(cli.out)
        self.task = get_task(plan.get("task", "sst2"))
        self.text_column, _ = resolve_columns(self.task, None, None)
        raw = load_task_data(self.task, cli.train_file, cli.validation_file)
        # one fixed shuffle: the teacher's subset is a prefix of the students' (SST-2's file order is not random)
        self.train_all = raw["train"].shuffle(seed=0)
        self.validation = raw["validation"]
        if cli.max_eval_samples:
            self.validation = self.validation.select(range(min(cli.max_eval_samples, len(self.validation))))
        self.probe = [str(t) for t in self.validation[self.text_column][:LATENCY_PROBE]]
        self.data_cache: dict[Any, Any] = {}
        self.trimmed_tokenizers: dict[tuple[int, ...], Any] = {}  # --trim_vocab: kept ids -> tokenizer
        self.extra_teachers: dict[str, dict[str, Any]] = {}  # the records of ensembles' other teachers
        self.compute_metrics = build_compute_metrics(2, self.task.metrics, self.task.name)

    def subset(self, n: int | None):
        return self.train_all if n is None else self.train_all.select(range(min(n, len(self.train_all))))

    def training_flags(self, recipe: str, extra: dict[str, Any]) -> list[str]:
        flags = ["--config", recipe, "--report_to", "none", "--save_strategy", "no"]
        if self.cli.use_cpu:
            flags += ["--use_cpu", "true"]
        if self.cli.max_steps:
            flags += ["--max_steps", str(self.cli.max_steps)]
        return flags + flag_list(extra)

    # -- teacher --
    def teacher(self, name: str | None = None, key: str = "teacher") -> dict[str, Any]:
        """The teacher stage of the plan's teacher (or of another, `key` naming its folder): done once, then read."""
        teacher_dir = self.out / key
        record_path = self.out / f"{key}.json"
        name = local_name(name or self.cli.teacher or self.plan["teacher"], self.cli.local_models)
        overrides = {k: v for k, v in self.plan["overrides"].items() if k not in _PLAN_KEYS}
        flags = self.training_flags(self.plan["teacher_recipe"], {**overrides, "teacher": name})
        model_args, data_args, teacher_args, args = parse_args([*flags, "--output_dir", str(self.out)])
        self.max_length = data_args.max_seq_length
        if record_path.is_file() and (teacher_dir / "config.json").is_file():
            record = json.loads(record_path.read_text())
            logger.info("teacher stage already done: %s", record["accuracy"])
        elif self.cli.report_only:
            raise FileNotFoundError(f"{record_path}: no teacher yet; run the benchmark without --report_only first.")
        else:
            set_seed(args.seed)
            needs_stage = teacher_args.finetune_teacher == "always" or not has_trained_head(name)
            model = load_teacher(name, self.task.label_names, new_head=teacher_args.finetune_teacher == "always")
            tokenizer = load_tokenizer(name)
            samples = self.plan["overrides"].get("teacher_train_samples")
            raw_train = self.subset(samples)
            splits = DatasetDict(train=raw_train, validation=self.validation)
            data = tokenize_dataset(splits, tokenizer, **self.encode_args(model))
            train, val, metrics_fn = data["train"], data["validation"], self.compute_metrics
            start = time.perf_counter()
            if needs_stage:
                model, metrics = finetune_teacher(
                    model, tokenizer, train, val, args, teacher_args, metrics_fn, key, resume=True
                )  # a stopped teacher stage goes on from its checkpoint
            else:  # already fine-tuned: evaluate and keep a copy, so that the students read one folder
                model.save_pretrained(teacher_dir)
                tokenizer.save_pretrained(teacher_dir)
                metrics = evaluate_model(model, tokenizer, val, args, metrics_fn)
            # the stage's own clock counts its training over every resumption; evaluation and saving are not in it
            seconds = getattr(model, "distillkit_train_seconds", None) or time.perf_counter() - start
            epochs = teacher_args.teacher_num_train_epochs
            record = {
                "name": key,
                "model": name,
                "variant": "fine-tuned" if needs_stage else "given",
                "parameters": model.num_parameters(),
                "size_mb": weights_mb(str(teacher_dir)),
                "accuracy": round(metrics.get("eval_accuracy", metrics.get("teacher_eval_accuracy")), 4),
                "train_examples": len(raw_train) if needs_stage else 0,
                "epochs": epochs if needs_stage else 0,
                "train_s": round(seconds, 1) if needs_stage else 0.0,
                "train_examples_per_s": round(len(raw_train) * epochs / seconds, 1) if needs_stage else None,
                "machine": machine(),
                **self.latencies(model, tokenizer),
            }
            atomic_write_text(str(record_path), json.dumps(record, indent=2))
            del model
            gc.collect()
        if key == "teacher":
            self.teacher_dir = str(teacher_dir)
        return record

    def encode_args(self, model: Any) -> dict[str, Any]:
        return {
            "text_column": self.text_column,
            "label_column": "label",
            "max_seq_length": self.max_length,
            "label2id": model.config.label2id,
            "num_labels": model.config.num_labels,
        }

    # -- students --
    def student_run(
        self, spec: dict[str, Any], variant: str, seed: int, teacher: Any, teacher_tok: Any, extra: list | None = None
    ) -> dict:
        path = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}.json"
        if path.is_file():
            return json.loads(path.read_text())
        run_dir = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}"
        flags = self.training_flags(spec["recipe"], spec["flags"])
        flags += ["--teacher", self.teacher_dir, "--output_dir", str(run_dir), "--seed", str(seed)]
        model_args, data_args, _, args = parse_args(flags)
        model_args.student = local_name(model_args.student, self.cli.local_models)
        if variant == "baseline":  # the gold labels alone: plain fine-tuning of the same student
            args.alpha, args.extra_losses, args.intermediate_epochs = 0.0, [], 0.0
            for weight in INTERMEDIATE_WEIGHTS:
                setattr(args, weight, 0.0)
        student_tok = pick_student_tokenizer(model_args, teacher_tok)
        cross = student_tok is not teacher_tok
        members = extra if variant == "kd" and extra else []  # the baseline runs no teacher
        if members and cross:
            raise ValueError(f"{spec['name']}: an ensemble's student must share the plan teacher's tokenizer here.")
        own = {member_prefix(i + 2): tok for i, (_, tok) in enumerate(members) if not same_tokenizer(tok, student_tok)}
        extra = None  # the text only the teacher labels (distilled runs)
        if variant == "kd" and (data_args.augment or data_args.unlabeled_file):
            extra = self.extra_text(data_args, spec, teacher, teacher_tok)
        trimmed = None
        if model_args.trim_vocab:  # the teacher's vocabulary cut to this run's training text
            check_trim(model_args, args, bool(members), cross)
            texts, _ = training_texts(self.subset(spec["train_samples"]), extra, self.text_column, None)
            trimmed = trim_vocabulary(teacher_tok, texts, None, model_args.trim_vocab_min_count)
            # one tokenizer object per vocabulary: the tokenized data below is cached by its identity
            trimmed.tokenizer = self.trimmed_tokenizers.setdefault(tuple(trimmed.kept_ids), trimmed.tokenizer)
            student_tok, cross = trimmed.tokenizer, True
        key = (spec["train_samples"], id(student_tok), tuple(own))
        if key not in self.data_cache:
            splits = DatasetDict(train=self.subset(spec["train_samples"]), validation=self.validation)
            columns = own or (
                teacher_tok if cross else None
            )  # the tokenization(s) of teachers other than the student's
            self.data_cache[key] = tokenize_dataset(splits, student_tok, **self.encode_args(teacher),
                                                    teacher_tokenizer=columns)  # fmt: skip
        train, val = self.data_cache[key]["train"], self.data_cache[key]["validation"]
        if extra is not None:
            train = self.with_extra_rows(train, extra, teacher, teacher_tok, student_tok if cross else None)
        if variant == "kd" and (args.intermediate_epochs or not any(getattr(args, w) for w in INTERMEDIATE_WEIGHTS)):
            # logit-only distillation (and stage 2 of the two-stage schedule) reads the teacher's logits from a cache
            # shared by the runs on the same data
            args.teacher_cache = str(self.out / "teacher_cache" / train._fingerprint)
        student = make_student(model_args, teacher, seed)
        pruned = None
        if model_args.student == "pruned":  # cut by importance on this run's labelled rows (teacher tokenization)
            student, pruned = prune_on_data(
                teacher,
                student,
                teacher_view(train) if cross else train,  # a trimmed vocabulary's rows carry the teacher's ids too
                DataCollatorWithPadding(teacher_tok),
                model_args.prune_samples,
                layers_by=model_args.prune_layers,
            )
        if trimmed is not None:
            student = trim_embeddings(student, trimmed.kept_ids)
        # where the student starts: a pruned student should start far above chance, a random one at it
        init_accuracy = evaluate_model(student, student_tok, val, args, self.compute_metrics)["eval_accuracy"]
        if members:  # [the plan's teacher, the extra ones]; each extra one reads its own columns where it must
            toks = [None, *[tok if member_prefix(i + 2) in own else None for i, (_, tok) in enumerate(members)]]
        trainer = DistillTrainer(
            model=student,
            teacher=[teacher, *[m for m, _ in members]] if members else teacher,
            args=args,
            train_dataset=train,
            processing_class=student_tok,
            compute_metrics=self.compute_metrics,
            **({"teacher_processing_class": toks} if members else {"teacher_processing_class": teacher_tok} if cross
               else {}),
        )  # fmt: skip
        if members:
            self.ensemble_record(spec, trainer, val)
        # with checkpoints (the cpu-full profile saves every N steps) a run stopped with the session resumes
        resume = latest_checkpoint(str(run_dir)) if args.save_strategy != "no" else None
        clock = TrainingClock(resume)
        trainer.add_callback(clock)
        if resume:
            logger.info("%s %s seed %d: resuming from %s", spec["name"], variant, seed, resume)
        trainer.train(resume_from_checkpoint=resume)
        seconds = clock.seconds
        # accuracy needs no teacher: a plain evaluation (the DistillTrainer's would run the teacher for its eval loss)
        metrics = evaluate_model(trainer.model, student_tok, val, args, self.compute_metrics)
        trainer.save_model()
        record = {
            "name": spec["name"],
            "model": model_args.student,
            "variant": variant,
            "seed": seed,
            "architecture": type(student).__name__,
            "parameters": student.num_parameters(),
            "size_mb": weights_mb(str(run_dir)),
            "accuracy": round(metrics["eval_accuracy"], 4),
            "init_accuracy": round(init_accuracy, 4),
            "pruned": pruned,
            "train_examples": len(train),
            "epochs": args.num_train_epochs if args.max_steps <= 0 else None,
            "intermediate_epochs": args.intermediate_epochs or None,  # stage 1 of the two-stage schedule
            "steps": trainer.state.global_step,
            "train_s": round(seconds, 1) if seconds is not None else None,  # over every resumption of the run
            "train_examples_per_s": round(trainer.state.global_step * args.train_batch_size / seconds, 1)
            if seconds
            else None,
            "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else None,
            "anchor": spec.get("anchor"),  # the nearest published result (distillkit results names it)
            "machine": machine(),
            "losses": trainer.loss_weights,
            "cross_tokenizer": cross,
            "vocabulary": trimmed.report() if trimmed is not None else None,
            "initialisation": getattr(student, "distillkit_init_notes", []),
            **self.latencies(trainer.model, student_tok),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(str(path), json.dumps(record, indent=2))
        for done in run_dir.glob("checkpoint-*"):  # the run is recorded: its checkpoints are not needed
            shutil.rmtree(done, ignore_errors=True)
        del trainer, student
        gc.collect()
        return record

    def extra_text(self, data_args: Any, spec: dict, teacher: Any, teacher_tok: Any) -> Any:
        """The unlabeled / augmented text that only the teacher labels. Augmentation seed 0 for every seed: the runs
        share the augmented text and its teacher cache, and differ in the student's seed."""
        unlabeled = (load_unlabeled(data_args.unlabeled_file, self.text_column) if data_args.unlabeled_file
                     else None)  # fmt: skip
        labelled = self.subset(spec["train_samples"])
        extra, counts = extra_rows(data_args, unlabeled, labelled, teacher, teacher_tok, self.text_column, None, 0,
                                   str(self.out / "augment"))  # fmt: skip
        logger.info("%s: %d labelled rows + %s labelled by the teacher", spec["name"], len(labelled), counts)
        return extra

    def with_extra_rows(self, train: Any, extra: Any, teacher: Any, teacher_tok: Any, student_tok: Any) -> Any:
        """The training rows plus the `extra_text` rows, tokenized like them (no gold label).
        Cross-tokenizer (student_tok given): each model reads its own tokenization of the new text."""
        cross = student_tok is not None
        return with_teacher_only_rows(train, extra, student_tok if cross else teacher_tok, self.encode_args(teacher),
                                      teacher_tok if cross else None)  # fmt: skip

    def latencies(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Timed as each run ends, unless every model is re-timed at the end anyway (--remeasure_latency)."""
        return {} if self.cli.remeasure_latency else cpu_latencies(model, tokenizer, self.probe, self.max_length)

    def remeasure_latency(self, teacher: dict[str, Any], runs: list[dict[str, Any]], everything: bool) -> None:
        """Time the saved models one after the other once training is over: all of them (`everything`: latencies
        measured while other work shared the CPU are not comparable), else those that have no timing yet (runs of
        an earlier --remeasure_latency invocation stopped before its end). Updates the records and JSON files."""
        targets = [(teacher, self.out / "teacher", self.out / "teacher.json")]
        for run in runs:
            stem = self.out / "runs" / run["name"] / f"{run['variant']}-seed{run['seed']}"
            targets.append((run, stem, stem.with_suffix(".json")))
        timings = ("latency_fp32_ms", "latency_int8_ms") + (("latency_onnx_ms",) if find_spec("onnxruntime") else ())
        for record, model_dir, json_path in targets:
            if not everything and all(k in record for k in timings):
                continue
            model = AutoModelForSequenceClassification.from_pretrained(model_dir)
            tokenizer = load_tokenizer(str(model_dir))
            record.update(cpu_latencies(model, tokenizer, self.probe, self.max_length), latency_remeasured=True)
            atomic_write_text(str(json_path), json.dumps(record, indent=2))
            logger.info("latency %s %s: %s ms", record["name"], record["variant"], record["latency_fp32_ms"])
            del model
            gc.collect()

    def students(self, only: list[str] | None) -> list[dict[str, Any]]:
        teacher = load_teacher(self.teacher_dir)
        teacher_tok = load_tokenizer(self.teacher_dir)
        records = []
        for spec in self.plan["students"]:
            if only and spec["name"] not in only:
                continue
            extra = []  # an ensemble: the plan's teacher and these, each through its own teacher stage
            for name in [] if self.cli.report_only else spec.get("extra_teachers") or []:
                key = "teacher-" + Path(name).name
                self.extra_teachers[key] = self.teacher(name, key)
                extra.append((load_teacher(str(self.out / key)), load_tokenizer(str(self.out / key))))
            variants = ["kd", "baseline"] if spec.get("baseline", True) is True else ["kd"]
            for seed in spec["seeds"]:
                for variant in variants:
                    if self.cli.report_only:  # the finished runs alone: nothing is trained
                        path = self.out / "runs" / spec["name"] / f"{variant}-seed{seed}.json"
                        records += [json.loads(path.read_text())] if path.is_file() else []
                        continue
                    logger.info("student %s, %s, seed %d", spec["name"], variant, seed)
                    records.append(self.student_run(spec, variant, seed, teacher, teacher_tok, extra))
        return records

    def ensemble_record(self, spec: dict[str, Any], trainer: Any, val: Any) -> None:
        """The ensemble's own dev accuracy (mixed probabilities at T = 1), once per plan entry."""
        path = self.out / f"ensemble-{spec['name']}.json"
        if path.is_file():
            return
        mixed = trainer.teacher
        scores = evaluate_ensemble(mixed, val, trainer.data_collator, self.compute_metrics, 64)
        members = [json.loads((self.out / "teacher.json").read_text()), *self.extra_teachers.values()]
        serving = {k: round(sum(m[k] for m in members), 3) for k in ("size_mb", "latency_fp32_ms", "latency_int8_ms")}
        record = {
            **serving,
            "name": f"ensemble ({spec['name']})",
            "model": " + ".join(["teacher", *spec["extra_teachers"]]),
            "variant": f"ensemble, {mixed.mode}",
            "weights": [round(w, 4) for w in mixed.weights],
            "parameters": sum(t.model.num_parameters() for t in mixed.teachers),
            "accuracy": round(scores["teacher_eval_accuracy"], 4),
        }
        atomic_write_text(str(path), json.dumps(record, indent=2))


# ---- the report ---------------------------------------------------------------------------------------------------


def summarize(
    teacher: dict[str, Any], runs: list[dict[str, Any]], baselines: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per (student, variant): means over seeds, the spread, and the gain of distillation over the baseline
    (the same student's, or the one that `baselines[name]` names)."""
    baselines = baselines or {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["name"], run["variant"]), []).append(run)
    rows = [{**teacher, "seeds": 1, "accuracy_std": 0.0, "retained": 1.0, "speedup_fp32": 1.0}]
    for (name, variant), group in groups.items():
        accs = [r["accuracy"] for r in group]
        first = group[0]
        row = {
            k: first[k] for k in ("name", "model", "variant", "architecture", "parameters", "size_mb", "train_examples")
        }
        row.update(
            seeds=len(group),
            accuracy=round(statistics.mean(accs), 4),
            accuracy_std=round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            retained=round(statistics.mean(accs) / teacher["accuracy"], 4),
            latency_fp32_ms=round(statistics.median(r["latency_fp32_ms"] for r in group), 3),
            latency_int8_ms=round(statistics.median(r["latency_int8_ms"] for r in group), 3),
            **(
                {"latency_onnx_ms": round(statistics.median(r["latency_onnx_ms"] for r in group), 3)}
                if all("latency_onnx_ms" in r for r in group)
                else {}
            ),
            train_s=_mean_known(group, "train_s"),  # a run resumed from a checkpoint without a clock has none
            train_examples_per_s=_mean_known(group, "train_examples_per_s"),
            epochs=first.get("epochs"),
            intermediate_epochs=first.get("intermediate_epochs"),
            anchor=first.get("anchor"),
        )
        row["speedup_fp32"] = round(teacher["latency_fp32_ms"] / row["latency_fp32_ms"], 2)
        if all("init_accuracy" in r for r in group):  # before any training (pruned students start above chance)
            row["init_accuracy"] = round(statistics.mean(r["init_accuracy"] for r in group), 4)
        base = groups.get((baselines.get(name, name), "baseline")) if variant == "kd" else None
        if base:
            paired = {r["seed"]: r["accuracy"] for r in base}
            diffs = [r["accuracy"] - paired[r["seed"]] for r in group if r["seed"] in paired]
            if diffs:
                row["kd_gain"] = round(statistics.mean(diffs), 4)
                row["kd_gain_std"] = round(statistics.stdev(diffs), 4) if len(diffs) > 1 else None
                row["baseline_std"] = round(statistics.stdev(r["accuracy"] for r in base), 4) if len(base) > 1 else None
        rows.append(row)
    return rows


def _mean_known(group: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in group if r.get(key) is not None]
    return round(statistics.mean(values), 1) if values else None


def targets(rows: list[dict[str, Any]]) -> list[str]:
    students = [r for r in rows if r["name"] != "teacher" and r["variant"] == "kd"]
    lines = []
    for limit, goal in TARGETS:
        fitting = [r for r in students if r["parameters"] <= limit]
        if not fitting:
            lines.append(f"- <= {limit / 1e6:g}M parameters, >= {goal:.0%} retained: no student of that size ran.")
            continue
        best = max(fitting, key=lambda r: r["retained"])
        verdict = "met" if best["retained"] >= goal else f"missed by {100 * (goal - best['retained']):.1f} points"
        lines.append(
            f"- <= {limit / 1e6:g}M parameters, >= {goal:.0%} retained: best is {best['name']} "
            f"({best['parameters'] / 1e6:.1f}M) at {best['retained']:.1%}: {verdict}."
        )
    small = [r for r in students if r["parameters"] <= TARGETS[0][0]]
    if small:
        best = max(small, key=lambda r: r["accuracy"])
        verdict = "met" if best["speedup_fp32"] >= SPEEDUP_TARGET else f"missed ({best['speedup_fp32']:.1f}x < 10x)"
        lines.append(
            f"- best small student (most accurate at <= 15M: {best['name']}) >= 10x faster than the teacher at "
            f"batch 1 on the CPU: {best['speedup_fp32']:.1f}x (fp32), "
            f"{rows[0]['latency_fp32_ms'] / best['latency_int8_ms']:.1f}x with its int8 export: {verdict}."
        )
    return lines


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    def epochs(r):  # "1+2": one epoch of stage 1 (intermediate terms), then two of the prediction layer
        stage1 = f"{r['intermediate_epochs']:g}+" if r.get("intermediate_epochs") else ""
        return f"{stage1}{r.get('epochs') or 0:g}"

    def gain(r):
        if "kd_gain" not in r:
            return ""
        spread = f" ± {100 * r['kd_gain_std']:.1f}" if r.get("kd_gain_std") is not None else ""
        return f"{100 * r['kd_gain']:+.1f}{spread}"

    head = ["model", "variant", "params", "MB", "CPU ms fp32", "CPU ms int8", "accuracy %", "retained %",
            "KD gain (pts)", "seeds", "train ex", "epochs", "train s", "ex/s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = pct(r["accuracy"]) + (f" ± {100 * r['accuracy_std']:.1f}" if r.get("accuracy_std") else "")
        cells = [r["name"], r["variant"], f"{r['parameters'] / 1e6:.1f}M", f"{r['size_mb']:.1f}",
                 f"{r['latency_fp32_ms']:.2f}", f"{r['latency_int8_ms']:.2f}", acc, pct(r["retained"]), gain(r),
                 str(r.get("seeds", 1)), str(r.get("train_examples", "")), epochs(r),
                 "" if r.get("train_s") is None else f"{r['train_s']:.0f}",
                 str(r.get("train_examples_per_s") or "")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n\n" + "\n".join(lines) + "\n\nTargets:\n" + "\n".join(targets(rows)) + "\n"


def svg_plot(rows: list[dict[str, Any]], title: str) -> str:
    """Two panels, accuracy against parameters and against CPU latency (log x), one point per model and variant."""
    width, height, pad = 420, 300, 50
    colours = {"teacher": "#222222", "kd": "#1f77b4", "baseline": "#ff7f0e"}
    accs = [100 * r["accuracy"] for r in rows]
    y_lo, y_hi = math.floor(min(accs) - 1), math.ceil(max(accs) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height + 40}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="16" font-size="13">{title}</text>',
    ]
    axes = (("parameters", "parameters (M, log)"), ("latency_fp32_ms", "CPU ms/example, batch 1 (log)"))
    for panel, (key, label) in enumerate(axes):
        x0 = panel * width
        values = [r[key] / (1e6 if key == "parameters" else 1) for r in rows]
        lo, hi = math.log10(min(values)) - 0.1, math.log10(max(values)) + 0.1

        def sx(v, x0=x0, lo=lo, hi=hi):
            return x0 + pad + (math.log10(v) - lo) / (hi - lo) * (width - 2 * pad)

        def sy(a):
            return 30 + (y_hi - a) / (y_hi - y_lo) * (height - pad - 10)

        parts.append(f'<rect x="{x0 + pad}" y="30" width="{width - 2 * pad}" height="{height - pad - 10}" '
                     'fill="none" stroke="#999"/>')  # fmt: skip
        parts.append(f'<text x="{x0 + width / 2}" y="{height + 5}" text-anchor="middle">{label}</text>')
        parts.append(f'<text x="{x0 + 12}" y="{height / 2}" transform="rotate(-90 {x0 + 12} {height / 2})" '
                     'text-anchor="middle">dev accuracy %</text>')  # fmt: skip
        for tick in range(y_lo, y_hi + 1, max(1, (y_hi - y_lo) // 5)):
            parts.append(f'<text x="{x0 + pad - 4}" y="{sy(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
        for exp in range(math.floor(lo), math.ceil(hi) + 1):
            for mult in (1, 2, 5):
                v = mult * 10**exp
                if lo <= math.log10(v) <= hi:
                    parts.append(f'<text x="{sx(v):.1f}" y="{height - 5}" text-anchor="middle">{v:g}</text>')
        for r, v in zip(rows, values):
            colour = colours.get(r["variant"], colours["kd"]) if r["name"] != "teacher" else colours["teacher"]
            x, y = sx(v), sy(100 * r["accuracy"])
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            tag = r["name"] + ("" if r["variant"] in ("kd", "fine-tuned", "given") else " (base)")
            parts.append(f'<text x="{x + 6:.1f}" y="{y - 4:.1f}" fill="{colour}">{tag}</text>')
    parts.append(f'<text x="{width}" y="{height + 30}" text-anchor="middle">black: teacher, blue: distilled, '
                 "orange: hard-label baseline (mean over seeds)</text></svg>")  # fmt: skip
    return "\n".join(parts) + "\n"


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
    plan = load_plan(cli.plan, cli.profile)
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
        + f". Command: {shlex.join([*invocation('benchmark'), *(sys.argv[1:] if argv is None else argv)])}"
    )
    result = {"header": header, "teacher": teacher, "rows": rows, "runs": runs, "targets": targets(rows),
              "wall_s": round(time.perf_counter() - wall, 1)}  # fmt: skip
    atomic_write_text(str(bench.out / "results.json"), json.dumps(result, indent=2))
    atomic_write_text(str(bench.out / "results.md"), markdown(rows, header))
    atomic_write_text(
        str(bench.out / "results.svg"), svg_plot(rows, "distillkit on SST-2 (" + (cli.profile or "") + ")")
    )
    cols = ["name", "variant", "parameters", "latency_fp32_ms", "latency_int8_ms", "accuracy", "retained", "kd_gain"]
    print(text_table(cols, [[r.get(c, "") for c in cols] for r in rows]))
    print("\n".join(targets(rows)))
    print(f"written: {bench.out / 'results.md'}, results.json, results.svg")
