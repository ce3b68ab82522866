"""The ceremony's arithmetic (protocols/dkg-v1.md, sections 4 and 5): random draws from a bank's
random source, Shamir sharing whose first shares come from pairwise streams, reconstruction that
checks the redundant shares, integer Shamir sharing of the decryption exponent, bit-packed residues,
and the public draws every bank derives alike.

Every secret value a bank draws comes from its :class:`~secagg.crypto.randomness.RandomSource`
(``os.urandom`` in production) through :func:`draw_residues`, :func:`draw_below` and
:func:`draw_bits`, each consuming a fixed number of bytes, so a test-only seeded source replays a
ceremony byte for byte. A value "uniform mod l" is a 64-bit draw reduced mod ``l`` (l < 2^16: bias
below 2^-48 per value); a value uniform below a big bound is a draw 128 bits longer than the bound,
reduced (bias below 2^-128).

A degree-d sharing dealt by bank ``i`` has d shares *derived*: the banks ``i+1 .. i+d`` (mod n)
compute their own from the AES-CTR stream keyed by the pair's key; with the secret they fix the
polynomial, and only the other banks' shares travel, sealed (:func:`deal_small`, :func:`deal_big`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.errors import AbortError, ParameterError, ProtocolViolation
from secagg.paillier import _gmpy2

__all__ = ["draw_residues", "draw_below", "draw_bits", "derived_set", "explicit_set",
           "residues_from_stream", "big_from_stream", "big_value_bytes", "deal_small", "deal_big", "lagrange_small",
           "lagrange_at", "reconstruct_small", "reconstruct_big", "integer_shares", "bit_widths", "pack_residues",
           "unpack_residues", "public_integer", "public_element"]

_STATISTICAL_PAD_BITS = 128  # extra bits drawn for a value uniform below a big bound


# ----------------------------------------------------------------------------- a bank's own randomness

def draw_residues(rng: RandomSource, moduli: np.ndarray, rows: int) -> np.ndarray:
    """``rows x len(moduli)`` residues, row-major: 8 bytes each read as a little-endian u64 and
    reduced mod its column's prime (spec rule G2)."""
    return residues_from_stream(rng.random_bytes(8 * rows * moduli.size), moduli, rows)


def draw_below(rng: RandomSource, bound: int) -> int:
    """A value uniform in [0, bound) up to 2^-128: ``(bits(bound) + 128 + 7) // 8`` bytes, big-endian,
    mod bound (spec rule G3)."""
    if bound < 1:
        raise ParameterError("draw_below needs a positive bound")
    width = (int(bound).bit_length() + _STATISTICAL_PAD_BITS + 7) // 8
    return int.from_bytes(rng.random_bytes(width), "big") % int(bound)


def draw_bits(rng: RandomSource, bits: int) -> int:
    """A value uniform in [0, 2^bits): ``ceil(bits / 8)`` bytes, big-endian, the low ``bits`` bits kept
    (spec rule G4)."""
    return int.from_bytes(rng.random_bytes((bits + 7) // 8), "big") & ((1 << bits) - 1)


# ----------------------------------------------------------------------------- who derives, who receives

def derived_set(dealer: int, degree: int, banks: int) -> list[int]:
    """The banks that derive their share of a degree-``degree`` sharing by ``dealer`` (spec 5.2):
    the ``degree`` banks after it, cyclically."""
    return [(dealer + k) % banks for k in range(1, degree + 1)]


def explicit_set(dealer: int, degree: int, banks: int) -> list[int]:
    """The other banks, which receive their share of the sharing sealed, ascending."""
    derived = set(derived_set(dealer, degree, banks))
    return [j for j in range(banks) if j != dealer and j not in derived]


def residues_from_stream(data: bytes, moduli: np.ndarray, rows: int) -> np.ndarray:
    """``rows x len(moduli)`` residues from ``8 * rows * len(moduli)`` bytes (little-endian u64 mod l)."""
    raw = np.frombuffer(data, dtype="<u8").reshape(rows, moduli.size)
    return (raw % moduli.astype(np.uint64)).astype(np.int64)


def big_value_bytes(prime: int) -> int:
    """Bytes of the stream that make one element of F_prime (128 bits more than the prime)."""
    return (int(prime).bit_length() + _STATISTICAL_PAD_BITS + 7) // 8


def big_from_stream(data: bytes, prime: int, count: int) -> list:
    """``count`` elements of F_prime from consecutive big-endian chunks of :func:`big_value_bytes`."""
    gmpy2 = _gmpy2()
    width = big_value_bytes(prime)
    p = gmpy2.mpz(prime)
    return [gmpy2.mpz(int.from_bytes(data[k * width:(k + 1) * width], "big")) % p for k in range(count)]


# ----------------------------------------------------------------------------- small primes (vectorised)

def lagrange_small(points: Sequence[int], at: int, moduli: np.ndarray) -> np.ndarray:
    """Lagrange coefficients (one row per point) for evaluating at ``at`` mod each column's prime."""
    primes = np.unique(moduli)
    index = np.searchsorted(primes, moduli)
    rows = []
    for j in points:
        numerator, denominator = 1, 1
        for m in points:
            if m != j:
                numerator *= at - m
                denominator *= j - m
        rows.append([numerator * pow(denominator, -1, int(p)) % int(p) for p in primes])
    return np.array(rows, dtype=np.int64).reshape(len(points), primes.size)[:, index]


def _combine_small(values: Sequence[np.ndarray], coefficients: np.ndarray, moduli: np.ndarray) -> np.ndarray:
    out = np.zeros(values[0].shape, dtype=np.int64)
    for value, coefficient in zip(values, coefficients):
        out += value * coefficient  # < 2^32 each, at most 2c + 1 < 2^30 terms: no overflow
    return out % moduli


def deal_small(secret: np.ndarray, degree: int, dealer: int, banks: int, derived: Mapping[int, np.ndarray],
               moduli: np.ndarray) -> dict[int, np.ndarray]:
    """The dealer's own share and the explicit banks' shares of a degree-``degree`` sharing of
    ``secret`` (shape ``(rows, columns)``, column c mod ``moduli[c]``) whose derived banks' shares
    are ``derived`` (bank -> array). The polynomial is the one through (0, secret) and the derived
    shares at their points (bank j's point is j + 1)."""
    known = [0] + [j + 1 for j in derived_set(dealer, degree, banks)]
    values = [secret] + [derived[j] for j in derived_set(dealer, degree, banks)]
    out = {}
    for j in [dealer] + explicit_set(dealer, degree, banks):
        out[j] = _combine_small(values, lagrange_small(known, j + 1, moduli), moduli)
    return out


class _SmallReconstructor:
    """Caches the Lagrange tables of one column layout."""

    def __init__(self, moduli: np.ndarray, parties: int, degree: int) -> None:
        self.base = list(range(1, degree + 2))
        self.at_zero = lagrange_small(self.base, 0, moduli)
        self.extra = {x: lagrange_small(self.base, x, moduli) for x in range(degree + 2, parties + 1)}


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
    head = list(shares[:degree + 1])
    value = _combine_small(head, recon.at_zero, moduli)
    bad = np.zeros(shares.shape[1:], dtype=bool)
    for x, table in recon.extra.items():
        bad |= _combine_small(head, table, moduli) != shares[x - 1]
    if bad.any():
        _blame_small(shares, degree, moduli, bad, what)
    return value


def _blame_small(shares: np.ndarray, degree: int, moduli: np.ndarray, bad: np.ndarray, what: str) -> None:
    parties = shares.shape[0]
    if parties >= degree + 3:
        columns = np.broadcast_to(moduli, bad.shape)[bad]
        culprits = []
        for suspect in range(parties):
            others = [x for x in range(parties) if x != suspect]
            sub = shares[others][:, bad]
            head = list(sub[:degree + 1])
            points = [b + 1 for b in others[:degree + 1]]
            if all(np.array_equal(_combine_small(head, lagrange_small(points, x + 1, columns), columns), sub[k])
                   for k, x in enumerate(others[degree + 1:], start=degree + 1)):
                culprits.append(suspect)
        if len(culprits) == 1:
            raise ProtocolViolation(f"bank {culprits[0]} published {what} inconsistent with everyone else's "
                                    "shares", party=culprits[0])
    raise AbortError(f"the published {what} are inconsistent (a bank deviated from the protocol)",
                     round="dkg")


# ----------------------------------------------------------------------------- big prime fields

def lagrange_at(points: Sequence[int], prime: int, at: int = 0) -> list:
    """Lagrange coefficients mod ``prime`` for evaluating at ``at`` from ``points``."""
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


def deal_big(secrets_: Sequence[int], degree: int, dealer: int, banks: int, derived: Mapping[int, Sequence[int]],
             prime: int) -> dict[int, list]:
    """As :func:`deal_small`, over F_prime, for a list of secrets (one sharing each)."""
    gmpy2 = _gmpy2()
    p = gmpy2.mpz(prime)
    order = derived_set(dealer, degree, banks)
    known = [0] + [j + 1 for j in order]
    columns = [[gmpy2.mpz(s) % p for s in secrets_]] + [list(derived[j]) for j in order]
    out = {}
    for j in [dealer] + explicit_set(dealer, degree, banks):
        coefficients = lagrange_at(known, prime, j + 1)
        out[j] = [sum((c * column[k] for c, column in zip(coefficients, columns)), gmpy2.mpz(0)) % p
                  for k in range(len(secrets_))]
    return out


def reconstruct_big(shares: Sequence[int], degree: int, prime: int, *, what: str = "value") -> int:
    """The value at 0 of one degree-``degree`` sharing given at x = 1..n, checking the redundant
    shares (blame as in :func:`reconstruct_small`)."""
    gmpy2 = _gmpy2()
    parties = len(shares)

    def evaluate(indices: Sequence[int], at: int):
        coefficients = lagrange_at([i + 1 for i in indices], prime, at)
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

def integer_shares(secret: int, degree: int, points: int, coefficient_low: int, rng: RandomSource) -> list[int]:
    """Shamir shares over the integers at x = 1..points: f(x) = secret + sum a_m x^m, every a_m
    uniform in [coefficient_low, 2 coefficient_low) (drawn a_1 first, rule G3). With
    ``coefficient_low >= |secret|`` every share is positive. The caller passes ``Delta * value``
    as the secret: then any ``degree`` shares hide ``value`` statistically (see the spec, 5.9)."""
    coefficients = [coefficient_low + draw_below(rng, coefficient_low) for _ in range(degree)]
    out = []
    for x in range(1, points + 1):
        value = 0
        for c in reversed(coefficients):
            value = (value + c) * x
        out.append(value + secret)
    return out


# ----------------------------------------------------------------------------- packed residues

def bit_widths(moduli: np.ndarray) -> np.ndarray:
    """Bits of each column's residues: bit_length(l - 1)."""
    return np.array([int(p - 1).bit_length() for p in moduli], dtype=np.int64)


def _bit_offsets(rows: int, widths: np.ndarray) -> np.ndarray:
    """The bit position of every (row, column) value in the packed string, ``(rows, columns)``."""
    return np.arange(rows, dtype=np.int64)[:, None] * int(widths.sum()) + (np.cumsum(widths) - widths)[None, :]


def pack_residues(values: np.ndarray, moduli: np.ndarray) -> bytes:
    """Residues ``(rows, columns)`` as one bit string: row-major, each value in its column's width,
    least significant bit first, bits filling each byte from its least significant bit, the last
    byte padded with zero bits (spec 4). Built as little-endian 64-bit words: the values' bits are
    disjoint, so a word is the sum of the values that start in it plus the one that spills into it."""
    widths = bit_widths(moduli)
    rows = values.shape[0]
    length = (rows * int(widths.sum()) + 7) // 8
    offsets = _bit_offsets(rows, widths).ravel()
    flat = values.astype(np.uint64).ravel()
    word, shift = offsets >> 6, (offsets & 63).astype(np.uint64)
    words = np.zeros(length // 8 + 2, dtype=np.uint64)
    if flat.size:
        starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])  # word is non-decreasing
        words[word[starts]] += np.add.reduceat(flat << shift, starts)
        spill = np.flatnonzero(offsets % 64 + np.tile(widths, rows) > 64)  # at most one per word boundary
        words[word[spill] + 1] += flat[spill] >> (np.uint64(64) - shift[spill])
    return words.astype("<u8").tobytes()[:length]


def unpack_residues(data: bytes, rows: int, moduli: np.ndarray, what: str, party: int | str) -> np.ndarray:
    """The inverse of :func:`pack_residues`; :class:`ProtocolViolation` naming ``party`` for a wrong
    length, a padding bit set or a value not below its column's prime."""
    widths = bit_widths(moduli)
    total = rows * int(widths.sum())
    if len(data) != (total + 7) // 8:
        raise ProtocolViolation(f"bank {party} sent {len(data)} bytes of {what}, expected {(total + 7) // 8}",
                                party=party)
    raw = np.frombuffer(data, dtype=np.uint8)
    if total % 8 and int(raw[-1]) >> (total % 8):
        raise ProtocolViolation(f"bank {party} sent {what} with padding bits set", party=party)
    padded = np.concatenate([raw, np.zeros(3, dtype=np.uint8)]).astype(np.int64)
    offsets = _bit_offsets(rows, widths)
    index = offsets >> 3
    word = padded[index] | (padded[index + 1] << 8) | (padded[index + 2] << 16)
    values = (word >> (offsets & 7)) & ((1 << widths) - 1)
    if np.any(values >= moduli):
        raise ProtocolViolation(f"bank {party} sent {what} outside their fields", party=party)
    return values


# ----------------------------------------------------------------------------- public draws

def public_integer(label: bytes, context: bytes, bits: int) -> int:
    """A public pseudorandom integer of ``bits`` bits from SHAKE-256 over label and context (every
    bank and the coordinator derive the same; nobody chooses it)."""
    stream = hashlib.shake_256(b"secagg/paillier/dkg/v1/" + label + b"\x00" + context).digest((bits + 7) // 8 + 16)
    return int.from_bytes(stream, "big") >> (8 * len(stream) - bits)


def public_element(label: bytes, context: bytes, modulus: int) -> int:
    """A public pseudorandom element of [2, modulus) (128 extra bits: statistically uniform)."""
    return 2 + public_integer(label, context, modulus.bit_length() + 128) % (modulus - 2)
