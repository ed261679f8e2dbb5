"""The pieces of `DistillRecipe`'s steps that are functions of their inputs: reading the run's data, resolving its
task type and the features it uses, building and cutting the student, the files written before and after training,
and training that turns a signal into a checkpoint."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
from dataclasses import dataclass, field
from typing import Any

from transformers import DataCollatorWithPadding, set_seed

from .config import INTERMEDIATE_WEIGHTS
from .data import GLUE_TASKS, Task, get_task, load_task_data, resolve_columns
from .data.glue import glue_key
from .hub import GLUE_DATASET, RECIPE_FILE, card_info, score_items, write_card
from .latency import batches, model_latency_ms, threads_note
from .loading import check_model_source, load_config
from .metrics import evaluate_model
from .progress import announce
from .recipes import dump_recipe
from .resilience import InterruptedRun, NonFiniteLossError, StopOnSignal, atomic_write_text, latest_checkpoint
from .students import build_student, write_size_report
from .students.presets import PRESETS
from .students.prune import prune_on_data
from .tasks import TaskType, UnsupportedFeature, get_task_type, infer_task_type, task_type_of_dataset

logger = logging.getLogger(__name__)

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

    def read_teacher_metrics(self) -> None:
        """The scores an earlier (resumed) teacher stage saved beside its teacher."""
        path = os.path.join(self.teacher_dir or "", "eval_results.json")
        if self.teacher_dir and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                self.teacher_metrics = json.load(f)


def resolve_run_task_type(data_args: Any, model_args: Any) -> TaskType:
    """--task_type when given; else from --task (the GLUE names are sequence classification); else from the first
    teacher's head (its config's `architectures`); else sequence classification. Recorded in `data_args`.

    Every teacher (and a student given by name) is checked first: a missing folder or an unreachable hub is said at
    once. A teacher of a kind no registered task type distils (a causal or seq2seq LM) is refused unless
    --task_type says what to make of it."""
    for name in getattr(model_args, "teachers", None) or [model_args.teacher]:
        check_model_source(name, "teacher", "--teacher")
    student = model_args.student or ""
    if student not in PRESETS and student not in ("custom", "pruned") and not student.startswith("teacher:"):
        check_model_source(student, "student", "--student")
    try:
        config = load_config(model_args.teacher, model_args.trust_remote_code)
    except (OSError, ValueError):
        config = None  # the teacher fails to load later, with its own message
    if data_args.task_type:
        task_type = get_task_type(data_args.task_type)
    elif data_args.task:
        task_type = task_type_of_dataset(data_args.task)
        if task_type is None:
            get_task(data_args.task)  # an unknown task: the error lists the known ones
    else:
        task_type = infer_task_type(config)
    if not data_args.task_type and config is not None and not task_type.has_trained_head(config):
        refuse_generative_teacher(model_args.teacher, config)
    data_args.task_type = task_type.name
    return task_type


GENERATIVE_HEADS = {"ForCausalLM": "causal language model", "LMHeadModel": "causal language model",
                    "ForConditionalGeneration": "sequence-to-sequence model"}  # fmt: skip


def refuse_generative_teacher(name: str, config: Any) -> None:
    """A generative LM teacher is not bent into a classifier without a word: refused until its task type exists."""
    from .tasks import TASK_TYPES

    for arch in getattr(config, "architectures", None) or []:
        kind = next((k for suffix, k in GENERATIVE_HEADS.items() if arch.endswith(suffix)), None)
        if kind:
            raise UnsupportedFeature(
                f"teacher {name!r} is a {kind} ({arch}); distillkit distils {', '.join(TASK_TYPES)} models, not "
                f"{kind}s yet. Give a teacher of one of those kinds, or pass --task_type sequence-classification to "
                "fine-tune this one as a classifier first and distil that."
            )


def used_features(model_args: Any, data_args: Any, teacher_args: Any, args: Any) -> list[str]:
    """The task-type features (`tasks.FEATURES`) these arguments turn on, known before any model is loaded."""
    spec = model_args.student or ""
    used = []
    if spec in PRESETS or spec == "custom":
        used.append("presets")
    if spec.startswith("teacher:"):
        used.append("teacher_layers")
    if spec == "pruned":
        used.append("pruning")
    if model_args.share_layers or model_args.embedding_size is not None:
        used.append("layer_sharing")
    if model_args.trim_vocab:
        used.append("vocab_trimming")
    if args.teacher_cache:
        used.append("teacher_cache")
    if data_args.augment or data_args.unlabeled_file:
        used.append("augmentation")
    if len(model_args.teachers) > 1:
        used.append("ensembles")
    if args.intermediate_epochs or any(getattr(args, w) > 0 for w in INTERMEDIATE_WEIGHTS):
        used.append("intermediate_losses")
    if teacher_args.teacher_lora_r:
        used.append("lora_teacher")
    return used


def load_run_data(data_args: Any, task_type: TaskType) -> tuple[Task | None, Any, str, str | None, dict[str, Any]]:
    """(task, raw splits, text column, pair column, the data report: where the rows came from and how many)."""
    own = task_type.read_data(data_args)  # a task type that reads its own files (CoNLL columns)
    glue = bool(data_args.task) and glue_key(data_args.task) in GLUE_TASKS
    if own is None and data_args.task and not glue:
        raise ValueError(f"--task {data_args.task}: reading it from the hub is not offered yet for task type "
                         f"{task_type.name!r}; give --train_file and --validation_file.")  # fmt: skip
    task = get_task(data_args.task) if glue and own is None else None
    text, pair = resolve_columns(task, data_args.text_column, data_args.text_pair_column)
    if own is not None:  # the task type's own rows: its text columns (a tagger's words, a question and its context)
        text, pair = task_type.text_columns() or ("tokens", None)
    raw = own if own is not None else load_task_data(task, data_args.train_file, data_args.validation_file,
                                                     data_args.label_column)  # fmt: skip
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
        "source": "local files" if local else f"{GLUE_DATASET} ({task.name})" if task else f"hub ({data_args.task})",
        "hub_dataset": None if local else GLUE_DATASET if task else data_args.task,
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


def check_writable(output_dir: str) -> None:
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


def make_student(model_args: Any, teacher: Any, seed: int, task_type: TaskType) -> Any:
    set_seed(seed)  # the student's random initialisation is part of the run
    return build_student(
        model_args.student,
        teacher,
        task_type=task_type,
        num_layers=model_args.num_layers,
        hidden_size=model_args.hidden_size,
        num_heads=model_args.num_heads,
        intermediate_size=model_args.intermediate_size,
        num_key_value_heads=model_args.num_key_value_heads,
        embedding_size=model_args.embedding_size,
        share_layers=model_args.share_layers,
        num_hidden_groups=model_args.num_hidden_groups,
        init_from_teacher=model_args.init_from_teacher,
        trust_remote_code=model_args.trust_remote_code,
        allow_pickle=model_args.allow_pickle_weights,
    )


def prune_student(recipe: Any, teacher_data: Any, shape: Any = None) -> tuple[Any, dict[str, Any]]:
    """--student pruned: the teacher cut to the student's shape (or to `shape`, the first of --prune_steps) by
    importance on the training rows (the teacher's tokenization); with validation data, the report has the scores
    of each cut alone and of the student as cut."""
    model_args, args = recipe.model_args, recipe.args
    if recipe.task_type.chunked_lm_losses and model_args.prune_steps > 1:
        raise ValueError("--prune_steps cuts an encoder in steps; a decoder LM is cut once (leave out --prune_steps).")
    if recipe.task_type.chunked_lm_losses:
        return prune_lm_student(recipe, teacher_data)
    if model_args.prune_scores:
        raise ValueError("--prune_scores keeps a decoder LM's activation scores; an encoder's first-order "
                         "scores depend on its fine-tuned head and are measured in each run: drop it.")  # fmt: skip
    if model_args.prune_layers not in ("spread", "importance"):
        raise ValueError(f"--prune_layers {model_args.prune_layers} measures a decoder LM's layers; an encoder's "
                         "are chosen by spread or importance.")  # fmt: skip
    announce("pruning", f"scoring the teacher's units on {model_args.prune_samples:,} training rows")
    score = None
    collator = recipe.task_type.data_collator(recipe.tokenizer) or DataCollatorWithPadding(recipe.tokenizer)
    if "validation" in teacher_data and model_args.prune_eval:

        def score(model: Any) -> dict[str, float]:
            metrics = evaluate_model(model, recipe.tokenizer, teacher_data["validation"], args, recipe.compute_metrics,
                                     data_collator=collator)  # fmt: skip
            return {k.removeprefix("eval_"): round(v, 4) for k, v in score_items(metrics)}

    student, report = prune_on_data(
        recipe.teacher, recipe.student, teacher_data["train"], collator,
        model_args.prune_samples, evaluate=score, layers_by=model_args.prune_layers, shape=shape,
    )  # fmt: skip
    logger.info("pruned student: %s", "; ".join(student.distillkit_init_notes))
    return student, report


def prune_lm_student(recipe: Any, teacher_data: Any) -> tuple[Any, dict[str, Any]]:
    """--student pruned for a decoder LM: the teacher cut by activation importance on the first --prune_samples
    training blocks; with validation text, the report has the perplexity of the teacher, of each cut alone and of
    the whole cut before training (`students/prune_lm.py`)."""
    from .lm_export import length_batches
    from .students.prune_lm import (
        importance_identity,
        load_importance,
        measure_lm_importance,
        prune_lm_report,
        save_importance,
    )

    model_args, args = recipe.model_args, recipe.args
    if model_args.prune_layers == "importance":
        raise ValueError("--prune_layers importance is the encoders' first-order score; a decoder LM's layers are "
                         "chosen by perplexity (the default), cosine or spread.")  # fmt: skip
    rows = list(teacher_data["train"]["input_ids"][: model_args.prune_samples])
    blocks = length_batches(rows, max(1, args.per_device_eval_batch_size))
    scores, identity = None, None
    if model_args.prune_scores:
        identity = importance_identity(recipe.teacher, blocks, model_args.prune_layers)
        scores = load_importance(model_args.prune_scores, identity)
        if scores is not None:
            announce("pruning", f"the teacher's scores read from {model_args.prune_scores} (measured on the same "
                     f"{len(rows):,} blocks by {model_args.prune_layers})")  # fmt: skip
        elif os.path.exists(model_args.prune_scores):
            logger.warning("%s holds scores of another teacher, other blocks or another layer criterion: measured "
                           "again and overwritten", model_args.prune_scores)  # fmt: skip
    if scores is None:
        announce("pruning", f"scoring the teacher's heads, neurons, channels and layers ({model_args.prune_layers}) "
                 f"on {len(rows):,} training blocks")  # fmt: skip
        scores = measure_lm_importance(recipe.teacher, blocks, layers_by=model_args.prune_layers)
        if identity is not None:
            save_importance(scores, model_args.prune_scores, identity)
    score = None
    if "validation" in teacher_data and model_args.prune_eval:
        collator = recipe.task_type.data_collator(recipe.tokenizer)

        def score(model: Any) -> dict[str, float]:
            metrics = evaluate_model(model, recipe.tokenizer, teacher_data["validation"], args, recipe.compute_metrics,
                                     data_collator=collator)  # fmt: skip
            return {k.removeprefix("eval_"): round(v, 4) for k, v in score_items(metrics)}

    student, report = prune_lm_report(recipe.teacher, recipe.student.config, scores, evaluate=score)
    logger.info("pruned student: %s", "; ".join(student.distillkit_init_notes))
    return student, report


def recipe_fields_set(recipe: Any) -> set[str]:
    """The fields the user set and those distillkit's defaults chose: written into the recipe even where they equal
    a built-in default, so that the recipe read back runs the same."""
    given = set(getattr(recipe.args, "distillkit_given", None) or ())
    return given | {c.field for c in getattr(recipe, "defaults", None) or []}


def write_run_files(recipe: Any) -> None:
    """Before the first step: the recipe (to run it again), the size report, the data and prune reports."""
    out = recipe.args.output_dir
    os.makedirs(out, exist_ok=True)
    header = (
        "The run that made this student. Run it again with: distillkit distill --config distillkit_recipe.yaml\n"
        f"(it was started as: {shlex.join(recipe.command)}; paths here are absolute)"
    )
    if getattr(recipe, "defaults", None):
        header += "\ndistillkit's defaults, for the fields neither the command line nor a recipe set:\n" + "\n".join(
            f"  {c.line()}" for c in recipe.defaults
        )
    dump_recipe(os.path.join(out, RECIPE_FILE), recipe.model_args, recipe.data_args, recipe.teacher_args,
                recipe.args, header=header, absolute_paths=True, keep=recipe_fields_set(recipe))  # fmt: skip
    write_size_report(out, recipe.result.sizes)
    atomic_write_text(os.path.join(out, DATA_REPORT), json.dumps(recipe.data_report, indent=2))
    if recipe.prune_report is not None:
        atomic_write_text(os.path.join(out, PRUNE_REPORT), json.dumps(recipe.prune_report, indent=2))


def write_outputs(recipe: Any) -> None:
    """After evaluation: the teacher's scores, both models' latency on validation text, and the model card."""
    result, args = recipe.result, recipe.args
    if result.teacher_metrics:
        path = os.path.join(args.output_dir, "teacher_eval_results.json")
        members = {"teachers": result.members} if result.members else {}  # an ensemble: each teacher's
        atomic_write_text(path, json.dumps({**result.teacher_metrics, **members}, indent=2))
    latency = None
    raw, seq_len = recipe.raw, recipe.data_args.max_seq_length
    if "validation" in raw and getattr(recipe, "card_latency", True):  # a benchmark may time its models itself
        probe = raw["validation"].select(range(min(32, len(raw["validation"]))))
        pairs = probe[recipe.pair_column] if recipe.pair_column else None
        texts = [" ".join(t) if isinstance(t, list) else t for t in probe[recipe.text_column]]  # words: joined
        inputs = batches(recipe.tokenizer, texts, 1, seq_len, pairs)
        student_inputs = batches(recipe.student_tokenizer, texts, 1, seq_len, pairs) if recipe.cross else inputs
        announce("latency", f"the teacher, then the student, at batch 1 on {len(inputs)} validation texts")
        latency = {"teacher": model_latency_ms(recipe.teacher, inputs)}
        logger.info("latency: teacher %.1f ms an example", latency["teacher"])
        latency["student"] = model_latency_ms(recipe.trainer.model, student_inputs)
        logger.info("latency: student %.1f ms an example", latency["student"])
        latency["note"] = threads_note(1, len(inputs))
    announce("model card", os.path.join(args.output_dir, "README.md"))
    info = card_info(recipe.model_args, recipe.task, args, recipe.trainer, result, latency, recipe.command,
                     recipe.data_args.dataset_name, recipe.task_type)  # fmt: skip
    samples = recipe.task_type.card_samples(recipe.teacher, recipe.trainer.model, recipe.student_tokenizer)
    write_card(args.output_dir, {**info, "data": recipe.data_report, "warnings": recipe.notes, "samples": samples})


def train_with_signals(trainer: Any, resume: str | None, stop: StopOnSignal, command: list[str]) -> dict[str, Any]:
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
