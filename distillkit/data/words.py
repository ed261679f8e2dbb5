"""Encoding pre-split words for token classification: each word is tokenized into sub-words
(`is_split_into_words`); the first sub-word of a word carries the word's tag and the others -100 (or the word's tag
too, with `label_all_subwords`); special tokens get -100. A sentence longer than `max_seq_length` is truncated, and
the words cut off are counted (`truncated_words`) so that scoring can count each as predicted `O`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

IGNORE = -100


def tag_encoder(label2id: dict[str, int]) -> Callable[[list[str]], list[int]]:
    """Tag names -> ids; a tag outside the label set is an error naming both."""
    lookup = {str(k): int(v) for k, v in label2id.items()}

    def encode(tags: list[str]) -> list[int]:
        missing = sorted({t for t in tags if t not in lookup})
        if missing:
            raise ValueError(
                f"tag(s) {missing} are outside the teacher's label set {sorted(lookup)}. Relabel the data, or use a "
                "teacher fine-tuned on these tags (a base encoder is fine-tuned first)."
            )
        return [lookup[t] for t in tags]

    return encode


def encode_words(
    dataset: Dataset | DatasetDict,
    tokenizer: Any,
    label2id: dict[str, int],
    max_seq_length: int = 128,
    label_all_subwords: bool = False,
    tokens_column: str = "tokens",
    tags_column: str | None = "tags",
) -> Dataset | DatasetDict:
    """`input_ids`, `attention_mask` (and `token_type_ids`), `labels` per sub-word, and `words` (how many words the
    sentence has) and `truncated_words` (how many of them were cut off)."""
    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: encode_words(split, tokenizer, label2id, max_seq_length,
                                               label_all_subwords and name == "train", tokens_column, tags_column)
                            for name, split in dataset.items()})  # fmt: skip
    encode_tags = tag_encoder(label2id)
    with_tags = tags_column is not None and tags_column in dataset.column_names

    def encode(batch: dict[str, list]) -> dict[str, list]:
        words = [[str(w) for w in sentence] for sentence in batch[tokens_column]]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_length)
        labels, cut = [], []
        for i, sentence in enumerate(words):
            word_ids = encoded.word_ids(i)
            kept = {w for w in word_ids if w is not None}
            cut.append(len(sentence) - len(kept))
            if not with_tags:
                continue
            ids = encode_tags(batch[tags_column][i])
            row, previous = [], None
            for w in word_ids:
                first = w is not None and w != previous
                row.append(ids[w] if w is not None and (first or label_all_subwords) else IGNORE)
                previous = w
            labels.append(row)
        if with_tags:
            encoded["labels"] = labels
        encoded["words"] = [len(s) for s in words]
        encoded["truncated_words"] = cut
        return encoded

    out = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing words")
    cut = sum(out["truncated_words"])
    if cut:
        rows = sum(1 for c in out["truncated_words"] if c)
        logger.warning("%d sentences are longer than %d tokens: %d words cut off (scored as predicted O)", rows,
                       max_seq_length, cut)  # fmt: skip
    return out
