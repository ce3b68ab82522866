"""One FedAvg, many runtimes: the same configuration in-process and as network roles (real gRPC on
127.0.0.1, coordinator and participants on threads)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("grpc")

from secagg.errors import ParameterError, ProtocolViolation  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402
from secagg.fedavg.data import make_bank_transactions  # noqa: E402
from secagg.transport.network import Deadlines, RetryPolicy, TLSConfig  # noqa: E402

INSECURE = TLSConfig(insecure=True)
SLOW = Deadlines(advertise_keys=120, share_keys=120, masked_input=120, consistency_check=120, unmasking=120)
QUICK_RETRY = RetryPolicy(initial=0.05, maximum=0.2, give_up_after=10.0)


@pytest.fixture(scope="module")
def banks():
    return make_bank_transactions(4, 400, seed=3)


def configuration(**options):
    settings = {"rounds": 3, "max_weight": 400.0, "learning_rate": 0.2, "seed": 11, **options}
    return FedAvg(NumpyLogisticRegression(13), **settings)


class NetworkRun:
    """A coordinator and participants, each with its own FedAvg built by ``make`` (as separate
    processes would build theirs), on threads."""

    def __init__(self, make, num_clients, eval_data=None, **coordinator_options):
        self.fedavg = make()
        coordinator_options.setdefault("deadlines", SLOW)
        self.coordinator = self.fedavg.coordinator(num_clients, tls=INSECURE, eval_data=eval_data, linger=0.5,
                                                   **coordinator_options)
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.coordinator.serve, args=(lambda port: self.started.set(),),
                                       daemon=True)
        self.thread.start()
        assert self.started.wait(30)
        self.num_clients = num_clients
        self.outcomes, self.threads, self.participants = {}, [], {}

    def participant(self, client_id, data, make, **options):
        options.setdefault("retry", QUICK_RETRY)
        participant = make().participant(client_id, data, coordinator=f"localhost:{self.coordinator.port}",
                                         tls=INSECURE, num_clients=self.num_clients, **options)
        self.participants[client_id] = participant

        def run():
            try:
                self.outcomes[client_id] = participant.run()
            except Exception as exc:  # noqa: BLE001 - recorded for the assertions
                self.outcomes[client_id] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout=120):
        self.thread.join(timeout)
        for thread in self.threads:
            thread.join(timeout)
        assert not self.thread.is_alive() and not any(t.is_alive() for t in self.threads), "a party hung"
        return self.fedavg.history


def test_a_seeded_network_run_computes_exactly_what_fit_computes(banks):
    # The acceptance of "one FedAvg, many runtimes": the same configuration, same seed, same data;
    # every round samples the same cohort, trains the same local models, rounds the same way and
    # applies the same exact sum, so the global models are bit for bit the same.
    make = lambda: configuration(clients_per_round=3)  # noqa: E731
    data = [(b.X_train, b.y_train) for b in banks]
    holdout = (banks[0].X_test, banks[0].y_test)
    local = make()
    in_process = local.fit(data, eval_data=holdout)
    run = NetworkRun(make, 4, eval_data=holdout)
    for i in range(4):
        run.participant(i, data[i], make)
    network = run.join()
    assert [r.participants for r in network] == [r.participants for r in in_process]
    assert all(len(r.participants) == 3 for r in network) and len({r.participants for r in network}) > 1
    assert [r.included for r in network] == [r.included for r in in_process]
    for mine, theirs in zip(run.fedavg.weights, local.weights):
        assert np.array_equal(mine, theirs)
    assert [r.metrics for r in network] == [r.metrics for r in in_process]
    assert all(isinstance(outcome, dict) for outcome in run.outcomes.values())
    # each participant took part exactly in the rounds it was sampled for
    for i in range(4):
        sampled = sum(i in r.participants for r in network)
        assert run.participants[i].task.rounds_trained == sampled


def test_a_participant_with_other_settings_refuses_and_the_round_closes_without_it(banks):
    # Failures travel: the refusal names the setting, the coordinator records it and closes the
    # round once the others answered (the join window is 120 s).
    make = lambda: configuration(rounds=1)  # noqa: E731
    run = NetworkRun(make, 4)
    started = time.monotonic()
    for i in range(3):
        run.participant(i, (banks[i].X_train, banks[i].y_train), make)
    run.participant(3, (banks[3].X_train, banks[3].y_train), lambda: configuration(rounds=1, learning_rate=0.5))
    [record] = run.join()
    assert time.monotonic() - started < 60
    assert isinstance(run.outcomes[3], ProtocolViolation) and "learning_rate" in str(run.outcomes[3])
    assert record.applied and record.included == (0, 1, 2)
    assert list(record.refused) == [3] and "job says 0.5" in record.refused[3]
    assert "client 3 refused round [0]" in run.coordinator.report()


def test_a_participant_with_another_model_refuses_and_says_why(banks):
    make = lambda: configuration(rounds=1)  # noqa: E731
    run = NetworkRun(make, 4)
    for i in range(3):
        run.participant(i, (banks[i].X_train, banks[i].y_train), make)
    wide = np.hstack([banks[3].X_train, banks[3].X_train[:, :6]])
    run.participant(3, (wide, banks[3].y_train),
                    lambda: FedAvg(NumpyLogisticRegression(19), rounds=1, max_weight=400.0, learning_rate=0.2, seed=11))
    [record] = run.join()
    assert "model has 14 weights, this client's model 20" in record.refused[3] and record.included == (0, 1, 2)


def test_state_dir_resume_lock_and_corrupt_state(banks, tmp_path):
    make = lambda: configuration(rounds=2)  # noqa: E731
    run = NetworkRun(make, 3, state_dir=tmp_path)
    for i in range(3):
        run.participant(i, (banks[i].X_train, banks[i].y_train), make)
    history = run.join()
    assert [r.round for r in history] == [0, 1] and all(r.applied for r in history)
    assert history[0].total_weight == sum(min(b.X_train.shape[0], 400) for b in banks[:3])
    from secagg.fedavg.network import FedAvgTask

    held = FedAvgTask(make(), 3, state_dir=tmp_path / "held")
    with pytest.raises(ParameterError, match="in use by another"):
        FedAvgTask(make(), 3, state_dir=tmp_path / "held")
    held.close()
    again_fedavg = make()
    again = FedAvgTask(again_fedavg, 3, state_dir=tmp_path)  # nothing left to do, the model restored
    assert again.next_session() is None and np.array_equal(again_fedavg.server.vector, run.fedavg.server.vector)
    assert [r.to_dict() for r in again_fedavg.history] == [r.to_dict() for r in history]
    with pytest.raises(ParameterError, match="another job"):
        FedAvgTask(configuration(rounds=5), 3, state_dir=tmp_path)
    state = tmp_path / "fedavg_state.json"
    task = FedAvgTask(make(), 3)
    np.save(tmp_path / "model-00009.npy", np.zeros(3))
    for corrupt in ("{not json", '{"fingerprint": "%s", "model": "../../etc/passwd", "history": []}' % task.fingerprint,
                    '{"fingerprint": "%s", "model": "model-00009.npy", "history": []}' % task.fingerprint,
                    '{"fingerprint": "%s", "model": "model-00009.npy", "history": [{"round": "x"}]}' % task.fingerprint):
        state.write_text(corrupt)
        with pytest.raises(ParameterError):
            FedAvgTask(make(), 3, state_dir=tmp_path)


def test_a_participant_refuses_a_smaller_cohort_than_its_job_samples(banks):
    # a coordinator sampling fewer clients than the job says (a sum over 2 tells it more about
    # each) is refused before any training, even if its session is otherwise valid
    from secagg.fedavg.network import FedAvgClient, FedAvgTask

    task = FedAvgTask(configuration(clients_per_round=3), 5)
    client = FedAvgClient(configuration(clients_per_round=4), 0, banks[0].X_train, banks[0].y_train, num_clients=5)
    plan = task.next_session()
    with pytest.raises(ProtocolViolation, match="per_round"):
        client.prepare(plan.spec, {**plan.header, "cohort": list(plan.cohort)}, plan.blob)
    assert client.policy(5).min_cohort == 4


def test_client_level_dp_over_the_network_reports_the_in_process_epsilon():
    # issue 17's bar: the same DP configuration, in-process and over the network, reports the same
    # epsilon after every round (the cohorts differ: they are drawn from a CSPRNG on purpose)
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    banks = make_bank_transactions(6, 300, seed=5)
    data = [(b.X_train, b.y_train) for b in banks]
    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.25)
    make = lambda: configuration(rounds=2, clients_per_round=4, dp=dp)  # noqa: E731
    in_process = make().fit(data)
    run = NetworkRun(make, 6)
    for i in range(6):
        run.participant(i, data[i], make)
    network = run.join()
    assert [float(e) for e in network.epsilon] == [float(e) for e in in_process.epsilon]
    assert network.epsilon[-1] <= 8.0 and network.epsilon[-1].accountant == in_process.epsilon[-1].accountant
    assert all(r.applied and len(r.participants) == 4 and r.total_weight == 4.0 for r in network)
    assert run.participants[0].task.min_sum == run.fedavg.dp_mechanism.min_shares == 3


def test_record_level_dp_over_the_network_needs_and_uses_public_record_counts():
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig
    from secagg.fedavg.network import FedAvgClient

    banks = make_bank_transactions(4, 400, seed=6)
    data = [(b.X_train, b.y_train) for b in banks]
    counts = [X.shape[0] + 10 for X, _ in data]  # public upper bounds
    dp = DPConfig(epsilon=4.0, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.1,
                  dropout_tolerance=0.25)
    with pytest.raises(ParameterError, match="record_counts"):
        configuration(rounds=2, learning_rate=1.0, dp=dp).coordinator(4, tls=INSECURE)
    make = lambda: configuration(rounds=2, learning_rate=1.0, dp=dp, record_counts=counts)  # noqa: E731
    in_process = make().fit(data)
    run = NetworkRun(make, 4)
    for i in range(4):
        run.participant(i, data[i], make)
    network = run.join()
    assert [float(e) for e in network.epsilon] == [float(e) for e in in_process.epsilon]
    assert all(r.applied and r.included == (0, 1, 2, 3) for r in network)
    bigger = np.vstack([data[0][0], data[0][0][:20]])
    with pytest.raises(ParameterError, match="more than the job's public record count"):
        FedAvgClient(make(), 0, bigger, np.concatenate([data[0][1], data[0][1][:20]]), num_clients=4)


def test_a_participant_refuses_a_coordinator_announcing_less_dp_noise(banks):
    # the coordinator is the adversary DP protects against too: a calibration with half the noise
    # (or any other number than the participant computes from the shared configuration) is refused
    # before any training
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig
    from secagg.fedavg.network import FedAvgClient, FedAvgTask

    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.25)
    task = FedAvgTask(configuration(clients_per_round=4, dp=dp), 4)
    client = FedAvgClient(configuration(clients_per_round=4, dp=dp), 0, banks[0].X_train, banks[0].y_train,
                          num_clients=4)
    plan = task.next_session()
    header = {**plan.header, "cohort": list(plan.cohort)}
    calibration = dict(header["dp_calibration"])
    for name in ("total_variance", "share_variance"):
        weaker = {**header, "dp_calibration": {**calibration, name: calibration[name] / 2}}
        with pytest.raises(ProtocolViolation, match="another DP calibration"):
            client.prepare(plan.spec, weaker, plan.blob)
    with pytest.raises(ProtocolViolation, match="another DP calibration"):
        client.prepare(plan.spec, {k: v for k, v in header.items() if k != "dp_calibration"}, plan.blob)
    assert client.rounds_trained == 0
    assert client.prepare(plan.spec, header, plan.blob) is not None  # the honest announcement is taken
    # and its sessions never help unmask a sum of fewer inputs than the noise was calibrated for
    from secagg.transport.sessions import client_run

    run = client_run(plan.spec, 0, bytes(16), np.zeros(plan.spec.config.vector_length, dtype=np.uint64),
                     min_sum=client.min_sum)
    assert run.session.min_survivors == 3
