import json
from pathlib import Path

import pytest

from tests.conformance.adapter import load_implementation

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"


def load(name):
    return json.loads((VECTORS / name).read_text())


def transcripts():
    return sorted((VECTORS / "transcripts").glob("*.json"))


@pytest.fixture(scope="session")
def impl():
    return load_implementation()
