"""Per task type, what the contract suite needs to exercise it: a tiny teacher built in code, and rows of its
data (in memory and as files). A new task type adds its entry here (`FIXTURES[name] = ...`) or, from outside the
package, where it registers itself (see toy_regression.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conftest import rule_sentences, tiny_bert, train_teacher


@dataclass
class TaskFixture:
    make_teacher: Callable[[Any], Any]  # tokenizer -> a tiny teacher with the task's trained head
    rows: Callable[[int, int], dict[str, list]]  # (n, seed) -> columns of raw data
    label_column: str = "label"
    text_column: str = "sentence"

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


FIXTURES: dict[str, TaskFixture] = {
    "sequence-classification": TaskFixture(_classification_teacher, _classification_rows),
}


def regression_teacher(tokenizer: Any) -> Any:
    return tiny_bert(num_labels=1, problem_type="regression", id2label={0: "score"}, label2id={"score": 0})
