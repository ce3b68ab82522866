"""Every protocol message, defined once, with its canonical binary encoding.

Layout (all integers little-endian; see protocols/secagg-v2.md for the byte-level spec)::

    header  = magic "SAGG" | version u8 (=2) | type u8 | session_id 16 bytes | party u32
    message = header | body (type-specific, fixed field order, no padding, no trailing bytes)

``party`` is the sender of a client-to-server message and the recipient of a server-to-client
message. Lists of ids are strictly increasing, so every message has exactly one encoding.

Constructors validate their fields (raising :class:`ParameterError` for a locally built bad
message); :func:`decode_message` turns every way bytes can be invalid into
:class:`MalformedMessage`, and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from secagg.crypto.aead import TAG_BYTES
from secagg.crypto.keys import KEY_BYTES
from secagg.crypto.shamir import FIELD_PRIME, LIMBS_PER_SECRET
from secagg.crypto.signatures import SIGNATURE_BYTES
from secagg.errors import MalformedMessage, ParameterError
from secagg.ring import MAX_BITS, MIN_BITS, Ring

__all__ = [
    "MAGIC",
    "VERSION",
    "SESSION_ID_BYTES",
    "SHARE_PLAINTEXT_BYTES",
    "SEALED_SHARES_BYTES",
    "MAX_ABORT_REASON_BYTES",
    "HASH_BYTES",
    "Transcript",
    "audit_path_length",
    "MessageType",
    "Message",
    "KeyEntry",
    "AdvertiseKeys",
    "KeyDirectory",
    "ShareKeys",
    "ShareBundles",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "UnmaskRequest",
    "UnmaskingShares",
    "AbortNotice",
    "decode_message",
    "encode_broadcast",
    "encode_key_directories",
]

MAGIC = b"SAGG"
VERSION = 2
HASH_BYTES = 32
_X25519_P = 2**255 - 19
SESSION_ID_BYTES = 16
MAX_ID = (1 << 32) - 1
# Plaintext of one share bundle: sender u32 | recipient u32 | 9 self-mask limbs | 9 mask-key limbs.
SHARE_PLAINTEXT_BYTES = 8 + 2 * LIMBS_PER_SECRET * 4
SEALED_SHARES_BYTES = SHARE_PLAINTEXT_BYTES + TAG_BYTES
MAX_ABORT_REASON_BYTES = 1024

_HEADER = struct.Struct("<4sBB16sI")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_KEY_ENTRY = struct.Struct(f"<I{KEY_BYTES}s{KEY_BYTES}s")
_TRANSCRIPT = struct.Struct(f"<{HASH_BYTES}sIIB")
_SEALED_ROW = np.dtype([("peer", "<u4"), ("ciphertext", "u1", (SEALED_SHARES_BYTES,))])
_SIGNED_ID = struct.Struct(f"<I{SIGNATURE_BYTES}s")
_SHARE_ROW = 1 + LIMBS_PER_SECRET  # owner id + limbs, as u32 words


class MessageType(IntEnum):
    ADVERTISE_KEYS = 1
    KEY_DIRECTORY = 2
    SHARE_KEYS = 3
    SHARE_BUNDLES = 4
    MASKED_INPUT = 5
    CONSISTENCY_REQUEST = 6
    CONSISTENCY_SIGNATURE = 7
    UNMASK_REQUEST = 8
    UNMASKING_SHARES = 9
    ABORT = 10


# ----------------------------------------------------------------------------- field checks

def _bytes(name: str, value: object, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ParameterError(f"{name} must be bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) != length:
        raise ParameterError(f"{name} must have {length} bytes, got {len(value)}")
    return value


def _id(name: str, value: object) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ParameterError(f"{name} must be an integer id, got {value!r}")
    number = int(value)
    if not 0 <= number <= MAX_ID:
        raise ParameterError(f"{name} must be in 0..{MAX_ID}, got {number}")
    return number


def _public_key(name: str, value: object) -> bytes:
    """A canonical X25519 public key: the little-endian u-coordinate below 2^255 - 19.

    RFC 7748 ignores the top bit and reduces larger values, so without this rule one key would
    have several encodings, and a duplicate-key check on bytes could be fooled by a flipped bit.
    """
    key = _bytes(name, value, KEY_BYTES)
    if int.from_bytes(key, "little") >= _X25519_P:
        raise ParameterError(f"{name} is not a canonical X25519 public key (u-coordinate >= 2^255 - 19)")
    return key


def _increasing(name: str, ids: list[int]) -> None:
    for a, b in zip(ids, ids[1:]):
        if b <= a:
            raise ParameterError(f"{name} must be strictly increasing (no duplicates), got {a} then {b}")


def _id_array(name: str, values: object) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{name} must be a sequence of ids") from None
    if array.size == 0:
        array = array.reshape(0).astype(np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ParameterError(f"{name} must be a 1-D sequence of integer ids")
    if array.size and (int(array.min()) < 0 or int(array.max()) > MAX_ID):
        raise ParameterError(f"{name} ids must be in 0..{MAX_ID}")
    array = array.astype("<u4")
    if array.size > 1 and np.any(array[1:] <= array[:-1]):
        raise ParameterError(f"{name} must be strictly increasing (no duplicates)")
    array.flags.writeable = False
    return array


_NO_IDS = np.zeros(0, dtype="<u4")
_NO_IDS.flags.writeable = False


def _is_empty(values: object) -> bool:
    """An empty id list (the complete graph's holders): skips the general validation."""
    return (isinstance(values, tuple) and not values) or (isinstance(values, np.ndarray) and values.size == 0
                                                          and values.ndim == 1)


def _raw(array: np.ndarray) -> memoryview | bytes:
    """The bytes of a little-endian contiguous array, without copying."""
    return memoryview(array.data).cast("B") if array.size else b""


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view (no copy: a masked vector can be large). Callers hand over ownership."""
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


# ----------------------------------------------------------------------------- base class

@dataclass(frozen=True, eq=False)
class Message:
    """Base of all messages: equality is equality of canonical encodings."""

    TYPE: ClassVar[MessageType]
    FROM_CLIENT: ClassVar[bool]

    session_id: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "session_id", _bytes("session_id", self.session_id, SESSION_ID_BYTES))

    @property
    def party(self) -> int:
        """The sender (client-to-server messages) or recipient (server-to-client messages)."""
        raise NotImplementedError

    def _body(self) -> list[bytes | memoryview]:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The canonical bytes of this message."""
        header = _HEADER.pack(MAGIC, VERSION, int(self.TYPE), self.session_id, self.party)
        return b"".join([header, *self._body()])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class _FromClient(Message):
    FROM_CLIENT: ClassVar[bool] = True
    sender: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sender", _id("sender", self.sender))

    @property
    def party(self) -> int:
        return self.sender


@dataclass(frozen=True, eq=False)
class _ToClient(Message):
    FROM_CLIENT: ClassVar[bool] = False
    recipient: int

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "recipient", _id("recipient", self.recipient))

    @property
    def party(self) -> int:
        return self.recipient


# ----------------------------------------------------------------------------- entries

@dataclass(frozen=True, eq=False)
class KeyEntry:
    """One client's advertised public keys, the holders it drew (SecAgg+; empty in the complete
    graph) and, in malicious mode, its signature over all of them."""

    client_id: int
    cipher_public_key: bytes
    mask_public_key: bytes
    holders: np.ndarray = ()  # type: ignore[assignment]
    signature: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_id", _id("client_id", self.client_id))
        object.__setattr__(self, "cipher_public_key", _public_key("cipher_public_key", self.cipher_public_key))
        object.__setattr__(self, "mask_public_key", _public_key("mask_public_key", self.mask_public_key))
        holders = _NO_IDS if _is_empty(self.holders) else _id_array("holders", self.holders)
        if holders.size and np.any(holders == self.client_id):
            raise ParameterError("a client cannot hold its own shares (holders lists the client itself)")
        object.__setattr__(self, "holders", holders)
        if self.signature is not None:
            object.__setattr__(self, "signature", _bytes("signature", self.signature, SIGNATURE_BYTES))

    def _body(self) -> list[bytes | memoryview]:
        """id | c_pk | s_pk | u32 count | holder ids (the signature is not included)."""
        return [_KEY_ENTRY.pack(self.client_id, self.cipher_public_key, self.mask_public_key),
                _U32.pack(self.holders.size), _raw(self.holders)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyEntry):
            return NotImplemented
        return b"".join(self._body()) == b"".join(other._body()) and self.signature == other.signature

    __hash__ = None  # type: ignore[assignment]


def _sealed_table(peers: object, ciphertexts: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a table of sealed share bundles: strictly increasing peer ids, one fixed-size
    AES-GCM ciphertext per peer (rows of a ``(count, SEALED_SHARES_BYTES)`` uint8 array)."""
    peer_ids = _id_array("peers", peers)
    try:
        table = np.asarray(ciphertexts)
    except (TypeError, ValueError):
        raise ParameterError("ciphertexts must be a uint8 array") from None
    if table.size == 0:
        table = np.zeros((0, SEALED_SHARES_BYTES), dtype=np.uint8)
    if table.dtype != np.uint8 or table.shape != (peer_ids.size, SEALED_SHARES_BYTES):
        raise ParameterError(f"ciphertexts must be a ({peer_ids.size}, {SEALED_SHARES_BYTES}) uint8 array")
    return peer_ids, _frozen(table)


def _sealed_rows(peers: np.ndarray, ciphertexts: np.ndarray) -> list[bytes]:
    rows = np.empty(peers.size, dtype=_SEALED_ROW)
    rows["peer"] = peers
    rows["ciphertext"] = ciphertexts
    return [_U32.pack(peers.size), rows.tobytes()]


# ----------------------------------------------------------------------------- round 0

@dataclass(frozen=True, eq=False)
class AdvertiseKeys(_FromClient):
    """Round 0, client -> server: two fresh X25519 public keys (c: share encryption, s: masks)
    and, in SecAgg+, the holders the client drew (empty in the complete graph)."""

    TYPE: ClassVar[MessageType] = MessageType.ADVERTISE_KEYS
    cipher_public_key: bytes
    mask_public_key: bytes
    holders: np.ndarray = ()  # type: ignore[assignment]
    signature: bytes | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        entry = KeyEntry(self.sender, self.cipher_public_key, self.mask_public_key, self.holders, self.signature)
        object.__setattr__(self, "cipher_public_key", entry.cipher_public_key)
        object.__setattr__(self, "mask_public_key", entry.mask_public_key)
        object.__setattr__(self, "holders", entry.holders)
        object.__setattr__(self, "signature", entry.signature)

    @property
    def entry(self) -> KeyEntry:
        return KeyEntry(self.sender, self.cipher_public_key, self.mask_public_key, self.holders, self.signature)

    def _body(self) -> list[bytes | memoryview]:
        return [self.cipher_public_key, self.mask_public_key, _U32.pack(self.holders.size), _raw(self.holders),
                _U8.pack(self.signature is not None), self.signature if self.signature is not None else b""]


def audit_path_length(index: int, size: int) -> int:
    """Number of hashes in the RFC 6962 audit path of leaf ``index`` in a tree of ``size`` leaves."""
    length = 0
    while size > 1:
        split = 1 << ((size - 1).bit_length() - 1)  # largest power of two below size
        if index < split:
            size = split
        else:
            index, size = index - split, size - split
        length += 1
    return length


@dataclass(frozen=True, eq=False)
class Transcript:
    """The session's transcript root (a Merkle tree over every accepted AdvertiseKeys message,
    sorted by client id) and the audit path of the recipient's own message in it."""

    root: bytes
    leaf_index: int
    tree_size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", _bytes("root", self.root, HASH_BYTES))
        index, size = _id("leaf_index", self.leaf_index), _id("tree_size", self.tree_size)
        if not 0 <= index < size:
            raise ParameterError(f"leaf_index {index} is outside a tree of {size} leaves")
        path = tuple(_bytes("path hash", h, HASH_BYTES) for h in self.path)
        if len(path) != audit_path_length(index, size):
            raise ParameterError(f"an audit path for leaf {index} of {size} has {audit_path_length(index, size)} "
                                 f"hashes, got {len(path)}")
        object.__setattr__(self, "leaf_index", index)
        object.__setattr__(self, "tree_size", size)
        object.__setattr__(self, "path", path)

    def _body(self) -> list[bytes]:
        return [_TRANSCRIPT.pack(self.root, self.leaf_index, self.tree_size, len(self.path)), *self.path]


@dataclass(frozen=True, eq=False)
class KeyDirectory(_ToClient):
    """Round 1 start, server -> client: the advertised entries of the recipient's holders and of
    the clients that drew it (its own entry included), sorted by client id, and the transcript
    root with the audit path of the recipient's own AdvertiseKeys."""

    TYPE: ClassVar[MessageType] = MessageType.KEY_DIRECTORY
    entries: tuple[KeyEntry, ...]
    transcript: Transcript

    def __post_init__(self) -> None:
        super().__post_init__()
        entries = tuple(self.entries)
        for entry in entries:
            if not isinstance(entry, KeyEntry):
                raise ParameterError("entries must contain KeyEntry objects")
        if len({e.signature is None for e in entries}) > 1:
            raise ParameterError("either every entry of a key directory is signed or none is")
        _increasing("entries", [e.client_id for e in entries])
        if not isinstance(self.transcript, Transcript):
            raise ParameterError("transcript must be a Transcript")
        object.__setattr__(self, "entries", entries)

    @property
    def signed(self) -> bool:
        return bool(self.entries) and self.entries[0].signature is not None

    def _body(self) -> list[bytes | memoryview]:
        signed = self.signed
        parts: list[bytes | memoryview] = [_U8.pack(signed), _U32.pack(len(self.entries))]
        for e in self.entries:
            parts += e._body()
            if signed:
                parts.append(e.signature)  # type: ignore[arg-type]
        return parts + self.transcript._body()


# ----------------------------------------------------------------------------- round 1

@dataclass(frozen=True, eq=False)
class ShareKeys(_FromClient):
    """Round 1, client -> server: the sender's shares sealed to each holder (``peers`` are the
    recipients, row i of ``ciphertexts`` is sealed to ``peers[i]``), and a hash commitment to its
    self-mask seed (lets the server detect a wrong reconstruction)."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_KEYS
    self_mask_commitment: bytes
    peers: np.ndarray
    ciphertexts: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "self_mask_commitment",
                           _bytes("self_mask_commitment", self.self_mask_commitment, 32))
        peers, ciphertexts = _sealed_table(self.peers, self.ciphertexts)
        object.__setattr__(self, "peers", peers)
        object.__setattr__(self, "ciphertexts", ciphertexts)

    def _body(self) -> list[bytes | memoryview]:
        return [self.self_mask_commitment, *_sealed_rows(self.peers, self.ciphertexts)]


@dataclass(frozen=True, eq=False)
class ShareBundles(_ToClient):
    """Round 2 start, server -> client: every sealed share addressed to the recipient (``peers``
    are the senders, the clients that drew it) and ``holders``: the recipient's own holders that
    are still in the session (they received its bundle; it masks with them)."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_BUNDLES
    peers: np.ndarray
    ciphertexts: np.ndarray
    holders: np.ndarray = ()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        peers, ciphertexts = _sealed_table(self.peers, self.ciphertexts)
        object.__setattr__(self, "peers", peers)
        object.__setattr__(self, "ciphertexts", ciphertexts)
        object.__setattr__(self, "holders", _id_array("holders", self.holders))

    def _body(self) -> list[bytes | memoryview]:
        return [*_sealed_rows(self.peers, self.ciphertexts), _U32.pack(self.holders.size), _raw(self.holders)]


# ----------------------------------------------------------------------------- round 2

@dataclass(frozen=True, eq=False)
class MaskedInput(_FromClient):
    """Round 2, client -> server: the masked input vector y_u in Z_(2^bits)^m, and ``rejected``:
    the senders whose share bundle did not open (the client holds nothing for them but still
    masks with them)."""

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT
    modulus_bits: int
    values: np.ndarray
    rejected: np.ndarray = ()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        bits = self.modulus_bits
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
            raise ParameterError(f"modulus_bits must be in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
        ring = Ring(int(bits))
        values = self.values
        if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind != "u":
            raise ParameterError("values must be a 1-D unsigned integer array")
        if values.dtype.itemsize > ring.element_bytes:
            raise ParameterError(f"values dtype {values.dtype} is wider than the ring's {ring.dtype}")
        if values.size > MAX_ID:
            raise ParameterError("too many values")
        if not ring.in_range(values.astype(ring.dtype, copy=False)):
            raise ParameterError(f"values must be below 2**{bits}")
        object.__setattr__(self, "modulus_bits", int(bits))
        object.__setattr__(self, "values", _frozen(values.astype(ring.dtype, copy=False)))
        object.__setattr__(self, "rejected", _id_array("rejected", self.rejected))

    def _body(self) -> list[bytes | memoryview]:
        return [_U8.pack(self.modulus_bits), _U32.pack(self.values.size), _raw(self.values),
                _U32.pack(self.rejected.size), _raw(self.rejected)]


# ----------------------------------------------------------------------------- round 3 (malicious)

@dataclass(frozen=True, eq=False)
class ConsistencyRequest(_ToClient):
    """Round 3 start (malicious mode), server -> client: the survivors of the masked-input round."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_REQUEST
    survivors: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "survivors", _id_array("survivors", self.survivors))

    def _body(self) -> list[bytes | memoryview]:
        return [_U32.pack(self.survivors.size), _raw(self.survivors)]


@dataclass(frozen=True, eq=False)
class ConsistencySignature(_FromClient):
    """Round 3, client -> server: the sender's signature over (session, survivor list)."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_SIGNATURE
    signature: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "signature", _bytes("signature", self.signature, SIGNATURE_BYTES))

    def _body(self) -> list[bytes | memoryview]:
        return [self.signature]


# ----------------------------------------------------------------------------- round 4

@dataclass(frozen=True, eq=False)
class UnmaskRequest(_ToClient):
    """Round 4 start, server -> client: the survivor list and, in malicious mode, the survivors'
    signatures over it (each client checks them before revealing anything)."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_REQUEST
    survivors: np.ndarray
    signatures: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "survivors", _id_array("survivors", self.survivors))
        signatures = tuple((_id("signer", i), _bytes("signature", s, SIGNATURE_BYTES)) for i, s in self.signatures)
        _increasing("signers", [i for i, _ in signatures])
        object.__setattr__(self, "signatures", signatures)

    def _body(self) -> list[bytes | memoryview]:
        parts = [_U32.pack(self.survivors.size), _raw(self.survivors),
                 _U32.pack(len(self.signatures))]
        parts += [_SIGNED_ID.pack(i, s) for i, s in self.signatures]
        return parts


def _share_table(name: str, owners: object, shares: object) -> tuple[np.ndarray, np.ndarray]:
    owner_ids = _id_array(f"{name} owners", owners)
    try:
        table = np.asarray(shares)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{name} shares must be an integer array") from None
    if table.size == 0:
        table = table.reshape(0, LIMBS_PER_SECRET).astype(np.uint32)
    if table.shape != (owner_ids.size, LIMBS_PER_SECRET) or table.dtype.kind not in "iu":
        raise ParameterError(f"{name} shares must be a ({owner_ids.size}, {LIMBS_PER_SECRET}) integer array")
    if table.size and (int(table.min()) < 0 or int(table.max()) >= FIELD_PRIME):
        raise ParameterError(f"{name} shares must be field elements below {FIELD_PRIME}")
    return owner_ids, _frozen(np.ascontiguousarray(table, dtype="<u4"))


@dataclass(frozen=True, eq=False)
class UnmaskingShares(_FromClient):
    """Round 4, client -> server: self-mask shares of survivors and mask-key shares of dropped
    clients; never both kinds for the same owner."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASKING_SHARES
    self_mask_owners: np.ndarray
    self_mask_shares: np.ndarray
    mask_key_owners: np.ndarray
    mask_key_shares: np.ndarray

    def __post_init__(self) -> None:
        super().__post_init__()
        b_owners, b_shares = _share_table("self_mask", self.self_mask_owners, self.self_mask_shares)
        s_owners, s_shares = _share_table("mask_key", self.mask_key_owners, self.mask_key_shares)
        if np.intersect1d(b_owners, s_owners).size:
            raise ParameterError("an owner appears among both self-mask and mask-key shares")
        object.__setattr__(self, "self_mask_owners", b_owners)
        object.__setattr__(self, "self_mask_shares", b_shares)
        object.__setattr__(self, "mask_key_owners", s_owners)
        object.__setattr__(self, "mask_key_shares", s_shares)

    def _body(self) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = []
        for owners, shares in ((self.self_mask_owners, self.self_mask_shares),
                               (self.mask_key_owners, self.mask_key_shares)):
            rows = np.empty((owners.size, _SHARE_ROW), dtype="<u4")
            rows[:, 0] = owners
            rows[:, 1:] = shares
            parts += [_U32.pack(owners.size), _raw(rows)]
        return parts


# ----------------------------------------------------------------------------- abort

@dataclass(frozen=True, eq=False)
class AbortNotice(_ToClient):
    """Server -> client, any time: the session is aborted; ``reason`` is human-readable."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT
    reason: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.reason, str):
            raise ParameterError("reason must be a string")
        if len(self.reason.encode("utf-8")) > MAX_ABORT_REASON_BYTES:
            raise ParameterError(f"reason longer than {MAX_ABORT_REASON_BYTES} bytes")

    def _body(self) -> list[bytes | memoryview]:
        raw = self.reason.encode("utf-8")
        return [_U16.pack(len(raw)), raw]


def encode_broadcast(message: Message, recipients: list[int]) -> dict[int, bytes]:
    """Encode one server-to-client message for many recipients, its body only once.

    ``message.recipient`` is ignored: each copy carries its own recipient in the header.
    """
    if message.FROM_CLIENT:
        raise ParameterError("only server-to-client messages are broadcast")
    body = b"".join(message._body())
    return {r: _HEADER.pack(MAGIC, VERSION, int(message.TYPE), message.session_id, _id("recipient", r)) + body
            for r in recipients}


def encode_key_directories(session_id: bytes, entries: dict[int, KeyEntry], transcripts: dict[int, Transcript],
                           listed: dict[int, list[int]] | None = None) -> dict[int, bytes]:
    """One KeyDirectory per recipient in ``transcripts``, each with its own audit path, listing
    ``listed[recipient]`` (sorted ids) of ``entries``, or every entry when ``listed`` is None (the
    complete graph). Each entry is validated once (it is a KeyEntry) and encoded once."""
    values = list(entries.values())
    if not values or not all(isinstance(e, KeyEntry) for e in values):
        raise ParameterError("entries must map client ids to KeyEntry objects")
    if len({e.signature is None for e in values}) > 1:
        raise ParameterError("either every entry of a key directory is signed or none is")
    signed = values[0].signature is not None
    encoded = {u: b"".join(e._body()) + (e.signature if signed else b"") for u, e in entries.items()}  # type: ignore[operator]
    if listed is None:
        ids = sorted(entries)
        shared = _U8.pack(signed) + _U32.pack(len(ids)) + b"".join(encoded[u] for u in ids)
    out = {}
    for recipient, transcript in transcripts.items():
        if not isinstance(transcript, Transcript):
            raise ParameterError("transcripts must map recipients to Transcript objects")
        if listed is not None:
            ids = listed[recipient]
            _increasing("entries", ids)
            shared = _U8.pack(signed and bool(ids)) + _U32.pack(len(ids)) + b"".join(encoded[u] for u in ids)
        header = _HEADER.pack(MAGIC, VERSION, int(MessageType.KEY_DIRECTORY), session_id, _id("recipient", recipient))
        out[recipient] = header + shared + b"".join(transcript._body())
    return out


# ----------------------------------------------------------------------------- decoding

class _Reader:
    """Bounds-checked cursor over a message's bytes; every overrun is a MalformedMessage."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedMessage(f"message truncated: needed {n} bytes at offset {self.pos}, "
                                   f"{len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def flag(self, name: str) -> bool:
        value = self.u8()
        if value > 1:
            raise MalformedMessage(f"{name} flag must be 0 or 1, got {value}")
        return bool(value)

    def count(self, entry_bytes: int, name: str) -> int:
        count = self.u32()
        if count * entry_bytes > len(self.data) - self.pos:
            raise MalformedMessage(f"{name} count {count} exceeds the message length")
        return count

    def records(self, count: int, dtype: str | np.dtype) -> np.ndarray:
        """``count`` fixed-size records as a read-only view of the message bytes (no copy)."""
        dtype = np.dtype(dtype)
        if count * dtype.itemsize > len(self.data) - self.pos:
            raise MalformedMessage(f"message truncated: {count} records of {dtype.itemsize} bytes do not fit")
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos) if count else \
            np.zeros(0, dtype=dtype)
        self.pos += count * dtype.itemsize
        return array

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.pos} trailing bytes after the message")


def _read_ids(r: _Reader, name: str) -> np.ndarray:
    """u32 count || count x u32 id (strictness is checked by the message constructor)."""
    return r.records(r.count(4, name), "<u4")


def _read_share_table(r: _Reader, name: str) -> tuple[np.ndarray, np.ndarray]:
    count = r.count(4 * _SHARE_ROW, name)
    rows = r.records(count * _SHARE_ROW, "<u4").reshape(count, _SHARE_ROW)
    return rows[:, 0], rows[:, 1:]


def _decode_body(kind: MessageType, session_id: bytes, party: int, r: _Reader) -> Message:
    if kind is MessageType.ADVERTISE_KEYS:
        c_pk, s_pk = r.take(KEY_BYTES), r.take(KEY_BYTES)
        holders = _read_ids(r, "holder")
        signature = r.take(SIGNATURE_BYTES) if r.flag("signature") else None
        return AdvertiseKeys(session_id, party, c_pk, s_pk, holders, signature)
    if kind is MessageType.KEY_DIRECTORY:
        signed = r.flag("signed")
        entry_bytes = _KEY_ENTRY.size + 4 + (SIGNATURE_BYTES if signed else 0)
        count = r.count(entry_bytes, "entry")
        if signed and count == 0:
            raise MalformedMessage("an empty key directory must have its signed flag 0")
        entries = []
        for _ in range(count):
            client_id, c_pk, s_pk = _KEY_ENTRY.unpack(r.take(_KEY_ENTRY.size))
            holders = _read_ids(r, "holder")
            entries.append(KeyEntry(client_id, c_pk, s_pk, holders, r.take(SIGNATURE_BYTES) if signed else None))
        root, index, size, length = _TRANSCRIPT.unpack(r.take(_TRANSCRIPT.size))
        path = tuple(r.take(HASH_BYTES) for _ in range(length))
        return KeyDirectory(session_id, party, tuple(entries), Transcript(root, index, size, path))
    if kind in (MessageType.SHARE_KEYS, MessageType.SHARE_BUNDLES):
        commitment = r.take(32) if kind is MessageType.SHARE_KEYS else None
        rows = r.records(r.count(_SEALED_ROW.itemsize, "sealed share"), _SEALED_ROW)
        if commitment is not None:
            return ShareKeys(session_id, party, commitment, rows["peer"], rows["ciphertext"])
        return ShareBundles(session_id, party, rows["peer"], rows["ciphertext"], _read_ids(r, "holder"))
    if kind is MessageType.MASKED_INPUT:
        bits = r.u8()
        if not MIN_BITS <= bits <= MAX_BITS:
            raise MalformedMessage(f"modulus_bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
        ring = Ring(bits)
        values = r.records(r.count(ring.element_bytes, "value"), ring.dtype.str)
        if not ring.in_range(values):
            raise MalformedMessage(f"masked input has values >= 2**{bits}")
        return MaskedInput(session_id, party, bits, values, _read_ids(r, "rejected sender"))
    if kind is MessageType.CONSISTENCY_REQUEST:
        return ConsistencyRequest(session_id, party, r.records(r.count(4, "survivor"), "<u4"))
    if kind is MessageType.CONSISTENCY_SIGNATURE:
        return ConsistencySignature(session_id, party, r.take(SIGNATURE_BYTES))
    if kind is MessageType.UNMASK_REQUEST:
        survivors = r.records(r.count(4, "survivor"), "<u4")
        signatures = tuple(_SIGNED_ID.unpack(r.take(_SIGNED_ID.size))
                           for _ in range(r.count(_SIGNED_ID.size, "signature")))
        return UnmaskRequest(session_id, party, survivors, signatures)
    if kind is MessageType.UNMASKING_SHARES:
        b_owners, b_shares = _read_share_table(r, "self-mask share")
        s_owners, s_shares = _read_share_table(r, "mask-key share")
        return UnmaskingShares(session_id, party, b_owners, b_shares, s_owners, s_shares)
    if kind is MessageType.ABORT:
        raw = r.take(r.u16())
        if len(raw) > MAX_ABORT_REASON_BYTES:
            raise MalformedMessage("abort reason too long")
        try:
            reason = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise MalformedMessage("abort reason is not valid UTF-8") from None
        return AbortNotice(session_id, party, reason)
    raise MalformedMessage(f"unknown message type {int(kind)}")  # pragma: no cover - enum is closed


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """Parse canonical message bytes; :class:`MalformedMessage` for anything else.

    Arrays in the returned message (e.g. masked input values) are read-only views of ``data``
    when it is ``bytes``, so decoding a large vector copies nothing.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise MalformedMessage(f"a message is bytes, got {type(data).__name__}")
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"message shorter than its {_HEADER.size}-byte header")
    magic, version, kind, session_id, party = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage("not a secagg message (bad magic)")
    if version != VERSION:
        raise MalformedMessage(f"unsupported protocol version {version} (this is version {VERSION})")
    try:
        kind = MessageType(kind)
    except ValueError:
        raise MalformedMessage(f"unknown message type {kind}") from None
    reader = _Reader(data, _HEADER.size)
    try:
        message = _decode_body(kind, session_id, party, reader)
    except ParameterError as exc:  # a field decoded fine but violates the message's rules
        raise MalformedMessage(str(exc)) from None
    reader.end()
    return message
