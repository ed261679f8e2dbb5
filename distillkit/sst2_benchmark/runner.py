"""The SST-2 benchmark's runs: the teacher stage of the plan's teacher (and of an ensemble's others), then every
student and variant as a `BenchRun` (a `DistillRecipe`), each recorded as JSON so that a stopped benchmark started
again skips what is done."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from datasets import DatasetDict
from transformers import AutoConfig, set_seed

from ..data import get_task, load_task_data, resolve_columns, tokenize_dataset
from ..ensemble import evaluate_ensemble
from ..loading import has_trained_head, load_teacher, load_tokenizer
from ..metrics import evaluate_model
from ..recipes import parse_args
from ..resilience import InterruptedRun, TrainingClock, atomic_write_text, latest_checkpoint
from ..tasks import get_task_type
from ..teacher_stage import finetune_teacher
from .measure import accuracy_scorer, cpu_latencies, export_kinds, machine, weights_mb
from .plan import PLAN_KEYS, flag_list, local_name
from .student_run import BenchRun

logger = logging.getLogger("benchmark")

LATENCY_PROBE = 32  # dev sentences timed one at a time


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
        self.task_type = get_task_type("sequence-classification")  # SST-2 (any GLUE task of the plan)
        self.compute_metrics = None  # the task type's, once the teacher's labels are known

    def set_metrics(self, config: Any) -> None:
        self.compute_metrics = self.task_type.compute_metrics(config, self.task.metrics, self.task.name)
        labels = self.task_type.label_encoder(config)(list(self.validation["label"]))
        texts = [str(t) for t in self.validation[self.text_column]]
        self.score_export = accuracy_scorer(texts, labels, self.max_length)  # each export's dev accuracy

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
        overrides = {k: v for k, v in self.plan["overrides"].items() if k not in PLAN_KEYS}
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
            always = teacher_args.finetune_teacher == "always"
            needs_stage = always or not has_trained_head(name, self.task_type)
            model = load_teacher(name, self.task.label_names, task_type=self.task_type, new_head=always)
            tokenizer = load_tokenizer(name)
            self.set_metrics(model.config)
            samples = self.plan["overrides"].get("teacher_train_samples")
            raw_train = self.subset(samples)
            splits = DatasetDict(train=raw_train, validation=self.validation)
            data = tokenize_dataset(splits, tokenizer, text_column=self.text_column, label_column="label",
                                    max_seq_length=self.max_length,
                                    label_encoder=self.task_type.label_encoder(model.config))  # fmt: skip
            train, val, metrics_fn = data["train"], data["validation"], self.compute_metrics
            start = time.perf_counter()
            if needs_stage:
                model, metrics = finetune_teacher(
                    model,
                    tokenizer,
                    train,
                    val,
                    args,
                    teacher_args,
                    metrics_fn,
                    key,
                    resume=True,
                    task_type=self.task_type,
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
        run = BenchRun(self, spec, variant, seed, flags, [(teacher, teacher_tok), *(extra or [])])
        given_max_steps = run.args.max_steps  # --prune_steps sets the last step's share
        run.prepare()
        args, student = run.args, run.student
        schedule = run.prune_report if isinstance(run.prune_report, dict) and "train_steps" in run.prune_report else {}
        earlier_steps, earlier_s = sum(schedule.get("train_steps", [0])[:-1]), sum(schedule.get("train_s", []))
        # where the student starts: a pruned student should start far above chance, a random one at it
        init_accuracy = evaluate_model(student, run.student_tokenizer, run.data["validation"], args,
                                       self.compute_metrics)["eval_accuracy"]  # fmt: skip
        run.make_trainer()
        trainer = run.trainer
        if run.ensemble:
            self.ensemble_record(spec, trainer, run.data["validation"])
        # with checkpoints (the cpu-full profile saves every N steps) a run stopped with the session resumes
        resume = latest_checkpoint(str(run_dir)) if args.save_strategy != "no" else None
        clock = TrainingClock(resume)
        trainer.add_callback(clock)
        if resume:
            logger.info("%s %s seed %d: resuming from %s", spec["name"], variant, seed, resume)
        trainer.train(resume_from_checkpoint=resume)
        if run.stop.received is not None:  # stopped by a signal: the checkpoint stays, nothing is recorded
            raise InterruptedRun(f"interrupted: {spec['name']} {variant} seed {seed} resumes when started again",
                                 run.stop.received)  # fmt: skip
        seconds = clock.seconds + earlier_s if clock.seconds is not None else None  # with --prune_steps' steps
        # accuracy needs no teacher: a plain evaluation (the DistillTrainer's would run the teacher for its eval loss)
        metrics = evaluate_model(trainer.model, run.student_tokenizer, run.data["validation"], args,
                                 self.compute_metrics)  # fmt: skip
        trainer.save_model()
        train = run.data["train"]
        record = {
            "name": spec["name"],
            "model": run.model_args.student,
            "variant": variant,
            "seed": seed,
            "architecture": type(student).__name__,
            "parameters": student.num_parameters(),
            "size_mb": weights_mb(str(run_dir)),
            "accuracy": round(metrics["eval_accuracy"], 4),
            "init_accuracy": round(init_accuracy, 4),
            "pruned": run.prune_report,
            "train_examples": len(train),
            "epochs": args.num_train_epochs if given_max_steps <= 0 else None,
            "intermediate_epochs": args.intermediate_epochs or None,  # stage 1 of the two-stage schedule
            "steps": earlier_steps + trainer.state.global_step,
            "prune_steps": run.model_args.prune_steps if schedule else None,
            "train_s": round(seconds, 1) if seconds is not None else None,  # over every resumption of the run
            "train_examples_per_s": round(
                (earlier_steps + trainer.state.global_step) * args.train_batch_size / seconds, 1
            )
            if seconds
            else None,
            "resumed_from_step": int(resume.rsplit("-", 1)[1]) if resume else None,
            "anchor": spec.get("anchor"),  # the nearest published result (distillkit results names it)
            "machine": machine(),
            "losses": trainer.loss_weights,
            "cross_tokenizer": run.cross,
            "vocabulary": run.trimmed.report() if run.trimmed is not None else None,
            "initialisation": getattr(student, "distillkit_init_notes", []),
            **self.latencies(trainer.model, run.student_tokenizer),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(str(path), json.dumps(record, indent=2))
        for done in run_dir.glob("checkpoint-*"):  # the run is recorded: its checkpoints are not needed
            shutil.rmtree(done, ignore_errors=True)
        del trainer, student, run
        gc.collect()
        return record

    def log(self, message: str) -> None:
        logger.info("%s", message)

    def latencies(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Timed and its exports scored as each run ends, unless every model is re-timed at the end anyway
        (--remeasure_latency)."""
        if self.cli.remeasure_latency:
            return {}
        return cpu_latencies(model, tokenizer, self.probe, self.max_length, score=self.score_export)

    def remeasure_latency(self, teacher: dict[str, Any], runs: list[dict[str, Any]], everything: bool) -> None:
        """Time the saved models one after the other once training is over: all of them (`everything`: latencies
        measured while other work shared the CPU are not comparable), else those that have no timing yet (runs of
        an earlier --remeasure_latency invocation stopped before its end). Updates the records and JSON files."""
        targets = [(teacher, self.out / "teacher", self.out / "teacher.json")]
        for run in runs:
            stem = self.out / "runs" / run["name"] / f"{run['variant']}-seed{run['seed']}"
            targets.append((run, stem, stem.with_suffix(".json")))
        for record, model_dir, json_path in targets:
            kinds = ("fp32", *export_kinds(AutoConfig.from_pretrained(model_dir)))  # the weights only if work is due
            untimed = [k for k in kinds if f"latency_{k}_ms" not in record]
            # all re-timed (a record without its fp32 timing too); else an export added since the record was made is
            # timed and scored, and a record from before the exports were scored gets their accuracy alone
            timed = everything or "fp32" in untimed
            todo = [k for k in kinds[1:] if k in untimed or f"accuracy_{k}" not in record]
            if not timed and not todo:
                continue
            model = self.task_type.auto_model_class().from_pretrained(model_dir)
            tokenizer = load_tokenizer(str(model_dir))
            figures = cpu_latencies(model, tokenizer, self.probe, self.max_length, score=self.score_export,
                                    timed=True if timed else untimed, kinds=None if timed else todo)  # fmt: skip
            record.update(figures, **({"latency_remeasured": True} if timed else {}))
            atomic_write_text(str(json_path), json.dumps(record, indent=2))
            logger.info("timings and export scores of %s %s: %s", record["name"], record["variant"], figures)
            del model
            gc.collect()

    def students(self, only: list[str] | None) -> list[dict[str, Any]]:
        teacher = load_teacher(self.teacher_dir, task_type=self.task_type)
        self.set_metrics(teacher.config)
        teacher_tok = load_tokenizer(self.teacher_dir)
        records = []
        for spec in self.plan["students"]:
            if only and spec["name"] not in only:
                continue
            extra = []  # an ensemble: the plan's teacher and these, each through its own teacher stage
            for name in [] if self.cli.report_only else spec.get("extra_teachers") or []:
                key = "teacher-" + Path(name).name
                self.extra_teachers[key] = self.teacher(name, key)
                extra.append((load_teacher(str(self.out / key), task_type=self.task_type),
                              load_tokenizer(str(self.out / key))))  # fmt: skip
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
