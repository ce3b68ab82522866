import numpy as np
import pytest


def chi_square_pvalue(samples, pmf, min_expected=5.0):
    """Goodness of fit of integer samples to a pmf (callable on an integer array), tails lumped
    into the end bins so every bin expects at least ``min_expected`` samples."""
    stats = pytest.importorskip("scipy.stats")
    n = samples.size
    reach = int(np.abs(samples).max()) + 50
    support = np.arange(-reach, reach + 1)
    probabilities = pmf(support)
    expected = n * probabilities
    keep = np.flatnonzero(expected >= min_expected)
    low, high = support[keep[0]], support[keep[-1]]
    inner = np.arange(low, high + 1)
    observed = np.array([np.sum(samples < low), *np.bincount(samples[(samples >= low) & (samples <= high)] - low,
                                                             minlength=inner.size), np.sum(samples > high)])
    tail_low = probabilities[support < low].sum()
    tail_high = probabilities[support > high].sum()
    expected = n * np.array([tail_low, *pmf(inner), tail_high])
    expected = expected * n / expected.sum()
    used = expected > 0
    statistic = float(np.sum((observed[used] - expected[used]) ** 2 / expected[used]))
    return float(stats.chi2.sf(statistic, used.sum() - 1))
