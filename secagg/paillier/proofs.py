"""Zero-knowledge proofs of the Paillier path: a bank knows the plaintexts of its ciphertexts, and
a batch of partial decryptions is correct (Shoup 2000, batched).

**Plaintext knowledge** (with every contribution). A ciphertext is ``c = g^m h_N^a mod N^2``
(``g = 1 + N``, ``h_N`` the key's short-exponent base, itself an N-th residue). For a batch
``c_1..c_L`` the bank picks ``x`` uniform in ``Z_N`` and ``y`` uniform of ``|a| + 128 + log2 L + 80``
bits, sends ``A = g^x h_N^y``, and with 128-bit coefficients ``e_i`` derived by Fiat-Shamir from
the context (session, round, key, sender) and ``A`` and every ``c_i`` answers
``z_m = x + sum e_i m_i mod N`` and ``z_a = y + sum e_i a_i`` (over the integers). The verifier
checks ``g^z_m h_N^z_a = A prod c_i^e_i mod N^2``. Sound: from two answers for different
coefficients the difference gives ``c^d = g^u h_N^w`` with ``d`` below the smallest prime factor of
N, so with ``1 = alpha d + beta N``, ``c g^(-alpha u) = h_N^(alpha w) (c^beta)^N`` is an N-th residue:
``c`` encrypts ``alpha u mod N``, which the prover therefore knows (batched, per ciphertext, with
L + 1 such answers). Zero knowledge: ``z_m`` is uniform, ``z_a`` hides ``sum e_i a_i`` statistically.
What it stops: a corrupt bank signing a ciphertext built from other banks' ciphertexts (e.g. the
inverse of an honest bank's contribution, which would cancel it out of the aggregate), whose
plaintext it cannot know; the context binds the proof to its sender, so copying another bank's
contribution and proof fails too.

**Partial decryptions.**

Party ``i`` holds ``x = Delta s_i`` with ``v_i = v^x`` public, and publishes ``d_j = c_j^(2x)`` for
every ciphertext ``c_j`` of an aggregate. One proof covers the whole batch: with coefficients
``rho_j`` of 128 bits derived by Fiat-Shamir from the ciphertexts and the partials (small-exponent
batch verification, Bellare-Garay-Rabin 1998), ``C = prod (c_j^4)^rho_j`` and
``C_i = prod (d_j^2)^rho_j`` satisfy ``C_i = C^x`` exactly when every ``d_j^2 = c_j^(4x)``, except with
probability about 2^-128. Squaring puts everything in the group of squares of Z*_(N^2), whose
order (N p' q' for safe primes) has no small prime factor, which is what makes both the batch test
and the Chaum-Pedersen equality of discrete logarithms sound.

The proof of ``log_C(C_i) = log_v(v_i)`` (Fiat-Shamir): ``r`` uniform of ``|x| + 384`` bits (so that
``z`` hides ``x`` statistically), ``a = C^r``, ``b = v^r``, ``e = H(context, C, C_i, v, v_i, a, b)`` of
256 bits, ``z = r + e x`` over the integers. The verifier recomputes ``a = C^z C_i^-e``,
``b = v^z v_i^-e`` and checks the hash. The context binds the key, the session, the round and the
party, so a proof never verifies for another aggregate.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from secagg.errors import CryptoError, ParameterError
from secagg.paillier import _gmpy2
from secagg.paillier.threshold import KeyShare, ThresholdPublicKey

__all__ = ["DecryptionProof", "PlaintextProof", "prove_partial_decryptions", "verify_partial_decryptions",
           "prove_plaintext_knowledge", "verify_plaintext_knowledge", "BATCH_BITS"]

BATCH_BITS = 128
_CHALLENGE_BYTES = 32
_HIDING_BITS = 384  # 256 bits of challenge + 128 bits of statistical hiding
_POPK_HIDING_BITS = 80  # statistical hiding of z_a


@dataclass(frozen=True)
class PlaintextProof:
    """Proof that the sender knows every plaintext of a batch of ciphertexts (module docstring)."""

    commitment: int  # A = g^x h_N^y mod N^2
    z_message: int  # x + sum e_i m_i mod N
    z_exponent: int  # y + sum e_i a_i


def plaintext_proof_bits(key: ThresholdPublicKey, count: int) -> int:
    """Largest bit length of ``z_exponent`` for ``count`` ciphertexts (``y`` and the sum both fit)."""
    from secagg.paillier.vector import short_exponent_bits

    return short_exponent_bits(key) + BATCH_BITS + max(1, count).bit_length() + _POPK_HIDING_BITS + 1


def _popk_coefficients(key: ThresholdPublicKey, context: bytes, ciphertexts: Sequence[int],
                       commitment: int) -> list[int]:
    width = 2 * ((key.n.bit_length() + 7) // 8)
    digest = hashlib.sha256(b"secagg/paillier/v2/plaintext-knowledge\x00" + key.fingerprint
                            + _integer(len(context)) + context + int(commitment).to_bytes(width, "big")
                            + len(ciphertexts).to_bytes(4, "little"))
    for c in ciphertexts:
        digest.update(int(c).to_bytes(width, "big"))
    stream = hashlib.shake_256(digest.digest()).digest(len(ciphertexts) * BATCH_BITS // 8)
    step = BATCH_BITS // 8
    return [int.from_bytes(stream[i:i + step], "big") for i in range(0, len(stream), step)]


def prove_plaintext_knowledge(key: ThresholdPublicKey, ciphertexts: Sequence[int], plaintexts: Sequence[int],
                              exponents: Sequence[int], context: bytes) -> PlaintextProof:
    """The proof for ``ciphertexts[i] = g^plaintexts[i] h_N^exponents[i]`` (from
    :func:`secagg.paillier.vector.encrypt_packed_with_exponents`)."""
    gmpy2 = _gmpy2()
    if key.obfuscation_base is None:
        raise ParameterError("proofs of plaintext knowledge need a key with the short-exponent base")
    if not (len(ciphertexts) == len(plaintexts) == len(exponents)) or not ciphertexts:
        raise ParameterError("one plaintext and one exponent per ciphertext, at least one")
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    x = secrets.randbelow(key.n)
    y = secrets.randbits(plaintext_proof_bits(key, len(ciphertexts)) - 2)
    commitment = int((1 + n * x) * gmpy2.powmod(key.obfuscation_base, y, nsquare) % nsquare)
    e = _popk_coefficients(key, context, ciphertexts, commitment)
    z_message = (x + sum(ei * int(m) for ei, m in zip(e, plaintexts))) % key.n
    z_exponent = y + sum(ei * int(a) for ei, a in zip(e, exponents))
    return PlaintextProof(commitment, z_message, z_exponent)


def verify_plaintext_knowledge(key: ThresholdPublicKey, ciphertexts: Sequence[int], proof: PlaintextProof,
                               context: bytes) -> None:
    """Raise :class:`CryptoError` unless ``proof`` shows the sender knows every plaintext."""
    from secagg.paillier.vector import multi_powmod

    gmpy2 = _gmpy2()
    if key.obfuscation_base is None:
        raise ParameterError("proofs of plaintext knowledge need a key with the short-exponent base")
    if not ciphertexts:
        raise CryptoError("no ciphertexts")
    if not (0 <= proof.z_message < key.n and 0 <= proof.z_exponent
            and proof.z_exponent.bit_length() <= plaintext_proof_bits(key, len(ciphertexts))):
        raise CryptoError("plaintext-knowledge proof out of range")
    key.check_ciphertext(proof.commitment)
    n, nsquare = gmpy2.mpz(key.n), gmpy2.mpz(key.nsquare)
    e = _popk_coefficients(key, context, ciphertexts, proof.commitment)
    left = (1 + n * proof.z_message) * gmpy2.powmod(key.obfuscation_base, proof.z_exponent, nsquare) % nsquare
    right = gmpy2.mpz(proof.commitment) * multi_powmod(ciphertexts, e, key.nsquare) % nsquare
    if left != right:
        raise CryptoError("the contribution's proof of plaintext knowledge fails: its sender does not know what it "
                          "encrypted (a ciphertext derived from others')")


@dataclass(frozen=True)
class DecryptionProof:
    """Fiat-Shamir proof: the challenge ``e`` (256 bits) and the response ``z``."""

    challenge: int
    response: int


def _integer(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return len(raw).to_bytes(4, "little") + raw


def _batch_coefficients(key: ThresholdPublicKey, context: bytes, ciphertexts: Sequence[int],
                        partials: Sequence[int]) -> list[int]:
    digest = hashlib.sha256(b"secagg/paillier/v1/batch\x00" + key.fingerprint + _integer(len(context)) + context)
    width = 2 * ((key.n.bit_length() + 7) // 8)
    for c in ciphertexts:
        digest.update(int(c).to_bytes(width, "big"))
    for d in partials:
        digest.update(int(d).to_bytes(width, "big"))
    seed = digest.digest()
    stream = hashlib.shake_256(seed).digest(len(ciphertexts) * BATCH_BITS // 8)
    step = BATCH_BITS // 8
    return [int.from_bytes(stream[i:i + step], "big") | 1 for i in range(0, len(stream), step)]


def _combined(key: ThresholdPublicKey, ciphertexts: Sequence[int], partials: Sequence[int], context: bytes,
              mapper=None):
    from secagg.paillier.vector import multi_powmod

    gmpy2 = _gmpy2()
    rho = _batch_coefficients(key, context, ciphertexts, partials)
    big_c = multi_powmod(ciphertexts, [4 * r for r in rho], key.nsquare, mapper=mapper)
    big_ci = multi_powmod(partials, [2 * r for r in rho], key.nsquare, mapper=mapper)
    return gmpy2.mpz(big_c), gmpy2.mpz(big_ci)


def _challenge(key: ThresholdPublicKey, context: bytes, index: int, values: Sequence[int]) -> int:
    digest = hashlib.sha256(b"secagg/paillier/v1/decryption-proof\x00" + key.fingerprint
                            + _integer(len(context)) + context + index.to_bytes(4, "little"))
    for value in values:
        digest.update(_integer(int(value)))
    return int.from_bytes(digest.digest()[:_CHALLENGE_BYTES], "big")


def prove_partial_decryptions(share: KeyShare, ciphertexts: Sequence[int], partials: Sequence[int],
                              context: bytes, *, mapper=None, rng=None) -> DecryptionProof:
    """Party ``share.index``'s proof that ``partials[j] = ciphertexts[j]^(2 Delta s_i)`` for every j.

    The commitment exponent comes from ``secrets``, or from ``rng`` (a
    :class:`~secagg.crypto.randomness.RandomSource`: ``ceil(b / 8)`` bytes, big-endian, low ``b``
    bits kept, ``b = bits(Delta s_i) + 384``), which the key ceremony passes so that a test-only
    seeded source replays it (protocols/dkg-v1.md, rule G4)."""
    gmpy2 = _gmpy2()
    key = share.public_key
    if key.verification_base is None:
        raise ParameterError("this key has no verification keys: partial decryptions cannot be proven")
    if len(ciphertexts) != len(partials) or not ciphertexts:
        raise ParameterError("one partial decryption per ciphertext, at least one")
    nsquare = gmpy2.mpz(key.nsquare)
    x = key.delta * share.share
    big_c, big_ci = _combined(key, ciphertexts, partials, context, mapper)
    v, vi = key.verification_base, key.verification_keys[share.index - 1]
    bits = x.bit_length() + _HIDING_BITS
    if rng is None:
        r = secrets.randbits(bits)
    else:
        r = int.from_bytes(rng.random_bytes((bits + 7) // 8), "big") & ((1 << bits) - 1)
    a, b = gmpy2.powmod(big_c, r, nsquare), gmpy2.powmod(v, r, nsquare)
    e = _challenge(key, context, share.index, (big_c, big_ci, v, vi, a, b))
    return DecryptionProof(e, r + e * x)


def verify_partial_decryptions(key: ThresholdPublicKey, index: int, ciphertexts: Sequence[int],
                               partials: Sequence[int], proof: DecryptionProof, context: bytes, *,
                               mapper=None) -> None:
    """Raise :class:`CryptoError` unless ``proof`` shows every partial of party ``index`` is correct."""
    gmpy2 = _gmpy2()
    if not key.verifiable:
        raise ParameterError("this key has no verification keys: partial decryptions cannot be verified")
    if not 1 <= index <= key.parties:
        raise CryptoError(f"partial decryptions from unknown party {index}")
    if len(ciphertexts) != len(partials) or not ciphertexts:
        raise CryptoError("one partial decryption per ciphertext, at least one")
    if not (0 <= proof.challenge < 1 << (8 * _CHALLENGE_BYTES)) or not 0 <= proof.response.bit_length() \
            <= (key.delta * key.nsquare * key.n).bit_length() + _HIDING_BITS + 2 or proof.response < 0:
        raise CryptoError("decryption proof out of range")
    for d in partials:
        key.check_ciphertext(d)
    nsquare = gmpy2.mpz(key.nsquare)
    big_c, big_ci = _combined(key, ciphertexts, partials, context, mapper)
    v, vi = gmpy2.mpz(key.verification_base), gmpy2.mpz(key.verification_keys[index - 1])
    e, z = proof.challenge, gmpy2.mpz(proof.response)
    a = gmpy2.powmod(big_c, z, nsquare) * gmpy2.invert(gmpy2.powmod(big_ci, e, nsquare), nsquare) % nsquare
    b = gmpy2.powmod(v, z, nsquare) * gmpy2.invert(gmpy2.powmod(vi, e, nsquare), nsquare) % nsquare
    if _challenge(key, context, index, (big_c, big_ci, v, vi, a, b)) != e:
        raise CryptoError(f"the partial decryptions of key share {index} fail their proof of correctness")
