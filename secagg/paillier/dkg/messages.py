"""Messages of the dealerless key ceremony, one canonical binary encoding each (protocols/dkg-v1.md,
section 3, rules K1 to K12).

Every message travels through the coordinator, which relays and never computes::

    header = magic "SAGK" | version u8 (=1) | type u8 | ceremony_id 16 bytes | party u32   (26 bytes)

``party`` is the sender of a bank-to-coordinator message and the recipient of a
coordinator-to-bank message. Integers are little-endian; bodies have a fixed field order, no
padding and no trailing bytes:

* ``HELLO`` (bank): ``agreement_key 32 | signature 64``: the bank's X25519 key for this ceremony,
  signed with its Ed25519 identity over the ceremony id, its id and the parameters' digest;
* ``KEYS`` (coordinator): ``count u16 | (sender u32 | agreement_key 32 | signature 64)*``: the
  other banks' hellos (senders ascending);
* ``ROUND`` (bank): ``round u32 | kind u8 | transcript 32 | public_len u32 | public | count u16 |
  (recipient u32 | sealed_len u32 | sealed | signature 64)*``: what the bank broadcasts and one
  *letter* per other bank: the part sealed for it with AES-GCM (possibly empty) and the bank's
  signature over both (recipients ascending);
* ``BUNDLE`` (coordinator): ``round u32 | count u16 | (sender u32 | kind u8 | transcript 32 |
  public_len u32 | public | sealed_len u32 | sealed | signature 64)*``: every other bank's letter
  to the recipient (senders ascending);
* ``ABORT`` (either way): ``reason`` (UTF-8, at most 1 KiB).

:func:`decode_dkg_message` turns every invalid byte string into :class:`MalformedMessage` and
nothing else; what a round's payloads mean is the bank's business (:mod:`secagg.paillier.dkg.bank`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from secagg.errors import MalformedMessage

__all__ = ["DkgMessageType", "RoundKind", "Hello", "Keys", "Letter", "RoundMessage", "BundleEntry", "Bundle",
           "DkgAbort", "decode_dkg_message", "MAGIC", "VERSION", "CEREMONY_ID_BYTES", "MAX_PAYLOAD_BYTES",
           "MAX_PARTIES"]

MAGIC = b"SAGK"
VERSION = 1
CEREMONY_ID_BYTES = 16
AGREEMENT_KEY_BYTES = 32
SIGNATURE_BYTES = 64
TRANSCRIPT_BYTES = 32
MAX_ABORT_REASON_BYTES = 1024
MAX_PAYLOAD_BYTES = 256 * 2**20
MAX_PARTIES = 64
_HEADER = struct.Struct("<4sBB16sI")
_U8, _U16, _U32 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I")


class DkgMessageType(IntEnum):
    HELLO = 1
    ROUND = 2
    BUNDLE = 3
    ABORT = 4
    KEYS = 5


class RoundKind(IntEnum):
    """What a round's payloads are (protocols/dkg-v1.md, section 6, documents each)."""

    SIEVE = 1
    SIEVE_REVEAL = 2
    MODULUS = 3
    MODULUS_REVEAL = 4
    BIPRIME = 5
    CONFIRM = 6
    KEY = 7
    KEY_REVEAL = 8
    RESHARE = 9
    VERIFY = 10
    TEST = 11
    FINISH = 12


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.offset + count > len(self.data):
            raise MalformedMessage(f"truncated message: {what} needs {count} bytes")
        out = self.data[self.offset:self.offset + count]
        self.offset += count
        return out

    def u8(self, what: str) -> int:
        return _U8.unpack(self.take(1, what))[0]

    def u16(self, what: str) -> int:
        return _U16.unpack(self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return _U32.unpack(self.take(4, what))[0]

    def blob(self, what: str) -> bytes:
        length = self.u32(what + " length")
        if length > MAX_PAYLOAD_BYTES:
            raise MalformedMessage(f"{what} of {length} bytes exceeds the limit")
        return self.take(length, what)

    def kind(self) -> RoundKind:
        value = self.u8("kind")
        try:
            return RoundKind(value)
        except ValueError:
            raise MalformedMessage(f"unknown round kind {value}") from None

    def count(self, what: str) -> int:
        value = self.u16(what)
        if value >= MAX_PARTIES:
            raise MalformedMessage(f"{value} {what}s (at most {MAX_PARTIES - 1})")
        return value

    def ascending_ids(self, previous: int, what: str) -> int:
        value = self.u32(what)
        if value <= previous or value >= MAX_PARTIES:
            raise MalformedMessage(f"{what}s must ascend without repeats, below {MAX_PARTIES}")
        return value

    def end(self) -> None:
        if self.offset != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.offset} trailing bytes")


def _header(kind: DkgMessageType, ceremony_id: bytes, party: int) -> bytes:
    if len(ceremony_id) != CEREMONY_ID_BYTES:
        raise MalformedMessage(f"a ceremony id has {CEREMONY_ID_BYTES} bytes, got {len(ceremony_id)}")
    if not 0 <= party < MAX_PARTIES:
        raise MalformedMessage(f"party {party} out of range")
    return _HEADER.pack(MAGIC, VERSION, int(kind), bytes(ceremony_id), party)


def _ascending(ids: list[int], what: str) -> None:
    if ids != sorted(set(ids)) or any(not 0 <= i < MAX_PARTIES for i in ids) or len(ids) >= MAX_PARTIES:
        raise MalformedMessage(f"{what}s must ascend without repeats, below {MAX_PARTIES}")


@dataclass(frozen=True)
class Hello:
    ceremony_id: bytes
    party: int
    agreement_key: bytes
    signature: bytes

    def encode(self) -> bytes:
        if len(self.agreement_key) != AGREEMENT_KEY_BYTES or len(self.signature) != SIGNATURE_BYTES:
            raise MalformedMessage("hello: wrong key or signature length")
        return _header(DkgMessageType.HELLO, self.ceremony_id, self.party) + self.agreement_key + self.signature


@dataclass(frozen=True)
class Keys:
    """The coordinator's answer to the hellos: every other bank's (id, agreement key, signature)."""

    ceremony_id: bytes
    party: int  # the recipient
    entries: tuple[tuple[int, bytes, bytes], ...]  # senders ascending

    def encode(self) -> bytes:
        _ascending([s for s, _, _ in self.entries], "sender")
        parts = [_header(DkgMessageType.KEYS, self.ceremony_id, self.party), _U16.pack(len(self.entries))]
        for sender, key, signature in self.entries:
            if len(key) != AGREEMENT_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
                raise MalformedMessage("keys: wrong key or signature length")
            parts += [_U32.pack(sender), key, signature]
        return b"".join(parts)


@dataclass(frozen=True)
class Letter:
    """What one bank sends one other bank in a round: the sealed part and the signature."""

    recipient: int
    sealed: bytes  # AES-GCM ciphertext, or empty when the round seals nothing for this recipient
    signature: bytes


@dataclass(frozen=True)
class RoundMessage:
    ceremony_id: bytes
    party: int
    round: int
    kind: RoundKind
    transcript: bytes
    public: bytes
    letters: tuple[Letter, ...]  # recipients ascending

    def encode(self) -> bytes:
        _ascending([letter.recipient for letter in self.letters], "recipient")
        if len(self.transcript) != TRANSCRIPT_BYTES:
            raise MalformedMessage("round message: a transcript digest has 32 bytes")
        parts = [_header(DkgMessageType.ROUND, self.ceremony_id, self.party), _U32.pack(self.round),
                 _U8.pack(int(self.kind)), self.transcript, _U32.pack(len(self.public)), self.public,
                 _U16.pack(len(self.letters))]
        for letter in self.letters:
            if len(letter.signature) != SIGNATURE_BYTES:
                raise MalformedMessage("round message: a signature has 64 bytes")
            parts += [_U32.pack(letter.recipient), _U32.pack(len(letter.sealed)), letter.sealed, letter.signature]
        return b"".join(parts)


@dataclass(frozen=True)
class BundleEntry:
    sender: int
    kind: RoundKind
    transcript: bytes
    public: bytes
    sealed: bytes  # addressed to the bundle's recipient; empty if none
    signature: bytes  # the sender's, over this letter


@dataclass(frozen=True)
class Bundle:
    ceremony_id: bytes
    party: int  # the recipient
    round: int
    entries: tuple[BundleEntry, ...]  # senders ascending

    def encode(self) -> bytes:
        _ascending([e.sender for e in self.entries], "sender")
        parts = [_header(DkgMessageType.BUNDLE, self.ceremony_id, self.party), _U32.pack(self.round),
                 _U16.pack(len(self.entries))]
        for e in self.entries:
            if len(e.transcript) != TRANSCRIPT_BYTES or len(e.signature) != SIGNATURE_BYTES:
                raise MalformedMessage("bundle: transcript digests have 32 bytes, signatures 64")
            parts += [_U32.pack(e.sender), _U8.pack(int(e.kind)), e.transcript, _U32.pack(len(e.public)), e.public,
                      _U32.pack(len(e.sealed)), e.sealed, e.signature]
        return b"".join(parts)


@dataclass(frozen=True)
class DkgAbort:
    ceremony_id: bytes
    party: int
    reason: str

    def encode(self) -> bytes:
        raw = self.reason.encode("utf-8")[:MAX_ABORT_REASON_BYTES]
        raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
        return _header(DkgMessageType.ABORT, self.ceremony_id, self.party) + raw


def decode_dkg_message(data: bytes) -> Hello | Keys | RoundMessage | Bundle | DkgAbort:
    """Parse one ceremony message; :class:`MalformedMessage` for anything that is not one, canonically."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"a ceremony message is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise MalformedMessage(f"message of {len(data)} bytes is shorter than the header")
    magic, version, kind, ceremony_id, party = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage("not a key-ceremony message (bad magic)")
    if version != VERSION:
        raise MalformedMessage(f"unsupported ceremony message version {version} (this side speaks {VERSION})")
    if party >= MAX_PARTIES:
        raise MalformedMessage(f"party {party} out of range")
    reader = _Reader(data, _HEADER.size)
    if kind == DkgMessageType.HELLO:
        key = reader.take(AGREEMENT_KEY_BYTES, "agreement key")
        signature = reader.take(SIGNATURE_BYTES, "signature")
        reader.end()
        return Hello(ceremony_id, party, key, signature)
    if kind == DkgMessageType.KEYS:
        count, previous, hellos = reader.count("entry"), -1, []
        for _ in range(count):
            previous = reader.ascending_ids(previous, "sender")
            hellos.append((previous, reader.take(AGREEMENT_KEY_BYTES, "agreement key"),
                            reader.take(SIGNATURE_BYTES, "signature")))
        reader.end()
        return Keys(ceremony_id, party, tuple(hellos))
    if kind == DkgMessageType.ROUND:
        round_ = reader.u32("round")
        round_kind = reader.kind()
        transcript = reader.take(TRANSCRIPT_BYTES, "transcript")
        public = reader.blob("public payload")
        count, previous, letters = reader.count("recipient"), -1, []
        for _ in range(count):
            previous = reader.ascending_ids(previous, "recipient")
            sealed = reader.blob("sealed payload")
            letters.append(Letter(previous, sealed, reader.take(SIGNATURE_BYTES, "signature")))
        reader.end()
        return RoundMessage(ceremony_id, party, round_, round_kind, transcript, public, tuple(letters))
    if kind == DkgMessageType.BUNDLE:
        round_ = reader.u32("round")
        count, previous, entries = reader.count("entry"), -1, []
        for _ in range(count):
            previous = reader.ascending_ids(previous, "sender")
            entry_kind = reader.kind()
            transcript = reader.take(TRANSCRIPT_BYTES, "transcript")
            public = reader.blob("public payload")
            sealed = reader.blob("sealed payload")
            entries.append(BundleEntry(previous, entry_kind, transcript, public, sealed,
                                       reader.take(SIGNATURE_BYTES, "signature")))
        reader.end()
        return Bundle(ceremony_id, party, round_, tuple(entries))
    if kind == DkgMessageType.ABORT:
        raw = data[_HEADER.size:]
        if len(raw) > MAX_ABORT_REASON_BYTES:
            raise MalformedMessage("abort reason too long")
        try:
            reason = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("abort reason is not UTF-8") from None
        return DkgAbort(ceremony_id, party, reason)
    raise MalformedMessage(f"unknown ceremony message type {kind}")
