"""The run's teachers: each loaded (or taken from a resumed run's teacher stage), the student's tokenizer, and the
checks that several teachers make an ensemble."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .arguments import ModelArguments, TeacherArguments
from .data import Task, same_tokenizer, tokenize_dataset
from .ensemble import check_labels, evaluate_ensemble
from .loading import has_trained_head, load_teacher, load_tokenizer
from .metrics import evaluate_model
from .resilience import resume_requested
from .students.presets import KNOWN_SPECS
from .tasks import TaskType
from .teacher_stage import finetune_teacher

logger = logging.getLogger(__name__)


@dataclass
class TeacherSetup:
    name: str  # as given (--teacher)
    stage: str  # its teacher-stage folder in the output directory: teacher, teacher-2, ...
    model: Any
    tokenizer: Any
    needs_stage: bool  # still to be fine-tuned on the task
    stage_dir: str | None  # where an earlier (resumed) stage saved it


def load_teachers(
    model_args: ModelArguments,
    teacher_args: TeacherArguments,
    task: Task | None,
    raw: Any,
    label_column: str | None,
    output_dir: str,
    resuming: bool,
    task_type: TaskType,
) -> list[TeacherSetup]:
    """Every teacher of the run (one is the usual case); several must predict the same labels."""
    setups = [
        load_teacher_for_run(name, "teacher" if i == 0 else f"teacher-{i + 1}", model_args, teacher_args, task, raw,
                             label_column, output_dir, resuming, task_type)
        for i, name in enumerate(model_args.teachers)
    ]  # fmt: skip
    if len(setups) > 1:
        check_labels([s.model.config for s in setups], [s.name for s in setups])
    return setups


def pick_student_tokenizer(model_args: ModelArguments, teacher_tokenizer: Any) -> Any:
    """The teacher's tokenizer, unless the student is a pretrained model with a tokenizer of its own that maps text
    to other ids: then cross-tokenizer distillation (each model reads its own tokenization of the same text)."""
    spec = model_args.student
    if spec in KNOWN_SPECS or spec.startswith("teacher:") or not (os.path.isdir(spec) or "/" in spec):
        return teacher_tokenizer
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
    if os.path.isdir(spec) and not any(os.path.isfile(os.path.join(spec, f)) for f in files):
        return teacher_tokenizer  # a checkpoint without tokenizer files reads the teacher's tokenization
    try:
        own = load_tokenizer(spec, model_args.trust_remote_code)
    except (OSError, ValueError):
        return teacher_tokenizer  # no tokenizer of its own on the hub either
    if same_tokenizer(own, teacher_tokenizer):
        return teacher_tokenizer
    logger.info("the student %s has its own tokenizer: cross-tokenizer distillation (logit losses only)", spec)
    return own


def load_teacher_for_run(
    name: str,
    stage: str,
    model_args: ModelArguments,
    teacher_args: TeacherArguments,
    task: Task | None,
    raw: Any,
    label_column: str | None,
    output_dir: str,
    resuming: bool,
    task_type: TaskType,
) -> TeacherSetup:
    """One teacher as the run will use it: loaded from `<output_dir>/<stage>` when a resumed run's teacher stage made
    it there, else from `name`, with a new head when it still needs fine-tuning."""
    trust, pickle_ok = model_args.trust_remote_code, model_args.allow_pickle_weights
    stage_dir = os.path.join(output_dir, stage)
    if resuming and os.path.isfile(os.path.join(stage_dir, "config.json")):
        # a resumed run distills from the teacher its first part fine-tuned: fine-tuning again would change it
        teacher = load_teacher(stage_dir, task_type=task_type)
        return TeacherSetup(name, stage, teacher, load_tokenizer(stage_dir), False, stage_dir)
    finetune = teacher_args.finetune_teacher
    trained = has_trained_head(name, task_type, trust)
    if not trained and finetune == "never":
        raise ValueError(
            f"the teacher {name!r} has no trained {task_type.head_description} head; let distillkit "
            "fine-tune it first (--finetune_teacher auto) or give a fine-tuned teacher."
        )
    needs_stage = finetune == "always" or (finetune == "auto" and not trained)
    label_names = task.label_names if task is not None else None
    if task is None and needs_stage:
        if not label_column:
            raise ValueError("fine-tuning the teacher needs labels: give --label_column.")
        label_names = task_type.infer_labels(raw["train"], label_column)
    teacher = load_teacher(name, label_names, task_type=task_type, new_head=finetune == "always",
                           trust_remote_code=trust, allow_pickle=pickle_ok)  # fmt: skip
    return TeacherSetup(name, stage, teacher, load_tokenizer(name, trust), needs_stage, None)


def member_tokenizers(setups: list[TeacherSetup], student_tokenizer: Any) -> list[Any]:
    """Per teacher of an ensemble: its tokenizer where it tokenizes differently from the student, else None."""
    return [None if same_tokenizer(s.tokenizer, student_tokenizer) else s.tokenizer for s in setups]


def stage_members(
    setups: list[TeacherSetup],
    raw: Any,
    encode: dict[str, Any],
    args: Any,
    teacher_args: Any,
    compute_metrics: Any,
    task_type: TaskType,
) -> list[str]:
    """The teacher stage of every ensemble member after the first that needs one (the first has its own in the
    pipeline); returns the notes of weak teachers."""
    notes: list[str] = []
    for setup in setups[1:]:
        if not setup.needs_stage:
            continue
        own = tokenize_dataset(raw, setup.tokenizer, **encode)
        setup.model, _ = finetune_teacher(setup.model, setup.tokenizer, own["train"], own.get("validation"), args,
                                          teacher_args, compute_metrics, stage=setup.stage,
                                          resume=resume_requested(args.resume_from_checkpoint),
                                          task_type=task_type)  # fmt: skip
        setup.stage_dir = os.path.join(args.output_dir, setup.stage)
        notes += task_type.check_teacher(compute_metrics.last_summary, teacher_args.allow_weak_teacher,
                                         setup.stage_dir)  # fmt: skip
    return notes


def ensemble_scores(
    trainer: Any, setups: list[TeacherSetup], raw: Any, encode: dict[str, Any], args: Any, compute_metrics: Any
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(the ensemble's validation scores, as teacher_eval_*; every member's, with its name and weight). The
    ensemble predicts from its mixed probabilities at temperature 1."""
    members = []
    for setup, weight in zip(setups, trainer.teacher.weights):
        own = tokenize_dataset(raw["validation"], setup.tokenizer, **encode)
        metrics = evaluate_model(setup.model, setup.tokenizer, own, args, compute_metrics, prefix="teacher_eval")
        members.append({"name": setup.name, "weight": round(weight, 4), "metrics": metrics})
    scores = evaluate_ensemble(trainer.teacher, trainer.eval_dataset, trainer.data_collator, compute_metrics,
                               args.per_device_eval_batch_size)  # fmt: skip
    return scores, members
