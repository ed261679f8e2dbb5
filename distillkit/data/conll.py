"""Token-level data: CoNLL column files (`.conll`, `.txt`, CoNLL-2003's `eng.train`) and json lines with `tokens` and
`tags` lists, read exactly, with IOB1 tags converted to IOB2.

A CoNLL file holds one token a line, its columns separated by spaces or tabs (the tag in `tag_column`, default the
last), blank lines between sentences and `-DOCSTART-` lines between documents (dropped). Every token line must have
as many columns as the file's first one, and every tag must be `O` or `B-`/`I-` and a type; a violation is an error
naming the file and the line.

IOB1 (CoNLL-2003) starts an entity with `I-` and uses `B-` only where two entities of one type touch; IOB2 (WNUT-17,
the hub's conll2003) starts every entity with `B-`. The scheme is read off the tags (an `I-X` that follows neither
`B-X` nor `I-X` exists only in IOB1) and logged; training and scoring use IOB2.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from datasets import Dataset, DatasetDict

from .jsonl import json_lines

logger = logging.getLogger(__name__)

TAG = re.compile(r"^(?:O|[BI]-\S+)$")
DOCSTART = "-DOCSTART-"


def _check_tag(tag: str, where: str) -> None:
    if not TAG.match(tag):
        raise ValueError(f"{where}: tag {tag!r} is neither O nor B-/I- followed by a type; fix the line, or choose the "
                         "tag column with --tag_column.")  # fmt: skip


def read_conll(path: str, tag_column: int = -1) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences as token lists, their tags as given) of a CoNLL column file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"token file {path!r} does not exist; check the path.")
    sentences, tags, tokens, labels = [], [], [], []
    columns = None
    with open(path, encoding="utf-8-sig") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            fields = line.split()
            if not fields or fields[0] == DOCSTART:
                if tokens:
                    sentences.append(tokens)
                    tags.append(labels)
                tokens, labels = [], []
                continue
            where = f"{path}, line {number}"
            if columns is None:
                columns = len(fields)
                if not -columns <= tag_column < columns:
                    raise ValueError(f"--tag_column {tag_column} is out of range: {path} has {columns} columns "
                                     f"(0..{columns - 1}, or -1 for the last).")  # fmt: skip
            if len(fields) != columns:
                raise ValueError(f"{where} has {len(fields)} columns, the file's other lines {columns}: {line!r}.")
            _check_tag(fields[tag_column], where)
            tokens.append(fields[0])
            labels.append(fields[tag_column])
    if tokens:
        sentences.append(tokens)
        tags.append(labels)
    if not sentences:
        raise ValueError(f"token file {path!r} holds no sentences (one token a line, blank lines between sentences).")
    return sentences, tags


def read_token_jsonl(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """Json lines with `tokens` and `tags` (or `ner_tags`, as `datasets` names them) lists of equal length, the tags
    as names."""
    sentences, tags = [], []
    for where, row in json_lines(path):
        words, labels = row.get("tokens"), row.get("tags", row.get("ner_tags"))
        if not isinstance(words, list) or not isinstance(labels, list) or len(words) != len(labels):
            raise ValueError(f"{where} needs `tokens` and `tags` (or `ner_tags`) lists of the same length.")
        if any(isinstance(t, int) for t in labels):
            raise ValueError(
                f"{where}: the tags are numbers ({labels[:3]}...); distillkit reads tag names (B-PER, I-PER, O). "
                "Write the names (a `datasets` split: map each id through features['ner_tags'].feature.names), "
                "or give the hub data set itself (--task conll2003 / wnut_17)."
            )
        for tag in labels:
            _check_tag(str(tag), where)
        if words:
            sentences.append([str(w) for w in words])
            tags.append([str(t) for t in labels])
    if not sentences:
        raise ValueError(f"token file {path!r} holds no sentences.")
    return sentences, tags


def detect_scheme(tags: list[list[str]]) -> str:
    """ "IOB1" when some entity starts with I- (an I-X after neither B-X nor I-X), else "IOB2"."""
    for sentence in tags:
        previous = "O"
        for tag in sentence:
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                return "IOB1"
            previous = tag
    return "IOB2"


def to_iob2(tags: list[list[str]]) -> list[list[str]]:
    """IOB1 -> IOB2: an I-X that starts an entity becomes B-X; IOB2 tags are returned unchanged."""
    out = []
    for sentence in tags:
        converted, previous = [], "O"
        for tag in sentence:
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
            converted.append(tag)
            previous = tag
        out.append(converted)
    return out


def read_tokens(path: str, tag_column: int = -1) -> Dataset:
    """A token file as a `Dataset` with `tokens` and `tags` (IOB2) columns; the scheme found is logged."""
    ext = os.path.splitext(path)[1].lower()
    sentences, tags = read_token_jsonl(path) if ext in (".json", ".jsonl") else read_conll(path, tag_column)
    scheme = detect_scheme(tags)
    logger.info("%s: %d sentences, %s tags%s", path, len(sentences), scheme,
                " (converted to IOB2)" if scheme == "IOB1" else "")  # fmt: skip
    return Dataset.from_dict({"tokens": sentences, "tags": to_iob2(tags)})


def load_token_files(train_file: str | None, validation_file: str | None, tag_column: int = -1) -> DatasetDict:
    splits = {}
    for split, path in (("train", train_file), ("validation", validation_file)):
        if path:
            splits[split] = read_tokens(path, tag_column)
    return DatasetDict(splits)


def tag_names(tags: Any) -> tuple[str, ...]:
    """The label set of tag sequences: `O` first, then the others sorted."""
    found = {t for sentence in tags for t in sentence}
    return ("O", *sorted(found - {"O"}))


def load_hub_tagged(name: str, loader: Any = None) -> DatasetDict:
    """A hub token-classification data set (`conll2003`, `wnut_17`, or any with `tokens` and integer `ner_tags`
    named by a `ClassLabel`) as `tokens` / `tags` string columns in IOB2, train and validation splits."""
    if loader is None:
        from datasets import load_dataset as loader
    loaded = loader(name)
    out = {}
    for split in ("train", "validation"):
        if split not in loaded:
            continue
        rows = loaded[split]
        if "tokens" not in rows.column_names or "ner_tags" not in rows.column_names:
            raise ValueError(f"hub data set {name!r} has no `tokens` and `ner_tags` columns ({rows.column_names}); "
                             "give --train_file and --validation_file instead.")  # fmt: skip
        names = rows.features["ner_tags"].feature.names
        tags = to_iob2([[names[i] for i in sentence] for sentence in rows["ner_tags"]])
        for sentence in tags:
            for tag in sentence:
                _check_tag(tag, f"hub data set {name!r} ({split})")
        out[split] = Dataset.from_dict({"tokens": rows["tokens"], "tags": tags})
        logger.info("%s (%s, hub): %d sentences, %s tags read as IOB2", name, split, len(rows), detect_scheme(tags))
    return DatasetDict(out)
