import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding import FixedPointEncoder
from secagg.errors import ParameterError


@given(st.integers(1, 20), st.integers(1, 10_000), st.floats(0.01, 100), st.integers(0, 24), st.integers(0, 2**32))
def test_sum_decodes_within_the_documented_bound(n, max_weight, clip, f, seed):
    enc = FixedPointEncoder(num_clients=n, max_weight=max_weight, clip=clip, fractional_bits=f)
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, max_weight + 1, n)
    updates = [rng.uniform(-1.5 * clip, 1.5 * clip, 7) for _ in range(n)]  # some beyond the clip
    vectors = [enc.encode(w * u, w, rng) for w, u in zip(weights, updates)]
    total, weight = enc.decode_sum(enc.ring.sum(vectors))
    expected = sum(w * np.clip(u, -clip, clip) for w, u in zip(weights, updates))
    assert weight == int(weights.sum())
    assert np.all(np.abs(total - expected) <= enc.error_bound(n) * (1 + 1e-9) + 1e-9 * np.abs(expected))


def test_stochastic_rounding_is_unbiased():
    enc = FixedPointEncoder(num_clients=1, max_weight=1, clip=1.0, fractional_bits=2)  # step 0.25
    rng = np.random.default_rng(0)
    x = np.full(200_000, 0.1)  # between 0 and 0.25: rounds to 0 or 0.25
    decoded, _ = enc.decode_sum(enc.encode(x, 1, rng))
    assert set(np.unique(decoded)) == {0.0, 0.25}
    assert abs(decoded.mean() - 0.1) < 0.002  # standard error ~ 0.0003


@pytest.mark.parametrize("bits", [26, 40, 63, 64])
def test_negative_values_survive_twos_complement(bits):
    enc = FixedPointEncoder(num_clients=3, max_weight=100, clip=1.0, fractional_bits=16, modulus_bits=bits)
    rng = np.random.default_rng(1)
    vectors = [enc.encode(np.array([-100.0, -0.5, 0.0, 100.0]), 100, rng) for _ in range(3)]
    total, weight = enc.decode_sum(enc.ring.sum(vectors))
    assert np.allclose(total, [-300, -1.5, 0, 300], atol=enc.error_bound(3)) and weight == 300


def test_ring_size_is_the_smallest_that_cannot_wrap():
    enc = FixedPointEncoder(num_clients=8, max_weight=1000, clip=1.0, fractional_bits=16)
    bound = 8 * (1000 * 2**16 + 1)
    assert 2 ** (enc.modulus_bits - 1) > bound >= 2 ** (enc.modulus_bits - 2)
    # the extreme sum decodes without wrapping
    rng = np.random.default_rng(0)
    vectors = [enc.encode(np.array([1000.0, -1000.0]), 1000, rng) for _ in range(8)]
    total, _ = enc.decode_sum(enc.ring.sum(vectors))
    assert total.tolist() == [8000.0, -8000.0]


@pytest.mark.parametrize("kwargs,match", [
    ({"num_clients": 10**6, "max_weight": 10**9, "fractional_bits": 30}, "2\\*\\*52"),
    ({"num_clients": 2**40, "max_weight": 2**20, "fractional_bits": 10}, "64"),
    ({"clip": 0.0}, "clip"),
    ({"clip": math.nan}, "clip"),
    ({"max_weight": 0.5}, "max_weight"),
    ({"fractional_bits": 60}, "fractional_bits"),
    ({"num_clients": 0}, "num_clients"),
    ({"modulus_bits": 8}, "modulus_bits"),
])
def test_impossible_configurations_name_the_parameter(kwargs, match):
    args = {"num_clients": 4, "max_weight": 100, "clip": 1.0, "fractional_bits": 16} | kwargs
    with pytest.raises(ParameterError, match=match):
        FixedPointEncoder(**args)


@pytest.mark.parametrize("update,weight,match", [
    (np.array([np.nan, 1.0]), 1, "NaN"),
    (np.array([np.inf, 1.0]), 1, "NaN"),
    (np.ones((2, 2)), 1, "1-D"),
    (np.ones(2), 101, "weight"),
    (np.ones(2), -1, "weight"),
    (np.ones(2), 1.5, "whole number"),
])
def test_bad_updates_are_refused(update, weight, match):
    enc = FixedPointEncoder(num_clients=4, max_weight=100, clip=1.0)
    with pytest.raises(ParameterError, match=match):
        enc.encode(update, weight, np.random.default_rng(0))
