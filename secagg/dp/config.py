"""The one object a user fills in to train with differential privacy: :class:`DPConfig`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg.encoding import finite_float
from secagg.errors import ParameterError

__all__ = ["ACCOUNTANTS", "DPConfig", "LEVELS", "MECHANISMS", "tolerated_dropouts"]

LEVELS = ("client", "record")
MECHANISMS = ("dgauss", "skellam")
# "proven": only bounds proven for the mechanism actually run (secagg.dp.accounting);
# "gaussian_approximation": the continuous Gaussian's subsampling bounds applied to the discrete sum.
ACCOUNTANTS = ("proven", "gaussian_approximation")
# Version of the DPConfig.to_dict form; from_dict refuses any other.
CONFIG_FORMAT = 1


def _number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


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
    * ``accountant``: ``"proven"`` (default) reports only bounds proven for what is run: the
      discrete mechanism's own RDP curve, amplified by sampling with a bound that holds for any
      mechanism. ``"gaussian_approximation"`` applies the continuous Gaussian's (tighter)
      subsampling bounds to the discrete sum, which no theorem covers; opt in knowingly. Without
      sampling the two coincide. docs/dp.md names the theorems.

    :meth:`to_dict` / :meth:`from_dict` give a canonical JSON-able form, for a coordinator to
    announce the configuration and every participant to rebuild the same one.
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
    accountant: str = "proven"

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
        if self.accountant not in ACCOUNTANTS:
            raise ParameterError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")

    def to_dict(self) -> dict:
        """The canonical, JSON-able form: every field, numbers as JSON numbers, plus ``format``.

        Real-valued fields are written as floats (``epsilon=3`` and ``epsilon=3.0`` give the same
        dict), so equal configurations have equal dicts and ``json.dumps(..., sort_keys=True)`` is a
        byte-exact announcement.
        """
        out: dict = {"format": CONFIG_FORMAT}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in _REAL_FIELDS and value is not None:
                value = float(value)
            out[item.name] = value
        return out

    @classmethod
    def from_dict(cls, data: object) -> DPConfig:
        """The DPConfig of a :meth:`to_dict` form, validated (ParameterError on anything else).

        Every field must be present (an announcement that leaves one out would let the two sides
        fall back on different defaults), with no unknown keys and the right JSON types.
        """
        if not isinstance(data, dict):
            raise ParameterError(f"a DPConfig description must be a dict, got {type(data).__name__}")
        names = [item.name for item in dataclasses.fields(cls)]
        expected = {"format", *names}
        if set(data) != expected:
            missing, unknown = sorted(expected - set(data)), sorted(map(str, set(data) - expected))
            raise ParameterError(f"a DPConfig description needs exactly the keys {sorted(expected)}: "
                                 f"missing {missing}, unknown {unknown}")
        if data["format"] != CONFIG_FORMAT or isinstance(data["format"], bool):
            raise ParameterError(f"unsupported DPConfig format {data['format']!r} (this version reads {CONFIG_FORMAT})")
        for name in names:
            value = data[name]
            if name in _REAL_FIELDS:
                ok = (value is None and name in ("epsilon", "noise_multiplier")) or (
                    isinstance(value, (int, float)) and not isinstance(value, bool))
            elif name == "bits":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif name == "rotation":
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ParameterError(f"DPConfig field {name!r} has the wrong type: {value!r}")
        fields: dict[str, Any] = {  # each field's type is checked above
            name: finite_float(name, data[name]) if name in _REAL_FIELDS and data[name] is not None else data[name]
            for name in names}
        return cls(**fields)

    def min_shares(self, parties: int) -> int:
        """Fewest of ``parties`` whose noise is in the sum when ``dropout_tolerance`` of them vanish."""
        return max(1, int(parties) - tolerated_dropouts(self.dropout_tolerance, parties))


_REAL_FIELDS = frozenset({"epsilon", "delta", "noise_multiplier", "clip", "dropout_tolerance", "record_sampling_rate",
                          "range_stddevs", "rounding_beta"})
