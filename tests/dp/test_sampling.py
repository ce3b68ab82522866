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


@pytest.mark.parametrize("variance", [1e14, 1e15, 2.0**50])
def test_skellam_keeps_its_variance_up_to_the_largest_accepted(variance):
    # float64 PTRS used to lose the law above ~1e14 (the log-factorial cancelled) and to return 0
    # above ~1.8e19 (int64 overflow of the Poisson values)
    n = 200_000
    samples = sample_skellam(variance, n, TestOnlySeededRandomness(11, str(variance).encode())).astype(np.float64)
    assert within(samples.var() / variance, 1.0, 5 * math.sqrt(2 / n))
    assert abs(samples.mean()) < 5 * math.sqrt(variance / n)
    assert np.count_nonzero(samples) > 0.99 * n


def within(value, target, tolerance):
    return abs(value - target) <= tolerance


@pytest.mark.parametrize("mean", [10.0, 10.7, 1000.5, 3e12, 2.0**49])
def test_poisson_offsets_follow_the_exact_law(mean):
    stats = pytest.importorskip("scipy.stats")
    n = 200_000
    offsets = sampling._poisson_offsets(TestOnlySeededRandomness(12, str(mean).encode()), mean, n)
    base = math.floor(mean)
    if mean < 1e4:
        pvalue = chi_square_pvalue(offsets, lambda k: stats.poisson.pmf(k + base, mean))
    else:  # 40 bins of the exact law, edges within +-5 standard deviations
        edges = np.round(np.linspace(-5, 5, 41) * math.sqrt(mean))
        probabilities = np.diff(np.concatenate([[0.0], stats.poisson.cdf(base + edges, mean), [1.0]]))
        counts = np.bincount(np.searchsorted(edges, offsets, side="left"), minlength=probabilities.size)
        used = probabilities * n > 5
        statistic = np.sum((counts[used] - n * probabilities[used]) ** 2 / (n * probabilities[used]))
        pvalue = stats.chi2.sf(statistic, used.sum() - 1)
    assert pvalue > 1e-3


def test_poisson_log_probabilities_have_no_cancellation():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for mean in (10.7, 123.4, 1e8 + 0.5, 2.0**49):
        base = math.floor(mean)
        offsets = np.unique(np.round(np.linspace(-min(base - 1, 12 * math.sqrt(mean)), 12 * math.sqrt(mean), 25)))
        delta = offsets - (mean - base)
        k = mean + delta
        ours = -sampling._bd0(k, delta, mean) - 0.5 * np.log(2 * math.pi * k) - sampling._stirlerr(k)
        exact = [float(-mpmath.mpf(mean) + (base + o) * mpmath.log(mean) - mpmath.loggamma(base + o + 1))
                 for o in offsets]
        assert np.max(np.abs(ours - np.array(exact))) < 1e-12, mean


def test_cohorts_are_uniform_subsets_of_a_fixed_size():
    stats = pytest.importorskip("scipy.stats")
    source = TestOnlySeededRandomness(13)
    counts = np.zeros(10)
    for _ in range(3000):
        cohort = sampling.sample_cohort(10, 3, source)
        assert cohort.size == 3 and np.all(np.diff(cohort) > 0) and 0 <= cohort[0] and cohort[-1] < 10
        counts[cohort] += 1
    assert stats.chisquare(counts).pvalue > 1e-3
    assert sampling.sample_cohort(5, 5, source).tolist() == [0, 1, 2, 3, 4]
    a, b = sampling.sample_cohort(1000, 10), sampling.sample_cohort(1000, 10)  # default: a fresh CSPRNG
    assert not np.array_equal(a, b)


def test_poisson_subsample_has_the_rate():
    n = 400_000
    kept = sampling.poisson_subsample(n, 0.02, TestOnlySeededRandomness(14))
    assert kept.dtype == bool and abs(kept.mean() - 0.02) < 5 * math.sqrt(0.02 * 0.98 / n)
    assert sampling.poisson_subsample(100, 1.0, TestOnlySeededRandomness(14)).all()


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
    (lambda: AesCtrRandomness("abc"), "32 bytes"),
    (lambda: discrete_gaussian_pmf("1", np.arange(3)), "sigma2"),
    (lambda: discrete_gaussian_pmf(True, np.arange(3)), "sigma2"),
    (lambda: sample_skellam(2.0**51, 10), "2\\^50"),
    (lambda: sample_skellam("4", 10), "variance"),
    (lambda: sampling.sample_cohort(5, 6), "size"),
    (lambda: sampling.sample_cohort(5, 0), "size"),
    (lambda: sampling.poisson_subsample(5, 0.0), "rate"),
    (lambda: sampling.poisson_subsample(5, "0.5"), "rate"),
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
