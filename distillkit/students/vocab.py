"""Vocabulary trimming: the student keeps only the tokens its task's text uses.

A 30,000-token vocabulary is most of a small student: 9.5M of a 14.4M 4 x 312 student, 3.9M of the 4.4M `tiny`.
SST-2's 67,349 training sentences use 11,572 of all-mpnet-base-v2's 30,527 tokens. `trim_vocabulary` keeps those
(or those seen at least `min_count` times), every single character (with and without the word-piece prefix, so
that any new word still tokenizes, as pieces instead of `[UNK]`) and every special token, and gives the student
the matching tokenizer: a new `tokenizer.json` whose ids are the kept tokens in their old order.

On the text it was counted on, the trimmed tokenizer gives the same tokens as the original one, with new ids:
WordPiece picks the longest known piece, Unigram the most likely segmentation, and both choices survive when the
chosen pieces are kept. `trim_vocabulary` checks this on the text before it returns. Byte-level BPE (GPT-2,
RoBERTa) is not offered: its merges would have to be trimmed with it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

logger = logging.getLogger(__name__)

SUPPORTED = ("WordPiece", "Unigram")
CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


@dataclass
class TrimmedVocabulary:
    """The result of `trim_vocabulary`: the student's tokenizer and the old ids it keeps, in order (new id = index)."""

    tokenizer: Any
    kept_ids: list[int]
    old_size: int
    min_count: int
    texts: int

    def report(self) -> dict[str, Any]:
        return {"vocab_size": len(self.kept_ids), "original_vocab_size": self.old_size,
                "min_count": self.min_count, "counted_texts": self.texts}  # fmt: skip


def _backend(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"vocabulary trimming needs a fast (tokenizers) tokenizer, and {type(tokenizer).__name__} is not one; "
            "leave out --trim_vocab, or use a model whose tokenizer.json is available."
        )
    return backend


def count_tokens(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None,
                 batch_size: int = 4096) -> Counter:  # fmt: skip
    """How often each token id occurs in the texts (and their pairs), special tokens included."""
    counts: Counter = Counter()
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        pair = list(pairs[start : start + batch_size]) if pairs is not None else None
        for ids in tokenizer(chunk, pair)["input_ids"]:
            counts.update(ids)
    return counts


def _single_characters(model: dict[str, Any]) -> set[str]:
    """The model's one-character pieces, alone or with the continuation / word-start marker."""
    if model["type"] == "WordPiece":
        prefix = model.get("continuing_subword_prefix", "##")
        return {t for t in model["vocab"] if len(t) == 1 or (t.startswith(prefix) and len(t) == len(prefix) + 1)}
    return {p for p, _ in model["vocab"] if len(p) == 1 or (p.startswith("\u2581") and len(p) == 2)}


def _vocab_tokens(model: dict[str, Any]) -> dict[str, int]:
    if model["type"] == "WordPiece":
        return dict(model["vocab"])
    return {piece: i for i, (piece, _) in enumerate(model["vocab"])}


def _remap_processor(processor: dict[str, Any] | None, new_id: dict[int, int]) -> None:
    """Special-token ids inside a post-processor, in place."""
    if not processor:
        return
    kind = processor.get("type")
    if kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key][1] = new_id[processor[key][1]]
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_processor(inner, new_id)


def _trimmed_json(spec: dict[str, Any], kept: list[int], new_id: dict[int, int]) -> dict[str, Any]:
    model = spec["model"]
    if model["type"] == "WordPiece":
        by_id = {i: t for t, i in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(kept) if old in by_id}
    else:
        size = len(model["vocab"])
        model["vocab"] = [model["vocab"][old] for old in kept if old < size]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    for token in spec.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    _remap_processor(spec.get("post_processor"), new_id)
    return spec


def _rebuild(tokenizer: Any, spec: dict[str, Any], new_id: dict[int, int]) -> Any:
    """The transformers tokenizer of the trimmed tokenizer.json, with the original's settings and special tokens."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        config_path = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            decoder = config.get("added_tokens_decoder")
            if decoder:
                config["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items()}
            with open(config_path, "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False, indent=2)
        for stale in ("vocab.txt", "spiece.model", "sentencepiece.bpe.model"):  # the old vocabulary's own files
            if os.path.isfile(os.path.join(directory, stale)):
                os.remove(os.path.join(directory, stale))
        new = AutoTokenizer.from_pretrained(directory)
    # not the temporary folder: `datasets` hashes the tokenizer into the fingerprint that names the teacher cache
    name = f"{tokenizer.name_or_path} (vocabulary trimmed to {len(new)} tokens)"
    new.name_or_path = new.init_kwargs["name_or_path"] = name
    return new


def trim_vocabulary(
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    min_count: int = 1,
    check_texts: int = 2000,
) -> TrimmedVocabulary:
    """The tokenizer cut down to the tokens of `texts` (seen `min_count` times or more), every one-character piece
    and every special token, with its ids renumbered in the old order. Every id up to the padding id is kept, so
    that padding keeps its id (MPNet and RoBERTa derive positions from it).

    Raises ValueError for a tokenizer it cannot trim, or when the trimmed tokenizer does not reproduce the original
    tokens on the first `check_texts` texts whose tokens were all kept.
    """
    if min_count < 1:
        raise ValueError(f"--trim_vocab_min_count must be at least 1, got {min_count}.")
    if not texts:
        raise ValueError("vocabulary trimming needs the training text, and there is none.")
    spec = json.loads(_backend(tokenizer).to_str())
    model = spec["model"]
    if model.get("type") not in SUPPORTED:
        raise ValueError(
            f"vocabulary trimming is offered for {' and '.join(SUPPORTED)} tokenizers (BERT, MPNet, ALBERT, "
            f"XLM-R, T5), and this teacher's is {model.get('type')}: byte-level BPE merges would need trimming "
            "too. Leave out --trim_vocab, or shrink the embeddings with --embedding_size instead."
        )
    vocab = _vocab_tokens(model)
    old_size = max(len(tokenizer), max(vocab.values()) + 1)
    counts = count_tokens(tokenizer, texts, pairs)
    keep = {i for i, c in counts.items() if c >= min_count}
    keep |= {vocab[t] for t in _single_characters(model)}
    keep |= {t["id"] for t in spec.get("added_tokens", [])}
    keep |= {i for i in tokenizer.all_special_ids if i is not None}
    if tokenizer.pad_token_id is not None:
        keep |= set(range(tokenizer.pad_token_id + 1))
    kept = sorted(i for i in keep if 0 <= i < old_size)
    new_id = {old: new for new, old in enumerate(kept)}
    in_vocab = set(vocab.values())
    outside = [i for i in kept if i not in in_vocab]  # added tokens beyond the model's vocabulary
    if outside and min(outside) < max(in_vocab):
        raise ValueError("the tokenizer has added tokens inside its vocabulary's id range: it cannot be trimmed.")
    new = _rebuild(tokenizer, _trimmed_json(spec, kept, new_id), new_id)
    _check_same_tokens(tokenizer, new, new_id, texts, pairs, check_texts)
    logger.info(
        "vocabulary trimmed to %d of %d tokens (the %s training texts' tokens%s, single characters, special tokens)",
        len(kept), old_size, f"{len(texts):,}", f" seen {min_count}+ times" if min_count > 1 else "",
    )  # fmt: skip
    return TrimmedVocabulary(new, kept, old_size, min_count, len(texts))


def _check_same_tokens(old: Any, new: Any, new_id: dict[int, int], texts: Sequence[str],
                       pairs: Sequence[str] | None, limit: int) -> None:  # fmt: skip
    """The trimmed tokenizer gives the original's tokens (renumbered) on texts whose tokens were all kept."""
    sample = list(texts[: limit * 2])
    sample_pairs = list(pairs[: limit * 2]) if pairs is not None else None
    before = old(sample, sample_pairs)["input_ids"]
    after = new(sample, sample_pairs)["input_ids"]
    checked = 0
    for i, (b, a) in enumerate(zip(before, after)):
        if not all(t in new_id for t in b):
            continue
        if [new_id[t] for t in b] != a:
            raise ValueError(
                f"the trimmed tokenizer does not reproduce the original's tokens on training text {i} "
                f"({sample[i][:80]!r}): this tokenizer cannot be trimmed safely; leave out --trim_vocab."
            )
        checked += 1
        if checked >= limit:
            break


def trim_embeddings(model: PreTrainedModel, kept_ids: Iterable[int]) -> PreTrainedModel:
    """Keep the input-embedding rows of `kept_ids` (new id = position in the list), in place; the config's vocabulary
    size and special-token ids follow. For sequence classifiers and other models without tied output embeddings."""
    kept = list(kept_ids)
    if model.get_output_embeddings() is not None:
        raise ValueError(
            f"{type(model).__name__} has output embeddings over the vocabulary (a language-model head): trimming "
            "is offered for classifiers. Leave out --trim_vocab."
        )
    old = model.get_input_embeddings()
    if max(kept) >= old.num_embeddings:
        raise ValueError(
            f"the trimmed vocabulary keeps token id {max(kept)}, but the student's embeddings have "
            f"{old.num_embeddings} rows: the student does not use the teacher's vocabulary."
        )
    new_id = {o: n for n, o in enumerate(kept)}
    pad = old.padding_idx if old.padding_idx is None else new_id.get(old.padding_idx)
    if old.padding_idx is not None and pad != old.padding_idx:
        raise ValueError(f"the padding id {old.padding_idx} would move to {pad}; keep every id up to it.")
    new = nn.Embedding(len(kept), old.embedding_dim, padding_idx=pad)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.tensor(kept)])
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    config = model.config
    config.vocab_size = len(kept)
    for name in CONFIG_TOKEN_IDS:
        value = getattr(config, name, None)
        if isinstance(value, int):
            if value not in new_id:
                raise ValueError(f"the student's {name}={value} is not in the trimmed vocabulary.")
            setattr(config, name, new_id[value])
    notes = list(getattr(model, "distillkit_init_notes", []))
    model.distillkit_init_notes = [*notes, f"vocabulary trimmed to {len(kept):,} tokens (embedding rows kept)"]
    return model


def with_teacher_ids(data: Any, kept_ids: Sequence[int]) -> Any:
    """Rows in the trimmed vocabulary's ids, with the teacher's ids of the same tokens beside them
    (`teacher_input_ids`, `teacher_attention_mask`, `teacher_token_type_ids`): new id i is old id `kept_ids[i]`.

    For task types that encode their own rows (a tagger's words, whose labels sit on sub-word positions), the
    teacher reads exactly the student's tokens, so that its logits fall on the same positions. On the text the
    vocabulary was counted on that is the teacher's own tokenization (checked by `trim_vocabulary`); on other text
    a word the trimmed vocabulary lacks reaches the teacher as the same smaller pieces the student reads."""
    kept = list(kept_ids)

    def add(batch: dict[str, list]) -> dict[str, list]:
        out = {"teacher_input_ids": [[kept[i] for i in ids] for ids in batch["input_ids"]],
               "teacher_attention_mask": batch["attention_mask"]}  # fmt: skip
        if "token_type_ids" in batch:
            out["teacher_token_type_ids"] = batch["token_type_ids"]
        return out

    return data.map(add, batched=True, desc="teacher ids")
