"""Tasks (GLUE by name, or local files) -> tokenized `datasets` for `DistillTrainer`: columns, labels, encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

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


def get_task(name: str) -> Task:
    key = name.strip().lower().replace("-", "")
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


def infer_labels(dataset: Dataset, label_column: str) -> tuple[str, ...]:
    """Label names found in a training split: sorted strings, or "0".."N-1" for integers; () for float targets."""
    values = dataset.unique(label_column)
    if all(isinstance(v, str) for v in values):
        return tuple(sorted(values))
    if all(isinstance(v, (int, bool)) for v in values):
        if min(values) < 0:
            raise ValueError(f"label column {label_column!r} holds negative class ids {sorted(values)[:5]}.")
        return tuple(str(i) for i in range(max(values) + 1))
    return ()  # float targets: regression


def _label_converter(label2id: dict[str, int], num_labels: int) -> Any:
    lookup = {str(k).lower(): int(v) for k, v in label2id.items()}

    def convert(value: Any) -> int | float:
        if num_labels == 1:  # regression: the target is the number itself
            return float(value)
        if isinstance(value, str) and value.strip().lower() in lookup:
            return lookup[value.strip().lower()]
        if isinstance(value, (int, bool)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            index = int(value)
            if 0 <= index < num_labels:
                return index
        raise ValueError(
            f"label {value!r} is outside the teacher's label set (ids 0..{num_labels - 1}, names "
            f"{sorted(lookup)}). Relabel the data, or use a teacher fine-tuned on these labels."
        )

    return convert


TEACHER_PREFIX = "teacher_"  # columns of the teacher's own tokenization (cross-tokenizer distillation)


def member_prefix(k: int) -> str:
    """The columns of the k-th teacher of an ensemble (1-based), when its tokenizer is not the student's."""
    return f"{TEACHER_PREFIX}{k}_"


def teacher_part(features: dict[str, Any], prefix: str = TEACHER_PREFIX) -> dict[str, Any]:
    """The `teacher_*` entries of a row or batch (or those of another prefix), without their prefix: a teacher's own
    tokenization."""
    return {k[len(prefix) :]: v for k, v in features.items() if k.startswith(prefix)}


def teacher_view(dataset: Dataset, prefix: str = TEACHER_PREFIX) -> Dataset:
    """A dataset tokenized for cross-tokenizer distillation, as its teacher reads it: the teacher's `input_ids`,
    `attention_mask` (and `token_type_ids`) under their plain names, with the labels; other data is returned as is."""
    own = {c: c[len(prefix) :] for c in dataset.column_names if c.startswith(prefix)}
    own = {c: name for c, name in own.items() if name in ("input_ids", "attention_mask", "token_type_ids")}
    if not own:
        return dataset
    keep = [*own, *(["labels"] if "labels" in dataset.column_names else [])]
    return dataset.select_columns(keep).rename_columns(own)


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers map text to the same ids (same vocabulary and special tokens)."""
    if a is b:
        return True
    return a.get_vocab() == b.get_vocab() and a.all_special_ids == b.all_special_ids


def tokenize_dataset(
    dataset: Dataset | DatasetDict,
    tokenizer: Any,
    text_column: str = "sentence",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
    max_seq_length: int = 128,
    label2id: dict[str, int] | None = None,
    num_labels: int | None = None,
    teacher_tokenizer: Any = None,
) -> Dataset | DatasetDict:
    """Tokenize the text column(s) (batched, truncated, unpadded: the collator pads each batch; `datasets` caches the
    result for files it read) and name the label column `labels`; every other column is dropped.

    Labels are mapped through `label2id` (the teacher's label names; numbers are taken as ids) and must lie in the
    teacher's label set (`num_labels`; 1 = regression, float targets). A split without the label column (a GLUE test
    split) is tokenized without labels; a missing text column is an error.

    Cross-tokenizer distillation: with a `teacher_tokenizer` the text is tokenized twice, once by each tokenizer; the
    teacher's encoding goes into `teacher_input_ids`, `teacher_attention_mask`, ... of the same row (see
    `TEACHER_PREFIX` and `DistillCollator`). For an ensemble, `teacher_tokenizer` is {column prefix: tokenizer}.
    """
    splits = dict(dataset) if isinstance(dataset, DatasetDict) else {"data": dataset}
    for name, split in splits.items():
        wanted = [c for c in (text_column, text_pair_column, label_column) if c]
        missing = [c for c in wanted if c not in split.column_names]
        if missing:
            raise ValueError(
                f"column(s) {missing} not found in the {name} data (columns: {split.column_names}); set "
                "--text_column, --text_pair_column or --label_column to the right names (or unset --label_column "
                "with alpha=1.0)."
            )
    if num_labels is None:
        num_labels = len(label2id) if label2id else 2
    convert = _label_converter(label2id or {}, num_labels)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [str(t) for t in batch[text_column]]
        pairs = [str(t) for t in batch[text_pair_column]] if text_pair_column else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_seq_length)
        others = teacher_tokenizer if isinstance(teacher_tokenizer, dict) else {TEACHER_PREFIX: teacher_tokenizer}
        for prefix, other in others.items():
            if other is None:
                continue
            for key, value in other(texts, pairs, truncation=True, max_length=max_seq_length).items():
                encoded[prefix + key] = value
        if label_column:
            encoded["labels"] = [convert(v) for v in batch[label_column]]
        return encoded

    def encode_split(split: Dataset) -> Dataset:
        return split.map(encode, batched=True, remove_columns=split.column_names, desc="tokenizing")

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: encode_split(split) for name, split in dataset.items()})
    return encode_split(dataset)
