"""Messages of the dealerless key ceremony, one canonical binary encoding each.

Every message travels through the coordinator, which relays and never computes::

    header = magic "SAGK" | version u8 (=1) | type u8 | ceremony_id 16 bytes | party u32

``party`` is the sender of a bank-to-coordinator message and the recipient of a
coordinator-to-bank message. Integers are little-endian; bodies have a fixed field order, no
padding and no trailing bytes:

* ``HELLO`` (bank): ``agreement_key 32 | signature 64``: the bank's X25519 key for this ceremony,
  signed with its Ed25519 identity over the ceremony id, its id and the parameters' digest;
* ``ROUND`` (bank): ``round u32 | kind u8 | transcript 32 | public_len u32 | public |
  count u16 | (recipient u32 | sealed_len u32 | sealed)*``: what the bank broadcasts and, sealed
  with AES-GCM for each recipient, what only that bank may read (recipients ascending);
* ``BUNDLE`` (coordinator): ``round u32 | count u16 | (sender u32 | kind u8 | transcript 32 |
  public_len u32 | public | sealed_len u32 | sealed)*``: every bank's broadcast of the round and
  the sealed part addressed to the recipient (senders ascending); round 0 carries the hellos
  (kind 0, public = agreement key and signature);
* ``ABORT`` (either way): ``reason`` (UTF-8, at most 1 KiB).

:func:`decode_dkg_message` turns every invalid byte string into :class:`MalformedMessage` and
nothing else; what a round's payloads mean is the bank's business (:mod:`secagg.paillier.dkg.bank`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from secagg.errors import MalformedMessage

__all__ = ["DkgMessageType", "RoundKind", "Hello", "RoundMessage", "BundleEntry", "Bundle", "DkgAbort",
           "decode_dkg_message", "MAGIC", "VERSION", "CEREMONY_ID_BYTES", "MAX_PAYLOAD_BYTES"]

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


class RoundKind(IntEnum):
    """What a round's payloads are (:mod:`secagg.paillier.dkg.bank` documents each)."""

    HELLO = 0
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

    def end(self) -> None:
        if self.offset != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.offset} trailing bytes")


def _header(kind: DkgMessageType, ceremony_id: bytes, party: int) -> bytes:
    if len(ceremony_id) != CEREMONY_ID_BYTES:
        raise MalformedMessage(f"a ceremony id has {CEREMONY_ID_BYTES} bytes, got {len(ceremony_id)}")
    return _HEADER.pack(MAGIC, VERSION, int(kind), bytes(ceremony_id), party)


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
class RoundMessage:
    ceremony_id: bytes
    party: int
    round: int
    kind: RoundKind
    transcript: bytes
    public: bytes
    sealed: tuple[tuple[int, bytes], ...]  # (recipient, AES-GCM ciphertext), recipients ascending

    def encode(self) -> bytes:
        recipients = [r for r, _ in self.sealed]
        if recipients != sorted(set(recipients)) or len(self.transcript) != TRANSCRIPT_BYTES:
            raise MalformedMessage("round message: recipients must ascend without repeats")
        parts = [_header(DkgMessageType.ROUND, self.ceremony_id, self.party), _U32.pack(self.round),
                 _U8.pack(int(self.kind)), self.transcript, _U32.pack(len(self.public)), self.public,
                 _U16.pack(len(self.sealed))]
        for recipient, sealed in self.sealed:
            parts += [_U32.pack(recipient), _U32.pack(len(sealed)), sealed]
        return b"".join(parts)


@dataclass(frozen=True)
class BundleEntry:
    sender: int
    kind: RoundKind
    transcript: bytes
    public: bytes
    sealed: bytes  # addressed to the bundle's recipient; empty if none


@dataclass(frozen=True)
class Bundle:
    ceremony_id: bytes
    party: int  # the recipient
    round: int
    entries: tuple[BundleEntry, ...]  # senders ascending

    def encode(self) -> bytes:
        senders = [e.sender for e in self.entries]
        if senders != sorted(set(senders)):
            raise MalformedMessage("bundle: senders must ascend without repeats")
        parts = [_header(DkgMessageType.BUNDLE, self.ceremony_id, self.party), _U32.pack(self.round),
                 _U16.pack(len(self.entries))]
        for e in self.entries:
            if len(e.transcript) != TRANSCRIPT_BYTES:
                raise MalformedMessage("bundle: transcript digests have 32 bytes")
            parts += [_U32.pack(e.sender), _U8.pack(int(e.kind)), e.transcript, _U32.pack(len(e.public)), e.public,
                      _U32.pack(len(e.sealed)), e.sealed]
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


def decode_dkg_message(data: bytes) -> Hello | RoundMessage | Bundle | DkgAbort:
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
    if kind == DkgMessageType.ROUND:
        round_ = reader.u32("round")
        round_kind = reader.kind()
        transcript = reader.take(TRANSCRIPT_BYTES, "transcript")
        public = reader.blob("public payload")
        count = reader.u16("recipient count")
        if count > MAX_PARTIES:
            raise MalformedMessage(f"{count} recipients")
        sealed, previous = [], -1
        for _ in range(count):
            recipient = reader.u32("recipient")
            if recipient <= previous or recipient >= MAX_PARTIES:
                raise MalformedMessage("recipients must ascend without repeats")
            previous = recipient
            sealed.append((recipient, reader.blob("sealed payload")))
        reader.end()
        return RoundMessage(ceremony_id, party, round_, round_kind, transcript, public, tuple(sealed))
    if kind == DkgMessageType.BUNDLE:
        round_ = reader.u32("round")
        count = reader.u16("entry count")
        if count > MAX_PARTIES:
            raise MalformedMessage(f"{count} entries")
        entries, previous = [], -1
        for _ in range(count):
            sender = reader.u32("sender")
            if sender <= previous or sender >= MAX_PARTIES:
                raise MalformedMessage("senders must ascend without repeats")
            previous = sender
            entry_kind = reader.kind()
            transcript = reader.take(TRANSCRIPT_BYTES, "transcript")
            entries.append(BundleEntry(sender, entry_kind, transcript, reader.blob("public payload"),
                                       reader.blob("sealed payload")))
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
