"""The ceremony's arithmetic: Shamir sharing over the small sieve primes (NumPy, whole batches at
once) and over the two big prime fields (gmpy2), reconstruction that checks the redundant shares,
integer Shamir sharing of the decryption exponent, and the public draws every bank derives alike.

Randomness comes from ``os.urandom`` only. A value "uniform mod l" is a 64-bit draw reduced mod
``l`` (l < 2^16: bias below 2^-48 per value); a value uniform in a big range is ``secrets.randbelow``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence

import numpy as np

from secagg.errors import AbortError, ProtocolViolation
from secagg.paillier import _gmpy2

__all__ = ["uniform_mod", "share_small", "lagrange_small", "reconstruct_small", "share_big", "lagrange_at_zero",
           "reconstruct_big", "integer_shares", "public_integer", "public_element"]


# ----------------------------------------------------------------------------- small primes (vectorised)

def uniform_mod(moduli: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform residues modulo ``moduli`` (broadcast over the last axis), int64, from os.urandom."""
    count = int(np.prod(shape))
    raw = np.frombuffer(os.urandom(8 * count), dtype=np.uint64).reshape(shape)
    return (raw % moduli.astype(np.uint64)).astype(np.int64)


def share_small(secret: np.ndarray | None, degree: int, points: int, moduli: np.ndarray) -> np.ndarray:
    """Shamir shares at x = 1..points of ``secret`` (shape ``(..., columns)``, each column mod its
    prime); ``secret=None`` shares zero (a zero-sharing: random polynomial with constant 0).
    Returns ``(points, *secret.shape)``; every prime exceeds ``points``."""
    shape = secret.shape if secret is not None else None
    if shape is None:
        raise ValueError("share_small needs a secret array (zeros for a zero-sharing)")
    coefficients = uniform_mod(moduli, (degree, *shape)) if degree else None
    out = np.empty((points, *shape), dtype=np.int64)
    for x in range(1, points + 1):
        value = np.zeros(shape, dtype=np.int64)
        for m in range(degree - 1, -1, -1):  # Horner on the coefficients of x^1 .. x^degree
            value = (value + coefficients[m]) * x % moduli
        out[x - 1] = (value + secret) % moduli
    return out


def lagrange_small(points: Sequence[int], at: int, moduli: np.ndarray) -> np.ndarray:
    """Lagrange coefficients (one row per point) for evaluating at ``at`` mod each column's prime."""
    rows = []
    for j in points:
        numerator, denominator = 1, 1
        for m in points:
            if m != j:
                numerator *= at - m
                denominator *= j - m
        rows.append([numerator * pow(denominator, -1, int(p)) % int(p) for p in moduli])
    return np.array(rows, dtype=np.int64)


class _SmallReconstructor:
    """Caches the Lagrange tables of one column layout."""

    def __init__(self, moduli: np.ndarray, parties: int, degree: int) -> None:
        self.moduli = moduli
        self.base = list(range(1, degree + 2))
        primes = np.unique(moduli)
        index = np.searchsorted(primes, moduli)
        self.at_zero = lagrange_small(self.base, 0, primes)[:, index]
        self.extra = {x: lagrange_small(self.base, x, primes)[:, index] for x in range(degree + 2, parties + 1)}
        self.parties, self.degree = parties, degree


def reconstruct_small(shares: np.ndarray, degree: int, moduli: np.ndarray, *, cache: dict | None = None,
                      what: str = "values") -> np.ndarray:
    """The values at 0 of degree-``degree`` sharings given at x = 1..n (``shares[x-1]``), checking
    that the shares beyond the first ``degree + 1`` lie on the same polynomials.

    A bank whose shares alone break the consistency is named (:class:`ProtocolViolation`) when
    the redundancy allows it (n >= degree + 3); otherwise the ceremony aborts (:class:`AbortError`)."""
    parties = shares.shape[0]
    key = (id(moduli), parties, degree)
    recon = cache.get(key) if cache is not None else None
    if recon is None:
        recon = _SmallReconstructor(moduli, parties, degree)
        if cache is not None:
            cache[key] = recon
    head = shares[:degree + 1]
    value = np.zeros(shares.shape[1:], dtype=np.int64)
    for row, coefficient in zip(head, recon.at_zero):
        value = (value + row * coefficient) % moduli
    bad = np.zeros(shares.shape[1:], dtype=bool)
    for x, table in recon.extra.items():
        predicted = np.zeros(shares.shape[1:], dtype=np.int64)
        for row, coefficient in zip(head, table):
            predicted = (predicted + row * coefficient) % moduli
        bad |= predicted != shares[x - 1]
    if bad.any():
        _blame_small(shares, degree, moduli, bad, what)
    return value


def _blame_small(shares: np.ndarray, degree: int, moduli: np.ndarray, bad: np.ndarray, what: str) -> None:
    parties = shares.shape[0]
    if parties >= degree + 3:
        culprits = []
        for suspect in range(parties):
            others = [x for x in range(parties) if x != suspect]
            sub = shares[others][:, bad]
            cols = moduli[np.nonzero(bad)[-1]] if bad.ndim else moduli
            base, rest = others[:degree + 1], others[degree + 1:]
            primes = np.unique(cols)
            index = np.searchsorted(primes, cols)
            consistent = True
            for k, x in enumerate(rest, start=degree + 1):
                table = lagrange_small([b + 1 for b in base], x + 1, primes)[:, index]
                predicted = np.zeros(sub.shape[1:], dtype=np.int64)
                for row, coefficient in zip(sub[:degree + 1], table):
                    predicted = (predicted + row * coefficient) % cols
                if np.any(predicted != sub[k]):
                    consistent = False
                    break
            if consistent:
                culprits.append(suspect)
        if len(culprits) == 1:
            raise ProtocolViolation(f"bank {culprits[0]} published {what} inconsistent with everyone else's "
                                    "shares", party=culprits[0])
    raise AbortError(f"the published {what} are inconsistent (a bank deviated from the protocol)",
                     round="dkg")


# ----------------------------------------------------------------------------- big prime fields

def share_big(secret: int, degree: int, points: int, prime: int) -> list:
    """Shamir shares at x = 1..points of ``secret`` mod ``prime`` (gmpy2 integers)."""
    gmpy2 = _gmpy2()
    prime = gmpy2.mpz(prime)
    coefficients = [gmpy2.mpz(secrets.randbelow(int(prime))) for _ in range(degree)]
    secret = gmpy2.mpz(secret) % prime
    out = []
    for x in range(1, points + 1):
        value = gmpy2.mpz(0)
        for c in reversed(coefficients):
            value = (value + c) * x
        out.append((value + secret) % prime)
    return out


def lagrange_at_zero(points: Sequence[int], prime: int, at: int = 0) -> list:
    gmpy2 = _gmpy2()
    out = []
    for j in points:
        numerator, denominator = 1, 1
        for m in points:
            if m != j:
                numerator *= at - m
                denominator *= j - m
        out.append(gmpy2.mpz(numerator * pow(denominator, -1, prime) % prime))
    return out


def reconstruct_big(shares: Sequence[int], degree: int, prime: int, *, what: str = "value") -> int:
    """The value at 0 of one degree-``degree`` sharing given at x = 1..n, checking the redundant
    shares (blame as in :func:`reconstruct_small`)."""
    gmpy2 = _gmpy2()
    parties = len(shares)

    def evaluate(indices: Sequence[int], at: int):
        coefficients = lagrange_at_zero([i + 1 for i in indices], prime, at)
        return sum((c * shares[i] for c, i in zip(coefficients, indices)), gmpy2.mpz(0)) % prime

    base = list(range(degree + 1))
    consistent = all(evaluate(base, x + 1) == shares[x] % prime for x in range(degree + 1, parties))
    if not consistent:
        if parties >= degree + 3:
            culprits = []
            for suspect in range(parties):
                others = [x for x in range(parties) if x != suspect]
                head = others[:degree + 1]
                if all(evaluate(head, x + 1) == shares[x] % prime for x in others[degree + 1:]):
                    culprits.append(suspect)
            if len(culprits) == 1:
                raise ProtocolViolation(f"bank {culprits[0]} published a {what} share inconsistent with everyone "
                                        "else's", party=culprits[0])
        raise AbortError(f"the published {what} shares are inconsistent (a bank deviated from the protocol)",
                         round="dkg")
    return int(evaluate(base, 0))


# ----------------------------------------------------------------------------- integers

def integer_shares(secret: int, degree: int, points: int, coefficient_low: int) -> list[int]:
    """Shamir shares over the integers: f(x) = secret + sum a_m x^m with every a_m uniform in
    [coefficient_low, 2 coefficient_low). With ``coefficient_low >= |secret|`` every share f(i),
    i >= 1, is positive; with ``coefficient_low >= 2^s Delta |secret|`` the shares of any ``degree``
    points hide the secret statistically (2^-s)."""
    coefficients = [coefficient_low + secrets.randbelow(coefficient_low) for _ in range(degree)]
    out = []
    for x in range(1, points + 1):
        value = 0
        for c in reversed(coefficients):
            value = (value + c) * x
        out.append(value + secret)
    return out


def public_integer(label: bytes, context: bytes, bits: int) -> int:
    """A public pseudorandom integer of ``bits`` bits from SHAKE-256 over label and context (every
    bank and the coordinator derive the same; nobody chooses it)."""
    stream = hashlib.shake_256(b"secagg/paillier/dkg/v1/" + label + b"\x00" + context).digest((bits + 7) // 8 + 16)
    return int.from_bytes(stream, "big") >> (8 * len(stream) - bits)


def public_element(label: bytes, context: bytes, modulus: int) -> int:
    """A public pseudorandom element of [2, modulus) (128 extra bits: statistically uniform)."""
    return 2 + public_integer(label, context, modulus.bit_length() + 128) % (modulus - 2)
