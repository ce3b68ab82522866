"""Ed25519 identity keys for the malicious-server mode."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.crypto.randomness import RandomSource
from secagg.errors import CryptoError

__all__ = ["PUBLIC_KEY_BYTES", "SIGNATURE_BYTES", "IdentityKey", "verify_signature"]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class IdentityKey:
    """A long-term Ed25519 signing key; its public half is known to every party in advance."""

    __slots__ = ("_private", "public_bytes", "_sessions")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_bytes: bytes = private.public_key().public_bytes_raw()
        self._sessions: dict[bytes, bytes] = {}  # session id -> what this identity advertised in it

    def enter_session(self, session_id: bytes, advertisement: bytes) -> None:
        """Record that this identity advertised ``advertisement`` in ``session_id``; refuse a
        second, different one. Two sessions of one client under one id would let a malicious
        coordinator count the client twice (it would sign two survivor lists). Replaying the
        same session (same advertisement, e.g. the Flower mod rebuilding it) is fine."""
        known = self._sessions.get(bytes(session_id))
        if known is not None and known != advertisement:
            from secagg.errors import SessionStateError

            raise SessionStateError(f"this identity already takes part in session {bytes(session_id).hex()}: a "
                                    "client joins a session id once")
        self._sessions[bytes(session_id)] = bytes(advertisement)

    @classmethod
    def generate(cls, rng: RandomSource) -> IdentityKey:
        return cls(Ed25519PrivateKey.from_private_bytes(rng.random_bytes(32)))

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Raise :class:`CryptoError` unless ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise CryptoError(f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_BYTES:
        raise CryptoError(f"an Ed25519 signature has {SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        raise CryptoError("invalid signature") from None
