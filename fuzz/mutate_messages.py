"""Mutation fuzzing of the message decoder and of the sessions' handlers.

    python fuzz/mutate_messages.py --count 100000        # per message type; about a minute
    python fuzz/mutate_messages.py --count 1000 --sessions

Seeds are the valid encodings of every message type (protocols/vectors/codec.json and every message
of every transcript). Each mutation applies 1-4 random edits (bit flip, byte set, truncation,
insertion, deletion, extension, 4-byte integer overwrite with a boundary value). ``decode_message``
must raise MalformedMessage or return a message whose canonical encoding is the input. With
``--sessions`` the mutants are also handed to client and server sessions in the state that expects
that message type (``count / 100`` per message); only the library's typed errors (secagg.errors.SecAggError) may come out.
Exit status 1 and the offending input in hex on the first other exception.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from secagg.errors import MalformedMessage, SecAggError
from secagg.protocol.messages import MessageType, decode_message

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def seeds() -> dict[MessageType, list[bytes]]:
    out: dict[MessageType, list[bytes]] = defaultdict(list)
    codec = json.loads((ROOT / "protocols/vectors/codec.json").read_text())
    for case in codec["valid"]:
        data = bytes.fromhex(case["encoding"])
        out[MessageType(data[5])].append(data)
    for path in sorted((ROOT / "protocols/vectors/transcripts").glob("*.json")):
        for entry in json.loads(path.read_text())["messages"]:
            if "message" not in entry:  # a driver action (close_round, abort)
                continue
            data = bytes.fromhex(entry["message"])
            out[MessageType(data[5])].append(data)
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(7))
        n = len(raw)
        if op == 0 and n:
            raw[int(rng.integers(n))] ^= 1 << int(rng.integers(8))
        elif op == 1 and n:
            raw[int(rng.integers(n))] = int(rng.integers(256))
        elif op == 2 and n:
            del raw[int(rng.integers(n)):]
        elif op == 3:
            at = int(rng.integers(n + 1))
            raw[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        elif op == 4 and n:
            at = int(rng.integers(n))
            del raw[at:at + int(rng.integers(1, 9))]
        elif op == 5:
            raw += bytes(rng.integers(0, 256, int(rng.integers(1, 33)), dtype=np.uint8))
        elif op == 6 and n >= 4:
            at = int(rng.integers(n - 3))
            raw[at:at + 4] = int(BOUNDARY[int(rng.integers(len(BOUNDARY)))]).to_bytes(4, "little")
    return bytes(raw)


def fuzz_decoder(count: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    failures = 0
    print(f"{'message type':<22} {'mutants':>8} {'malformed':>10} {'still valid':>11} {'s':>6}")
    for kind, samples in sorted(seeds().items()):
        outcomes: Counter[str] = Counter()
        started = time.perf_counter()
        for i in range(count):
            data = mutate(samples[i % len(samples)], rng)
            try:
                message = decode_message(data)
            except MalformedMessage:
                outcomes["malformed"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the point of the exercise
                print(f"UNEXPECTED {type(exc).__name__}: {exc}\n  input: {data.hex()}")
                failures += 1
                continue
            if message.encode() != data:
                print(f"NON-CANONICAL accepted input: {data.hex()}")
                failures += 1
            outcomes["valid"] += 1
        print(f"{kind.name:<22} {count:>8} {outcomes['malformed']:>10} {outcomes['valid']:>11} "
              f"{time.perf_counter() - started:>6.1f}")
    return failures


def fuzz_sessions(count: int, seed: int) -> int:
    """Hand mutants to sessions in the state that expects their type (replaying a transcript)."""
    sys.path.insert(0, str(ROOT))
    from tests.conformance.adapter import SecaggImplementation
    from tests.conformance.replay import Transcript

    impl = SecaggImplementation()
    rng = np.random.default_rng(seed)
    failures = 0
    outcomes: Counter[str] = Counter()
    for path in sorted((ROOT / "protocols/vectors/transcripts").glob("*.json")):
        data = json.loads(path.read_text())
        # a client that vanished never drew the randomness of the rounds it skipped: give it some
        data["client_randomness"] = {u: r + bytes(range(256)).hex() * 256 for u, r in data["client_randomness"].items()}
        transcript = Transcript(data)
        for u, entries in transcript.per_client().items():
            if not transcript.started(u):  # vanished before round 0: only an AbortNotice was addressed to it
                continue
            client = transcript.new_client(impl, u)
            pending = None
            for entry in entries:
                data = bytes.fromhex(entry["message"])
                if "to" in entry:
                    for _ in range(count):
                        try:
                            client.handle(mutate(data, rng))
                        except SecAggError as exc:
                            outcomes[type(exc).__name__] += 1
                            if impl.error_kind(exc) == "abort":
                                client = None
                                break
                            continue
                        except Exception as exc:  # noqa: BLE001
                            print(f"UNEXPECTED {type(exc).__name__} from client {u}: {exc}")
                            failures += 1
                            continue
                        outcomes["accepted"] += 1
                        client = None  # state moved on; rebuild below
                        break
                    if client is None:
                        break
                    pending = data
                else:
                    if entry["round"] == "advertise_keys":
                        client.start()
                    else:
                        client.handle(pending)
    print("client handlers:", dict(outcomes))
    return failures + _fuzz_servers(impl, count, rng)


def _fuzz_servers(impl, count: int, rng: np.random.Generator) -> int:
    """Mutants of each client message, sent to a server waiting for that message."""
    from tests.conformance.replay import Transcript

    failures = 0
    outcomes: Counter[str] = Counter()
    for path in sorted((ROOT / "protocols/vectors/transcripts").glob("*.json")):
        transcript = Transcript(json.loads(path.read_text()))
        rounds = transcript.rounds()
        for target in rounds:
            server = impl.new_server(transcript.config, transcript.session_id, transcript.verify_keys(impl))
            try:
                for round_name in rounds:
                    if round_name == target:
                        break
                    outbox = {}
                    for u, data in transcript.sent(round_name):
                        outbox = server.receive(u, data) or outbox
                    if not outbox and server.outcome() is None:
                        server.close_round()
            except SecAggError:
                continue  # the transcript aborts before reaching this round
            for u, data in transcript.sent(target):
                for _ in range(count):
                    sender = u if rng.random() < 0.9 else int(rng.integers(0, 2**32))
                    try:
                        accepted = server.receive(sender, mutate(data, rng))
                    except SecAggError as exc:
                        outcomes[type(exc).__name__] += 1
                        if impl.error_kind(exc) == "abort":
                            break
                        continue
                    except Exception as exc:  # noqa: BLE001
                        print(f"UNEXPECTED {type(exc).__name__} from the server: {exc}")
                        failures += 1
                        continue
                    outcomes["accepted"] += 1
                    break
                else:
                    continue
                break  # the server's state moved on: next round target
    print("server handlers:", dict(outcomes))
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="mutants per message type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sessions", action="store_true", help="also fuzz the client sessions' handlers")
    args = parser.parse_args()
    failures = fuzz_decoder(args.count, args.seed)
    if args.sessions:
        failures += fuzz_sessions(max(1, args.count // 100), args.seed)
    print("no exception other than the library's typed errors" if not failures else f"{failures} FAILURES")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
