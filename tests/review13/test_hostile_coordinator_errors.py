"""Review 13, attack family 4: denial of service and untyped crashes on the participant.

A coordinator can always make a client leave (docs/security.md, "Deny service"); what the
project promises is that every bad input gets a typed error and that a refusal travels (the
client sends REFUSE with the typed error before it leaves, docs/network.md "Refusals travel"),
so the coordinator stops waiting for it and the operator reads why. These tests feed hostile
envelopes to a real NetworkClient stream (tests/review13/driver.py, no gRPC).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("grpc")

from secagg.errors import ProtocolViolation  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402
from secagg.fedavg.network import FedAvgClient, FedAvgTask  # noqa: E402
from secagg.transport.envelope import Envelope, Kind, vector_blob  # noqa: E402
from secagg.transport.network import ClientPolicy, NetworkClient, TLSConfig  # noqa: E402
from secagg.transport.tasks import SumClient  # noqa: E402
from tests.review13.driver import drive, raw_envelope, stream_ended  # noqa: E402

INSECURE = TLSConfig(insecure=True)
SID = "3c" * 16
CONFIG = {"num_clients": 3, "threshold": 2, "vector_length": 4, "modulus_bits": 32, "neighbors": None,
          "malicious": False}
HUGE = 10**400  # a valid JSON integer (401 digits, below Python's 4300-digit parsing limit)


def sum_client():
    return NetworkClient("unused:0", 0, SumClient(np.zeros(4, dtype=np.uint32)), tls=INSECURE)


def announce(**changes):
    return Envelope(Kind.SESSION, {"session_id": SID, "config": CONFIG, "cohort": [0, 1, 2], **changes})


def with_json_infinity(envelope):
    """``envelope`` with every string "1e400" of its header written as the JSON number 1e400
    (which a JSON reader takes for infinity; ``json.dumps`` cannot write it)."""
    text = json.dumps(envelope.header, sort_keys=True, separators=(",", ":")).replace('"1e400"', "1e400")
    return raw_envelope(envelope.kind, text, envelope.blob)


def refused_with_a_typed_error(error, sent):
    return isinstance(error, ProtocolViolation) and [e.kind for e in sent][-1:] == [Kind.REFUSE]


# ----------------------------------------------------------------------------- refused properly

@pytest.mark.parametrize("envelopes, match", [
    ([announce(cohort=[[0], 1, 2])], "non-integer"),
    ([announce(cohort=["0", 1, 2])], "non-integer"),
    ([announce(cohort=[0, 1, 10**30])], "invalid cohort"),
    ([announce(cohort=[0, 1, 1 << 20])], "invalid cohort"),  # MAX_CLIENTS: no coordinator admits that id
    ([announce(cohort=[-1, 0, 1])], "invalid cohort"),
    ([announce(cohort=[0, 1, 1])], "invalid cohort"),
    ([announce(cohort={"0": 1})], "cohort"),
    ([announce(session_id=7)], "session_id"),
    ([with_json_infinity(announce(config={**CONFIG, "dropout_fraction": "1e400"}))], "invalid configuration"),
    ([announce(config={**CONFIG, "threshold": HUGE})], "invalid configuration"),
    ([Envelope(Kind.RESUME, {})], "session_id"),
    ([Envelope(Kind.RESUME, {"session_id": "zz"})], "invalid session id"),
    ([with_json_infinity(Envelope(Kind.HEARTBEAT, {"interval": "1e400"}))], "heartbeat interval"),
    ([Envelope(Kind.HEARTBEAT, {"interval": HUGE})], "heartbeat interval"),
    ([announce(), Envelope(Kind.PROTOCOL, blob=b"SAGG\x02\x07")], ""),  # out of order / malformed after keys
    ([announce(), Envelope(Kind.SESSION_END, {"aborted": "x"}), Envelope(Kind.PROTOCOL, blob=b"x")],
     "before the session"),
])
def test_malformed_cohorts_ids_resumes_heartbeats_and_messages_are_refused_with_typed_errors(envelopes, match):
    error, sent = drive(sum_client(), envelopes)
    assert refused_with_a_typed_error(error, sent), (error, sent)
    assert match in str(error)


@pytest.mark.parametrize("cohort", [[0, 1, 3], [0, 1, 10**30], [-1, 0, 1], [0, 0, 1]])
def test_a_cohort_outside_the_clients_this_client_knows_is_refused_before_any_state_changes(cohort):
    client = NetworkClient("unused:0", 0, SumClient(np.zeros(4, dtype=np.uint32)), tls=INSECURE,
                           policy=ClientPolicy(num_clients=3))
    error, sent = drive(client, [announce(cohort=cohort)])
    assert refused_with_a_typed_error(error, sent) and error.party == "server" and "invalid cohort" in str(error)
    # nothing was taken: the same session id, announced properly, is taken up (keys sent)
    error, sent = drive(client, [announce()])
    assert [e.kind for e in sent] == [Kind.PROTOCOL] and stream_ended(error)


def test_a_resume_for_a_session_this_client_never_held_is_declined_and_the_stream_goes_on():
    error, sent = drive(sum_client(), [Envelope(Kind.RESUME, {"session_id": SID}), announce()])
    assert [e.kind for e in sent] == [Kind.DECLINE, Kind.PROTOCOL] and stream_ended(error)


# ----------------------------------------------------------------------------- crashes

@pytest.mark.parametrize("name", ["dropout_fraction", "corrupt_clients", "num_clients", "neighbors",
                                  "vector_length", "modulus_bits"])
def test_a_huge_integer_in_the_masking_config_is_refused_and_the_refusal_travels(name):
    # review 13 (low): config_from_header converted dropout_fraction with float() outside its try:
    # a 401-digit JSON integer raised OverflowError, which escaped NetworkClient.run() with no REFUSE
    error, sent = drive(sum_client(), [announce(config={**CONFIG, name: HUGE})])
    assert refused_with_a_typed_error(error, sent), f"{type(error).__name__}: {error}; sent {[e.kind.name for e in sent]}"
    assert error.party == "server" and "invalid configuration" in str(error)


def fedavg():
    return FedAvg(NumpyLogisticRegression(13), rounds=2, max_weight=300.0, seed=0)


def fedavg_participant(make=fedavg, n=3):
    X = np.random.default_rng(0).normal(size=(40, 13))
    task = FedAvgClient(make(), 0, X, (X[:, 0] > 0).astype(np.int64), num_clients=n)
    return task, NetworkClient("unused:0", 0, task, tls=INSECURE, policy=task.policy(n))


def fedavg_session(make=fedavg, n=3, header=None, blob=None):
    plan = FedAvgTask(make(), n).next_session()
    return Envelope(Kind.SESSION, {**plan.header, **plan.spec.header(), "session_id": SID,
                                   "cohort": list(plan.cohort), **(header or {})},
                    plan.blob if blob is None else blob)


@pytest.mark.parametrize("name", ["max_weight", "learning_rate", "rounds", "clients"])
def test_a_huge_integer_for_a_training_setting_is_refused_and_the_refusal_travels(name):
    # review 13 (low): FedAvgClient._same_json compared numbers with float(): a 401-digit JSON
    # integer for any numeric setting raised OverflowError, which escaped with no REFUSE
    task, client = fedavg_participant()
    base = fedavg_session()
    hostile = Envelope(Kind.SESSION, {**base.header, "fedavg": {**base.header["fedavg"], name: HUGE}}, base.blob)
    error, sent = drive(client, [hostile])
    assert refused_with_a_typed_error(error, sent), f"{type(error).__name__}: {error}; sent {[e.kind.name for e in sent]}"
    assert error.party == "server" and f"announces {name}" in str(error)
    assert task.rounds_trained == 0


def test_settings_compare_as_exact_numbers_an_integer_and_its_float_alike():
    from secagg.fedavg.network import _same_json

    assert _same_json(1, 1.0) and _same_json({"a": [2, 0.5]}, {"a": [2.0, 0.5]})
    assert not _same_json(True, 1) and not _same_json(HUGE, 1.0) and not _same_json(2**53 + 1, 2**53)


@pytest.mark.parametrize("name", ["total_variance", "granularity", "epsilon", "padded"])
def test_a_huge_integer_in_the_dp_calibration_is_refused_and_the_refusal_travels(name):
    # review 13 (low): DistributedMechanism.check_calibration subtracted the announced value from
    # its own float: a 401-digit JSON integer raised OverflowError, which escaped with no REFUSE
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    def make():
        return FedAvg(NumpyLogisticRegression(13), rounds=2, max_weight=300.0, seed=0,
                      dp=DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.34))

    task, client = fedavg_participant(make)
    base = fedavg_session(make)
    calibration = {**base.header["dp_calibration"], name: HUGE}
    error, sent = drive(client, [Envelope(Kind.SESSION, {**base.header, "dp_calibration": calibration}, base.blob)])
    assert refused_with_a_typed_error(error, sent), f"{type(error).__name__}: {error}; sent {[e.kind.name for e in sent]}"
    assert error.party == "server" and "DP calibration" in str(error)
    assert task.rounds_trained == 0


def test_a_model_the_participant_cannot_train_is_refused_naming_the_coordinator():
    # review 13 (low): a finite global model the participant cannot train (weights 1e308) raised
    # ParameterError "training diverged ... lower learning_rate" from prepare: it blamed the
    # participant's own settings and escaped with no REFUSE
    task, client = fedavg_participant()
    error, sent = drive(client, [fedavg_session(blob=vector_blob(np.full(14, 1e308)))])
    assert refused_with_a_typed_error(error, sent), f"{type(error).__name__}: {error}; sent {[e.kind.name for e in sent]}"
    assert error.party == "server" and "global model" in str(error) and "learning_rate" not in str(error)
    assert [e.kind for e in sent] == [Kind.REFUSE]  # nothing of the session went out before the refusal
    assert task.rounds_trained == 0 and not task.contributed_requests
