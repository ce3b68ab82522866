import numpy as np
import pytest

from secagg.aggregation import AggregateResult, available_aggregators, make_aggregator
from secagg.errors import ParameterError


def run(name, drop=None, n=5, dim=6, seed=0, **options):
    agg = make_aggregator(name, **options)
    rng = np.random.default_rng(seed)
    participants = list(range(10, 10 + n))
    round_ = agg.open_round(participants, dim, max_weight=50, clip=1.0, rng=rng)
    updates = {c: rng.uniform(-1, 1, dim) for c in participants}
    weights = {c: int(rng.integers(1, 51)) for c in participants}
    for c in participants:
        round_.submit(c, weights[c] * updates[c], weights[c])
    return round_.finish(drop), updates, weights


@pytest.mark.parametrize("name,options,n", [
    ("plain", {}, 6), ("masking", {"threshold": 2}, 6), ("masking", {"neighbors": 6, "threshold": 1, "corrupt_fraction": 0, "dropout_fraction": 0}, 12),
    ("masking", {"malicious": True, "threshold": 0.6}, 9), ("masking", {"neighbors": "auto", "dropout_fraction": 0.5}, 6)])
def test_sums_over_included_clients(name, options, n):
    # (sparse case: t = 1 of 6 holders survives these three drops in any draw)
    drop = {"share_keys": [11], "masked_input": [13], "unmasking": [14]}
    result, updates, weights = run(name, drop, n=n, **options)
    assert isinstance(result, AggregateResult) and result.ok
    assert result.included == tuple(c for c in range(10, 10 + n) if c not in (11, 13)) and result.dropped == (11, 13)
    expected = sum(weights[c] * updates[c] for c in result.included)
    assert result.total_weight == sum(weights[c] for c in result.included)
    assert np.all(np.abs(result.weighted_sum - expected) <= result.error_bound + 1e-12)
    assert set(result.bytes_sent) >= set(result.included)


def test_masking_and_plain_agree_within_the_bound():
    plain, _, _ = run("plain", {"masked_input": [12]}, seed=3)
    masked, _, _ = run("masking", {"masked_input": [12]}, seed=3)
    assert plain.included == masked.included
    assert np.max(np.abs(plain.weighted_sum - masked.weighted_sum)) <= masked.error_bound
    assert masked.error_bound == pytest.approx(len(masked.included) / 2**16)


def test_masking_abort_is_reported_not_raised():
    result, _, _ = run("masking", {"masked_input": [10, 11, 12]}, n=5)
    assert not result.ok and "fewer than the threshold" in result.aborted
    assert result.weighted_sum is None and result.included == ()
    with pytest.raises(ParameterError):
        result.average()


def test_the_result_has_no_per_client_update():
    result, _, _ = run("masking")
    fields = set(AggregateResult.__dataclass_fields__)
    assert fields == {"weighted_sum", "total_weight", "included", "dropped", "seconds", "bytes_sent",
                      "aborted", "error_bound"}


def test_registry():
    assert set(available_aggregators()) == {"masking", "plain", "paillier"}
    with pytest.raises(ParameterError, match="unknown aggregator"):
        make_aggregator("homomorphic")
    with pytest.raises(ParameterError, match="aggregator 'plain'"):
        make_aggregator("plain", threshold=3)


@pytest.mark.parametrize("call,match", [
    (lambda r: r.submit(99, np.zeros(6), 1), "not a participant"),
    (lambda r: r.submit(10, np.zeros(5), 1), "shape"),
    (lambda r: r.submit(10, np.full(6, np.nan), 1), "NaN"),
    (lambda r: r.submit(10, np.zeros(6), 51), "max_weight"),
    (lambda r: (r.submit(10, np.zeros(6), 1), r.submit(10, np.zeros(6), 1)), "already submitted"),
    (lambda r: r.finish({"bogus": [10]}), "unknown round"),
    (lambda r: r.finish({"unmasking": [3]}), "non-participants"),
])
@pytest.mark.parametrize("name", ["plain", "masking"])
def test_bad_submissions_are_refused(name, call, match):
    round_ = make_aggregator(name).open_round([10, 11, 12], 6, max_weight=50, clip=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ParameterError, match=match):
        call(round_)


def test_masking_needs_two_clients():
    with pytest.raises(ParameterError, match="at least 2"):
        make_aggregator("masking").open_round([1], 3, max_weight=1, clip=1.0, rng=np.random.default_rng(0))
