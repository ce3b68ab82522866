"""The one object a user fills in to train with differential privacy: :class:`DPConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError

__all__ = ["DPConfig", "LEVELS", "MECHANISMS", "tolerated_dropouts"]

LEVELS = ("client", "record")
MECHANISMS = ("dgauss", "skellam")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _count(value: object) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def tolerated_dropouts(fraction: float, parties: int) -> int:
    """How many of ``parties`` a dropout ``fraction`` stands for: ``floor(fraction * parties)``.

    The one rounding rule for both sides of the dropout budget: the trainer drops this many
    simulated parties and :meth:`DPConfig.min_shares` tolerates this many, so a ``dropout`` equal
    to ``dropout_tolerance`` can never lose a round. The product is rounded to 9 decimals first, so
    ``0.29 * 100`` (28.999999999999996 in float64) counts as 29.
    """
    if not (_number(fraction) and 0 <= fraction < 1):
        raise ParameterError(f"a dropout fraction must be in [0, 1), got {fraction!r}")
    if not _count(parties) or parties < 1:
        raise ParameterError(f"parties must be a positive int, got {parties!r}")
    return math.floor(round(fraction * int(parties), 9))


@dataclass(frozen=True)
class DPConfig:
    """Differential privacy for :class:`secagg.fedavg.FedAvg`, noise split across the parties.

    * ``epsilon`` (target; the noise is calibrated to it over the whole run) or ``noise_multiplier``
      (noise standard deviation over the L2 bound of one contribution, fixed): exactly one of the two.
    * ``delta``: the delta of the reported (epsilon, delta), in (0, 1).
    * ``level``: ``"client"`` protects a whole client (cross-device: each client's update is clipped
      to L2 norm ``clip``; every round takes a fixed-size cohort of clients sampled without
      replacement, and neighbouring datasets replace one client, so the sensitivity of a round's sum
      is ``2 clip``); ``"record"`` protects one record of an institution (cross-silo: DP-SGD, every
      record's gradient is clipped to ``clip``, records are Poisson-sampled with
      ``record_sampling_rate``, neighbours add or remove one record, and every round is one noisy
      gradient step of the consortium).
    * ``mechanism``: ``"dgauss"`` (discrete Gaussian) or ``"skellam"`` (only without sampling).
    * ``rotation``: randomized Hadamard rotation before rounding (recommended).
    * ``bits``: the integer grid of the sum is ``Z_(2^bits)`` (modular clipping); the granularity is
      chosen so ``range_stddevs`` standard deviations of a coordinate of the sum fit.
    * ``dropout_tolerance``: fraction of a round's parties that may vanish with the guarantee intact;
      every party adds enough noise for the survivors alone to carry the calibrated total.
    * ``rounding_beta``: conditional rounding retries a vector with probability at most this.
    """

    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    clip: float = 1.0
    level: str = "client"
    mechanism: str = "dgauss"
    rotation: bool = True
    bits: int = 20
    dropout_tolerance: float = 0.1
    record_sampling_rate: float = 0.01
    range_stddevs: float = 4.0
    rounding_beta: float = math.exp(-0.5)

    def __post_init__(self) -> None:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ParameterError("give exactly one of epsilon (a target) and noise_multiplier")
        if self.epsilon is not None and not (_number(self.epsilon) and self.epsilon > 0):
            raise ParameterError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        if self.noise_multiplier is not None and not (_number(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ParameterError(f"noise_multiplier must be a finite number > 0, got {self.noise_multiplier!r}")
        if not (_number(self.delta) and 0 < self.delta < 1):
            raise ParameterError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (_number(self.clip) and self.clip > 0):
            raise ParameterError(f"clip must be a finite number > 0, got {self.clip!r}")
        if self.level not in LEVELS:
            raise ParameterError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.mechanism not in MECHANISMS:
            raise ParameterError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {self.mechanism!r}")
        if not isinstance(self.rotation, bool):
            raise ParameterError(f"rotation must be True or False, got {self.rotation!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 8 <= self.bits <= 48:
            raise ParameterError(f"bits must be an int in 8..48, got {self.bits!r}")
        if not (_number(self.dropout_tolerance) and 0 <= self.dropout_tolerance < 1):
            raise ParameterError(f"dropout_tolerance must be in [0, 1), got {self.dropout_tolerance!r}")
        if not (_number(self.record_sampling_rate) and 0 < self.record_sampling_rate <= 1):
            raise ParameterError(f"record_sampling_rate must be in (0, 1], got {self.record_sampling_rate!r}")
        if not (_number(self.range_stddevs) and self.range_stddevs > 0):
            raise ParameterError(f"range_stddevs must be > 0, got {self.range_stddevs!r}")
        if not (_number(self.rounding_beta) and 0 < self.rounding_beta < 1):
            raise ParameterError(f"rounding_beta must be in (0, 1), got {self.rounding_beta!r}")

    def min_shares(self, parties: int) -> int:
        """Fewest of ``parties`` whose noise is in the sum when ``dropout_tolerance`` of them vanish."""
        return max(1, int(parties) - tolerated_dropouts(self.dropout_tolerance, parties))
