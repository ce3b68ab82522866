import math

import numpy as np
import pytest

from secagg.aggregation import make_aggregator
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.dp import DistributedMechanism, DPConfig
from secagg.errors import ParameterError

pytest.importorskip("dp_accounting")


def mechanism(config, dimension=1000, shares=10, rounds=10, rate=1.0, expected=10):
    return DistributedMechanism(config, dimension=dimension, rounds=rounds, sampling_rate=rate,
                                expected_contributions=expected, min_shares=shares)


def aggregate(mech, updates, aggregator="masking", seed=0):
    """Every client's noisy integer vector through an aggregator; the server's decoded sum."""
    signs = mech.signs(bytes([seed]) * 32) if mech.config.rotation else None
    rng = np.random.default_rng(seed)
    source = TestOnlySeededRandomness(seed, b"noise")
    clients = list(range(len(updates)))
    aggregation = make_aggregator(aggregator).open_round(clients, mech.padded, max_weight=1.0,
                                                         clip=float(mech.value_bound(1)), rng=rng)
    for client, update in zip(clients, updates):
        vector = mech.encode(update, signs, rng, source.child(bytes([client])))
        assert vector.dtype == np.int64 and np.abs(vector).max() <= mech.value_bound(1)
        aggregation.submit(client, vector.astype(np.float64), 1.0)
    return mech.decode(aggregation.finish().weighted_sum, signs)


def within_sampling_error(sample_variance, variance, n, sigmas=5.0):
    """The sample variance of n Gaussian-like values has standard error variance * sqrt(2/(n-1))."""
    return abs(sample_variance / variance - 1) < sigmas * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("mechanism_name,aggregator", [("dgauss", "masking"), ("skellam", "plain")])
def test_decoded_noise_has_the_calibrated_variance(mechanism_name, aggregator):
    mech = mechanism(DPConfig(noise_multiplier=0.9, clip=1.0, mechanism=mechanism_name), dimension=4000)
    noise = aggregate(mech, [np.zeros(4000)] * 10, aggregator)
    assert noise.shape == (4000,)
    assert mech.noise_stddev == pytest.approx(0.9 * mech.l2 * mech.granularity, rel=1e-5)
    assert within_sampling_error(noise.var(), mech.noise_stddev**2, noise.size)
    assert abs(noise.mean()) < 5 * mech.noise_stddev / math.sqrt(noise.size)


def test_the_sum_of_real_updates_is_recovered_up_to_the_noise():
    rng = np.random.default_rng(3)
    updates = rng.normal(size=(10, 3000)) * 0.05  # norms near 2.7: clipped to 1
    mech = mechanism(DPConfig(noise_multiplier=0.5, clip=1.0), dimension=3000)
    clipped = updates / np.linalg.norm(updates, axis=1, keepdims=True)
    error = aggregate(mech, list(updates), "plain") - clipped.sum(axis=0)
    rounding = 10 * mech.granularity**2 / 4  # at most a quarter of a grid step squared per client
    assert within_sampling_error(error.var(), mech.noise_stddev**2, error.size)
    assert error.var() < mech.noise_stddev**2 + rounding + 5 * mech.noise_stddev**2 * math.sqrt(2 / error.size)


def test_survivors_beyond_the_minimum_add_noise_never_remove_it():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, dropout_tolerance=0.25), dimension=2000, shares=8)
    noise = aggregate(mech, [np.zeros(2000)] * 12, "plain")
    assert within_sampling_error(noise.var(), mech.noise_stddev**2 * 12 / 8, noise.size)


def test_conditional_rounding_respects_the_sensitivity_bound_and_is_unbiased():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=12), dimension=60, expected=100)
    rows = np.tile(np.random.default_rng(4).normal(size=60), (20_000, 1))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    signs = mech.signs(bytes(32))
    rounded = mech._round(rows, signs, np.random.default_rng(5))
    assert np.all(np.einsum("ij,ij->i", rounded, rounded) <= mech.l2_squared_bound)
    assert mech.l2 < (1 / mech.granularity + math.sqrt(mech.padded))
    from secagg.dp.rotation import rotate

    target = rotate(rows[0], signs) / mech.granularity
    assert np.abs(rounded.mean(axis=0) - target).max() < 5 * 0.5 / math.sqrt(rows.shape[0]) + 0.02


def test_conditional_rounding_bound_is_exact_on_a_fine_grid():
    # at 40 bits a contribution spans ~1e11 grid steps: squared norms near 1.5e22 overflow int64,
    # and the check used to wrap around and accept vectors beyond the sensitivity bound
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=40), dimension=16, shares=2, rounds=1, expected=2)
    assert mech.l2_squared_bound > 2**63
    rows = np.random.default_rng(1).normal(size=(4000, 16))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rounded = mech._round(rows, mech.signs(bytes(32)), np.random.default_rng(1))
    exact = (rounded.astype(object) ** 2).sum(axis=1)  # Python integers
    assert all(exact <= int(mech.l2_squared_bound))
    assert np.abs(rounded).max() > 2**35  # the grid really is that fine


def test_grids_finer_than_float64_can_check_are_refused():
    with pytest.raises(ParameterError, match="2\\^52"):
        mechanism(DPConfig(noise_multiplier=1e-9, clip=1.0, bits=48), dimension=1000, expected=1e-3)


def test_skellam_shares_beyond_the_sampler_accuracy_are_refused():
    with pytest.raises(ParameterError, match="Skellam share"):
        mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=36, mechanism="skellam", rotation=False),
                  dimension=64, shares=2, expected=2)


def test_tiny_discrete_gaussian_shares_are_raised_to_one_quarter():
    # Kairouz, Liu and Steinke's bound for sums of discrete Gaussians needs sigma >= 1/2 per share
    mech = mechanism(DPConfig(noise_multiplier=1e-9, clip=1.0), dimension=4, shares=1, expected=1)
    assert mech.share_variance == 0.25 and mech.epsilon(1) > 0


def test_modular_clipping_wraps_the_sum_into_the_grid():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, rotation=False, bits=10), dimension=4)
    half = 2**9
    decoded = mech.decode(np.array([half - 1, half, -half, 3 * half + 2], dtype=np.float64), None)
    assert np.allclose(decoded / mech.granularity, [half - 1, -half, -half, -half + 2])
    with pytest.raises(ParameterError, match="whole numbers"):
        mech.decode(np.array([0.5, 0, 0, 0]), None)


def test_calibrated_mechanism_spends_exactly_the_target():
    mech = mechanism(DPConfig(epsilon=2.0, delta=1e-6, clip=0.5), dimension=100, shares=40, rounds=200, rate=0.05,
                     expected=50)
    assert mech.epsilon(200) <= 2.0
    assert mech.epsilon(200) == pytest.approx(2.0, rel=1e-4)
    assert mech.epsilon(100) < mech.epsilon(200)


@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one"), ({"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
    ({"epsilon": -3.0}, "epsilon"), ({"epsilon": float("inf")}, "epsilon"), ({"epsilon": 0}, "epsilon"),
    ({"epsilon": 1.0, "delta": 0.0}, "delta"), ({"epsilon": 1.0, "delta": 1.0}, "delta"),
    ({"epsilon": 1.0, "clip": 0.0}, "clip"), ({"epsilon": 1.0, "clip": -1}, "clip"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"), ({"epsilon": 1.0, "level": "user"}, "level"),
    ({"epsilon": 1.0, "mechanism": "laplace"}, "mechanism"), ({"epsilon": 1.0, "bits": 4}, "bits"),
    ({"epsilon": 1.0, "dropout_tolerance": 1.0}, "dropout_tolerance"),
    ({"epsilon": 1.0, "record_sampling_rate": 0.0}, "record_sampling_rate"),
    ({"epsilon": 1.0, "rounding_beta": 1.0}, "rounding_beta"), ({"epsilon": True}, "epsilon"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        DPConfig(**kwargs)


def test_bad_mechanism_arguments():
    config = DPConfig(noise_multiplier=1.0)
    with pytest.raises(ParameterError, match="Skellam"):
        mechanism(DPConfig(noise_multiplier=1.0, mechanism="skellam"), rate=0.5)
    with pytest.raises(ParameterError, match="min_shares"):
        mechanism(config, shares=0)
    with pytest.raises(ParameterError, match="beyond the sampler"):
        mechanism(DPConfig(noise_multiplier=1.0, bits=48), shares=1)
    mech = mechanism(config, dimension=10)
    with pytest.raises(ParameterError, match="rows of 10"):
        mech.encode(np.zeros(11), mech.signs(bytes(32)), np.random.default_rng(0))
    with pytest.raises(ParameterError, match="NaN"):
        mech.encode(np.full(10, np.nan), mech.signs(bytes(32)), np.random.default_rng(0))
    with pytest.raises(ParameterError, match="signs"):
        mech.encode(np.zeros(10), None, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="rng"):
        mech.encode(np.zeros(10), mech.signs(bytes(32)), None)
    with pytest.raises(ParameterError, match="signs"):
        mech.decode(np.zeros(mech.padded), None)
    with pytest.raises(ParameterError, match="2\\^53"):
        mech.decode(np.full(mech.padded, 2.0**60), mech.signs(bytes(32)))
    with pytest.raises(ParameterError, match="max_contributions"):
        mech.value_bound(0)
    for kwargs, match in (({"sampling_rate": "0.5"}, "sampling_rate"), ({"sampling_rate": True}, "sampling_rate"),
                          ({"expected_contributions": None}, "expected_contributions"),
                          ({"expected_contributions": float("nan")}, "expected_contributions"),
                          ({"min_shares": 1.0}, "min_shares"), ({"population": 0}, "population"),
                          ({"population": 7, "sampling_rate": 0.5}, "cohort")):
        arguments = dict(dimension=4, rounds=1, sampling_rate=1.0, expected_contributions=1, min_shares=1) | kwargs
        with pytest.raises(ParameterError, match=match):
            DistributedMechanism(config, **arguments)
    numpy_ints = DistributedMechanism(config, dimension=np.int64(4), rounds=np.int32(3), sampling_rate=np.float64(1),
                                      expected_contributions=np.int64(2), min_shares=np.int64(2))
    assert numpy_ints.epsilon(np.int64(3)) == numpy_ints.epsilon(3) > 0
    with pytest.raises(ParameterError, match="parties"):
        config.min_shares(-3)
    with pytest.raises(ParameterError, match="parties"):
        config.min_shares(2.5)


@pytest.mark.slow
def test_decoded_noise_variance_many_clients_masking():
    mech = mechanism(DPConfig(noise_multiplier=1.3, clip=1.0), dimension=16_000, shares=45, expected=50)
    noise = aggregate(mech, [np.zeros(16_000)] * 50, "masking", seed=7)
    assert within_sampling_error(noise.var(), mech.noise_stddev**2 * 50 / 45, noise.size, sigmas=4)
