"""Review 13, attack family 1: one honest update out of two sums.

The coordinator wants the same participant's update (same model, same data) in two sums over
different cohorts: their difference is that update. Claim 10: a FedAvg participant contributes
at most once per request (model values and its own settings), whatever round number, cohort,
rotation seed, session or encoding carries it; claim 17: taking a session up again never answers
a different request; claim 6: a client never takes a session id twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("grpc")

from secagg.errors import ParameterError, ProtocolViolation  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402
from secagg.fedavg.network import FedAvgClient, FedAvgTask  # noqa: E402
from secagg.protocol.messages import AdvertiseKeys, decode_message  # noqa: E402
from secagg.transport.envelope import Envelope, Kind, vector_blob  # noqa: E402
from secagg.transport.network import NetworkClient, TLSConfig  # noqa: E402
from secagg.transport.sessions import MaskingSpec  # noqa: E402
from tests.review13.driver import drive  # noqa: E402

INSECURE = TLSConfig(insecure=True)
DOCS = Path(__file__).resolve().parents[2] / "docs"


def data(seed=0):
    X = np.random.default_rng(seed).normal(size=(40, 13))
    return X, (X[:, 0] > 0).astype(np.int64)


def plain_job():
    # a batch larger than the data: local training is deterministic (the documented residual's set-up)
    return FedAvg(NumpyLogisticRegression(13), rounds=3, clients_per_round=4, max_weight=300.0, batch_size=64, seed=0)


def session(task, **changes):
    """The coordinator's SESSION envelope for its next round (as Coordinator._run_session builds it)."""
    plan = task.next_session()
    header = {**plan.header, **plan.spec.header(), "session_id": changes.pop("session_id", "5a" * 16),
              "cohort": list(plan.cohort)}
    header.update(changes.pop("header", {}))
    return plan, Envelope(Kind.SESSION, header, changes.pop("blob", plan.blob))


# ----------------------------------------------------------------------------- the same request, retagged

def test_the_same_model_is_declined_under_another_round_cohort_rotation_seed_session_or_encoding():
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    def make():
        return FedAvg(NumpyLogisticRegression(13), rounds=3, clients_per_round=4, max_weight=300.0, seed=0,
                      dp=DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.25))

    task = FedAvgTask(make(), 5)
    client = FedAvgClient(make(), 0, *data(), num_clients=5)
    plan = task.next_session()
    header = {**plan.header, "cohort": [0, 1, 2, 3]}
    assert "signs_seed" in header  # the rotation's public seed: chosen by the coordinator
    assert client.prepare(plan.spec, header, plan.blob) is not None
    client.contributed(header)
    model = np.frombuffer(plan.blob, dtype="<f8")
    negative_zeros = vector_blob(np.where(model == 0, -0.0, model))
    config = plan.spec.config
    from secagg.protocol.config import SecAggConfig

    stronger = MaskingSpec(SecAggConfig(num_clients=4, threshold=3, vector_length=config.vector_length,
                                        modulus_bits=config.modulus_bits + 8, malicious=False))
    for spec, changed, blob in (
            (plan.spec, {"round": 2}, plan.blob),
            (plan.spec, {"cohort": [0, 2, 3, 4]}, plan.blob),
            (plan.spec, {"signs_seed": "77" * 32}, plan.blob),
            (stronger, {}, plan.blob),
            (plan.spec, {}, negative_zeros)):
        assert client.prepare(spec, {**header, **changed}, blob) is None, changed
    assert client.rounds_trained == 1


def test_a_model_one_ulp_away_is_a_new_request_as_documented_and_nothing_more():
    # The documented residual (docs/security.md, "Difference across rounds"): no exact-match guard
    # tells a near-identical model from a real next round. Confirm it is documented ...
    security = (DOCS / "security.md").read_text()
    assert "one ulp" in security and "no exact-match guard" in security
    assert "only distributed DP" in security.replace("\n", " ").replace("  ", " ")
    # ... and that it is what the participant does: the ulp model is trained again
    task = FedAvgTask(plain_job(), 4)
    client = FedAvgClient(plain_job(), 0, *data(), num_clients=4)
    plan = task.next_session()
    header = {**plan.header, "cohort": list(plan.cohort)}
    first = client.prepare(plan.spec, header, plan.blob)
    client.contributed(header)
    model = np.frombuffer(plan.blob, dtype="<f8").copy()
    model[0] = np.nextafter(model[0], 1.0)
    second = client.prepare(plan.spec, {**header, "round": 1}, vector_blob(model))
    assert second is not None
    # deterministic training: the same encoded update up to the fixed-point step, as documented
    difference = (second.astype(np.int64) - first.astype(np.int64)) % (1 << plan.spec.config.modulus_bits)
    assert np.all((difference <= 1) | (difference >= (1 << plan.spec.config.modulus_bits) - 1))


# ----------------------------------------------------------------------------- the same session id

def network_participant(state_dir=None):
    task = FedAvgClient(plain_job(), 0, *data(), num_clients=4, state_dir=state_dir)
    return task, NetworkClient("unused:0", 0, task, tls=INSECURE, policy=task.policy(4))


def test_a_session_id_announced_again_with_another_header_or_model_is_refused():
    fedavg_task = FedAvgTask(plain_job(), 4)
    plan, first = session(fedavg_task)
    for again in (Envelope(Kind.SESSION, {**first.header, "round": 1}, first.blob),
                  Envelope(Kind.SESSION, first.header, vector_blob(np.frombuffer(first.blob, "<f8") + 0.5))):
        task, client = network_participant()
        error, sent = drive(client, [first, again])
        assert [e.kind for e in sent] == [Kind.PROTOCOL, Kind.REFUSE]
        assert isinstance(decode_message(sent[0].blob), AdvertiseKeys)
        assert isinstance(error, ProtocolViolation) and "reused session id" in str(error)
        assert task.rounds_trained == 1


def test_a_session_announced_again_in_other_json_types_is_taken_up_never_retrained():
    # dict equality reads 0 and 0.0 (and True and 1) alike: the re-announcement counts as word for
    # word and the client takes the session up, i.e. resends the same AdvertiseKeys bytes (nothing new)
    fedavg_task = FedAvgTask(plain_job(), 4)
    plan, first = session(fedavg_task)
    retyped = Envelope(Kind.SESSION, {**first.header, "round": 0.0}, first.blob)
    task, client = network_participant()
    error, sent = drive(client, [first, retyped])
    assert [e.kind for e in sent] == [Kind.PROTOCOL, Kind.PROTOCOL]
    assert sent[0].blob == sent[1].blob and task.rounds_trained == 1
    assert type(error).__name__ == "_Ended"  # then the stream ended: no refusal, nothing else sent


def test_a_restarted_participant_with_a_state_dir_never_takes_a_session_id_it_took_before(tmp_path):
    # review 13 (low): the session ids a participant had taken lived in memory only; with a
    # state_dir the one-update digests survived a restart but the seen session ids did not
    fedavg_task = FedAvgTask(plain_job(), 4)
    plan, first = session(fedavg_task)
    task, client = network_participant(tmp_path)
    error, sent = drive(client, [first, Envelope(Kind.SESSION_END, {"aborted": "restart"})])
    assert [e.kind for e in sent] == [Kind.PROTOCOL]  # took session 5a5a... (keys sent), then it aborted
    task.close()
    # the participant's process restarts on the same state directory; the coordinator replays the
    # id (with another model: the digest guard has nothing to say)
    task, client = network_participant(tmp_path)
    replay = Envelope(Kind.SESSION, first.header, vector_blob(np.frombuffer(first.blob, "<f8") + 0.25))
    error, sent = drive(client, [replay])
    task.close()
    assert [e.kind for e in sent] == [Kind.REFUSE], f"took session {first.header['session_id'][:8]} again: {[e.kind.name for e in sent]}"
    assert isinstance(error, ProtocolViolation) and "reused session id" in str(error) and task.rounds_trained == 0


def test_a_restarted_participant_declines_the_very_announcement_it_took_before(tmp_path):
    # an honest coordinator still in its join window announces the session again to a participant
    # that restarted before its keys arrived: nothing of that session is left, so it sits it out
    # (never takes the id again, never leaves the job over it)
    fedavg_task = FedAvgTask(plain_job(), 4)
    plan, first = session(fedavg_task)
    task, client = network_participant(tmp_path)
    drive(client, [first])
    task.close()
    task, client = network_participant(tmp_path)
    error, sent = drive(client, [first, first])
    task.close()
    assert [e.kind for e in sent] == [Kind.DECLINE, Kind.DECLINE] and task.rounds_trained == 0
    assert type(error).__name__ == "_Ended"  # no refusal: the stream simply ended


def test_a_participant_state_written_before_session_ids_were_kept_still_loads(tmp_path):
    (tmp_path / "participant-0.json").write_text('{"contributed": ["ab"]}')
    task, _ = network_participant(tmp_path)
    task.close()
    assert task.contributed_requests == {"ab"} and task.taken_sessions() == {}
    (tmp_path / "participant-0.json").write_text('{"contributed": ["ab"], "sessions": ["5a"]}')
    with pytest.raises(ParameterError, match="not a participant state"):
        network_participant(tmp_path)
