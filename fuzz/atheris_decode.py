"""Coverage-guided fuzzing of decode_message with atheris (libFuzzer), for long runs.

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/atheris_decode.py -atheris_runs=2000000 fuzz/corpus

The corpus directory is seeded with every valid encoding from protocols/vectors/ on first use.
Any exception other than MalformedMessage, or an accepted input that is not canonical, is a crash.
"""

import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from secagg.errors import MalformedMessage
    from secagg.protocol.messages import decode_message

ROOT = Path(__file__).resolve().parents[1]


def seed_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    encodings = [c["encoding"] for c in json.loads((ROOT / "protocols/vectors/codec.json").read_text())["valid"]]
    for path in sorted((ROOT / "protocols/vectors/transcripts").glob("*.json")):
        encodings += [e["message"] for e in json.loads(path.read_text())["messages"] if "message" in e][:20]
    for i, hexed in enumerate(encodings):
        (directory / f"seed-{i:04d}").write_bytes(bytes.fromhex(hexed))


def test_one_input(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MalformedMessage:
        return
    if message.encode() != data:
        raise RuntimeError("accepted a non-canonical encoding")


if __name__ == "__main__":
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        seed_corpus(Path(corpus[0]))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
