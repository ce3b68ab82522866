"""Sources of randomness for key material, seeds and Shamir coefficients.

Production code uses :class:`SystemRandomness` (``os.urandom``). :class:`TestOnlySeededRandomness`
exists so tests, test vectors and reproducible simulations can replay a run byte for byte; it is
deterministic by design and must never protect real data.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import ParameterError

__all__ = ["CheckedRandomness", "RandomSource", "SystemRandomness", "TestOnlySeededRandomness", "system_randomness"]


@runtime_checkable
class RandomSource(Protocol):
    """Anything that returns ``n`` random bytes."""

    def random_bytes(self, n: int) -> bytes: ...


class SystemRandomness:
    """The operating system's CSPRNG (``os.urandom``)."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def __repr__(self) -> str:
        return "SystemRandomness()"


_SYSTEM = SystemRandomness()


def system_randomness() -> SystemRandomness:
    return _SYSTEM


class CheckedRandomness:
    """Passes a caller's random source through, refusing short or non-bytes answers (typed), so a
    broken source fails with :class:`ParameterError` instead of a silent short draw."""

    __slots__ = ("inner",)

    def __init__(self, inner: RandomSource) -> None:
        if not callable(getattr(inner, "random_bytes", None)):
            raise ParameterError("a random source needs random_bytes(n)")
        self.inner = inner

    def random_bytes(self, n: int) -> bytes:
        data = self.inner.random_bytes(n)
        if not isinstance(data, (bytes, bytearray)) or len(data) != n:
            got = len(data) if isinstance(data, (bytes, bytearray)) else type(data).__name__
            raise ParameterError(f"the random source returned {got} bytes where {n} were asked for")
        return bytes(data)


class TestOnlySeededRandomness:
    """TEST ONLY: a deterministic stream (AES-256-CTR keyed by SHA-256 of the seed and a label).

    Every party of a reproducible simulation gets its own stream via :meth:`child`, so streams
    never overlap. Anyone who knows the seed knows every key: never use it for real data.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, seed: int | bytes, label: bytes = b"") -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, bytes)):
            raise ParameterError(f"seed must be an int or bytes, got {type(seed).__name__}")
        if isinstance(seed, int):
            if seed < 0:
                raise ParameterError("seed must be non-negative")
            seed = seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "little")
        self._seed = bytes(seed)
        self._label = bytes(label)
        key = hashlib.sha256(b"secagg/test-only-randomness\x00" + len(self._seed).to_bytes(4, "little")
                             + self._seed + self._label).digest()
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def child(self, label: bytes) -> TestOnlySeededRandomness:
        """An independent stream for one party or purpose."""
        return TestOnlySeededRandomness(self._seed, self._label + b"/" + label)

    def random_bytes(self, n: int) -> bytes:
        return self._stream.update(bytes(n))

    def __repr__(self) -> str:
        return f"TestOnlySeededRandomness(label={self._label!r})"
