"""Encoding for `DistillTrainer`: text columns tokenized, labels converted, the teacher's own tokenization beside the
student's (cross-tokenizer distillation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datasets import Dataset, DatasetDict


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


def class_label_encoder(label2id: dict[str, int] | None, num_labels: int) -> Callable[[list[Any]], list[Any]]:
    """Raw class labels (names, matched without case, or ids) -> ids in 0..num_labels-1; with `num_labels` 1 (a
    regression head) the values are taken as float targets. A value outside the label set is an error naming it."""
    convert = _label_converter(label2id or {}, num_labels)
    return lambda values: [convert(v) for v in values]


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
    label_encoder: Callable[[list[Any]], list[Any]] | None = None,
) -> Dataset | DatasetDict:
    """Tokenize the text column(s) (batched, truncated, unpadded: the collator pads each batch; `datasets` caches the
    result for files it read) and name the label column `labels`; every other column is dropped.

    Args:
        dataset: a `Dataset`, or a `DatasetDict` whose splits are each tokenized.
        tokenizer: the student's tokenizer (the teacher's when they share it).
        text_column: the column of the (first) text.
        text_pair_column: the column of the second text of a pair, or None.
        label_column: the gold label's column; None tokenizes without labels. A split without it (a GLUE test
            split) is tokenized without labels; a missing text column is an error.
        max_seq_length: longer inputs are truncated to this many tokens.
        label2id, num_labels: class labels by the teacher's names (numbers are taken as ids), which must lie in
            its label set (`num_labels`; 1 = regression, float targets). Used when no `label_encoder` is given.
        teacher_tokenizer: cross-tokenizer distillation: the text is tokenized a second time by this tokenizer into
            `teacher_input_ids`, `teacher_attention_mask`, ... of the same row (see `TEACHER_PREFIX` and
            `DistillCollator`). For an ensemble, {column prefix: tokenizer}.
        label_encoder: a batch of raw label values -> `labels` (a task type's `label_encoder(config)`); it wins
            over `label2id` / `num_labels`.
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
    if label_encoder is None:
        label_encoder = class_label_encoder(label2id, num_labels or (len(label2id) if label2id else 2))

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
            encoded["labels"] = label_encoder(batch[label_column])
        return encoded

    def encode_split(split: Dataset) -> Dataset:
        return split.map(encode, batched=True, remove_columns=split.column_names, desc="tokenizing")

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: encode_split(split) for name, split in dataset.items()})
    return encode_split(dataset)
