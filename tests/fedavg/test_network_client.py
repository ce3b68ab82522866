"""The network FedAvg roles without a network: a participant checks every announcement against its
own configuration, contributes one update per (model, settings), and the coordinator task keeps an
honest history."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ParameterError, ProtocolViolation
from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.network import FedAvgClient, FedAvgTask
from secagg.transport.envelope import Envelope, Kind


def make_fedavg(**options):
    settings = {"rounds": 2, "max_weight": 300.0, "seed": 0, **options}
    return FedAvg(NumpyLogisticRegression(13), **settings)


@pytest.fixture()
def job():
    bank = make_bank_transactions(3, 300, seed=2)[0]
    task = FedAvgTask(make_fedavg(), 3)
    client = FedAvgClient(make_fedavg(), 0, bank.X_train, bank.y_train, num_clients=3)
    plan = task.next_session()
    return plan, {**plan.header, "cohort": list(plan.cohort)}, client


def test_a_participant_refuses_settings_other_than_its_own_and_names_them(job):
    plan, header, client = job
    for field, value in (("learning_rate", 0.5), ("local_epochs", 3), ("rounds", 5), ("clip", 2.0),
                         ("max_weight", 10_000.0), ("dp", {"epsilon": 100.0}), ("per_round", 2)):
        changed = {**header, "fedavg": {**header["fedavg"], field: value}}
        with pytest.raises(ProtocolViolation, match=field) as caught:
            client.prepare(plan.spec, changed, plan.blob)
        assert caught.value.party == "server"
    extra = {**header, "fedavg": {**header["fedavg"], "nonce": 1}}
    with pytest.raises(ProtocolViolation, match="unknown settings"):
        client.prepare(plan.spec, extra, plan.blob)
    with pytest.raises(ProtocolViolation, match="round 9 of a 2-round job"):
        client.prepare(plan.spec, {**header, "round": 9}, plan.blob)
    assert client.rounds_trained == 0  # nothing was trained on a refused announcement


def test_the_same_values_in_another_json_type_are_the_same_settings(job):
    plan, header, client = job
    retyped = {**header, "fedavg": {**header["fedavg"], "clip": 1, "max_weight": 300}}  # 1 is 1.0
    assert client.prepare(plan.spec, retyped, plan.blob) is not None
    flagged = {**header, "fedavg": {**header["fedavg"], "local_epochs": True}}  # True is not 1
    with pytest.raises(ProtocolViolation, match="local_epochs"):
        client.prepare(plan.spec, flagged, plan.blob)


def test_one_update_per_model_whatever_round_number_or_bytes_carry_it(job):
    # Issue 12, attack 6: a guard keyed by the round number let the same model be retrained as
    # "round 1" and contributed to a second sum lacking the victim: the difference is its update.
    plan, header, client = job
    assert client.prepare(plan.spec, header, plan.blob) is not None
    client.contributed(header)
    assert client.prepare(plan.spec, {**header, "round": 1}, plan.blob) is None
    vector = Envelope(Kind.SESSION, blob=plan.blob).vector()
    assert np.any(vector == 0)  # the initial model has zero weights: resend them as -0.0
    negated_zeros = np.where(vector == 0, -0.0, vector).astype("<f8").tobytes()
    assert negated_zeros != plan.blob
    assert client.prepare(plan.spec, {**header, "round": 1}, negated_zeros) is None
    other_model = (vector + 0.5).astype("<f8").tobytes()
    assert client.prepare(plan.spec, {**header, "round": 1}, other_model) is not None


def test_a_participant_refuses_a_model_of_another_size_and_a_cohort_of_another_size(job):
    plan, header, client = job
    with pytest.raises(ProtocolViolation, match="15 weights, this client.s model 14"):
        client.prepare(plan.spec, header, np.zeros(15).tobytes())
    with pytest.raises(ProtocolViolation, match="samples 2 clients"):
        client.prepare(plan.spec, {**header, "cohort": [0, 1]}, plan.blob)


def test_the_guard_survives_a_participant_restart_with_a_state_dir(tmp_path):
    bank = make_bank_transactions(3, 300, seed=2)[0]
    task = FedAvgTask(make_fedavg(), 3)
    plan = task.next_session()
    header = {**plan.header, "cohort": list(plan.cohort)}
    first = FedAvgClient(make_fedavg(), 0, bank.X_train, bank.y_train, num_clients=3, state_dir=tmp_path)
    assert first.prepare(plan.spec, header, plan.blob) is not None
    first.contributed(header)
    with pytest.raises(ParameterError, match="in use"):
        FedAvgClient(make_fedavg(), 0, bank.X_train, bank.y_train, num_clients=3, state_dir=tmp_path)
    first.close()
    restarted = FedAvgClient(make_fedavg(), 0, bank.X_train, bank.y_train, num_clients=3, state_dir=tmp_path)
    assert restarted.prepare(plan.spec, header, plan.blob) is None


def test_the_network_roles_need_a_weight_cap():
    with pytest.raises(ParameterError, match="max_weight is needed"):
        FedAvgTask(FedAvg(NumpyLogisticRegression(13), rounds=2), 3)


def test_a_job_reference_that_does_not_name_a_job_is_a_typed_error(tmp_path):
    from secagg.fedavg.job import FedAvgJob, load_job

    (tmp_path / "jobs.py").write_text("from secagg.fedavg import FedAvg, FedAvgJob, NumpyLogisticRegression\n"
                                      "good = FedAvgJob(fedavg=lambda: FedAvg(NumpyLogisticRegression(3)))\n"
                                      "def factory():\n    return good\n"
                                      "not_a_job = 42\n"
                                      "def broken():\n    raise RuntimeError('no database')\n"
                                      "bad_factory = FedAvgJob(fedavg=lambda: 7)\n")
    assert isinstance(load_job(f"{tmp_path / 'jobs.py'}:good"), FedAvgJob)
    assert isinstance(load_job(f"{tmp_path / 'jobs.py'}:factory").configuration(), FedAvg)
    for reference, expected in (("no-colon", "is named"), (f"{tmp_path / 'nope.py'}:job", "does not exist"),
                                ("secagg_no_such_module:job", "cannot load job module"),
                                (f"{tmp_path / 'jobs.py'}:missing", "has no 'missing'"),
                                (f"{tmp_path / 'jobs.py'}:not_a_job", "is not a FedAvgJob"),
                                (f"{tmp_path / 'jobs.py'}:broken", "RuntimeError: no database")):
        with pytest.raises(ParameterError, match=expected):
            load_job(reference)
    with pytest.raises(ParameterError, match="no data"):
        load_job(f"{tmp_path / 'jobs.py'}:good").client_data(0)
    with pytest.raises(ParameterError, match="returned int, not a FedAvg"):
        load_job(f"{tmp_path / 'jobs.py'}:bad_factory").configuration()


def test_an_out_of_slot_paillier_sum_aborts_the_round_not_the_network_coordinator():
    # the second review: a corrupt bank packing bits above the last slot made the decrypted sum
    # fail to unpack, and FedAvgTask.finish_session raised out of the coordinator
    pytest.importorskip("gmpy2")
    from secagg.aggregation.paillier import PaillierAggregator
    from secagg.crypto.randomness import TestOnlySeededRandomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier import generate_threshold_keypair
    from secagg.paillier.threshold import safe_prime

    p, q = safe_prime(256), safe_prime(256)
    while q == p:
        q = safe_prime(256)
    public, _ = generate_threshold_keypair(4, 3, primes=(p, q))
    verify = {i: IdentityKey.generate(TestOnlySeededRandomness(i, b"slots")).public_bytes for i in range(4)}
    fedavg = FedAvg(NumpyLogisticRegression(3), rounds=2, max_weight=100.0,
                    aggregator=PaillierAggregator(keys=(public, None), verify_keys=verify))
    task = FedAvgTask(fedavg, 4)
    plan = task.next_session()
    scheme = plan.spec.scheme
    beyond = 1 << (8 * scheme.slots * scheme.slot_bytes)
    aggregate = [beyond] * scheme.plaintexts_for(plan.spec.values)
    before = fedavg.server.vector.copy()
    task.finish_session(plan, aggregate, [0, 1, 2, 3], {}, None, 1.0)
    record = task.history[-1]
    assert not record.applied and "outside their slots" in record.aborted
    assert np.array_equal(fedavg.server.vector, before) and task.next_session() is not None  # the job goes on
