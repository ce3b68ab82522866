"""The JSON-lines harness itself: framing, errors, a program that dies (the suite runs over it too)."""

import io
import json
import sys

import pytest

from tests.conformance.conftest import ROOT
from tests.conformance.jsonl import PROTOCOL, HarnessError, SubprocessImplementation, serve


class _Echo:
    """A stand-in implementation: enough to see requests reach it and errors come back typed."""

    name = "echo"

    def reencode(self, data):
        if not data:
            raise ValueError("empty")
        return data

    def error_kind(self, error):
        return "malformed" if isinstance(error, ValueError) else None


def _serve(*requests):
    out = io.StringIO()
    serve(_Echo(), io.StringIO("".join(json.dumps(r) + "\n" for r in requests) + "not json\n"), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_serve_answers_each_request_by_id_with_typed_errors():
    answers = _serve({"id": 1, "op": "hello", "protocol": PROTOCOL}, {"id": 2, "op": "reencode", "message": "0a0b"},
                     {"id": 3, "op": "reencode", "message": ""}, {"id": 4, "op": "no-such-op"},
                     {"id": 5, "op": "client_start", "handle": "c9"})
    assert answers[0] == {"id": 1, "ok": {"protocol": PROTOCOL, "name": "echo"}}
    assert answers[1] == {"id": 2, "ok": "0a0b"}
    assert answers[2]["id"] == 3 and answers[2]["error"]["kind"] == "malformed"
    assert answers[3]["error"]["kind"] == "harness" and answers[4]["error"]["kind"] == "harness"
    assert answers[5] == {"id": None, "error": {"kind": "harness", "message": answers[5]["error"]["message"]}}


def test_quit_ends_the_loop():
    assert _serve({"id": 1, "op": "quit"}, {"id": 2, "op": "hello"}) == []


def test_a_program_that_dies_is_reported_with_its_stderr():
    with pytest.raises(HarnessError, match="boom") as info:
        SubprocessImplementation([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert info.value.kind == "harness"


def test_the_reference_through_the_harness_types_its_errors():
    harness = SubprocessImplementation([sys.executable, "-m", "tests.conformance.jsonl"], cwd=ROOT)
    try:
        assert harness.name == "secagg"
        with pytest.raises(HarnessError) as info:
            harness.reencode(b"SAGG")
        assert harness.error_kind(info.value) == "malformed"
        with pytest.raises(HarnessError) as info:
            harness.call("no-such-op")
        assert info.value.kind == "harness" and harness.error_kind(info.value) is None
    finally:
        harness.close()
