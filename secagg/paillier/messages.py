"""Messages of the Paillier path, defined once, with one canonical binary encoding each.

The same family as the masking protocol's codec (:mod:`secagg.protocol.messages`)::

    header  = magic "SAGP" | version u8 (=3) | type u8 | session_id 16 bytes | party u32
    message = header | body (fixed field order, no padding, no trailing bytes)

``party`` is the sender of a bank-to-coordinator message and the recipient of a
coordinator-to-bank message (bank ids ``0..n-1``; bank ``u`` holds key share ``u + 1``). Big integers
(ciphertexts, partial decryptions) are big-endian in a fixed width ``W`` bytes given once per
message (``u16``): the byte length of ``N^2``; unbounded integers (proof responses) are
``u16 length | big-endian bytes`` without a leading zero byte. :func:`decode_paillier_message`
turns every invalid byte string into :class:`MalformedMessage` and nothing else; the roles check
``W`` and ranges against the key (:mod:`secagg.paillier.roles`).

Version 2 (after an adversarial review): a Contribution carries a proof that its sender knows
every plaintext (without it a corrupt bank could sign the inverse of an honest bank's ciphertexts
and cancel them out of the aggregate, leaving one bank's update alone); PartialDecryptions carry
the digest of the contributions they decrypt and the bank's signature, so blame is checkable by a
third party.

Version 3 (after the second review): RoundRequest and DecryptionRequest carry ``encoding``, the
32-byte digest of what the integers mean (the packing, the fixed-point codec, the announcement
the bank checked), and every bank signs its contribution over it. A bank decrypts only an aggregate
whose contributions were all signed over the same encoding as its own, so a coordinator can no
longer tell two banks different packings and read one bank's slots out of the sum.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from secagg.crypto.signatures import SIGNATURE_BYTES
from secagg.errors import MalformedMessage, ParameterError

__all__ = ["PaillierMessageType", "RoundRequest", "Contribution", "KnowledgeProof", "SignedContribution",
           "DecryptionRequest",
           "PartialDecryptions", "PaillierAbort", "decode_paillier_message", "MAGIC", "VERSION"]

MAGIC = b"SAGP"
VERSION = 3
SESSION_ID_BYTES = 16
FINGERPRINT_BYTES = 32
DIGEST_BYTES = 32
CHALLENGE_BYTES = 32
MAX_ABORT_REASON_BYTES = 1024
_HEADER = struct.Struct("<4sBB16sI")
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_ROUND = struct.Struct(f"<I{FINGERPRINT_BYTES}s")


class PaillierMessageType(IntEnum):
    ROUND_REQUEST = 1
    CONTRIBUTION = 2
    DECRYPTION_REQUEST = 3
    PARTIAL_DECRYPTIONS = 4
    ABORT = 5


def _check(condition: bool, text: str) -> None:
    if not condition:
        raise ParameterError(text)


def _u32(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
        raise ParameterError(f"{name} must be a u32, got {value!r}")
    return int(value)


def _bytes(name: str, value: object, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        raise ParameterError(f"{name} must be {length} bytes")
    return bytes(value)


def _integers(name: str, values: Iterable[object], width: int) -> tuple[int, ...]:
    _check(not isinstance(width, bool) and isinstance(width, int) and 1 <= width < 1 << 16,
           "element width must be in 1..65535 bytes")
    bound = 1 << (8 * width)
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < bound:
            raise ParameterError(f"{name} must be integers below 2^(8 * {width})")
        out.append(v)
    return tuple(out)


def _pack_integers(values: tuple[int, ...], width: int) -> bytes:
    return b"".join(v.to_bytes(width, "big") for v in values)


def _varint_ok(name: str, value: object) -> int:
    if (isinstance(value, bool) or not isinstance(value, int) or value < 0
            or (value.bit_length() + 7) // 8 >= 1 << 16):
        raise ParameterError(f"{name} must be a non-negative integer of < 65536 bytes")
    return int(value)


def _pack_varint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _U16.pack(len(raw)) + raw


@dataclass(frozen=True, eq=False)
class KnowledgeProof:
    """A contribution's proof of plaintext knowledge (:class:`secagg.paillier.proofs.PlaintextProof`)."""

    commitment: int
    z_message: int
    z_exponent: int

    def check(self, width: int) -> KnowledgeProof:
        _integers("proof commitment and z_message", (self.commitment, self.z_message), width)
        _varint_ok("proof z_exponent", self.z_exponent)
        return self

    def encode(self, width: int) -> bytes:
        return _pack_integers((self.commitment, self.z_message), width) + _pack_varint(self.z_exponent)


@dataclass(frozen=True, eq=False)
class _Message:
    TYPE: ClassVar[PaillierMessageType]
    FROM_BANK: ClassVar[bool]
    session_id: bytes
    party: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "session_id", _bytes("session_id", self.session_id, SESSION_ID_BYTES))
        object.__setattr__(self, "party", _u32("party", self.party))

    def _body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, int(self.TYPE), self.session_id, self.party) + self._body()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Message) and type(self) is type(other) and self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class RoundRequest(_Message):
    """Coordinator -> bank: contribute ``ciphertexts`` ciphertexts under the key ``fingerprint``
    to round ``round``; the coordinator will not ask for a decryption of fewer than
    ``min_contributors`` contributions (each bank enforces its own floor too)."""

    TYPE: ClassVar[PaillierMessageType] = PaillierMessageType.ROUND_REQUEST
    FROM_BANK: ClassVar[bool] = False
    round: int
    fingerprint: bytes
    ciphertexts: int
    min_contributors: int
    encoding: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "round", _u32("round", self.round))
        object.__setattr__(self, "fingerprint", _bytes("fingerprint", self.fingerprint, FINGERPRINT_BYTES))
        for name in ("ciphertexts", "min_contributors"):
            object.__setattr__(self, name, _u32(name, getattr(self, name)))
        _check(self.ciphertexts >= 1 and self.min_contributors >= 1, "counts must be positive")
        object.__setattr__(self, "encoding", _bytes("encoding", self.encoding, DIGEST_BYTES))

    def _body(self) -> bytes:
        return (_ROUND.pack(self.round, self.fingerprint) + _U32.pack(self.ciphertexts)
                + _U32.pack(self.min_contributors) + self.encoding)


@dataclass(frozen=True, eq=False)
class Contribution(_Message):
    """Bank -> coordinator: its encrypted update for ``round``, the proof that it knows every
    plaintext, and its signature (Ed25519) over the session, the round, the key fingerprint, its
    id, the ciphertexts and the proof."""

    TYPE: ClassVar[PaillierMessageType] = PaillierMessageType.CONTRIBUTION
    FROM_BANK: ClassVar[bool] = True
    round: int
    fingerprint: bytes
    width: int
    ciphertexts: tuple[int, ...]
    proof: KnowledgeProof
    signature: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "round", _u32("round", self.round))
        object.__setattr__(self, "fingerprint", _bytes("fingerprint", self.fingerprint, FINGERPRINT_BYTES))
        object.__setattr__(self, "ciphertexts", _integers("ciphertexts", self.ciphertexts, self.width))
        _check(len(self.ciphertexts) >= 1, "a contribution has at least one ciphertext")
        _check(isinstance(self.proof, KnowledgeProof), "proof must be a KnowledgeProof")
        self.proof.check(self.width)
        object.__setattr__(self, "signature", _bytes("signature", self.signature, SIGNATURE_BYTES))

    def _body(self) -> bytes:
        return (_ROUND.pack(self.round, self.fingerprint) + _U16.pack(self.width) + _U32.pack(len(self.ciphertexts))
                + _pack_integers(self.ciphertexts, self.width) + self.proof.encode(self.width) + self.signature)

    def signed(self) -> SignedContribution:
        return SignedContribution(self.party, self.ciphertexts, self.proof, self.signature)


@dataclass(frozen=True, eq=False)
class SignedContribution:
    """One bank's contribution as forwarded in a DecryptionRequest."""

    sender: int
    ciphertexts: tuple[int, ...]
    proof: KnowledgeProof
    signature: bytes


@dataclass(frozen=True, eq=False)
class DecryptionRequest(_Message):
    """Coordinator -> bank: every contribution of ``round`` it will combine. The bank checks each
    signature and recomputes the product itself; it never decrypts anything else."""

    TYPE: ClassVar[PaillierMessageType] = PaillierMessageType.DECRYPTION_REQUEST
    FROM_BANK: ClassVar[bool] = False
    round: int
    fingerprint: bytes
    width: int
    contributions: tuple[SignedContribution, ...]
    encoding: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "round", _u32("round", self.round))
        object.__setattr__(self, "fingerprint", _bytes("fingerprint", self.fingerprint, FINGERPRINT_BYTES))
        object.__setattr__(self, "encoding", _bytes("encoding", self.encoding, DIGEST_BYTES))
        contributions = tuple(self.contributions)
        _check(len(contributions) >= 1, "a decryption request carries at least one contribution")
        senders = [c.sender for c in contributions]
        _check(all(b > a for a, b in zip(senders, senders[1:])), "contributions must be sorted by sender, distinct")
        count = len(contributions[0].ciphertexts)
        for c in contributions:
            _check(isinstance(c, SignedContribution), "contributions must be SignedContribution objects")
            _u32("sender", c.sender)
            _integers("ciphertexts", c.ciphertexts, self.width)
            _check(len(c.ciphertexts) == count and count >= 1, "every contribution has the same positive length")
            _check(isinstance(c.proof, KnowledgeProof), "proof must be a KnowledgeProof")
            c.proof.check(self.width)
            _bytes("signature", c.signature, SIGNATURE_BYTES)
        object.__setattr__(self, "contributions", contributions)

    def contributions_bytes(self) -> bytes:
        """The forwarded contributions, canonically (what a bank's partial decryptions answer)."""
        parts = []
        for c in self.contributions:
            parts += [_U32.pack(c.sender), c.signature, c.proof.encode(self.width),
                      _pack_integers(c.ciphertexts, self.width)]
        return b"".join(parts)

    def _body(self) -> bytes:
        count = len(self.contributions[0].ciphertexts)
        return b"".join([_ROUND.pack(self.round, self.fingerprint), self.encoding, _U16.pack(self.width),
                         _U32.pack(count), _U32.pack(len(self.contributions)), self.contributions_bytes()])


@dataclass(frozen=True, eq=False)
class PartialDecryptions(_Message):
    """Bank -> coordinator: its partial decryption of every ciphertext of the aggregate it
    recomputed, one proof (challenge, response) that all of them are correct, the digest of the
    contributions it decrypted and its signature over all of it (so that blame is checkable)."""

    TYPE: ClassVar[PaillierMessageType] = PaillierMessageType.PARTIAL_DECRYPTIONS
    FROM_BANK: ClassVar[bool] = True
    round: int
    fingerprint: bytes
    width: int
    values: tuple[int, ...]
    challenge: int
    response: int
    request_digest: bytes
    signature: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "round", _u32("round", self.round))
        object.__setattr__(self, "fingerprint", _bytes("fingerprint", self.fingerprint, FINGERPRINT_BYTES))
        object.__setattr__(self, "values", _integers("values", self.values, self.width))
        _check(len(self.values) >= 1, "at least one partial decryption")
        _check(isinstance(self.challenge, int) and 0 <= self.challenge < 1 << (8 * CHALLENGE_BYTES),
               "challenge out of range")
        _varint_ok("response", self.response)
        object.__setattr__(self, "request_digest", _bytes("request_digest", self.request_digest, DIGEST_BYTES))
        object.__setattr__(self, "signature", _bytes("signature", self.signature, SIGNATURE_BYTES))

    def unsigned_body(self) -> bytes:
        """Everything the bank signs (after a domain label, see the roles)."""
        return (_ROUND.pack(self.round, self.fingerprint) + _U16.pack(self.width) + _U32.pack(len(self.values))
                + _pack_integers(self.values, self.width) + self.challenge.to_bytes(CHALLENGE_BYTES, "big")
                + _pack_varint(self.response) + self.request_digest)

    def _body(self) -> bytes:
        return self.unsigned_body() + self.signature


@dataclass(frozen=True, eq=False)
class PaillierAbort(_Message):
    """Coordinator -> bank: the round is aborted; ``reason`` is human-readable."""

    TYPE: ClassVar[PaillierMessageType] = PaillierMessageType.ABORT
    FROM_BANK: ClassVar[bool] = False
    reason: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(isinstance(self.reason, str) and len(self.reason.encode()) <= MAX_ABORT_REASON_BYTES,
               "reason must be a string of at most 1024 UTF-8 bytes")

    def _body(self) -> bytes:
        raw = self.reason.encode()
        return _U16.pack(len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedMessage(f"message truncated: needed {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, layout: struct.Struct):
        return layout.unpack(self.take(layout.size))

    def integers(self, count: int, width: int) -> tuple[int, ...]:
        if count * width > len(self.data) - self.pos:
            raise MalformedMessage(f"{count} integers of {width} bytes exceed the message length")
        raw = self.take(count * width)
        return tuple(int.from_bytes(raw[i:i + width], "big") for i in range(0, len(raw), width))

    def varint(self, name: str) -> int:
        (length,) = self.unpack(_U16)
        raw = self.take(length)
        if raw[:1] == b"\x00":
            raise MalformedMessage(f"{name} has a leading zero byte (one encoding per integer)")
        return int.from_bytes(raw, "big")

    def proof(self, width: int) -> KnowledgeProof:
        commitment, z_message = self.integers(2, width)
        return KnowledgeProof(commitment, z_message, self.varint("proof z_exponent"))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.pos} trailing bytes after the message")


def _decode_body(kind: PaillierMessageType, sid: bytes, party: int, r: _Reader) -> _Message:
    if kind is PaillierMessageType.ROUND_REQUEST:
        round_, fingerprint = r.unpack(_ROUND)
        (count,), (minimum,) = r.unpack(_U32), r.unpack(_U32)
        return RoundRequest(sid, party, round_, fingerprint, count, minimum, r.take(DIGEST_BYTES))
    if kind is PaillierMessageType.CONTRIBUTION:
        round_, fingerprint = r.unpack(_ROUND)
        (width,), (count,) = r.unpack(_U16), r.unpack(_U32)
        ciphertexts = r.integers(count, width)
        return Contribution(sid, party, round_, fingerprint, width, ciphertexts, r.proof(width),
                            r.take(SIGNATURE_BYTES))
    if kind is PaillierMessageType.DECRYPTION_REQUEST:
        round_, fingerprint = r.unpack(_ROUND)
        encoding = r.take(DIGEST_BYTES)
        (width,), (count,), (contributors,) = r.unpack(_U16), r.unpack(_U32), r.unpack(_U32)
        if contributors * (4 + SIGNATURE_BYTES + (count + 2) * width + 2) > len(r.data) - r.pos:
            raise MalformedMessage("contribution count exceeds the message length")
        contributions = []
        for _ in range(contributors):
            (sender,) = r.unpack(_U32)
            signature = r.take(SIGNATURE_BYTES)
            proof = r.proof(width)
            contributions.append(SignedContribution(sender, r.integers(count, width), proof, signature))
        return DecryptionRequest(sid, party, round_, fingerprint, width, tuple(contributions), encoding)
    if kind is PaillierMessageType.PARTIAL_DECRYPTIONS:
        round_, fingerprint = r.unpack(_ROUND)
        (width,), (count,) = r.unpack(_U16), r.unpack(_U32)
        values = r.integers(count, width)
        challenge = int.from_bytes(r.take(CHALLENGE_BYTES), "big")
        response = r.varint("response")
        return PartialDecryptions(sid, party, round_, fingerprint, width, values, challenge, response,
                                  r.take(DIGEST_BYTES), r.take(SIGNATURE_BYTES))
    if kind is PaillierMessageType.ABORT:
        (length,) = r.unpack(_U16)
        raw = r.take(length)
        try:
            reason = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise MalformedMessage("abort reason is not UTF-8") from None
        return PaillierAbort(sid, party, reason)
    raise MalformedMessage(f"unknown message type {int(kind)}")  # pragma: no cover - the enum is closed


def decode_paillier_message(data: bytes | bytearray | memoryview) -> _Message:
    """Parse canonical message bytes; :class:`MalformedMessage` for anything else."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise MalformedMessage(f"a message is bytes, got {type(data).__name__}")
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"message shorter than its {_HEADER.size}-byte header")
    magic, version, kind, sid, party = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage("not a secagg Paillier message (bad magic)")
    if version != VERSION:
        raise MalformedMessage(f"unsupported Paillier protocol version {version} (this is version {VERSION})")
    try:
        kind = PaillierMessageType(kind)
    except ValueError:
        raise MalformedMessage(f"unknown message type {kind}") from None
    reader = _Reader(data, _HEADER.size)
    try:
        message = _decode_body(kind, sid, party, reader)
    except ParameterError as exc:
        raise MalformedMessage(str(exc)) from None
    reader.end()
    return message
