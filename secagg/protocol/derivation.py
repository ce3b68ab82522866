"""Key derivations, associated data, signed payloads and commitments of protocol version 1.

Client and server both use these, so the byte strings exist in exactly one place; the spec
(protocols/secagg-v1.md) documents each of them.
"""

from __future__ import annotations

import hashlib
import struct
from enum import Enum

import numpy as np

from secagg.crypto.keys import DOMAIN, hkdf
from secagg.crypto.shamir import FIELD_PRIME, LIMBS_PER_SECRET
from secagg.errors import ParameterError
from secagg.protocol.messages import MAGIC, SHARE_PLAINTEXT_BYTES, VERSION, MessageType

__all__ = [
    "Round",
    "pairwise_mask_seed",
    "share_bundle_keys",
    "share_bundle_associated_data",
    "share_plaintext",
    "parse_share_plaintext",
    "advertise_payload",
    "consistency_payload",
    "self_mask_commitment",
]

_PAIR = struct.Struct("<II")


class Round(str, Enum):
    """The protocol's rounds, in order, named as in ``simulate(drop=...)``."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"

    def __str__(self) -> str:
        return self.value


def pairwise_mask_seed(shared_secret: bytes, session_id: bytes, a: int, b: int) -> bytes:
    """PRG seed of the pairwise mask between clients ``a`` and ``b`` (symmetric in a, b)."""
    low, high = (a, b) if a < b else (b, a)
    return hkdf(shared_secret, b"pairwise-mask", session_id + _PAIR.pack(low, high))


def share_bundle_keys(shared_secret: bytes, session_id: bytes, a: int, b: int) -> tuple[bytes, bytes]:
    """AES-256-GCM keys of the two share bundles between ``a`` and ``b``: (a->b, b->a).

    One 64-byte HKDF output over the ordered pair (low id, high id): the first half keys the
    bundle from the lower id to the higher, the second half the other direction, so each key
    seals exactly one message.
    """
    low, high = (a, b) if a < b else (b, a)
    okm = hkdf(shared_secret, b"share-bundle", session_id + _PAIR.pack(low, high), length=64)
    upward, downward = okm[:32], okm[32:]
    return (upward, downward) if a < b else (downward, upward)


def share_bundle_associated_data(session_id: bytes, sender: int, recipient: int) -> bytes:
    """Associated data of a share bundle: protocol version, round, session, sender, receiver."""
    return MAGIC + bytes([VERSION, MessageType.SHARE_KEYS]) + session_id + _PAIR.pack(sender, recipient)


def share_plaintext(sender: int, recipient: int, limbs: np.ndarray) -> bytes:
    """sender u32 | recipient u32 | 9 self-mask limbs | 9 mask-key limbs (u32 each)."""
    return _PAIR.pack(sender, recipient) + np.ascontiguousarray(limbs, dtype="<u4").tobytes()


def parse_share_plaintext(plaintext: bytes) -> tuple[int, int, np.ndarray]:
    """Inverse of :func:`share_plaintext`; :class:`ParameterError` if it is not one."""
    if len(plaintext) != SHARE_PLAINTEXT_BYTES:
        raise ParameterError(f"share plaintext has {len(plaintext)} bytes, expected {SHARE_PLAINTEXT_BYTES}")
    sender, recipient = _PAIR.unpack_from(plaintext)
    limbs = np.frombuffer(plaintext, dtype="<u4", offset=_PAIR.size)
    if int(limbs.max()) >= FIELD_PRIME:
        raise ParameterError("share limbs must be field elements")
    return sender, recipient, limbs.reshape(2, LIMBS_PER_SECRET)


def advertise_payload(session_id: bytes, client_id: int, cipher_public_key: bytes, mask_public_key: bytes) -> bytes:
    """What a client signs in round 0 (malicious mode)."""
    return DOMAIN + b"advertise-keys\x00" + session_id + struct.pack("<I", client_id) + cipher_public_key + mask_public_key


def consistency_payload(session_id: bytes, survivors: np.ndarray) -> bytes:
    """What a client signs in the consistency check: the session and the sorted survivor list."""
    ids = np.ascontiguousarray(survivors, dtype="<u4")
    return DOMAIN + b"consistency-check\x00" + session_id + struct.pack("<I", ids.size) + ids.tobytes()


def self_mask_commitment(session_id: bytes, client_id: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed; lets the server verify its reconstruction."""
    return hashlib.sha256(DOMAIN + b"self-mask-commitment\x00" + session_id
                          + struct.pack("<I", client_id) + seed).digest()
