"""Fixed-point encoding of real-valued, weighted updates into Z_(2^k), and back.

A client with weight ``w`` (its sample count, capped at ``max_weight``) hands over ``w * u`` where
``u`` is its update, clipped coordinate-wise to ``[-clip, clip]``. The encoder

1. clips ``w * u`` to ``[-w * clip, w * clip]`` (a no-op when the caller clipped ``u`` already),
2. scales by ``2^fractional_bits`` and rounds stochastically (unbiased: ``E[q] = x * 2^f``,
   ``|q - x * 2^f| < 1``),
3. maps the integers to Z_(2^k) in two's complement, and appends ``w`` itself as the last element,
   so the weight is summed by the same secure aggregation and the server only learns the total.

Decoding the sum of N encoded vectors returns ``(sum_k w_k u_k, sum_k w_k)`` exactly up to the
rounding: every coordinate of the decoded sum is within ``N / 2^f`` of the true (clipped) sum, and
the weighted average within ``N / (2^f * sum_k w_k)``. ``k`` is chosen so the sum can never wrap:
``2^(k-1) > N * (max_weight * clip * 2^f + 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError
from secagg.ring import MAX_BITS, Ring

__all__ = ["FixedPointEncoder", "finite_float"]


def finite_float(name: str, value: int | float) -> float:
    """A number another party sent (a JSON int or float) as a finite float; ParameterError for
    infinity and for an integer beyond a float's range (``float()`` of a 400-digit JSON integer
    raises OverflowError, an untyped crash)."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be a finite number, got {str(value)[:40]}")
    return number

_FLOAT_EXACT = 2.0**52  # scaled magnitudes beyond this lose integer precision in float64


@dataclass(frozen=True)
class FixedPointEncoder:
    """Encodes ``(w * u, w)`` pairs of up to ``num_clients`` clients into Z_(2^modulus_bits)."""

    num_clients: int
    max_weight: float
    clip: float
    fractional_bits: int = 16
    modulus_bits: int | None = None  # None: the smallest k that cannot overflow

    def __post_init__(self) -> None:
        for name in ("num_clients", "fractional_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ParameterError(f"{name} must be an integer, got {value!r}")
        if self.num_clients < 1:
            raise ParameterError(f"num_clients must be >= 1, got {self.num_clients}")
        if not 0 <= self.fractional_bits <= 52:
            raise ParameterError(f"fractional_bits must be in 0..52, got {self.fractional_bits}")
        if not (math.isfinite(self.max_weight) and self.max_weight >= 1):
            raise ParameterError(f"max_weight must be a finite number >= 1, got {self.max_weight!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ParameterError(f"clip must be a finite number > 0, got {self.clip!r}")
        bound = self.max_weight * self.clip * 2.0**self.fractional_bits
        if bound > _FLOAT_EXACT:
            raise ParameterError(
                f"max_weight * clip * 2**fractional_bits = {bound:.3g} exceeds 2**52, beyond exact float64 "
                "arithmetic: lower fractional_bits, clip or max_weight")
        needed = self.required_bits(self.num_clients, self.max_weight, self.clip, self.fractional_bits)
        if needed > MAX_BITS:
            raise ParameterError(
                f"summing {self.num_clients} clients with max_weight={self.max_weight:g}, clip={self.clip:g} and "
                f"fractional_bits={self.fractional_bits} needs a {needed}-bit ring, more than {MAX_BITS}: "
                "lower fractional_bits, clip or max_weight")
        if self.modulus_bits is None:
            object.__setattr__(self, "modulus_bits", needed)
        elif not needed <= self.modulus_bits <= MAX_BITS:
            raise ParameterError(f"modulus_bits={self.modulus_bits} cannot hold the sum; it needs {needed}..{MAX_BITS}")

    @staticmethod
    def required_bits(num_clients: int, max_weight: float, clip: float, fractional_bits: int) -> int:
        """Smallest k with 2^(k-1) > N * (max_weight * clip * 2^f + 1), i.e. no wrap-around."""
        bound = num_clients * (math.floor(max_weight * clip * 2.0**fractional_bits) + 1)
        return max(2, bound.bit_length() + 1, (num_clients * math.ceil(max_weight)).bit_length() + 1)

    @property
    def ring(self) -> Ring:
        return Ring(self.modulus_bits)  # type: ignore[arg-type]

    def vector_length(self, dimension: int) -> int:
        """Ring elements per client for an update of ``dimension`` floats (the weight is one more)."""
        return dimension + 1

    @property
    def scale(self) -> float:
        return 2.0**self.fractional_bits

    def error_bound(self, clients_in_sum: int, total_weight: float | None = None) -> float:
        """Largest decoding error of one coordinate of the sum (or, given the total weight, of the
        weighted average) caused by stochastic rounding."""
        bound = clients_in_sum / self.scale
        return bound if total_weight is None else bound / total_weight

    def quantize(self, weighted_update: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        """Steps 1-2 of the module docstring: clipped, scaled, stochastically rounded int64 values.

        Every value lies in ``[-value_bound, value_bound]``.
        """
        x = np.asarray(weighted_update, dtype=np.float64)
        if x.ndim != 1:
            raise ParameterError(f"update must be a 1-D vector, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ParameterError("update contains NaN or infinity")
        if isinstance(weight, bool) or not (isinstance(weight, (int, float, np.integer, np.floating))
                                            and math.isfinite(weight) and 0 <= weight <= self.max_weight):
            raise ParameterError(f"weight must be in [0, max_weight={self.max_weight:g}], got {weight!r}")
        if float(weight) != int(weight):
            raise ParameterError(f"weight must be a whole number (a sample count), got {weight!r}")
        limit = float(weight) * self.clip
        scaled = np.clip(x, -limit, limit) * self.scale
        floor = np.floor(scaled)
        return (floor + (rng.random(x.size) < (scaled - floor))).astype(np.int64)

    @property
    def value_bound(self) -> int:
        """Largest magnitude :meth:`quantize` can return."""
        return math.floor(self.max_weight * self.clip * self.scale) + 1

    def encode(self, weighted_update: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        """``[round(w * u * 2^f) mod 2^k ..., w]`` as a ring vector (see the module docstring)."""
        rounded = self.quantize(weighted_update, weight, rng)
        ring = self.ring
        out = np.empty(rounded.size + 1, dtype=ring.dtype)
        # two's complement: int64 -> uint64 wraps mod 2^64, the mask reduces mod 2^k
        out[:-1] = (rounded.astype(np.uint64) & np.uint64(ring.mask)).astype(ring.dtype)
        out[-1] = int(weight)
        return out

    def decode_sum(self, ring_sum: np.ndarray) -> tuple[np.ndarray, int]:
        """``(sum of w * u as float64, sum of weights)`` from the ring sum of encoded vectors."""
        ring = self.ring
        values = np.asarray(ring_sum)
        if values.ndim != 1 or values.size < 1 or values.dtype != ring.dtype:
            raise ParameterError(f"ring_sum must be a 1-D {ring.dtype} vector")
        shift = np.uint64(64 - ring.bits)
        # sign-extend from k bits: move bit k-1 to bit 63, then shift back arithmetically
        signed = (values[:-1].astype(np.uint64) << shift).view(np.int64) >> shift.astype(np.int64)
        return signed.astype(np.float64) / self.scale, int(values[-1])
