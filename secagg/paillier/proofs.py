"""Zero-knowledge proofs that a batch of partial decryptions is correct (Shoup 2000, batched).

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

__all__ = ["DecryptionProof", "prove_partial_decryptions", "verify_partial_decryptions", "BATCH_BITS"]

BATCH_BITS = 128
_CHALLENGE_BYTES = 32
_HIDING_BITS = 384  # 256 bits of challenge + 128 bits of statistical hiding


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
    from secagg.paillier.vector import powmod_many

    gmpy2 = _gmpy2()
    nsquare = gmpy2.mpz(key.nsquare)
    rho = _batch_coefficients(key, context, ciphertexts, partials)
    powers = powmod_many(list(ciphertexts) + list(partials), [4 * r for r in rho] + [2 * r for r in rho],
                         key.nsquare, mapper=mapper)
    big_c, big_ci = gmpy2.mpz(1), gmpy2.mpz(1)
    for a, b in zip(powers[:len(rho)], powers[len(rho):]):
        big_c = big_c * a % nsquare
        big_ci = big_ci * b % nsquare
    return big_c, big_ci


def _challenge(key: ThresholdPublicKey, context: bytes, index: int, values: Sequence[int]) -> int:
    digest = hashlib.sha256(b"secagg/paillier/v1/decryption-proof\x00" + key.fingerprint
                            + _integer(len(context)) + context + index.to_bytes(4, "little"))
    for value in values:
        digest.update(_integer(int(value)))
    return int.from_bytes(digest.digest()[:_CHALLENGE_BYTES], "big")


def prove_partial_decryptions(share: KeyShare, ciphertexts: Sequence[int], partials: Sequence[int],
                              context: bytes, *, mapper=None) -> DecryptionProof:
    """Party ``share.index``'s proof that ``partials[j] = ciphertexts[j]^(2 Delta s_i)`` for every j."""
    gmpy2 = _gmpy2()
    key = share.public_key
    if not key.verifiable:
        raise ParameterError("this key has no verification keys: partial decryptions cannot be proven")
    if len(ciphertexts) != len(partials) or not ciphertexts:
        raise ParameterError("one partial decryption per ciphertext, at least one")
    nsquare = gmpy2.mpz(key.nsquare)
    x = key.delta * share.share
    big_c, big_ci = _combined(key, ciphertexts, partials, context, mapper)
    v, vi = key.verification_base, key.verification_keys[share.index - 1]
    r = secrets.randbits(x.bit_length() + _HIDING_BITS)
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
            <= (key.delta * key.nsquare).bit_length() + _HIDING_BITS + 2 or proof.response < 0:
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
