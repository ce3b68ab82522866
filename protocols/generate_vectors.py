"""Generate (or check) the test vectors in protocols/vectors/ from fixed seeds.

    python protocols/generate_vectors.py           # rewrite every vector file
    python protocols/generate_vectors.py --check   # exit 1 if any file differs from the code's output

The output is deterministic: every random byte comes from TestOnlySeededRandomness with a fixed
seed, and the transcripts record each client's random bytes so another implementation can replay
them (protocols/secagg-v2.md, section 7). Every refusal case is checked against secagg while it is
generated (the reference refuses it with the error kind the case names). Schemas:
protocols/vectors/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.crypto import shamir
from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey, hkdf
from secagg.crypto.prg import expand, keystream
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import AbortError, MalformedMessage, ProtocolViolation
from secagg.protocol import derivation
from secagg.protocol import messages as msg
from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.graph import draw_holders
from secagg.protocol.server import ServerSession, ServerState
from secagg.ring import Ring

VECTORS = Path(__file__).resolve().parent / "vectors"
OWNED_ELSEWHERE = ("dkg",)  # vectors/dkg/: the key ceremony's, written by protocols/generate_dkg_vectors.py
SID = bytes.fromhex("00112233445566778899aabbccddeeff")
OTHER_SID = bytes.fromhex("ffeeddccbbaa99887766554433221100")
P25519 = 2**255 - 19
FIELD_PRIME = shamir.FIELD_PRIME
ORDER_8_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


class RecordingRandomness:
    """Wraps a randomness source and keeps every byte handed out (for replay by others)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.log = bytearray()

    def random_bytes(self, n: int) -> bytes:
        data = self.inner.random_bytes(n)
        self.log += data
        return data


class WordSource:
    """Hands out fixed bytes in order (a recorded or hand-written random stream)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.position = 0

    def random_bytes(self, n: int) -> bytes:
        if self.position + n > len(self.data):
            raise AssertionError(f"asked for {n} bytes beyond the {len(self.data)} recorded")
        chunk = self.data[self.position:self.position + n]
        self.position += n
        return chunk


class RejectingRandomness:
    """A client's stream in which the Shamir coefficient words at ``positions`` are replaced by
    words that mask to p, followed by the given re-draw words (spec section 7, step 2)."""

    def __init__(self, inner, coefficient_bytes: int, positions: dict[int, int], redraws: list[list[int]]) -> None:
        self.inner, self.coefficient_bytes = inner, coefficient_bytes
        self.positions, self.redraws = positions, [list(r) for r in redraws]
        self.done = False

    def random_bytes(self, n: int) -> bytes:
        if not self.done and n == self.coefficient_bytes:
            self.done = True
            words = bytearray(self.inner.random_bytes(n))
            for position, word in self.positions.items():
                words[4 * position:4 * position + 4] = word.to_bytes(4, "little")
            return bytes(words)
        if self.done and self.redraws and n == 4 * len(self.redraws[0]):
            return b"".join(w.to_bytes(4, "little") for w in self.redraws.pop(0))
        return self.inner.random_bytes(n)


def _hex(data: bytes) -> str:
    return bytes(data).hex()


def u32(value: int) -> bytes:
    return int(value).to_bytes(4, "little")


def _identity(seed_hex: str) -> IdentityKey:
    return IdentityKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)))


def _fresh_key(label: bytes) -> bytes:
    return AgreementKey.generate(TestOnlySeededRandomness(b"vectors/fresh-key/" + label)).public_bytes


def _other_encoding(key: bytes) -> bytes:
    """The same X25519 key plus the point of order 2 (u -> 1/u): another canonical encoding that
    agrees alike with every clamped scalar."""
    u = int.from_bytes(key, "little")
    return pow(u, P25519 - 2, P25519).to_bytes(32, "little")


# ------------------------------------------------------------------------------ primitives

def kdf_vectors() -> dict:
    rng = TestOnlySeededRandomness(b"kdf")
    cases = []
    for label, context, length in [(b"pairwise-mask", SID + bytes(8), 32), (b"share-bundle", SID + bytes(4) + b"\x01\x00\x00\x00", 64),
                                   (b"example", b"", 32), (b"x", b"", 16)]:
        ikm = rng.random_bytes(32)
        cases.append({"ikm": _hex(ikm), "label": label.decode(), "context": _hex(context), "length": length,
                      "okm": _hex(hkdf(ikm, label, context, length))})
    return {"description": "HKDF-SHA256, empty salt, info = 'secagg/v2/' || label || 0x00 || context", "cases": cases}


def prg_vectors() -> dict:
    rng = TestOnlySeededRandomness(b"prg")
    cases = []
    for bits, count in [(1, 16), (8, 16), (16, 16), (31, 12), (32, 12), (33, 8), (48, 8), (63, 8), (64, 8), (32, 1000)]:
        seed = rng.random_bytes(32)
        values = expand(seed, count, Ring(bits))
        cases.append({"seed": _hex(seed), "modulus_bits": bits, "count": count,
                      "keystream_prefix": _hex(keystream(seed, 64)),
                      "elements": [str(int(v)) for v in values]})
    return {"description": "PRG(seed, m, k): AES-256-CTR key stream, zero IV, LE u32 (k<=32) or u64 words mod 2^k; "
                           "elements as decimal strings", "cases": cases}


def _shamir_case(threshold, holders, secrets, source, rejections=None) -> dict:
    limbs = shamir.secrets_to_limbs(secrets).ravel()
    x = np.array(holders) + 1
    recording = RecordingRandomness(source)
    shares = shamir.share(limbs, threshold, x, recording)
    subset = list(range(len(holders) - threshold, len(holders)))
    rebuilt = shamir.reconstruct(x[subset][None], shares[subset][None])[0]
    case = {
        "secrets": [_hex(s) for s in secrets], "limbs": [int(v) for v in limbs], "threshold": threshold,
        "holders": holders, "coefficient_randomness": _hex(recording.log),
        "shares": {str(h): [int(v) for v in row] for h, row in zip(holders, shares)},
        "reconstruct_from": [holders[i] for i in subset],
        "lagrange_at_zero": [int(v) for v in shamir.lagrange_at_zero(x[subset][None])[0]],
        "reconstructed_secrets": [_hex(s) for s in shamir.limbs_to_secrets(rebuilt.reshape(2, -1))],
    }
    if rejections is not None:
        case["rejections"] = rejections
    return case


def shamir_vectors() -> dict:
    cases = []
    for threshold, holders in [(1, [0, 1, 2]), (2, [0, 1, 2]), (3, [0, 2, 5, 7, 9]), (5, list(range(8)))]:
        rng = TestOnlySeededRandomness(b"shamir/%d" % threshold)
        secrets = [rng.random_bytes(32), rng.random_bytes(32)]
        cases.append(_shamir_case(threshold, holders, secrets, rng))
    # Rejections (rule G2): the first read is (t-1) * 18 words; the words at positions 4 and 20
    # mask to p, so one fresh word is read for each, in position order; position 4's fresh word
    # masks to p again, so one more word is read for it alone.
    rng = TestOnlySeededRandomness(b"shamir/rejections")
    secrets = [rng.random_bytes(32), rng.random_bytes(32)]
    words = [int.from_bytes(rng.random_bytes(4), "little") for _ in range(36)]
    words[4], words[20] = 0x7FFFFFFF, 0xFFFFFFFF
    stream = words + [0xFFFFFFFF, 0x12345678] + [0x0BADCAFE]
    cases.append(_shamir_case(3, [0, 1, 3, 6], secrets, WordSource(b"".join(u32(w) for w in stream)), {
        "first_read_positions_equal_to_p": [4, 20], "second_read": "positions 4 and 20: 0xffffffff (p again), "
        "0x12345678", "third_read": "position 4: 0x0badcafe"}))
    return {"description": f"Shamir over GF({FIELD_PRIME}); holder v evaluates at x = v + 1; 18 limbs = 9 of the "
                           "first secret then 9 of the second; coefficient words masked with 0x7fffffff, a word "
                           "equal to p re-drawn after the whole read (spec section 7)", "cases": cases}


def holder_vectors() -> dict:
    cases = []
    for client, n, k in [(0, 5, 1), (2, 5, 2), (2, 5, 3), (7, 20, 6), (0, 1000, 40), (999, 1000, 72)]:
        rng = RecordingRandomness(TestOnlySeededRandomness(b"holders/%d/%d/%d" % (client, n, k)))
        holders = draw_holders(client, n, k, rng)
        cases.append({"client": client, "num_clients": n, "holders_to_draw": k, "randomness": _hex(rng.log),
                      "holders": [int(v) for v in holders]})
    words = WordSource(b"".join(u32(w) for w in [6, 2**32 - 1, 4]))  # 2^32 - 1 is rejected for 3 candidates
    cases.append({"client": 2, "num_clients": 5, "holders_to_draw": 2, "randomness": _hex(words.data),
                  "holders": [int(v) for v in draw_holders(2, 5, 2, words)]})
    return {"description": "SecAgg+ holder draws: partial Fisher-Yates over the other ids in increasing order, "
                           "one u32 LE word per swap, rejected if >= 2^32 - (2^32 mod remaining)", "cases": cases}


def transcript_tree_vectors() -> dict:
    cases = []
    for size in (1, 2, 3, 5, 8, 13):
        leaves_data = [bytes([i]) * 40 for i in range(size)]  # stand-ins for AdvertiseKeys messages
        leaves = [derivation.transcript_leaf(data) for data in leaves_data]
        tree = derivation.TranscriptTree(leaves)
        cases.append({"advertise_keys": [_hex(d) for d in leaves_data], "leaves": [_hex(h) for h in leaves],
                      "root": _hex(tree.root),
                      "audit_paths": [[_hex(h) for h in tree.transcript(i).path] for i in range(size)]})
    return {"description": "transcript tree: leaf = SHA-256(0x00 || 'secagg/v2/transcript-leaf' || 0x00 || message), "
                           "node = SHA-256(0x01 || left || right), RFC 6962 shape", "cases": cases}


# ------------------------------------------------------------------------------ codec

def _valid_messages() -> list[msg.Message]:
    keys = [bytes([i]) * 32 for i in range(1, 7)]
    sig = bytes(range(64))
    sealed = np.arange(2 * msg.SEALED_SHARES_BYTES, dtype=np.uint8).reshape(2, -1) % 251
    path = msg.Transcript(bytes([9]) * 32, 1, 3, (bytes([7]) * 32, bytes([8]) * 32))
    return [
        msg.AdvertiseKeys(SID, 3, keys[0], keys[1]),
        msg.AdvertiseKeys(SID, 3, keys[0], keys[1], [0, 5], sig),
        msg.KeyDirectory(SID, 1, (msg.KeyEntry(0, keys[0], keys[1]), msg.KeyEntry(1, keys[2], keys[3])), path),
        msg.KeyDirectory(SID, 1, (msg.KeyEntry(1, keys[2], keys[3], [0, 2], sig),), msg.Transcript(bytes(32), 0, 1, ())),
        msg.ShareKeys(SID, 2, bytes(range(32)), [0, 4], sealed),
        msg.ShareBundles(SID, 2, [1, 3], sealed, [0, 4]),
        msg.MaskedInput(SID, 0, 5, np.array([0, 1, 31], dtype=np.uint32)),
        msg.MaskedInput(SID, 0, 64, np.array([2**64 - 1, 7], dtype=np.uint64), [1, 6]),
        msg.ConsistencyRequest(SID, 4, [0, 2, 3]),
        msg.ConsistencySignature(SID, 4, sig),
        msg.UnmaskRequest(SID, 4, [0, 2, 3]),
        msg.UnmaskRequest(SID, 4, [0, 2, 3], ((0, sig), (3, sig))),
        msg.UnmaskingShares(SID, 2, [0, 3], np.arange(18, dtype=np.uint32).reshape(2, 9), [1],
                            np.full((1, 9), 2**31 - 2, dtype=np.uint32)),
        msg.AbortNotice(SID, 1, "too few clients: 2 < 3"),
    ]


def _header(kind: int, party: int, version: int = 2) -> bytes:
    return b"SAGG" + bytes([version, kind]) + SID + u32(party)


def _entry(client: int, c_pk: bytes, s_pk: bytes, holders=()) -> bytes:
    return u32(client) + c_pk + s_pk + u32(len(holders)) + b"".join(u32(h) for h in holders)


def _invalid(valid: dict[str, bytes]) -> list[tuple[str, str, bytes]]:
    """(rule, why, bytes): each case breaks exactly the one codec rule of spec section 6 it names."""
    adv = valid["AdvertiseKeys"]
    header = adv[:26]
    k1, k2 = bytes([1]) * 32, bytes([2]) * 32
    sig = bytes(range(64))
    no_path = bytes(32) + u32(0) + u32(1) + b"\x00"
    limbs = b"".join(u32(i) for i in range(9))
    return [
        ("M1", "empty", b""),
        ("M1", "truncated header", adv[:25]),
        ("M1", "bad magic", b"SAGX" + adv[4:]),
        ("M2", "unsupported version (1)", adv[:4] + b"\x01" + adv[5:]),
        ("M2", "unsupported version (3)", adv[:4] + b"\x03" + adv[5:]),
        ("M3", "unknown type 11", adv[:5] + b"\x0b" + adv[6:]),
        ("M3", "unknown type 0", adv[:5] + b"\x00" + adv[6:]),
        ("M3", "unknown type 11 with the body of a valid AbortNotice", _header(11, 1) + (2).to_bytes(2, "little")
         + b"ok"),
        ("M4", "truncated body", adv[:-1]),
        ("M4", "count beyond length", _header(6, 4) + u32(1000)),
        ("M4", "a signed key directory entry without its signature", _header(2, 1) + b"\x01" + u32(1)
         + _entry(0, k1, k2) + bytes(64 - 1)),
        ("M5", "trailing byte", adv + b"\x00"),
        ("M6", "signature flag 2", adv[:-1] + b"\x02"),
        ("M6", "key directory signed flag 2", _header(2, 1) + b"\x02" + u32(1) + _entry(1, k1, k2) + sig + no_path),
        ("M7", "survivors not increasing", _header(6, 4) + u32(2) + u32(3) + u32(3)),
        ("M7", "holders not increasing", header + adv[26:90] + u32(2) + u32(4) + u32(4) + b"\x00"),
        ("M7", "key directory entries out of order", _header(2, 1) + b"\x00" + u32(2) + _entry(1, k1, k2)
         + _entry(0, bytes([3]) * 32, bytes([4]) * 32) + bytes(32) + u32(1) + u32(2) + b"\x01" + bytes(32)),
        ("M7", "consistency signers out of order", _header(8, 4) + u32(2) + u32(0) + u32(3) + u32(2)
         + u32(3) + sig + u32(0) + sig),
        ("M7", "a recipient twice in ShareKeys", _header(3, 2) + bytes(32) + u32(2) + u32(4) + bytes(96)
         + u32(4) + bytes(96)),
        ("M8", "non-canonical X25519 key (u >= 2^255 - 19)", header + (2**255 - 19).to_bytes(32, "little") + adv[58:]),
        ("M8", "non-canonical X25519 key (top bit set)", header + adv[26:57] + bytes([adv[57] | 0x80]) + adv[58:]),
        ("M9", "AdvertiseKeys holders list the sender itself", header + adv[26:90] + u32(1) + u32(3) + b"\x00"),
        ("M9", "a key directory entry whose holders list itself", _header(2, 1) + b"\x00" + u32(1)
         + _entry(1, k1, k2, [0, 1]) + no_path),
        ("M10", "audit path of the wrong length", _header(2, 1) + b"\x00" + u32(0) + bytes(32) + u32(0) + u32(1)
         + b"\x01" + bytes(32)),
        ("M10", "leaf index outside the tree", _header(2, 1) + b"\x00" + u32(0) + bytes(32) + u32(3) + u32(2)
         + b"\x01" + bytes(32)),
        ("M11", "empty key directory flagged as signed", _header(2, 1) + b"\x01" + u32(0) + no_path),
        ("M12", "modulus_bits 0", _header(5, 0) + b"\x00" + u32(0) + u32(0)),
        ("M12", "modulus_bits 65", _header(5, 0) + b"\x41" + u32(0) + u32(0)),
        ("M12", "masked value >= 2^k", _header(5, 0) + b"\x03" + u32(1) + u32(8) + u32(0)),
        ("M13", "share limb = p", _header(9, 2) + u32(1) + u32(0) + u32(FIELD_PRIME) * 9 + u32(0)),
        ("M13", "an owner among both self-mask and mask-key shares", _header(9, 2) + u32(1) + u32(0) + limbs + u32(1)
         + u32(0) + limbs),
        ("M14", "abort reason not UTF-8", _header(10, 1) + (2).to_bytes(2, "little") + b"\xff\xfe"),
        ("M14", "abort reason of 1025 bytes", _header(10, 1) + (1025).to_bytes(2, "little") + b"a" * 1025),
    ]


def codec_vectors() -> dict:
    valid = []
    first: dict[str, bytes] = {}
    for m in _valid_messages():
        data = m.encode()
        first.setdefault(type(m).__name__, data)
        valid.append({"type": type(m).__name__, "type_code": int(m.TYPE), "party": m.party, "encoding": _hex(data)})
    invalid = []
    for rule, why, data in _invalid(first):
        try:
            msg.decode_message(data)
        except MalformedMessage:
            invalid.append({"rule": rule, "why": why, "encoding": _hex(data)})
            continue
        raise AssertionError(f"codec vector {why!r} decodes")
    return {"description": "valid: decoding then re-encoding returns the same bytes; invalid: MalformedMessage "
                           "(each case breaks the one rule of spec section 6 it names)", "valid": valid,
            "invalid": invalid}


# ------------------------------------------------------------------------------ transcripts

@dataclass(frozen=True)
class Spec:
    """One recorded session. ``drops``: round -> clients that vanish before sending that round's
    message; ``tampers``: round -> {client: how its message is altered}; ``driver_abort``: the
    round in which the driver aborts instead of closing it; ``rejections``: client -> (positions
    of its first Shamir coefficient read set to words equal to p, the words of each re-draw)."""

    name: str
    n: int
    t: int
    m: int
    k: int
    neighbors: int | None = None
    malicious: bool = False
    drops: dict = field(default_factory=dict)
    tampers: dict = field(default_factory=dict)
    driver_abort: str | None = None
    rejections: dict = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    about: str = ""


TRANSCRIPTS = [
    Spec("complete-no-dropout", 4, 3, 6, 16, rules=("R1",),
         about="every round closes by itself when its last expected message arrives"),
    Spec("complete-drop-share-keys", 5, 3, 4, 32, drops={"share_keys": [1]}),
    Spec("complete-drop-masked-input", 5, 3, 4, 32, drops={"masked_input": [2]}, rules=("C30", "R7"),
         about="the mask-key share of the dropped client is revealed and its pairwise masks removed"),
    Spec("complete-drop-unmasking", 5, 3, 4, 64, drops={"unmasking": [4]}),
    Spec("complete-drops-every-round", 7, 2, 3, 40,
         drops={"advertise_keys": [0], "share_keys": [3], "masked_input": [5], "unmasking": [6]}),
    Spec("malicious-drops-every-round", 12, 6, 3, 12, malicious=True,
         drops={"advertise_keys": [11], "share_keys": [0], "masked_input": [1], "consistency_check": [2],
                "unmasking": [3]}),
    Spec("malicious-abort-at-unmasking", 11, 6, 3, 12, malicious=True,
         drops={"advertise_keys": [10], "share_keys": [0], "masked_input": [1], "consistency_check": [2],
                "unmasking": [3]}, rules=("R7", "R9"), about="too few self-mask shares arrive: abort, with notices"),
    Spec("secagg-plus-k6", 20, 3, 5, 20, 6, drops={"masked_input": [3], "unmasking": [6]}),
    Spec("secagg-plus-odd-k5-pruning", 20, 3, 3, 16, 5,
         drops={"advertise_keys": [0, 11, 14], "share_keys": [13]},
         rules=("G1", "R2", "R3", "R4"), about="odd K; pruning cascades when rounds 0 and 1 close (see left_out)"),
    Spec("malicious-secagg-plus", 16, 5, 3, 16, 9, malicious=True,
         drops={"advertise_keys": [13], "share_keys": [4], "masked_input": [8], "consistency_check": [0],
                "unmasking": [1]}, about="malicious mode over SecAgg+ (odd K), a drop before every round"),
    Spec("malicious-secagg-plus-signer-left-out", 16, 5, 3, 16, 9, malicious=True,
         drops={"advertise_keys": [13], "share_keys": [4], "masked_input": [8], "consistency_check": [0, 2]},
         rules=("R6", "R7", "R9"), about="a signer with fewer than t signing holders is not asked to unmask (see "
         "left_out); its own self-mask then lacks t shares: abort at unmasking"),
    Spec("abort-advertise-keys", 4, 2, 2, 8, drops={"advertise_keys": [1, 2]}, rules=("R3", "R9"),
         about="two keys arrive, each client keeps 1 holder < t: abort at round 0"),
    Spec("abort-share-keys", 4, 2, 2, 8, drops={"share_keys": [1, 2]}, rules=("R4", "R9"),
         about="two clients share keys, each keeps 1 holder < t: abort at round 1"),
    Spec("abort-masked-input-none", 4, 2, 2, 8, drops={"masked_input": [0, 1, 2, 3]}, rules=("R5", "R9"),
         about="no masked input arrives"),
    Spec("abort-below-threshold", 4, 3, 2, 8, drops={"masked_input": [0, 1]}, rules=("R5", "R9")),
    Spec("abort-one-holder-short", 5, 3, 2, 8, drops={"masked_input": [0, 1]}, rules=("R5", "R9"),
         about="every survivor keeps t - 1 = 2 survivors holding its shares: abort, at the boundary"),
    Spec("malicious-abort-at-consistency", 7, 4, 2, 8, malicious=True, drops={"consistency_check": [0, 1, 2]},
         rules=("R6", "R9"), about="no signer has t signing holders"),
    Spec("complete-driver-abort", 5, 3, 2, 8, drops={"share_keys": [4]}, driver_abort="share_keys",
         rules=("R9",), about="the driver aborts the share-keys round instead of closing it"),
    Spec("complete-shamir-rejection", 4, 3, 3, 16, rejections={2: ({5: 0x7FFFFFFF, 30: 0xFFFFFFFF},
                                                                      [[0xFFFFFFFF, 0x00C0FFEE], [0x00ABCDEF]])},
         rules=("G2",), about="client 2's coefficient words at positions 5 and 30 equal p; position 5's re-draw too"),
    Spec("complete-bad-bundle-reported", 5, 2, 3, 16, tampers={"share_keys": {1: "corrupt-first-bundle"}},
         rules=("C18", "R8")),
    Spec("complete-bad-bundles-limb-and-names", 6, 2, 3, 16,
         tampers={"share_keys": {1: "reseal-limb-p:2+reseal-names:3"}}, rules=("C19", "C20", "R8"),
         about="client 1 seals a limb = p for client 2 and names client 4 as receiver in client 3's bundle"),
    Spec("abort-dropped-client-short", 5, 3, 2, 8, drops={"masked_input": [1]},
         tampers={"share_keys": {1: "corrupt-bundles:0,2,3"}}, rules=("R5", "R9"),
         about="3 of client 1's 4 bundles are reported, then it drops: its mask key has 1 valid holder < t"),
    Spec("complete-wrong-share-corrected", 6, 3, 3, 16, tampers={"unmasking": {0: "shift-first-share"}}, rules=("R7",)),
    Spec("complete-wrong-mask-key-share-corrected", 6, 3, 3, 16, drops={"masked_input": [5]},
         tampers={"unmasking": {0: "shift-share:mask-key:5"}}, rules=("R7",),
         about="a wrong mask-key share fails the public-key check and is corrected"),
    Spec("complete-wrong-share-unused", 6, 3, 3, 16, tampers={"unmasking": {5: "shift-share:self-mask:0"}},
         rules=("R7",), about="the wrong share is not among the t lowest holders: unused, not reported"),
    Spec("complete-two-liars", 6, 3, 3, 16,
         tampers={"unmasking": {1: "shift-share:self-mask:0+shift-share:self-mask:2", 3: "shift-share:self-mask:2"}},
         rules=("R7",), about="holder 1, found lying on owner 0, is left out of owner 2, where holder 3 is then found"),
    Spec("abort-wrong-shares-beyond-correction", 5, 3, 2, 8,
         tampers={"unmasking": {1: "shift-share:self-mask:0", 3: "shift-share:self-mask:0"}}, rules=("R7", "R9"),
         about="two wrong shares of 4 with t = 3: beyond correction, abort"),
]


def _reseal(client: ClientSession, directory: bytes, reply: bytes, recipient: int, change) -> bytes:
    """Re-seal client's bundle for ``recipient`` with a changed plaintext (a cheating client)."""
    share_keys = msg.decode_message(reply)
    entries = {e.client_id: e for e in msg.decode_message(directory).entries}
    u = client.client_id
    secret = client._cipher_key.exchange(entries[recipient].cipher_public_key)  # noqa: SLF001 - the cheater's own key
    key = derivation.share_bundle_keys(secret, SID, u, recipient)[0]
    ad = derivation.share_bundle_associated_data(SID, u, recipient)
    row = list(share_keys.peers).index(recipient)
    plaintext = bytearray(open_sealed(key, share_keys.ciphertexts[row].tobytes(), ad))
    change(plaintext)
    table = share_keys.ciphertexts.copy()
    table[row] = np.frombuffer(seal(key, bytes(plaintext), ad), dtype=np.uint8)
    return msg.ShareKeys(SID, u, share_keys.self_mask_commitment, share_keys.peers, table).encode()


def _shift_share(reply: bytes, kind: str, owner: int) -> bytes:
    shares = msg.decode_message(reply)
    b_owners, b_shares = shares.self_mask_owners, shares.self_mask_shares.copy()
    s_owners, s_shares = shares.mask_key_owners, shares.mask_key_shares.copy()
    owners, table = (b_owners, b_shares) if kind == "self-mask" else (s_owners, s_shares)
    row = list(owners).index(owner)  # a middle limb: X25519 clamping ignores changes to the lowest bits
    table[row, 4] = (int(table[row, 4]) + 1) % FIELD_PRIME
    return msg.UnmaskingShares(SID, shares.sender, b_owners, b_shares, s_owners, s_shares).encode()


def _tamper(how: str, reply: bytes, client: ClientSession, received: bytes | None) -> bytes:
    """Apply each '+'-separated alteration of ``how`` to a cheating client's honest reply."""
    for part in how.split("+"):
        kind, _, arg = part.partition(":")
        if kind == "corrupt-first-bundle":  # header, commitment, count, (recipient, 96-byte bundle)...
            raw = bytearray(reply)
            raw[26 + 32 + 4 + 4 + 95] ^= 0x01
            reply = bytes(raw)
        elif kind == "corrupt-bundles":
            share_keys = msg.decode_message(reply)
            table = share_keys.ciphertexts.copy()
            for recipient in [int(r) for r in arg.split(",")]:
                table[list(share_keys.peers).index(recipient), 40] ^= 0x80
            reply = msg.ShareKeys(SID, share_keys.sender, share_keys.self_mask_commitment, share_keys.peers,
                                  table).encode()
        elif kind == "reseal-limb-p":
            def limb_p(plaintext):
                plaintext[8 + 4 * 3:8 + 4 * 4] = u32(FIELD_PRIME)
            reply = _reseal(client, received, reply, int(arg), limb_p)
        elif kind == "reseal-names":
            def other_receiver(plaintext):
                plaintext[4:8] = u32(int.from_bytes(plaintext[4:8], "little") + 1)
            reply = _reseal(client, received, reply, int(arg), other_receiver)
        elif kind == "shift-first-share":  # UnmaskingShares: header, count, (owner, 9 limbs)...: limb + 1 mod p
            raw = bytearray(reply)
            offset = 26 + 4 + 4
            limb = int.from_bytes(raw[offset:offset + 4], "little")
            raw[offset:offset + 4] = u32((limb + 1) % FIELD_PRIME)
            reply = bytes(raw)
        elif kind == "shift-share":
            share_kind, owner = arg.split(":")
            reply = _shift_share(reply, share_kind, int(owner))
        else:  # pragma: no cover - the table above names every kind
            raise ValueError(how)
    return reply


def _config(spec: Spec) -> SecAggConfig:
    return SecAggConfig(num_clients=spec.n, threshold=spec.t, vector_length=spec.m, modulus_bits=spec.k,
                        neighbors=spec.neighbors, malicious=spec.malicious)


def run_transcript(spec: Spec) -> dict:
    config = _config(spec)
    n, name = spec.n, spec.name
    root = TestOnlySeededRandomness(name.encode())
    ring = config.ring
    gen = np.random.default_rng(list(name.encode()))
    inputs = [[int(v) & ring.mask for v in gen.integers(0, 2**63, size=spec.m, dtype=np.uint64) * 2 + 1]
              for _ in range(n)]
    identities = verify_keys = None
    identity_seeds = {}
    if spec.malicious:
        identity_seeds = {u: root.child(b"identity/%d" % u).random_bytes(32) for u in range(n)}
        identities = {u: IdentityKey(Ed25519PrivateKey.from_private_bytes(s)) for u, s in identity_seeds.items()}
        verify_keys = {u: key.public_bytes for u, key in identities.items()}
    sources = {u: root.child(b"client/%d" % u) for u in range(n)}
    for u, (positions, redraws) in spec.rejections.items():
        sources[u] = RejectingRandomness(sources[u], 4 * (spec.t - 1) * 2 * shamir.LIMBS_PER_SECRET, positions,
                                         redraws)
    rngs = {u: RecordingRandomness(sources[u]) for u in range(n)}
    server = ServerSession(config, SID, verify_keys=verify_keys)
    clients = {u: ClientSession(config, u, SID, inputs[u], rng=rngs[u],
                                identity=identities[u] if identities else None, verify_keys=verify_keys)
               for u in range(n)}
    rounds = [r.value for r in Round if spec.malicious or r is not Round.CONSISTENCY_CHECK]
    log: list[dict] = []
    inbox: dict[int, bytes] = {}
    left_out: dict[str, list[int]] = {}
    outcome: dict = {}
    round_name = rounds[0]
    try:
        for round_name in rounds:
            gone = set(spec.drops.get(round_name, []))
            senders = range(n) if round_name == "advertise_keys" else sorted(inbox)
            accepted = []
            for u in senders:
                if round_name != "advertise_keys":
                    log.append({"round": round_name, "to": u, "message": _hex(inbox[u])})
                if u in gone:
                    continue
                reply = clients[u].start() if round_name == "advertise_keys" else clients[u].handle(inbox[u])
                entry = {"round": round_name, "from": u, "message": _hex(reply)}
                how = spec.tampers.get(round_name, {}).get(u)
                if how is not None:
                    reply = _tamper(how, reply, clients[u], inbox.get(u))
                    entry.update(message=_hex(reply), tampered=how)
                log.append(entry)
                accepted.append(u)
                out = server.receive(u, reply)
                if out:
                    inbox = out
            if server.state is ServerState(round_name):
                if spec.driver_abort == round_name:
                    reason = f"the driver gave up on round {round_name}"
                    log.append({"round": round_name, "driver": "abort", "reason": reason})
                    server.abort(reason)
                    raise AbortError(reason, round=round_name)
                log.append({"round": round_name, "driver": "close_round"})
                inbox = server.close_round()
            if round_name != rounds[-1]:
                left_out[round_name] = sorted(set(accepted) - set(inbox))
        result = server.result
        outcome = {"survivors": result.survivors, "aggregate": [str(int(v)) for v in result.aggregate],
                   "reports": [list(p) for p in result.reports], "misbehaving": sorted(result.misbehaving)}
        expected = ring.sum([ring.element(inputs[u]) for u in result.survivors])
        if not np.array_equal(expected, result.aggregate):
            raise AssertionError(f"{name}: aggregate differs from the plaintext sum")
    except AbortError as exc:
        outcome = {"abort_round": exc.round or round_name}
        for u, notice in sorted(server.abort_notices.items()):
            if clients[u].state is not ClientState.READY:  # a client that never started has no session
                try:
                    clients[u].handle(notice)
                except AbortError:
                    pass
                else:  # pragma: no cover - the reference takes every notice
                    raise AssertionError(f"{name}: client {u} did not take its AbortNotice") from None
            log.append({"round": outcome["abort_round"], "to": u, "message": _hex(notice), "abort_notice": True})
    if "abort_round" in outcome and not any(e.get("abort_notice") for e in log):
        raise AssertionError(f"{name}: an abort without notices")
    for rule in spec.rules:
        if rule == "R2" and not any(left_out.get(r) for r in ("advertise_keys", "share_keys")):
            raise AssertionError(f"{name}: no client was pruned")
        if rule == "R6" and "left-out" in spec.name and not left_out.get("consistency_check"):
            raise AssertionError(f"{name}: every signer was asked")
    return {
        "name": name,
        "about": spec.about,
        "rules": list(spec.rules),
        "config": {"num_clients": n, "threshold": spec.t, "vector_length": spec.m, "modulus_bits": spec.k,
                   "neighbors": spec.neighbors, "malicious": spec.malicious},
        "session_id": _hex(SID),
        "inputs": [[str(v) for v in row] for row in inputs],
        "drops": spec.drops,
        "identity_keys": {str(u): _hex(s) for u, s in identity_seeds.items()},
        "client_randomness": {str(u): _hex(r.log) for u, r in rngs.items()},
        "messages": log,
        "left_out": left_out,
        "outcome": outcome,
    }


# ------------------------------------------------------------------------------ refusal cases

class Recorded:
    """A generated transcript, replayed through secagg to build (and check) the refusal cases."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.name = data["name"]
        self.config = SecAggConfig(**data["config"])
        self.n = self.config.num_clients

    def entries(self, u: int) -> list[dict]:
        return [e for e in self.data["messages"] if e.get("from", e.get("to")) == u]

    def sent(self, round_name: str) -> dict[int, bytes]:
        return {e["from"]: bytes.fromhex(e["message"]) for e in self.data["messages"]
                if e["round"] == round_name and "from" in e}

    def to(self, round_name: str) -> dict[int, bytes]:
        return {e["to"]: bytes.fromhex(e["message"]) for e in self.data["messages"]
                if e["round"] == round_name and "to" in e and not e.get("abort_notice")}

    def decoded_to(self, round_name: str, u: int):
        return msg.decode_message(self.to(round_name)[u])

    def decoded_sent(self, round_name: str, u: int):
        return msg.decode_message(self.sent(round_name)[u])

    def identity(self, u: int) -> IdentityKey:
        return _identity(self.data["identity_keys"][str(u)])

    def cipher_private(self, u: int) -> AgreementKey:
        """Client u's cipher key: the first 32 bytes of its recorded randomness (spec section 7)."""
        return AgreementKey.from_private_bytes(bytes.fromhex(self.data["client_randomness"][str(u)])[:32])

    def verify_keys(self):
        if not self.config.malicious:
            return None
        return {u: self.identity(u).public_bytes for u in range(self.n)}

    def new_client(self, u: int) -> ClientSession:
        seed = self.data["identity_keys"].get(str(u))
        return ClientSession(self.config, u, SID, [int(v) for v in self.data["inputs"][u]],
                             rng=WordSource(bytes.fromhex(self.data["client_randomness"][str(u)])),
                             identity=_identity(seed) if seed else None, verify_keys=self.verify_keys())

    def advance(self, u: int, round_name: str, at: str):
        """Client u fed the transcript up to the server's message of ``round_name`` (at="before"),
        or through everything it handles in that round (at="after"); returns (client, the round's
        message to u, u's recorded reply to it)."""
        client = self.new_client(u)
        pending = None
        entries = self.entries(u)
        for i, e in enumerate(entries):
            data = bytes.fromhex(e["message"])
            if e["round"] == round_name and "to" in e and at == "before":
                replies = [bytes.fromhex(x["message"]) for x in entries[i + 1:] if x["round"] == round_name
                           and "from" in x]
                return client, data, (replies[0] if replies else None)
            if e.get("abort_notice"):
                try:
                    client.handle(data)
                except AbortError:
                    pass
            elif "to" in e:
                pending = data
            else:
                reply = client.start() if e["round"] == "advertise_keys" else client.handle(pending)
                assert "tampered" in e or reply == data, (self.name, u, e["round"])
            if at == "after" and e["round"] == round_name and (i + 1 == len(entries)
                                                                or entries[i + 1]["round"] != round_name):
                return client, pending, None
        raise AssertionError(f"{self.name}: client {u} never reaches {round_name} ({at})")

    def drive_server(self, inject=None):
        """Replay the transcript to a fresh server; ``inject(server, round, delivered)`` runs before
        each client message (and before each driver action). Returns the outcome as recorded."""
        server = ServerSession(self.config, SID, verify_keys=self.verify_keys())
        delivered: dict[str, int] = {}
        try:
            for e in self.data["messages"]:
                if "from" in e or "driver" in e:
                    if inject is not None:
                        inject(server, e["round"], delivered.get(e["round"], 0))
                if "from" in e:
                    server.receive(e["from"], bytes.fromhex(e["message"]))
                    delivered[e["round"]] = delivered.get(e["round"], 0) + 1
                elif e.get("driver") == "close_round":
                    server.close_round()
                elif e.get("driver") == "abort":
                    server.abort(e["reason"])
                    return {"abort_round": e["round"]}
        except AbortError as exc:
            return {"abort_round": exc.round}
        result = server.result
        return {"survivors": result.survivors, "aggregate": [str(int(v)) for v in result.aggregate],
                "reports": [list(p) for p in result.reports], "misbehaving": sorted(result.misbehaving)}


def _kind(error: BaseException) -> str:
    if isinstance(error, MalformedMessage):
        return "malformed"
    if isinstance(error, ProtocolViolation):
        return "violation"
    if isinstance(error, AbortError):
        return "abort"
    raise error


def _directory(entries, base: msg.KeyDirectory, recipient: int | None = None, session_id: bytes = SID) -> bytes:
    ordered = tuple(sorted(entries, key=lambda e: e.client_id))
    return msg.KeyDirectory(session_id, base.recipient if recipient is None else recipient, ordered,
                            base.transcript).encode()


def _replace_entry(directory: msg.KeyDirectory, client: int, **changes) -> tuple:
    return tuple(dataclasses.replace(e, **changes) if e.client_id == client else e for e in directory.entries)


def _reseal_bundle(rec: Recorded, sender: int, recipient: int, change) -> np.ndarray:
    """The bundle ``sender`` sealed to ``recipient`` (from the transcript), re-sealed with a changed
    plaintext under the right key and associated data: a cheating sender."""
    directory = rec.decoded_to("share_keys", sender)
    c_pk = {e.client_id: e for e in directory.entries}[recipient].cipher_public_key
    key = derivation.share_bundle_keys(rec.cipher_private(sender).exchange(c_pk), SID, sender, recipient)[0]
    ad = derivation.share_bundle_associated_data(SID, sender, recipient)
    share_keys = rec.decoded_sent("share_keys", sender)
    row = list(share_keys.peers).index(recipient)
    plaintext = bytearray(open_sealed(key, share_keys.ciphertexts[row].tobytes(), ad))
    change(plaintext)
    return np.frombuffer(seal(key, bytes(plaintext), ad), dtype=np.uint8)


def _sign_survivors(rec: Recorded, signers, survivors) -> tuple:
    root = rec.decoded_to("share_keys", int(survivors[0])).transcript.root
    payload = derivation.consistency_payload(SID, root, np.asarray(survivors))
    return tuple((int(s), rec.identity(int(s)).sign(payload)) for s in sorted(signers))


def _client_cases(recs: dict[str, Recorded]) -> list[dict]:
    HON, SD = recs["complete-drop-masked-input"], recs["complete-drop-share-keys"]
    DER, MAL = recs["complete-drops-every-round"], recs["malicious-drops-every-round"]
    SP, MSP = recs["secagg-plus-odd-k5-pruning"], recs["malicious-secagg-plus"]
    cases: list[dict] = []

    def case(rule, why, rec, u, round_name, at, data, expect="violation"):
        cases.append({"rule": rule, "why": why, "transcript": rec.name, "client": u, "round": round_name, "at": at,
                      "message": _hex(data), "expect": expect})

    def rejected(rule, why, rec, u, bundles: msg.ShareBundles, table):
        data = msg.ShareBundles(SID, u, bundles.peers, table, bundles.holders).encode()
        client, _, honest_reply = rec.advance(u, "masked_input", "before")
        reply = client.handle(data)
        got, honest = msg.decode_message(reply), msg.decode_message(honest_reply)
        assert np.array_equal(got.values, honest.values) and got.rejected.size == 1, why
        cases.append({"rule": rule, "why": why, "transcript": rec.name, "client": u, "round": "masked_input",
                      "at": "before", "message": _hex(data), "expect": "reply", "reply": _hex(reply)})

    d0 = HON.decoded_to("share_keys", 0)
    entries0 = {e.client_id: e for e in d0.entries}
    own_advert = HON.sent("advertise_keys")[0]
    case("C2", "the client's own AdvertiseKeys, echoed back (a client-to-server type)", HON, 0, "share_keys",
         "before", own_advert)
    case("C1", "the key directory of another session", HON, 0, "share_keys", "before",
         _directory(d0.entries, d0, session_id=OTHER_SID))
    case("C1", "client 0's key directory with recipient 1 in its header", HON, 0, "share_keys", "before",
         _directory(d0.entries, d0, recipient=1))
    case("C1", "the key directory addressed to client 1", HON, 0, "share_keys", "before", HON.to("share_keys")[1])
    case("C2", "an UnmaskRequest while awaiting the key directory", HON, 0, "share_keys", "before",
         HON.to("unmasking")[0])
    case("C2", "the key directory again while awaiting share bundles", HON, 0, "masked_input", "before",
         HON.to("share_keys")[0])
    case("C2", "the same UnmaskRequest after the client answered it", HON, 0, "unmasking", "after",
         HON.to("unmasking")[0])
    case("C3", "an AbortNotice while awaiting the key directory", HON, 0, "share_keys", "before",
         msg.AbortNotice(SID, 0, "the server gave up").encode(), "abort")
    case("C3", "an AbortNotice after the unmasking answer (the reconstruction failed)", HON, 0, "unmasking", "after",
         msg.AbortNotice(SID, 0, "too few shares").encode(), "abort")
    case("C4", "the client's own mask key replaced", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 0, mask_public_key=_fresh_key(b"c4")), d0))
    case("C4", "the client's own entry missing", HON, 0, "share_keys", "before",
         _directory([e for e in d0.entries if e.client_id != 0], d0))
    dm = MAL.decoded_to("share_keys", 4)
    case("C4", "the client's own signature replaced by another client's", MAL, 4, "share_keys", "before",
         _directory(_replace_entry(dm, 4, signature={e.client_id: e for e in dm.entries}[5].signature), dm))
    sp_u = min(SP.to("share_keys"))
    dsp = SP.decoded_to("share_keys", sp_u)
    own = {e.client_id: e for e in dsp.entries}[sp_u]
    swapped = sorted(set(own.holders.tolist()[1:]) | {next(v for v in range(SP.n) if v != sp_u
                                                           and v not in own.holders.tolist())})
    case("C4", "the client's own holder draw altered", SP, sp_u, "share_keys", "before",
         _directory(_replace_entry(dsp, sp_u, holders=swapped), dsp))
    t5 = d0.transcript
    case("C5", "a transcript root that the client's audit path does not reach", HON, 0, "share_keys", "before",
         msg.KeyDirectory(SID, 0, d0.entries, dataclasses.replace(t5, root=bytes([t5.root[0] ^ 1]) + t5.root[1:]))
         .encode())
    case("C5", "the audit path placed at another leaf index", HON, 0, "share_keys", "before",
         msg.KeyDirectory(SID, 0, d0.entries, dataclasses.replace(t5, leaf_index=1)).encode())
    case("C6", "an entry for id 7 with n = 5", HON, 0, "share_keys", "before",
         _directory([*d0.entries, msg.KeyEntry(7, _fresh_key(b"c6a"), _fresh_key(b"c6b"))], d0))
    case("C7", "an entry listing holders in the complete graph", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 3, holders=[0, 1]), d0))
    sp_entries = {e.client_id: e for e in dsp.entries}
    sp_owner = next(c for c, e in sp_entries.items() if c != sp_u and sp_u in e.holders.tolist())
    extra = next(v for v in range(SP.n) if v not in (sp_owner, *sp_entries[sp_owner].holders.tolist()))
    case("C8", "an owner's entry with K + 1 holders", SP, sp_u, "share_keys", "before",
         _directory(_replace_entry(dsp, sp_owner, holders=sorted([*sp_entries[sp_owner].holders.tolist(), extra])),
                    dsp))
    holders = sp_entries[sp_owner].holders.tolist()
    far = max(h for h in holders if h != sp_u)
    case("C9", "an owner's entry that drew holder id n + 2", SP, sp_u, "share_keys", "before",
         _directory(_replace_entry(dsp, sp_owner, holders=sorted([h for h in holders if h != far] + [SP.n + 2])), dsp))
    partners = set(sp_entries)
    stranger_entry = next(e for v, d in sorted(SP.to("share_keys").items()) for e in msg.decode_message(d).entries
                          if e.client_id not in partners and sp_u not in e.holders.tolist()
                          and e.client_id not in own.holders.tolist())
    case("C10", "an entry of a client that neither holds for the client nor drew it", SP, sp_u, "share_keys",
         "before", _directory([*dsp.entries, stranger_entry], dsp))
    case("C11", "one cipher key for clients 3 and 4", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 3, cipher_public_key=entries0[4].cipher_public_key), d0))
    case("C11", "client 3's mask key: client 4's cipher key in its other encoding (u -> 1/u)", HON, 0, "share_keys",
         "before",
         _directory(_replace_entry(d0, 3, mask_public_key=_other_encoding(entries0[4].cipher_public_key)), d0))
    case("C11", "client 3's mask key: the client's own cipher key", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 3, mask_public_key=entries0[0].cipher_public_key), d0))
    case("C12", "client 4's cipher key: u = 0 (low order)", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 4, cipher_public_key=bytes(32)), d0))
    case("C12", "client 4's mask key: a point of order 8", HON, 0, "share_keys", "before",
         _directory(_replace_entry(d0, 4, mask_public_key=ORDER_8_POINT), d0))
    case("C4", "a malicious-mode directory without signatures", MAL, 4, "share_keys", "before",
         _directory([dataclasses.replace(e, signature=None) for e in dm.entries], dm))
    dm_entries = {e.client_id: e for e in dm.entries}
    case("C13", "client 6's entry carrying client 7's signature", MAL, 4, "share_keys", "before",
         _directory(_replace_entry(dm, 6, signature=dm_entries[7].signature), dm))
    case("C4", "an honest-mode directory with signatures", HON, 0, "share_keys", "before",
         _directory([dataclasses.replace(e, signature=bytes(range(64))) for e in d0.entries], d0))
    case("C14", "a directory with 2 of the client's holders (t = 3)", HON, 0, "share_keys", "before",
         _directory([e for e in d0.entries if e.client_id not in (3, 4)], d0))
    u, kept = _few_holders_many_owners(SP)
    case("C14", "t - 1 holders and more owners listed: owners do not count", SP, u, "share_keys", "before",
         _directory(kept, SP.decoded_to("share_keys", u)))

    b0 = HON.decoded_to("masked_input", 0)
    b1 = DER.decoded_to("masked_input", 1)
    case("C15", "a live holder (client 0, which never advertised) the client did not seal to", DER, 1,
         "masked_input", "before", msg.ShareBundles(SID, 1, b1.peers, b1.ciphertexts,
                                                    np.union1d(b1.holders, [0])).encode())
    case("C16", "2 live holders (t = 3)", HON, 0, "masked_input", "before",
         msg.ShareBundles(SID, 0, b0.peers, b0.ciphertexts, [1, 2]).encode())
    case("C17", "a bundle from client 0, which never advertised", DER, 1, "masked_input", "before",
         msg.ShareBundles(SID, 1, np.append([0], b1.peers), np.vstack([b1.ciphertexts[:1], b1.ciphertexts]),
                          b1.holders).encode())
    row1 = list(b0.peers).index(1)
    flipped = b0.ciphertexts.copy()
    flipped[row1, 20] ^= 0x40
    rejected("C18", "client 1's bundle with one bit flipped: rejected and reported, masks unchanged", HON, 0, b0,
             flipped)
    other = HON.decoded_to("masked_input", 3)
    swapped_table = b0.ciphertexts.copy()
    swapped_table[row1] = other.ciphertexts[list(other.peers).index(1)]
    rejected("C18", "client 1's bundle for client 3 handed to client 0", HON, 0, b0, swapped_table)

    def resealed(change):
        table = b0.ciphertexts.copy()
        table[row1] = _reseal_bundle(HON, 1, 0, change)
        return table

    def names_receiver(plaintext):
        plaintext[4:8] = u32(3)

    def names_sender(plaintext):
        plaintext[0:4] = u32(4)

    def self_limb_p(plaintext):
        plaintext[8:12] = u32(FIELD_PRIME)

    def key_limb_max(plaintext):
        plaintext[8 + 4 * 9 + 8:8 + 4 * 9 + 12] = u32(0xFFFFFFFF)

    u, owner = _rejectable_owner(SP)
    bundles = SP.decoded_to("masked_input", u)
    table = bundles.ciphertexts.copy()
    table[list(bundles.peers).index(owner), 50] ^= 0x01
    rejected("C18", f"a bad bundle from client {owner}, which drew client {u} but is not its holder: still masked "
             "with", SP, u, bundles, table)
    rejected("C19", "client 1's bundle sealed correctly but naming receiver 3", HON, 0, b0, resealed(names_receiver))
    rejected("C19", "client 1's bundle sealed correctly but naming sender 4", HON, 0, b0, resealed(names_sender))
    rejected("C20", "client 1's bundle with a self-mask limb equal to p", HON, 0, b0, resealed(self_limb_p))
    rejected("C20", "client 1's bundle with a mask-key limb 2^32 - 1", HON, 0, b0, resealed(key_limb_max))

    s0 = HON.decoded_to("unmasking", 0).survivors
    m4 = MAL.decoded_to("consistency_check", 4).survivors
    case("C21", "a survivor list naming id 5 with n = 5", HON, 0, "unmasking", "before",
         msg.UnmaskRequest(SID, 0, np.union1d(s0, [5])).encode())
    case("C21", "a survivor list naming id 12 with n = 12", MAL, 4, "consistency_check", "before",
         msg.ConsistencyRequest(SID, 4, np.union1d(m4, [12])).encode())
    case("C22", "a survivor list without the client", HON, 0, "unmasking", "before",
         msg.UnmaskRequest(SID, 0, s0[s0 != 0]).encode())
    case("C22", "a survivor list without the client", MAL, 4, "consistency_check", "before",
         msg.ConsistencyRequest(SID, 4, m4[m4 != 4]).encode())
    sd0 = SD.decoded_to("unmasking", 0).survivors
    case("C23", "a survivor list naming client 1, which never shared keys", SD, 0, "unmasking", "before",
         msg.UnmaskRequest(SID, 0, np.union1d(sd0, [1])).encode())
    case("C23", "a survivor list naming client 0, which never shared keys", MAL, 4, "consistency_check", "before",
         msg.ConsistencyRequest(SID, 4, np.union1d(m4, [0])).encode())
    sp_case = _owner_gone_before_masked_input(SP)
    if sp_case is not None:
        u, gone = sp_case
        su = SP.decoded_to("unmasking", u).survivors
        case("C23", f"a survivor list naming client {gone}, which drew this client but was gone by round 2", SP, u,
             "unmasking", "before", msg.UnmaskRequest(SID, u, np.union1d(su, [gone])).encode())
    case("C24", "a survivor list keeping 2 of the client's holders (t = 3)", HON, 0, "unmasking", "before",
         msg.UnmaskRequest(SID, 0, [0, 1, 3]).encode())
    case("C24", "a survivor list keeping 5 of the client's holders (t = 6)", MAL, 4, "consistency_check", "before",
         msg.ConsistencyRequest(SID, 4, [2, 3, 4, 5, 6, 7]).encode())

    request = MAL.decoded_to("unmasking", 4)
    smaller = request.survivors[request.survivors != 10]
    case("C25", "another survivor list than the one signed, signed by every member of it", MAL, 4, "unmasking",
         "before", msg.UnmaskRequest(SID, 4, smaller, _sign_survivors(MAL, smaller, smaller)).encode())
    from_dropped = _sign_survivors(MAL, [1], request.survivors)
    case("C26", "a valid signature from client 1, which is not a survivor", MAL, 4, "unmasking", "before",
         msg.UnmaskRequest(SID, 4, request.survivors, tuple(sorted(request.signatures + from_dropped))).encode())
    signer = request.signatures[0][0]
    wrong = _sign_survivors(MAL, [signer], smaller)[0]
    case("C27", f"client {signer}'s signature over another survivor list", MAL, 4, "unmasking", "before",
         msg.UnmaskRequest(SID, 4, request.survivors, (wrong, *request.signatures[1:])).encode())
    case("C28", "5 valid signatures from live holders (t = 6)", MAL, 4, "unmasking", "before",
         msg.UnmaskRequest(SID, 4, request.survivors, request.signatures[:5]).encode())
    u, signatures = _few_holder_signatures(MSP)
    msp_request = MSP.decoded_to("unmasking", u)
    case("C28", "t - 1 signatures from live holders and more from other survivors", MSP, u, "unmasking", "before",
         msg.UnmaskRequest(SID, u, msp_request.survivors, signatures).encode())
    case("C29", "an honest-mode unmask request carrying a signature", HON, 0, "unmasking", "before",
         msg.UnmaskRequest(SID, 0, s0, ((1, bytes(64)),)).encode())
    return cases


def _rejectable_owner(rec: Recorded):
    """(u, o): o sent u a bundle but is not one of u's live holders (SecAgg+: o drew u, not the
    other way round), so u masks with o only because o's bundle reached it."""
    for u in sorted(rec.to("masked_input")):
        bundles = rec.decoded_to("masked_input", u)
        others = [o for o in bundles.peers.tolist() if o not in bundles.holders.tolist()]
        if others:
            return u, others[0]
    raise AssertionError(f"{rec.name}: every sender is also a live holder")


def _few_holders_many_owners(rec: Recorded):
    """(u, entries): u's directory cut to t - 1 of its holders, keeping its owners, with at least
    t other clients listed."""
    t = rec.config.threshold
    for u in sorted(rec.to("share_keys")):
        entries = rec.decoded_to("share_keys", u).entries
        drawn = set({e.client_id: e for e in entries}[u].holders.tolist())
        holders = [e for e in entries if e.client_id in drawn]
        owners_only = [e for e in entries if e.client_id != u and e.client_id not in drawn]
        if len(holders) >= t - 1 and len(owners_only) >= 1:
            return u, [e for e in entries if e.client_id not in drawn] + holders[:t - 1]
    raise AssertionError(f"{rec.name}: no client has an owner that is not its holder")


def _owner_gone_before_masked_input(rec: Recorded):
    """(u, o) with o an owner of u (o drew u, u did not draw o) that was in u's directory but not
    live at round 2: naming it as a survivor breaks only the owners half of rule C25."""
    for u in sorted(rec.to("unmasking")):
        directory = rec.decoded_to("share_keys", u)
        entries = {e.client_id: e for e in directory.entries}
        drawn = set(entries[u].holders.tolist())
        bundles = rec.decoded_to("masked_input", u)
        live = set(bundles.holders.tolist()) | set(bundles.peers.tolist())
        for o, e in sorted(entries.items()):
            if o != u and u in e.holders.tolist() and o not in drawn and o not in live:
                return u, o
    return None


def _few_holder_signatures(rec: Recorded):
    """A client and a signature set with t - 1 from its live holders and at least one more from
    other survivors (t valid signatures in all, too few from its holders)."""
    t = rec.config.threshold
    for u in sorted(rec.to("unmasking")):
        request = rec.decoded_to("unmasking", u)
        live = set(rec.decoded_to("masked_input", u).holders.tolist())
        from_holders = [s for s in request.signatures if s[0] in live]
        others = [s for s in request.signatures if s[0] not in live]
        if len(from_holders) >= t - 1 and len(others) >= 1:
            return u, tuple(sorted(from_holders[:t - 1] + others))
    raise AssertionError(f"{rec.name}: no client has signatures from non-holders")


def _server_cases(recs: dict[str, Recorded]) -> list[dict]:
    HON, SD, MAL, SP = (recs["complete-drop-masked-input"], recs["complete-drop-share-keys"],
                        recs["malicious-drops-every-round"], recs["secagg-plus-odd-k5-pruning"])
    cases: list[dict] = []

    def case(rule, why, rec, round_name, after, sender, data, expect="violation"):
        cases.append({"rule": rule, "why": why, "transcript": rec.name, "round": round_name, "after": after,
                      "from": sender, "message": _hex(data), "expect": expect})

    adv = {u: msg.decode_message(d) for u, d in HON.sent("advertise_keys").items()}

    def advert(u, rec=HON, **changes):
        a = msg.decode_message(rec.sent("advertise_keys")[u])
        fields = {"cipher_public_key": a.cipher_public_key, "mask_public_key": a.mask_public_key,
                  "holders": a.holders, "signature": a.signature, "session_id": SID, "sender": u} | changes
        return msg.AdvertiseKeys(fields.pop("session_id"), fields.pop("sender"), **fields).encode()

    case("S3", "a KeyDirectory sent by a client", HON, "share_keys", 0, 0, HON.to("share_keys")[0])
    case("S1", "client 0's AdvertiseKeys arriving on client 1's authenticated channel", HON, "advertise_keys", 0, 1,
         HON.sent("advertise_keys")[0])
    case("S2", "client 0's AdvertiseKeys for another session", HON, "advertise_keys", 0, 0,
         advert(0, session_id=OTHER_SID))
    case("S4", "AdvertiseKeys from client 5 with n = 5", HON, "advertise_keys", 0, 5,
         advert(0, sender=5, cipher_public_key=_fresh_key(b"s4a"), mask_public_key=_fresh_key(b"s4b")))
    case("S3", "client 3's ShareKeys again during the masked-input round", HON, "masked_input", 0, 3,
         HON.sent("share_keys")[3])
    case("S3", "an AdvertiseKeys during the share-keys round", HON, "share_keys", 0, 0, HON.sent("advertise_keys")[0])
    ghost = msg.MaskedInput(SID, 1, SD.config.modulus_bits, np.zeros(SD.config.vector_length, np.uint32)).encode()
    case("S4", "a masked input from client 1, which never shared keys", SD, "masked_input", 0, 1, ghost)
    case("S5", "client 0's masked input a second time", HON, "masked_input", 1, 0, HON.sent("masked_input")[0])
    case("S6", "a cipher key u = 0 (low order)", HON, "advertise_keys", 0, 0, advert(0, cipher_public_key=bytes(32)))
    case("S6", "a mask key of order 8", HON, "advertise_keys", 0, 0, advert(0, mask_public_key=ORDER_8_POINT))
    case("S7", "c_pk = s_pk", HON, "advertise_keys", 0, 0, advert(0, mask_public_key=adv[0].cipher_public_key))
    case("S7", "s_pk = c_pk in its other encoding (u -> 1/u)", HON, "advertise_keys", 0, 0,
         advert(0, mask_public_key=_other_encoding(adv[0].cipher_public_key)))
    case("S8", "client 1 reusing client 0's cipher key", HON, "advertise_keys", 1, 1,
         advert(1, cipher_public_key=adv[0].cipher_public_key))
    case("S8", "client 1 reusing client 0's mask key in its other encoding", HON, "advertise_keys", 1, 1,
         advert(1, mask_public_key=_other_encoding(adv[0].mask_public_key)))
    case("S9", "holders drawn in the complete graph", HON, "advertise_keys", 0, 0, advert(0, holders=[1, 2]))
    sp_sender = min(SP.sent("advertise_keys"))
    own = msg.decode_message(SP.sent("advertise_keys")[sp_sender]).holders.tolist()
    spare = next(v for v in range(SP.n) if v != sp_sender and v not in own)
    case("S10", "K + 1 holders", SP, "advertise_keys", 0, sp_sender,
         advert(sp_sender, SP, holders=sorted(own + [spare])))
    case("S10", "no holders in SecAgg+", SP, "advertise_keys", 0, sp_sender, advert(sp_sender, SP, holders=[]))
    case("S11", "a holder id n + 1", SP, "advertise_keys", 0, sp_sender,
         advert(sp_sender, SP, holders=sorted(own[:-1] + [SP.n + 1])))
    case("S12", "signed keys in honest-but-curious mode", HON, "advertise_keys", 0, 0,
         advert(0, signature=bytes(range(64))))
    case("S13", "unsigned keys in malicious mode", MAL, "advertise_keys", 0, 0, advert(0, MAL, signature=None))
    case("S14", "client 0's keys carrying client 1's signature", MAL, "advertise_keys", 0, 0,
         advert(0, MAL, signature=msg.decode_message(MAL.sent("advertise_keys")[1]).signature))
    share0 = HON.decoded_sent("share_keys", 0)
    keep = share0.peers != 4
    case("S15", "ShareKeys without the bundle for holder 4", HON, "share_keys", 0, 0,
         msg.ShareKeys(SID, 0, share0.self_mask_commitment, share0.peers[keep], share0.ciphertexts[keep]).encode())
    case("S15", "ShareKeys with a bundle for the sender itself", HON, "share_keys", 0, 0,
         msg.ShareKeys(SID, 0, share0.self_mask_commitment, np.append([0], share0.peers),
                       np.vstack([share0.ciphertexts[:1], share0.ciphertexts])).encode())
    masked0 = HON.decoded_sent("masked_input", 0)
    case("S16", "a masked input in Z_2^31 (the session's ring is Z_2^32)", HON, "masked_input", 0, 0,
         msg.MaskedInput(SID, 0, 31, masked0.values & np.uint32(2**31 - 1)).encode())
    case("S17", "a masked input one element short", HON, "masked_input", 0, 0,
         msg.MaskedInput(SID, 0, 32, masked0.values[:-1]).encode())
    sd_masked = SD.decoded_sent("masked_input", 0)
    case("S18", "a report of client 1's bundle, which never came", SD, "masked_input", 0, 0,
         msg.MaskedInput(SID, 0, sd_masked.modulus_bits, sd_masked.values, [1]).encode())
    v = min(SP.sent("masked_input"))
    stranger = min(set(SP.to("masked_input")) - set(SP.decoded_to("masked_input", v).peers.tolist()) - {v})
    sp_masked = SP.decoded_sent("masked_input", v)
    case("S18", f"client {v} reports client {stranger}, which is live but sent it no bundle", SP, "masked_input", 0, v,
         msg.MaskedInput(SID, v, sp_masked.modulus_bits, sp_masked.values, [stranger]).encode())
    signer = min(MAL.sent("consistency_check"))
    survivors = MAL.decoded_to("consistency_check", signer).survivors
    bad = _sign_survivors(MAL, [signer], survivors[survivors != max(survivors)])[0][1]
    case("S19", f"client {signer}'s signature over another survivor list", MAL, "consistency_check", 0, signer,
         msg.ConsistencySignature(SID, signer, bad).encode())
    unmask0 = HON.decoded_sent("unmasking", 0)
    keep_b = unmask0.self_mask_owners != 1
    case("S20", "unmasking shares without the self-mask share of survivor 1", HON, "unmasking", 0, 0,
         msg.UnmaskingShares(SID, 0, unmask0.self_mask_owners[keep_b], unmask0.self_mask_shares[keep_b],
                             unmask0.mask_key_owners, unmask0.mask_key_shares).encode())
    case("S20", "the self-mask share of client 2, which dropped, instead of its mask-key share", HON, "unmasking", 0, 0,
         msg.UnmaskingShares(SID, 0, np.union1d(unmask0.self_mask_owners, [2]),
                             np.insert(unmask0.self_mask_shares, 1, unmask0.mask_key_shares[0], axis=0),
                             [], np.zeros((0, 9), np.uint32)).encode())
    case("S21", "unmasking shares without the mask-key share of dropped client 2", HON, "unmasking", 0, 0,
         msg.UnmaskingShares(SID, 0, unmask0.self_mask_owners, unmask0.self_mask_shares, [],
                             np.zeros((0, 9), np.uint32)).encode())
    return cases


def _check_client_case(rec: Recorded, c: dict) -> None:
    client, honest, reply = rec.advance(c["client"], c["round"], c["at"])
    data = bytes.fromhex(c["message"])
    if c["expect"] == "reply":
        assert client.handle(data) == bytes.fromhex(c["reply"]), c["why"]
        return
    try:
        client.handle(data)
    except (ProtocolViolation, AbortError) as exc:
        assert _kind(exc) == c["expect"], (c["why"], exc)
    else:
        raise AssertionError(f"the reference accepts: {c['why']}")
    if c["expect"] == "abort":
        try:
            client.handle(honest if honest is not None else data)
        except ProtocolViolation:
            return
        raise AssertionError(f"the reference goes on after an AbortNotice: {c['why']}")
    if c["at"] == "before" and reply is not None:
        assert client.handle(honest) == reply, f"the refusal changed the client: {c['why']}"


def _check_server_case(rec: Recorded, c: dict) -> None:
    fired = []

    def inject(server, round_name, delivered):
        if round_name == c["round"] and delivered == c["after"] and not fired:
            fired.append(True)
            try:
                server.receive(c["from"], bytes.fromhex(c["message"]))
            except (ProtocolViolation, AbortError) as exc:
                assert _kind(exc) == c["expect"], (c["why"], exc)
                return
            raise AssertionError(f"the reference accepts: {c['why']}")

    assert rec.drive_server(inject) == rec.data["outcome"], f"the refusal changed the server: {c['why']}"
    assert fired, c["why"]


def refusal_vectors(transcripts: dict[str, dict]) -> dict:
    recs = {name: Recorded(data) for name, data in transcripts.items()}
    client_cases, server_cases = _client_cases(recs), _server_cases(recs)
    for c in client_cases:
        _check_client_case(recs[c["transcript"]], c)
    for c in server_cases:
        _check_server_case(recs[c["transcript"]], c)
    return {"description": "one case per way a server or a client must refuse (spec sections 8 and 9), each breaking "
                           "only the rule it names; see README.md for how to replay them",
            "client": client_cases, "server": server_cases}


# ------------------------------------------------------------------------------ files

def all_vectors() -> dict[str, str]:
    """Every vector file: relative path -> exact JSON text."""
    files = {
        "kdf.json": kdf_vectors(),
        "prg.json": prg_vectors(),
        "shamir.json": shamir_vectors(),
        "holders.json": holder_vectors(),
        "transcript_tree.json": transcript_tree_vectors(),
        "codec.json": codec_vectors(),
    }
    transcripts = {spec.name: run_transcript(spec) for spec in TRANSCRIPTS}
    for name, data in transcripts.items():
        files[f"transcripts/{name}.json"] = data
    files["refusals.json"] = refusal_vectors(transcripts)
    return {path: json.dumps(data, indent=1, sort_keys=True) + "\n" for path, data in files.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args()
    vectors = all_vectors()
    differing = []
    for path, text in vectors.items():
        target = VECTORS / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                differing.append(path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    stale = sorted(str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*.json")
                   if str(p.relative_to(VECTORS)) not in vectors and p.relative_to(VECTORS).parts[0] not in OWNED_ELSEWHERE)
    if args.check:
        differing += [f"{p} (no longer generated)" for p in stale]
        print("vectors match the code" if not differing else "DIFFERENT: " + ", ".join(differing))
        return 1 if differing else 0
    for path in stale:
        (VECTORS / path).unlink()
    print(f"wrote {len(vectors)} files under {VECTORS}" + (f"; removed {', '.join(stale)}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
