"""The public model helpers with an optional task type: given by name, or read off the teacher's head (a
`...ForSequenceClassification` checkpoint is sequence classification), then handed to the builders below `tasks/`."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel

from . import loading, students
from .frozen_teacher import check_vocabularies
from .tasks import TaskType, get_task_type, resolve_task_type


def build_student(
    spec: str, teacher: PreTrainedModel, *, task_type: str | TaskType | None = None, **kwargs: Any
) -> PreTrainedModel:
    """Build (or load) the student named by `spec` with the teacher's vocabulary and head.

    Args:
        spec: a preset (tiny, mini, small, medium), "custom", "teacher:K", "pruned", or a directory / hub name
            (see `distillkit.students.build_student` for each).
        teacher: the (fine-tuned) teacher.
        task_type: a registered task type's name or a `TaskType`; default: the teacher's (from its head).
        **kwargs: the shape and initialisation options of `distillkit.students.build_student` (num_layers,
            hidden_size, num_heads, intermediate_size, embedding_size, share_layers, num_hidden_groups,
            init_from_teacher, trust_remote_code, allow_pickle).
    """
    return students.build_student(spec, teacher, task_type=resolve_task_type(task_type, teacher), **kwargs)


def load_teacher(
    name_or_path: str,
    label_names: tuple[str, ...] | None = None,
    *,
    task_type: str | TaskType | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a teacher (a checkpoint, a base model that gets a new head, or a LoRA adapter directory).

    Args:
        name_or_path: a hub name or a local directory.
        label_names: the task's labels: a base checkpoint gets a fresh head for them; a trained head must fit.
        task_type: a task type's name or a `TaskType`; default: the one the checkpoint's head names.
        trust_remote_code: allow custom modelling code (off unless you ask for it).
        **kwargs: new_head, allow_pickle (see `distillkit.loading.load_teacher`).
    """
    if task_type is None:
        task = resolve_task_type(None, loading.load_config(name_or_path, trust_remote_code))
    else:
        task = get_task_type(task_type)
    return loading.load_teacher(name_or_path, label_names, task_type=task, trust_remote_code=trust_remote_code,
                                **kwargs)  # fmt: skip


def check_teacher_student(
    teacher_config: Any, student_config: Any, cross_tokenizer: bool = False, task_type: str | TaskType | None = None
) -> None:
    """Fail early when the student cannot learn from the teacher's outputs: the same vocabulary on the same
    tokenized batch (unless `cross_tokenizer`: each model reads its own tokenization of the same text), and heads
    that predict the same outputs (the task type's check; default: the teacher's task type)."""
    check_vocabularies(teacher_config, student_config, cross_tokenizer)
    resolve_task_type(task_type, teacher_config).check_compatible(teacher_config, student_config)
