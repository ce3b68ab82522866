"""The randomized Hadamard rotation ``x -> H D x / sqrt(d)`` on rows of a matrix.

``D`` is a diagonal of random signs from a public seed (every party of a round derives the same),
``H`` the Walsh-Hadamard matrix of order ``d`` (a power of two). The rotation is orthogonal, so
L2 norms are unchanged, and it spreads a vector's mass evenly over the coordinates: each
coordinate of the rotated unit vector is sub-Gaussian with scale ``1/sqrt(d)``, whatever the input.
That keeps the integer grid small for a given wrap-around probability and makes the rounding error
of all coordinates alike (Kairouz, Liu, Steinke 2021; Suresh et al. 2017).
"""

from __future__ import annotations

import numpy as np

from secagg.crypto.prg import keystream
from secagg.errors import ParameterError

__all__ = ["padded_dimension", "random_signs", "rotate", "unrotate"]


def padded_dimension(dimension: int) -> int:
    """The smallest power of two >= ``dimension`` (a positive int)."""
    if isinstance(dimension, (bool, np.bool_)) or not isinstance(dimension, (int, np.integer)) or dimension < 1:
        raise ParameterError(f"dimension must be a positive int, got {dimension!r}")
    return 1 << (int(dimension) - 1).bit_length()


def random_signs(seed: bytes, dimension: int) -> np.ndarray:
    """``dimension`` signs (+1.0 / -1.0) from the AES-CTR stream of a 32-byte public seed."""
    padded_dimension(dimension)  # validates: a positive int
    bits = np.unpackbits(np.frombuffer(keystream(seed, (dimension + 7) // 8), dtype=np.uint8), bitorder="little")
    return 1.0 - 2.0 * bits[:dimension].astype(np.float64)


def _hadamard(rows: np.ndarray) -> np.ndarray:
    """Unnormalised fast Walsh-Hadamard transform of every row (length a power of two)."""
    out = np.array(rows, dtype=np.float64, copy=True)
    count, d = out.shape
    half = 1
    while half < d:
        blocks = out.reshape(count, d // (2 * half), 2, half)
        top, bottom = blocks[:, :, 0, :].copy(), blocks[:, :, 1, :]
        blocks[:, :, 0, :] += bottom
        blocks[:, :, 1, :] = top - bottom
        half *= 2
    return out


def _as_rows(x: np.ndarray) -> tuple[np.ndarray, bool]:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ParameterError(f"expected a vector or a matrix of row vectors, got shape {array.shape}")
    return (array[None, :], True) if array.ndim == 1 else (array, False)


def _as_signs(signs: np.ndarray) -> np.ndarray:
    if not isinstance(signs, np.ndarray) or signs.ndim != 1 or signs.size == 0:
        raise ParameterError(f"signs must be a non-empty 1-D array (from random_signs), got {type(signs).__name__}")
    return signs


def rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``H D x / sqrt(d)`` of a vector or of each row, zero-padded to ``len(signs)`` (a power of two)."""
    rows, single = _as_rows(x)
    signs = _as_signs(signs)
    d = signs.size
    if d != padded_dimension(d) or rows.shape[1] > d:
        raise ParameterError(f"signs must have a power-of-two length >= {rows.shape[1]}, got {d}")
    padded = np.zeros((rows.shape[0], d))
    padded[:, :rows.shape[1]] = rows * signs[:rows.shape[1]]
    out = _hadamard(padded) / np.sqrt(d)
    return out[0] if single else out


def unrotate(y: np.ndarray, signs: np.ndarray, dimension: int) -> np.ndarray:
    """Inverse of :func:`rotate`: ``D H y / sqrt(d)``, cut back to the first ``dimension`` coordinates."""
    rows, single = _as_rows(y)
    signs = _as_signs(signs)
    if rows.shape[1] != signs.size:
        raise ParameterError(f"expected vectors of length {signs.size}, got {rows.shape[1]}")
    if padded_dimension(dimension) > signs.size:
        raise ParameterError(f"dimension must be at most {signs.size}, got {dimension}")
    out = (_hadamard(rows) / np.sqrt(signs.size) * signs)[:, :dimension]
    return out[0] if single else out
