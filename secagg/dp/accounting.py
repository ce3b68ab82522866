"""Privacy accounting with Google's ``dp-accounting`` (the ``dp`` extra), imported lazily.

A training run is ``rounds`` repetitions of one mechanism: the sum of every contribution in the
round (one client update, or one record's gradient) plus integer noise whose total variance is at
least ``variance`` (integer units); one contribution has L2 norm at most ``l2`` and L1 norm at most
``l1``. Two sampling schemes, each with the neighbouring relation it is analysed under:

* **Poisson sampling, add-or-remove-one** (record level): each contribution takes part in a round
  with probability ``sampling_rate``; neighbouring datasets differ by one contribution, so the
  sensitivities are ``l2`` and ``l1``. Events: ``PoissonSampledDpEvent`` (or the bare event when
  ``sampling_rate = 1``), in ``RdpAccountant(neighboring_relation=ADD_OR_REMOVE_ONE)``.
* **A fixed-size cohort, replace-one** (client level, ``population`` given): every round takes
  ``m = sampling_rate * population`` of the ``population`` contributors, uniformly without
  replacement; neighbouring datasets replace one contributor by another, so the population and the
  number of noise shares in a round do not depend on the protected client, and the sensitivities
  are ``2 l2`` and ``2 l1`` (the difference of two clipped contributions). Events:
  ``SampledWithoutReplacementDpEvent(population, m, .)`` (Wang, Balle, Kasiviswanathan 2019,
  Theorem 27), in ``RdpAccountant(neighboring_relation=REPLACE_ONE)``.

(Under add-or-remove-one with parties adding noise shares, the protected client would bring its own
share: ``n + 1`` shares with it, ``n`` without, a change of the noise variance no Gaussian event
covers. Replace-one with a fixed cohort removes the dependence.)

Noise:

* Discrete Gaussian shares: Kairouz, Liu and Steinke (ICML 2021, Theorem 1; needs per-share
  ``sigma >= 1/2``) bound the sum of ``n`` independent ``N_Z(0, s^2)`` with
  ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k/(k+1))``; their Proposition 14 (and Google's
  ``distributed_dp`` accounting) states it as RDP ``a D^2/(2 n s^2) + tau d`` at order ``a``, the
  theorem as ``rho = D^2/(2 n s^2) + tau d / 4``. We take ``rho = min(D^2/(2 n s^2) + tau d,
  (D/sqrt(n s^2) + tau sqrt(d))^2 / 2)`` for sensitivity ``D``, which is at least both at every order
  ``a >= 1``. For the noise levels used here ``tau`` is far below float precision and ``rho`` is the
  continuous Gaussian's. The event given to ``dp-accounting`` is the Gaussian with that ``rho``
  (noise multiplier ``1/sqrt(2 rho)``), subsampled as above; for ``sampling_rate = 1`` this is exact,
  with sampling it uses the Gaussian's amplification bound for the discrete sum, as Kairouz et al. do.
* Skellam noise of total variance ``v``: Agarwal, Kairouz and Liu (NeurIPS 2021, Theorem 3.5)
  give RDP ``a D^2/(2v) + min(((2a-1) D^2 + 6 D_1)/(4 v^2), 3 D_1/(2v))`` at order ``a``; its first
  branch is ``(xi, rho)``-zCDP with ``rho = D^2/(2v) + D^2/(2 v^2)`` and
  ``xi = (6 D_1 - D^2)/(4 v^2)`` (``xi`` clamped at 0), a ``ZCDpEvent``. dp-accounting has no
  subsampled bound for it, so Skellam needs ``sampling_rate = 1``.

A reported epsilon is dp-accounting's for the event :meth:`MechanismAccountant.event` returns, in an
``RdpAccountant`` with :attr:`MechanismAccountant.neighboring_relation`.
"""

from __future__ import annotations

import functools
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError

__all__ = ["MechanismAccountant", "require_dp_accounting", "epsilon_for_noise_multiplier",
           "calibrate_noise_multiplier", "distributed_gaussian_rho", "MIN_SHARE_VARIANCE"]


def require_dp_accounting():
    """The ``dp_accounting`` module, or an ImportError naming the extra that provides it."""
    try:
        import dp_accounting
        import dp_accounting.rdp  # noqa: F401
    except ImportError:
        raise ImportError("privacy accounting needs Google's dp-accounting: pip install 'secagg[dp]'") from None
    return dp_accounting


@contextmanager
def _quiet_absl():
    """dp-accounting logs a warning for every fractional RDP order it skips while calibrating."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_int(value: object) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def _is_real(value: object) -> bool:
    return (not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value))


def _check_schedule(sampling_rate: float, rounds: int, delta: float, population: int | None = None) -> int | None:
    """Validate a schedule; the cohort size ``sampling_rate * population`` when ``population`` is given."""
    if not _is_int(rounds) or rounds < 1:
        raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
    if not (_is_real(sampling_rate) and 0 < sampling_rate <= 1):
        raise ParameterError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    if not (_is_real(delta) and 0 < delta < 1):
        raise ParameterError(f"delta must be in (0, 1), got {delta!r}")
    return _cohort(sampling_rate, population)


def _cohort(sampling_rate: float, population: int | None) -> int | None:
    if population is None:
        return None
    if not _is_int(population) or population < 1:
        raise ParameterError(f"population must be a positive int or None, got {population!r}")
    cohort = round(float(sampling_rate) * int(population))
    if not 1 <= cohort <= population or abs(cohort - float(sampling_rate) * int(population)) > 1e-6:
        raise ParameterError(f"sampling_rate * population must be a whole cohort size, got {sampling_rate!r} * "
                             f"{population}")
    return cohort


def _neighboring_relation(population: int | None):
    dp_accounting = require_dp_accounting()
    relation = dp_accounting.NeighboringRelation
    return relation.ADD_OR_REMOVE_ONE if population is None else relation.REPLACE_ONE


def _sampled(event, sampling_rate: float, population: int | None):
    """``event`` (a Gaussian) under the schedule's sampling: Poisson, a fixed cohort, or none."""
    dp_accounting = require_dp_accounting()
    if population is not None:
        return dp_accounting.SampledWithoutReplacementDpEvent(int(population), _cohort(sampling_rate, population),
                                                             event)
    return event if sampling_rate >= 1 else dp_accounting.PoissonSampledDpEvent(float(sampling_rate), event)


def _gaussian_event(noise_multiplier: float, sampling_rate: float, population: int | None = None):
    dp_accounting = require_dp_accounting()
    return _sampled(dp_accounting.GaussianDpEvent(float(noise_multiplier)), sampling_rate, population)


def _accountant(population: int | None):
    dp_accounting = require_dp_accounting()
    return dp_accounting.rdp.RdpAccountant(neighboring_relation=_neighboring_relation(population))


def epsilon_for_noise_multiplier(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float, *,
                                 population: int | None = None) -> float:
    """Epsilon of ``rounds`` sampled Gaussian mechanisms (dp-accounting's RDP accountant).

    ``noise_multiplier`` is the noise standard deviation over the sensitivity under the schedule's
    neighbouring relation. Without ``population``: Poisson sampling with ``sampling_rate``,
    add-or-remove-one; with it: a cohort of ``sampling_rate * population`` sampled without
    replacement, replace-one (module docstring).
    """
    _check_schedule(sampling_rate, rounds, delta, population)
    if not (_is_real(noise_multiplier) and noise_multiplier > 0):
        raise ParameterError(f"noise_multiplier must be a finite number > 0, got {noise_multiplier!r}")
    accountant = _accountant(population)
    with _quiet_absl():
        accountant.compose(_gaussian_event(noise_multiplier, sampling_rate, population), int(rounds))
        return float(accountant.get_epsilon(float(delta)))


def calibrate_noise_multiplier(epsilon: float, sampling_rate: float, rounds: int, delta: float, *,
                               population: int | None = None) -> float:
    """Smallest Gaussian noise multiplier (to 1e-6 relative) whose epsilon over the schedule is <= ``epsilon``
    (the schedule as in :func:`epsilon_for_noise_multiplier`)."""
    _check_schedule(sampling_rate, rounds, delta, population)
    if not (_is_real(epsilon) and epsilon > 0):
        raise ParameterError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    dp_accounting = require_dp_accounting()
    rounds = int(rounds)

    def event(z):
        return dp_accounting.SelfComposedDpEvent(_gaussian_event(z, sampling_rate, population), rounds)

    with _quiet_absl():
        z = dp_accounting.calibrate_dp_mechanism(
            functools.partial(_accountant, population), event, float(epsilon), float(delta),
            dp_accounting.LowerEndpointAndGuess(1e-3, 1.0), tol=1e-7)
    while epsilon_for_noise_multiplier(z, sampling_rate, rounds, delta, population=population) > epsilon:
        z *= 1 + 1e-6
    return float(z)


# Kairouz, Liu and Steinke's Theorem 1 holds for per-share standard deviations of at least 1/2.
MIN_SHARE_VARIANCE = 0.25


def distributed_gaussian_rho(l2: float, share_variance: float, shares: int, dimension: int) -> float:
    """zCDP ``rho`` of the sum of ``shares`` independent ``N_Z(0, share_variance)`` vectors of
    ``dimension`` coordinates for L2 sensitivity ``l2`` (Kairouz, Liu, Steinke 2021, Theorem 1, with
    the ``tau`` term taken at its larger, Proposition 14 form; see the module docstring)."""
    if not (_is_real(share_variance) and share_variance >= MIN_SHARE_VARIANCE):
        raise ParameterError(f"a discrete Gaussian share needs variance >= 1/4 (sigma >= 1/2) for the "
                             f"distributed bound, got {share_variance!r}: use more bits")
    if not _is_int(shares) or shares < 1:
        raise ParameterError(f"shares must be a positive int, got {shares!r}")
    total = shares * share_variance
    k = range(1, min(shares, 10_000))
    tau = 10 * sum(math.exp(-2 * math.pi**2 * share_variance * j / (j + 1)) for j in k)
    if shares > 10_000:  # the remaining terms are each at most the last one computed
        tau += 10 * (shares - 10_000) * math.exp(-math.pi**2 * share_variance)
    return min(l2**2 / (2 * total) + tau * dimension, (l2 / math.sqrt(total) + tau * math.sqrt(dimension)) ** 2 / 2)


@dataclass(frozen=True)
class MechanismAccountant:
    """The privacy of a training run whose rounds each apply one distributed-noise mechanism.

    ``variance`` is the smallest total noise variance of a round's sum (integer units), ``shares`` the
    smallest number of parties whose noise is in it, ``l2``/``l1`` the norm bounds of one
    contribution (integer units), ``dimension`` the vector length. Without ``population``,
    contributions are Poisson-sampled with ``sampling_rate`` (add-or-remove-one neighbours); with it,
    every round takes a cohort of ``sampling_rate * population`` without replacement (replace-one
    neighbours, sensitivities ``2 l2`` and ``2 l1``).
    """

    mechanism: str  # "dgauss" or "skellam"
    l2: float
    l1: float
    variance: float
    shares: int
    dimension: int
    sampling_rate: float
    delta: float
    population: int | None = None

    def __post_init__(self) -> None:
        if self.mechanism not in ("dgauss", "skellam"):
            raise ParameterError(f"mechanism must be 'dgauss' or 'skellam', got {self.mechanism!r}")
        if not (_is_real(self.sampling_rate) and 0 < self.sampling_rate <= 1):
            raise ParameterError(f"sampling_rate must be in (0, 1], got {self.sampling_rate!r}")
        if self.mechanism == "skellam" and self.sampling_rate < 1:
            raise ParameterError("Skellam accounting needs every contribution in every round (sampling_rate 1): "
                                 "dp-accounting has no subsampled bound for it; use mechanism 'dgauss'")
        if not (_is_real(self.delta) and 0 < self.delta < 1):
            raise ParameterError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (_is_real(self.l2) and _is_real(self.l1) and _is_real(self.variance) and self.l2 > 0
                and self.l1 > 0 and self.variance > 0):
            raise ParameterError("l2, l1 and variance must be finite and positive")
        if not (_is_int(self.shares) and self.shares >= 1 and _is_int(self.dimension) and self.dimension >= 1):
            raise ParameterError("shares and dimension must be positive ints")
        _cohort(self.sampling_rate, self.population)

    @property
    def neighboring_relation(self):
        """``dp_accounting.NeighboringRelation`` the events are accounted under (module docstring)."""
        return _neighboring_relation(self.population)

    @property
    def sensitivity_factor(self) -> int:
        """2 under replace-one (two clipped contributions differ by up to twice the bound), else 1."""
        return 1 if self.population is None else 2

    def event(self, rounds: int = 1):
        """The ``dp_accounting`` event of ``rounds`` rounds."""
        dp_accounting = require_dp_accounting()
        if not _is_int(rounds) or rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
        l2 = self.sensitivity_factor * self.l2
        l1 = self.sensitivity_factor * self.l1
        if self.mechanism == "dgauss":
            rho = distributed_gaussian_rho(l2, self.variance / self.shares, int(self.shares), int(self.dimension))
            one = _gaussian_event(1 / math.sqrt(2 * rho), self.sampling_rate, self.population)
        else:
            v = self.variance
            rho = l2**2 / (2 * v) + l2**2 / (2 * v * v)
            xi = max(0.0, (6 * l1 - l2**2) / (4 * v * v))
            one = dp_accounting.ZCDpEvent(rho, xi)
        return dp_accounting.SelfComposedDpEvent(one, int(rounds))

    @functools.cached_property
    def _one_round(self):
        accountant = _accountant(self.population)
        with _quiet_absl():
            accountant.compose(self.event(1))
        return accountant.orders, accountant.rdp

    def epsilon(self, rounds: int) -> float:
        """Epsilon at :attr:`delta` after ``rounds`` rounds (0 rounds: 0).

        The same numbers as ``RdpAccountant(neighboring_relation=self.neighboring_relation)
        .compose(self.event(rounds)).get_epsilon(delta)``: the accountant composes ``rounds`` copies
        by multiplying one round's RDP curve by ``rounds``, which is what is done here once the curve
        is cached.
        """
        if not _is_int(rounds) or rounds < 0:
            raise ParameterError(f"rounds must be a non-negative int, got {rounds!r}")
        if rounds == 0:
            return 0.0
        dp_accounting = require_dp_accounting()
        orders, rdp = self._one_round
        epsilon, _ = dp_accounting.rdp.rdp_privacy_accountant.compute_epsilon(orders, int(rounds) * rdp, self.delta)
        return float(epsilon)
