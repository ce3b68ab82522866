"""Mutated server messages: a client raises only the three typed error kinds, never anything else."""

import numpy as np
import pytest

from tests.conformance.conftest import load
from tests.conformance.replay import Transcript, advance

HONEST = Transcript(load("transcripts/complete-drop-masked-input.json"))
MALICIOUS = Transcript(load("transcripts/malicious-drops-every-round.json"))


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = rng.integers(4)
        if op == 0:
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        elif op == 1:
            del raw[int(rng.integers(len(raw))):]
        elif op == 2:
            raw += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        else:
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        if not raw:
            break
    return bytes(raw)


@pytest.mark.parametrize("transcript", [HONEST, MALICIOUS], ids=["honest", "malicious"])
def test_clients_survive_mutated_server_messages(impl, transcript):
    rng = np.random.default_rng(0)
    for u in sorted(transcript.per_client()):
        for round_name in transcript.rounds()[1:]:
            if u not in transcript.received(round_name):
                continue
            client, honest, reply = advance(impl, transcript, u, round_name, "before")
            for _ in range(12):
                bad = mutate(honest, rng)
                try:
                    client.handle(bad)
                except Exception as exc:  # noqa: BLE001
                    kind = impl.error_kind(exc)
                    assert kind in ("malformed", "violation", "abort"), repr(exc)
                    if kind == "abort":  # the mutation decoded as a valid abort notice
                        break
                    continue
                break  # an accepted mutation (e.g. another peer's key): this client's state moved on
            else:
                if reply is not None:
                    assert client.handle(honest) == reply
