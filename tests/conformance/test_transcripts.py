"""Whole sessions: an implementation's server and clients reproduce every transcript byte for byte."""

import pytest

from tests.conformance.conftest import load, transcripts
from tests.conformance.replay import Transcript, check_server_outcome, drive_server, replay_client

CASES = [Transcript(load(f"transcripts/{p.name}")) for p in transcripts()]
IDS = ["-".join([t.name, *t.data["rules"]]) for t in CASES]  # rule ids in test ids: the mutation run's hints


@pytest.mark.parametrize("transcript", CASES, ids=IDS)
def test_server_reproduces_the_transcript(impl, transcript):
    # every message the server emits, when it emits it (rule R1), the abort and its notices or the
    # result: survivors, aggregate, reported bundles and misbehaving holders
    run = drive_server(impl, transcript)
    check_server_outcome(impl, transcript, run)


@pytest.mark.parametrize("transcript", CASES, ids=IDS)
def test_clients_reproduce_the_transcript(impl, transcript):
    for u in sorted(transcript.per_client()):
        if transcript.started(u):
            replay_client(impl, transcript, u)
