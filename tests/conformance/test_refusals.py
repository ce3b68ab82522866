"""Every refusal a client or server must make (spec sections 8 and 9), from protocols/vectors/refusals.json.

A client is fed its transcript up to the case's point, then the case's message: it must refuse it
with the error kind the case names and then answer the round's honest message exactly as the
transcript does (the refusal changed nothing, not even the randomness it consumed); or, for a
bundle it must reject, answer with the case's reply. A server is fed the transcript with the case's
message slipped in; it must refuse it and then emit every later message and the result exactly
as the transcript does.
"""

import re

import pytest

from tests.conformance.conftest import load
from tests.conformance.replay import Transcript, advance, check_server_outcome, drive_server

REFUSALS = load("refusals.json")
TRANSCRIPTS = {name: Transcript(load(f"transcripts/{name}.json"))
               for name in {c["transcript"] for c in REFUSALS["client"] + REFUSALS["server"]}}


def _id(case):
    return f"{case['rule']}-" + re.sub(r"[^a-z0-9]+", "-", case["why"].lower()).strip("-")


def _expect(impl, call, kind, what):
    with pytest.raises(Exception) as info:
        call()
    assert impl.error_kind(info.value) == kind, f"{what}: {info.value!r}"


@pytest.mark.parametrize("case", REFUSALS["client"], ids=_id)
def test_client_refuses(impl, case):
    transcript = TRANSCRIPTS[case["transcript"]]
    client, honest, reply = advance(impl, transcript, case["client"], case["round"], case["at"])
    data = bytes.fromhex(case["message"])
    if case["expect"] == "reply":
        assert client.handle(data) == bytes.fromhex(case["reply"]), case["why"]
        return
    _expect(impl, lambda: client.handle(data), case["expect"], case["why"])
    if case["expect"] == "abort":  # the session is over: the message it was waiting for is refused
        _expect(impl, lambda: client.handle(honest if honest is not None else data), "violation",
                "a message after the AbortNotice")
    elif case["at"] == "before" and reply is not None:
        assert client.handle(honest) == reply, "the refusal changed the client"


@pytest.mark.parametrize("case", REFUSALS["server"], ids=_id)
def test_server_refuses(impl, case):
    transcript = TRANSCRIPTS[case["transcript"]]
    fired = []

    def inject(server, round_name, delivered):
        if round_name == case["round"] and delivered == case["after"] and not fired:
            fired.append(True)
            _expect(impl, lambda: server.receive(case["from"], bytes.fromhex(case["message"])), case["expect"],
                    case["why"])

    run = drive_server(impl, transcript, inject)
    assert fired, "the transcript never reached the case's point"
    check_server_outcome(impl, transcript, run)
