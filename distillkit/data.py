"""Data: local csv / tsv / json files -> tokenized `datasets` ready for `DistillTrainer`."""

from __future__ import annotations

import os
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

# extension -> (datasets builder, delimiter)
_FORMATS = {".csv": ("csv", ","), ".tsv": ("csv", "\t"), ".json": ("json", None), ".jsonl": ("json", None)}


def load_files(train_file: str | None = None, validation_file: str | None = None) -> DatasetDict:
    """Read local data files (csv, tsv or json lines) with the `datasets` builders; missing files fail here."""
    files = {split: path for split, path in (("train", train_file), ("validation", validation_file)) if path}
    if not files:
        raise ValueError("no data given: pass --train_file (and optionally --validation_file), csv, tsv or json.")
    builders = set()
    for split, path in files.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{split} file {path!r} does not exist; check the path given to --{split}_file.")
        ext = os.path.splitext(path)[1].lower()
        if ext not in _FORMATS:
            raise ValueError(f"{split} file {path!r} has extension {ext!r}; use one of {sorted(_FORMATS)}.")
        builders.add(_FORMATS[ext])
    if len(builders) > 1:
        raise ValueError(f"train and validation files must share a format (got {sorted(files.values())}).")
    builder, delimiter = builders.pop()
    kwargs = {"delimiter": delimiter} if delimiter else {}
    return load_dataset(builder, data_files=files, **kwargs)


def _label_to_id(label2id: dict[str, int] | None) -> Any:
    lookup = {str(k).lower(): int(v) for k, v in (label2id or {}).items()}

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return value
        key = str(value).strip().lower()
        if key in lookup:
            return lookup[key]
        if key.lstrip("-").isdigit():
            return int(key)
        raise ValueError(f"label {value!r} is neither a number nor one of the teacher's label names {sorted(lookup)}.")

    return convert


def tokenize_dataset(
    dataset: Dataset | DatasetDict,
    tokenizer: Any,
    text_column: str = "sentence",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
    max_seq_length: int = 128,
    label2id: dict[str, int] | None = None,
) -> Dataset | DatasetDict:
    """Tokenize the text column(s) (batched, truncated, unpadded: the collator pads each batch) and name the label
    column `labels`; every other column is dropped. A label column that is absent is an error, unless it is None.
    String labels are mapped through `label2id` (the teacher's label names)."""
    splits = list(dataset.values()) if isinstance(dataset, DatasetDict) else [dataset]
    for split in splits:
        wanted = [c for c in (text_column, text_pair_column, label_column) if c]
        missing = [c for c in wanted if c not in split.column_names]
        if missing:
            raise ValueError(
                f"column(s) {missing} not found in the data (columns: {split.column_names}); set --text_column, "
                "--text_pair_column or --label_column to the right names (or unset --label_column with alpha=1.0)."
            )
    convert = _label_to_id(label2id)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [str(t) for t in batch[text_column]]
        pairs = [str(t) for t in batch[text_pair_column]] if text_pair_column else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_seq_length)
        if label_column:
            encoded["labels"] = [convert(v) for v in batch[label_column]]
        return encoded

    def encode_split(split: Dataset) -> Dataset:
        return split.map(encode, batched=True, remove_columns=split.column_names, desc="tokenizing")

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: encode_split(split) for name, split in dataset.items()})
    return encode_split(dataset)
