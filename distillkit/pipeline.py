"""The main job, end to end: data -> teacher (fine-tuned first if needed) -> student -> distillation -> outputs.

Every check on the inputs runs before anything is written to the output directory; the first write is the run's
recipe, just before training starts.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from datasets import DatasetDict
from transformers import DataCollatorWithPadding, set_seed

from .benchmark import batches, model_latency_ms, threads_note
from .checks import (
    check_evaluation,
    check_report_to,
    check_teacher,
    check_trim,
    fit_max_seq_length,
    labels_in_use,
    one_class_note,
    scaled_logging_steps,
    warn_if_not_smaller,
)
from .cli import invocation
from .config import DataArguments, DistillConfig, ModelArguments, TeacherArguments
from .data import Task, get_task, load_task_data, member_prefix, resolve_columns, tokenize_dataset
from .data.unlabeled import augment_cache_dir, extra_rows, load_unlabeled, training_texts, with_teacher_only_rows
from .finetune import finetune_teacher
from .hub import GLUE_DATASET, RECIPE_FILE, card_info, push_student, score_items, teacher_scores_line, write_card
from .metrics import build_compute_metrics, evaluate_model
from .progress import TimeEstimate, announce
from .recipes import dump_recipe
from .resilience import (
    InterruptedRun,
    NonFiniteLossError,
    StopOnSignal,
    atomic_write_text,
    finished_run,
    latest_checkpoint,
    resolve_resume,
    resume_requested,
)
from .students import build_student, format_size_table, size_report, write_size_report
from .students.prune import prune_on_data
from .students.vocab import trim_embeddings, trim_vocabulary
from .teachers import ensemble_scores, load_teachers, member_tokenizers, pick_student_tokenizer, stage_members
from .trainer import DistillTrainer

logger = logging.getLogger(__name__)

_PUSH_FIELDS = ("push_to_hub", "hub_model_id", "hub_token", "hub_private_repo")
DATA_REPORT = "data_report.json"  # which rows were read and used
PRUNE_REPORT = "prune_report.json"  # --student pruned: what was kept, by which scores


@dataclass
class RunResult:
    """What a run produced: the student's and the teacher's scores, sizes, and where things were written."""

    output_dir: str
    metrics: dict[str, float]
    teacher_metrics: dict[str, float] = field(default_factory=dict)
    teacher_dir: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's teachers: name, weight, scores
    sizes: dict[str, Any] = field(default_factory=dict)


def _load_data(data_args: DataArguments) -> tuple[Task | None, Any, str, str | None, dict[str, Any]]:
    """(task, raw splits, text column, pair column, the data report: where the rows came from and how many)."""
    task = get_task(data_args.task) if data_args.task else None
    text, pair = resolve_columns(task, data_args.text_column, data_args.text_pair_column)
    raw = load_task_data(task, data_args.train_file, data_args.validation_file, data_args.label_column)
    if "train" not in raw:
        raise ValueError("--train_file is required to train a student.")
    columns = raw["train"].column_names
    if task is not None and len(task.text_columns) == 2 and (pair is None or pair not in columns):
        raise ValueError(
            f"task {task.name!r} is a sentence-pair task but the data has no second text column {pair!r} "
            f"(columns: {columns}); name both with --text_column and --text_pair_column."
        )
    local = bool(data_args.train_file or data_args.validation_file)
    report: dict[str, Any] = {
        "source": "local files" if local else f"{GLUE_DATASET} ({task.name})" if task else "hub",
        "hub_dataset": None if local or task is None else GLUE_DATASET,
        "task": task.name if task else None,
        "splits": {},
    }
    files = {"train": data_args.train_file, "validation": data_args.validation_file}
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if split not in raw:
            continue
        read = len(raw[split])
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, read)))
        path = files[split]
        report["splits"][split] = {"file": os.path.abspath(path) if path else None, "rows_read": read,
                                   "rows_used": len(raw[split])}  # fmt: skip
        logger.info("data: %s, %d rows read, %d used", path or split, read, len(raw[split]))
    return task, raw, text, pair, report


def _check_writable(output_dir: str) -> None:
    """Fail before training when the output directory cannot be written, without creating anything."""
    path = os.path.abspath(output_dir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"output directory {output_dir!r} cannot be created: {path!r} is a file. Choose another --output_dir."
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(
            f"output directory {output_dir!r} is not writable ({path!r} denies writing). Choose another --output_dir."
        )


def make_student(model_args: ModelArguments, teacher: Any, seed: int) -> Any:
    set_seed(seed)  # the student's random initialisation is part of the run
    return build_student(
        model_args.student,
        teacher,
        num_layers=model_args.num_layers,
        hidden_size=model_args.hidden_size,
        num_heads=model_args.num_heads,
        intermediate_size=model_args.intermediate_size,
        embedding_size=model_args.embedding_size,
        share_layers=model_args.share_layers,
        num_hidden_groups=model_args.num_hidden_groups,
        init_from_teacher=model_args.init_from_teacher,
        trust_remote_code=model_args.trust_remote_code,
        allow_pickle=model_args.allow_pickle_weights,
    )


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    teacher_args: TeacherArguments,
    args: DistillConfig,
    command: list[str] | None = None,
) -> RunResult:
    """Run the whole job. Everything that could fail after training is checked before the first step."""
    command = command or [*invocation("distill"), *sys.argv[1:]]
    if not model_args.teacher or not model_args.student:
        raise ValueError("--teacher and --student are required (a hub name or a local directory each).")
    # the hub settings are taken out of the arguments: nothing is pushed before the run is finished and evaluated,
    # and the token is neither pickled with the arguments nor written into the recipe
    push = {k: getattr(args, k) for k in _PUSH_FIELDS}
    if push["push_to_hub"] and not push["hub_model_id"]:
        raise ValueError("--push_to_hub needs --hub_model_id NAME (the repository to create or update).")
    args.push_to_hub, args.hub_token = False, None
    check_report_to(args.report_to)

    task, raw, text_column, pair_column, data_report = _load_data(data_args)  # bad files fail before any model
    unlabeled = load_unlabeled(data_args.unlabeled_file, text_column, pair_column) if data_args.unlabeled_file else None
    if (unlabeled is not None or data_args.augment) and "kd" not in args.loss_weights():
        raise ValueError(
            "--unlabeled_file and --augment add rows that only the teacher labels, but alpha=0 trains on gold labels "
            "alone: set alpha > 0 (e.g. 0.5), or leave out the extra text."
        )
    check_evaluation(args, "validation" in raw)
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    if resume is not None and (done := finished_run(args.output_dir, resume)) is not None:
        return RunResult(output_dir=args.output_dir, **done)
    _check_writable(args.output_dir)
    set_seed(args.seed)  # a base teacher gets a freshly initialised head: seeded, so that runs repeat
    setups = load_teachers(model_args, teacher_args, task, raw, data_args.label_column, args.output_dir, resume)
    first, ensemble = setups[0], len(setups) > 1  # several teachers: an ensemble, checked in load_teachers
    teacher, tokenizer, needs_stage, teacher_dir = first.model, first.tokenizer, first.needs_stage, first.stage_dir
    num_labels = teacher.config.num_labels
    student_tokenizer = pick_student_tokenizer(model_args, tokenizer)
    cross = student_tokenizer is not tokenizer  # each model tokenizes the text itself
    members = member_tokenizers(setups, student_tokenizer) if ensemble else None  # None: reads the student's ids
    # the columns of each teacher that tokenizes differently from the student: "teacher_*", or "teacher_<k>_*"
    own_columns = {member_prefix(i + 1): t for i, t in enumerate(members) if t} if ensemble else cross and tokenizer
    student = make_student(model_args, teacher, args.seed)
    configs = {"teacher": teacher.config, "student": student.config}
    data_args.max_seq_length = fit_max_seq_length(data_args.max_seq_length, configs)
    encode = {
        "text_column": text_column,
        "text_pair_column": pair_column,
        "label_column": data_args.label_column,
        "max_seq_length": data_args.max_seq_length,
        "label2id": teacher.config.label2id,
        "num_labels": num_labels,
    }
    teacher_data = tokenize_dataset(raw, tokenizer, **encode)
    extra, data_report["teacher_labelled"] = extra_rows(
        data_args, unlabeled, raw["train"], teacher, tokenizer, text_column, pair_column, args.seed,
        augment_cache_dir(args.teacher_cache),
    )  # fmt: skip
    trimmed = None
    if model_args.trim_vocab:  # the student's own tokenizer: the teacher's, cut to the training text's tokens
        check_trim(model_args, args, ensemble, cross)
        texts, pairs = training_texts(raw["train"], extra, text_column, pair_column)
        trimmed = trim_vocabulary(tokenizer, texts, pairs, model_args.trim_vocab_min_count)
        student_tokenizer, cross, own_columns = trimmed.tokenizer, True, tokenizer
        data_report["vocabulary"] = trimmed.report()
    data = (
        tokenize_dataset(raw, student_tokenizer, **encode, teacher_tokenizer=own_columns)
        if own_columns
        else teacher_data
    )
    if extra is not None:  # rows for the distillation terms only: no gold label
        train = with_teacher_only_rows(
            data["train"], extra, student_tokenizer, encode, own_columns or None, num_labels == 1
        )
        data = DatasetDict({**data, "train": train})
        logger.info("training rows: %d labelled + %s labelled by the teacher alone", len(raw["train"]), len(extra))
    compute_metrics = build_compute_metrics(num_labels, task.metrics if task else None, task.name if task else None)
    main = setups[args.intermediate_teacher - 1] if ensemble else first  # the teacher the intermediate losses read
    main_cross = members[args.intermediate_teacher - 1] is not None if ensemble else cross
    DistillTrainer.check_setup(student, main.model.config, args, data["train"], main_cross)  # fit, losses, map, labels
    if "labels" in data["train"].column_names:
        labels_in_use(data["train"]["labels"], num_labels, teacher.config.id2label)
    seq_len = data_args.max_seq_length
    warn_if_not_smaller(student.num_parameters(), teacher.num_parameters())  # each shared tensor once, as size_report
    scaled_logging_steps(args, len(data["train"]))

    # ---- every input is checked (the teacher cache, when the trainer is built): outputs are written from here ----
    result = RunResult(output_dir=args.output_dir, metrics={}, teacher_dir=teacher_dir)
    if teacher_dir and os.path.isfile(os.path.join(teacher_dir, "eval_results.json")):
        with open(os.path.join(teacher_dir, "eval_results.json"), encoding="utf-8") as f:
            result.teacher_metrics = json.load(f)
    notes: list[str] = []
    if needs_stage:
        teacher, result.teacher_metrics = finetune_teacher(
            teacher, tokenizer, teacher_data["train"], teacher_data.get("validation"), args, teacher_args,
            compute_metrics, resume=resume_requested(args.resume_from_checkpoint),
        )  # fmt: skip
        first.model, result.teacher_dir = teacher, os.path.join(args.output_dir, "teacher")
        scores = teacher_scores_line(result.teacher_metrics)
        logger.info("teacher stage done: %s", scores or "(no validation data: not scored)")
        notes += check_teacher(compute_metrics.last_summary, teacher_args.allow_weak_teacher, result.teacher_dir)
    if ensemble:
        notes += stage_members(setups, raw, encode, args, teacher_args, compute_metrics)
    if (needs_stage or teacher_dir) and model_args.init_from_teacher:
        student = make_student(model_args, teacher, args.seed)  # from the fine-tuned teacher, not the base one
    prune_report = None
    if model_args.student == "pruned":  # cut by importance, measured on the (fine-tuned) teacher
        announce("pruning", f"scoring the teacher's units on {model_args.prune_samples:,} training rows")
        score = None
        if "validation" in teacher_data:  # the teacher with each dimension cut alone, and the student as cut

            def score(model: Any) -> dict[str, float]:
                metrics = evaluate_model(model, tokenizer, teacher_data["validation"], args, compute_metrics)
                return {k.removeprefix("eval_"): round(v, 4) for k, v in score_items(metrics)}

        student, prune_report = prune_on_data(
            teacher, student, teacher_data["train"], DataCollatorWithPadding(tokenizer), model_args.prune_samples,
            evaluate=score, layers_by=model_args.prune_layers,
        )  # fmt: skip
        logger.info("pruned student: %s", "; ".join(student.distillkit_init_notes))
    if trimmed is not None:
        student = trim_embeddings(student, trimmed.kept_ids)
    stop = StopOnSignal()
    announce("distillation", f"{len(data['train']):,} rows, losses {args.loss_weights()}")
    trainer = DistillTrainer(
        model=student,
        teacher=[s.model for s in setups] if ensemble else teacher,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=student_tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[stop, TimeEstimate("distillation")],
        **({"teacher_processing_class": members if ensemble else tokenizer} if ensemble or cross else {}),
    )
    result.sizes = {"teacher": size_report(teacher, seq_len), "student": size_report(student, seq_len)}
    result.sizes["student"]["initialisation"] = getattr(student, "distillkit_init_notes", [])
    logger.info("model sizes (FLOPs per token at sequence length %d):\n%s", seq_len, format_size_table(result.sizes))
    if args.should_save:  # the teacher cache was checked as the trainer was built: write the run down
        os.makedirs(args.output_dir, exist_ok=True)
        header = (
            "The run that made this student. Run it again with: distillkit distill --config distillkit_recipe.yaml\n"
            f"(it was started as: {shlex.join(command)}; paths here are absolute)"
        )
        path = os.path.join(args.output_dir, RECIPE_FILE)
        dump_recipe(path, model_args, data_args, teacher_args, args, header=header, absolute_paths=True)
        write_size_report(args.output_dir, result.sizes)
        atomic_write_text(os.path.join(args.output_dir, DATA_REPORT), json.dumps(data_report, indent=2))
        if prune_report is not None:
            atomic_write_text(os.path.join(args.output_dir, PRUNE_REPORT), json.dumps(prune_report, indent=2))

    train_metrics = _train(trainer, resume, stop, command)
    trainer.save_model()  # the student and its tokenizer, loadable with plain transformers
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    result.metrics = dict(train_metrics)
    if "validation" in data:
        announce("evaluation", f"{len(data['validation']):,} validation rows")
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        result.metrics.update(eval_metrics)
        notes += [n for n in [one_class_note("student", compute_metrics.last_summary or {})] if n]
    trainer.save_state()
    if "validation" in data and ensemble:  # the ensemble's scores for the card's comparison, and each teacher's
        result.teacher_metrics, result.members = ensemble_scores(trainer, setups, raw, encode, args, compute_metrics)
    elif "validation" in data and not result.teacher_metrics:  # the teacher's scores, for the card's comparison
        result.teacher_metrics = evaluate_model(
            teacher, tokenizer, teacher_data["validation"], args, compute_metrics, prefix="teacher_eval"
        )
        notes += [n for n in [one_class_note("teacher", compute_metrics.last_summary or {})] if n]
    if args.should_save:
        if result.teacher_metrics:
            path = os.path.join(args.output_dir, "teacher_eval_results.json")
            members_metrics = {"teachers": result.members} if result.members else {}  # an ensemble: each teacher's
            atomic_write_text(path, json.dumps({**result.teacher_metrics, **members_metrics}, indent=2))
        latency = None
        if "validation" in raw:
            probe = raw["validation"].select(range(min(32, len(raw["validation"]))))
            pairs = probe[pair_column] if pair_column else None
            inputs = batches(tokenizer, probe[text_column], 1, seq_len, pairs)
            student_inputs = batches(student_tokenizer, probe[text_column], 1, seq_len, pairs) if cross else inputs
            latency = {
                "teacher": model_latency_ms(teacher, inputs),
                "student": model_latency_ms(trainer.model, student_inputs),
                "note": threads_note(1, len(inputs)),
            }
        info = card_info(model_args, task, args, trainer, result, latency, command, data_args.dataset_name)
        write_card(args.output_dir, {**info, "data": data_report, "warnings": notes})
    if push["push_to_hub"] and args.should_save:  # the main process pushes, once
        push_student(args.output_dir, push["hub_model_id"], push["hub_token"], push["hub_private_repo"])
    return result


def _train(trainer: DistillTrainer, resume: str | None, stop: StopOnSignal, command: list[str]) -> dict[str, Any]:
    """Train; turn a signal into a checkpoint plus the command that resumes, and a NaN into a clear stop."""
    output_dir = trainer.args.output_dir
    try:
        metrics = trainer.train(resume_from_checkpoint=resume).metrics
    except NonFiniteLossError as err:
        last = latest_checkpoint(output_dir)
        raise NonFiniteLossError(
            f"{err} The run stopped there; the last good checkpoint is {last or 'none (none was written yet)'}."
        ) from None
    if stop.received is not None:
        again = [c for i, c in enumerate(command) if c != "--resume_from_checkpoint"
                 and (i == 0 or command[i - 1] != "--resume_from_checkpoint")]  # fmt: skip
        raise InterruptedRun(
            f"interrupted by {signal.Signals(stop.received).name}: checkpoint {latest_checkpoint(output_dir)} "
            f"written. Resume with: {shlex.join([*again, '--resume_from_checkpoint', 'latest'])}",
            stop.received,
        )
    return metrics
