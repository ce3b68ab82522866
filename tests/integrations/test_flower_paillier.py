"""The Paillier path on Flower: SecAggPaillierWorkflow and one bank mod per node, driven by Flower's
DefaultWorkflow over InProcessGrid (messages and node contexts pass as Flower protobuf bytes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("gmpy2")

from flwr.app import Message, RecordDict  # noqa: E402
from flwr.client import ClientApp  # noqa: E402

from secagg.crypto.randomness import TestOnlySeededRandomness  # noqa: E402
from secagg.crypto.signatures import IdentityKey  # noqa: E402
from secagg.errors import ParameterError  # noqa: E402
from secagg.integrations.flower import (  # noqa: E402
    PAILLIER_RECORD_KEY,
    SecAggPaillierWorkflow,
    make_secagg_paillier_mod,
)
from secagg.integrations.flower.paillier import PAILLIER_STATE_KEY  # noqa: E402
from secagg.paillier import generate_threshold_keypair  # noqa: E402
from secagg.paillier.messages import Contribution, PartialDecryptions, decode_paillier_message  # noqa: E402
from secagg.paillier.roles import partials_payload  # noqa: E402
from secagg.paillier.threshold import safe_prime  # noqa: E402
from tests.integrations.inprocess_grid import InProcessGrid  # noqa: E402
from tests.integrations.test_flower import (  # noqa: E402
    SHAPES,
    FixedClient,
    expected_average,
    final_parameters,
    run_fl,
)

BANKS, T = 5, 3


@pytest.fixture(scope="module")
def keys():
    p = safe_prime(256)
    q = safe_prime(256)
    while q == p:
        q = safe_prime(256)
    public, shares = generate_threshold_keypair(BANKS, T, primes=(p, q))
    identities = [IdentityKey.generate(TestOnlySeededRandomness(i, b"flower-bank")) for i in range(BANKS)]
    return public, shares, identities, {i: k.public_bytes for i, k in enumerate(identities)}


def bank_app(keys, tamper=None, floor=None, ledgers=None, inbound=None):
    """Node with partition i is bank i; ``tamper(partition, round, reply_message)`` may alter its reply."""
    public, shares, identities, verify_keys = keys
    mods = [make_secagg_paillier_mod(share=shares[i], identity=identities[i], verify_keys=verify_keys,
                                     min_contributors=floor,
                                     ledger=None if ledgers is None else ledgers / f"bank{i}.json")
            for i in range(BANKS)]

    def app(message, context):
        partition = int(context.node_config["partition-id"])

        def client_fn(ctx):
            return FixedClient(partition).to_client()

        def tampering(msg, ctxt, call_next):
            if inbound is not None:
                msg = inbound(msg)
            reply = mods[partition](msg, ctxt, call_next)
            return tamper(partition, msg, reply) if tamper is not None else reply

        return ClientApp(client_fn=client_fn, mods=[tampering])(message, context)

    return app


def workflow(keys, grid, **kwargs):
    public, _, _, verify_keys = keys
    return SecAggPaillierWorkflow(public, {node: grid.partition[node] for node in grid.node_ids}, verify_keys,
                                  **kwargs)


def test_an_honest_round_gives_the_exact_weighted_average(keys):
    grid = InProcessGrid(bank_app(keys), BANKS)
    flow = workflow(keys, grid)
    context = run_fl(grid, flow)
    report = flow.reports[0]
    assert report.ok and report.survivors == grid.node_ids and report.misbehaving == {}
    for got, want in zip(final_parameters(context), expected_average(range(BANKS))):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)  # exact sums; one float division
    # what the server received from the banks: signed ciphertexts and proven partials, nothing else
    kinds = {type(decode_paillier_message(dict(r.content.config_records[PAILLIER_RECORD_KEY])["message"])).__name__
             for r in grid.replies}
    assert kinds == {Contribution.__name__, PartialDecryptions.__name__}


def test_a_cheating_bank_is_named_and_a_bank_crashing_before_decryption_leaves_the_sum_exact(keys):
    from flwr.app import ConfigRecord

    def cheat(partition, msg, reply):
        record = dict(reply.content.config_records[PAILLIER_RECORD_KEY])
        if partition != 1 or record["round"] != "decryption":
            return reply
        m = decode_paillier_message(record["message"])
        n = keys[0].n
        shifted = dataclasses.replace(m, values=((m.values[0] * (1 + n)) % (n * n),) + m.values[1:])
        bad = dataclasses.replace(shifted, signature=keys[2][1].sign(partials_payload(shifted)))  # its own key
        return Message(RecordDict({PAILLIER_RECORD_KEY: ConfigRecord({"round": "decryption",
                                                                      "message": bad.encode()})}), reply_to=msg)

    def fault(partition, node, message):
        record = message.content.config_records.get(PAILLIER_RECORD_KEY)
        return "crash" if partition == 4 and record is not None and record["round"] == "decryption" else None

    grid = InProcessGrid(bank_app(keys, tamper=cheat), BANKS, fault=fault)
    flow = workflow(keys, grid)
    context = run_fl(grid, flow)
    report = flow.reports[0]
    assert report.ok, report.aborted
    assert list(report.misbehaving) == [grid.node_ids[1]] and "proof" in report.misbehaving[grid.node_ids[1]]
    assert report.survivors == grid.node_ids  # bank 4 contributed, then crashed: in the sum
    for got, want in zip(final_parameters(context), expected_average(range(BANKS))):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_banks_refuse_to_decrypt_fewer_contributions_than_their_floor(keys):
    # the workflow would accept 3 contributions, every bank insists on 5: two crash before
    # contributing and nobody decrypts; the model stays where it was
    def fault(partition, node, message):
        record = message.content.config_records.get(PAILLIER_RECORD_KEY)
        return "crash" if partition in (0, 1) and record is not None and record["round"] == "contribution" else None

    grid = InProcessGrid(bank_app(keys, floor=5), BANKS, fault=fault)
    flow = workflow(keys, grid, min_contributors=3)
    context = run_fl(grid, flow)
    report = flow.reports[0]
    assert report.aborted is not None and "decryption" in report.aborted
    assert sum("fewer than 5" in f for f in report.failures) == BANKS  # every bank asked refused
    for got, start in zip(final_parameters(context), [np.full(s, 0.5) for s in SHAPES]):
        np.testing.assert_array_equal(got, start)


def test_a_bank_remembers_its_rounds_in_its_context_across_processes(keys):
    grid = InProcessGrid(bank_app(keys), BANKS)
    flow = workflow(keys, grid)
    run_fl(grid, flow, rounds=2)
    assert all(r.ok for r in flow.reports)
    import json

    state = json.loads(grid.context(grid.node_ids[0]).state.config_records[PAILLIER_STATE_KEY]["rounds"])
    rounds = state["sessions"][flow.session_id.hex()]
    assert list(state["sessions"]) == [flow.session_id.hex()]
    assert rounds["contributed"] == [1, 2] and rounds["decrypted"] == [1, 2]
    assert sorted(rounds["encodings"]) == ["1", "2"] and all(len(bytes.fromhex(e)) == 32
                                                             for e in rounds["encodings"].values())
    assert len(state["models"]) == 2


def _round_1_decryption_crashes(partition, node, message):
    """Every bank but bank 0 crashes when asked to decrypt round 1: the round aborts after the
    contributions went out."""
    record = message.content.config_records.get(PAILLIER_RECORD_KEY)
    first = record is not None and record["round"] == "decryption" and message.metadata.group_id == "1"
    return "crash" if first and partition != 0 else None


def test_a_bank_contributes_once_per_global_model(keys):
    # round 1 aborts after the contributions (every bank but one crashes when asked to decrypt);
    # round 2 sends the same model again: the banks refuse, whatever the server claims happened
    grid = InProcessGrid(bank_app(keys), BANKS, fault=_round_1_decryption_crashes)
    flow = workflow(keys, grid)
    run_fl(grid, flow, rounds=2)
    assert flow.reports[0].aborted is not None
    second = flow.reports[1]
    assert second.aborted is not None
    assert sum("contributes once per model" in f for f in second.failures) == BANKS


def test_the_same_model_under_another_fit_config_is_still_the_same_model(keys):
    # the review's bypass: round 2 resent the aborted round's model with an extra config key the
    # client ignores; the digest covered the config, so the banks contributed again
    grid = InProcessGrid(bank_app(keys), BANKS, fault=_round_1_decryption_crashes)
    flow = workflow(keys, grid)
    run_fl(grid, flow, rounds=2, config_fn=lambda r: {"nonce": str(r)})
    assert flow.reports[0].aborted is not None
    assert sum("contributes once per model" in f for f in flow.reports[1].failures) == BANKS


def test_the_same_model_serialized_another_way_is_still_the_same_model(keys):
    # the second review: the once-per-model digest hashed the serialized tensors, so resending the
    # aborted round's model as big-endian float64 (same values, other bytes) made it new
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import Message
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

    def big_endian_in_round_2(msg):
        record = msg.content.config_records.get(PAILLIER_RECORD_KEY)
        if msg.metadata.group_id != "2" or record is None or record["round"] != "contribution":
            return msg
        fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        fit_ins.parameters = ndarrays_to_parameters([a.astype(">f8") for a in parameters_to_ndarrays(fit_ins.parameters)])
        content = compat.fitins_to_recorddict(fit_ins, keep_input=True)
        content.config_records[PAILLIER_RECORD_KEY] = record
        rewritten = Message(content=content, dst_node_id=msg.metadata.dst_node_id,
                            message_type=msg.metadata.message_type, group_id=msg.metadata.group_id)
        rewritten.metadata.__dict__.update({k: v for k, v in msg.metadata.__dict__.items()
                                            if k not in ("_content", "_message_type")})
        return rewritten

    grid = InProcessGrid(bank_app(keys, inbound=big_endian_in_round_2), BANKS, fault=_round_1_decryption_crashes)
    flow = workflow(keys, grid)
    run_fl(grid, flow, rounds=2)
    assert flow.reports[0].aborted is not None
    assert sum("contributes once per model" in f for f in flow.reports[1].failures) == BANKS


def test_with_a_ledger_a_bank_remembers_even_with_a_fresh_context(keys, tmp_path):
    # the Flower Context lives as long as the SuperNode's run state; the ledger on the node's disk
    # survives it: a new grid (fresh contexts) asking for the same model gets nothing
    grid = InProcessGrid(bank_app(keys, ledgers=tmp_path), BANKS)
    first = workflow(keys, grid)
    run_fl(grid, first)
    assert first.reports[0].ok
    again = InProcessGrid(bank_app(keys, ledgers=tmp_path), BANKS)  # same nodes, empty contexts
    second = workflow(keys, again)
    run_fl(again, second)
    assert sum("contributes once per model" in f for f in second.reports[0].failures) == BANKS
    (tmp_path / "bank0.json").write_text("{broken")
    with pytest.raises(ParameterError, match="ledger"):
        make_secagg_paillier_mod(share=keys[1][0], identity=keys[2][0], verify_keys=keys[3],
                                 ledger=tmp_path / "bank0.json")


def test_the_workflow_refuses_nodes_without_a_share_and_unsafe_floors(keys):
    public, _, _, verify_keys = keys
    with pytest.raises(ParameterError, match="distinct bank ids"):
        SecAggPaillierWorkflow(public, {11: 0, 12: 0}, verify_keys)
    with pytest.raises(ParameterError, match="min_contributors"):
        SecAggPaillierWorkflow(public, {11: 0}, verify_keys, min_contributors=1)
    with pytest.raises(ParameterError, match="KeyShare"):
        make_secagg_paillier_mod(share=None, identity=keys[2][0], verify_keys=verify_keys)


def test_the_model_digest_and_the_ledger_merge_lose_nothing():
    # the third review: -0.0 made the same model new, and merging the ledger dropped the
    # encodings each round was contributed under
    from secagg.errors import SessionStateError
    from secagg.integrations.flower.paillier import _merge, _model_digest

    assert _model_digest([np.array([0.0, 1.5]), np.zeros((2, 2))]) == \
        _model_digest([np.array([-0.0, 1.5]), -np.zeros((2, 2), dtype=np.float32)])
    assert _model_digest([np.array([0.0, 1.5])]) != _model_digest([np.array([[0.0, 1.5]])])  # shapes count
    context = {"sessions": {"ab": {"contributed": [1], "decrypted": [], "encodings": {"1": "e1"}}}}
    ledger = {"sessions": {"ab": {"contributed": [1], "decrypted": [1], "encodings": {"1": "e1"}}}}
    assert _merge(context, ledger)["sessions"]["ab"] == {"contributed": [1], "decrypted": [1],
                                                         "encodings": {"1": "e1"}}
    with pytest.raises(SessionStateError, match="two encodings"):
        _merge(context, {"sessions": {"ab": {"contributed": [1], "encodings": {"1": "e2"}}}})
