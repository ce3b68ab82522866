"""Primitive and codec vectors, replayed through the adapter; and the vectors are current."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.conformance.conftest import VECTORS, load


@pytest.mark.skipif(bool(os.environ.get("SECAGG_IMPLEMENTATION")), reason="checks secagg's own output")
def test_vector_files_match_what_the_code_generates():
    path = Path(__file__).resolve().parents[2] / "protocols" / "generate_vectors.py"
    spec = importlib.util.spec_from_file_location("generate_vectors", path)
    generator = importlib.util.module_from_spec(spec)
    sys.modules["generate_vectors"] = generator  # its dataclasses look their module up
    try:
        spec.loader.exec_module(generator)
        generated = generator.all_vectors()
    finally:
        del sys.modules["generate_vectors"]
    for relative, text in generated.items():
        assert (VECTORS / relative).read_text() == text, f"{relative} is stale: run protocols/generate_vectors.py"
    on_disk = {str(p.relative_to(VECTORS)) for p in VECTORS.rglob("*.json")
               if p.relative_to(VECTORS).parts[0] not in generator.OWNED_ELSEWHERE}
    assert on_disk == set(generated), f"vector files the generator no longer writes: {on_disk - set(generated)}"


@pytest.mark.parametrize("case", load("kdf.json")["cases"], ids=lambda c: c["label"])
def test_kdf(impl, case):
    okm = impl.hkdf(bytes.fromhex(case["ikm"]), case["label"], bytes.fromhex(case["context"]), case["length"])
    assert okm.hex() == case["okm"]


@pytest.mark.parametrize("case", load("prg.json")["cases"], ids=lambda c: f"k{c['modulus_bits']}-m{c['count']}")
def test_prg(impl, case):
    values = impl.prg(bytes.fromhex(case["seed"]), case["count"], case["modulus_bits"])
    assert [str(v) for v in values] == case["elements"]


@pytest.mark.parametrize("case", load("shamir.json")["cases"],
                         ids=lambda c: f"t{c['threshold']}" + ("-G2-rejections" if "rejections" in c else ""))
def test_shamir(impl, case):
    shares = impl.shamir_share(case["limbs"], case["threshold"], case["holders"],
                               bytes.fromhex(case["coefficient_randomness"]))
    assert {str(h): v for h, v in shares.items()} == case["shares"]
    subset = case["reconstruct_from"]
    limbs = impl.shamir_reconstruct(subset, [case["shares"][str(h)] for h in subset])
    assert limbs == case["limbs"]


@pytest.mark.parametrize("case", load("holders.json")["cases"],
                         ids=lambda c: f"G1-u{c['client']}-n{c['num_clients']}-k{c['holders_to_draw']}")
def test_holder_draws(impl, case):
    holders = impl.draw_holders(case["client"], case["num_clients"], case["holders_to_draw"],
                                bytes.fromhex(case["randomness"]))
    assert holders == case["holders"]


@pytest.mark.parametrize("case", load("transcript_tree.json")["cases"], ids=lambda c: f"size{len(c['leaves'])}")
def test_transcript_tree(impl, case):
    root, paths = impl.transcript_tree([bytes.fromhex(m) for m in case["advertise_keys"]])
    assert root.hex() == case["root"]
    assert [[h.hex() for h in path] for path in paths] == case["audit_paths"]


@pytest.mark.parametrize("case", load("codec.json")["valid"], ids=lambda c: c["type"])
def test_valid_encodings_round_trip(impl, case):
    data = bytes.fromhex(case["encoding"])
    assert impl.reencode(data) == data


@pytest.mark.parametrize("case", load("codec.json")["invalid"], ids=lambda c: f"{c['rule']}-{c['why']}")
def test_invalid_encodings_are_malformed(impl, case):
    with pytest.raises(Exception) as info:
        impl.reencode(bytes.fromhex(case["encoding"]))
    assert impl.error_kind(info.value) == "malformed"
