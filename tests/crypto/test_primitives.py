"""X25519 + HKDF, AES-GCM, Ed25519 and the randomness sources."""

import hashlib
import hmac

import pytest

from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey, hkdf, public_key_of
from secagg.crypto.randomness import SystemRandomness, TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import CryptoError, ParameterError


def rfc5869_hkdf_sha256(ikm, info, length):
    """Reference HKDF (RFC 5869) with an empty salt, written from the RFC."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for i in range((length + 31) // 32):
        block = hmac.new(prk, block + info + bytes([i + 1]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def test_hkdf_labels_follow_rfc5869_with_domain_separation():
    ikm = bytes(range(32))
    assert hkdf(ikm, b"pairwise-mask", b"ctx") == rfc5869_hkdf_sha256(ikm, b"secagg/v2/pairwise-mask\x00ctx", 32)
    assert hkdf(ikm, b"a", b"") != hkdf(ikm, b"b", b"")
    assert hkdf(ikm, b"a", b"x") != hkdf(ikm, b"a", b"y")
    assert len(hkdf(ikm, b"a", length=64)) == 64


def test_x25519_rfc7748_vector_and_symmetry():
    # RFC 7748 section 6.1
    alice = AgreementKey.from_private_bytes(bytes.fromhex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob = AgreementKey.from_private_bytes(bytes.fromhex(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert alice.public_bytes.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert alice.exchange(bob.public_bytes).hex() == shared == bob.exchange(alice.public_bytes).hex()
    assert public_key_of(alice.private_bytes()) == alice.public_bytes


def test_x25519_refuses_low_order_points_and_bad_lengths():
    key = AgreementKey.generate(SystemRandomness())
    with pytest.raises(CryptoError):
        key.exchange(bytes(32))  # the all-zero shared secret would be public
    with pytest.raises(CryptoError):
        key.exchange(bytes(31))
    with pytest.raises(CryptoError):
        AgreementKey.from_private_bytes(bytes(5))


def test_aead_binds_key_and_associated_data():
    key = bytes(32)
    box = seal(key, b"shares", b"ad")
    assert open_sealed(key, box, b"ad") == b"shares"
    for bad_key, bad_ad, bad_box in [(b"\x01" * 32, b"ad", box), (key, b"other", box),
                                     (key, b"ad", box[:-1] + bytes([box[-1] ^ 1])), (key, b"ad", b"short")]:
        with pytest.raises(CryptoError):
            open_sealed(bad_key, bad_box, bad_ad)


def test_ed25519_sign_verify_and_refusals():
    identity = IdentityKey.generate(TestOnlySeededRandomness(1))
    signature = identity.sign(b"message")
    verify_signature(identity.public_bytes, signature, b"message")
    other = IdentityKey.generate(TestOnlySeededRandomness(2))
    for public, sig, msg in [(identity.public_bytes, signature, b"other"),
                             (other.public_bytes, signature, b"message"),
                             (identity.public_bytes, signature[:-1] + b"\x00", b"message"),
                             (identity.public_bytes, signature[:10], b"message"),
                             (b"short", signature, b"message")]:
        with pytest.raises(CryptoError):
            verify_signature(public, sig, msg)


def test_seeded_randomness_is_reproducible_and_streams_are_independent():
    a, b = TestOnlySeededRandomness(5), TestOnlySeededRandomness(5)
    assert a.random_bytes(10) + a.random_bytes(6) == b.random_bytes(16)
    assert TestOnlySeededRandomness(5).child(b"x").random_bytes(16) != TestOnlySeededRandomness(5).random_bytes(16)
    assert TestOnlySeededRandomness(5).child(b"x").random_bytes(16) != TestOnlySeededRandomness(5).child(b"y").random_bytes(16)
    assert TestOnlySeededRandomness(b"\x05").random_bytes(8) == TestOnlySeededRandomness(5).random_bytes(8)
    with pytest.raises(ParameterError):
        TestOnlySeededRandomness(-1)
    with pytest.raises(ParameterError):
        TestOnlySeededRandomness(1.5)


def test_system_randomness_differs_between_calls():
    rng = SystemRandomness()
    assert rng.random_bytes(32) != rng.random_bytes(32)
