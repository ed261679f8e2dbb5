"""A task type registered from outside distillkit, as a user's package would: sequence regression (one number per
text) scored by mean squared error and Pearson's r. It edits no distillkit module: a subclass of the public
`TaskType`, `register_task_type`, and its contract-suite fixture."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

import distillkit
from distillkit.tasks import TASK_TYPES

from ..conftest import KEYWORDS, rule_sentences
from .fixtures import FIXTURES, TaskFixture, regression_teacher

NAME = "toy-sequence-regression"


class ToySequenceRegression(distillkit.TaskType):
    architecture_suffix = "ForSequenceClassification"
    pipeline_tag = "text-classification"  # the hub's tag for sequence regression too
    features = frozenset({"presets", "teacher_layers", "teacher_cache", "intermediate_losses"})

    def auto_model_class(self) -> Any:
        return AutoModelForSequenceClassification

    def new_head_config(self, label_names: Any) -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}

    def head_config(self, teacher_config: Any) -> dict[str, Any]:
        return self.new_head_config(None)

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        if student_config.num_labels != 1 or teacher_config.num_labels != 1:
            raise ValueError("sequence regression needs one output in both heads (num_labels=1).")

    def output_from_logits(self, logits: Any) -> Any:
        return SequenceClassifierOutput(logits=logits)

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        return ()

    def label_encoder(self, config: Any) -> Any:
        return lambda values: [float(v) for v in values]

    def no_label(self, config: Any) -> Any:
        return float("nan")

    def compute_metrics(self, config: Any, metric_names: Any = None, metric_source: Any = None) -> Any:
        def compute(eval_pred: Any) -> dict[str, float]:
            preds = np.asarray(eval_pred.predictions).reshape(-1)
            refs = np.asarray(eval_pred.label_ids, dtype=np.float64).reshape(-1)
            r = np.corrcoef(preds, refs)[0, 1] if preds.std() and refs.std() else 0.0
            return {"mse": float(np.mean((preds - refs) ** 2)), "pearson": float(r)}

        compute.last_summary = None
        return compute

    def predictions(self, logits: Any, config: Any) -> Any:
        return np.asarray(logits).reshape(-1)

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        return float(np.mean(np.isclose(predictions, reference, atol=0.05)))

    def score_keys(self) -> tuple[str, ...]:
        return ("mse", "pearson")


def _rows(n: int, seed: int) -> dict[str, list]:
    texts, _ = rule_sentences(n, seed)
    return {"sentence": texts, "label": [float(sum(w in KEYWORDS for w in t.split())) for t in texts]}


if NAME not in TASK_TYPES:  # imported once per process; a second registration would be refused
    distillkit.register_task_type(NAME, ToySequenceRegression)
FIXTURES[NAME] = TaskFixture(regression_teacher, _rows)
