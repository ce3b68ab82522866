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
with masking, a threshold of at least ``min_shares`` makes the protocol itself refuse. The number of
parties must not depend on the protected unit: at record level every institution takes part in
every round; at client level the round's cohort has a fixed size and neighbouring datasets replace
one client (``population``), so the protected client's own noise share is there either way.

Numerical safety: a contribution may span at most 2^52 grid steps (checked at construction), so the
rounded coordinates are exact in float64 and the squared-norm check of conditional rounding is a
float64 sum with a proven error bound, inflated by that bound before the comparison (it can reject a
vector just below the bound, never accept one above it); a party's int64 sum is bounded by
:meth:`value_bound` (refused from 2^62).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.dp.accounting import MIN_SHARE_VARIANCE, MechanismAccountant, calibrate_noise_multiplier
from secagg.dp.config import DPConfig
from secagg.dp.rotation import padded_dimension, random_signs, rotate, unrotate
from secagg.dp.sampling import SKELLAM_MAX_VARIANCE, AesCtrRandomness, sample_discrete_gaussian, sample_skellam
from secagg.errors import ParameterError

__all__ = ["DistributedMechanism"]

_MAX_REROUNDS = 10_000
# Noise beyond this many standard deviations is redrawn (truncation). The discrete Gaussian puts
# mass below exp(-60^2/2) < 1e-780 there, so the truncated law is the same for any purpose.
_TAIL_STDDEVS = 60
# Rounded coordinates are at most c + 1 in magnitude (c = clip / granularity); below 2^52 they and
# their squares' partial sums are handled by the float64 norm check with a known error bound.
_MAX_GRID_NORM = 2.0**52
# A float64 sum of d squares of exact integers is within a relative (d + 2) 2^-53 of the true sum
# (Higham, Accuracy and Stability, eq. 4.4, with the squaring's own rounding); doubled for safety.
_NORM_ROUNDING = 2.0**-52


def _is_int(value: object) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def _is_real(value: object) -> bool:
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value))


class DistributedMechanism:
    """The calibrated mechanism of one training run (see the module docstring).

    * ``dimension``: floats per contribution; ``rounds``: rounds the budget is spread over;
    * ``sampling_rate``: probability a contribution is in a round (clients at client level,
      records at record level; 1 when all take part);
    * ``population``: None for Poisson sampling with add-or-remove-one neighbours (record level);
      the number of contributors when every round takes a fixed cohort of
      ``sampling_rate * population`` of them without replacement, with replace-one neighbours
      (client level; the sensitivity of the sum is then twice the bound of one contribution);
    * ``expected_contributions``: contributions expected in a round's sum (sizes the grid only);
    * ``min_shares``: fewest parties whose noise is in a released sum.

    ``noise_multiplier`` (given or calibrated) is the total noise standard deviation over ``l2``,
    the L2 bound of one rounded contribution; under replace-one the accounted Gaussian has half of it.
    """

    def __init__(self, config: DPConfig, *, dimension: int, rounds: int, sampling_rate: float,
                 expected_contributions: float, min_shares: int, population: int | None = None) -> None:
        if not isinstance(config, DPConfig):
            raise ParameterError("config must be a DPConfig")
        if not _is_int(dimension) or dimension < 1:
            raise ParameterError(f"dimension must be a positive int, got {dimension!r}")
        if not _is_int(rounds) or rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
        if not (_is_real(sampling_rate) and 0 < sampling_rate <= 1):
            raise ParameterError(f"sampling_rate must be a number in (0, 1], got {sampling_rate!r}")
        if not (_is_real(expected_contributions) and expected_contributions > 0):
            raise ParameterError(f"expected_contributions must be a finite number > 0, got {expected_contributions!r}")
        if not _is_int(min_shares) or min_shares < 1:
            raise ParameterError(f"min_shares must be a positive int, got {min_shares!r}")
        if population is not None and (not _is_int(population) or population < 1):
            raise ParameterError(f"population must be a positive int or None, got {population!r}")
        if config.mechanism == "skellam" and sampling_rate < 1:
            raise ParameterError("Skellam noise is accounted only without sampling (every client, or every "
                                 "record, in every round); use mechanism='dgauss' with sampling")
        self.config = config
        self.dimension = int(dimension)
        self.rounds = int(rounds)
        self.sampling_rate = float(sampling_rate)
        self.population = None if population is None else int(population)
        self.min_shares = int(min_shares)
        self.padded = padded_dimension(self.dimension) if config.rotation else self.dimension
        d = self.padded
        factor = 1 if self.population is None else 2  # replace-one: two contributions differ by up to 2 l2
        if config.noise_multiplier is not None:
            z = float(config.noise_multiplier)
        else:
            z = factor * calibrate_noise_multiplier(config.epsilon, self.sampling_rate, self.rounds, config.delta,
                                                    population=self.population)
        self.noise_multiplier = z
        clip = config.clip
        spread = math.sqrt((float(expected_contributions) * clip) ** 2 / d + (z * clip) ** 2)
        self.granularity = 2 * config.range_stddevs * spread / 2**config.bits
        c = clip / self.granularity
        if c + math.sqrt(d) >= _MAX_GRID_NORM:
            raise ParameterError(f"a clipped contribution spans {c:.3g} grid steps, beyond the 2^52 that float64 "
                                 f"checks exactly: lower bits (now {config.bits}) or raise the noise")
        slack = math.sqrt(2 * math.log(1 / config.rounding_beta))
        self.l2_squared_bound = min(c * c + d / 4 + slack * (c + math.sqrt(d) / 2), (c + math.sqrt(d)) ** 2)
        self.l2 = math.sqrt(self.l2_squared_bound)
        self.l1 = min(math.sqrt(d) * self.l2, self.l2_squared_bound)
        variance = (z * self.l2) ** 2
        if config.mechanism == "dgauss":  # the distributed bound needs shares of variance >= 1/4 (KLS21, Thm 1)
            variance = max(variance, MIN_SHARE_VARIANCE * self.min_shares)
        self.accountant = self._accountant(variance)
        if config.epsilon is not None:
            for _ in range(10_000):  # the discrete corrections: a hair more noise than the Gaussian's
                if self.accountant.epsilon(self.rounds) <= config.epsilon:
                    break
                variance *= 1 + 1e-5
                self.accountant = self._accountant(variance)
            else:  # pragma: no cover
                raise ParameterError("could not calibrate the noise to the target epsilon")
        self.total_variance = variance
        # The share is rounded up to a dyadic rational so the exact sampler gets a short fraction.
        share = Fraction(math.ldexp(math.ceil(math.ldexp(variance / self.min_shares, 20)), -20))
        if share >= 2**78:  # the exact sampler needs sigma below 2^39 (uint64 products of its first step)
            raise ParameterError(f"a noise share of variance {float(share):.3g} grid units is beyond the sampler: "
                                 f"lower bits (now {config.bits})")
        if config.mechanism == "skellam" and share > SKELLAM_MAX_VARIANCE:
            raise ParameterError(f"a Skellam share of variance {float(share):.3g} grid units is above 2^50, beyond "
                                 f"the Skellam sampler's float64 accuracy: lower bits (now {config.bits}) or use "
                                 "mechanism='dgauss'")
        self.share_variance = share
        self._tail = math.ceil(_TAIL_STDDEVS * math.sqrt(float(share)))

    def _accountant(self, variance: float) -> MechanismAccountant:
        return MechanismAccountant(self.config.mechanism, self.l2, self.l1, variance, self.min_shares, self.padded,
                                   self.sampling_rate, self.config.delta, self.population)

    # ------------------------------------------------------------------ facts
    @property
    def noise_stddev(self) -> float:
        """Standard deviation of the noise of one coordinate of a decoded sum with exactly
        ``min_shares`` noise shares (real units)."""
        return math.sqrt(float(self.share_variance) * self.min_shares) * self.granularity

    def value_bound(self, max_contributions: int) -> int:
        """Largest magnitude of a coordinate a party with up to ``max_contributions`` hands over.

        Refused (ParameterError) at 2^62 and above, where the party's int64 sum could overflow.
        """
        if not _is_int(max_contributions) or max_contributions < 1:
            raise ParameterError(f"max_contributions must be a positive int, got {max_contributions!r}")
        bound = int(max_contributions) * math.floor(self.l2) + self._tail
        if bound >= 2**62:
            raise ParameterError(f"{max_contributions} contributions of up to {self.l2:.3g} grid steps overflow int64: "
                                 f"lower bits (now {self.config.bits})")
        return bound

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
        if not isinstance(rng, np.random.Generator):
            raise ParameterError(f"rng must be a numpy Generator (it drives the stochastic rounding), got {rng!r}")
        rows = np.asarray(contributions, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise ParameterError(f"contributions must be rows of {self.dimension} floats, got shape {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise ParameterError("contributions contain NaN or infinity")
        self._check_signs(signs)
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
            trial = floor[pending] + (rng.random(fraction[pending].shape) < fraction[pending])
            # |coordinates| <= c + 1 < 2^52: exact in float64; the float sum of squares is within a
            # relative d 2^-52 of the true one, so inflating it by that much before comparing can only
            # reject a vector whose true squared norm is at most the bound, never accept one above it
            norm2 = np.einsum("ij,ij->i", trial, trial)
            fits = norm2 * (1 + (trial.shape[1] + 2) * _NORM_ROUNDING) <= self.l2_squared_bound
            trial = trial.astype(np.int64)
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
    def _check_signs(self, signs: np.ndarray | None) -> None:
        if not self.config.rotation:
            return
        if not isinstance(signs, np.ndarray) or signs.shape != (self.padded,):
            raise ParameterError(f"rotation needs the round's {self.padded} signs (from signs(seed)), got "
                                 f"{type(signs).__name__}")

    def decode(self, aggregate: np.ndarray, signs: np.ndarray | None) -> np.ndarray:
        """The real-valued noisy sum (``dimension`` floats) from the aggregate of the parties' vectors."""
        self._check_signs(signs)
        values = np.asarray(aggregate, dtype=np.float64)
        if values.shape != (self.padded,):
            raise ParameterError(f"aggregate must have {self.padded} values, got shape {values.shape}")
        if not np.all(np.abs(values) < 2.0**53):
            raise ParameterError("aggregate values reach 2^53, where float64 no longer holds every integer")
        integers = np.rint(values).astype(np.int64)
        if not np.array_equal(integers.astype(np.float64), values):
            raise ParameterError("aggregate is not a vector of whole numbers (did the aggregator round it?)")
        half = np.int64(1 << (self.config.bits - 1))
        wrapped = ((integers + half) & np.int64((1 << self.config.bits) - 1)) - half
        real = wrapped.astype(np.float64) * self.granularity
        if self.config.rotation:
            return unrotate(real, signs, self.dimension)
        return real
