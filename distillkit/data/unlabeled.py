"""Rows that only the teacher labels: unlabeled text (`--unlabeled_file`) and augmented text (`--augment N`).

They join the training set with the label `NO_LABEL` (-100, which the hard-label loss ignores; NaN for a regression
target), so they feed the distillation terms (kd and the intermediate ones) and never the hard-label term.
Evaluation data is never touched.
"""

from __future__ import annotations

import os
from typing import Any

from datasets import Dataset, Features, Value, concatenate_datasets

from .encode import tokenize_dataset
from .files import FORMATS, read_file

NO_LABEL = -100


def load_unlabeled(path: str, text_column: str, pair_column: str | None = None) -> Dataset:
    """Texts from a .txt file (one per line) or the text column(s) of a csv / tsv / json file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"unlabeled file {path!r} does not exist; check the path given to --unlabeled_file.")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".txt":
        if pair_column:
            raise ValueError(
                f"unlabeled file {path!r} is plain text, but the task takes pairs of texts: give a csv, tsv or json "
                f"file with the columns {text_column!r} and {pair_column!r}."
            )
        with open(path, encoding="utf-8-sig") as f:
            texts = [line.rstrip("\r\n") for line in f if line.strip()]
        if not texts:
            raise ValueError(f"unlabeled file {path!r} is empty; give one text per line.")
        return Dataset.from_dict({text_column: texts})
    if ext not in FORMATS:
        raise ValueError(
            f"unlabeled file {path!r} has extension {ext!r}; use .txt (one text per line) or one of {sorted(FORMATS)}."
        )
    data = read_file(path, "unlabeled")
    wanted = [c for c in (text_column, pair_column) if c]
    missing = [c for c in wanted if c not in data.column_names]
    if missing:
        raise ValueError(
            f"unlabeled file {path!r} has no column(s) {missing} (columns: {data.column_names}); it needs the same "
            "text column(s) as the training data (--text_column / --text_pair_column)."
        )
    return _as_text(data.select_columns(wanted))


def _as_text(dataset: Dataset) -> Dataset:
    """Every column as strings (a column of numbers read from a file is still text here)."""
    return dataset.cast(Features({c: Value("string") for c in dataset.column_names}))


def with_teacher_only_rows(
    train: Dataset,
    extra: Dataset,
    tokenizer: Any,
    encode: dict[str, Any],
    teacher_tokenizer: Any = None,
    no_label: Any = NO_LABEL,
) -> Dataset:
    """`train` (tokenized) followed by the raw `extra` texts, tokenized as `tokenize_dataset(..., **encode)` does
    but without labels (with `teacher_tokenizer`, also in the teacher's own tokenization): they get the label
    `no_label` (the task type's `no_label`: -100, or NaN for a regression target) when `train` has labels."""
    extra = tokenize_dataset(extra, tokenizer, **{**encode, "label_column": None}, teacher_tokenizer=teacher_tokenizer)
    if "labels" in train.column_names:
        extra = extra.add_column("labels", [no_label] * len(extra))
    extra = extra.cast(train.features)
    return concatenate_datasets([train, extra])


def texts_of(dataset: Dataset, text_column: str, pair_column: str | None) -> tuple[list[str], list[str] | None]:
    texts = [str(t) for t in dataset[text_column]]
    return texts, ([str(t) for t in dataset[pair_column]] if pair_column else None)


def training_texts(
    train_raw: Dataset, extra: Dataset | None, text_column: str, pair_column: str | None
) -> tuple[list[str], list[str] | None]:
    """Every text the student trains on: the labelled rows', then those of the rows only the teacher labels."""
    texts, pairs = texts_of(train_raw, text_column, pair_column)
    if extra is None:
        return texts, pairs
    more, more_pairs = texts_of(extra, text_column, pair_column)
    return texts + more, (pairs + more_pairs if pairs is not None and more_pairs is not None else None)


def augment_cache_dir(teacher_cache: str | None) -> str:
    """Where augmented texts are cached: beside the teacher cache, else DISTILLKIT_CACHE or ~/.cache/distillkit."""
    if teacher_cache:
        return os.path.join(teacher_cache, "augment")
    root = os.environ.get("DISTILLKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "distillkit"
    )
    return os.path.join(root, "augment")


def augment_source(data_args: Any, teacher: Any, tokenizer: Any) -> Any:
    """Where replacement words come from: --augment_mlm's masked LM, else the teacher's input embeddings."""
    from ..augment import EmbeddingNeighbours, MaskedLMCandidates

    if data_args.augment_mlm:
        return MaskedLMCandidates(data_args.augment_mlm, data_args.augment_k)
    return EmbeddingNeighbours(tokenizer, teacher.get_input_embeddings().weight, data_args.augment_k)


def extra_rows(
    data_args: Any, unlabeled: Dataset | None, train_raw: Dataset, teacher: Any, tokenizer: Any, text_column: str,
    pair_column: str | None, seed: int, cache_dir: str,
) -> tuple[Dataset | None, dict[str, int]]:  # fmt: skip
    """The raw texts that only the teacher labels (the unlabeled rows, then augmented copies of the training texts),
    as one Dataset with the training data's text column(s), or None; and how many of each."""
    from ..augment import augment_cached

    parts, counts = [], {"unlabeled_rows": 0, "augmented_rows": 0}
    if unlabeled is not None:
        parts.append(unlabeled)
        counts["unlabeled_rows"] = len(unlabeled)
    if data_args.augment:
        source = augment_source(data_args, teacher, tokenizer)
        texts, pairs = texts_of(train_raw, text_column, pair_column)
        new, new_pairs, _ = augment_cached(
            texts, pairs, source, data_args.augment, data_args.augment_p, seed, cache_dir
        )
        columns = {text_column: new, **({pair_column: new_pairs} if pair_column else {})}
        parts.append(_as_text(Dataset.from_dict(columns)))  # an empty list has no type until cast
        counts["augmented_rows"] = len(new)
    if not parts:
        return None, counts
    return concatenate_datasets(parts), counts
