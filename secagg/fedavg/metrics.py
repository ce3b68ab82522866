"""Evaluation metrics: ROC-AUC and average precision from ``sklearn.metrics``, log loss, accuracy.

scikit-learn is optional (the ``sklearn`` extra). Where it is installed, :func:`roc_auc` and
:func:`average_precision` are ``sklearn.metrics.roc_auc_score`` and ``average_precision_score``;
where it is not, NumPy versions of the same definitions stand in (ties get half credit in the AUC;
average precision is the area under the precision-recall step curve), tested to give the same
numbers (``tests/fedavg/test_metrics.py``). Either way a single-class label vector gives NaN.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from secagg.errors import ParameterError

__all__ = ["roc_auc", "average_precision", "log_loss", "accuracy", "binary_metrics"]


@functools.cache
def _sklearn_metrics() -> ModuleType | None:
    """``sklearn.metrics``, or None without scikit-learn (imported once, on the first evaluation)."""
    try:
        import sklearn.metrics
    except ImportError:
        return None
    return sklearn.metrics


def _binary(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ParameterError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.all(np.isin(y, (0, 1))):
        raise ParameterError("binary metrics need labels in {0, 1}")
    return y.astype(np.int64), s


def roc_auc(y_true: Any, scores: Any) -> float:
    """Area under the ROC curve (ties get half credit); NaN when only one class is present."""
    y, s = _binary(y_true, scores)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    sklearn_metrics = _sklearn_metrics()
    if sklearn_metrics is not None:
        return float(sklearn_metrics.roc_auc_score(y, s))
    return _roc_auc_numpy(y, s, positives, negatives)


def _roc_auc_numpy(y: np.ndarray, s: np.ndarray, positives: int, negatives: int) -> float:
    """The Mann-Whitney form of the AUC with average ranks over ties (the fallback without scikit-learn)."""
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_scores = s[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [s.size]])
    ranks[order] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision (area under the precision-recall step curve); NaN without a positive label."""
    y, s = _binary(y_true, scores)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    sklearn_metrics = _sklearn_metrics()
    if sklearn_metrics is not None:
        return float(sklearn_metrics.average_precision_score(y, s))
    return _average_precision_numpy(y, s, positives)


def _average_precision_numpy(y: np.ndarray, s: np.ndarray, positives: int) -> float:
    """Precision at each distinct score threshold weighted by the recall it adds (the fallback)."""
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    distinct = np.flatnonzero(np.diff(s_sorted)) if s.size > 1 else np.zeros(0, dtype=np.int64)
    thresholds = np.concatenate([distinct, [s.size - 1]])
    true_pos = np.cumsum(y_sorted)[thresholds]
    predicted_pos = thresholds + 1
    precision = true_pos / predicted_pos
    recall = true_pos / positives
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * precision))


def log_loss(y_true: Any, probabilities: Any, eps: float = 1e-12) -> float:
    """Mean cross-entropy; ``probabilities`` is P(y=1) for binary or an (n, classes) matrix."""
    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = np.clip(p, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(p[np.arange(y.size), y], eps, 1.0)
    return float(-np.mean(np.log(p)))


def accuracy(y_true: Any, predictions: Any) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(y_true).ravel() == np.asarray(predictions).ravel()))


def binary_metrics(y_true: Any, probabilities: Any) -> dict[str, float]:
    """loss, accuracy (threshold 0.5), roc_auc and average_precision of P(y=1) scores."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    return {"loss": log_loss(y_true, p), "accuracy": accuracy(y_true, p >= 0.5),
            "roc_auc": roc_auc(y_true, p), "average_precision": average_precision(y_true, p)}
