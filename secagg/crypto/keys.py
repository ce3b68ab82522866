"""X25519 key agreement and HKDF-SHA256 key derivation with domain-separated labels."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.crypto.randomness import RandomSource
from secagg.errors import CryptoError

__all__ = [
    "KEY_BYTES",
    "DOMAIN",
    "AgreementKey",
    "hkdf",
    "public_key_of",
]

KEY_BYTES = 32
DOMAIN = b"secagg/v2/"


def hkdf(input_key: bytes, label: bytes, context: bytes = b"", length: int = 32) -> bytes:
    """HKDF-SHA256 (empty salt) with info = ``b"secagg/v2/" + label + b"\\x00" + context``.

    The label names the purpose (e.g. ``b"pairwise-mask"``); the context binds the session and
    the parties, so a key derived for one purpose or pair can never serve another.
    """
    info = DOMAIN + label + b"\x00" + context
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(input_key)


class AgreementKey:
    """An X25519 private key used for Diffie-Hellman agreement."""

    __slots__ = ("_private", "public_bytes")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public_bytes: bytes = private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, rng: RandomSource) -> AgreementKey:
        return cls(X25519PrivateKey.from_private_bytes(rng.random_bytes(KEY_BYTES)))

    @classmethod
    def from_private_bytes(cls, data: bytes) -> AgreementKey:
        if len(data) != KEY_BYTES:
            raise CryptoError(f"an X25519 private key has {KEY_BYTES} bytes, got {len(data)}")
        return cls(X25519PrivateKey.from_private_bytes(bytes(data)))

    def private_bytes(self) -> bytes:
        return self._private.private_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """The raw X25519 shared secret with ``peer_public`` (32 bytes).

        Raises :class:`CryptoError` for malformed keys and for low-order points, whose shared
        secret would be all zeros and known to everyone.
        """
        if len(peer_public) != KEY_BYTES:
            raise CryptoError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(peer_public)}")
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
        except ValueError as exc:
            raise CryptoError(f"X25519 agreement failed: {exc}") from None


def public_key_of(private_bytes: bytes) -> bytes:
    """The X25519 public key (raw bytes) that belongs to a raw private key."""
    return AgreementKey.from_private_bytes(private_bytes).public_bytes
