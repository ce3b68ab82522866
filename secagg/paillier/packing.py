"""Packing many fixed-point integers into one Paillier plaintext (after BatchCrypt, USENIX ATC 2020).

Each signed integer ``v`` with ``|v| <= B`` (``value_bound``) is stored as ``v + B`` in a slot of
``slot_bytes`` bytes; slot ``j`` of a plaintext holds ``2^(8 slot_bytes j)`` times its value. The slot
is wide enough that the sum of up to ``max_summands`` packed plaintexts never carries into the next
slot: ``max_summands * 2B < 2^(8 slot_bytes)``. Decoding a sum of ``k`` plaintexts subtracts ``k B``
from every slot (the offset is how negative values are handled). Slots are whole bytes, so packing
and unpacking are NumPy byte reshapes plus one big-integer conversion per plaintext.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import CryptoError, ParameterError

__all__ = ["PackingScheme"]


@dataclass(frozen=True)
class PackingScheme:
    """How values are laid out in plaintexts of a ``key_bits``-bit Paillier modulus."""

    key_bits: int
    value_bound: int
    max_summands: int

    def __post_init__(self) -> None:
        for name in ("key_bits", "value_bound", "max_summands"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if self.slot_bytes > 8:
            raise ParameterError(f"a slot for {self.max_summands} summands of |v| <= {self.value_bound} needs "
                                 f"{self.slot_bytes} bytes, more than 8: lower the precision or the weight cap")
        if self.slots < 1:
            raise ParameterError(f"a {self.key_bits}-bit key cannot hold one {self.slot_bytes}-byte slot")

    @property
    def slot_bytes(self) -> int:
        """Bytes per slot: the largest sum, max_summands * 2B, must fit."""
        return max(1, math.ceil((self.max_summands * 2 * self.value_bound).bit_length() / 8))

    @property
    def slots(self) -> int:
        """Values per plaintext; the packed integer stays below 2^(key_bits - 2) < N."""
        return (self.key_bits - 2) // (8 * self.slot_bytes)

    def plaintexts_for(self, count: int) -> int:
        return -(-count // self.slots)

    def pack(self, values: np.ndarray) -> list[int]:
        """Signed integers (|v| <= value_bound) -> plaintext integers."""
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise ParameterError("pack() takes a 1-D integer vector")
        if values.size and int(np.abs(values.astype(np.int64)).max()) > self.value_bound:
            raise ParameterError(f"a value exceeds the packing bound {self.value_bound}")
        shifted = (values.astype(np.int64) + self.value_bound).astype("<u8")
        per_plaintext = self.slots * self.slot_bytes
        raw = np.frombuffer(shifted.tobytes(), dtype=np.uint8).reshape(-1, 8)[:, : self.slot_bytes].tobytes()
        return [int.from_bytes(raw[i:i + per_plaintext], "little") for i in range(0, len(raw), per_plaintext)]

    def unpack(self, plaintexts: list[int], count: int, summands: int) -> np.ndarray:
        """The ``count`` slot sums of ``summands`` packed vectors, offsets removed (int64).

        A slot above ``summands * 2B`` or bits above the last slot prove the plaintext is not such a
        sum (e.g. a wrong decryption): :class:`CryptoError`.
        """
        if not 1 <= summands <= self.max_summands:
            raise ParameterError(f"summands must be in 1..{self.max_summands}, got {summands}")
        if len(plaintexts) != self.plaintexts_for(count):
            raise ParameterError(f"{count} values need {self.plaintexts_for(count)} plaintexts, got {len(plaintexts)}")
        per_plaintext = self.slots * self.slot_bytes
        chunks = []
        for p in plaintexts:
            if p < 0 or p.bit_length() > 8 * per_plaintext:
                raise CryptoError("decrypted plaintext has bits beyond its slots (not a sum of packed vectors)")
            chunks.append(p.to_bytes(per_plaintext, "little"))
        slots = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(-1, self.slot_bytes)[:count]
        padded = np.zeros((count, 8), dtype=np.uint8)
        padded[:, : self.slot_bytes] = slots
        raw = padded.view("<u8").ravel()
        # compared as unsigned 64-bit words: an int64 view would wrap 2^64 - 1 to -1 and pass
        if raw.size and int(raw.max()) > summands * 2 * self.value_bound:
            raise CryptoError("a decrypted slot exceeds its bound (not a sum of packed vectors)")
        return raw.astype(np.int64) - summands * self.value_bound
