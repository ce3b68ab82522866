"""ROC-AUC and average precision come from sklearn.metrics where it is installed; the NumPy
versions that stand in without scikit-learn give the same numbers."""

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.fedavg import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def without_sklearn(monkeypatch):
    """The metrics module as it runs where scikit-learn is not installed."""
    metrics._sklearn_metrics.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    assert metrics._sklearn_metrics() is None
    yield
    metrics._sklearn_metrics.cache_clear()


def test_with_scikit_learn_installed_the_numbers_are_sklearns(monkeypatch):
    metrics._sklearn_metrics.cache_clear()
    calls = []
    monkeypatch.setattr(sklearn_metrics, "roc_auc_score", lambda y, s: calls.append("auc") or 0.25)
    monkeypatch.setattr(sklearn_metrics, "average_precision_score", lambda y, s: calls.append("ap") or 0.125)
    y, s = np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    assert (metrics.roc_auc(y, s), metrics.average_precision(y, s)) == (0.25, 0.125)
    assert calls == ["auc", "ap"]


def test_without_scikit_learn_the_fallback_answers(without_sklearn):
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)
    assert metrics.average_precision(y, s) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert np.isnan(metrics.roc_auc(np.ones(4), s)) and np.isnan(metrics.average_precision(np.zeros(4), s))


@given(labels=st.lists(st.integers(0, 1), min_size=2, max_size=300), data=st.data())
def test_the_fallback_gives_sklearns_numbers(labels, data):
    y = np.array(labels)
    # few distinct scores, so ties inside and across the classes are the rule, not the exception
    levels = data.draw(st.integers(1, 12))
    s = np.array(data.draw(st.lists(st.integers(0, levels), min_size=len(y), max_size=len(y)))) / levels
    positives = int(y.sum())
    if 0 < positives < y.size:
        assert metrics._roc_auc_numpy(y, s, positives, y.size - positives) == pytest.approx(
            sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
    if positives:
        assert metrics._average_precision_numpy(y, s, positives) == pytest.approx(
            sklearn_metrics.average_precision_score(y, s), abs=1e-12)


def test_the_demo_scores_are_the_same_with_and_without_scikit_learn(monkeypatch):
    from secagg.fedavg.data import make_bank_transactions
    from secagg.fedavg.models import NumpyLogisticRegression

    bank = make_bank_transactions(1, 3000, seed=1)[0]
    model = NumpyLogisticRegression(bank.X_train.shape[1])
    model.train(bank.X_train, bank.y_train, epochs=2, batch_size=64, learning_rate=0.1, proximal_mu=0.0,
                rng=np.random.default_rng(0))
    metrics._sklearn_metrics.cache_clear()
    with_sklearn = model.evaluate(bank.X_test, bank.y_test)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    metrics._sklearn_metrics.cache_clear()
    try:
        without = model.evaluate(bank.X_test, bank.y_test)
    finally:
        metrics._sklearn_metrics.cache_clear()
    for name in ("roc_auc", "average_precision"):
        assert without[name] == pytest.approx(with_sklearn[name], abs=1e-12)
