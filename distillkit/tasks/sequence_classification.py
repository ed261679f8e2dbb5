"""Sequence classification (and regression): one label, or one number, per text or text pair.

`AutoModelForSequenceClassification` teachers and students; labels by the teacher's names (`label2id`, matched
without case) or ids, float targets for a one-output regression head; accuracy / F1 / MCC / Pearson / Spearman
(`metrics.py`), with the one-class check on the predictions; every distillkit feature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..data.encode import class_label_encoder, infer_labels
from ..data.glue import GLUE_TASKS
from ..metrics import build_compute_metrics
from .base import FEATURES, TaskType

logger = logging.getLogger(__name__)

ONE_CLASS_SHARE = 0.95  # a model that gives one answer to more than this share of the validation rows is flagged


class SequenceClassification(TaskType):
    """One label (or one regression value) per input: GLUE, sentiment, topics, NLI."""

    name = "sequence-classification"
    architecture_suffix = "ForSequenceClassification"
    pipeline_tag = "text-classification"
    head_description = "classification"
    features = frozenset(FEATURES)
    dataset_names = tuple(GLUE_TASKS)

    # ---- models -------------------------------------------------------------------------------------------------

    def auto_model_class(self) -> Any:
        return AutoModelForSequenceClassification

    def peft_model_class(self) -> Any:
        from peft import AutoPeftModelForSequenceClassification

        return AutoPeftModelForSequenceClassification

    def peft_task_type(self) -> Any:
        from peft import TaskType as PeftTaskType

        return PeftTaskType.SEQ_CLS

    def new_head_config(self, label_names: tuple[str, ...] | None) -> dict[str, Any]:
        """() means one regression output ("score")."""
        names = tuple(label_names or ()) or ("score",)
        return {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
            "problem_type": "regression" if not label_names else "single_label_classification",
        }

    def head_config(self, teacher_config: Any) -> dict[str, Any]:
        kwargs = {
            "num_labels": teacher_config.num_labels,
            "id2label": dict(teacher_config.id2label),
            "label2id": dict(teacher_config.label2id),
        }
        if getattr(teacher_config, "problem_type", None):
            kwargs["problem_type"] = teacher_config.problem_type
        return kwargs

    def label_names(self, config: Any) -> tuple[str, ...]:
        return tuple(str(config.id2label[i]) for i in range(config.num_labels))

    def check_compatible(self, teacher_config: Any, student_config: Any) -> None:
        t_labels, s_labels = teacher_config.num_labels, student_config.num_labels
        if t_labels != s_labels:
            raise ValueError(
                f"teacher and student have different label counts (teacher num_labels={t_labels}, student "
                f"num_labels={s_labels}). Give the student the teacher's head: num_labels={t_labels} and its "
                "id2label / label2id."
            )
        t_names, s_names = getattr(teacher_config, "id2label", None), getattr(student_config, "id2label", None)
        if t_names and s_names and {int(k): v for k, v in t_names.items()} != {int(k): v for k, v in s_names.items()}:
            logger.warning(
                "teacher and student label names differ (%s vs %s); label i of one is taken as label i of the other.",
                t_names,
                s_names,
            )

    def check_head_size(self, name: str, config: Any, label_names: tuple[str, ...] | None) -> None:
        if label_names is not None and config.num_labels != (len(label_names) or 1):
            raise ValueError(
                f"the teacher {name!r} was fine-tuned with {config.num_labels} labels but the task has "
                f"{len(label_names) or 1}. Use a teacher for this task, a base checkpoint (it is fine-tuned first), "
                "or --finetune_teacher always to give it a new head."
            )

    @torch.no_grad()
    def init_head(self, student: PreTrainedModel, teacher: PreTrainedModel) -> list[str]:
        """Copy the pooler and classifier when the teacher has BERT's head shape and the widths match."""
        t_state, s_state = teacher.state_dict(), student.state_dict()
        pairs = {}
        for s_key in s_state:
            if s_key.startswith("classifier."):
                pairs[s_key] = s_key
            elif ".pooler." in s_key:
                param = s_key.rsplit(".", 1)[1]
                pairs[s_key] = next((k for k in t_state if k.endswith(f"pooler.dense.{param}")), None)
        if not pairs or any(
            t is None or t not in t_state or t_state[t].shape != s_state[s].shape for s, t in pairs.items()
        ):
            return []
        student.load_state_dict({s: t_state[t].detach().float() for s, t in pairs.items()}, strict=False)
        return ["pooler and classifier copied from the teacher"]

    def head_parameters(self, config: Any, width: int, pooler: bool) -> int:
        labels = config.num_labels
        return (width * width + width if pooler else 0) + width * labels + labels

    def output_from_logits(self, logits: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=logits)

    # ---- data ---------------------------------------------------------------------------------------------------

    def infer_labels(self, dataset: Any, label_column: str) -> tuple[str, ...]:
        """Sorted strings, or "0".."N-1" for integers; () for float targets (regression)."""
        return infer_labels(dataset, label_column)

    def label_encoder(self, config: Any) -> Callable[[list[Any]], list[Any]]:
        return class_label_encoder(config.label2id, config.num_labels)

    def no_label(self, config: Any) -> Any:
        return float("nan") if config.num_labels == 1 else -100  # NaN: a regression target the losses skip

    def check_labels_in_use(self, labels: Iterable[Any], config: Any) -> None:
        """One line when the data uses fewer of the teacher's classes than it has (it trains as usual)."""
        num_labels = config.num_labels
        if num_labels < 2:
            return
        used = sorted({int(y) for y in labels if y is not None and int(y) >= 0})
        if len(used) < num_labels:
            names = [config.id2label.get(i, str(i)) for i in used]
            logger.warning("the training data uses %d of the teacher's %d labels (%s)", len(used), num_labels, names)

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def compute_metrics(self, config: Any, metric_names: tuple[str, ...] | None = None,
                        metric_source: str | None = None) -> Callable[[Any], dict[str, float]]:  # fmt: skip
        """Accuracy and macro F1 by default (Pearson and Spearman for regression); `metric_source` is a GLUE task
        whose `evaluate` metric is tried first."""
        return build_compute_metrics(config.num_labels, metric_names, metric_source)

    def predictions(self, logits: Any, config: Any) -> np.ndarray:
        logits = np.asarray(logits)
        return logits.reshape(-1) if config.num_labels == 1 else logits.argmax(-1)

    def agreement(self, predictions: Any, reference: Any, config: Any) -> float:
        """Equal classes; for regression, values within 0.05 of each other."""
        a, b = np.asarray(predictions), np.asarray(reference)
        return float(np.mean(np.isclose(a, b, atol=0.05) if config.num_labels == 1 else a == b))

    def prediction_notes(self, who: str, summary: Mapping[str, float] | None) -> list[str]:
        """A warning when a model gives one class to more than 95% of the validation rows."""
        share = (summary or {}).get("top_prediction_share")
        if share is None or share <= ONE_CLASS_SHARE:
            return []
        note = (
            f"the {who} predicts one class for {100 * share:.1f}% of the validation rows (the majority class is "
            f"{100 * summary['majority_rate']:.1f}% of them): it has learned little beyond the most frequent answer"
        )
        logger.warning(note)
        return [note]

    def check_teacher(self, summary: Mapping[str, float] | None, allow_weak: bool, teacher_dir: str) -> list[str]:
        """Stop before distillation when the fine-tuned teacher is no better than the majority class."""
        if not summary:
            return []  # regression, or no validation data
        if summary["accuracy"] <= summary["majority_rate"] and not allow_weak:
            raise ValueError(
                f"the fine-tuned teacher scores {summary['accuracy']:.4f} accuracy on the validation data, no better "
                f"than always answering the majority class ({summary['majority_rate']:.4f}): distilling it would "
                "teach the student nothing. Train the teacher longer (--teacher_num_train_epochs, "
                "--teacher_min_steps) or with a higher --teacher_learning_rate, or pass --allow_weak_teacher to go "
                f"on (teacher: {teacher_dir})."
            )
        return self.prediction_notes("teacher", summary)

    def score_keys(self) -> tuple[str, ...]:
        return ("accuracy", "f1", "f1_macro", "matthews_correlation", "pearson", "spearmanr")
