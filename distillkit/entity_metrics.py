"""Entity-level precision, recall and F1 with conlleval's semantics (Tjong Kim Sang and De Meulder 2003).

An entity is a maximal run of tags of one type: it starts at `B-X`, or at an `I-X` that follows `O` or another type,
and it continues over the `I-X` that follow. A predicted entity is correct when its type, first and last token are
those of a gold entity. Precision = correct / predicted, recall = correct / gold, F1 their harmonic mean (0 when
either is 0), micro-averaged over every entity of every type; the same per type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, first token, last token) of every entity in one tag sequence (IOB1 or IOB2)."""
    found, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and name != kind)
        if kind is not None and (tag == "O" or begins):
            found.add((kind, start, i - 1))
            kind = None
        if prefix in ("B", "I") and (begins or kind is None):
            start, kind = i, name
    return found


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """{precision, recall, f1} over all entities, plus `<type>_precision`, `<type>_recall`, `<type>_f1` and
    `<type>_support` (gold entities) per type. `gold` and `predicted` are tag sequences of equal lengths."""
    correct, n_pred, n_gold = Counter(), Counter(), Counter()
    for g_tags, p_tags in zip(gold, predicted, strict=True):
        if len(g_tags) != len(p_tags):
            raise ValueError(f"a sentence has {len(g_tags)} gold tags but {len(p_tags)} predicted ones.")
        g, p = entities(g_tags), entities(p_tags)
        for kind, *_ in g:
            n_gold[kind] += 1
        for kind, *_ in p:
            n_pred[kind] += 1
        for kind, *_ in g & p:
            correct[kind] += 1
    scores = _prf(sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    for kind in sorted(set(n_gold) | set(n_pred)):
        for key, value in _prf(correct[kind], n_pred[kind], n_gold[kind]).items():
            scores[f"{kind}_{key}"] = value
        scores[f"{kind}_support"] = float(n_gold[kind])
    return scores
