"""A network FedAvg client's guard: one update per (model, training settings), whatever the header."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ProtocolViolation
from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.models import LogisticRegression
from secagg.fedavg.network import FedAvgClient, FedAvgSettings, FedAvgTask
from secagg.transport.envelope import Envelope, Kind


@pytest.fixture()
def job():
    banks = make_bank_transactions(3, 300, seed=2)
    task = FedAvgTask(LogisticRegression(banks[0].X_train.shape[1]), 3, FedAvgSettings(rounds=2, max_weight=300.0))
    client = FedAvgClient(LogisticRegression(banks[0].X_train.shape[1]), banks[0].X_train, banks[0].y_train, seed=0)
    return task.next_session(), client


def test_an_extra_training_field_is_refused_not_a_new_model(job):
    # the second review: the digest covered the whole `training` dict, so the same model under an
    # extra key the client ignores was trained and contributed again
    plan, client = job
    assert client.prepare(plan.spec, plan.header, plan.blob) is not None
    client.contributed(plan.header)
    header = {**plan.header, "training": {**plan.header["training"], "nonce": 1}}
    with pytest.raises(ProtocolViolation, match="unknown training fields") as caught:
        client.prepare(plan.spec, header, plan.blob)
    assert caught.value.party == "server"
    renamed = {**plan.header, "round": 7, "task_note": "new"}  # other header fields are not the request
    assert client.prepare(plan.spec, renamed, plan.blob) is None


def test_the_same_values_in_other_bytes_are_the_same_model(job):
    plan, client = job
    assert client.prepare(plan.spec, plan.header, plan.blob) is not None
    client.contributed(plan.header)
    vector = Envelope(Kind.SESSION, blob=plan.blob).vector()
    assert np.any(vector == 0)  # the initial model has zero weights: resend them as -0.0
    negated_zeros = np.where(vector == 0, -0.0, vector).astype("<f8").tobytes()
    assert negated_zeros != plan.blob
    assert client.prepare(plan.spec, plan.header, negated_zeros) is None
    retyped = {**plan.header, "training": {k: float(v) if isinstance(v, int) and k in ("clip", "learning_rate")
                                           else v for k, v in plan.header["training"].items()}}
    assert client.prepare(plan.spec, retyped, plan.blob) is None  # 1 and 1.0 are the same clip


def test_settings_with_the_same_effect_are_the_same_request(job):
    # the third review: proximal_mu -0.0 for 0.0, a batch size beyond the client's data, or a
    # max_weight above its sample count trained to the same update and passed the guard
    plan, client = job
    samples = client.X.shape[0]
    training = {**plan.header["training"], "batch_size": samples + 1, "max_weight": float(samples) + 5.0}
    assert client.prepare(plan.spec, {**plan.header, "training": training}, plan.blob) is not None
    client.contributed(plan.header)
    for change in ({"proximal_mu": -0.0}, {"batch_size": samples}, {"batch_size": 10**9},
                   {"max_weight": float(samples) + 50.0}):
        header = {**plan.header, "training": {**training, **change}}
        assert client.prepare(plan.spec, header, plan.blob) is None, change
    smaller = {**plan.header, "training": {**training, "batch_size": samples - 1}}
    assert client.prepare(plan.spec, smaller, plan.blob) is not None  # another effect: a new request


def test_a_job_reference_that_does_not_name_a_job_is_a_typed_error(tmp_path):
    from secagg.errors import ParameterError
    from secagg.fedavg.job import FedAvgJob, load_job

    (tmp_path / "jobs.py").write_text("from secagg.fedavg.job import FedAvgJob\n"
                                      "from secagg.fedavg.models import LogisticRegression\n"
                                      "good = FedAvgJob(model=lambda: LogisticRegression(3))\n"
                                      "def factory():\n    return good\n"
                                      "not_a_job = 42\n"
                                      "def broken():\n    raise RuntimeError('no database')\n")
    assert isinstance(load_job(f"{tmp_path / 'jobs.py'}:good"), FedAvgJob)
    assert load_job(f"{tmp_path / 'jobs.py'}:factory") is not None
    for reference, expected in (("no-colon", "is named"), (f"{tmp_path / 'nope.py'}:job", "does not exist"),
                                ("secagg_no_such_module:job", "cannot load job module"),
                                (f"{tmp_path / 'jobs.py'}:missing", "has no 'missing'"),
                                (f"{tmp_path / 'jobs.py'}:not_a_job", "is not a FedAvgJob"),
                                (f"{tmp_path / 'jobs.py'}:broken", "RuntimeError: no database")):
        with pytest.raises(ParameterError, match=expected):
            load_job(reference)
    with pytest.raises(ParameterError, match="no data"):
        load_job(f"{tmp_path / 'jobs.py'}:good").client_data(0)


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
    aggregator = PaillierAggregator(keys=(public, None), verify_keys=verify)
    task = FedAvgTask(LogisticRegression(3), 4, FedAvgSettings(rounds=2, max_weight=100.0), aggregator=aggregator)
    plan = task.next_session()
    scheme = plan.spec.scheme
    beyond = 1 << (8 * scheme.slots * scheme.slot_bytes)
    aggregate = [beyond] * scheme.plaintexts_for(plan.spec.values)
    before = task.server.vector.copy()
    task.finish_session(plan, aggregate, [0, 1, 2, 3], {}, None, 1.0)
    record = task.history[-1]
    assert not record["applied"] and "outside their slots" in record["aborted"]
    assert np.array_equal(task.server.vector, before) and task.next_session() is not None  # the job goes on
