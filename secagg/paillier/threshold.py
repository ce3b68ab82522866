"""Threshold Paillier decryption (Shoup 2000 / Damgard-Jurik 2001 with s = 1), on gmpy2 integers.

Key generation (trusted dealer, see docs/paillier.md): safe primes ``p = 2p' + 1``, ``q = 2q' + 1``,
``N = pq``, ``m = p'q'``; the decryption exponent ``d`` satisfies ``d = 0 mod m`` and ``d = 1 mod N``
and is Shamir-shared over the integers mod ``Nm``: party ``i`` (1-based) holds ``s_i = f(i)`` with
``f(0) = d``. The public key is an ordinary Paillier key (``g = N + 1``; a ``phe`` public key), so
anyone can encrypt and add ciphertexts.

Decryption of a ciphertext ``c`` needs any ``t`` parties: each publishes the partial decryption
``c_i = c^(2 Delta s_i) mod N^2`` (``Delta = n!``); a combiner computes
``c' = prod c_i^(2 lambda_i) mod N^2`` with the integer Lagrange coefficients
``lambda_i = Delta prod_{j != i} j / (j - i)``, so that ``c' = c^(4 Delta^2 d)``, and recovers
``M = L(c') * (4 Delta^2)^-1 mod N`` with ``L(u) = (u - 1) / N``. Fewer than ``t`` shares of ``d``
say nothing about it, so fewer than ``t`` parties cannot decrypt.

Verifiable decryption (Shoup 2000, section 2): the dealer also publishes a random square ``v`` of
Z*_{N^2} and each party's verification key ``v_i = v^(Delta s_i)``; a partial decryption then comes
with a proof that ``log_{c^4}(c_i^2) = log_v(v_i)`` (:mod:`secagg.paillier.proofs`), so a wrong one is
rejected and its sender named.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from secagg.errors import CryptoError, ParameterError
from secagg.paillier import _gmpy2, _phe

__all__ = [
    "ThresholdPublicKey",
    "KeyShare",
    "PartialDecryption",
    "generate_threshold_keypair",
    "partial_decrypt",
    "combine_partial_decryptions",
    "safe_prime",
    "save_key_material",
    "load_public_key",
    "load_key_share",
]

MIN_KEY_BITS = 256  # tests only; deployments use 2048 or 3072
MIN_FILE_KEY_BITS = 2048  # keys loaded from files (a deployment): anything smaller is refused
# An element whose order divides lcm(1..256) is refused as a base: 1, N^2 - 1 and every other
# element of tiny order would make "encryptions" decryptable without the key.
_SMOOTH = math.lcm(*range(1, 257))
_PUBLIC_FORMAT, _SHARE_FORMAT = "secagg-paillier-public/1", "secagg-paillier-share/1"


def _check_group_element(name: str, value: int, n: int, *, large_order: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{name} must be an integer, got {type(value).__name__}")
    nsquare = n * n
    if not 1 < value < nsquare - 1 or math.gcd(value, n) != 1:
        raise ParameterError(f"{name} must be an element of Z*_(N^2) other than 1 and N^2 - 1")
    if large_order and pow(value, _SMOOTH, nsquare) == 1:
        raise ParameterError(f"{name} has a tiny order (dividing lcm(1..256)): it hides nothing")
    return value


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


@dataclass(frozen=True)
class ThresholdPublicKey:
    """The Paillier public key plus the threshold parameters every party knows."""

    n: int
    threshold: int
    parties: int
    delta: int = field(repr=False)
    # h^N mod N^2 for h = -x^2 mod N (Damgard-Jurik-Nielsen): obfuscators become h_N^a for a short
    # random a (see secagg.paillier.vector); None for the textbook r^N with r uniform in Z*_N.
    obfuscation_base: int | None = field(default=None, repr=False)
    # Shoup's verification keys: a random square v of Z*_(N^2) and v_i = v^(Delta s_i) for party i.
    verification_base: int | None = field(default=None, repr=False)
    verification_keys: tuple[int, ...] = field(default=(), repr=False)
    # gamma with sum lambda_i s_i = Delta * d, d = 0 mod phi(N) and d = gamma mod N: 1 for the
    # dealer's d = 1 mod N; the dealerless ceremony publishes gamma = phi * R mod N for a random
    # shared R, so that nobody ever has to invert phi mod N (secagg.paillier.dkg).
    decryption_scale: int = field(default=1, repr=False)

    def __post_init__(self) -> None:
        """Every published value is checked here, so no party computes with a forged one."""
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or n < 15 or n % 2 == 0:
            raise ParameterError("N must be an odd integer")
        if math.isqrt(n) ** 2 == n or any(n % p == 0 for p in _SMALL_PRIMES if p < 1000):
            raise ParameterError("N has a small factor or is a square: not an RSA modulus")
        for name in ("threshold", "parties"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if self.threshold > self.parties:
            raise ParameterError(f"threshold {self.threshold} exceeds the {self.parties} parties")
        if self.delta != math.factorial(self.parties):
            raise ParameterError("delta must be parties!")
        if self.obfuscation_base is not None:
            _check_group_element("obfuscation_base", self.obfuscation_base, n, large_order=True)
        keys = tuple(self.verification_keys)
        if self.verification_base is not None:
            _check_group_element("verification_base", self.verification_base, n, large_order=True)
            if len(keys) != self.parties:
                raise ParameterError(f"one verification key per party: {self.parties} expected, got {len(keys)}")
            for i, key in enumerate(keys):
                _check_group_element(f"verification key {i + 1}", key, n, large_order=False)
        elif keys:
            raise ParameterError("verification keys without a verification base")
        object.__setattr__(self, "verification_keys", keys)
        scale = self.decryption_scale
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale < n or math.gcd(scale, n) != 1:
            raise ParameterError("decryption_scale must be an integer in [1, N) prime to N")

    @property
    def verifiable(self) -> bool:
        """True when partial decryptions can be proven (Shoup's verification keys are published)."""
        return self.verification_base is not None

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 over every public value: what contributions and proofs are bound to."""
        def integer(value: int | None) -> bytes:
            raw = b"" if value is None else value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
            return len(raw).to_bytes(4, "little") + raw

        parts = [b"secagg/paillier/v1/public-key\x00", integer(self.n), integer(self.threshold),
                 integer(self.parties), integer(self.obfuscation_base), integer(self.verification_base)]
        parts += [integer(k) for k in self.verification_keys]
        if self.decryption_scale != 1:  # dealer keys keep the fingerprint they always had
            parts += [b"decryption-scale\x00", integer(self.decryption_scale)]
        return hashlib.sha256(b"".join(parts)).digest()

    def to_json(self) -> dict:
        return {"format": _PUBLIC_FORMAT, "n": hex(self.n), "threshold": self.threshold, "parties": self.parties,
                "obfuscation_base": None if self.obfuscation_base is None else hex(self.obfuscation_base),
                "verification_base": None if self.verification_base is None else hex(self.verification_base),
                "verification_keys": [hex(k) for k in self.verification_keys],
                **({"decryption_scale": hex(self.decryption_scale)} if self.decryption_scale != 1 else {}),
                "fingerprint": self.fingerprint.hex()}

    @classmethod
    def from_json(cls, data: object, *, min_key_bits: int = MIN_FILE_KEY_BITS) -> ThresholdPublicKey:
        """Public parameters from :meth:`to_json`, every value validated; ``ParameterError`` otherwise."""
        try:
            if not isinstance(data, dict) or data.get("format") != _PUBLIC_FORMAT:
                raise ValueError(f"not a {_PUBLIC_FORMAT} document")
            optional = lambda v: None if v is None else int(v, 16)  # noqa: E731
            parties = data["parties"]
            key = cls(int(data["n"], 16), data["threshold"], parties,
                      math.factorial(parties) if isinstance(parties, int) and 0 < parties <= 1000 else -1,
                      optional(data["obfuscation_base"]), optional(data["verification_base"]),
                      tuple(int(k, 16) for k in data["verification_keys"]),
                      int(data.get("decryption_scale", "0x1"), 16))
            claimed = bytes.fromhex(data["fingerprint"])
        except ParameterError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParameterError(f"malformed Paillier public parameters: {exc}") from None
        if key.key_bits < min_key_bits:
            raise ParameterError(f"a {key.key_bits}-bit modulus is below the {min_key_bits} bits a deployment needs")
        if not key.verifiable:
            raise ParameterError("public parameters without verification keys: partial decryptions could not be checked")
        if claimed != key.fingerprint:
            raise ParameterError("the public parameters do not match their fingerprint (altered?)")
        return key

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def key_bits(self) -> int:
        return self.n.bit_length()

    @property
    def phe_key(self):
        """The same key as a ``phe.PaillierPublicKey`` (g = N + 1)."""
        return _phe().PaillierPublicKey(self.n)

    def check_ciphertext(self, c: int) -> int:
        """Refuse anything that is not an element of Z*_{N^2} (typed error, no arithmetic on it)."""
        if isinstance(c, bool) or not isinstance(c, int) and not hasattr(c, "__index__"):
            raise CryptoError(f"a ciphertext is an integer, got {type(c).__name__}")
        c = int(c)
        if not 0 < c < self.nsquare:
            raise CryptoError("ciphertext out of range [1, N^2)")
        if math.gcd(c, self.n) != 1:
            raise CryptoError("ciphertext is not invertible mod N^2")
        return c


@dataclass(frozen=True)
class KeyShare:
    """Party ``index``'s share of the decryption exponent (keep it secret)."""

    index: int  # 1..parties
    share: int = field(repr=False)
    public_key: ThresholdPublicKey

    def check(self) -> None:
        """The share matches this party's published verification key (ParameterError otherwise)."""
        key = self.public_key
        if not 1 <= self.index <= key.parties:
            raise ParameterError(f"share index {self.index} outside 1..{key.parties}")
        if not 0 < self.share < key.n * key.n * key.n:
            raise ParameterError("share out of range")
        if key.verification_base is not None and pow(key.verification_base, key.delta * self.share, key.nsquare) != \
                key.verification_keys[self.index - 1]:
            raise ParameterError(f"key share {self.index} does not match its verification key")


@dataclass(frozen=True)
class PartialDecryption:
    index: int
    value: int


def safe_prime(bits: int) -> int:
    """A random safe prime p = 2p' + 1 of exactly ``bits`` bits (p' prime), from ``secrets``.

    The two top bits are set, so the product of two such primes has exactly ``2 * bits`` bits.
    """
    gmpy2 = _gmpy2()
    if bits < 16:
        raise ParameterError("safe primes below 16 bits are not supported")
    while True:
        # p' odd with its two top bits set: p >= 3 * 2^(bits-2), so p * q >= 2^(2 bits - 1)
        candidate = secrets.randbits(bits - 1) | (3 << (bits - 3)) | 1
        # p' and 2p' + 1 must both avoid small factors; sieve before the expensive tests
        if any(candidate % s == 0 or (2 * candidate + 1) % s == 0 for s in _SMALL_PRIMES if s < candidate):
            continue
        if gmpy2.is_prime(candidate, 30) and gmpy2.is_prime(2 * candidate + 1, 30):
            return 2 * candidate + 1


def generate_threshold_keypair(parties: int, threshold: int, key_bits: int = 2048, *,
                               primes: tuple[int, int] | None = None,
                               short_exponent: bool = True) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """Trusted-dealer setup: a Paillier key whose decryption needs ``threshold`` of ``parties``.

    ``primes`` (two safe primes) replaces prime generation for known-answer tests. The dealer must
    erase ``p``, ``q`` and ``d`` afterwards; nothing here keeps them. ``short_exponent`` publishes
    the Damgard-Jurik-Nielsen base ``h^N mod N^2`` (``h = -x^2 mod N``, ``x`` random) so that
    encryption can use short exponents and fixed-base tables (docs/paillier.md, "Encryption").
    """
    gmpy2 = _gmpy2()
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
        raise ParameterError(f"parties must be a positive integer, got {parties!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= parties:
        raise ParameterError(f"threshold must be in 1..{parties}, got {threshold!r}")
    if primes is None:
        if key_bits < MIN_KEY_BITS or key_bits % 2:
            raise ParameterError(f"key_bits must be an even number >= {MIN_KEY_BITS}, got {key_bits}")
        p = safe_prime(key_bits // 2)
        q = safe_prime(key_bits // 2)
        while q == p:
            q = safe_prime(key_bits // 2)
    else:
        p, q = (int(x) for x in primes)
        for x in (p, q):
            if not (gmpy2.is_prime(x) and gmpy2.is_prime((x - 1) // 2)):
                raise ParameterError("primes must be two safe primes")
        if p == q:
            raise ParameterError("primes must differ")
    n = p * q
    m = ((p - 1) // 2) * ((q - 1) // 2)
    if math.gcd(n, m) != 1:
        raise ParameterError("gcd(N, m) != 1: choose other primes")
    modulus = n * m
    d = m * int(gmpy2.invert(m, n)) % modulus  # d = 0 mod m, d = 1 mod N
    coefficients = [d] + [secrets.randbelow(modulus) for _ in range(threshold - 1)]
    base = None
    if short_exponent:
        while True:
            x = secrets.randbelow(n - 2) + 2
            if math.gcd(x, n) == 1:
                break
        base = int(gmpy2.powmod((-x * x) % n, n, n * n))
    while True:  # a random square of Z*_(N^2): generates the squares w.h.p. (Shoup)
        r = secrets.randbelow(n * n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    v = r * r % (n * n)
    delta = math.factorial(parties)
    values = []
    for i in range(1, parties + 1):
        value = 0
        for c in reversed(coefficients):  # Horner, exact integers
            value = (value * i + c) % modulus
        values.append(value)
    verification = tuple(int(gmpy2.powmod(v, delta * value, n * n)) for value in values)
    public = ThresholdPublicKey(n, threshold, parties, delta, base, v, verification)
    return public, [KeyShare(i, value, public) for i, value in enumerate(values, start=1)]


def partial_decrypt(share: KeyShare, ciphertexts: Sequence[int]) -> list[PartialDecryption]:
    """Party ``share.index``'s partial decryptions ``c^(2 Delta s_i) mod N^2`` of each ciphertext."""
    gmpy2 = _gmpy2()
    key = share.public_key
    exponent = gmpy2.mpz(2 * key.delta * share.share)
    nsquare = gmpy2.mpz(key.nsquare)
    return [PartialDecryption(share.index, int(gmpy2.powmod(gmpy2.mpz(key.check_ciphertext(c)), exponent, nsquare)))
            for c in ciphertexts]


def _lagrange_times_delta(indices: Sequence[int], delta: int) -> list[int]:
    """lambda_i = Delta * prod_{j != i} j / (j - i), exact integers (Delta makes them integral)."""
    out = []
    for i in indices:
        numerator, denominator = delta, 1
        for j in indices:
            if j != i:
                numerator *= j
                denominator *= j - i
        if numerator % denominator:
            raise CryptoError("Lagrange coefficient is not integral (indices beyond the party count?)")
        out.append(numerator // denominator)
    return out


def combine_partial_decryptions(key: ThresholdPublicKey, partials: Sequence[Sequence[PartialDecryption]]) -> list[int]:
    """Plaintexts from ``threshold`` (or more) parties' partial decryptions of the same ciphertexts.

    ``partials[k]`` is party k's list (one entry per ciphertext, in order). With exactly ``threshold``
    parties the result is trusted as is; with more, two different ``threshold`` subsets are
    combined and must agree, which exposes any single party that sent a wrong partial decryption
    (:class:`CryptoError`). Raises :class:`ParameterError` with fewer than ``threshold`` parties.
    """
    by_party: dict[int, Sequence[PartialDecryption]] = {}
    for lst in partials:
        if not lst:
            raise ParameterError("empty partial decryption list")
        index = lst[0].index
        if any(p.index != index for p in lst):
            raise ParameterError("a party's list mixes indices")
        if not 1 <= index <= key.parties:
            raise CryptoError(f"partial decryption from unknown party {index}")
        if index in by_party:
            raise ParameterError(f"two partial decryption lists from party {index}")
        by_party[index] = lst
    if len(by_party) < key.threshold:
        raise ParameterError(f"{len(by_party)} parties' partial decryptions, the threshold is {key.threshold}")
    lengths = {len(lst) for lst in by_party.values()}
    if len(lengths) != 1:
        raise ParameterError("partial decryption lists differ in length")
    parties = sorted(by_party)
    count = lengths.pop()
    result = _combine(key, {i: by_party[i] for i in parties[:key.threshold]}, count)
    if len(parties) > key.threshold:
        # A second threshold subset must give the same plaintexts: a single party that sent a wrong
        # partial decryption shifts the two combinations differently (its Lagrange weight differs).
        if _combine(key, {i: by_party[i] for i in parties[-key.threshold:]}, count) != result:
            raise CryptoError("partial decryptions disagree: a party sent a wrong partial decryption")
    return result


def _combine(key: ThresholdPublicKey, by_party: Mapping[int, Sequence[PartialDecryption]], count: int) -> list[int]:
    gmpy2 = _gmpy2()
    chosen = sorted(by_party)
    lambdas = _lagrange_times_delta(chosen, key.delta)
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    scale = gmpy2.invert(gmpy2.mpz(4 * key.delta * key.delta * key.decryption_scale) % n, n)
    plaintexts = []
    for position in range(count):
        combined = gmpy2.mpz(1)
        for index, lam in zip(chosen, lambdas):
            value = gmpy2.mpz(key.check_ciphertext(by_party[index][position].value))
            if lam < 0:
                value, lam = gmpy2.invert(value, nsquare), -lam
            combined = combined * gmpy2.powmod(value, 2 * lam, nsquare) % nsquare
        if (combined - 1) % n:
            raise CryptoError("partial decryptions are inconsistent (L-function input is not 1 mod N)")
        plaintexts.append(int((combined - 1) // n * scale % n))
    return plaintexts


# ----------------------------------------------------------------------------- key files

def save_key_material(directory: str | Path, public: ThresholdPublicKey, shares: Sequence[KeyShare]) -> list[Path]:
    """Write ``public.json`` and one ``share-<i>.json`` per party (mode 0600) under ``directory``.

    The dealer hands share ``i`` to bank ``i`` only, then erases every share file and ``p``, ``q``,
    ``d`` (nothing here keeps them): see docs/paillier.md, "Key ceremony".
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "public.json"]
    written[0].write_text(json.dumps(public.to_json(), indent=1) + "\n")
    for share in shares:
        path = out / f"share-{share.index}.json"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps({"format": _SHARE_FORMAT, "index": share.index, "share": hex(share.share),
                                    "public_fingerprint": public.fingerprint.hex()}) + "\n")
        written.append(path)
    return written


def _read_json(path: str | Path, what: str) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read {what} {path}: {exc}") from None


def load_public_key(path: str | Path, *, min_key_bits: int = MIN_FILE_KEY_BITS) -> ThresholdPublicKey:
    """The public parameters in ``path``, validated (:meth:`ThresholdPublicKey.from_json`)."""
    return ThresholdPublicKey.from_json(_read_json(path, "Paillier public parameters"), min_key_bits=min_key_bits)


def load_key_share(path: str | Path, public: ThresholdPublicKey) -> KeyShare:
    """This bank's key share, checked against the public parameters and its verification key."""
    data = _read_json(path, "Paillier key share")
    try:
        if not isinstance(data, dict) or data.get("format") != _SHARE_FORMAT:
            raise ValueError(f"not a {_SHARE_FORMAT} document")
        share = KeyShare(int(data["index"]), int(data["share"], 16), public)
        fingerprint = bytes.fromhex(data["public_fingerprint"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParameterError(f"malformed Paillier key share {path}: {exc}") from None
    if fingerprint != public.fingerprint:
        raise ParameterError(f"{path} belongs to other public parameters")
    share.check()
    return share
