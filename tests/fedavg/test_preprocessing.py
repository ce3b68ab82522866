import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.aggregation import AggregateResult
from secagg.aggregation.plain import PlainAggregator
from secagg.errors import ParameterError
from secagg.fedavg.preprocessing import (FederatedStandardScaler, balanced_class_weight, federated_class_counts,
                                         federated_standard_scaler)


def bank_features(seed=0, sizes=(800, 1200, 500, 1500, 1000)):
    """Features far from zero and of very different scales: amounts, a score, a timestamp-like value."""
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=[5.0, -300.0, 1e5], scale=[1.0, 50.0, 3.0], size=(n, 3)) for n in sizes]


RANGE = ([-100.0, -1_000.0, 0.0], [100.0, 1_000.0, 2e5])


def exact_statistics(X):
    """Mean and variance per column with correctly rounded sums (math.fsum): a reference that adds
    no error of its own worth counting."""
    mean = np.array([math.fsum(column) / len(column) for column in X.T])
    var = np.array([math.fsum((column - m) ** 2) / len(column) for column, m in zip(X.T, mean)])
    return mean, var


def test_masking_gives_the_pooled_statistics_within_the_reported_bound():
    clients = bank_features()
    pooled = np.vstack(clients)
    scaler = federated_standard_scaler(clients, value_range=RANGE, seed=0)
    assert scaler.n_samples_seen_ == 5000 and scaler.n_features_in_ == 3 and scaler.n_clipped_.tolist() == [0, 0, 0]
    mean, var = exact_statistics(pooled)
    assert np.all(np.abs(scaler.mean_ - mean) <= scaler.mean_error_bound_)
    assert np.all(np.abs(scaler.var_ - var) <= scaler.var_error_bound_)
    assert np.all(scaler.var_error_bound_ < 1e-5 * var)  # and the bound is tight enough to use
    from sklearn.preprocessing import StandardScaler

    reference = StandardScaler().fit(pooled)
    assert np.allclose(scaler.transform(pooled), reference.transform(pooled), atol=1e-6)
    assert np.allclose(scaler.to_sklearn().transform(pooled), scaler.transform(pooled))
    assert np.allclose(scaler.inverse_transform(scaler.transform(pooled)), pooled)


def test_far_from_zero_features_lose_nothing_to_cancellation():
    # a naive E[x^2] - mean^2 of raw values at 10^9 +- 1 cancels every significant digit in float64
    rng = np.random.default_rng(1)
    clients = [1e9 + rng.normal(size=(n, 1)) for n in (400, 600, 500)]
    pooled = np.vstack(clients)
    _, var = exact_statistics(pooled)
    naive = (pooled**2).mean() - pooled.mean() ** 2
    assert abs(naive - var[0]) > 0.5  # the failure this encoding avoids
    scaler = federated_standard_scaler(clients, value_range=(1e9 - 10, 1e9 + 10), seed=0)
    assert abs(scaler.var_[0] - var[0]) <= scaler.var_error_bound_[0] < 1e-12


class WorstCase(PlainAggregator):
    """Decodes every coordinate of the sum off by exactly its declared error bound, in the signs given."""

    def __init__(self, error, signs):
        super().__init__()
        self.error, self.signs = error, signs

    def open_round(self, participants, dimension, *, max_weight, clip=1.0, rng=None, min_contributions=1):
        inner = super().open_round(participants, dimension, max_weight=max_weight, clip=clip, rng=rng)
        outer = self

        class Round:
            def submit(self, client, vector, weight, rng=None):
                inner.submit(client, vector, weight, rng=rng)

            def finish(self, drop=None):
                exact = inner.finish(drop)
                signs = np.resize(outer.signs, exact.weighted_sum.size)
                return AggregateResult(exact.weighted_sum + outer.error * signs, exact.total_weight, exact.included,
                                       exact.dropped, exact.seconds, error_bound=outer.error)

        return Round()


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.integers(1, 50), min_size=2, max_size=5), middle=st.floats(-1e6, 1e6),
       half=st.floats(1.0, 1e7), position=st.floats(-1.2, 1.2), spread=st.floats(1e-6, 1.0),
       error=st.floats(0, 1e-2), signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=1, max_size=6),
       seed=st.integers(0, 2**16))
def test_the_error_bound_holds_for_a_worst_case_decoding(sizes, middle, half, position, spread, error, signs, seed):
    # data anywhere in (or partly beyond) the range, so the mean may sit near an end: the worst case
    # of the variance's bound needs |m| near 1, where an error in the mean counts twice
    rng = np.random.default_rng(seed)
    clients = [middle + half * (position + spread * rng.normal(size=(n, 2))) for n in sizes]
    low, high = middle - half, middle + half
    scaler = federated_standard_scaler(clients, value_range=(low, high), aggregator=WorstCase(error, signs))
    mean, var = exact_statistics(np.clip(np.vstack(clients), low, high))
    assert np.all(np.abs(scaler.mean_ - mean) <= scaler.mean_error_bound_)
    assert np.all(np.abs(scaler.var_ - var) <= scaler.var_error_bound_)
    assert scaler.n_clipped_.tolist() == ((np.vstack(clients) < low) | (np.vstack(clients) > high)).sum(axis=0).tolist()


def test_values_outside_the_range_are_clipped_and_counted():
    clients = [np.array([[0.0, 1.0], [5.0, 2.0]]), np.array([[-7.0, 3.0], [1.0, 3.0]])]
    scaler = federated_standard_scaler(clients, value_range=(-2.0, 2.0), aggregator="plain")
    assert scaler.n_clipped_.tolist() == [2, 2]
    assert np.allclose(scaler.mean_, [0.25, 1.75]) and np.allclose(scaler.var_, [2.1875, 0.1875])


def test_a_constant_feature_keeps_scale_one():
    clients = [np.column_stack([np.full(n, 3.0), np.arange(float(n))]) for n in (50, 30, 40)]
    scaler = federated_standard_scaler(clients, value_range=(-100, 100), seed=0)
    assert scaler.scale_[0] == 1.0 and scaler.var_[0] <= scaler.var_error_bound_[0]
    assert np.allclose(scaler.transform(clients[0])[:, 0], 0.0, atol=1e-9)


def test_without_std_only_the_mean_is_applied():
    clients = bank_features(2, sizes=(100, 200))
    scaler = federated_standard_scaler(clients, value_range=RANGE, aggregator="plain", with_std=False)
    assert scaler.var_ is None and scaler.scale_ is None
    assert np.allclose(scaler.transform(clients[0]), clients[0] - np.vstack(clients).mean(axis=0))


def test_the_scaler_refuses_a_local_refit_and_bad_input():
    clients = bank_features(3, sizes=(100, 200))
    scaler = federated_standard_scaler(clients, value_range=RANGE, aggregator="plain")
    with pytest.raises(ParameterError, match="fitted on every client's data at once"):
        scaler.fit(clients[0])
    with pytest.raises(ParameterError, match="not fitted"):
        FederatedStandardScaler().transform(clients[0])
    with pytest.raises(ParameterError, match="n_features=3"):
        scaler.transform(np.zeros((2, 2)))
    with pytest.raises(ParameterError, match="low < high"):
        federated_standard_scaler(clients, value_range=(1.0, 1.0), aggregator="plain")
    with pytest.raises(ParameterError, match=r"\(low, high\)"):
        federated_standard_scaler(clients, value_range=5.0, aggregator="plain")
    with pytest.raises(ParameterError, match="one client's statistics"):
        federated_standard_scaler(clients[:1], value_range=RANGE)
    with pytest.raises(ParameterError, match="max_weight"):
        federated_standard_scaler(clients, value_range=RANGE, max_weight=150)
    with pytest.raises(ParameterError, match="NaN"):
        federated_standard_scaler([clients[0], clients[1] * np.nan], value_range=RANGE)


def test_the_paillier_path_gives_the_same_statistics():
    pytest.importorskip("phe")
    clients = bank_features(4, sizes=(100, 200, 150))
    paillier = federated_standard_scaler(clients, value_range=RANGE, aggregator="paillier",
                                         aggregator_options={"key_bits": 512}, seed=0, progress=False)
    pooled = np.vstack(clients)
    assert np.all(np.abs(paillier.mean_ - pooled.mean(axis=0)) <= paillier.mean_error_bound_ + 1e-10)


def test_class_counts_are_exact_through_masking():
    rng = np.random.default_rng(5)
    labels = [rng.integers(0, 3, size=n) for n in (90, 300, 45)]
    counts = federated_class_counts(labels, 3, seed=0)
    assert counts.tolist() == np.bincount(np.concatenate(labels), minlength=3).tolist()
    assert balanced_class_weight(counts) == {c: 435 / (3 * n) for c, n in enumerate(counts)}
    with pytest.raises(ParameterError, match="labels"):
        federated_class_counts([np.array([0, 3]), np.array([1])], 3)
