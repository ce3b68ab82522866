import math
from fractions import Fraction

import numpy as np
import pytest

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.dp import sampling
from secagg.dp.sampling import (
    AesCtrRandomness,
    discrete_gaussian_pmf,
    discrete_gaussian_reference,
    sample_discrete_gaussian,
    sample_skellam,
)
from secagg.errors import ParameterError
from tests.dp.helpers import chi_square_pvalue


@pytest.mark.parametrize("sigma2", [0.7, 4.0, Fraction(1001, 4), 12345.678])
def test_vectorised_discrete_gaussian_fits_the_exact_pmf(sigma2):
    samples = sample_discrete_gaussian(sigma2, 100_000, TestOnlySeededRandomness(1, b"dg"))
    assert samples.dtype == np.int64 and samples.shape == (100_000,)
    assert chi_square_pvalue(samples, lambda k: discrete_gaussian_pmf(float(sigma2), k)) > 1e-3


def test_chi_square_rejects_a_slightly_wrong_variance():
    # the check above has power: 10% too much variance is caught at this sample size
    samples = sample_discrete_gaussian(25.0, 100_000, TestOnlySeededRandomness(2))
    assert chi_square_pvalue(samples, lambda k: discrete_gaussian_pmf(27.5, k)) < 1e-6


def test_reference_sampler_fits_the_exact_pmf():
    source = TestOnlySeededRandomness(3)
    samples = np.array([discrete_gaussian_reference(Fraction(9, 4), source) for _ in range(6000)])
    assert chi_square_pvalue(samples, lambda k: discrete_gaussian_pmf(2.25, k)) > 1e-3


def test_reference_and_vectorised_samplers_agree():
    stats = pytest.importorskip("scipy.stats")
    source = TestOnlySeededRandomness(4)
    reference = np.array([discrete_gaussian_reference(30.0, source) for _ in range(4000)])
    fast = sample_discrete_gaussian(30.0, 4000, source)
    assert stats.ks_2samp(reference, fast).pvalue > 1e-3
    assert stats.ks_2samp(reference, fast + 3).pvalue < 1e-3  # the comparison can tell a shift


def test_skellam_has_the_requested_law():
    stats = pytest.importorskip("scipy.stats")
    for variance in (3.0, 41.0, 2.0e5):
        samples = sample_skellam(variance, 100_000, TestOnlySeededRandomness(5, str(variance).encode()))
        pmf = lambda k, v=variance: stats.skellam.pmf(k, v / 2, v / 2)  # noqa: E731
        assert chi_square_pvalue(samples, pmf) > 1e-3, variance


def test_uniform_integers_are_uniform():
    stats = pytest.importorskip("scipy.stats")
    bound = np.full(60_000, 6, dtype=np.uint64)
    values = sampling._uniform_below(TestOnlySeededRandomness(6), bound)
    counts = np.bincount(values.astype(np.int64), minlength=6)
    assert counts.size == 6 and stats.chisquare(counts).pvalue > 1e-3
    huge = np.full(1000, 2**63 + 12345, dtype=np.uint64)  # rejection zone of almost half the words
    assert np.all(sampling._uniform_below(TestOnlySeededRandomness(7), huge) < huge)


class _Words:
    """A source replaying fixed 64-bit words."""

    def __init__(self, words):
        self.data = b"".join(int(w).to_bytes(8, "little") for w in words)

    def random_bytes(self, n):
        out, self.data = self.data[:n], self.data[n:]
        assert len(out) == n
        return out


def test_exact_bernoulli_resolves_ties_on_later_bits():
    # p = 1/3 = 0.010101..._2: its first 64-bit word is 0x5555...5; a uniform word equal to it
    # decides nothing, and the next word decides.
    third = 0x5555555555555555
    numerator = np.array([1, 1], dtype=object)
    denominator = np.array([3, 3], dtype=object)
    assert sampling._bernoulli_big(_Words([third, third, third - 1, third + 1]), numerator, denominator).tolist() == [
        True, False]
    assert sampling._bernoulli_big(_Words([third - 1, third + 1]), numerator, denominator).tolist() == [True, False]


def test_exp_coins_have_the_right_frequency():
    source = TestOnlySeededRandomness(8)
    n = 200_000
    for num, den in ((0, 5), (3, 7), (7, 7)):
        heads = sampling._bernoulli_exp_small(source, np.full(n, num, dtype=np.uint64), np.full(n, den, dtype=np.uint64))
        p = math.exp(-num / den)
        assert abs(heads.mean() - p) <= 5 * math.sqrt(p * (1 - p) / n)
    heads = sampling._bernoulli_exp_big(source, np.full(n, 5, dtype=object), 2)  # exp(-2.5)
    p = math.exp(-2.5)
    assert abs(heads.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_default_source_is_a_fresh_csprng_stream():
    a, b = sample_discrete_gaussian(100.0, 64), sample_discrete_gaussian(100.0, 64)
    assert not np.array_equal(a, b)
    assert AesCtrRandomness(bytes(32)).random_bytes(16) == AesCtrRandomness(bytes(32)).random_bytes(16)
    assert AesCtrRandomness().random_bytes(16) != AesCtrRandomness().random_bytes(16)


@pytest.mark.parametrize("call,match", [
    (lambda: sample_discrete_gaussian(-1.0, 10), "sigma2"),
    (lambda: sample_discrete_gaussian(0, 10), "sigma2"),
    (lambda: sample_discrete_gaussian(float("nan"), 10), "sigma2"),
    (lambda: sample_discrete_gaussian(1.0, -1), "size"),
    (lambda: sample_discrete_gaussian(2.0**90, 1), "too large"),
    (lambda: sample_discrete_gaussian(1.0, 3, source=object()), "random_bytes"),
    (lambda: sample_skellam(0.0, 10), "variance"),
    (lambda: discrete_gaussian_reference(-2), "sigma2"),
    (lambda: AesCtrRandomness(b"short"), "32 bytes"),
])
def test_bad_arguments_raise_parameter_error(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


@pytest.mark.slow
@pytest.mark.parametrize("sigma2", [0.3, 1.0, 50.5, 1e8])
def test_discrete_gaussian_million_samples(sigma2):
    samples = sample_discrete_gaussian(sigma2, 1_000_000, TestOnlySeededRandomness(9, str(sigma2).encode()))
    assert chi_square_pvalue(samples, lambda k: discrete_gaussian_pmf(float(sigma2), k)) > 1e-3


@pytest.mark.slow
def test_reference_sampler_large_sample():
    source = TestOnlySeededRandomness(10)
    samples = np.array([discrete_gaussian_reference(17.3, source) for _ in range(100_000)])
    assert chi_square_pvalue(samples, lambda k: discrete_gaussian_pmf(17.3, k)) > 1e-3
