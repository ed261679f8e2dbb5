"""Task types: one file per kind of model, and the one registry (`register_task_type`, `get_task_type`)."""

from __future__ import annotations

from typing import Any

from .base import FEATURES, TARGET_COLUMNS, TaskType, UnsupportedFeature, output_logits
from .causal_lm import CausalLM
from .question_answering import QuestionAnswering
from .sequence_classification import SequenceClassification
from .token_classification import TokenClassification

__all__ = [
    "FEATURES",
    "CausalLM",
    "TARGET_COLUMNS",
    "QuestionAnswering",
    "TASK_TYPES",
    "DEFAULT_TASK_TYPE",
    "SequenceClassification",
    "TaskType",
    "TokenClassification",
    "UnsupportedFeature",
    "get_task_type",
    "infer_task_type",
    "output_logits",
    "register_task_type",
    "resolve_task_type",
    "task_type_of_dataset",
]

TASK_TYPES: dict[str, type[TaskType]] = {}
DEFAULT_TASK_TYPE = "sequence-classification"


def register_task_type(name: str, cls: type[TaskType]) -> type[TaskType]:
    """Add a task type to the registry, under `name` (what `--task_type` takes).

    Args:
        name: the registry name, lower case with hyphens ("token-classification"); an existing name is an error.
        cls: a `TaskType` subclass; its `name` attribute is set to `name`.

    Returns:
        `cls`, so that this also works as `register_task_type("name", MyTask)` at the end of its module.
    """
    if not (isinstance(cls, type) and issubclass(cls, TaskType)):
        raise TypeError(f"register_task_type({name!r}, ...) needs a TaskType subclass (got {cls!r}).")
    if name in TASK_TYPES:
        raise ValueError(f"a task type named {name!r} is already registered; choose another name.")
    cls.name = name
    TASK_TYPES[name] = cls
    return cls


def get_task_type(name: str | TaskType) -> TaskType:
    """The registered task type `name` (an instance); a `TaskType` instance is returned as it is."""
    if isinstance(name, TaskType):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key not in TASK_TYPES:
        raise ValueError(
            f"unknown task type {name!r}; registered task types: {', '.join(TASK_TYPES)}. Register it first with "
            "distillkit.register_task_type(name, cls)."
        )
    return TASK_TYPES[key]()


def infer_task_type(config: Any = None) -> TaskType:
    """The task type whose head a model config names in `architectures` (a `...ForSequenceClassification`
    checkpoint is sequence classification, and so on); sequence classification when none does."""
    if config is not None:
        for cls in TASK_TYPES.values():  # in registration order: the built-in types first
            task = cls()
            if task.architecture_suffix and task.has_trained_head(config):
                return task
    return get_task_type(DEFAULT_TASK_TYPE)


def task_type_of_dataset(name: str) -> TaskType | None:
    """The task type whose `dataset_names` has `name` (a `--task` value: "sst2"), or None."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    for cls in TASK_TYPES.values():
        if key in {n.lower().replace("-", "").replace("_", "") for n in cls.dataset_names}:
            return cls()
    return None


def resolve_task_type(task_type: str | TaskType | None, model: Any = None) -> TaskType:
    """`task_type` by name (or as given); when None, the one `model`'s config (or `model` as a config) names."""
    if task_type is not None:
        return get_task_type(task_type)
    config = getattr(model, "config", model)
    return infer_task_type(config)


register_task_type(DEFAULT_TASK_TYPE, SequenceClassification)
register_task_type("token-classification", TokenClassification)
register_task_type("question-answering", QuestionAnswering)
register_task_type("causal-lm", CausalLM)
