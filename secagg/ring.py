"""The ring Z_(2^k) that masked vectors live in, stored as uint32 (k <= 32) or uint64 (k > 32).

Arithmetic is NumPy's wrapping unsigned arithmetic followed by a bit mask: since 2^k divides the
storage modulus 2^32 or 2^64, reducing once at the end of a chain of additions is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg.errors import ParameterError

__all__ = ["Ring", "MIN_BITS", "MAX_BITS"]

MIN_BITS = 1
MAX_BITS = 64


@dataclass(frozen=True)
class Ring:
    """Z_(2^bits) for 1 <= bits <= 64."""

    bits: int

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise ParameterError(f"modulus_bits must be an integer, got {self.bits!r}")
        if not MIN_BITS <= int(self.bits) <= MAX_BITS:
            raise ParameterError(f"modulus_bits must be in {MIN_BITS}..{MAX_BITS}, got {self.bits}")
        object.__setattr__(self, "bits", int(self.bits))

    @property
    def dtype(self) -> np.dtype:
        """Little-endian storage dtype: uint32 up to 32 bits, uint64 above."""
        return np.dtype("<u4") if self.bits <= 32 else np.dtype("<u8")

    @property
    def element_bytes(self) -> int:
        return self.dtype.itemsize

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def is_full_width(self) -> bool:
        """True when the storage modulus equals the ring modulus, so no masking is needed."""
        return self.bits == 8 * self.element_bytes

    def zeros(self, length: int) -> np.ndarray:
        return np.zeros(length, dtype=self.dtype)

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """Reduce a storage-dtype array modulo 2^bits in place and return it."""
        if not self.is_full_width:
            np.bitwise_and(values, values.dtype.type(self.mask), out=values)
        return values

    def in_range(self, values: np.ndarray) -> bool:
        """True when every element of a storage-dtype array is below 2^bits."""
        if self.is_full_width or values.size == 0:
            return True
        return int(values.max()) <= self.mask

    def sum(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """The exact sum of storage-dtype vectors modulo 2^bits (the plaintext reference)."""
        total = np.zeros(len(vectors[0]) if len(vectors) else 0, dtype=np.uint64)
        for vector in vectors:
            np.add(total, vector, out=total, casting="unsafe")
        return self.reduce(total).astype(self.dtype)

    def element(self, values: Any, *, length: int | None = None, name: str = "input") -> np.ndarray:
        """Validate integer values in [0, 2^bits) and return them as a new storage-dtype vector.

        Accepts any 1-D integer array-like (including Python ints above 2^63 for 64-bit rings).
        Floats, booleans, negative or too-large values raise :class:`ParameterError`: real-valued
        data must be quantised first, the ring does not guess how.
        """
        try:
            # Python sequences go through object arrays so ints above 2**63 are not turned into floats.
            array = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ParameterError(f"{name} is not an integer vector: {exc}") from None
        if array.dtype == object:
            array = self._from_python_ints(array, name)
        if array.ndim != 1:
            raise ParameterError(f"{name} must be a 1-D vector, got shape {array.shape}")
        if length is not None and array.shape[0] != length:
            raise ParameterError(f"{name} has length {array.shape[0]}, expected {length}")
        if array.dtype.kind not in "iu":
            raise ParameterError(f"{name} must hold integers in [0, 2**{self.bits}), got dtype {array.dtype}")
        if array.size:
            if array.dtype.kind == "i" and int(array.min()) < 0:
                raise ParameterError(f"{name} has negative values; expected [0, 2**{self.bits})")
            if int(array.max()) > self.mask:
                raise ParameterError(f"{name} has values >= 2**{self.bits}")
        return array.astype(self.dtype, copy=True)

    def _from_python_ints(self, array: np.ndarray, name: str) -> np.ndarray:
        # Only reached for object arrays (e.g. Python ints >= 2**63); these are Python objects
        # already, so checking their type one by one costs no more than NumPy's own conversion.
        if array.ndim != 1:
            raise ParameterError(f"{name} must be a 1-D vector, got shape {array.shape}")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array):
            raise ParameterError(f"{name} must hold integers in [0, 2**{self.bits})")
        try:
            return np.array([int(v) for v in array], dtype=np.uint64)
        except OverflowError:
            raise ParameterError(f"{name} must hold integers in [0, 2**{self.bits})") from None
