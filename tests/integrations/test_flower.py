"""secagg as Flower's secure aggregation: the client mod and the server workflow, driven by Flower.

Every test runs a real Flower ClientApp (NumPyClient + the mod) and the real ``DefaultWorkflow``
with a ``LegacyContext`` and Flower's FedAvg strategy, over :class:`InProcessGrid`, which passes
messages and node contexts as Flower protobuf bytes. The Ray-backed ``run_simulation`` case is in
test_flower_simulation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD  # noqa: E402
from flwr.app import Context, RecordDict  # noqa: E402
from flwr.compat.common import recorddict_compat as compat  # noqa: E402

from secagg.errors import ParameterError, ProtocolViolation  # noqa: E402
from secagg.integrations.flower import (  # noqa: E402
    RECORD_KEY,
    SecAggMaskingWorkflow,
    SessionSetup,
    secagg_masking_mod,
)
from secagg.integrations.flower import mod as mod_module  # noqa: E402
from secagg.protocol.messages import MaskedInput, decode_message  # noqa: E402
from tests.integrations.inprocess_grid import InProcessGrid  # noqa: E402

SHAPES = [(3, 4), (5,)]
STEP = 2.0**-8  # updates on this grid and integer weights encode without rounding: the sum is exact


def client_update(partition: int) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + partition)
    return [rng.integers(-256, 257, size=s) * STEP for s in SHAPES]


def client_weight(partition: int) -> int:
    return 10 + 7 * partition


class FixedClient(NumPyClient):
    """Returns global + a known update with a known weight; partition 0 can be told to crash."""

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(self, parameters, config):
        if str(self.partition) in config.get("crash", "").split(","):
            raise RuntimeError(f"client {self.partition} crashed while training")
        return ([p + u for p, u in zip(parameters, client_update(self.partition))],
                client_weight(self.partition), {"partition": self.partition})


def client_app(mods=None) -> ClientApp:
    def client_fn(context: Context):
        return FixedClient(int(context.node_config["partition-id"])).to_client()
    return ClientApp(client_fn=client_fn, mods=[secagg_masking_mod] if mods is None else mods)


def initial() -> list[np.ndarray]:
    return [np.full(s, 0.5) for s in SHAPES]


def run_fl(grid: InProcessGrid, workflow, *, rounds: int = 1, crash: str = "", config_fn=None) -> LegacyContext:
    n = len(grid.node_ids)
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                      initial_parameters=ndarrays_to_parameters(initial()),
                      on_fit_config_fn=lambda r: {"crash": crash, **(config_fn(r) if config_fn else {})})
    context = LegacyContext(Context(grid.run.run_id, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=rounds),
                            strategy=strategy)
    DefaultWorkflow(fit_workflow=workflow)(grid, context)
    return context


def final_parameters(context) -> list[np.ndarray]:
    return parameters_to_ndarrays(compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                                                   keep_input=True))


def expected_average(partitions) -> list[np.ndarray]:
    weights = np.array([client_weight(p) for p in partitions], dtype=np.float64)
    out = []
    for i in range(len(SHAPES)):
        weighted = sum(w * client_update(p)[i] for w, p in zip(weights, partitions))  # exact: small dyadic values
        out.append(initial()[i] + weighted / weights.sum())
    return out


@pytest.fixture(params=["cached", "replayed"])
def session_cache(request, monkeypatch):
    """Run each test with the live-session cache and without it (every round rebuilt from the context)."""
    if request.param == "replayed":
        monkeypatch.setattr(mod_module._LIVE, "size", 0)
    mod_module._LIVE.clear()
    yield request.param
    mod_module._LIVE.clear()


def test_twelve_clients_one_crashes_after_sharing_keys_exact_weighted_average(session_cache):
    n, crashed = 12, 4
    grid = InProcessGrid(client_app(), n)
    workflow = SecAggMaskingWorkflow(neighbors=6, threshold=4, dropout_fraction=0, corrupt_fraction=0)
    context = run_fl(grid, workflow, crash=str(crashed))
    report = workflow.reports[-1]
    assert report.ok, report.aborted
    crashed_node = grid.node_ids[crashed]
    assert report.dropped["masked_input"] == [crashed_node]
    assert report.survivors == [node for node in grid.node_ids if node != crashed_node]
    assert report.config.neighbors == 6 and report.config.threshold == 4
    survivors = [p for p in range(n) if p != crashed]
    assert report.total_weight == sum(client_weight(p) for p in survivors)
    for got, want in zip(final_parameters(context), expected_average(survivors)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert any("crashed while training" in f for f in report.failures)


def test_timeouts_in_every_round_are_dropouts(session_cache):
    """Nodes that never answer (before keys, before shares, before the masked input, before
    unmasking) drop out; the aggregate holds exactly the nodes whose masked input arrived."""
    n = 12
    silent = {1: "advertise_keys", 5: "share_keys", 8: "masked_input", 10: "unmasking"}

    def fault(partition, node, message):
        record = message.content.config_records.get(RECORD_KEY)
        return "timeout" if record is not None and silent.get(partition) == record["round"] else None

    grid = InProcessGrid(client_app(), n, fault=fault)
    workflow = SecAggMaskingWorkflow(neighbors=None, threshold=7, timeout=5.0)
    context = run_fl(grid, workflow)
    report = workflow.reports[-1]
    assert report.ok, report.aborted
    in_sum = [p for p in range(n) if p not in (1, 5, 8)]  # 10 sent its masked input, then went silent
    assert report.survivors == [grid.node_ids[p] for p in in_sum]
    assert {name: ids for name, ids in report.dropped.items() if ids} == {
        "advertise_keys": [grid.node_ids[1]], "share_keys": [grid.node_ids[5]],
        "masked_input": [grid.node_ids[8]], "unmasking": [grid.node_ids[10]]}
    for got, want in zip(final_parameters(context), expected_average(in_sum)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_too_many_dropouts_abort_and_leave_the_model_unchanged():
    n = 6

    def fault(partition, node, message):
        record = message.content.config_records.get(RECORD_KEY)
        return "crash" if partition < 3 and record is not None and record["round"] == "masked_input" else None

    grid = InProcessGrid(client_app(), n, fault=fault)
    workflow = SecAggMaskingWorkflow(neighbors=None, threshold=4)
    context = run_fl(grid, workflow)
    report = workflow.reports[-1]
    assert not report.ok and "fewer than the threshold" in report.aborted
    for got, want in zip(final_parameters(context), initial()):
        np.testing.assert_array_equal(got, want)


def test_two_rounds_train_on(session_cache):
    grid = InProcessGrid(client_app(), 10)
    workflow = SecAggMaskingWorkflow()  # neighbours and threshold chosen for n = 10
    context = run_fl(grid, workflow, rounds=2)
    assert [r.ok for r in workflow.reports] == [True, True]
    want = expected_average(range(10))
    second = [w + (w - i) for w, i in zip(want, initial())]  # the same update applied twice
    for got, exp in zip(final_parameters(context), second):
        np.testing.assert_allclose(got, exp, rtol=0, atol=1e-12)
    for node in grid.node_ids:  # a finished session leaves no secret behind in the node's context
        assert "secagg.masking.state" not in grid.context(node).state.config_records


# ---------------------------------------------------------------------------- what the server holds

def _looks_unmasked(values: np.ndarray, setup_bits: int, plain: np.ndarray, fractional_bits: int) -> float:
    """Fraction of coordinates where ``values`` decodes to the plaintext weighted update."""
    shift = np.uint64(64 - setup_bits)
    signed = (values.astype(np.uint64) << shift).view(np.int64) >> shift.astype(np.int64)
    return float(np.mean(np.abs(signed[:-1] / 2.0**fractional_bits - plain) <= 1.0 / 2**fractional_bits))


def _check_server_never_sees_an_individual_update(grid, workflow, mods_weighted_updates):
    report = workflow.reports[-1]
    bits, f = report.config.modulus_bits, workflow.fractional_bits
    masked_seen = 0
    for reply in grid.replies:
        assert not reply.content.array_records, "a reply carried model parameters"
        assert not reply.content.metric_records, "a reply carried metrics records (e.g. num_examples)"
        record = reply.content.config_records.get(RECORD_KEY)
        if record is None or record["round"] != "masked_input":
            continue
        message = decode_message(record["message"])
        assert isinstance(message, MaskedInput)
        partition = grid.partition[reply.metadata.src_node_id]
        plain = mods_weighted_updates[partition]
        assert _looks_unmasked(message.values, bits, plain, f) < 0.01
        masked_seen += 1
    return masked_seen


def test_the_server_never_holds_an_unmasked_individual_update(session_cache):
    n = 10
    grid = InProcessGrid(client_app(), n)
    workflow = SecAggMaskingWorkflow(neighbors=4, threshold=3, dropout_fraction=0, corrupt_fraction=0)
    seen_by_strategy = []

    class Spy(FedAvg):
        def aggregate_fit(self, server_round, results, failures):
            seen_by_strategy.extend(parameters_to_ndarrays(r.parameters) for _, r in results)
            assert {r.num_examples for _, r in results} == {round(sum(map(client_weight, range(n))) / n)}
            return super().aggregate_fit(server_round, results, failures)

    strategy = Spy(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                   initial_parameters=ndarrays_to_parameters(initial()))
    context = LegacyContext(Context(grid.run.run_id, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=1),
                            strategy=strategy)
    DefaultWorkflow(fit_workflow=workflow)(grid, context)
    weighted = {p: client_weight(p) * np.concatenate([u.ravel() for u in client_update(p)]) for p in range(n)}
    assert _check_server_never_sees_an_individual_update(grid, workflow, weighted) == n
    # the strategy gets the average only: the same parameters for every survivor
    average = expected_average(range(n))
    assert len(seen_by_strategy) == n
    for arrays in seen_by_strategy:
        for got, want in zip(arrays, average):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_the_unmasked_check_catches_an_unmasked_update():
    """The detector above is not vacuous: an encoded but unmasked update is flagged."""
    from secagg.encoding import FixedPointEncoder

    encoder = FixedPointEncoder(num_clients=10, max_weight=1000.0, clip=8.0, fractional_bits=16)
    plain = client_weight(3) * np.concatenate([u.ravel() for u in client_update(3)])
    encoded = encoder.encode(plain, client_weight(3), np.random.default_rng(0))
    assert _looks_unmasked(encoded, encoder.modulus_bits, plain, 16) == 1.0


def test_a_node_refuses_a_train_message_without_secagg_instructions():
    """With the mod installed, a plain FedAvg server gets an error reply, never the update."""
    grid = InProcessGrid(client_app(), 4)
    context = run_fl(grid, None)  # DefaultWorkflow's own fit workflow
    assert grid.replies and all(r.has_error() for r in grid.replies)
    assert all("unmasked update" in r.error.reason for r in grid.replies)
    for got, want in zip(final_parameters(context), initial()):
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------- setup validation

def _setup_record(**changes):
    workflow = SecAggMaskingWorkflow(neighbors=4, threshold=3, dropout_fraction=0, corrupt_fraction=0)
    setup = workflow._setup([11, 22, 33, 44, 55, 66], 20)
    record = setup.to_record(2)
    record.update(changes)
    return record


def test_setup_round_trips():
    setup, client_id = SessionSetup.from_record(_setup_record(), 33)
    assert client_id == 2 and setup.node_ids == (11, 22, 33, 44, 55, 66)
    assert setup.config.neighbors == 4 and setup.dimension == 20


@pytest.mark.parametrize("changes, node, why", [
    ({"modulus_bits": 8}, 33, "cannot hold the sum"),
    ({"threshold": 9}, 33, "threshold"),
    ({"client_id": 3}, 33, "not that node's place"),
    ({"node_ids": [11, 33, 22, 44, 55, 66]}, 33, "strictly increasing"),
    ({"malicious": 1}, 33, "not a bool"),
    ({"version": 2}, 33, "version"),
    ({"session_id": b"short"}, 33, "session_id"),
])
def test_clients_refuse_a_bad_setup(changes, node, why):
    with pytest.raises(ProtocolViolation, match=why) as info:
        SessionSetup.from_record(_setup_record(**changes), node)
    assert info.value.party == "server"


def test_workflow_refuses_bad_parameters():
    with pytest.raises(ParameterError):
        SecAggMaskingWorkflow(clip=0)
    with pytest.raises(ParameterError):
        SecAggMaskingWorkflow(threshold=1.5)
    with pytest.raises(ParameterError):
        SecAggMaskingWorkflow(malicious=True)  # no verify keys
    with pytest.raises(ParameterError):
        SecAggMaskingWorkflow(timeout=-1)


def test_missing_flwr_names_the_extra(monkeypatch):
    import importlib
    import sys

    for name in [m for m in sys.modules if m.startswith("secagg.integrations.flower")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flwr", None)
    with pytest.raises(ImportError, match=r"secagg\[flower\]"):
        importlib.import_module("secagg.integrations.flower")


# ---------------------------------------------------------------------------- malicious-server mode

def test_malicious_mode_with_a_trusted_key_directory(session_cache):
    from secagg.crypto.randomness import system_randomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.integrations.flower import make_secagg_masking_mod

    n, crashed = 10, 6
    probe = InProcessGrid(client_app(), n)  # same seed: the same node ids as the grid below
    identities = {node: IdentityKey.generate(system_randomness()) for node in probe.node_ids}
    directory = {node: key.public_bytes for node, key in identities.items()}
    mods = {node: make_secagg_masking_mod(identity=identities[node], verify_keys=directory)
            for node in probe.node_ids}

    def by_node(msg, ctxt, call_next):
        return mods[msg.metadata.dst_node_id](msg, ctxt, call_next)

    grid = InProcessGrid(client_app(mods=[by_node]), n)
    workflow = SecAggMaskingWorkflow(neighbors=None, threshold=6, malicious=True, verify_keys=directory)
    context = run_fl(grid, workflow, crash=str(crashed))
    report = workflow.reports[-1]
    assert report.ok, report.aborted
    assert report.config.malicious
    survivors = [p for p in range(n) if p != crashed]
    for got, want in zip(final_parameters(context), expected_average(survivors)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_a_node_without_an_identity_refuses_malicious_mode():
    n = 4
    grid = InProcessGrid(client_app(), n)
    directory = {node: bytes(32) for node in grid.node_ids}
    workflow = SecAggMaskingWorkflow(neighbors=None, threshold=3, malicious=True, verify_keys=directory,
                                     corrupt_fraction=0)
    run_fl(grid, workflow)
    assert not workflow.reports[-1].ok
    assert all(r.has_error() and "no identity key" in r.error.reason for r in grid.replies)


def test_a_reply_that_breaks_the_protocol_is_a_dropout(session_cache):
    """A node whose masked input is garbage (here: its bytes cut short) is refused and dropped;
    the round completes with the others."""
    from flwr.app import ConfigRecord

    n, bad = 10, 7

    def corrupting(msg, ctxt, call_next):
        reply = secagg_masking_mod(msg, ctxt, call_next)
        record = reply.content.config_records[RECORD_KEY]
        if int(ctxt.node_config["partition-id"]) == bad and record["round"] == "masked_input":
            reply.content.config_records[RECORD_KEY] = ConfigRecord({"round": "masked_input",
                                                                     "message": record["message"][:-8]})
        return reply

    grid = InProcessGrid(client_app(mods=[corrupting]), n)
    workflow = SecAggMaskingWorkflow(neighbors=None, threshold=6)
    context = run_fl(grid, workflow)
    report = workflow.reports[-1]
    assert report.ok, report.aborted
    assert report.dropped["masked_input"] == [grid.node_ids[bad]]
    assert [f for f in report.failures if f.startswith(f"masked_input: node {grid.node_ids[bad]}:")]
    survivors = [p for p in range(n) if p != bad]
    for got, want in zip(final_parameters(context), expected_average(survivors)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
