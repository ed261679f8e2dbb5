import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from distillkit.metrics import (
    accuracy,
    build_compute_metrics,
    f1_binary,
    f1_macro,
    matthews_correlation,
    pearson,
    spearman,
)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_builtin_classification_metrics_equal_sklearn(seed, num_classes):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, num_classes, 200)
    preds = np.where(rng.random(200) < 0.6, refs, rng.integers(0, num_classes, 200))  # better than chance
    assert accuracy(preds, refs) == pytest.approx(accuracy_score(refs, preds), abs=1e-12)
    assert matthews_correlation(preds, refs) == pytest.approx(matthews_corrcoef(refs, preds), abs=1e-12)
    assert f1_macro(preds, refs) == pytest.approx(f1_score(refs, preds, average="macro"), abs=1e-12)
    if num_classes == 2:
        assert f1_binary(preds, refs) == pytest.approx(f1_score(refs, preds), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_builtin_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    refs = np.round(rng.uniform(0, 5, 300), 1)  # STS-B-like scores, with ties
    preds = refs + rng.normal(0, 1.0, 300)
    assert pearson(preds, refs) == pytest.approx(pearsonr(preds, refs)[0], abs=1e-12)
    assert spearman(preds, refs) == pytest.approx(spearmanr(preds, refs)[0], abs=1e-12)
    tied = np.round(preds)  # many ties on both sides
    assert spearman(tied, refs) == pytest.approx(spearmanr(tied, refs)[0], abs=1e-12)


def test_degenerate_inputs_give_zero_not_nan():
    same = np.zeros(10, dtype=int)
    assert matthews_correlation(same, same) == 0.0 == matthews_corrcoef(same, same)
    assert pearson(np.ones(5), np.arange(5)) == 0.0


def test_compute_metrics_for_tasks_and_regression():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    out = build_compute_metrics(2, ("accuracy", "f1"), task_name="mrpc")(EvalPrediction(logits, labels))
    assert out == pytest.approx({"accuracy": 0.75, "f1": 2 / 3})
    out = build_compute_metrics(2, ("matthews_correlation",))(EvalPrediction(logits, labels))
    assert out["matthews_correlation"] == pytest.approx(matthews_corrcoef(labels, logits.argmax(-1)))
    scores = np.array([[0.5], [2.0], [3.1], [4.0]])
    out = build_compute_metrics(1)(EvalPrediction(scores, np.array([0.4, 2.5, 3.0, 4.2])))
    assert set(out) == {"pearson", "spearmanr"} and out["spearmanr"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        build_compute_metrics(2, ("bleu",))
