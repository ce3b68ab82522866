"""Shamir t-of-n secret sharing over GF(p), p = 2^31 - 1.

A 32-byte secret is split into nine 30-bit limbs (little-endian base 2^30 digits of the secret
read as a little-endian integer); each limb is shared with its own random polynomial of degree
t - 1, so any t shares reveal the secret and any t - 1 reveal nothing. The prime is the largest
whose products fit 64-bit integers (below 2^62), which keeps sharing and reconstruction vectorised.

Sharing and reconstruction are NumPy integer arithmetic (no JIT, so no process pays a start-up
compilation); galois serves the rare decoding of shares with errors and the tests' known answers.

Share holders are identified by nonzero x-coordinates. Reconstruction is batched: Lagrange
coefficients are computed once per distinct set of responding holders and applied to every
secret reconstructed from that set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.errors import CryptoError, ParameterError

__all__ = [
    "FIELD_PRIME",
    "LIMB_BITS",
    "SECRET_BYTES",
    "LIMBS_PER_SECRET",
    "field",
    "secrets_to_limbs",
    "limbs_to_secrets",
    "random_field_elements",
    "share",
    "vandermonde",
    "mod_matmul",
    "lagrange_at_zero",
    "reconstruct",
    "decode_with_errors",
]

FIELD_PRIME = 2**31 - 1
LIMB_BITS = 30
SECRET_BYTES = 32
LIMBS_PER_SECRET = -(-8 * SECRET_BYTES // LIMB_BITS)  # 9
_LIMB_MASK = (1 << LIMB_BITS) - 1
_TOP_LIMB_BITS = 8 * SECRET_BYTES - LIMB_BITS * (LIMBS_PER_SECRET - 1)  # 16
# Bound on the elements of one vectorised sharing / reconstruction step (memory cap).
_BLOCK_ELEMENTS = 1 << 22


@functools.cache
def field() -> Any:
    """The galois field class GF(2^31 - 1) (built once per process; galois is imported lazily)."""
    import galois

    return galois.GF(FIELD_PRIME)


def secrets_to_limbs(secrets: Sequence[bytes]) -> np.ndarray:
    """Split 32-byte secrets into a ``(len(secrets), 9)`` uint32 array of 30-bit limbs."""
    out = np.empty((len(secrets), LIMBS_PER_SECRET), dtype=np.uint32)
    for row, secret in enumerate(secrets):
        if len(secret) != SECRET_BYTES:
            raise ParameterError(f"a secret has {SECRET_BYTES} bytes, got {len(secret)}")
        value = int.from_bytes(secret, "little")
        for i in range(LIMBS_PER_SECRET):
            out[row, i] = (value >> (LIMB_BITS * i)) & _LIMB_MASK
    return out


def limbs_to_secrets(limbs: np.ndarray) -> list[bytes]:
    """Inverse of :func:`secrets_to_limbs`.

    Raises :class:`CryptoError` when a limb is out of range, which happens when reconstruction
    combined inconsistent shares.
    """
    limbs = np.asarray(limbs)
    if limbs.ndim != 2 or limbs.shape[1] != LIMBS_PER_SECRET:
        raise ParameterError(f"limbs must have shape (count, {LIMBS_PER_SECRET}), got {limbs.shape}")
    if limbs.size and (int(limbs[:, :-1].max(initial=0)) > _LIMB_MASK
                       or int(limbs[:, -1].max()) >> _TOP_LIMB_BITS):
        raise CryptoError("reconstructed value is not a valid secret (inconsistent shares)")
    out = []
    for row in limbs.tolist():
        value = 0
        for i, limb in enumerate(row):
            value |= limb << (LIMB_BITS * i)
        out.append(value.to_bytes(SECRET_BYTES, "little"))
    return out


def random_field_elements(rng: RandomSource, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform elements of GF(p) as uint32, by rejection sampling of 31-bit words."""
    count = int(np.prod(shape, dtype=np.int64))
    values = np.frombuffer(rng.random_bytes(4 * count), dtype="<u4") & np.uint32(0x7FFFFFFF)
    rejected = np.flatnonzero(values == FIELD_PRIME)
    while rejected.size:  # probability 2^-31 per element
        fresh = np.frombuffer(rng.random_bytes(4 * rejected.size), dtype="<u4") & np.uint32(0x7FFFFFFF)
        values[rejected] = fresh
        rejected = rejected[fresh == FIELD_PRIME]
    elements: np.ndarray = values.astype(np.uint32).reshape(shape)
    return elements


def _check_x(x_coords: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x_coords, dtype=np.int64)
    if x.size and (x.min() <= 0 or x.max() >= FIELD_PRIME):
        raise ParameterError(f"{what} x-coordinates must be in 1..p-1")
    return x


def share(secret_limbs: np.ndarray, threshold: int, x_coords: Sequence[int] | np.ndarray,
          rng: RandomSource) -> np.ndarray:
    """Shares of every limb for every holder: a ``(len(x_coords), len(secret_limbs))`` uint32 array.

    Row ``i`` is holder ``x_coords[i]``'s share of each limb. ``threshold`` shares reconstruct;
    fewer reveal nothing.
    """
    limbs = np.asarray(secret_limbs, dtype=np.int64).ravel()
    x = _check_x(x_coords, "holder")
    if np.unique(x).size != x.size:
        raise ParameterError("holder x-coordinates must be distinct")
    if not 1 <= threshold <= max(1, x.size):
        raise ParameterError(f"threshold must be in 1..{x.size} holders, got {threshold}")
    if limbs.size and (limbs.min() < 0 or limbs.max() >= FIELD_PRIME):
        raise ParameterError("secret limbs must be field elements")
    # coefficients[0] is the secret; shares = V @ coefficients with V[i, j] = x_i^j (mod p).
    coefficients = np.empty((threshold, limbs.size), dtype=np.int64)
    coefficients[0] = limbs
    coefficients[1:] = random_field_elements(rng, (threshold - 1, limbs.size))
    out = np.empty((x.size, limbs.size), dtype=np.uint32)
    block = max(1, _BLOCK_ELEMENTS // max(1, threshold))
    for start in range(0, x.size, block):
        out[start:start + block] = mod_matmul(vandermonde(x[start:start + block], threshold), coefficients)
    return out


def vandermonde(x: np.ndarray, columns: int) -> np.ndarray:
    """``V[i, j] = x_i^j mod p`` for j < columns, as int64, by doubling (log2(columns) steps)."""
    x = np.asarray(x, dtype=np.int64)
    V = np.empty((x.size, columns), dtype=np.int64)
    if columns == 0:
        return V
    V[:, 0] = 1
    filled = 1
    while filled < columns:
        step = min(filled, columns - filled)
        x_to_filled = V[:, filled - 1] * x % FIELD_PRIME  # x^filled
        np.multiply(V[:, :step], x_to_filled[:, None], out=V[:, filled:filled + step])
        V[:, filled:filled + step] %= FIELD_PRIME
        filled += step
    return V


def mod_matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Exact ``A @ B mod p`` for field elements, on float64 BLAS.

    Both operands are split into 16-bit halves, so every product is below 2^32 and every dot
    product of up to 2^20 terms stays below 2^52: float64 holds each partial sum exactly, in any
    summation order. Three products recombine as lo + mid * 2^16 + hi * 2^32 (mod p). Tested
    against galois' own field arithmetic (tests/crypto/test_shamir.py).
    """
    A = np.asarray(A, dtype=np.int64)
    B = np.asarray(B, dtype=np.int64)
    if A.shape[-1] > 1 << 20:
        raise ParameterError("mod_matmul supports inner dimensions up to 2^20")
    a_lo, a_hi = (A & 0xFFFF).astype(np.float64), (A >> 16).astype(np.float64)
    b_lo, b_hi = (B & 0xFFFF).astype(np.float64), (B >> 16).astype(np.float64)
    lo = (a_lo @ b_lo).astype(np.int64) % FIELD_PRIME
    mid = (a_lo @ b_hi + a_hi @ b_lo).astype(np.int64) % FIELD_PRIME
    hi = (a_hi @ b_hi).astype(np.int64) % FIELD_PRIME
    hi = hi * 65536 % FIELD_PRIME
    return ((hi + mid) * 65536 + lo) % FIELD_PRIME


def _mod_inverse(a: np.ndarray) -> np.ndarray:
    """a^(p-2) mod p elementwise (Fermat), for nonzero field elements in int64: every product of two
    elements is below 2^62."""
    result = np.ones_like(a)
    base = a % FIELD_PRIME
    exponent = FIELD_PRIME - 2
    while exponent:
        if exponent & 1:
            result = result * base % FIELD_PRIME
        base = base * base % FIELD_PRIME
        exponent >>= 1
    return result


def lagrange_at_zero(x_sets: np.ndarray) -> np.ndarray:
    """Lagrange coefficients for interpolation at 0, one row per set of x-coordinates.

    ``x_sets`` has shape ``(sets, t)``; returns an int64 array of the same shape with values in GF(p).
    Plain int64 arithmetic (products of two elements stay below 2^62), no JIT: a process that
    reconstructs pays no compilation (galois' kernels took 2.5-3 s on the first call); checked
    against galois' field arithmetic in tests/crypto/test_shamir.py.
    """
    x = _check_x(x_sets, "share")
    if x.ndim != 2:
        raise ParameterError("x_sets must have shape (sets, t)")
    sets, t = x.shape
    if t > 1:
        ordered = np.sort(x, axis=1)
        if np.any(ordered[:, 1:] == ordered[:, :-1]):
            raise ParameterError("share x-coordinates within a set must be distinct")
    x = x.astype(np.int64) % FIELD_PRIME
    # coefficient i = prod_{j != i} x_j / (x_j - x_i)
    numerators = np.ones((sets, t), dtype=np.int64)
    denominators = np.ones((sets, t), dtype=np.int64)
    for j in range(t):
        xj = x[:, j:j + 1]
        factor = np.where(np.arange(t) == j, 1, xj)
        numerators = numerators * factor % FIELD_PRIME
        difference = np.where(np.arange(t) == j, 1, (xj - x) % FIELD_PRIME)
        denominators = denominators * difference % FIELD_PRIME
    coefficients: np.ndarray = numerators * _mod_inverse(denominators) % FIELD_PRIME
    return coefficients


def reconstruct(x_sets: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Batch reconstruction at 0.

    ``x_sets`` is ``(owners, t)``: the holders whose shares are used for each owner's secret;
    ``shares`` is ``(owners, t, limbs)``. Lagrange coefficients are computed once per distinct
    holder set. Returns ``(owners, limbs)`` uint32.
    """
    x = np.asarray(x_sets, dtype=np.int64)
    values = np.asarray(shares)
    if x.ndim != 2 or values.ndim != 3 or values.shape[:2] != x.shape:
        raise ParameterError(f"shares shape {values.shape} does not match x_sets shape {x.shape}")
    if values.size and int(values.max()) >= FIELD_PRIME:
        raise ParameterError("shares must be field elements")
    owners, t, limbs = values.shape
    if owners == 0:
        return np.zeros((0, limbs), dtype=np.uint32)
    unique_sets, which = np.unique(x, axis=0, return_inverse=True)
    coefficients = lagrange_at_zero(unique_sets)[np.asarray(which).ravel()]  # (owners, t)
    out = np.empty((owners, limbs), dtype=np.uint32)
    block = max(1, _BLOCK_ELEMENTS // max(1, t * limbs))
    for start in range(0, owners, block):
        stop = min(owners, start + block)
        # each product below 2^62, reduced before the sum of t terms (below t * 2^31)
        weighted = coefficients[start:stop, :, None] * values[start:stop].astype(np.int64) % FIELD_PRIME
        out[start:stop] = weighted.sum(axis=1) % FIELD_PRIME
    return out


def _solve_any(A: Any, b: Any) -> Any:
    """Some solution of ``A z = b`` over GF(p) (free variables 0), or None if there is none."""
    GF = field()
    rows, cols = A.shape
    reduced = GF(np.hstack([A.view(np.ndarray), b.view(np.ndarray)[:, None]])).row_reduce()
    z = GF.Zeros(cols)
    for row in reduced:
        nonzero = np.flatnonzero(row[:cols].view(np.ndarray))
        if nonzero.size == 0:
            if int(row[cols]) != 0:
                return None  # 0 = nonzero: inconsistent
            continue
        z[nonzero[0]] = row[cols]
    return z


def _berlekamp_welch(x: np.ndarray, y: np.ndarray, threshold: int, errors: int) -> Any:
    """The polynomial of degree < threshold through all but at most ``errors`` of the points
    (x, y), as coefficients (constant first), or None. Needs len(x) >= threshold + 2 * errors."""
    GF = field()
    X, Y = GF(np.asarray(x, dtype=np.int64) % FIELD_PRIME), GF(np.asarray(y, dtype=np.int64))
    if errors == 0:
        V = GF(vandermonde(X.view(np.ndarray), threshold))
        z = _solve_any(V, Y)
        if z is None or np.any(V @ z != Y):
            return None
        return z
    # Q(x_i) = y_i E(x_i) with E monic of degree e: unknowns Q_0..Q_{t+e-1}, E_0..E_{e-1}.
    e = errors
    Vq = GF(vandermonde(X.view(np.ndarray), threshold + e))
    Ve = GF(vandermonde(X.view(np.ndarray), e + 1))
    A = np.hstack([Vq.view(np.ndarray), (-(Y[:, None] * Ve[:, :e])).view(np.ndarray)])
    z = _solve_any(GF(A), Y * Ve[:, e])
    if z is None:
        return None
    import galois

    Q = galois.Poly(z[:threshold + e][::-1], field=GF)
    E = galois.Poly(np.concatenate([GF([1]), z[threshold + e:][::-1]]), field=GF)
    P, remainder = divmod(Q, E)
    if remainder != 0 or P.degree >= threshold:
        return None
    coefficients = GF.Zeros(threshold)
    values = P.coeffs[::-1]
    coefficients[:values.size] = values
    return coefficients


def decode_with_errors(x_coords: Sequence[int] | np.ndarray, shares: np.ndarray, threshold: int,
                       check: Callable[[np.ndarray], bool] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Reconstruct one secret's limbs from ``r >= threshold`` shares some of which may be wrong.

    ``shares`` is ``(r, limbs)``. Shamir shares are a Reed-Solomon codeword, so up to
    ``(r - threshold) // 2`` wrong shares are corrected (Berlekamp-Welch on each limb). With a
    ``check(limbs) -> bool`` (a commitment to the secret), a single wrong share is also found when
    only ``r >= threshold + 1`` shares arrived, by leaving each share out in turn; and a decoding
    is only accepted when it passes the check. Returns ``(limbs, wrong)``: the limbs and a boolean
    mask of the shares that lie off the secret's polynomials; None when nothing passes.
    """
    x = _check_x(x_coords, "share")
    values = np.asarray(shares, dtype=np.int64)
    if values.ndim != 2 or values.shape[0] != x.size:
        raise ParameterError("shares must have shape (len(x_coords), limbs)")
    r = x.size
    if r < threshold:
        return None
    V = vandermonde(x, threshold)

    def fit(use: np.ndarray, errors: int) -> tuple[np.ndarray, np.ndarray] | None:
        limbs = np.empty(values.shape[1], dtype=np.uint32)
        wrong = np.zeros(r, dtype=bool)
        for limb in range(values.shape[1]):
            coefficients = _berlekamp_welch(x[use], values[use, limb], threshold, errors)
            if coefficients is None:
                return None
            limbs[limb] = int(coefficients[0])
            fitted = mod_matmul(V, coefficients.view(np.ndarray).astype(np.int64)[:, None])[:, 0]
            wrong |= fitted != values[:, limb]
        if int(wrong[use].sum()) > errors or (check is not None and not check(limbs)):
            return None
        return limbs, wrong

    everyone = np.ones(r, dtype=bool)
    for errors in range(0, (r - threshold) // 2 + 1):
        found = fit(everyone, errors)
        if found is not None:
            return found
    if check is not None and r > threshold:
        for left_out in range(r):
            use = everyone.copy()
            use[left_out] = False
            found = fit(use, 0)
            if found is not None:
                return found
    return None
