"""Generate (or check) the test vectors in protocols/vectors/ from fixed seeds.

    python protocols/generate_vectors.py           # rewrite every vector file
    python protocols/generate_vectors.py --check   # exit 1 if any file differs from the code's output

The output is deterministic: every random byte comes from TestOnlySeededRandomness with a fixed
seed, and the transcripts record each client's random bytes so another implementation can replay
them (protocols/secagg-v2.md, section 7). Schemas: protocols/vectors/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from secagg.crypto import shamir
from secagg.crypto.keys import hkdf
from secagg.crypto.prg import expand, keystream
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import AbortError
from secagg.protocol import derivation
from secagg.protocol import messages as msg
from secagg.protocol.client import ClientSession
from secagg.protocol.graph import draw_holders
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.server import ServerSession, ServerState
from secagg.ring import Ring

VECTORS = Path(__file__).resolve().parent / "vectors"
SID = bytes.fromhex("00112233445566778899aabbccddeeff")


class RecordingRandomness:
    """Wraps a randomness source and keeps every byte handed out (for replay by others)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.log = bytearray()

    def random_bytes(self, n: int) -> bytes:
        data = self.inner.random_bytes(n)
        self.log += data
        return data


def _hex(data: bytes) -> str:
    return bytes(data).hex()


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


def shamir_vectors() -> dict:
    cases = []
    for threshold, holders in [(1, [0, 1, 2]), (2, [0, 1, 2]), (3, [0, 2, 5, 7, 9]), (5, list(range(8)))]:
        rng = RecordingRandomness(TestOnlySeededRandomness(b"shamir/%d" % threshold))
        secrets = [rng.random_bytes(32), rng.random_bytes(32)]
        rng.log.clear()
        limbs = shamir.secrets_to_limbs(secrets).ravel()
        x = np.array(holders) + 1
        shares = shamir.share(limbs, threshold, x, rng)
        subset = list(range(len(holders) - threshold, len(holders)))
        rebuilt = shamir.reconstruct(x[subset][None], shares[subset][None])[0]
        cases.append({
            "secrets": [_hex(s) for s in secrets], "limbs": [int(v) for v in limbs], "threshold": threshold,
            "holders": holders, "coefficient_randomness": _hex(rng.log),
            "shares": {str(h): [int(v) for v in row] for h, row in zip(holders, shares)},
            "reconstruct_from": [holders[i] for i in subset],
            "lagrange_at_zero": [int(v) for v in shamir.lagrange_at_zero(x[subset][None])[0]],
            "reconstructed_secrets": [_hex(s) for s in shamir.limbs_to_secrets(rebuilt.reshape(2, -1))],
        })
    return {"description": f"Shamir over GF({shamir.FIELD_PRIME}); holder v evaluates at x = v + 1; 18 limbs = "
                           "9 of the first secret then 9 of the second", "cases": cases}


def holder_vectors() -> dict:
    cases = []
    for client, n, k in [(0, 5, 1), (2, 5, 2), (2, 5, 3), (7, 20, 6), (0, 1000, 40), (999, 1000, 72)]:
        rng = RecordingRandomness(TestOnlySeededRandomness(b"holders/%d/%d/%d" % (client, n, k)))
        holders = draw_holders(client, n, k, rng)
        cases.append({"client": client, "num_clients": n, "holders_to_draw": k, "randomness": _hex(rng.log),
                      "holders": [int(v) for v in holders]})

    class Words:  # a case that needs a rejection: the word 2^32 - 1 for 3 remaining candidates
        def __init__(self, words):
            self.data = b"".join(w.to_bytes(4, "little") for w in words)
            self.log = self.data

        def random_bytes(self, count):
            out, self.data = self.data[:count], self.data[count:]
            return out

    words = Words([6, 2**32 - 1, 4])
    cases.append({"client": 2, "num_clients": 5, "holders_to_draw": 2, "randomness": _hex(words.log),
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


def _invalid(valid: dict[str, bytes]) -> list[tuple[str, bytes]]:
    adv = valid["AdvertiseKeys"]
    header = adv[:26]
    u32 = lambda v: v.to_bytes(4, "little")  # noqa: E731
    directory_head = valid["KeyDirectory"][:26] + b"\x00" + u32(0)
    cases = [
        ("empty", b""),
        ("truncated header", adv[:25]),
        ("bad magic", b"SAGX" + adv[4:]),
        ("unsupported version (1)", adv[:4] + b"\x01" + adv[5:]),
        ("non-canonical X25519 key (u >= 2^255 - 19)", header + (2**255 - 19).to_bytes(32, "little") + adv[58:]),
        ("non-canonical X25519 key (top bit set)", header + adv[26:57] + bytes([adv[57] | 0x80]) + adv[58:]),
        ("holders list the sender itself", header + adv[26:90] + u32(1) + u32(3) + b"\x00"),
        ("holders not increasing", header + adv[26:90] + u32(2) + u32(4) + u32(4) + b"\x00"),
        ("audit path of the wrong length", directory_head + bytes(32) + u32(0) + u32(1) + b"\x01" + bytes(32)),
        ("leaf index outside the tree", directory_head + bytes(32) + u32(3) + u32(2) + b"\x01" + bytes(32)),
        ("unknown type", adv[:5] + b"\x0b" + adv[6:]),
        ("signature flag 2", adv[:-1] + b"\x02"),
        ("trailing byte", adv + b"\x00"),
        ("truncated body", adv[:-1]),
        ("survivors not increasing", header[:5] + b"\x06" + header[6:] + (2).to_bytes(4, "little") + (3).to_bytes(4, "little") * 2),
        ("count beyond length", header[:5] + b"\x06" + header[6:] + (1000).to_bytes(4, "little")),
        ("modulus_bits 0", header[:5] + b"\x05" + header[6:] + b"\x00" + (0).to_bytes(4, "little")),
        ("masked value >= 2^k", header[:5] + b"\x05" + header[6:] + b"\x03" + (1).to_bytes(4, "little") + (8).to_bytes(4, "little")),
        ("share limb = p", header[:5] + b"\x09" + header[6:] + (1).to_bytes(4, "little") + (0).to_bytes(4, "little")
         + (2**31 - 1).to_bytes(4, "little") * 9 + (0).to_bytes(4, "little")),
        ("abort reason not UTF-8", header[:5] + b"\x0a" + header[6:] + (2).to_bytes(2, "little") + b"\xff\xfe"),
        ("signed entry cut short", valid["KeyDirectory"][:26] + b"\x01" + (1).to_bytes(4, "little")
         + (0).to_bytes(4, "little") + bytes(64)),
    ]
    return cases


def codec_vectors() -> dict:
    valid = []
    first: dict[str, bytes] = {}
    for m in _valid_messages():
        data = m.encode()
        first.setdefault(type(m).__name__, data)
        valid.append({"type": type(m).__name__, "type_code": int(m.TYPE), "party": m.party, "encoding": _hex(data)})
    invalid = [{"why": why, "encoding": _hex(data)} for why, data in _invalid(first)]
    return {"description": "valid: decoding then re-encoding returns the same bytes; invalid: MalformedMessage",
            "valid": valid, "invalid": invalid}


# ------------------------------------------------------------------------------ transcripts

TRANSCRIPTS = [
    # name, n, t, m, k, neighbors, malicious, drops {round: [ids]}
    ("complete-no-dropout", 4, 3, 6, 16, None, False, {}),
    ("complete-drop-share-keys", 5, 3, 4, 32, None, False, {"share_keys": [1]}),
    ("complete-drop-masked-input", 5, 3, 4, 32, None, False, {"masked_input": [2]}),
    ("complete-drop-unmasking", 5, 3, 4, 64, None, False, {"unmasking": [4]}),
    ("complete-drops-every-round", 7, 2, 3, 40, None, False,
     {"advertise_keys": [0], "share_keys": [3], "masked_input": [5], "unmasking": [6]}),
    ("malicious-drops-every-round", 12, 6, 3, 12, None, True,
     {"advertise_keys": [11], "share_keys": [0], "masked_input": [1], "consistency_check": [2], "unmasking": [3]}),
    ("malicious-abort-at-unmasking", 11, 6, 3, 12, None, True,
     {"advertise_keys": [10], "share_keys": [0], "masked_input": [1], "consistency_check": [2], "unmasking": [3]}),
    ("secagg-plus-k6", 20, 3, 5, 20, 6, False, {"masked_input": [3], "unmasking": [6]}),
    ("abort-below-threshold", 4, 3, 2, 8, None, False, {"masked_input": [0, 1]}),
]
# Sessions with a cheating client: round -> {client: how its message is altered}. Tampered
# messages are marked in the transcript; the honest clients' replies stay byte for byte.
TAMPERED = [
    ("complete-bad-bundle-reported", 5, 2, 3, 16, None, False, {}, {"share_keys": {1: "corrupt-first-bundle"}}),
    ("complete-wrong-share-corrected", 6, 3, 3, 16, None, False, {}, {"unmasking": {0: "shift-first-share"}}),
]


def _tamper(how: str, data: bytes) -> bytes:
    raw = bytearray(data)
    if how == "corrupt-first-bundle":  # ShareKeys: header, commitment, count, (recipient, 96-byte bundle)...
        raw[26 + 32 + 4 + 4 + 95] ^= 0x01
    elif how == "shift-first-share":  # UnmaskingShares: header, count, (owner, 9 limbs)...: first limb + 1 mod p
        offset = 26 + 4 + 4
        limb = int.from_bytes(raw[offset:offset + 4], "little")
        raw[offset:offset + 4] = ((limb + 1) % shamir.FIELD_PRIME).to_bytes(4, "little")
    else:  # pragma: no cover - the table above names every kind
        raise ValueError(how)
    return bytes(raw)


def run_transcript(name, n, t, m, k, neighbors, malicious, drops, tampers=None) -> dict:
    config = SecAggConfig(num_clients=n, threshold=t, vector_length=m, modulus_bits=k, neighbors=neighbors,
                          malicious=malicious)
    root = TestOnlySeededRandomness(name.encode())
    ring = config.ring
    gen = np.random.default_rng(list(name.encode()))
    inputs = [[int(v) & ring.mask for v in gen.integers(0, 2**63, size=m, dtype=np.uint64) * 2 + 1] for _ in range(n)]
    identities = verify_keys = None
    identity_seeds = {}
    if malicious:
        identity_seeds = {u: root.child(b"identity/%d" % u).random_bytes(32) for u in range(n)}
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        identities = {u: IdentityKey(Ed25519PrivateKey.from_private_bytes(s)) for u, s in identity_seeds.items()}
        verify_keys = {u: key.public_bytes for u, key in identities.items()}
    rngs = {u: RecordingRandomness(root.child(b"client/%d" % u)) for u in range(n)}
    server = ServerSession(config, SID, verify_keys=verify_keys)
    clients = {u: ClientSession(config, u, SID, inputs[u], rng=rngs[u],
                                identity=identities[u] if identities else None, verify_keys=verify_keys)
               for u in range(n)}
    rounds = [r.value for r in Round if malicious or r is not Round.CONSISTENCY_CHECK]
    if not malicious and "consistency_check" in drops:
        raise ValueError("honest transcripts drop before unmasking instead")
    log: list[dict] = []
    inbox: dict[int, bytes] = {}
    outcome: dict = {}
    try:
        for round_name in rounds:
            gone = set(drops.get(round_name, []))
            senders = range(n) if round_name == "advertise_keys" else sorted(inbox)
            for u in senders:
                if round_name != "advertise_keys":
                    log.append({"round": round_name, "to": u, "message": _hex(inbox[u])})
                if u in gone:
                    continue
                reply = clients[u].start() if round_name == "advertise_keys" else clients[u].handle(inbox[u])
                entry = {"round": round_name, "from": u, "message": _hex(reply)}
                how = (tampers or {}).get(round_name, {}).get(u)
                if how is not None:
                    reply = _tamper(how, reply)
                    entry.update(message=_hex(reply), tampered=how)
                log.append(entry)
                out = server.receive(u, reply)
                if out:
                    inbox = out
            if server.state is ServerState(round_name):
                inbox = server.close_round()
        result = server.result
        outcome = {"survivors": result.survivors, "aggregate": [str(int(v)) for v in result.aggregate],
                   "reports": [list(p) for p in result.reports], "misbehaving": sorted(result.misbehaving)}
        expected = ring.sum([ring.element(inputs[u]) for u in result.survivors])
        if not np.array_equal(expected, result.aggregate):
            raise AssertionError(f"{name}: aggregate differs from the plaintext sum")
    except AbortError as exc:
        outcome = {"abort_round": exc.round}
    return {
        "name": name,
        "config": {"num_clients": n, "threshold": t, "vector_length": m, "modulus_bits": k,
                   "neighbors": neighbors, "malicious": malicious},
        "session_id": _hex(SID),
        "inputs": [[str(v) for v in row] for row in inputs],
        "drops": drops,
        "identity_keys": {str(u): _hex(s) for u, s in identity_seeds.items()},
        "client_randomness": {str(u): _hex(r.log) for u, r in rngs.items()},
        "messages": log,
        "outcome": outcome,
    }


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
    for spec in TRANSCRIPTS + TAMPERED:
        files[f"transcripts/{spec[0]}.json"] = run_transcript(*spec)
    return {path: json.dumps(data, indent=1, sort_keys=True) + "\n" for path, data in files.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args()
    differing = []
    for path, text in all_vectors().items():
        target = VECTORS / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                differing.append(path)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if args.check:
        print("vectors match the code" if not differing else "DIFFERENT: " + ", ".join(differing))
        return 1 if differing else 0
    print(f"wrote {len(all_vectors())} files under {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
