"""Encrypting and adding whole vectors of packed plaintexts under a Paillier public key.

Encryption is ``(1 + N m) * r^N mod N^2`` (g = N + 1, as in python-paillier). The expensive part,
the obfuscator ``r^N mod N^2``, does not depend on the message: :func:`precompute_obfuscators`
computes a pool ahead of time (e.g. while the model trains), and :func:`encrypt_packed` then costs
one modular multiplication per ciphertext. Each obfuscator must be used once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from secagg.errors import CryptoError, ParameterError
from secagg.paillier import _gmpy2
from secagg.paillier.threshold import ThresholdPublicKey

__all__ = ["precompute_obfuscators", "encrypt_packed", "add_ciphertexts"]


def precompute_obfuscators(key: ThresholdPublicKey, count: int) -> list[int]:
    """``count`` fresh values ``r^N mod N^2`` for uniform ``r`` in Z*_N."""
    gmpy2 = _gmpy2()
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    out = []
    while len(out) < count:
        r = gmpy2.mpz(secrets.randbelow(key.n - 1) + 1)
        if gmpy2.gcd(r, n) == 1:
            out.append(gmpy2.powmod(r, n, nsquare))
    return [int(x) for x in out]


def encrypt_packed(key: ThresholdPublicKey, plaintexts: Sequence[int], obfuscators: list[int] | None = None) -> list[int]:
    """Ciphertexts of ``plaintexts``; takes (and consumes) obfuscators from the pool when given."""
    gmpy2 = _gmpy2()
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    if obfuscators is not None and len(obfuscators) < len(plaintexts):
        raise ParameterError(f"{len(plaintexts)} plaintexts but only {len(obfuscators)} obfuscators")
    pool = obfuscators if obfuscators is not None else precompute_obfuscators(key, len(plaintexts))
    out = []
    for m in plaintexts:
        if not 0 <= m < key.n:
            raise ParameterError("plaintext out of range [0, N)")
        out.append(int((n * m + 1) * gmpy2.mpz(pool.pop()) % nsquare))
    return out


def add_ciphertexts(key: ThresholdPublicKey, vectors: Sequence[Sequence[int]]) -> list[int]:
    """Element-wise homomorphic sum (product mod N^2) of ciphertext vectors of equal length."""
    gmpy2 = _gmpy2()
    if not vectors:
        raise ParameterError("nothing to add")
    length = len(vectors[0])
    if any(len(v) != length for v in vectors):
        raise CryptoError("ciphertext vectors differ in length")
    nsquare = gmpy2.mpz(key.nsquare)
    total = [gmpy2.mpz(key.check_ciphertext(c)) for c in vectors[0]]
    for vector in vectors[1:]:
        for i, c in enumerate(vector):
            total[i] = total[i] * gmpy2.mpz(key.check_ciphertext(c)) % nsquare
    return [int(x) for x in total]
