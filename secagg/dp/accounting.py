"""Privacy accounting with Google's ``dp-accounting`` (the ``dp`` extra), imported lazily.

A training run is ``rounds`` repetitions of one mechanism: the sum of every contribution in the
round (one client update, or one record's gradient) plus integer noise whose total variance is at
least ``variance`` (integer units), with L2 sensitivity ``l2`` and L1 sensitivity ``l1``; each
contribution takes part in a round with probability ``sampling_rate`` (Poisson sampling).

* Discrete Gaussian noise split over ``shares`` parties: Kairouz, Liu and Steinke (ICML 2021,
  Theorem 1) show the sum of ``n`` independent ``N_Z(0, s^2)`` is ``rho``-zCDP with
  ``rho = e^2 / 2`` and ``e = min(sqrt(l2^2/(n s^2) + tau d / 2), l2/sqrt(n s^2) + tau sqrt(d))``,
  ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k/(k+1))``. For the noise levels used here ``tau`` is
  far below float precision and ``rho = l2^2 / (2 n s^2)``: the continuous Gaussian's. The event
  given to ``dp-accounting`` is the Gaussian with that ``rho`` (noise multiplier ``1/sqrt(2 rho)``),
  Poisson-sampled when ``sampling_rate < 1``. For ``sampling_rate = 1`` this is exact; for
  sampling it uses the Gaussian's amplification bound for the discrete sum, as Kairouz et al. do.
* Skellam noise of total variance ``v``: Agarwal, Kairouz and Liu (NeurIPS 2021, Theorem 3.5)
  give RDP ``a l2^2/(2v) + min(((2a-1) l2^2 + 6 l1)/(4 v^2), 3 l1/(2v))`` at order ``a``; its first
  branch is ``(xi, rho)``-zCDP with ``rho = l2^2/(2v) + l2^2/(2 v^2)`` and
  ``xi = (6 l1 - l2^2)/(4 v^2)`` (``xi`` clamped at 0), a ``ZCDpEvent``. dp-accounting has no
  subsampled bound for it, so Skellam needs ``sampling_rate = 1``.

Everything goes through ``dp_accounting.rdp.RdpAccountant`` with add-or-remove-one neighbours, so a
reported epsilon is dp-accounting's for the event :meth:`MechanismAccountant.event` returns.
"""

from __future__ import annotations

import functools
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

from secagg.errors import ParameterError

__all__ = ["MechanismAccountant", "require_dp_accounting", "epsilon_for_noise_multiplier",
           "calibrate_noise_multiplier", "distributed_gaussian_rho"]


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


def _check_schedule(sampling_rate: float, rounds: int, delta: float) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
    if not (isinstance(sampling_rate, (int, float)) and 0 < sampling_rate <= 1):
        raise ParameterError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ParameterError(f"delta must be in (0, 1), got {delta!r}")


def _gaussian_event(noise_multiplier: float, sampling_rate: float):
    dp_accounting = require_dp_accounting()
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return gaussian if sampling_rate >= 1 else dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)


def epsilon_for_noise_multiplier(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Epsilon of ``rounds`` Poisson-sampled Gaussian mechanisms (dp-accounting's RDP accountant)."""
    _check_schedule(sampling_rate, rounds, delta)
    if not noise_multiplier > 0:
        raise ParameterError(f"noise_multiplier must be > 0, got {noise_multiplier!r}")
    dp_accounting = require_dp_accounting()
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(_gaussian_event(noise_multiplier, sampling_rate), rounds)
    return float(accountant.get_epsilon(delta))


def calibrate_noise_multiplier(epsilon: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Smallest Gaussian noise multiplier (to 1e-6 relative) whose epsilon over the schedule is <= ``epsilon``."""
    _check_schedule(sampling_rate, rounds, delta)
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ParameterError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    dp_accounting = require_dp_accounting()

    def event(z):
        return dp_accounting.SelfComposedDpEvent(_gaussian_event(z, sampling_rate), rounds)

    with _quiet_absl():
        z = dp_accounting.calibrate_dp_mechanism(
            dp_accounting.rdp.RdpAccountant, event, float(epsilon), float(delta),
            dp_accounting.LowerEndpointAndGuess(1e-3, 1.0), tol=1e-7)
        while epsilon_for_noise_multiplier(z, sampling_rate, rounds, delta) > epsilon:
            z *= 1 + 1e-6
    return float(z)


def distributed_gaussian_rho(l2: float, share_variance: float, shares: int, dimension: int) -> float:
    """zCDP ``rho`` of the sum of ``shares`` independent ``N_Z(0, share_variance)`` vectors of
    ``dimension`` coordinates for L2 sensitivity ``l2`` (Kairouz, Liu, Steinke 2021, Theorem 1)."""
    total = shares * share_variance
    k = range(1, min(shares, 10_000))
    tau = 10 * sum(math.exp(-2 * math.pi**2 * share_variance * j / (j + 1)) for j in k)
    if shares > 10_000:  # the remaining terms are each at most the last one computed
        tau += 10 * (shares - 10_000) * math.exp(-math.pi**2 * share_variance)
    e = min(math.sqrt(l2**2 / total + tau * dimension / 2), l2 / math.sqrt(total) + tau * math.sqrt(dimension))
    return e * e / 2


@dataclass(frozen=True)
class MechanismAccountant:
    """The privacy of a training run whose rounds each apply one distributed-noise mechanism.

    ``variance`` is the smallest total noise variance of a round's sum (integer units), ``shares`` the
    smallest number of parties whose noise is in it, ``l2``/``l1`` the sensitivities of one
    contribution (integer units), ``dimension`` the vector length.
    """

    mechanism: str  # "dgauss" or "skellam"
    l2: float
    l1: float
    variance: float
    shares: int
    dimension: int
    sampling_rate: float
    delta: float

    def __post_init__(self) -> None:
        if self.mechanism not in ("dgauss", "skellam"):
            raise ParameterError(f"mechanism must be 'dgauss' or 'skellam', got {self.mechanism!r}")
        if not (0 < self.sampling_rate <= 1):
            raise ParameterError(f"sampling_rate must be in (0, 1], got {self.sampling_rate!r}")
        if self.mechanism == "skellam" and self.sampling_rate < 1:
            raise ParameterError("Skellam accounting needs every contribution in every round (sampling_rate 1): "
                                 "dp-accounting has no subsampled bound for it; use mechanism 'dgauss'")
        if not 0 < self.delta < 1:
            raise ParameterError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (self.l2 > 0 and self.variance > 0 and self.shares >= 1):
            raise ParameterError("l2, variance and shares must be positive")

    def event(self, rounds: int = 1):
        """The ``dp_accounting`` event of ``rounds`` rounds."""
        dp_accounting = require_dp_accounting()
        if self.mechanism == "dgauss":
            rho = distributed_gaussian_rho(self.l2, self.variance / self.shares, self.shares, self.dimension)
            one = _gaussian_event(1 / math.sqrt(2 * rho), self.sampling_rate)
        else:
            v = self.variance
            rho = self.l2**2 / (2 * v) + self.l2**2 / (2 * v * v)
            xi = max(0.0, (6 * self.l1 - self.l2**2) / (4 * v * v))
            one = dp_accounting.ZCDpEvent(rho, xi)
        return dp_accounting.SelfComposedDpEvent(one, rounds)

    @functools.cached_property
    def _one_round(self):
        dp_accounting = require_dp_accounting()
        accountant = dp_accounting.rdp.RdpAccountant()
        with _quiet_absl():
            accountant.compose(self.event(1))
        return accountant.orders, accountant.rdp

    def epsilon(self, rounds: int) -> float:
        """Epsilon at :attr:`delta` after ``rounds`` rounds (0 rounds: 0).

        The same numbers as ``RdpAccountant().compose(self.event(rounds)).get_epsilon(delta)``: the
        accountant composes ``rounds`` copies by multiplying one round's RDP curve by ``rounds``,
        which is what is done here once the curve is cached.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ParameterError(f"rounds must be a non-negative int, got {rounds!r}")
        if rounds == 0:
            return 0.0
        dp_accounting = require_dp_accounting()
        orders, rdp = self._one_round
        epsilon, _ = dp_accounting.rdp.rdp_privacy_accountant.compute_epsilon(orders, rounds * rdp, self.delta)
        return float(epsilon)
