"""AES-256-GCM for the encrypted Shamir share bundles.

Every key passed here is derived for exactly one message (one session, one direction between
two parties), so the fixed all-zero nonce is never reused under a key.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import CryptoError

__all__ = ["TAG_BYTES", "seal", "open_sealed"]

TAG_BYTES = 16
_NONCE = bytes(12)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``; ``associated_data`` is authenticated, not sent."""
    return AESGCM(key).encrypt(_NONCE, plaintext, associated_data)


def open_sealed(key: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Decrypt a :func:`seal` output; :class:`CryptoError` if it was tampered with or misdirected."""
    if len(ciphertext) < TAG_BYTES:
        raise CryptoError("ciphertext shorter than the authentication tag")
    try:
        return AESGCM(key).decrypt(_NONCE, ciphertext, associated_data)
    except InvalidTag:
        raise CryptoError("authentication failed (wrong key, sender, receiver or round)") from None
