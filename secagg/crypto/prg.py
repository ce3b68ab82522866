"""AES-256-CTR pseudorandom generator that expands a 32-byte seed into ring elements.

The seed is the AES key, the initial counter block is all zeros, and the key stream is read as
little-endian uint32 (rings up to 32 bits) or uint64 words (above), each reduced mod 2^bits.
Since 2^bits divides the word modulus, every ring element is exactly uniform.

:func:`apply_masks` is the hot kernel of the masking protocol: it adds and subtracts many PRG
streams into one vector, chunk by chunk, through a single fixed-size scratch buffer, so no
full-length temporary is ever allocated per mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import ParameterError
from secagg.ring import Ring

__all__ = ["SEED_BYTES", "DEFAULT_CHUNK_BYTES", "expand", "apply_masks", "keystream"]

SEED_BYTES = 32
DEFAULT_CHUNK_BYTES = 1 << 18  # 256 KiB: fits L2 beside the target chunk; see docs/performance.md
_BLOCK = 16
_ZERO_IV = bytes(_BLOCK)
_zeros_cache: dict[int, bytes] = {}


def _zeros(nbytes: int) -> memoryview:
    block = _zeros_cache.get(nbytes)
    if block is None:
        block = _zeros_cache.setdefault(nbytes, bytes(nbytes))
    return memoryview(block)


def _stream(seed: bytes) -> CipherContext:
    if len(seed) != SEED_BYTES:
        raise ParameterError(f"a PRG seed has {SEED_BYTES} bytes, got {len(seed)}")
    return Cipher(algorithms.AES(bytes(seed)), modes.CTR(_ZERO_IV)).encryptor()


def keystream(seed: bytes, nbytes: int) -> bytes:
    """The first ``nbytes`` bytes of the PRG stream (for test vectors and the spec)."""
    return _stream(seed).update(bytes(nbytes))


def _check_chunk(chunk_bytes: int, ring: Ring) -> int:
    if chunk_bytes < _BLOCK or chunk_bytes % _BLOCK:
        raise ParameterError(f"chunk_bytes must be a positive multiple of {_BLOCK}, got {chunk_bytes}")
    return chunk_bytes // ring.element_bytes


def expand(seed: bytes, length: int, ring: Ring, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """A new vector of ``length`` ring elements, PRG(seed)."""
    if length < 0:
        raise ParameterError(f"length must be >= 0, got {length}")
    out = ring.zeros(length)
    apply_masks(out, [seed], [], ring, chunk_bytes=chunk_bytes)
    return out


def apply_masks(
    target: np.ndarray,
    add_seeds: Sequence[bytes],
    subtract_seeds: Sequence[bytes],
    ring: Ring,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> None:
    """``target += sum PRG(a) - sum PRG(s)`` over Z_(2^bits), in place.

    Chunk-major: for each chunk of ``target``, every stream writes its next key-stream bytes
    into one scratch buffer that is added into the chunk while both are still in cache.
    """
    if not isinstance(target, np.ndarray) or target.ndim != 1 or target.dtype != ring.dtype:
        raise ParameterError(f"target must be a 1-D {ring.dtype} array")
    if not (target.flags.c_contiguous and target.flags.writeable):
        raise ParameterError("target must be a writeable, contiguous array")
    chunk_elements = _check_chunk(chunk_bytes, ring)
    streams = [(_stream(s), np.add) for s in add_seeds] + [(_stream(s), np.subtract) for s in subtract_seeds]
    if streams and target.size:
        scratch = bytearray(chunk_bytes + _BLOCK)  # update_into wants len(data) + block - 1 bytes
        words = np.frombuffer(scratch, dtype=ring.dtype, count=chunk_elements)
        zeros = _zeros(chunk_bytes)
        itemsize = ring.element_bytes
        for start in range(0, target.shape[0], chunk_elements):
            block = target[start:start + chunk_elements]
            count = block.shape[0]
            data = zeros[: count * itemsize]
            chunk_words = words[:count]
            for stream, op in streams:
                stream.update_into(data, scratch)
                op(block, chunk_words, out=block)
    ring.reduce(target)
