"""Extractive question answering scores with the official SQuAD v1.1 definitions, written here (the hub's `squad`
metric is a script that does not load offline).

A prediction and a reference are compared after normalisation: lower case, punctuation removed (Python's
`string.punctuation`), the articles a / an / the removed as words, whitespace collapsed. **Exact match** is 1 when
the normalised strings are equal; **F1** is the harmonic mean of precision and recall over the normalised tokens
(a bag: each shared token counted as often as both have it). A question takes the best score over its reference
answers, and the totals are means over the questions, in percent.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    shared = sum((Counter(predicted) & Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over the questions of `references` ({id: [answer texts]}); a question with
    no prediction scores 0. A prediction for an id that has no references is an error (a mix-up of data sets)."""
    unknown = sorted(set(predictions) - set(references))
    if unknown:
        raise ValueError(f"{len(unknown)} predictions for questions that have no references (first: {unknown[0]!r}).")
    if not references:
        raise ValueError("no questions to score: the references are empty.")
    em = f1 = 0.0
    for qid, answers in references.items():
        if not answers:
            raise ValueError(f"question {qid!r} has no reference answer: SQuAD v1.1 scores answered questions only.")
        guess = predictions.get(qid, "")
        em += max(exact_match(guess, a) for a in answers)
        f1 += max(token_f1(guess, a) for a in answers)
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1 / len(references)}
