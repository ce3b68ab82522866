"""Key derivations, associated data, signed payloads, commitments and the transcript tree of
protocol version 2.

Client and server both use these, so the byte strings exist in exactly one place; the spec
(protocols/secagg-v2.md) documents each of them.
"""

from __future__ import annotations

import hashlib
import struct
from enum import Enum

import numpy as np

from secagg.crypto.keys import DOMAIN, hkdf
from secagg.crypto.shamir import FIELD_PRIME, LIMBS_PER_SECRET
from secagg.errors import ParameterError
from secagg.protocol.messages import MAGIC, SHARE_PLAINTEXT_BYTES, VERSION, MessageType, Transcript

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
    "transcript_leaf",
    "TranscriptTree",
    "transcript_root_from_path",
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


def advertise_payload(session_id: bytes, client_id: int, cipher_public_key: bytes, mask_public_key: bytes,
                      holders: np.ndarray = np.zeros(0, np.int64)) -> bytes:
    """What a client signs in round 0 (malicious mode): its keys and the holders it drew."""
    ids = np.ascontiguousarray(holders, dtype="<u4")
    return (DOMAIN + b"advertise-keys\x00" + session_id + struct.pack("<I", client_id) + cipher_public_key
            + mask_public_key + struct.pack("<I", ids.size) + ids.tobytes())


def consistency_payload(session_id: bytes, transcript_root: bytes, survivors: np.ndarray) -> bytes:
    """What a client signs in the consistency check: the session, its transcript root and the sorted
    survivor list. The root contains the signer's own fresh keys, so a signature from another
    session (even one reusing the session id) never verifies in this one."""
    ids = np.ascontiguousarray(survivors, dtype="<u4")
    return (DOMAIN + b"consistency-check\x00" + session_id + transcript_root + struct.pack("<I", ids.size)
            + ids.tobytes())


def self_mask_commitment(session_id: bytes, client_id: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed; lets the server verify its reconstruction."""
    return hashlib.sha256(DOMAIN + b"self-mask-commitment\x00" + session_id
                          + struct.pack("<I", client_id) + seed).digest()


# ----------------------------------------------------------------------------- transcript tree
# An RFC 6962 Merkle tree (leaf prefix 0x00, node prefix 0x01) over the canonical AdvertiseKeys
# messages of every client the server accepted in round 0, sorted by client id. Built bottom up:
# pairs are hashed level by level and an unpaired last node moves up unchanged, which gives the
# same tree as RFC 6962's split at the largest power of two.

def transcript_leaf(advertise_keys: bytes) -> bytes:
    """Leaf hash of one client's canonical AdvertiseKeys message."""
    return hashlib.sha256(b"\x00" + DOMAIN + b"transcript-leaf\x00" + bytes(advertise_keys)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class TranscriptTree:
    """The server's tree: its root and every leaf's audit path."""

    def __init__(self, leaves: list[bytes]) -> None:
        if not leaves:
            raise ParameterError("a transcript tree needs at least one leaf")
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            self.levels.append([_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                                for i in range(0, len(level), 2)])
        self.root = self.levels[-1][0]

    def transcript(self, index: int) -> Transcript:
        path = []
        i = index
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i //= 2
        return Transcript(self.root, index, len(self.levels[0]), tuple(path))


def transcript_root_from_path(leaf: bytes, transcript: Transcript) -> bytes:
    """The root that ``leaf`` and the audit path in ``transcript`` lead to (compare it with
    ``transcript.root``)."""
    node, i, size = leaf, transcript.leaf_index, transcript.tree_size
    path = iter(transcript.path)
    while size > 1:
        if i % 2:
            node = _node(next(path), node)
        elif i + 1 < size:
            node = _node(node, next(path))
        i, size = i // 2, (size + 1) // 2
    return node
