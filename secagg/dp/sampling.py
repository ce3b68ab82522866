"""Integer noise for distributed DP: the exact discrete Gaussian, and Skellam, from a CSPRNG.

Discrete Gaussian ``N_Z(0, sigma^2)``: ``P[X = x]`` proportional to ``exp(-x^2 / (2 sigma^2))`` on
the integers. :func:`discrete_gaussian_reference` is Algorithm 3 of Canonne, Kamath and Steinke
(NeurIPS 2020, "The Discrete Gaussian for Differential Privacy") written one sample at a time in
exact rational arithmetic; :func:`sample_discrete_gaussian` is the same algorithm run on whole NumPy
arrays. Both are exact: every decision is a comparison between uniformly random integers and
integers (or, in the final acceptance step, the 64-bit binary expansion of a rational computed
with Python integers, extended 64 bits at a time on ties), so the output law is the discrete
Gaussian for the rational ``sigma^2`` given, with no floating-point approximation anywhere.

The algorithm, for ``t = floor(sigma) + 1``:

1. ``U`` uniform on ``{0..t-1}``; keep it with probability ``exp(-U/t)``;
2. ``V`` geometric with ``P[V = v] = (1 - 1/e) e^-v``; ``X = U + t V`` is then discrete Laplace
   with scale ``t``;
3. a fair sign bit ``S``; reject ``S = -, X = 0`` (so 0 is not counted twice); ``Z = S X``;
4. accept ``Z`` with probability ``exp(-(|Z| - sigma^2/t)^2 / (2 sigma^2))``, else start again.

``exp(-g)`` coins for rational ``g`` follow the paper's Algorithm 1: for ``g`` in [0, 1], draw
``A_k ~ Bernoulli(g/k)`` for k = 1, 2, ... until the first failure and return 1 iff the number of
draws is odd; for ``g > 1``, ``floor(g)`` coins of ``exp(-1)`` then one of ``exp(-(g - floor g))``.

Vectorisation: each step runs on a whole array of independent attempts, a loop turn per *round of
the rejection loops* (never per element): uniform integers below ``m`` come from 64-bit CSPRNG
words by rejection (exactly uniform), ``Bernoulli(n/m)`` is ``uniform_below(m) < n`` in uint64,
the geometric ``V`` is read off blocks of four ``exp(-1)`` coins, and the final exponent
``(|Z| b t - a)^2 / (2 a b t^2)`` (for ``sigma^2 = a/b``) is held in Python integers (NumPy object
arrays) because it outgrows 64 bits. One pass draws about 2.2 times as many attempts as values
still missing (about 45% are accepted), and accepted values are used in the order drawn, so every
output is an independent exact sample. 100,000 values take a fraction of a second
(benchmarks/results/dp.txt).

Skellam ``Sk(v)`` is the difference of two independent Poisson(v/2) variables (mean 0, variance
``v``); sums of Skellam variables are Skellam. :func:`sample_skellam` draws its Poisson variables
with Hörmann's transformed rejection (PTRS, 1993) for means of 10 and above and by multiplying
uniforms below. Unlike the discrete Gaussian this is exact only up to float64 arithmetic, and the
error is bounded as follows, not "near 1e-16":

* only the offset ``k - floor(mean)`` of a Poisson value is formed (the two ``floor(mean)`` cancel
  in the difference), so nothing overflows int64 and no precision is lost to the size of the mean;
* the acceptance test uses ``log P[k]`` in Loader's (2000) saddle-point form
  ``-bd0(k, mean) - log(2 pi k)/2 - stirlerr(k)``, with ``bd0`` computed from ``k - mean`` by its
  series: no cancellation between terms of size ``mean log mean`` (checked against 40-digit
  arithmetic: absolute error below 1e-13 for means up to 2^49);
* the proposal ``floor((2a/us + b) u + mean + 0.43)`` is computed in float64 from 64-bit uniforms
  (``u`` and ``0.5 - |u|`` both from the exact integer, so the tails are resolved finely). What
  remains is the float64 rounding of that continuous value (a few ulps of ``|k - mean|``, plus
  ``b ~ 2.5 sqrt(mean)``): it moves the boundaries between consecutive values, so ``P[k]`` is off by
  a relative error of about ``1e-13 + (|k - mean| + 3 sqrt(mean)) 2^-50``: below 1e-9 for every value
  within 10 standard deviations when ``v <= 2^30``, below 1e-6 at ``v = 2^50``.

Variances above :data:`SKELLAM_MAX_VARIANCE` (2^50) are refused. The default and recommended noise
is the exact discrete Gaussian.

:func:`sample_cohort` (a fixed-size uniformly random subset) and :func:`poisson_subsample` (each
item independently with probability ``rate``) draw the samples that privacy amplification by
sampling assumes unpredictable, from the same CSPRNG sources.

Randomness: every sampler takes a :class:`~secagg.crypto.randomness.RandomSource`; the default is a
fresh :class:`AesCtrRandomness` keyed from ``os.urandom``. Seeded sources are for tests only
(:class:`~secagg.crypto.randomness.TestOnlySeededRandomness`).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.crypto.randomness import RandomSource
from secagg.errors import ParameterError

__all__ = [
    "AesCtrRandomness",
    "discrete_gaussian_pmf",
    "discrete_gaussian_reference",
    "sample_discrete_gaussian",
    "sample_skellam",
    "sample_cohort",
    "poisson_subsample",
    "as_fraction",
    "SKELLAM_MAX_VARIANCE",
]

_WORD_BYTES = 8
_MAX_ITERATIONS = 100_000  # a loop still running after this many rounds means a bug, not bad luck


class AesCtrRandomness:
    """A CSPRNG: the AES-256-CTR key stream under a key from ``os.urandom`` (or a given 32-byte key).

    Faster than ``os.urandom`` for the megabytes a noise vector consumes; the key never leaves the
    object, so the stream is as unpredictable as the OS randomness that keyed it.
    """

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
            raise ParameterError(f"key must be 32 bytes, got {type(key).__name__}")
        key = os.urandom(32) if key is None else bytes(key)
        if len(key) != 32:
            raise ParameterError(f"an AES-256 key has 32 bytes, got {len(key)}")
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def random_bytes(self, n: int) -> bytes:
        return self._stream.update(bytes(n))

    def __repr__(self) -> str:
        return "AesCtrRandomness()"


def _source(source: RandomSource | None) -> RandomSource:
    if source is None:
        return AesCtrRandomness()
    if not isinstance(source, RandomSource):
        raise ParameterError(f"source must provide random_bytes(n), got {type(source).__name__}")
    return source


def _words(source: RandomSource, count: int) -> np.ndarray:
    """``count`` uniform uint64 words."""
    return np.frombuffer(source.random_bytes(_WORD_BYTES * count), dtype="<u8").astype(np.uint64)


def as_fraction(value: float | int | Fraction, name: str = "sigma2") -> Fraction:
    """``value`` as an exact positive rational (a float is taken at its exact binary value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    fraction = Fraction(value) if not isinstance(value, (np.integer, np.floating)) else Fraction(value.item())
    if fraction <= 0:
        raise ParameterError(f"{name} must be > 0, got {value!r}")
    return fraction


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ParameterError(f"size must be a non-negative integer, got {size!r}")
    return int(size)


# ----------------------------------------------------------------------------- reference (scalar)

def _randbelow(source: RandomSource, bound: int) -> int:
    """Uniform on {0..bound-1} by rejection on whole bytes."""
    nbytes = (bound.bit_length() + 7) // 8 + 1
    limit = (1 << (8 * nbytes)) // bound * bound
    while True:
        value = int.from_bytes(source.random_bytes(nbytes), "little")
        if value < limit:
            return value % bound


def _bernoulli_ref(source: RandomSource, p: Fraction) -> bool:
    return _randbelow(source, p.denominator) < p.numerator


def _bernoulli_exp_ref(source: RandomSource, gamma: Fraction) -> bool:
    """Bernoulli(exp(-gamma)) for rational gamma >= 0 (CKS20 Algorithm 1)."""
    while gamma > 1:
        if not _bernoulli_exp_ref(source, Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while _bernoulli_ref(source, gamma / k):
        k += 1
    return k % 2 == 1


def discrete_gaussian_reference(sigma2: float | Fraction, source: RandomSource | None = None) -> int:
    """One exact sample of ``N_Z(0, sigma2)`` (CKS20 Algorithm 3), rational arithmetic throughout.

    Slow (Python per sample): the reference that :func:`sample_discrete_gaussian` is checked against.
    """
    s2 = as_fraction(sigma2)
    source = _source(source)
    t = math.isqrt(s2.numerator // s2.denominator) + 1
    while True:
        u = _randbelow(source, t)
        if not _bernoulli_exp_ref(source, Fraction(u, t)):
            continue
        v = 0
        while _bernoulli_exp_ref(source, Fraction(1)):
            v += 1
        x = u + t * v
        negative = _randbelow(source, 2) == 1
        if negative and x == 0:
            continue
        if _bernoulli_exp_ref(source, (x - s2 / t) ** 2 / (2 * s2)):
            return -x if negative else x


# ----------------------------------------------------------------------------- vectorised kernels

def _uniform_below(source: RandomSource, bound: np.ndarray) -> np.ndarray:
    """Uniform integers on {0..bound_i - 1}, one per entry of the uint64 array ``bound`` (>= 1)."""
    bound = np.asarray(bound, dtype=np.uint64)
    out = np.empty(bound.shape, dtype=np.uint64)
    pending = np.arange(bound.size)
    # 2^64 mod m, computed as (2^64 - m) mod m in wrapping uint64 arithmetic (arrays wrap silently)
    excess = (np.zeros_like(bound) - bound) % bound
    accept_below = np.zeros_like(excess) - excess  # 2^64 - excess (0 stands for "accept everything")
    for _ in range(_MAX_ITERATIONS):
        if pending.size == 0:
            return out
        words = _words(source, pending.size)
        limit = accept_below[pending]
        ok = (limit == 0) | (words < limit)
        chosen = pending[ok]
        out[chosen] = words[ok] % bound[chosen]
        pending = pending[~ok]
    raise RuntimeError("uniform sampling did not terminate")  # pragma: no cover


def _bernoulli_fraction(source: RandomSource, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Bernoulli(n_i / d_i) for uint64 arrays with 0 <= n_i <= d_i."""
    return _uniform_below(source, denominator) < numerator


def _bernoulli_exp_small(source: RandomSource, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Bernoulli(exp(-n_i/d_i)) for uint64 n_i <= d_i (the K-loop of CKS20 Algorithm 1)."""
    count = numerator.size
    k = np.ones(count, dtype=np.uint64)
    active = np.arange(count)
    for _ in range(_MAX_ITERATIONS):
        if active.size == 0:
            return (k & np.uint64(1)) == 1
        success = _bernoulli_fraction(source, numerator[active], denominator[active] * k[active])
        k[active[success]] += np.uint64(1)
        active = active[success]
    raise RuntimeError("Bernoulli(exp) sampling did not terminate")  # pragma: no cover


def _bernoulli_exp_one(source: RandomSource, count: int) -> np.ndarray:
    ones = np.ones(count, dtype=np.uint64)
    return _bernoulli_exp_small(source, ones, ones)


_GEOMETRIC_BLOCK = 4


def _geometric(source: RandomSource, count: int) -> np.ndarray:
    """Successes of independent exp(-1) coins before the first failure, ``count`` times.

    Coins are drawn in blocks of a few per entry, so the loop runs about as often as the longest
    run divided by the block size; the law is exactly that of one coin after another.
    """
    v = np.zeros(count, dtype=np.uint64)
    running = np.arange(count)
    for _ in range(_MAX_ITERATIONS):
        if running.size == 0:
            return v
        coins = _bernoulli_exp_one(source, running.size * _GEOMETRIC_BLOCK).reshape(running.size, _GEOMETRIC_BLOCK)
        all_heads = coins.all(axis=1)
        leading = np.where(all_heads, _GEOMETRIC_BLOCK, np.argmin(coins, axis=1))
        v[running] += leading.astype(np.uint64)
        running = running[all_heads]
    raise RuntimeError("geometric sampling did not terminate")  # pragma: no cover


def _bernoulli_big(source: RandomSource, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Bernoulli(n_i / d_i) for object arrays of Python ints, 0 <= n_i < d_i, exactly.

    A uniform u in [0, 1) is compared with p = n/d 64 bits at a time: u < p iff the first 64-bit
    word where their binary expansions differ is smaller for u. A tie (probability 2^-64) moves on
    to the next 64 bits of both.
    """
    out = np.zeros(numerator.size, dtype=bool)
    pending = np.arange(numerator.size)
    remainder = numerator.copy()
    for _ in range(_MAX_ITERATIONS):
        if pending.size == 0:
            return out
        shifted = remainder[pending] * (1 << 64)
        digit = (shifted // denominator[pending]).astype(np.uint64)
        remainder[pending] = shifted % denominator[pending]
        words = _words(source, pending.size)
        out[pending[words < digit]] = True
        pending = pending[words == digit]
    raise RuntimeError("Bernoulli sampling did not terminate")  # pragma: no cover


def _bernoulli_exp_big(source: RandomSource, numerator: np.ndarray, denominator: int) -> np.ndarray:
    """Bernoulli(exp(-n_i/d)) for an object array of non-negative Python ints n_i and an int d."""
    whole = numerator // denominator
    fraction = numerator - whole * denominator
    result = np.ones(numerator.size, dtype=bool)
    # floor(g) coins of exp(-1), stopping at the first failure
    remaining = whole.copy()
    active = np.flatnonzero(remaining > 0)
    for _ in range(_MAX_ITERATIONS):
        if active.size == 0:
            break
        coin = _bernoulli_exp_one(source, active.size)
        result[active[~coin]] = False
        remaining[active] -= 1
        active = active[coin & (remaining[active] > 0)]
    else:  # pragma: no cover
        raise RuntimeError("Bernoulli(exp) sampling did not terminate")
    active = np.flatnonzero(result)
    k = np.ones(active.size, dtype=object)
    pending = np.arange(active.size)
    frac = fraction[active]
    for _ in range(_MAX_ITERATIONS):
        if pending.size == 0:
            break
        coin = _bernoulli_big(source, frac[pending], denominator * k[pending])
        k[pending[coin]] += 1
        pending = pending[coin]
    else:  # pragma: no cover
        raise RuntimeError("Bernoulli(exp) sampling did not terminate")
    result[active] = (k % 2 == 1).astype(bool)
    return result


def sample_discrete_gaussian(sigma2: float | Fraction, size: int, source: RandomSource | None = None) -> np.ndarray:
    """``size`` exact, independent samples of ``N_Z(0, sigma2)`` as int64 (CKS20 Algorithm 3 on arrays).

    ``sigma2`` is the variance parameter (a float is used at its exact binary value); it must keep
    ``t = floor(sigma) + 1`` below 2^40 so the uint64 products of the first step cannot overflow.
    """
    s2 = as_fraction(sigma2)
    size = _check_size(size)
    source = _source(source)
    a, b = s2.numerator, s2.denominator
    t = math.isqrt(a // b) + 1
    if t >= 1 << 40:
        raise ParameterError(f"sigma2 = {float(s2):.3g} is too large for the sampler (sigma must be below 2^40)")
    t64 = np.uint64(t)
    out = np.empty(size, dtype=np.int64)
    # acceptance exponent (|Z| - sigma2/t)^2 / (2 sigma2) = (|Z| b t - a)^2 / (2 a b t^2)
    accept_denominator = 2 * a * b * t * t
    filled = 0
    for _ in range(_MAX_ITERATIONS):
        if filled == size:
            return out
        # Independent attempts, a few more than needed (about half are accepted) so one pass
        # usually suffices; accepted values are used in the order drawn, the rest discarded
        # unused, which leaves every output an independent exact sample.
        m = (11 * (size - filled)) // 5 + 64
        u = _uniform_below(source, np.full(m, t64))
        keep = _bernoulli_exp_small(source, u, np.full(m, t64))
        u = u[keep]
        x = u + t64 * _geometric(source, u.size)
        negative = (_words(source, x.size) & np.uint64(1)) == 1
        valid = ~(negative & (x == 0))
        x, negative = x[valid], negative[valid]
        gap = x.astype(object) * (b * t) - a
        accepted = _bernoulli_exp_big(source, gap * gap, accept_denominator)
        values = x[accepted].astype(np.int64)
        values = np.where(negative[accepted], -values, values)[: size - filled]
        out[filled:filled + values.size] = values
        filled += values.size
    raise RuntimeError("discrete Gaussian sampling did not terminate")  # pragma: no cover


def discrete_gaussian_pmf(sigma2: float, support: np.ndarray) -> np.ndarray:
    """``P[X = k]`` of ``N_Z(0, sigma2)`` for the integers in ``support`` (float64; normalised by a
    sum over +-(12 sigma + 10), beyond which the mass is below 1e-30)."""
    if isinstance(sigma2, bool) or not isinstance(sigma2, (int, float, np.integer, np.floating)) or not (
            math.isfinite(sigma2) and sigma2 > 0):
        raise ParameterError(f"sigma2 must be a finite number > 0, got {sigma2!r}")
    sigma2 = float(sigma2)
    reach = int(12 * math.sqrt(sigma2)) + 10
    grid = np.arange(-reach, reach + 1, dtype=np.float64)
    normaliser = np.exp(-grid**2 / (2 * sigma2)).sum()
    k = np.asarray(support, dtype=np.float64)
    return np.exp(-k**2 / (2 * sigma2)) / normaliser


# ----------------------------------------------------------------------------- Skellam

# Largest Skellam variance sample_skellam accepts: up to it, the probability of every value within
# ten standard deviations is off by a relative error below about 1e-6 (module docstring).
SKELLAM_MAX_VARIANCE = 2.0**50

# Proposals further than this many standard deviations (plus a constant) from the mean have a
# log-probability below -200 and can never pass PTRS's acceptance test (whose left side is above
# -120 for 64-bit uniforms), so they are rejected before their logarithms are computed.
_PTRS_REACH_STDDEVS = 40


def _uniforms(source: RandomSource, count: int) -> np.ndarray:
    """Uniform floats on [0, 1) with 53 random bits each."""
    return (_words(source, count) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _centred_uniforms(source: RandomSource, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``u`` uniform on (-1/2, 1/2) and ``0.5 - |u|``, both from one 64-bit word each.

    Both are computed from the exact integer ``2w - 2^64 + 1`` (odd, so ``u`` is never 0) before the
    conversion to float, so each carries full float64 relative precision: ``0.5 - |u|`` near 0 (the
    Poisson tails) and ``u`` near 0 (the mode) are not limited to the 2^-53 grid of a 53-bit uniform.
    """
    words = _words(source, count)
    top = words >= np.uint64(1 << 63)
    # |2w - 2^64 + 1| = 2w - 2^64 + 1 for the upper half, 2^64 - 1 - 2w below (wrapping uint64 arithmetic)
    magnitude = np.where(top, (words - np.uint64(1 << 63)) * np.uint64(2) + np.uint64(1),
                         (np.uint64(1 << 63) - np.uint64(1) - words) * np.uint64(2) + np.uint64(1))
    gap = np.uint64(0) - magnitude  # 2^64 - |.| in wrapping arithmetic, in [1, 2^64 - 1]
    u = magnitude.astype(np.float64) * 2.0**-65
    u = np.where(top, u, -u)
    us = gap.astype(np.float64) * 2.0**-65
    return u, us


_STIRLING_SMALL = 16
_STIRLERR_TABLE = np.array([0.0] + [math.lgamma(n + 1.0) - 0.5 * math.log(2 * math.pi * n) - n * math.log(n) + n
                                    for n in range(1, _STIRLING_SMALL)])


def _stirlerr(n: np.ndarray) -> np.ndarray:
    """``log(n!) - (n log n - n + log(2 pi n)/2)`` for integer-valued floats ``n >= 1`` (Loader 2000)."""
    out = np.empty_like(n)
    small = n < _STIRLING_SMALL
    out[small] = _STIRLERR_TABLE[n[small].astype(np.int64)]
    big = n[~small]
    inv2 = 1.0 / (big * big)
    out[~small] = (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (1 / 1680 - inv2 / 1188)))) / big
    return out


def _bd0(k: np.ndarray, delta: np.ndarray, mean: float) -> np.ndarray:
    """``k log(k/mean) + mean - k`` for ``k = mean + delta >= 1``, without cancellation (Loader 2000).

    ``delta`` is passed separately because ``k`` itself may not be representable (for huge means
    float64 cannot hold ``mean + delta`` exactly; only ``delta`` is needed to full precision).
    """
    out = np.empty_like(k)
    near = np.abs(delta) < 0.1 * (k + mean)
    kn, dn = k[near], delta[near]
    v = dn / (kn + mean)
    total = dn * v
    term = 2 * kn * v
    v2 = v * v
    for j in range(1, 16):  # |v| < 0.1/1.9: each term is below 1e-2.5 of the previous one
        term = term * v2
        total = total + term / (2 * j + 1)
    out[near] = total
    kf = k[~near]
    out[~near] = kf * np.log(kf / mean) + mean - kf
    return out


def _poisson_offsets(source: RandomSource, mean: float, size: int) -> np.ndarray:
    """``size`` Poisson(``mean``) variables minus ``floor(mean)``, as int64.

    Only the offset from ``floor(mean)`` is ever formed, so means far beyond 2^53 (or 2^63) would not
    overflow; :data:`SKELLAM_MAX_VARIANCE` bounds them for accuracy instead (module docstring).
    """
    base = math.floor(mean)
    out = np.zeros(size, dtype=np.int64)
    pending = np.arange(size)
    if mean < 10:
        # multiply uniforms until the product falls below exp(-mean)
        limit = math.exp(-mean)
        product = np.ones(size)
        for _ in range(_MAX_ITERATIONS):
            if pending.size == 0:
                return out - base
            product[pending] *= _uniforms(source, pending.size)
            going = product[pending] > limit
            out[pending[going]] += 1
            pending = pending[going]
        raise RuntimeError("Poisson sampling did not terminate")  # pragma: no cover
    # Hörmann's PTRS on the offset k - floor(mean): the proposal is floor((2a/us + b) u + mean + 0.43),
    # written as floor((2a/us + b) u + frac + 0.43) with frac = mean - floor(mean) (exact in float64).
    frac = mean - base
    slam = math.sqrt(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    v_r = 0.9277 - 3.6224 / (b - 2)
    reach = _PTRS_REACH_STDDEVS * slam + _PTRS_REACH_STDDEVS
    for _ in range(_MAX_ITERATIONS):
        if pending.size == 0:
            return out
        m = pending.size
        u, us = _centred_uniforms(source, m)
        v = _uniforms(source, m)
        offset = np.floor((2 * a / us + b) * u + (frac + 0.43))
        quick = (us >= 0.07) & (v <= v_r)
        possible = (np.abs(offset) <= reach) & (offset >= -base) & ~((us < 0.013) & (v > us))
        slow = np.zeros(m, dtype=bool)
        candidates = np.flatnonzero(possible & ~quick)
        if candidates.size:
            off = offset[candidates]
            delta = off - frac  # k - mean, to full precision
            k = mean + delta    # only used where its relative precision suffices
            log_pmf = np.full(candidates.size, -mean)  # k = 0
            positive = off > -base
            kp, dp = k[positive], delta[positive]
            log_pmf[positive] = -_bd0(kp, dp, mean) - 0.5 * np.log(2 * math.pi * kp) - _stirlerr(kp)
            uc = us[candidates]
            with np.errstate(divide="ignore"):
                slow[candidates] = np.log(v[candidates]) + log_inv_alpha - np.log(a / (uc * uc) + b) <= log_pmf
        accept = quick | slow
        out[pending[accept]] = offset[accept].astype(np.int64)
        pending = pending[~accept]
    raise RuntimeError("Poisson sampling did not terminate")  # pragma: no cover


def sample_skellam(variance: float, size: int, source: RandomSource | None = None) -> np.ndarray:
    """``size`` samples of the symmetric Skellam law with the given variance (Poisson(v/2) - Poisson(v/2)).

    Exact up to float64 arithmetic in the Poisson sampler (module docstring); variances above
    :data:`SKELLAM_MAX_VARIANCE` (2^50) are refused, since float64 cannot resolve the law finely enough there.
    """
    if isinstance(variance, bool) or not isinstance(variance, (int, float, np.integer, np.floating)) or not (
            math.isfinite(variance) and variance > 0):
        raise ParameterError(f"variance must be a finite number > 0, got {variance!r}")
    if variance > SKELLAM_MAX_VARIANCE:
        raise ParameterError(f"Skellam variance {float(variance):.3g} is above 2^50, beyond the sampler's float64 "
                             "accuracy: use the exact discrete Gaussian, or fewer bits")
    size = _check_size(size)
    source = _source(source)
    half = float(variance) / 2
    # both Poisson variables have the same floor(mean), which cancels in the difference
    return _poisson_offsets(source, half, size) - _poisson_offsets(source, half, size)


# ----------------------------------------------------------------------------- sampling for amplification

def poisson_subsample(count: int, rate: float, source: RandomSource | None = None) -> np.ndarray:
    """Which of ``count`` items a Poisson sample with probability ``rate`` takes (a boolean mask).

    Each item is kept iff a 53-bit uniform from the CSPRNG is below ``floor(rate 2^53) / 2^53``, a
    probability at most ``rate`` and within 2^-53 of it (a smaller rate never costs privacy).
    """
    count = _check_size(count)
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not 0 < rate <= 1:
        raise ParameterError(f"rate must be a number in (0, 1], got {rate!r}")
    source = _source(source)
    threshold = np.uint64(math.floor(Fraction(float(rate)) * 2**53))
    return (_words(source, count) >> np.uint64(11)) < threshold if threshold < 2**53 else np.ones(count, dtype=bool)


def sample_cohort(population: int, size: int, source: RandomSource | None = None) -> np.ndarray:
    """A uniformly random ``size``-subset of ``range(population)``, sorted (sampling without replacement).

    Every item gets an independent 64-bit key from the CSPRNG and the ``size`` smallest keys win;
    the (2^-64-unlikely) draws with a repeated key are redrawn whole, so every subset is exactly
    equally likely.
    """
    population = _check_size(population)
    size = _check_size(size)
    if not 1 <= size <= population:
        raise ParameterError(f"size must be in 1..population ({population}), got {size}")
    if size == population:
        return np.arange(population)
    source = _source(source)
    for _ in range(_MAX_ITERATIONS):
        keys = _words(source, population)
        if np.unique(keys).size == population:
            return np.sort(np.argpartition(keys, size - 1)[:size])
    raise RuntimeError("cohort sampling did not terminate")  # pragma: no cover
