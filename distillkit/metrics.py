"""Task metrics computed in plain numpy, so that evaluation works offline (no metric scripts from the hub)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _logits_of(predictions: Any) -> np.ndarray:
    # predictions may be a tuple when a model returns more than logits; the logits come first
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of positions where the predicted class equals the reference."""
    return float((np.asarray(predictions) == np.asarray(references)).mean())


def classification_metrics(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics` for single-label classification: accuracy (and macro F1 over the classes seen)."""
    logits, labels = _logits_of(eval_pred.predictions), np.asarray(eval_pred.label_ids)
    preds = logits.argmax(axis=-1)
    f1s = []
    for c in np.unique(np.concatenate([preds, labels])):
        tp = np.sum((preds == c) & (labels == c))
        denom = np.sum(preds == c) + np.sum(labels == c)
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": accuracy(preds, labels), "f1_macro": float(np.mean(f1s))}


def regression_metrics(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics` for a single regression output: Pearson correlation and mean squared error."""
    preds = _logits_of(eval_pred.predictions).reshape(-1)
    labels = np.asarray(eval_pred.label_ids, dtype=np.float64).reshape(-1)
    pearson = float(np.corrcoef(preds, labels)[0, 1]) if preds.std() > 0 and labels.std() > 0 else 0.0
    return {"pearson": pearson, "mse": float(np.mean((preds - labels) ** 2))}


def build_compute_metrics(num_labels: int) -> Callable[[Any], dict[str, float]]:
    """The default `compute_metrics` for a head with `num_labels` outputs (1 means regression)."""
    return regression_metrics if num_labels == 1 else classification_metrics
