"""Which implementation the suite drives, and how (docs/conformance.md).

By default the suite runs twice over secagg: in process, and through the JSON-lines harness in a
subprocess (so the harness is tested too). ``SECAGG_IMPLEMENTATION=module:factory`` runs it in
process over another Python implementation; ``SECAGG_HARNESS_COMMAND="program args"`` runs it over
any program speaking the JSON-lines protocol. ``SECAGG_CONFORMANCE_HARNESS=inprocess`` (or
``jsonl``) keeps one of the two default runs.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conformance.adapter import load_in_process
from tests.conformance.jsonl import SubprocessImplementation

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocols" / "vectors"


def load(name):
    return json.loads((VECTORS / name).read_text())


def transcripts():
    return sorted((VECTORS / "transcripts").glob("*.json"))


def _modes() -> list[str]:
    if os.environ.get("SECAGG_HARNESS_COMMAND"):
        return ["jsonl"]
    if os.environ.get("SECAGG_IMPLEMENTATION"):
        return ["inprocess"]
    chosen = os.environ.get("SECAGG_CONFORMANCE_HARNESS", "both")
    return ["inprocess", "jsonl"] if chosen == "both" else [chosen]


@pytest.fixture(scope="session", params=_modes())
def impl(request):
    if request.param == "inprocess":
        yield load_in_process()
        return
    command = os.environ.get("SECAGG_HARNESS_COMMAND") or [sys.executable, "-m", "tests.conformance.jsonl"]
    harness = SubprocessImplementation(command, cwd=None if os.environ.get("SECAGG_HARNESS_COMMAND") else ROOT)
    yield harness
    harness.close()
