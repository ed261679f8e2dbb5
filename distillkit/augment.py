"""Teacher-scored augmented text (TinyBERT's data augmentation, Jiao et al. 2020): word replacement.

For every training text, `n` new texts are made by replacing each replaceable word, with probability `p`, by one of
its `k` best candidates:

- by default the nearest neighbours of the word's row in the **teacher's own input-embedding matrix** (cosine
  similarity among whole-word vocabulary entries): no other model and no download;
- with an `--augment_mlm` masked language model, the model's `k` most likely whole words for the word masked in its
  context (TinyBERT's choice for single-piece words).

A word is replaceable when it is a single whole-word entry of the vocabulary (lower-cased for an uncased one), so no
sub-word pieces are glued into nonsense. Within one new example a replaced word is replaced by the same substitute
everywhere, in both texts of a pair. Generation is deterministic for a seed (each example draws from its own
generator), never emits the original or a duplicate, and is cached: a jsonl file whose name is a digest of the
texts, the settings and the candidate source.

The new rows have no gold label: the teacher labels them (like unlabeled text they feed the distillation terms only).

Tagged sentences (token classification) are augmented by `augment_tagged`: only words tagged `O` are replaced, one
word for one word, so every entity and every tag stays where it was and the new sentences keep their gold tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Sequence
from typing import Any

import torch

from .resilience import atomic_write_text

logger = logging.getLogger(__name__)

_WORD = re.compile(r"^[^\W_]*[^\W\d_][^\W_]*$")  # letters and digits, at least one letter
_SPLIT = re.compile(r"(\s+)")


def check_augment(n: int, p: float) -> None:
    if n < 0:
        raise ValueError(f"augment must be >= 0 new texts per training text (got {n}); 0 turns augmentation off.")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"augment_p must be in (0, 1] (got {p}): the chance that a word is replaced.")


def whole_words(tokenizer: Any) -> dict[str, int]:
    """Vocabulary entries that are whole words of letters: no special tokens and no word pieces (WordPiece `##x`,
    or, for SentencePiece / byte-level BPE vocabularies, entries without the word-start mark)."""
    specials = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    marker = next((m for m in ("▁", "Ġ") if sum(t.startswith(m) for t in vocab) > len(vocab) // 10), None)
    words: dict[str, int] = {}
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        if token in specials:
            continue
        if marker is not None:
            if not token.startswith(marker):
                continue
            token = token[len(marker) :]
        elif token.startswith("##"):
            continue
        if len(token) >= 2 and _WORD.match(token):
            words.setdefault(token, index)
    return words


class EmbeddingNeighbours:
    """Candidates from the nearest neighbours of a word's input embedding (cosine), among whole words."""

    def __init__(self, tokenizer: Any, embeddings: torch.Tensor, k: int = 15):
        self.k = k
        self.lowercase = _lowercases(tokenizer)
        self.words = whole_words(tokenizer)
        names = list(self.words)
        self._names = names
        matrix = embeddings.detach().float()[torch.tensor([self.words[w] for w in names])]
        self._unit = torch.nn.functional.normalize(matrix, dim=-1)
        self._row = {w: i for i, w in enumerate(names)}
        self._cache: dict[str, list[str]] = {}
        self.identity = hashlib.sha256(embeddings.detach().float().numpy().tobytes()).hexdigest()[:16]

    def key(self, word: str) -> str | None:
        key = word.lower() if self.lowercase else word
        return key if key in self._row else None

    def prepare(self, words: set[str]) -> None:
        """Compute the neighbours of these words in chunks (one matrix product per 512 words)."""
        todo = sorted(w for w in words if w not in self._cache)
        for i in range(0, len(todo), 512):
            chunk = todo[i : i + 512]
            sims = self._unit[torch.tensor([self._row[w] for w in chunk])] @ self._unit.T
            sims[torch.arange(len(chunk)), torch.tensor([self._row[w] for w in chunk])] = -2.0  # not itself
            best = sims.topk(min(self.k, sims.shape[1] - 1), dim=-1).indices
            for word, row in zip(chunk, best.tolist()):
                self._cache[word] = [self._names[j] for j in row]

    def candidates(self, word: str, context: Sequence[str] = (), position: int = 0) -> list[str]:
        return self._cache.get(word, [])


class MaskedLMCandidates:
    """Candidates from a masked language model: the `k` most likely whole words for the word masked in context."""

    def __init__(self, name_or_path: str, k: int = 15, trust_remote_code: bool = False):
        from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        if not any(a.endswith("ForMaskedLM") for a in (config.architectures or [])):
            raise ValueError(
                f"--augment_mlm {name_or_path!r} is not a masked language model (architectures "
                f"{config.architectures}); give one such as bert-base-uncased, or leave it unset to take candidates "
                "from the teacher's embeddings."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForMaskedLM.from_pretrained(name_or_path, trust_remote_code=trust_remote_code).eval()
        self.k = k
        self.lowercase = _lowercases(self.tokenizer)
        self.words = whole_words(self.tokenizer)
        self._ids = torch.tensor(sorted(self.words.values()))
        self._names = {i: w for w, i in self.words.items()}
        self.identity = f"mlm:{name_or_path}"

    def key(self, word: str) -> str | None:
        key = word.lower() if self.lowercase else word
        return key if key in self.words else None

    def prepare(self, words: set[str]) -> None:
        return None  # candidates depend on the context: computed per word

    @torch.no_grad()
    def candidates(self, word: str, context: Sequence[str] = (), position: int = 0) -> list[str]:
        tokens = list(context)
        tokens[position] = self.tokenizer.mask_token
        encoded = self.tokenizer("".join(tokens), return_tensors="pt", truncation=True, max_length=128)
        where = (encoded["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()
        if not len(where):
            return []
        logits = self.model(**encoded).logits[0, where[0, 0], self._ids]
        best = logits.topk(min(self.k + 1, len(self._ids))).indices.tolist()
        found = [self._names[int(self._ids[i])] for i in best]
        return [w for w in found if w != word][: self.k]


def _lowercases(tokenizer: Any) -> bool:
    return bool(
        getattr(tokenizer, "do_lower_case", False) or getattr(tokenizer, "init_kwargs", {}).get("do_lower_case")
    )


def augment_texts(
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    source: Any,
    n: int,
    p: float = 0.4,
    seed: int = 0,
    max_tries: int = 5,
) -> tuple[list[str], list[str] | None, list[int]]:
    """Up to `n` new versions of every (text, pair); returns (texts, pairs or None, index of each one's original).

    Example i draws from its own generator seeded by (seed, i): the result does not depend on batching or order.
    """
    check_augment(n, p)
    keys = set()
    for text in [*texts, *(pairs or [])]:
        keys.update(k for w in text.split() if (k := source.key(w)) is not None)
    source.prepare(keys)
    out_texts, out_pairs, origin = [], [] if pairs is not None else None, []
    for i, text in enumerate(texts):
        rng = random.Random(f"{seed}:{i}")
        parts = [_SPLIT.split(text), _SPLIT.split(pairs[i])] if pairs is not None else [_SPLIT.split(text)]
        original = tuple("".join(p_) for p_ in parts)
        seen, made = {original}, 0
        for _ in range(n * max_tries):
            if made >= n:
                break
            new = _replace(parts, source, p, rng)
            if new not in seen:
                seen.add(new)
                made += 1
                out_texts.append(new[0])
                if out_pairs is not None:
                    out_pairs.append(new[1])
                origin.append(i)
    return out_texts, out_pairs, origin


def _replace(parts: list[list[str]], source: Any, p: float, rng: random.Random) -> tuple[str, ...]:
    """One new version: each replaceable word replaced with probability p, the same substitute everywhere."""
    chosen: dict[str, str | None] = {}
    result = []
    for tokens in parts:
        new = list(tokens)
        for j, token in enumerate(tokens):
            key = source.key(token)
            if key is None:
                continue
            if key not in chosen:
                options = source.candidates(key, tokens, j) if rng.random() < p else []
                chosen[key] = rng.choice(options) if options else None
            if chosen[key] is not None:
                new[j] = _match_case(token, chosen[key])
        result.append("".join(new))
    return tuple(result)


def _match_case(original: str, word: str) -> str:
    if original.isupper() and len(original) > 1:
        return word.upper()
    if original[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _json_cached(cache_dir: str, prefix: str, key: Any, compute: Any, what: str) -> dict[str, Any]:
    """`compute()` (a dict of JSON values), kept in `<cache_dir>/<prefix>-<digest of key>.json` and read from there
    when the same key comes again; `what` names the rows in the log."""
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"{prefix}-{digest}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        logger.info("augmentation: %d %s read from %s", len(saved["origin"]), what, path)
        return saved
    started = time.perf_counter()
    result = compute()
    seconds = time.perf_counter() - started
    count = len(result["origin"])
    logger.info("augmentation: %d new %s in %.1f s (%.0f a second), cached in %s", count, what, seconds,
                count / max(seconds, 1e-9), path)  # fmt: skip
    os.makedirs(cache_dir, exist_ok=True)
    atomic_write_text(path, json.dumps(result))
    return result


def augment_cached(
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    source: Any,
    n: int,
    p: float,
    seed: int,
    cache_dir: str,
) -> tuple[list[str], list[str] | None, list[int]]:
    """`augment_texts`, read from `cache_dir` when the same texts were augmented the same way before."""
    key = [list(texts), list(pairs) if pairs is not None else None, n, p, seed, source.k, source.identity]

    def compute() -> dict[str, Any]:
        new_texts, new_pairs, origin = augment_texts(texts, pairs, source, n, p, seed)
        return {"texts": new_texts, "pairs": new_pairs, "origin": origin}

    saved = _json_cached(cache_dir, "augment", key, compute, "texts")
    return saved["texts"], saved["pairs"], saved["origin"]


def augment_tagged(
    tokens: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]],
    source: Any,
    n: int,
    p: float = 0.4,
    seed: int = 0,
    max_tries: int = 5,
) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """Up to `n` new versions of every tagged sentence, replacing only words tagged `O` (each with probability `p`,
    the same substitute for the same word within a sentence); returns (words, tags, index of each one's original).
    The tags are the original's: no entity word changes, and one word becomes one word."""
    check_augment(n, p)
    source.prepare({k for sentence, labels in zip(tokens, tags) for w, t in zip(sentence, labels)
                    if t == "O" and (k := source.key(w)) is not None})  # fmt: skip
    out_tokens, out_tags, origin = [], [], []
    for i, (sentence, labels) in enumerate(zip(tokens, tags)):
        rng = random.Random(f"{seed}:{i}")
        seen, made = {tuple(sentence)}, 0
        for _ in range(n * max_tries):
            if made >= n:
                break
            chosen: dict[str, str | None] = {}
            new = list(sentence)
            for j, (word, tag) in enumerate(zip(sentence, labels)):
                key = source.key(word) if tag == "O" else None
                if key is None:
                    continue
                if key not in chosen:
                    options = source.candidates(key, sentence, j) if rng.random() < p else []
                    chosen[key] = rng.choice(options) if options else None
                if chosen[key] is not None:
                    new[j] = _match_case(word, chosen[key])
            if tuple(new) not in seen:
                seen.add(tuple(new))
                made += 1
                out_tokens.append(new)
                out_tags.append(list(labels))
                origin.append(i)
    return out_tokens, out_tags, origin


def augment_tagged_cached(
    tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], source: Any, n: int, p: float, seed: int,
    cache_dir: str,
) -> tuple[list[list[str]], list[list[str]], list[int]]:  # fmt: skip
    """`augment_tagged`, read from `cache_dir` when the same sentences were augmented the same way before."""
    key = [[list(t) for t in tokens], [list(t) for t in tags], n, p, seed, source.k, source.identity, "tagged"]

    def compute() -> dict[str, Any]:
        new_tokens, new_tags, origin = augment_tagged(tokens, tags, source, n, p, seed)
        return {"tokens": new_tokens, "tags": new_tags, "origin": origin}

    saved = _json_cached(cache_dir, "augment-tagged", key, compute, "tagged sentences (only O words replaced)")
    return saved["tokens"], saved["tags"], saved["origin"]
