"""Evaluation metrics in NumPy (no scikit-learn needed): ROC-AUC, average precision, log loss."""

from __future__ import annotations

import numpy as np

from secagg.errors import ParameterError

__all__ = ["roc_auc", "average_precision", "log_loss", "accuracy", "binary_metrics"]


def _binary(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ParameterError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.all(np.isin(y, (0, 1))):
        raise ParameterError("binary metrics need labels in {0, 1}")
    return y.astype(np.int64), s


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties get half credit); NaN when only one class is present."""
    y, s = _binary(y_true, scores)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_scores = s[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [s.size]])
    ranks[order] = np.repeat((starts + stops + 1) / 2.0, stops - starts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve, as scikit-learn defines it)."""
    y, s = _binary(y_true, scores)
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
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


def log_loss(y_true: np.ndarray, probabilities: np.ndarray, eps: float = 1e-12) -> float:
    """Mean cross-entropy; ``probabilities`` is P(y=1) for binary or an (n, classes) matrix."""
    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = np.clip(p, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(p[np.arange(y.size), y], eps, 1.0)
    return float(-np.mean(np.log(p)))


def accuracy(y_true: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true).ravel() == np.asarray(predictions).ravel()))


def binary_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """loss, accuracy (threshold 0.5), roc_auc and average_precision of P(y=1) scores."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    return {"loss": log_loss(y_true, p), "accuracy": accuracy(y_true, p >= 0.5),
            "roc_auc": roc_auc(y_true, p), "average_precision": average_precision(y_true, p)}
