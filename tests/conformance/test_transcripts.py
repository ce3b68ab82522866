"""Whole sessions: an implementation's server and clients reproduce every transcript byte for byte."""

import pytest

from tests.conformance.conftest import load, transcripts
from tests.conformance.replay import Transcript, drive_server

CASES = [Transcript(load(f"transcripts/{p.name}")) for p in transcripts()]
IDS = [t.data["name"] for t in CASES]


@pytest.mark.parametrize("transcript", CASES, ids=IDS)
def test_server_reproduces_the_transcript(impl, transcript):
    server, outboxes, error = drive_server(impl, transcript)
    for round_name, outbox in outboxes.items():
        assert outbox == transcript.received(round_name), f"server messages starting {round_name}"
    outcome = transcript.data["outcome"]
    if "abort_round" in outcome:
        assert error is not None and impl.error_kind(error) == "abort"
        assert getattr(error, "round", outcome["abort_round"]) == outcome["abort_round"]
    else:
        assert error is None
        survivors, aggregate = server.outcome()
        assert survivors == outcome["survivors"]
        assert [str(v) for v in aggregate] == outcome["aggregate"]
        reports, misbehaving = server.flagged()
        assert reports == outcome["reports"] and misbehaving == outcome["misbehaving"]


@pytest.mark.parametrize("transcript", CASES, ids=IDS)
def test_clients_reproduce_the_transcript(impl, transcript):
    for u, entries in transcript.per_client().items():
        client = transcript.new_client(impl, u)
        pending = None
        for entry in entries:
            data = bytes.fromhex(entry["message"])
            if "to" in entry:
                pending = data
                continue
            reply = client.start() if entry["round"] == "advertise_keys" else client.handle(pending)
            if "tampered" in entry:  # the cheater's message is not what an honest client sends
                assert reply != data, f"client {u}, round {entry['round']}: tampering changed nothing"
                continue
            assert reply == data, f"client {u}, round {entry['round']}"
