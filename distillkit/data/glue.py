"""GLUE by name: each task's text columns, label names, validation split and metrics, and its data from the hub
(or local files); nothing here encodes text (see `encode.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import DatasetDict, load_dataset

from .files import load_files


@dataclass(frozen=True)
class Task:
    """A classification or regression task: its text columns, labels, validation split and metrics."""

    name: str
    text_columns: tuple[str, ...]  # one column (single sentences) or two (pairs)
    label_names: tuple[str, ...]  # empty for regression
    validation_split: str = "validation"
    metrics: tuple[str, ...] = ("accuracy",)

    @property
    def num_labels(self) -> int:
        return len(self.label_names) or 1  # a regression head has a single output

    @property
    def is_regression(self) -> bool:
        return not self.label_names


# GLUE (Wang et al. 2018): columns, label names and metrics as in the `glue` dataset on the hub
GLUE_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("cola", ("sentence",), ("unacceptable", "acceptable"), metrics=("matthews_correlation",)),
        Task("sst2", ("sentence",), ("negative", "positive")),
        Task("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), metrics=("accuracy", "f1")),
        Task("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), metrics=("accuracy", "f1")),
        Task("stsb", ("sentence1", "sentence2"), (), metrics=("pearson", "spearmanr")),
        Task("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "validation_matched"),
        Task("qnli", ("question", "sentence"), ("entailment", "not_entailment")),
        Task("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
        Task("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
    )
}


def glue_key(name: str) -> str:
    """A task name as GLUE_TASKS keys it ("SST-2" -> "sst2")."""
    return name.strip().lower().replace("-", "")


def get_task(name: str) -> Task:
    key = glue_key(name)
    if key not in GLUE_TASKS:
        raise ValueError(
            f"unknown task {name!r}; known tasks: {', '.join(GLUE_TASKS)}. For other data, leave --task unset and "
            "pass --train_file / --validation_file with --text_column (and --text_pair_column for pairs)."
        )
    return GLUE_TASKS[key]


def resolve_columns(task: Task | None, text_column: str | None, text_pair_column: str | None) -> tuple[str, str | None]:
    """The text column(s) to read: the ones given, else the task's, else 'sentence' alone."""
    text = text_column or (task.text_columns[0] if task else "sentence")
    pair = text_pair_column
    if pair is None and task is not None and len(task.text_columns) == 2:
        pair = task.text_columns[1]
    return text, pair


def load_task_data(
    task: Task | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    label_column: str | None = None,
) -> DatasetDict:
    """Local files when given (with or without a task), else the task's GLUE data through `datasets`.

    The result has a "train" split and, when there is one, a "validation" split (MNLI's validation_matched).
    """
    if train_file or validation_file:
        return load_files(train_file, validation_file, label_column)
    if task is None:
        raise ValueError("no data given: pass --task NAME or --train_file (and --validation_file), csv, tsv or json.")
    data = load_dataset("glue", task.name)
    return DatasetDict({"train": data["train"], "validation": data[task.validation_split]})
