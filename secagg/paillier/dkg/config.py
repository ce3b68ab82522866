"""Parameters of the dealerless key ceremony, checked once, and the tables they imply.

A :class:`DkgConfig` fixes the banks, the decryption threshold, the corrupt banks the ceremony
must withstand (semi-honest, honest majority: ``n >= 2c + 1``) and the key size; every derived
number (the sieving primes, the CRT basis, the two prime fields, the offsets that pin the top
bits of p and q) is computed here, the same in every bank, so that two banks can never disagree
about what a message means.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

import numpy as np

from secagg.errors import ParameterError
from secagg.paillier import _gmpy2

__all__ = ["DkgConfig", "MIN_SECURE_KEY_BITS", "STATISTICAL_BITS"]

MIN_SECURE_KEY_BITS = 2048
MIN_TEST_KEY_BITS = 512
STATISTICAL_BITS = 80  # statistical hiding of every masked value the ceremony reveals
HIGH_ENTROPY_BITS = 66  # bits of each bank's random multiple of M (the part of p above the CRT residue)
TRIAL_DIVISION_BOUND = 1 << 16  # N is divided publicly by every prime below this
_SIEVE_FAILURE_BITS = 8  # attempts per prime so that all of them fail with probability <= 2^-8


def _odd_primes_below(bound: int) -> list[int]:
    sieve = np.ones(bound, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(bound ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = False
    return [int(p) for p in np.flatnonzero(sieve) if p > 2]


_PRIMES = _odd_primes_below(TRIAL_DIVISION_BOUND)


@dataclass(frozen=True)
class DkgConfig:
    """One ceremony: ``banks`` banks, decryption by any ``threshold`` of them, ``corrupt`` tolerated.

    ``corrupt`` (``c``, default ``min((n - 1) // 2, t - 1)``) is the number of semi-honest banks
    the generation keeps p and q from (needs ``banks >= 2c + 1``: products of two degree-c sharings
    are reconstructed from 2c + 1 points) and ``t > c``. The Paillier rounds' own bounds
    (``2t > n + c``, the banks' floor) are checked where the key is used
    (:func:`secagg.paillier.roles.paillier_threat_model`, and by ``paillier-keygen``). ``batch`` is the number of candidate
    pairs sieved per batch (default: about the expected number for the key size, so one or two
    batches usually suffice). Below 2048 bits the key is for tests only and needs ``insecure=True``.
    """

    banks: int
    threshold: int
    key_bits: int = 2048
    corrupt: int | None = None
    batch: int | None = None
    max_batches: int = 64
    confirm_bases: int = 40
    insecure: bool = False

    def __post_init__(self) -> None:
        for name in ("banks", "threshold", "key_bits", "max_batches", "confirm_bases"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        n = self.banks
        if not 3 <= n <= 64:
            raise ParameterError(f"the ceremony needs 3 to 64 banks (an honest majority of at least 2), got {n}")
        corrupt = self.corrupt if self.corrupt is not None else min((n - 1) // 2, self.threshold - 1)
        if isinstance(corrupt, bool) or not isinstance(corrupt, int) or corrupt < 1:
            raise ParameterError(f"the ceremony must keep p and q from at least one corrupt bank, got corrupt="
                                 f"{corrupt!r} (a threshold of {self.threshold} allows none: raise it)")
        if n < 2 * corrupt + 1:
            raise ParameterError(f"{n} banks cannot keep p and q from {corrupt} corrupt banks: the ceremony needs an "
                                 f"honest majority, n >= 2c + 1 = {2 * corrupt + 1}")
        if not corrupt < self.threshold <= n:
            raise ParameterError(f"threshold must be in ({corrupt}, {n}]: {corrupt} corrupt banks must not decrypt "
                                 "alone")
        object.__setattr__(self, "corrupt", corrupt)
        if self.key_bits % 8 or self.key_bits > 8192:  # N travels in k/8 bytes (protocols/dkg-v1.md, 2)
            raise ParameterError(f"key_bits must be a multiple of 8 and at most 8192, got {self.key_bits}")
        if self.key_bits < MIN_SECURE_KEY_BITS and not self.insecure:
            raise ParameterError(f"a {self.key_bits}-bit key protects nothing; below {MIN_SECURE_KEY_BITS} bits "
                                 "the ceremony runs for tests only (insecure=True)")
        if self.key_bits < MIN_TEST_KEY_BITS:
            raise ParameterError(f"the ceremony's sieve needs key_bits >= {MIN_TEST_KEY_BITS}, got {self.key_bits}")
        if self.batch is not None and (isinstance(self.batch, bool) or not isinstance(self.batch, int)
                                       or not 1 <= self.batch <= 1 << 16):
            raise ParameterError(f"batch must be an integer in [1, 65536], got {self.batch!r}")
        if self.batch is None:
            object.__setattr__(self, "batch", self.default_batch)

    # ------------------------------------------------------------------ who does what

    @property
    def corrupt_banks(self) -> int:
        """``c`` as the constructor resolved it (``corrupt`` is None only as an argument)."""
        return cast(int, self.corrupt)

    @property
    def batch_size(self) -> int:
        """Candidate pairs per batch as the constructor resolved it (``batch`` is None only as an argument)."""
        return cast(int, self.batch)

    @property
    def product_points(self) -> int:
        """Shares that determine a product of two degree-c sharings (degree 2c)."""
        return 2 * self.corrupt_banks + 1

    @property
    def delta(self) -> int:
        return math.factorial(self.banks)

    @property
    def half_bits(self) -> int:
        return self.key_bits // 2

    # ------------------------------------------------------------------ sieving primes

    @cached_property
    def tiny_primes(self) -> tuple[int, ...]:
        """Odd primes <= n: Shamir sharing mod such a prime has too few points, so p and q take
        public random nonzero residues modulo them (as they take the public residue 3 mod 4)."""
        return tuple(p for p in _PRIMES if p <= self.banks)

    @cached_property
    def _sieve(self) -> tuple[tuple[int, ...], int]:
        tiny = math.prod(self.tiny_primes)
        limit = 1 << (self.half_bits - 2 - math.ceil(math.log2(self.banks + 1)) - HIGH_ENTROPY_BITS)
        modulus, primes = 4 * tiny, []
        for p in _PRIMES:
            if p <= self.banks:
                continue
            if modulus * p > limit:
                break
            modulus *= p
            primes.append(p)
        if len(primes) < 8:
            raise ParameterError("key too small for the sieve")
        return tuple(primes), modulus

    @property
    def sieve_primes(self) -> tuple[int, ...]:
        """Odd primes above n whose residues of p and q are drawn jointly, nonzero, in CRT form."""
        return self._sieve[0]

    @property
    def crt_modulus(self) -> int:
        """M = 4 * prod(tiny primes) * prod(sieve primes): each bank's share of p is a residue mod M
        plus a random multiple of M."""
        return self._sieve[1]

    @cached_property
    def tiny_modulus(self) -> int:
        """4 * prod(tiny primes): p and q are fixed modulo it by public offsets."""
        return 4 * math.prod(self.tiny_primes)

    @cached_property
    def attempts(self) -> tuple[int, ...]:
        """Independent attempts per sieve prime in one batch, so that all fail with probability <= 2^-8."""
        out = []
        for p in self.sieve_primes:
            fail = 1 - ((p - 1) / p) ** 2
            out.append(max(1, math.ceil(_SIEVE_FAILURE_BITS * math.log(2) / -math.log(fail))))
        return tuple(out)

    @cached_property
    def column_primes(self) -> np.ndarray:
        """The prime of every sieve column (attempts of one prime are adjacent), int64."""
        return np.repeat(np.array(self.sieve_primes, dtype=np.int64), self.attempts)

    @cached_property
    def column_prime_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.sieve_primes)), self.attempts)

    @cached_property
    def crt_basis(self) -> tuple[int, ...]:
        """e_l = 1 mod l, 0 mod M/l, for every sieve prime l (so each is a multiple of the tiny modulus)."""
        m = self.crt_modulus
        return tuple((m // p) * pow(m // p, -1, p) % m for p in self.sieve_primes)

    @cached_property
    def random_multiple_bound(self) -> int:
        """Each bank's random multiple r_i of M is uniform in [0, bound): p stays below 2^(k/2)."""
        return ((1 << (self.half_bits - 2)) - self.tiny_modulus) // (self.banks * self.crt_modulus) - 1

    @property
    def offset_base(self) -> int:
        """3 * 2^(k/2 - 2): p and q start here, so both have their two top bits set and N has k bits."""
        return 3 << (self.half_bits - 2)

    @cached_property
    def trial_division_product(self) -> int:
        """Product of the odd primes in (largest sieve prime, 2^16): N is divided by them publicly."""
        gmpy2 = _gmpy2()
        top = self.sieve_primes[-1]
        product = gmpy2.mpz(1)
        for p in _PRIMES:
            if p > top:
                product *= p
        return product

    # ------------------------------------------------------------------ fields

    @cached_property
    def modulus_field(self) -> int:
        """Prime of the field where N = p q is computed (above 2^k > N)."""
        return int(_gmpy2().next_prime(1 << self.key_bits))

    @cached_property
    def key_field(self) -> int:
        """Prime of the field where phi * R and its mask are computed (above every value revealed,
        with STATISTICAL_BITS + wrap bits to spare; see secagg.paillier.dkg.bank)."""
        log_n = math.ceil(math.log2(self.banks + 1))
        return int(_gmpy2().next_prime(1 << (2 * self.key_bits + 2 * log_n + STATISTICAL_BITS + self.wrap_bits + 4)))

    @property
    def wrap_bits(self) -> int:
        """Top bits each of the 2c + 1 summing banks publishes of its additive share (finds the wrap count)."""
        return math.ceil(math.log2(self.product_points)) + 2

    @property
    def default_batch(self) -> int:
        expected = self.expected_candidates
        return int(min(4096, max(64, 2 ** math.ceil(math.log2(expected / 1.5)))))

    @property
    def expected_candidates(self) -> float:
        """Expected sieved candidate pairs per biprime: each factor is prime with probability
        about e^gamma ln(B) / ln(2^(k/2)) once coprime to every prime up to B (Mertens)."""
        largest = self.sieve_primes[-1]
        chance = 1.7810724179901979 * math.log(largest) / (self.half_bits * math.log(2))
        return 1 / chance ** 2

    def digest(self) -> bytes:
        """SHA-256 of every parameter; each bank signs its hello over it."""
        text = (f"secagg/paillier/dkg/v1|banks={self.banks}|threshold={self.threshold}|corrupt={self.corrupt}|"
                f"key_bits={self.key_bits}|batch={self.batch}|max_batches={self.max_batches}|"
                f"confirm_bases={self.confirm_bases}|insecure={self.insecure}")
        return hashlib.sha256(text.encode()).digest()
