"""Distributed DP in the integer domain: what each party adds before secure aggregation, and how
the server turns the aggregate back into a real-valued sum.

One round, for contributions ``x_i`` (a client's model update at client level, one record's
gradient at record level), each of L2 norm at most ``clip``:

1. clip ``x_i`` to L2 norm ``clip``; rotate it (randomized Hadamard, public per-round signs; the
   dimension is padded to a power of two ``d``); divide by the granularity ``gamma``;
2. conditional stochastic rounding: round every coordinate up or down at random (unbiased), and
   round again until the integer vector's L2 norm is at most ``l2`` (below), so the sensitivity of
   the integer sum is ``l2`` exactly, whatever the rounding did;
3. the party sums its rounded contributions and adds its share of the noise: discrete Gaussian
   (or Skellam) with variance ``total_variance / min_shares``, drawn from a CSPRNG;
4. the party hands the integer vector to the aggregator (any path: the values are whole numbers,
   which every aggregator sums exactly);
5. the server takes the aggregate's integer sum modulo ``2^bits`` into ``[-2^(bits-1), 2^(bits-1))``
   (modular clipping, Kairouz et al. 2021), multiplies by ``gamma`` and rotates back.

``l2^2 = min(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), (c + sqrt(d))^2)`` with ``c = clip/gamma``
is the bound of Kairouz, Liu and Steinke (2021, Proposition 22): an unconditioned rounding exceeds
it with probability at most ``beta``, so a vector is re-rounded fewer than ``1/(1-beta)`` times on
average.

The granularity follows the same paper: ``gamma`` is chosen so that ``range_stddevs`` standard
deviations of a coordinate of the noisy sum fill ``[-2^(bits-1), 2^(bits-1))``. Values beyond wrap
around; that costs accuracy in that coordinate, never privacy, since the reduction is applied to
the (already private) sum. The aggregators of this library carry the exact integer sum (their own
ring is sized so it cannot wrap), so the reduction here is what a ``Z_(2^bits)`` deployment would
output.

Noise shares and dropouts: every party adds ``total_variance / min_shares``, where ``min_shares`` is
the fewest parties whose noise can be in a round's sum when up to ``dropout_tolerance`` of them
vanish. With more survivors the sum carries more noise than calibrated (privacy only improves); a
round with fewer survivors than ``min_shares`` is below the guarantee and must not be released —
with masking, a threshold of at least ``min_shares`` makes the protocol itself refuse.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.dp.accounting import MechanismAccountant, calibrate_noise_multiplier
from secagg.dp.config import DPConfig
from secagg.dp.rotation import padded_dimension, random_signs, rotate, unrotate
from secagg.dp.sampling import AesCtrRandomness, sample_discrete_gaussian, sample_skellam
from secagg.errors import ParameterError

__all__ = ["DistributedMechanism"]

_MAX_REROUNDS = 10_000
# Noise beyond this many standard deviations is redrawn (truncation). The discrete Gaussian puts
# mass below exp(-60^2/2) < 1e-780 there, so the truncated law is the same for any purpose.
_TAIL_STDDEVS = 60


class DistributedMechanism:
    """The calibrated mechanism of one training run (see the module docstring).

    * ``dimension``: floats per contribution; ``rounds``: rounds the budget is spread over;
    * ``sampling_rate``: probability a contribution is in a round (clients at client level,
      records at record level; 1 when all take part);
    * ``expected_contributions``: contributions expected in a round's sum (sizes the grid only);
    * ``min_shares``: fewest parties whose noise is in a released sum.
    """

    def __init__(self, config: DPConfig, *, dimension: int, rounds: int, sampling_rate: float,
                 expected_contributions: float, min_shares: int) -> None:
        if not isinstance(config, DPConfig):
            raise ParameterError("config must be a DPConfig")
        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension < 1:
            raise ParameterError(f"dimension must be a positive int, got {dimension!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
        if not 0 < sampling_rate <= 1:
            raise ParameterError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
        if not (math.isfinite(expected_contributions) and expected_contributions > 0):
            raise ParameterError(f"expected_contributions must be > 0, got {expected_contributions!r}")
        if isinstance(min_shares, bool) or not isinstance(min_shares, (int, np.integer)) or min_shares < 1:
            raise ParameterError(f"min_shares must be a positive int, got {min_shares!r}")
        if config.mechanism == "skellam" and sampling_rate < 1:
            raise ParameterError("Skellam noise is accounted only without sampling (every client, or every "
                                 "record, in every round); use mechanism='dgauss' with sampling")
        self.config = config
        self.dimension = int(dimension)
        self.rounds = int(rounds)
        self.sampling_rate = float(sampling_rate)
        self.min_shares = int(min_shares)
        self.padded = padded_dimension(self.dimension) if config.rotation else self.dimension
        d = self.padded
        if config.noise_multiplier is not None:
            z = float(config.noise_multiplier)
        else:
            z = calibrate_noise_multiplier(config.epsilon, self.sampling_rate, self.rounds, config.delta)
        self.noise_multiplier = z
        clip = config.clip
        spread = math.sqrt((expected_contributions * clip) ** 2 / d + (z * clip) ** 2)
        self.granularity = 2 * config.range_stddevs * spread / 2**config.bits
        c = clip / self.granularity
        slack = math.sqrt(2 * math.log(1 / config.rounding_beta))
        self.l2_squared_bound = min(c * c + d / 4 + slack * (c + math.sqrt(d) / 2), (c + math.sqrt(d)) ** 2)
        self.l2 = math.sqrt(self.l2_squared_bound)
        self.l1 = min(math.sqrt(d) * self.l2, self.l2_squared_bound)
        variance = (z * self.l2) ** 2
        self.accountant = MechanismAccountant(config.mechanism, self.l2, self.l1, variance, self.min_shares, d,
                                              self.sampling_rate, config.delta)
        if config.epsilon is not None:
            for _ in range(10_000):  # the discrete corrections: a hair more noise than the Gaussian's
                if self.accountant.epsilon(self.rounds) <= config.epsilon:
                    break
                variance *= 1 + 1e-5
                self.accountant = MechanismAccountant(config.mechanism, self.l2, self.l1, variance,
                                                      self.min_shares, d, self.sampling_rate, config.delta)
            else:  # pragma: no cover
                raise ParameterError("could not calibrate the noise to the target epsilon")
        self.total_variance = variance
        # The share is rounded up to a dyadic rational so the exact sampler gets a short fraction.
        share = Fraction(math.ldexp(math.ceil(math.ldexp(variance / self.min_shares, 20)), -20))
        if share >= 2**78:  # the exact sampler needs sigma below 2^39 (uint64 products of its first step)
            raise ParameterError(f"a noise share of variance {float(share):.3g} grid units is beyond the sampler: "
                                 f"lower bits (now {config.bits})")
        self.share_variance = share
        self._tail = math.ceil(_TAIL_STDDEVS * math.sqrt(float(share)))

    # ------------------------------------------------------------------ facts
    @property
    def noise_stddev(self) -> float:
        """Standard deviation of the noise of one coordinate of a decoded sum with exactly
        ``min_shares`` noise shares (real units)."""
        return math.sqrt(float(self.share_variance) * self.min_shares) * self.granularity

    def value_bound(self, max_contributions: int) -> int:
        """Largest magnitude of a coordinate a party with up to ``max_contributions`` hands over."""
        return int(max_contributions) * math.floor(self.l2) + self._tail

    def epsilon(self, rounds: int) -> float:
        """Epsilon at the configured delta after ``rounds`` rounds (dp-accounting)."""
        return self.accountant.epsilon(rounds)

    def signs(self, seed: bytes) -> np.ndarray:
        """The round's rotation signs from its public 32-byte seed."""
        return random_signs(seed, self.padded)

    # ------------------------------------------------------------------ client side
    def encode(self, contributions: np.ndarray, signs: np.ndarray | None, rng: np.random.Generator,
               source: RandomSource | None = None) -> np.ndarray:
        """One party's noisy integer vector (int64, ``padded`` long) for its contributions (rows).

        ``signs`` is the round's public rotation (None when rotation is off); ``rng`` drives the
        stochastic rounding; the noise comes from ``source`` (default: AES-CTR keyed by os.urandom).
        """
        rows = np.asarray(contributions, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise ParameterError(f"contributions must be rows of {self.dimension} floats, got shape {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise ParameterError("contributions contain NaN or infinity")
        if self.config.rotation and (signs is None or signs.shape != (self.padded,)):
            raise ParameterError(f"rotation needs the round's {self.padded} signs")
        total = self._round(rows, signs, rng).sum(axis=0)
        return total + self._noise(source)

    def _round(self, rows: np.ndarray, signs: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        norms = np.linalg.norm(rows, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(norms > self.config.clip, self.config.clip / norms, 1.0)
        rows = rows * factor[:, None]
        if self.config.rotation:
            rows = rotate(rows, signs)
        scaled = rows / self.granularity
        floor = np.floor(scaled)
        fraction = scaled - floor
        out = np.empty(scaled.shape, dtype=np.int64)
        pending = np.arange(scaled.shape[0])
        for _ in range(_MAX_REROUNDS):
            if pending.size == 0:
                return out
            trial = (floor[pending] + (rng.random(fraction[pending].shape) < fraction[pending])).astype(np.int64)
            fits = np.einsum("ij,ij->i", trial, trial).astype(np.float64) <= self.l2_squared_bound
            out[pending[fits]] = trial[fits]
            pending = pending[~fits]
        raise ParameterError("conditional rounding kept exceeding its bound (is rounding_beta tiny?)")

    def _noise(self, source: RandomSource | None) -> np.ndarray:
        source = source if source is not None else AesCtrRandomness()
        sampler = sample_discrete_gaussian if self.config.mechanism == "dgauss" else sample_skellam
        share = self.share_variance if self.config.mechanism == "dgauss" else float(self.share_variance)
        noise = sampler(share, self.padded, source)
        for _ in range(_MAX_REROUNDS):
            outside = np.flatnonzero(np.abs(noise) > self._tail)
            if outside.size == 0:
                return noise
            noise[outside] = sampler(share, outside.size, source)
        raise RuntimeError("noise truncation did not terminate")  # pragma: no cover

    # ------------------------------------------------------------------ server side
    def decode(self, aggregate: np.ndarray, signs: np.ndarray | None) -> np.ndarray:
        """The real-valued noisy sum (``dimension`` floats) from the aggregate of the parties' vectors."""
        values = np.asarray(aggregate, dtype=np.float64)
        if values.shape != (self.padded,):
            raise ParameterError(f"aggregate must have {self.padded} values, got shape {values.shape}")
        integers = np.rint(values).astype(np.int64)
        if not np.array_equal(integers.astype(np.float64), values):
            raise ParameterError("aggregate is not a vector of whole numbers (did the aggregator round it?)")
        half = np.int64(1 << (self.config.bits - 1))
        wrapped = ((integers + half) & np.int64((1 << self.config.bits) - 1)) - half
        real = wrapped.astype(np.float64) * self.granularity
        if self.config.rotation:
            return unrotate(real, signs, self.dimension)
        return real
