"""Encrypting and adding whole vectors of packed plaintexts under a Paillier public key.

Encryption is ``(1 + N m) * rho mod N^2`` (g = N + 1, as in python-paillier) with an obfuscator
``rho`` that does not depend on the message:

* keys with an ``obfuscation_base`` (the default of :func:`generate_threshold_keypair`):
  ``rho = h_N^a mod N^2`` for a fresh uniform ``a`` of ``ceil(k/2)`` bits (k = key bits), the
  faster-encryption variant of Damgard, Jurik and Nielsen. ``h_N = (-x^2)^N`` is fixed per key, so
  a table of ``h_N^(d 2^(8j))`` (a few MiB, built once per key and process) turns each obfuscator
  into ``ceil(k/16)`` modular multiplications instead of a full-length exponentiation;
* otherwise the textbook ``rho = r^N mod N^2`` for uniform ``r`` in Z*_N.

Either way ``rho`` is an N-th residue ``(h^a)^N`` or ``r^N``, so ciphertexts are ordinary Paillier
ciphertexts: adding and threshold decryption are unchanged. :func:`precompute_obfuscators` can
fill a pool ahead of time (e.g. while the model trains); :func:`encrypt_packed` then costs one
modular multiplication per ciphertext. Each obfuscator must be used once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from secagg.errors import CryptoError, ParameterError
from secagg.paillier import _gmpy2
from secagg.paillier.threshold import ThresholdPublicKey

__all__ = ["precompute_obfuscators", "encrypt_packed", "encrypt_packed_with_exponents", "add_ciphertexts",
           "powmod_many", "multi_powmod"]


_WINDOW = 8
_TABLES: dict[tuple[int, int], list[list]] = {}  # (N, base) -> fixed-base table, one key at a time


def _fixed_base_table(key: ThresholdPublicKey) -> list[list]:
    """``table[j][d] = base^(d * 2^(8j)) mod N^2`` for the windows of a ceil(k/2)-bit exponent."""
    gmpy2 = _gmpy2()
    base = key.obfuscation_base
    if base is None:
        raise ParameterError("a textbook key has no short-exponent base (its obfuscators are r^N)")
    cache_key = (key.n, base)
    table = _TABLES.get(cache_key)
    if table is None:
        nsquare = gmpy2.mpz(key.nsquare)
        power = gmpy2.mpz(base)
        table = []
        for _ in range(-(-short_exponent_bits(key) // _WINDOW)):
            row = [gmpy2.mpz(1), power]
            for _ in range(2, 1 << _WINDOW):
                row.append(row[-1] * power % nsquare)
            table.append(row)
            power = row[-1] * power % nsquare  # base^(2^(8(j+1)))
        _TABLES.clear()
        _TABLES[cache_key] = table
    return table


def fixed_base_power(key: ThresholdPublicKey, exponent: int) -> int:
    """``obfuscation_base^exponent mod N^2`` for ``0 <= exponent < 2^ceil(k/2)``, from the table."""
    gmpy2 = _gmpy2()
    if not 0 <= exponent < 1 << short_exponent_bits(key):
        raise ParameterError("exponent outside the short-exponent range")
    nsquare, mask = gmpy2.mpz(key.nsquare), (1 << _WINDOW) - 1
    result = gmpy2.mpz(1)
    for row in _fixed_base_table(key):
        digit = exponent & mask
        if digit:
            result = result * row[digit] % nsquare
        exponent >>= _WINDOW
    return int(result)


def short_exponent_bits(key: ThresholdPublicKey) -> int:
    """Length of the random exponent ``a`` of a short-exponent obfuscator: ceil(k/2)."""
    return -(-key.key_bits // 2)


def precompute_obfuscators(key: ThresholdPublicKey, count: int) -> list[int]:
    """``count`` fresh obfuscators: ``h_N^a`` (short exponent) or ``r^N`` (textbook), mod N^2."""
    gmpy2 = _gmpy2()
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    if key.obfuscation_base is not None:
        bits = short_exponent_bits(key)
        return [fixed_base_power(key, secrets.randbits(bits)) for _ in range(count)]
    out: list[int] = []
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


def encrypt_packed_with_exponents(key: ThresholdPublicKey, plaintexts: Sequence[int]) -> tuple[list[int], list[int]]:
    """Ciphertexts ``(1 + N m) h_N^a`` and their short exponents ``a`` (kept for a proof of
    plaintext knowledge, :func:`secagg.paillier.proofs.prove_plaintext_knowledge`; secret)."""
    gmpy2 = _gmpy2()
    if key.obfuscation_base is None:
        raise ParameterError("proofs of plaintext knowledge need a key with the short-exponent base (the default "
                             "of generate_threshold_keypair)")
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    bits = short_exponent_bits(key)
    ciphertexts, exponents = [], []
    for m in plaintexts:
        if not 0 <= m < key.n:
            raise ParameterError("plaintext out of range [0, N)")
        a = secrets.randbits(bits)
        ciphertexts.append(int((n * m + 1) * gmpy2.mpz(fixed_base_power(key, a)) % nsquare))
        exponents.append(a)
    return ciphertexts, exponents


def _multi_chunk(args) -> int:
    bases, exponents, modulus = args
    return multi_powmod(bases, exponents, modulus)


def multi_powmod(bases: Sequence[int], exponents: Sequence[int], modulus: int, *, window: int = 8,
                 mapper=None) -> int:
    """``prod bases[i]^exponents[i] mod modulus`` for non-negative exponents, by Pippenger's bucket
    method: about ``len * bits / window`` multiplications instead of ``len * 1.5 bits`` (5x fewer
    for 1,588 bases and 128-bit exponents). ``mapper`` (a process pool's ``map``) splits the
    bases into chunks computed in parallel."""
    gmpy2 = _gmpy2()
    if len(bases) != len(exponents):
        raise ParameterError("one exponent per base")
    if any(e < 0 for e in exponents):
        raise ParameterError("exponents must be non-negative")
    if mapper is not None and len(bases) >= 64:
        step = -(-len(bases) // 8)
        chunks = [([int(b) for b in bases[i:i + step]], [int(e) for e in exponents[i:i + step]], int(modulus))
                  for i in range(0, len(bases), step)]
        result = gmpy2.mpz(1)
        for part in mapper(_multi_chunk, chunks):
            result = result * part % modulus
        return int(result)
    mod = gmpy2.mpz(modulus)
    values = [gmpy2.mpz(b) % mod for b in bases]
    bits = max((int(e).bit_length() for e in exponents), default=0)
    mask = (1 << window) - 1
    result = gmpy2.mpz(1) % mod
    for j in reversed(range(-(-bits // window))):
        for _ in range(window):
            result = result * result % mod
        buckets: list = [None] * (1 << window)
        shift = j * window
        for b, e in zip(values, exponents):
            digit = (int(e) >> shift) & mask
            if digit:
                current = buckets[digit]
                buckets[digit] = b if current is None else current * b % mod
        running, total = gmpy2.mpz(1), gmpy2.mpz(1)
        for digit in range(mask, 0, -1):  # total = prod_d bucket[d]^d, by running products
            if buckets[digit] is not None:
                running = running * buckets[digit] % mod
            total = total * running % mod
        result = result * total % mod
    return int(result)


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


def _powmod_chunk(args) -> list[int]:
    """Module-level (picklable) worker of :func:`powmod_many`."""
    gmpy2 = _gmpy2()
    bases, exponents, modulus = args
    m = gmpy2.mpz(modulus)
    return [int(gmpy2.powmod(gmpy2.mpz(b), gmpy2.mpz(e), m)) for b, e in zip(bases, exponents)]


def powmod_many(bases: Sequence[int], exponents: Sequence[int] | int, modulus: int, *, mapper=None,
                chunks: int = 8) -> list[int]:
    """``[b^e mod modulus]`` for every base, with one exponent for all or one each.

    ``mapper`` (e.g. ``ProcessPoolExecutor.map``) spreads the work over ``chunks`` pieces: the
    exponentiations of a partial decryption or of a proof's batch are independent, so a machine
    with several cores uses all of them. Without it, they run here, one after another.
    """
    bases = list(bases)
    exps = [exponents] * len(bases) if isinstance(exponents, int) else list(exponents)
    if len(exps) != len(bases):
        raise ParameterError("one exponent per base, or a single one")
    if mapper is None or len(bases) < 2 * chunks:
        return _powmod_chunk((bases, exps, modulus))
    step = -(-len(bases) // chunks)
    pieces = [(bases[i:i + step], exps[i:i + step], modulus) for i in range(0, len(bases), step)]
    return [value for piece in mapper(_powmod_chunk, pieces) for value in piece]
