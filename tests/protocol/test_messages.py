import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import MalformedMessage, ParameterError
from secagg.protocol.messages import (
    SEALED_SHARES_BYTES,
    AbortNotice,
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
    ShareBundles,
    ShareKeys,
    Transcript,
    UnmaskingShares,
    UnmaskRequest,
    audit_path_length,
    decode_message,
    encode_broadcast,
    encode_key_directories,
)

SID = bytes(range(16))
ids = st.integers(0, 2**32 - 1)
key = st.integers(0, 2**255 - 20).map(lambda v: v.to_bytes(32, "little"))  # canonical X25519 encodings
sig = st.binary(min_size=64, max_size=64)
digest = st.binary(min_size=32, max_size=32)
sorted_ids = st.lists(ids, max_size=12, unique=True).map(sorted)


def holders_of(client):
    return st.lists(ids.filter(lambda v: v != client), max_size=6, unique=True).map(sorted)


@st.composite
def transcripts(draw):
    size = draw(st.integers(1, 70))
    index = draw(st.integers(0, size - 1))
    path = tuple(draw(digest) for _ in range(audit_path_length(index, size)))
    return Transcript(draw(digest), index, size, path)


@st.composite
def key_directories(draw):
    signed = draw(st.booleans())
    entries = tuple(KeyEntry(i, draw(key), draw(key), draw(holders_of(i)), draw(sig) if signed else None)
                    for i in draw(sorted_ids))
    return KeyDirectory(SID, draw(ids), entries, draw(transcripts()))


@st.composite
def advertise_keys(draw):
    sender = draw(ids)
    return AdvertiseKeys(SID, sender, draw(key), draw(key), draw(holders_of(sender)), draw(st.one_of(st.none(), sig)))


def sealed_table(draw):
    peers = draw(sorted_ids)
    raw = draw(st.binary(min_size=len(peers) * SEALED_SHARES_BYTES, max_size=len(peers) * SEALED_SHARES_BYTES))
    return peers, np.frombuffer(raw, dtype=np.uint8).reshape(len(peers), SEALED_SHARES_BYTES)


@st.composite
def masked_inputs(draw):
    bits = draw(st.integers(1, 64))
    values = draw(st.lists(st.integers(0, 2**bits - 1), max_size=20))
    return MaskedInput(SID, draw(ids), bits, np.array(values, dtype=np.uint32 if bits <= 32 else np.uint64),
                       draw(sorted_ids))


@st.composite
def unmasking_shares(draw):
    owners = draw(sorted_ids)
    split = draw(st.integers(0, len(owners)))
    first, second = owners[:split], owners[split:]
    limbs = st.integers(0, 2**31 - 2)
    table = lambda n: np.array(draw(st.lists(st.lists(limbs, min_size=9, max_size=9), min_size=n, max_size=n)),
                               dtype=np.uint32).reshape(n, 9)
    return UnmaskingShares(SID, draw(ids), first, table(len(first)), second, table(len(second)))


messages = st.one_of(
    advertise_keys(),
    key_directories(),
    st.composite(lambda draw: ShareKeys(SID, draw(ids), draw(digest), *sealed_table(draw)))(),
    st.composite(lambda draw: ShareBundles(SID, draw(ids), *sealed_table(draw), draw(sorted_ids)))(),
    masked_inputs(),
    st.builds(ConsistencyRequest, st.just(SID), ids, sorted_ids),
    st.builds(ConsistencySignature, st.just(SID), ids, sig),
    st.builds(UnmaskRequest, st.just(SID), ids, sorted_ids,
              st.lists(st.tuples(ids, sig), max_size=4, unique_by=lambda p: p[0]).map(sorted).map(tuple)),
    unmasking_shares(),
    st.builds(AbortNotice, st.just(SID), ids, st.text(max_size=50)),
)


@given(messages)
def test_round_trip_is_canonical(message):
    data = message.encode()
    decoded = decode_message(data)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decoded.encode() == data


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed_message(data):
    try:
        message = decode_message(data)
    except MalformedMessage:
        return
    assert message.encode() == data  # anything accepted must be canonical


@given(messages, st.data())
def test_mutated_messages_raise_only_malformed_message(message, data):
    raw = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "extend", "set"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "truncate" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        elif op == "extend":
            raw += data.draw(st.binary(min_size=1, max_size=8))
        elif op == "set" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_message(bytes(raw))
    except MalformedMessage:
        return
    assert decoded.encode() == bytes(raw)


@settings(max_examples=60, deadline=None)
@given(messages)
def test_every_single_byte_change_is_refused_or_canonical(message):
    # Systematic companion of the random mutations above: each position set to the values that
    # flags and counts are most sensitive to. Found an empty KeyDirectory with signed=1 decoding.
    raw = message.encode()
    for i in range(min(len(raw), 160)):
        for value in {0, 1, 2, 255, raw[i] ^ 1, raw[i] ^ 0x80} - {raw[i]}:
            mutated = raw[:i] + bytes([value]) + raw[i + 1:]
            try:
                decoded = decode_message(mutated)
            except MalformedMessage:
                continue
            assert decoded.encode() == mutated, (type(message).__name__, i, value)


ONE_LEAF = Transcript(bytes(32), 0, 1, ())


def test_empty_key_directory_with_signed_flag_is_malformed():
    raw = bytearray(KeyDirectory(SID, 0, (), ONE_LEAF).encode())
    raw[26] = 1  # the signed flag, right after the 26-byte header
    with pytest.raises(MalformedMessage, match="empty key directory"):
        decode_message(bytes(raw))


def header(kind, party=0, version=2, magic=b"SAGG"):
    return struct.pack("<4sBB16sI", magic, version, kind, SID, party)


@pytest.mark.parametrize("data,reason", [
    (b"", "shorter"),
    (header(1)[:-1], "shorter"),
    (header(1, magic=b"XXXX") + bytes(65), "magic"),
    (header(1, version=1) + bytes(69), "version 1"),
    (header(99), "unknown message type"),
    (header(1) + bytes(68) + b"\x02", "flag"),
    (header(1) + bytes(68) + b"\x00\x00", "trailing"),
    (header(1) + (2**255 - 19).to_bytes(32, "little") + bytes(37), "canonical X25519"),
    (header(1) + bytes(31) + b"\x80" + bytes(37), "canonical X25519"),
    (header(1) + bytes(64) + struct.pack("<II", 1, 0) + b"\x00", "own shares"),
    (header(1) + bytes(64) + struct.pack("<III", 2, 4, 4) + b"\x00", "increasing"),
    (header(2) + b"\x00" + struct.pack("<I", 0) + bytes(32) + struct.pack("<IIB", 0, 1, 1) + bytes(32), "audit path"),
    (header(2) + b"\x00" + struct.pack("<I", 0) + bytes(32) + struct.pack("<IIB", 3, 2, 1) + bytes(32), "outside"),
    (header(4) + struct.pack("<I", 0) + struct.pack("<III", 2, 7, 7), "increasing"),
    (header(5) + struct.pack("<BII", 8, 1, 8) + struct.pack("<II", 1, 3) + b"\x00", "trailing"),
    (header(6) + struct.pack("<III", 2, 5, 5), "increasing"),
    (header(6) + struct.pack("<III", 2, 5, 4), "increasing"),
    (header(6) + struct.pack("<I", 1_000_000), "exceeds"),
    (header(5) + struct.pack("<BI", 0, 0), "modulus_bits"),
    (header(5) + struct.pack("<BI", 65, 0), "modulus_bits"),
    (header(5) + struct.pack("<BII", 3, 1, 8), "values >= 2\\*\\*3"),
    (header(9) + struct.pack("<I", 1) + struct.pack("<I", 0) + struct.pack("<9I", *[2**31 - 1] * 9)
     + struct.pack("<I", 0), "field elements"),
    (header(9) + struct.pack("<I", 1) + struct.pack("<10I", 4, *[0] * 9) + struct.pack("<I", 1)
     + struct.pack("<10I", 4, *[0] * 9), "both"),
    (header(10) + struct.pack("<H", 2) + b"\xff\xfe", "UTF-8"),
    (header(2) + b"\x01" + struct.pack("<I", 1) + struct.pack("<I", 0) + bytes(64), "exceeds"),
    (header(7) + bytes(63), "truncated"),
])
def test_specific_malformations(data, reason):
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(data)


@pytest.mark.parametrize("value", [None, 5, "text", [1, 2]])
def test_non_bytes_are_malformed(value):
    with pytest.raises(MalformedMessage):
        decode_message(value)


def test_masked_input_decoding_does_not_copy_the_vector():
    values = np.arange(1000, dtype=np.uint32)
    data = MaskedInput(SID, 1, 32, values).encode()
    decoded = decode_message(data)
    assert np.shares_memory(decoded.values, np.frombuffer(data, dtype=np.uint8))
    assert not decoded.values.flags.writeable


def test_broadcast_encodes_each_recipient_like_a_single_message():
    message = ConsistencyRequest(SID, 0, [1, 4, 7])
    copies = encode_broadcast(message, [1, 4, 7])
    for recipient, data in copies.items():
        assert data == ConsistencyRequest(SID, recipient, [1, 4, 7]).encode()
    with pytest.raises(ParameterError):
        encode_broadcast(ConsistencySignature(SID, 0, bytes(64)), [1])


@pytest.mark.parametrize("build", [
    lambda: AdvertiseKeys(bytes(15), 0, bytes(32), bytes(32)),
    lambda: AdvertiseKeys(SID, -1, bytes(32), bytes(32)),
    lambda: AdvertiseKeys(SID, 2**32, bytes(32), bytes(32)),
    lambda: AdvertiseKeys(SID, 0, bytes(31), bytes(32)),
    lambda: AdvertiseKeys(SID, 0, bytes(32), bytes(32), signature=bytes(63)),
    lambda: AdvertiseKeys(SID, 0, bytes(32), b"\xff" * 32),
    lambda: AdvertiseKeys(SID, 3, bytes(32), bytes(32), [1, 3]),
    lambda: KeyDirectory(SID, 0, (KeyEntry(2, bytes(32), bytes(32)), KeyEntry(1, bytes(32), bytes(32))), ONE_LEAF),
    lambda: KeyDirectory(SID, 0, (KeyEntry(1, bytes(32), bytes(32)),
                                  KeyEntry(2, bytes(32), bytes(32), signature=bytes(64))), ONE_LEAF),
    lambda: KeyDirectory(SID, 0, (), "no transcript"),
    lambda: Transcript(bytes(32), 2, 4, (bytes(32),)),
    lambda: Transcript(bytes(32), 4, 4, (bytes(32),) * 2),
    lambda: MaskedInput(SID, 0, 8, np.array([1], dtype=np.uint32), [5, 2]),
    lambda: ShareKeys(SID, 0, bytes(32), [1], np.zeros((1, 10), np.uint8)),
    lambda: ShareKeys(SID, 0, bytes(32), [1, 2], np.zeros((1, SEALED_SHARES_BYTES), np.uint8)),
    lambda: ShareBundles(SID, 0, [2, 1], np.zeros((2, SEALED_SHARES_BYTES), np.uint8)),
    lambda: ShareBundles(SID, 0, [1], np.zeros((1, SEALED_SHARES_BYTES), np.int32)),
    lambda: MaskedInput(SID, 0, 8, np.array([256], dtype=np.uint32)),
    lambda: MaskedInput(SID, 0, 8, np.array([1.0])),
    lambda: MaskedInput(SID, 0, 8, np.array([1], dtype=np.uint64)),
    lambda: UnmaskRequest(SID, 0, [3, 3]),
    lambda: UnmaskingShares(SID, 0, [1], np.zeros((1, 9)), [1], np.zeros((1, 9))),
    lambda: UnmaskingShares(SID, 0, [1], np.zeros((1, 8), np.uint32), [], np.zeros((0, 9), np.uint32)),
    lambda: AbortNotice(SID, 0, "x" * 2000),
])
def test_constructors_refuse_invalid_fields(build):
    with pytest.raises(ParameterError):
        build()


def test_key_directories_for_the_complete_graph_encode_like_single_messages():
    entries = (KeyEntry(0, bytes(32), (1).to_bytes(32, "little")), KeyEntry(1, (2).to_bytes(32, "little"),
                                                                          (3).to_bytes(32, "little")))
    transcripts = {0: Transcript(b"\x01" * 32, 0, 2, (b"\x02" * 32,)),
                   1: Transcript(b"\x01" * 32, 1, 2, (b"\x03" * 32,))}
    for recipient, data in encode_key_directories(SID, dict(enumerate(entries)), transcripts).items():
        assert data == KeyDirectory(SID, recipient, entries, transcripts[recipient]).encode()
    some = encode_key_directories(SID, dict(enumerate(entries)), transcripts, listed={0: [0], 1: []})
    assert some[0] == KeyDirectory(SID, 0, entries[:1], transcripts[0]).encode()
    assert some[1] == KeyDirectory(SID, 1, (), transcripts[1]).encode()
