"""Per task type, what the contract suite needs to exercise it: a tiny teacher built in code, and rows of its
data (in memory and as files). A new task type adds its entry here (`FIXTURES[name] = ...`) or, from outside the
package, where it registers itself (see toy_regression.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..conftest import KEYWORDS, VOCAB, WORDS, rule_sentences, tiny_bert, train_teacher


@dataclass
class TaskFixture:
    make_teacher: Callable[[Any], Any]  # tokenizer -> a tiny teacher with the task's trained head
    rows: Callable[[int, int], dict[str, list]]  # (n, seed) -> columns of raw data
    label_column: str = "label"
    text_column: str = "sentence"
    make_tokenizer: Callable[[], Any] | None = None  # a tokenizer of the task's own (default: the tests' BERT one)

    def write(self, path: Path, n: int, seed: int) -> Path:
        """The rows as json lines (a format every task type's files reader takes)."""
        columns = self.rows(n, seed)
        names = list(columns)
        lines = [json.dumps({k: columns[k][i] for k in names}) for i in range(len(columns[names[0]]))]
        path.write_text("\n".join(lines) + "\n")
        return path


def _classification_rows(n: int, seed: int) -> dict[str, list]:
    texts, labels = rule_sentences(n, seed)
    return {"sentence": texts, "label": ["positive" if y else "negative" for y in labels]}


def _classification_teacher(tokenizer: Any) -> Any:
    teacher = train_teacher(tokenizer, steps=60)
    teacher.config.id2label, teacher.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    return teacher


TAGS = ("O", "B-KEY", "I-KEY")


def _tagging_rows(n: int, seed: int) -> dict[str, list]:
    """Sentences of the keyword rule, each keyword a one-word entity KEY, a keyword right after one continuing it."""
    texts, _ = rule_sentences(n, seed)
    tokens, tags = [], []
    for text in texts:
        words, row = text.split(), []
        for i, word in enumerate(words):
            key = word in KEYWORDS
            row.append(("I-KEY" if i and row[-1] != "O" else "B-KEY") if key else "O")
        tokens.append(words)
        tags.append(row)
    return {"tokens": tokens, "tags": tags}


def _tagging_teacher(tokenizer: Any) -> Any:
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(TAGS),
                        id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})  # fmt: skip
    return BertForTokenClassification(config).eval()


def _qa_rows(n: int, seed: int) -> dict[str, list]:
    """SQuAD-layout rows: a context of 4-10 plain words with one keyword put in; the question is the keyword, the
    answer the keyword's place in the context (learnable by attention)."""
    import random

    rng = random.Random(seed)
    columns: dict[str, list] = {"id": [], "question": [], "context": [], "answers": []}
    for i in range(n):
        words = [rng.choice(WORDS[len(KEYWORDS) :]) for _ in range(rng.randint(4, 10))]
        key, at = rng.choice(KEYWORDS), rng.randrange(len(words) + 1)
        words.insert(at, key)
        start = len(" ".join(words[:at])) + (1 if at else 0)
        columns["id"].append(f"q{seed}-{i}")
        columns["question"].append(key)
        columns["context"].append(" ".join(words))
        columns["answers"].append({"text": [key], "answer_start": [start]})
    return columns


def _qa_teacher(tokenizer: Any) -> Any:
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)  # fmt: skip
    return BertForQuestionAnswering(config).eval()


def _lm_rows(n: int, seed: int) -> dict[str, list]:
    from ..lm_fixtures import counting_text

    return {"text": counting_text(n, seed)}


def _lm_teacher(tokenizer: Any) -> Any:
    from ..lm_fixtures import counting_text, tiny_llama, train_lm

    return train_lm(tiny_llama(), tokenizer, counting_text(200, 0), steps=60)


def _lm_tokenizer() -> Any:
    from ..lm_fixtures import lm_tokenizer

    return lm_tokenizer()


FIXTURES: dict[str, TaskFixture] = {
    "sequence-classification": TaskFixture(_classification_teacher, _classification_rows),
    "token-classification": TaskFixture(_tagging_teacher, _tagging_rows, label_column="tags", text_column="tokens"),
    "question-answering": TaskFixture(_qa_teacher, _qa_rows, label_column="answers", text_column="question"),
    "causal-lm": TaskFixture(
        _lm_teacher, _lm_rows, label_column="text", text_column="text", make_tokenizer=_lm_tokenizer
    ),
}


def regression_teacher(tokenizer: Any) -> Any:
    return tiny_bert(num_labels=1, problem_type="regression", id2label={0: "score"}, label2id={"score": 0})
