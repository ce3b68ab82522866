"""Distributed DP in the integer domain: what each party adds before secure aggregation, and how
the server turns the aggregate back into a real-valued sum.

One round, for contributions ``x_i`` (a client's model update at client level, one record's
gradient at record level), each of L2 norm at most ``clip``:

1. clip ``x_i`` to L2 norm ``clip``; rotate it (randomized Hadamard, public per-round signs; the
   dimension is padded to a power of two ``d``); divide by the granularity ``gamma``;
2. conditional stochastic rounding: round every coordinate up or down at random, and round again
   until the integer vector's L2 norm is at most ``l2`` (below), so the sensitivity of the integer
   sum is ``l2`` exactly, whatever the rounding did. The coins come from a 256-bit key per
   contribution, drawn from the party's secret CSPRNG (never from a public seed): the rounding of
   one contribution depends on that contribution and its own key only;
3. the party sums its rounded contributions and adds its share of the noise: discrete Gaussian
   (or Skellam) with variance ``total_variance / min_shares``, from the same secret CSPRNG;
4. the party hands the integer vector to the aggregator (any path: the values are whole numbers,
   which every aggregator sums exactly);
5. the server takes the aggregate's integer sum modulo ``2^bits`` into ``[-2^(bits-1), 2^(bits-1))``
   (modular clipping, Kairouz et al. 2021), multiplies by ``gamma`` and rotates back.

``l2^2 = min(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), (c + sqrt(d))^2)`` with ``c = clip/gamma``
is the bound of Kairouz, Liu and Steinke (2021, Proposition 22): an unconditioned rounding exceeds
it with probability ``p <= beta``, so a vector is re-rounded fewer than ``1/(1-beta)`` times on
average.

**Why the rounding coins must be secret.** The sensitivity argument compares the sum with and
without one contribution, every other contribution rounded the same way. If the coins come from a
stream anyone can replay (the trainer's seed), removing one contribution shifts the coins of every
later one, and the sum moves by far more than ``l2`` (4.2 times at 12 bits on the demo's schedule);
from a secret stream, each contribution's rounding is fresh randomness whatever the others are.

**Conditional rounding is not unbiased.** Plain stochastic rounding is; conditioning on the norm
check shrinks it slightly. With ``e`` the unconditioned rounding error (independent coordinates,
mean 0, variance at most 1/4) and ``A`` the event that the check passes (``P(A) = 1 - p``), the bias
is ``b = E[e | A] = -E[e 1_(not A)] / (1 - p)``, and for every unit vector ``u`` Cauchy-Schwarz gives
``|<u, E[e 1_(not A)]>| <= sqrt(E<u,e>^2) sqrt(p) <= sqrt(p)/2``. So ``||b||_2 <= sqrt(p) / (2 (1 - p))
<= sqrt(beta) / (2 (1 - beta))`` grid steps per contribution: at most 0.99 of one grid step in L2
norm for the default ``beta = e^-1/2`` (:attr:`DistributedMechanism.rounding_bias_bound`), whatever
the dimension; rotation back keeps the norm.

**The grid.** ``gamma`` is the finest granularity at which ``range_stddevs`` standard deviations of
a coordinate of the noisy sum fit ``[-2^(bits-1), 2^(bits-1))``: in grid units, the signal of the
expected contributions after rotation (``m c / sqrt(d)``), their rounding (variance ``m / 4``) and
the noise calibrated for the inflated bound ``l2`` (not ``c``: at low widths ``l2`` is mostly the
rounding's ``sqrt(d)/2``). The noise needed grows with ``l2``, which grows with ``c``, so this is a
monotone search for ``c``. If even the coarsest grid (``c -> 0``, where the noise still has to cover
the rounding's own sensitivity) does not fit, the width cannot reach the target and the
construction is refused, naming the smallest width that can. Values beyond the range wrap around;
that costs accuracy in that coordinate, never privacy, since the reduction is applied to the
(already private) sum.

**Calibration** never raises noise in small steps: the accountant gives the largest zCDP ``rho``
a round may have (:func:`~secagg.dp.accounting.rho_budget`, about a dozen evaluations), and the
noise variance for a given ``l2`` is the smallest with ``rho(variance) <= rho``, in closed form up to
the discrete Gaussian's ``tau`` correction (a short search when ``tau`` matters). Skellam, accounted
with its own ``(rho, xi)``, searches its variance directly. Every accepted configuration
constructs in milliseconds (``calibration_evaluations`` counts the accountant evaluations;
benchmarks/bench_dp.py times a grid of configurations).

Noise shares and dropouts: every party adds ``total_variance / min_shares``, where ``min_shares`` is
the fewest parties whose noise can be in a round's sum when up to ``dropout_tolerance`` of them
vanish. With more survivors the sum carries more noise than calibrated (privacy only improves); a
round with fewer survivors than ``min_shares`` is below the guarantee and must not be released —
with masking, a threshold of at least ``min_shares - 1`` makes the protocol itself refuse. The number
of parties must not depend on the protected unit: at record level every institution takes part in
every round; at client level the round's cohort has a fixed size and neighbouring datasets replace
one client (``population``), so the protected client's own noise share is there either way.

**Deployments** (network mode, Flower): every value above is a deterministic function of the public
:class:`MechanismParameters`, so a coordinator announces ``parameters.to_dict()`` and every party
rebuilds the same mechanism with ``MechanismParameters.from_dict(...).build()`` (and checks the
coordinator's :meth:`DistributedMechanism.calibration` with :meth:`~DistributedMechanism.check_calibration`). A participant needs nothing else:
``encode(contributions, signs)`` with the round's public rotation signs returns its integer vector,
drawing the rounding keys and the noise from a fresh CSPRNG; the server calls ``decode``.

Numerical safety: a contribution may span at most 2^52 grid steps (checked at construction), so the
rounded coordinates are exact in float64 and the squared-norm check of conditional rounding is a
float64 sum with a proven error bound, inflated by that bound before the comparison (it can reject a
vector just below the bound, never accept one above it); a party's int64 sum is bounded by
:meth:`value_bound` (refused from 2^62).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NoReturn

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.dp.accounting import (
    MIN_SHARE_VARIANCE,
    MechanismAccountant,
    _is_int,
    _is_real,
    cohort_size,
    distributed_gaussian_rho,
    monotone_boundary,
    rho_budget,
    skellam_zcdp,
    zcdp_epsilon,
)
from secagg.dp.config import DPConfig
from secagg.dp.rotation import padded_dimension, random_signs, rotate, unrotate
from secagg.dp.sampling import SKELLAM_MAX_VARIANCE, AesCtrRandomness, sample_discrete_gaussian, sample_skellam
from secagg.encoding import finite_float
from secagg.errors import ParameterError

__all__ = ["DistributedMechanism", "MechanismParameters", "ROUNDING_KEY_BYTES"]

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
# Bytes of the secret stream each contribution's rounding key takes (an AES-256 key).
ROUNDING_KEY_BYTES = 32
# Version of MechanismParameters.to_dict.
_PARAMETERS_FORMAT = 1
_BITS_RANGE = range(8, 49)


def _secret_source(source: object) -> RandomSource:
    """The party's secret randomness: a fresh AES-CTR CSPRNG unless one is given."""
    if source is None:
        return AesCtrRandomness()
    if isinstance(source, np.random.Generator):
        raise ParameterError("the rounding and the noise need secret randomness: pass a RandomSource (None draws "
                             "a fresh AES-CTR key from os.urandom), not a numpy Generator that a seed replays")
    if not isinstance(source, RandomSource):
        raise ParameterError(f"source must provide random_bytes(n), got {type(source).__name__}")
    return source


_MAX_COUNT = 1 << 53  # the largest count a float64 holds exactly (with all below it)

@dataclass(frozen=True)
class MechanismParameters:
    """Everything a :class:`DistributedMechanism` is calibrated from, all of it public.

    * ``config``: the :class:`~secagg.dp.DPConfig`;
    * ``dimension``: floats per contribution; ``rounds``: rounds the budget is spread over;
    * ``sampling_rate``: probability a contribution is in a round (clients at client level,
      records at record level; 1 when all take part);
    * ``population``: None for Poisson sampling with add-or-remove-one neighbours (record level);
      the number of contributors when every round takes a fixed cohort of
      ``sampling_rate * population`` of them without replacement, with replace-one neighbours
      (client level; the sensitivity of the sum is then twice the bound of one contribution);
    * ``expected_contributions``: contributions expected in a round's sum (sizes the grid only);
    * ``min_shares``: fewest parties whose noise is in a released sum.

    :meth:`to_dict` is the canonical JSON-able form a coordinator announces; :meth:`from_dict`
    validates it; :meth:`build` calibrates the mechanism (the same one on every machine).
    """

    config: DPConfig
    dimension: int
    rounds: int
    sampling_rate: float
    expected_contributions: float
    min_shares: int
    population: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, DPConfig):
            raise ParameterError("config must be a DPConfig")
        # counts a float holds exactly: the calibration computes with them in float64 (a larger
        # int, e.g. 400 digits of JSON, raised OverflowError deep inside it, an untyped crash)
        for name in ("dimension", "rounds", "min_shares", "population"):
            value = getattr(self, name)
            if _is_int(value) and not value <= _MAX_COUNT:
                raise ParameterError(f"{name} must be at most 2**53, got {str(value)[:40]}")
        if not _is_int(self.dimension) or self.dimension < 1:
            raise ParameterError(f"dimension must be a positive int, got {self.dimension!r}")
        if not _is_int(self.rounds) or self.rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {self.rounds!r}")
        if not (_is_real(self.sampling_rate) and 0 < self.sampling_rate <= 1):
            raise ParameterError(f"sampling_rate must be a number in (0, 1], got {self.sampling_rate!r}")
        if not (_is_real(self.expected_contributions) and self.expected_contributions > 0):
            raise ParameterError(f"expected_contributions must be a finite number > 0, got "
                                 f"{self.expected_contributions!r}")
        if not _is_int(self.min_shares) or self.min_shares < 1:
            raise ParameterError(f"min_shares must be a positive int, got {self.min_shares!r}")
        if self.population is not None and (not _is_int(self.population) or self.population < 1):
            raise ParameterError(f"population must be a positive int or None, got {self.population!r}")
        cohort_size(self.sampling_rate, self.population)
        if self.config.mechanism == "skellam" and self.sampling_rate < 1:
            raise ParameterError("Skellam noise is accounted only without sampling (every client, or every "
                                 "record, in every round); use mechanism='dgauss' with sampling")
        for name, kind in (("dimension", int), ("rounds", int), ("sampling_rate", float),
                           ("expected_contributions", float), ("min_shares", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.population is not None:
            object.__setattr__(self, "population", int(self.population))

    @classmethod
    def for_training(cls, config: DPConfig, *, rounds: int, dimension: int, parties: int, cohort: int | None = None,
                     records: object = None) -> MechanismParameters:
        """The parameters of a FedAvg run, as :class:`~secagg.fedavg.FedAvg` derives them (in process, so
        network and Flower runs that use this get the same mechanism and the same epsilon).

        Client level: ``parties`` clients, a fixed cohort of ``cohort`` (default all) per round,
        without replacement: ``population = parties``, ``sampling_rate = cohort / parties``, the cohort
        expected in a sum. Record level: every one of the ``parties`` institutions in every round
        (``cohort`` must be None or ``parties``), records Poisson-sampled at
        ``config.record_sampling_rate``; ``records`` is each institution's record count (public, or
        public upper bounds), and the expected batch is ``rate x sum(records)``. ``min_shares``
        follows ``config.dropout_tolerance`` over the round's parties; fewer than 2 is refused.
        """
        if not isinstance(config, DPConfig):
            raise ParameterError("config must be a DPConfig")
        if not _is_int(parties) or parties < 1:
            raise ParameterError(f"parties must be a positive int, got {parties!r}")
        if config.level == "client":
            cohort = int(parties) if cohort is None else cohort
            if not _is_int(cohort) or not 1 <= cohort <= parties:
                raise ParameterError(f"cohort must be an int in 1..{parties}, got {cohort!r}")
            sampling, population, expected = int(cohort) / int(parties), int(parties), float(cohort)
        else:
            if cohort is not None and cohort != parties:
                raise ParameterError("record-level DP takes every institution in every round: cohort must be None")
            counts = np.asarray(records if records is not None else [], dtype=np.float64).ravel()
            if counts.size != parties or not np.all(np.isfinite(counts)) or np.any(counts < 0):
                raise ParameterError(f"record level needs each of the {parties} institutions' record counts")
            cohort, sampling, population = int(parties), config.record_sampling_rate, None
            expected = sampling * float(counts.sum())
        if cohort < 2:
            raise ParameterError(f"DP needs at least 2 parties per round (their noise shares add up), got {cohort}")
        return cls(config, dimension=dimension, rounds=rounds, sampling_rate=sampling, expected_contributions=expected,
                   min_shares=config.min_shares(int(cohort)), population=population)

    @property
    def cohort(self) -> int | None:
        """Contributors per round at client level (``sampling_rate x population``); None at record level."""
        return cohort_size(self.sampling_rate, self.population)

    def to_dict(self) -> dict:
        """The canonical, JSON-able form (``json.dumps(..., sort_keys=True)`` is byte-exact)."""
        return {"format": _PARAMETERS_FORMAT, "config": self.config.to_dict(), "dimension": self.dimension,
                "rounds": self.rounds, "sampling_rate": self.sampling_rate,
                "expected_contributions": self.expected_contributions, "min_shares": self.min_shares,
                "population": self.population}

    @classmethod
    def from_dict(cls, data: object) -> MechanismParameters:
        """The parameters of a :meth:`to_dict` form, validated (ParameterError on anything else)."""
        keys = {"format", "config", "dimension", "rounds", "sampling_rate", "expected_contributions", "min_shares",
                "population"}
        if not isinstance(data, dict) or set(data) != keys:
            raise ParameterError(f"mechanism parameters must be a dict with exactly the keys {sorted(keys)}")
        if data["format"] != _PARAMETERS_FORMAT or isinstance(data["format"], bool):
            raise ParameterError(f"unsupported mechanism parameters format {data['format']!r}")
        for name in ("dimension", "rounds", "min_shares"):
            if isinstance(data[name], bool) or not isinstance(data[name], int):
                raise ParameterError(f"{name} must be an int, got {data[name]!r}")
        for name in ("sampling_rate", "expected_contributions"):
            if isinstance(data[name], bool) or not isinstance(data[name], (int, float)):
                raise ParameterError(f"{name} must be a number, got {data[name]!r}")
        if data["population"] is not None and (isinstance(data["population"], bool)
                                               or not isinstance(data["population"], int)):
            raise ParameterError(f"population must be an int or null, got {data['population']!r}")
        return cls(DPConfig.from_dict(data["config"]), dimension=data["dimension"], rounds=data["rounds"],
                   sampling_rate=finite_float("sampling_rate", data["sampling_rate"]),
                   expected_contributions=finite_float("expected_contributions", data["expected_contributions"]),
                   min_shares=data["min_shares"],
                   population=data["population"])

    def build(self) -> DistributedMechanism:
        """The calibrated mechanism: a deterministic function of the parameters (to the last bits of
        NumPy's vectorised ``exp``/``log``, which may differ between CPUs: see ``check_calibration``)."""
        return DistributedMechanism(self.config, dimension=self.dimension, rounds=self.rounds,
                                    sampling_rate=self.sampling_rate,
                                    expected_contributions=self.expected_contributions,
                                    min_shares=self.min_shares, population=self.population)


class DistributedMechanism:
    """The calibrated mechanism of one training run (see the module docstring).

    The arguments are those of :class:`MechanismParameters` (kept as :attr:`parameters`).
    ``noise_multiplier`` (given or calibrated) is the total noise standard deviation over ``l2``,
    the L2 bound of one rounded contribution; under replace-one the accounted sensitivity is ``2 l2``.
    ParameterError, before any work, for a configuration the width ``bits`` cannot carry (naming the
    smallest width that can).
    """

    def __init__(self, config: DPConfig, *, dimension: int, rounds: int, sampling_rate: float,
                 expected_contributions: float, min_shares: int, population: int | None = None) -> None:
        self.parameters = MechanismParameters(config, dimension=dimension, rounds=rounds, sampling_rate=sampling_rate,
                                              expected_contributions=expected_contributions, min_shares=min_shares,
                                              population=population)
        self.config = config
        self.dimension = self.parameters.dimension
        self.rounds = self.parameters.rounds
        self.sampling_rate = self.parameters.sampling_rate
        self.population = self.parameters.population
        self.min_shares = self.parameters.min_shares
        self.padded = padded_dimension(self.dimension) if config.rotation else self.dimension
        self.calibration_evaluations = 0
        self._calibrate()

    @classmethod
    def from_parameters(cls, parameters: MechanismParameters) -> DistributedMechanism:
        """The mechanism of announced :class:`MechanismParameters`."""
        if not isinstance(parameters, MechanismParameters):
            raise ParameterError("parameters must be MechanismParameters")
        return parameters.build()

    # ------------------------------------------------------------------ calibration
    def _bounds(self, c: float) -> tuple[float, float, float]:
        """``(l2^2, l2, l1)`` of a rounded contribution whose clipped norm is ``c`` grid steps."""
        d = self.padded
        slack = math.sqrt(2 * math.log(1 / self.config.rounding_beta))
        l2_squared = min(c * c + d / 4 + slack * (c + math.sqrt(d) / 2), (c + math.sqrt(d)) ** 2)
        l2 = math.sqrt(l2_squared)
        return l2_squared, l2, min(math.sqrt(d) * l2, l2_squared)

    def _dgauss_variance(self, sensitivity: float, rho: float) -> float:
        """Smallest total variance (>= min_shares / 4) whose distributed discrete Gaussian has zCDP <= ``rho``."""
        shares, d = self.min_shares, self.padded

        def zcdp(variance: float) -> float:
            return distributed_gaussian_rho(sensitivity, variance / shares, shares, d)

        variance = max(sensitivity**2 / (2 * rho), MIN_SHARE_VARIANCE * shares)
        if zcdp(variance) <= rho:  # tau negligible: the Gaussian's closed form
            return variance
        _, high, _ = monotone_boundary(lambda v: math.log(rho) - math.log(zcdp(v)), variance, lowest=variance,
                                       highest=variance * 1e30, tolerance=1e-12)
        if high is None:
            raise ParameterError("the discrete Gaussian's distributed bound cannot reach the target: lower bits")
        return high

    def _skellam_variance(self, l2: float, l1: float, gaussian_rho: float) -> float:
        """Smallest total Skellam variance whose run spends at most epsilon (Agarwal et al.'s bound)."""
        if self.config.epsilon is None:  # called only to calibrate to an epsilon: typed anyway
            raise ParameterError("calibrating Skellam noise needs a target epsilon")
        target = math.log(self.config.epsilon)

        def slack(variance: float) -> float:
            rho, xi = skellam_zcdp(l2, l1, variance)
            self.calibration_evaluations += 1
            spent = zcdp_epsilon(rho, xi, self.rounds, self.config.delta)
            return target - math.log(spent) if spent > 0 else math.inf

        start = l2**2 / (2 * gaussian_rho)
        _, high, _ = monotone_boundary(slack, start, lowest=start / 16, highest=start * 1e12, tolerance=1e-10)
        if high is None:  # pragma: no cover - Skellam's excess over the Gaussian vanishes as the variance grows
            raise ParameterError("Skellam noise cannot reach the target epsilon")
        return high

    def _variance_for(self, c: float, rho: float | None) -> tuple[float, float, float, float]:
        """``(variance, l2^2, l2, l1)`` for a clipped norm of ``c`` grid steps."""
        l2_squared, l2, l1 = self._bounds(c)
        factor = 1 if self.population is None else 2
        config = self.config
        if config.noise_multiplier is not None:
            variance = (float(config.noise_multiplier) * l2) ** 2
            if config.mechanism == "dgauss":
                variance = max(variance, MIN_SHARE_VARIANCE * self.min_shares)
        elif rho is None:  # DPConfig holds epsilon, hence a budget rho, when noise_multiplier is None: typed anyway
            raise ParameterError("calibrating the noise needs epsilon or noise_multiplier")
        elif config.mechanism == "dgauss":
            variance = self._dgauss_variance(factor * l2, rho)
        else:
            variance = self._skellam_variance(factor * l2, factor * l1, rho)
        return variance, l2_squared, l2, l1

    def _spread(self, c: float, rho: float | None) -> float:
        """Variance of one coordinate of the noisy sum, in grid units, for a clipped norm of ``c`` steps."""
        m = self.parameters.expected_contributions
        return m * m * c * c / self.padded + m / 4 + self._variance_for(c, rho)[0]

    def _refuse_width(self, rho: float | None, floor: float) -> NoReturn:
        config = self.config
        k = config.range_stddevs
        target = (f"epsilon {config.epsilon:g} (delta {config.delta:g}, {self.rounds} rounds)"
                  if config.epsilon is not None else f"noise_multiplier {config.noise_multiplier:g}")
        fits = [b for b in _BITS_RANGE if (k * k) * floor < 4.0 ** (b - 1)]
        useful = [b for b in _BITS_RANGE if (k * k) * self._spread(1.0, rho) < 4.0 ** (b - 1)]
        where = (f"the smallest width that can is bits={fits[0]}" if fits else
                 "no width up to 48 can (raise epsilon, or lower rounds, the dimension or range_stddevs)")
        if fits and useful and useful[0] > fits[0]:
            where += f" (bits={useful[0]} for a grid step no coarser than the clip)"
        _, rounding_sensitivity, _ = self._bounds(0.0)
        raise ParameterError(
            f"{target} cannot be reached at bits={config.bits}: even on the coarsest grid, {k:g} standard deviations "
            f"of a coordinate of the noisy sum (the noise covering the rounding's own sensitivity of "
            f"{rounding_sensitivity:.3g} grid steps, and the rounding of {self.parameters.expected_contributions:g} "
            f"contributions) span {2 * k * math.sqrt(floor):.4g} grid steps, more than the 2^{config.bits} = "
            f"{2**config.bits} of the grid; {where}")

    def _calibrate(self) -> None:
        config = self.config
        rho = None
        if config.epsilon is not None:
            unsampled = config.mechanism == "skellam"  # Skellam: the Gaussian budget only seeds its own search
            rho, self.calibration_evaluations = rho_budget(
                config.epsilon, self.rounds, config.delta, self.sampling_rate, population=self.population,
                accountant="proven" if unsampled else config.accountant)
        k = config.range_stddevs
        limit = 4.0 ** (config.bits - 1) / (k * k)  # the spread allowed, in squared grid units
        floor = self._spread(0.0, rho)
        if floor >= limit:
            self._refuse_width(rho, floor)
        cap = _MAX_GRID_NORM - math.sqrt(self.padded) - 2
        m = self.parameters.expected_contributions
        start = math.sqrt(limit / (m * m / self.padded + 1))
        low, high, _ = monotone_boundary(lambda c: math.log(self._spread(c, rho)) - math.log(limit), start,
                                         lowest=1e-300, highest=cap, tolerance=1e-9, value_tolerance=1e-9)
        if high is None:
            raise ParameterError(f"a clipped contribution would span {cap:.3g} grid steps or more, beyond the 2^52 "
                                 f"that float64 checks exactly: lower bits (now {config.bits}) or raise the noise")
        if low is None:  # pragma: no cover - the spread is continuous at 0, where it fits
            self._refuse_width(rho, floor)
        self.granularity = config.clip / low
        c = config.clip / self.granularity
        variance, self.l2_squared_bound, self.l2, self.l1 = self._variance_for(c, rho)
        self.accountant = self._accountant(variance)
        if config.epsilon is not None:
            for _ in range(64):  # float rounding between the budget and this accountant: a hair more noise
                if self.accountant.epsilon(self.rounds) <= config.epsilon:
                    break
                variance *= 1 + 1e-9
                self.accountant = self._accountant(variance)
            else:  # pragma: no cover
                raise ParameterError("could not calibrate the noise to the target epsilon")
        self.total_variance = variance
        self.noise_multiplier = math.sqrt(variance) / self.l2
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
                                   self.sampling_rate, self.config.delta, self.population, self.config.accountant)

    # ------------------------------------------------------------------ facts
    @property
    def noise_stddev(self) -> float:
        """Standard deviation of the noise of one coordinate of a decoded sum with exactly
        ``min_shares`` noise shares (real units)."""
        return math.sqrt(float(self.share_variance) * self.min_shares) * self.granularity

    @property
    def rounding_bias_bound(self) -> float:
        """Bound on the L2 norm of the bias of one conditionally rounded contribution, in grid steps:
        ``sqrt(beta) / (2 (1 - beta))`` (module docstring; multiply by :attr:`granularity` for real units)."""
        beta = self.config.rounding_beta
        return math.sqrt(beta) / (2 * (1 - beta))

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

    def epsilon(self, rounds: int):
        """Epsilon at the configured delta after ``rounds`` rounds: an :class:`~secagg.dp.accounting.Epsilon`
        (a float carrying ``accountant``, ``theorem`` and ``delta``)."""
        return self.accountant.epsilon(rounds)

    def calibration(self) -> dict:
        """The calibrated values the parties must agree on, JSON-able (for a coordinator to announce).

        ``padded``, ``granularity``, ``l2_squared_bound``, ``total_variance``, ``share_variance`` and
        the ``epsilon`` of the whole run; :meth:`check_calibration` compares another party's.
        """
        return {"padded": self.padded, "granularity": float(self.granularity),
                "l2_squared_bound": float(self.l2_squared_bound), "total_variance": float(self.total_variance),
                "share_variance": float(self.share_variance), "epsilon": float(self.epsilon(self.rounds))}

    def check_calibration(self, announced: object, *, rtol: float = 1e-9) -> None:
        """ParameterError unless ``announced`` (another party's :meth:`calibration`) is this one, to ``rtol``.

        A participant rebuilds the mechanism from the announced :class:`MechanismParameters` and
        checks the coordinator's calibration against its own before contributing: a different
        library version, or a coordinator announcing less noise than the parameters call for, is
        refused. The comparison allows ``rtol`` because floating-point results may differ in the
        last bits between machines (NumPy's vectorised ``exp``/``log`` are not bit-identical across
        CPUs); such differences move the granularity, bounds and epsilon by parts in 1e15, which
        changes neither the guarantee nor the decoded sum in any way that matters.
        """
        mine = self.calibration()
        if not isinstance(announced, dict) or set(announced) != set(mine):
            raise ParameterError(f"a calibration must be a dict with exactly the keys {sorted(mine)}")
        if announced["padded"] != mine["padded"] or isinstance(announced["padded"], bool):
            raise ParameterError(f"announced padded dimension {announced['padded']!r}, this mechanism has "
                                 f"{mine['padded']}")
        for name in sorted(set(mine) - {"padded"}):
            value = announced[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"announced {name} must be a finite number, got {value!r}")
            value = finite_float(f"announced {name}", value)
            if abs(value - mine[name]) > rtol * abs(mine[name]):
                raise ParameterError(f"announced {name} {value!r} differs from this party's calibration "
                                     f"{mine[name]!r} (same parameters, another library version?)")

    def signs(self, seed: bytes) -> np.ndarray:
        """The round's rotation signs from its public 32-byte seed."""
        return random_signs(seed, self.padded)

    # ------------------------------------------------------------------ client side
    def encode(self, contributions: np.ndarray, signs: np.ndarray | None, source: RandomSource | None = None
               ) -> np.ndarray:
        """One party's noisy integer vector (int64, ``padded`` long) for its contributions (rows).

        ``signs`` is the round's public rotation (``signs(seed)``; None when rotation is off).
        ``source`` is the party's secret randomness, by default a fresh AES-CTR stream keyed from
        ``os.urandom``: it gives each contribution, in row order, a 32-byte rounding key
        (:data:`ROUNDING_KEY_BYTES`), then the noise. Hand ``vector.astype(float)`` to the aggregator
        (whole numbers, summed exactly) with weight 1.
        """
        source = _secret_source(source)
        rows = np.asarray(contributions, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise ParameterError(f"contributions must be rows of {self.dimension} floats, got shape {rows.shape}")
        if not np.all(np.isfinite(rows)):
            raise ParameterError("contributions contain NaN or infinity")
        self._check_signs(signs)
        keys = source.random_bytes(ROUNDING_KEY_BYTES * rows.shape[0])
        total = self._round(rows, signs, keys).sum(axis=0)
        return total + self._noise(source)

    def _round(self, rows: np.ndarray, signs: np.ndarray | None, keys: bytes) -> np.ndarray:
        """Clip, rotate, scale and conditionally round every row, row ``i`` with the coins of the AES-CTR
        stream under ``keys[32 i: 32 i + 32]`` (so a row's rounding depends on nothing else)."""
        norms = np.linalg.norm(rows, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(norms > self.config.clip, self.config.clip / norms, 1.0)
        rows = rows * factor[:, None]
        if self.config.rotation:
            if signs is None:  # encode's _check_signs refused it: typed anyway
                raise ParameterError("rotation needs the round's signs")
            rows = rotate(rows, signs)
        scaled = rows / self.granularity
        floor = np.floor(scaled)
        fraction = scaled - floor
        count, width = scaled.shape
        streams = [AesCtrRandomness(keys[ROUNDING_KEY_BYTES * i:ROUNDING_KEY_BYTES * (i + 1)]) for i in range(count)]
        out = np.empty(scaled.shape, dtype=np.int64)
        pending = np.arange(count)
        for _ in range(_MAX_REROUNDS):
            if pending.size == 0:
                return out
            words = np.frombuffer(b"".join(streams[i].random_bytes(8 * width) for i in pending), dtype="<u8")
            uniforms = (words >> np.uint64(11)).astype(np.float64).reshape(pending.size, width) * 2.0**-53
            trial = floor[pending] + (uniforms < fraction[pending])
            # |coordinates| <= c + 1 < 2^52: exact in float64; the float sum of squares is within a
            # relative d 2^-52 of the true one, so inflating it by that much before comparing can only
            # reject a vector whose true squared norm is at most the bound, never accept one above it
            norm2 = np.einsum("ij,ij->i", trial, trial)
            fits = norm2 * (1 + (trial.shape[1] + 2) * _NORM_ROUNDING) <= self.l2_squared_bound
            trial = trial.astype(np.int64)
            out[pending[fits]] = trial[fits]
            pending = pending[~fits]
        raise ParameterError("conditional rounding kept exceeding its bound (is rounding_beta tiny?)")

    def _noise(self, source: RandomSource) -> np.ndarray:
        noise = self._sample_noise(self.padded, source)
        for _ in range(_MAX_REROUNDS):
            outside = np.flatnonzero(np.abs(noise) > self._tail)
            if outside.size == 0:
                return noise
            noise[outside] = self._sample_noise(outside.size, source)
        raise RuntimeError("noise truncation did not terminate")  # pragma: no cover

    def _sample_noise(self, size: int, source: RandomSource) -> np.ndarray:
        """``size`` samples of one party's share of the noise (the discrete Gaussian at its exact variance)."""
        if self.config.mechanism == "dgauss":
            return sample_discrete_gaussian(self.share_variance, size, source)
        return sample_skellam(float(self.share_variance), size, source)

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
            if signs is None:  # _check_signs refused it: typed anyway
                raise ParameterError("rotation needs the round's signs")
            return unrotate(real, signs, self.dimension)
        return real
