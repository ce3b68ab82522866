"""The key ceremony's test vectors (protocols/vectors/dkg/, spec protocols/dkg-v1.md) against the code:
the files are what the generator writes now, every party rebuilt from the transcript alone replays it
byte for byte, every refusal case is refused with its kind and party and changes nothing, the codec
cases decode (or not) as they say, and the parameter tables are DkgConfig's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gmpy2")

from secagg.errors import MalformedMessage  # noqa: E402
from secagg.paillier.dkg import DkgConfig  # noqa: E402
from secagg.paillier.dkg.arithmetic import derived_set, draw_below, draw_bits, draw_residues, pack_residues, \
    public_element, public_integer  # noqa: E402
from secagg.paillier.dkg.messages import RoundKind, decode_dkg_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocols" / "vectors" / "dkg"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_dkg_vectors", ROOT / "protocols" / "generate_dkg_vectors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_dkg_vectors"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["generate_dkg_vectors"]
    return module


GENERATOR = _generator()


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


TRANSCRIPT = load("transcript.json")
REFUSALS = load("refusals.json")


def test_dkg_vector_files_match_what_the_code_generates():
    generated = GENERATOR.all_vectors()
    for name, text in generated.items():
        assert (VECTORS / name).read_text() == text, f"{name} is stale: run protocols/generate_dkg_vectors.py"
    assert {p.name for p in VECTORS.glob("*.json")} == set(generated)


def test_every_party_rebuilt_from_the_transcript_replays_it_byte_for_byte():
    GENERATOR.check_transcript(TRANSCRIPT)
    assert TRANSCRIPT["outcome"]["batches"] == 2  # a batch that fails and one that succeeds
    messages = [decode_dkg_message(bytes.fromhex(s["message"])) for s in TRANSCRIPT["messages"]]
    assert {type(m).__name__ for m in messages} == {"Hello", "Keys", "RoundMessage", "Bundle"}
    assert {m.kind for m in messages if hasattr(m, "kind")} == set(RoundKind)  # every round kind


@pytest.mark.parametrize("case", REFUSALS["bank"], ids=lambda c: f"{c['rule']}-{c['why']}")
def test_a_bank_refuses_each_case_and_goes_on_unchanged(case):
    GENERATOR.check_bank_case(GENERATOR.Replay(TRANSCRIPT), case)


@pytest.mark.parametrize("case", REFUSALS["coordinator"], ids=lambda c: f"{c['rule']}-{c['why']}")
def test_the_coordinator_refuses_each_case_and_goes_on_unchanged(case):
    GENERATOR.check_coordinator_case(GENERATOR.Replay(TRANSCRIPT), case)


@pytest.mark.parametrize("case", load("codec.json")["valid"], ids=lambda c: c["type"])
def test_valid_ceremony_messages_round_trip(case):
    data = bytes.fromhex(case["encoding"])
    assert data[5] == case["type_code"] and decode_dkg_message(data).encode() == data


@pytest.mark.parametrize("case", load("codec.json")["invalid"], ids=lambda c: f"{c['rule']}-{c['why']}")
def test_invalid_ceremony_messages_are_malformed(case):
    with pytest.raises(MalformedMessage):
        decode_dkg_message(bytes.fromhex(case["encoding"]))


@pytest.mark.parametrize("case", load("parameters.json")["cases"], ids=lambda c: f"n{c['banks']}-k{c['key_bits']}")
def test_parameter_tables_are_the_configs(case):
    config = DkgConfig(case["banks"], case["threshold"], case["key_bits"], corrupt=case["corrupt"], batch=case["batch"],
                       max_batches=case["max_batches"], confirm_bases=case["confirm_bases"], insecure=case["insecure"])
    assert config.digest().hex() == case["digest"]
    assert list(config.sieve_primes) == case["sieve_primes"] and list(config.attempts) == case["attempts"]
    assert str(config.crt_modulus) == case["crt_modulus"] and config.wrap_bits == case["wrap_bits"]
    assert str(config.random_multiple_bound) == case["random_multiple_bound"]
    if "P2" in case:
        assert [str(e) for e in config.crt_basis] == case["crt_basis"]
        assert (str(config.modulus_field), str(config.key_field)) == (case["P1"], case["P2"])


def test_primitive_vectors():
    data = load("primitives.json")
    draws = data["draw_residues"]
    values = draw_residues(GENERATOR._Bytes(bytes.fromhex(draws["bytes"])), np.array(draws["moduli"]), draws["rows"])
    assert values.tolist() == draws["values"]
    below = data["draw_below"]
    assert str(draw_below(GENERATOR._Bytes(bytes.fromhex(below["bytes"])), int(below["bound"]))) == below["value"]
    bits = data["draw_bits"]
    assert str(draw_bits(GENERATOR._Bytes(bytes.fromhex(bits["bytes"])), bits["bits"])) == bits["value"]
    packing = data["packing"]
    assert pack_residues(np.array(packing["values"]), np.array(packing["moduli"])).hex() == packing["packed"]
    for case in data["derived_banks"]:
        assert derived_set(case["dealer"], case["degree"], case["banks"]) == case["derived"]
    for case in data["public_integer"]:
        value = public_integer(case["label"].encode(), bytes.fromhex(case["context"]), case["bits"])
        assert str(value) == case["value"]
    for case in data["public_element"]:
        value = public_element(case["label"].encode(), bytes.fromhex(case["context"]), int(case["modulus"]))
        assert str(value) == case["value"]
