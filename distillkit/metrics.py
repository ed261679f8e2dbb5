"""Task metrics: through `evaluate` when it can load them, else built-in numpy equivalents giving the same numbers.

`evaluate.load("glue", ...)` fetches its script from the hub, so it fails offline (and in the tests, which set
HF_HUB_OFFLINE=1); the built-ins below follow the same definitions as scikit-learn and scipy, which the tests check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from transformers import IntervalStrategy, Trainer

logger = logging.getLogger(__name__)


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of positions where the predicted class equals the reference."""
    return float((np.asarray(predictions) == np.asarray(references)).mean())


def f1_binary(predictions: np.ndarray, references: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (sklearn's `f1_score(average="binary")`); 0 when it is never predicted nor present."""
    p, r = np.asarray(predictions) == positive, np.asarray(references) == positive
    tp = np.sum(p & r)
    denom = p.sum() + r.sum()
    return float(2 * tp / denom) if denom else 0.0


def f1_macro(predictions: np.ndarray, references: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in either array (sklearn's macro average)."""
    classes = np.unique(np.concatenate([np.asarray(predictions), np.asarray(references)]))
    return float(np.mean([f1_binary(predictions, references, c) for c in classes]))


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004), as sklearn's `matthews_corrcoef`."""
    preds, refs = np.asarray(predictions), np.asarray(references)
    classes = np.unique(np.concatenate([preds, refs]))
    t = np.array([np.sum(refs == c) for c in classes], dtype=np.float64)  # true counts per class
    p = np.array([np.sum(preds == c) for c in classes], dtype=np.float64)  # predicted counts per class
    correct, total = float(np.sum(preds == refs)), float(len(refs))
    denom = np.sqrt((total**2 - p @ p) * (total**2 - t @ t))
    return float((correct * total - t @ p) / denom) if denom else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]  # tied values share their mean rank, as scipy's rankdata("average")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson on average ranks (scipy's `spearmanr`)."""
    return pearson(_average_ranks(np.asarray(x)), _average_ranks(np.asarray(y)))


BUILTIN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "f1_macro": f1_macro,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearman,
}


def _logits_of(predictions: Any) -> np.ndarray:
    # predictions may be a tuple when a model returns more than logits; the logits come first
    return np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _load_evaluate(task_name: str) -> Any | None:
    if _offline():
        return None
    try:
        import evaluate

        return evaluate.load("glue", task_name)
    except Exception as err:  # no hub, no script, no network: the built-ins give the same numbers
        logger.info("evaluate could not load the glue/%s metric (%s); using the built-in metrics", task_name, err)
        return None


def prediction_summary(preds: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    """Predicted classes against gold ones: the share of rows given the most frequent predicted class, the
    majority-class rate of the gold labels, and the accuracy."""
    preds, refs = np.asarray(preds).reshape(-1).astype(int), np.asarray(refs).reshape(-1)
    keep = refs >= 0  # GLUE test splits mark missing labels with -1
    preds, refs = preds[keep], refs[keep].astype(int)
    if not len(refs):
        return {"top_prediction_share": 0.0, "majority_rate": 0.0, "accuracy": 0.0}
    return {
        "top_prediction_share": float(np.bincount(preds).max() / len(preds)),
        "majority_rate": float(np.bincount(refs).max() / len(refs)),
        "accuracy": float((preds == refs).mean()),
    }


def build_compute_metrics(
    num_labels: int, metric_names: tuple[str, ...] | None = None, task_name: str | None = None
) -> Callable[[Any], dict[str, float]]:
    """The `compute_metrics` for a head with `num_labels` outputs (1 = regression).

    metric_names: names from `BUILTIN`; default accuracy and macro F1 for classification, Pearson and Spearman for
    regression. task_name: a GLUE task whose `evaluate` metric is tried first.
    """
    regression = num_labels == 1
    names = metric_names or (("pearson", "spearmanr") if regression else ("accuracy", "f1_macro"))
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(BUILTIN)}.")
    hub_metric = _load_evaluate(task_name) if task_name else None

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = _logits_of(eval_pred.predictions)
        preds = logits.reshape(-1) if regression else logits.argmax(axis=-1)
        refs = np.asarray(eval_pred.label_ids)
        # how the predictions spread over the classes, for the one-class check (read by the pipeline)
        compute_metrics.last_summary = None if regression else prediction_summary(preds, refs)
        if hub_metric is not None:
            return {k: float(v) for k, v in hub_metric.compute(predictions=preds, references=refs).items()}
        return {name: BUILTIN[name](preds, refs) for name in names}

    compute_metrics.last_summary = None
    return compute_metrics


class InOrderEvaluation:
    """A `Trainer` mixin: evaluation keeps the data set's order when the metric asks for it (a `compute_metrics`
    with `in_order = True`, such as question answering's, which reads each window's offsets by its position). Other
    metrics keep the Trainer's sampler (length-grouped batches are faster and do not change a per-row score)."""

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        # a metric that reads a reduced form of the logits (a language model's per-token NLL, not the (rows, seq,
        # vocabulary) array): reduced per batch, before the Trainer gathers anything
        reduce = getattr(self.compute_metrics, "reduce_logits", None)
        if (
            reduce is not None
            and self.preprocess_logits_for_metrics is None
            and not getattr(self, "returns_token_statistics", False)
        ):
            self.preprocess_logits_for_metrics = reduce
        return super().evaluate(*args, **kwargs)

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        if getattr(self.compute_metrics, "in_order", False):
            from torch.utils.data import SequentialSampler

            # several processes: None gives accelerate's in-order shards, gathered back in order
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)


class _EvaluationTrainer(InOrderEvaluation, Trainer):
    """The plain `Trainer` of `evaluate_model`."""


def evaluate_model(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    args: Any,
    compute_metrics: Any,
    prefix: str = "eval",
    data_collator: Any = None,
) -> dict[str, float]:
    """A model's metrics on data in its own tokenization, with a plain `Trainer` (no teacher is run; columns the
    model does not take, such as teacher_*, are dropped)."""
    # this Trainer evaluates once, on the data given here: no evaluation schedule (which would want an eval_dataset
    # at construction), and no best-model tracking
    saved = args.eval_strategy, args.load_best_model_at_end
    args.eval_strategy, args.load_best_model_at_end = IntervalStrategy.NO, False
    try:
        trainer = _EvaluationTrainer(model=model, args=args, processing_class=tokenizer,
                                     compute_metrics=compute_metrics, data_collator=data_collator)  # fmt: skip
    finally:
        args.eval_strategy, args.load_best_model_at_end = saved
    return trainer.evaluate(dataset, metric_key_prefix=prefix)
