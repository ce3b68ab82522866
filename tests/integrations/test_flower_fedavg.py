"""One FedAvg, many runtimes, on Flower: ``flower_apps(fedavg, ...)`` runs what ``fedavg.fit`` runs.

The bar (as tests/fedavg/test_network_roles.py sets it for the network mode): a seeded Flower run
of the same configuration and data samples the same cohorts and ends with bit-for-bit the same
weights; with DP it reports the same epsilon; and a node refuses a server that announces less
noise, a smaller cohort, or a sum of fewer noise shares than the mechanism was calibrated for.

The DP and adversarial cases drive the real ClientApp and the server's workflow over
:class:`InProcessGrid` (Flower's protobuf messages and contexts, no Ray); one case runs Flower's
own ``run_simulation``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, RecordDict  # noqa: E402

from secagg.errors import AbortError, ParameterError  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402
from secagg.fedavg.data import make_bank_transactions  # noqa: E402
from secagg.integrations.flower import FedAvgWorkflow, fedavg_client_app, flower_apps  # noqa: E402
from secagg.integrations.flower import fedavg as fedavg_module  # noqa: E402
from tests.integrations.inprocess_grid import InProcessGrid  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def banks():
    return make_bank_transactions(4, 400, seed=3)


def configuration(**options):
    settings = {"rounds": 3, "max_weight": 400.0, "learning_rate": 0.2, "seed": 11, **options}
    return FedAvg(NumpyLogisticRegression(13), **settings)


def flower_run(make, data, *, eval_data=None, app=None, client_apps=None, workflow=None, fault=None, **options):
    """The server's FedAvg (built by ``make``, as the ServerApp's process would) and its workflow,
    after a run over an in-process grid whose nodes run ``app`` (default: the ClientApp of their
    own FedAvg built with ``make``), or ``client_apps[partition]``."""
    n = len(data)
    fedavg = make()
    workflow = (workflow or FedAvgWorkflow)(fedavg, n, eval_data=eval_data, **options)
    app = app or fedavg_client_app(make(), n, client_data=lambda i: data[i])
    apps = client_apps or {}

    def client_app(message, context):
        return apps.get(int(context.node_config["partition-id"]), app)(message, context)

    grid = InProcessGrid(client_app, n, fault=fault)
    workflow(grid, Context(grid.run.run_id, 0, {}, RecordDict(), {}))
    return fedavg, workflow, grid


def test_a_seeded_run_simulation_computes_exactly_what_fit_computes(banks, monkeypatch):
    # issue 13's "one FedAvg, many runtimes" on Flower's own simulation engine (Ray workers): the
    # same configuration, seed and data sample the same cohorts, train the same local models,
    # round the same way and apply the same exact sums: the global models are bit for bit the same
    pytest.importorskip("ray")
    from flwr.simulation import run_simulation

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    make = lambda: configuration(clients_per_round=3)  # noqa: E731
    data = [(b.X_train, b.y_train) for b in banks]
    holdout = (banks[0].X_test, banks[0].y_test)
    local = make()
    in_process = local.fit(data, eval_data=holdout)
    fedavg = make()
    server_app, client_app = flower_apps(fedavg, 4, client_data=lambda i: data[i], eval_data=holdout)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=4,
                   backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}})
    on_flower = fedavg.history
    assert [r.participants for r in on_flower] == [r.participants for r in in_process]
    assert all(len(r.participants) == 3 for r in on_flower) and len({r.participants for r in on_flower}) > 1
    assert [r.included for r in on_flower] == [r.included for r in in_process]
    for mine, theirs in zip(fedavg.weights, local.weights):
        assert np.array_equal(mine, theirs)
    assert [r.metrics for r in on_flower] == [r.metrics for r in in_process]
    assert [r.total_weight for r in on_flower] == [r.total_weight for r in in_process]


def test_the_in_process_grid_run_is_bit_for_bit_too_and_the_server_never_sees_a_model(banks):
    data = [(b.X_train, b.y_train) for b in banks]
    local = configuration(clients_per_round=3)
    in_process = local.fit(data)
    fedavg, workflow, grid = flower_run(lambda: configuration(clients_per_round=3), data)
    assert [r.participants for r in fedavg.history] == [r.participants for r in in_process]
    for mine, theirs in zip(fedavg.weights, local.weights):
        assert np.array_equal(mine, theirs)
    assert all(r.ok for r in workflow.reports)
    # the replies carry protocol bytes only: no parameters, no sample counts, no metrics
    for reply in grid.replies:
        assert not reply.content.array_records and not reply.content.metric_records
    # every node took part exactly in the rounds it was sampled for (3 of 4 per round)
    assert sorted(workflow.nodes) == [0, 1, 2, 3] and len(grid.replies) == 4 + 3 * 3 * 4


def test_client_level_dp_on_flower_reports_the_in_process_epsilon():
    # issue 17's bar, on Flower: the same DP configuration reports the same epsilon after every
    # round; every node adds its noise share before masking and the server decodes the noisy sum
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    banks = make_bank_transactions(6, 300, seed=5)
    data = [(b.X_train, b.y_train) for b in banks]
    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.25)
    make = lambda: configuration(rounds=2, clients_per_round=4, dp=dp)  # noqa: E731
    in_process = make().fit(data)
    fedavg, workflow, _ = flower_run(make, data)
    assert [float(e) for e in fedavg.history.epsilon] == [float(e) for e in in_process.epsilon]
    assert fedavg.history.epsilon[-1] <= 8.0
    assert fedavg.history.epsilon[-1].accountant == in_process.epsilon[-1].accountant
    assert all(r.applied and len(r.participants) == 4 and r.total_weight == 4.0 for r in fedavg.history)
    # the protocol itself refuses a sum of fewer noise shares: threshold >= min_shares - 1
    assert fedavg.dp_mechanism.min_shares == 3 and all(r.config.threshold >= 2 for r in workflow.reports)


def test_record_level_dp_on_flower_uses_the_public_record_counts():
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    banks = make_bank_transactions(4, 400, seed=6)
    data = [(b.X_train, b.y_train) for b in banks]
    counts = [X.shape[0] + 10 for X, _ in data]  # public upper bounds
    dp = DPConfig(epsilon=4.0, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.1,
                  dropout_tolerance=0.25)
    with pytest.raises(ParameterError, match="record_counts"):
        flower_apps(configuration(rounds=2, learning_rate=1.0, dp=dp), 4, client_data=lambda i: data[i])
    make = lambda: configuration(rounds=2, learning_rate=1.0, dp=dp, record_counts=counts)  # noqa: E731
    in_process = make().fit(data)
    fedavg, _, _ = flower_run(make, data)
    assert [float(e) for e in fedavg.history.epsilon] == [float(e) for e in in_process.epsilon]
    assert all(r.applied and r.included == (0, 1, 2, 3) for r in fedavg.history)


def test_a_node_holding_more_records_than_its_public_count_never_enrols():
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    banks = make_bank_transactions(4, 400, seed=6)
    data = [(b.X_train, b.y_train) for b in banks]
    counts = [X.shape[0] for X, _ in data]
    counts[2] -= 1  # bank 2 holds one record more than the job's noise and grid were sized for
    dp = DPConfig(epsilon=4.0, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.1,
                  dropout_tolerance=0.25)
    with pytest.raises(AbortError, match=r"missing clients \[2\].*more than the job's public record count"):
        flower_run(lambda: configuration(rounds=1, learning_rate=1.0, dp=dp, record_counts=counts), data,
                   join_timeout=0.5)


# ---------------------------------------------------------------------------- the server as the adversary

class _Tampering(FedAvgWorkflow):
    """A server that changes every round's plan (``tamper(plan) -> plan``) before running it."""

    tamper = staticmethod(lambda plan: plan)

    def run_round(self, grid, plan):
        return super().run_round(grid, self.tamper(plan))


def _dp_make(**options):
    from secagg.dp import DPConfig

    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.25)
    return lambda: configuration(rounds=1, clients_per_round=4, dp=dp, **options)


def test_nodes_refuse_a_server_announcing_less_dp_noise():
    # the server is the adversary DP protects against: a calibration with half the noise (its
    # decoding and reported epsilon would rest on it) is refused by every node before it draws a
    # key, and the round releases nothing
    pytest.importorskip("dp_accounting")
    data = [(b.X_train, b.y_train) for b in make_bank_transactions(4, 300, seed=5)]
    honest, _, _ = flower_run(_dp_make(), data)
    assert honest.history[0].applied  # the same server, untampered, trains

    def halve_the_noise(plan):
        calibration = dict(plan.header["dp_calibration"])
        calibration["share_variance"] /= 2
        return dataclasses.replace(plan, header={**plan.header, "dp_calibration": calibration})

    class LessNoise(_Tampering):
        tamper = staticmethod(halve_the_noise)

    fedavg, workflow, _ = flower_run(_dp_make(), data, workflow=LessNoise)
    [record] = fedavg.history
    assert not record.applied and record.aborted
    assert sorted(record.refused) == [0, 1, 2, 3]
    assert all("another DP calibration" in why for why in record.refused.values())
    assert workflow.reports[0].dropped["advertise_keys"] == workflow.reports[0].sampled
    for mine, start in zip(fedavg.weights, _dp_make()().weights):
        assert np.array_equal(mine, start)


def test_nodes_refuse_a_cohort_smaller_than_the_job_samples():
    # a sum over 2 clients carries 2 noise shares, below the mechanism's min_shares of 3
    pytest.importorskip("dp_accounting")
    data = [(b.X_train, b.y_train) for b in make_bank_transactions(4, 300, seed=5)]
    make = _dp_make()

    class SmallCohort(_Tampering):
        @staticmethod
        def tamper(plan):
            from secagg.protocol.config import SecAggConfig
            from secagg.transport.sessions import MaskingSpec

            config = plan.spec.config
            two = SecAggConfig(num_clients=2, threshold=1, vector_length=config.vector_length,
                               modulus_bits=config.modulus_bits, corrupt_clients=0)
            return dataclasses.replace(plan, spec=MaskingSpec(two), cohort=plan.cohort[:2])

    fedavg, workflow, _ = flower_run(make, data, workflow=SmallCohort)
    [record] = fedavg.history
    assert fedavg.dp_mechanism.min_shares == 3
    assert not record.applied and sorted(record.refused) == list(record.participants[:2])
    assert all("this job samples 4 per round" in why for why in record.refused.values())


def test_no_node_helps_unmask_a_sum_of_fewer_noise_shares_than_calibrated(monkeypatch):
    # A SecAgg+ graph too sparse for the threshold to carry min_shares (10 clients, 4 holders each,
    # threshold 1, min_shares 10): the protocol alone would unmask the sum of the 9 clients left
    # after the server drops one. Each node's session refuses a survivor list below min_shares.
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig
    from secagg.integrations.flower import RECORD_KEY

    data = [(b.X_train, b.y_train) for b in make_bank_transactions(10, 150, seed=9)]
    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.05)  # no dropout tolerated
    options = {"neighbors": "auto", "dropout_fraction": 0.0, "corrupt_fraction": 0.0}
    make = lambda: configuration(rounds=1, dp=dp, aggregator_options=options)  # noqa: E731

    def drop_client_9(partition, node, message):
        record = message.content.config_records.get(RECORD_KEY)
        return "timeout" if partition == 9 and record is not None and record["round"] == "masked_input" else None

    fedavg, workflow, _ = flower_run(make, data, fault=drop_client_9)
    [record], [report] = fedavg.history, workflow.reports
    assert fedavg.dp_mechanism.min_shares == 10 and report.config.threshold == 1 and report.config.neighbors == 4
    assert not report.ok and not record.applied  # the session aborted: no sum was unmasked
    assert sorted(record.refused) == list(range(9))
    assert all("fewer than 10 inputs" in why for why in record.refused.values())
    # the attack works against nodes without that floor: the server unmasks the sum of 9 noise
    # shares (an honest FedAvg server then discards it; a curious one has learnt it)
    monkeypatch.setattr(fedavg_module._FedAvgMod, "_min_survivors", lambda self, ctxt, setup: 1)
    fedavg, workflow, _ = flower_run(make, data, fault=drop_client_9)
    assert workflow.reports[0].ok and len(workflow.reports[0].survivors) == 9
    assert "only 9 noise shares" in fedavg.history[0].aborted


def test_a_node_contributes_once_per_model_even_if_the_server_reruns_a_round(banks):
    # a server that claims a round aborted and sends the same model to another cohort could
    # subtract the two sums; every node keeps, in its Flower Context, what it contributed to
    data = [(b.X_train, b.y_train) for b in banks]

    class Rerun(_Tampering):
        def __call__(self, grid, context):
            self.nodes = self.enrol(grid)
            plan = self.task.next_session()
            self.run_round(grid, plan)
            self.run_round(grid, dataclasses.replace(plan, cohort=(0, 1, 3)))

    fedavg, _, _ = flower_run(lambda: configuration(rounds=2, clients_per_round=3), data, workflow=Rerun)
    first, second = fedavg.history
    assert first.applied and first.included == (0, 2, 3)
    assert not second.applied and sorted(second.refused) == [0, 3]
    assert all("already in an earlier sum" in why for why in second.refused.values())


def test_a_node_with_other_settings_says_why_and_the_rounds_go_on_without_it(banks):
    # failures travel: the node says so at enrolment and in every round it is sampled for, and
    # the round's record names it; the others' sum is applied
    data = [(b.X_train, b.y_train) for b in banks]
    other = fedavg_client_app(configuration(rounds=1, learning_rate=0.5), 4, client_data=lambda i: data[i])
    fedavg, workflow, _ = flower_run(lambda: configuration(rounds=1), data, client_apps={3: other})
    [record] = fedavg.history
    assert record.applied and record.included == (0, 1, 2)
    assert list(record.refused) == [3] and "learning_rate" in record.refused[3]
    assert "job says 0.5" in workflow.enrol_errors[workflow.nodes[3]]


def test_configurations_flower_cannot_run_are_refused_up_front(banks):
    data = [(b.X_train, b.y_train) for b in banks]
    for options, why in (({"aggregator": "plain"}, "masking or the Paillier aggregator"),
                         ({"aggregator_options": {"malicious": True}}, "needs verify_keys"),
                         ({"max_weight": None}, "max_weight")):
        with pytest.raises(ParameterError, match=why):
            flower_apps(configuration(**options), 4, client_data=lambda i: data[i])
    # a node whose partition-id is not a client id of the run cannot enrol, and says why
    three = fedavg_client_app(configuration(rounds=1), 3, client_data=lambda i: data[i])
    with pytest.raises(AbortError, match=r"missing clients \[3\].*partition-id 3"):
        flower_run(lambda: configuration(rounds=1), data, client_apps={3: three}, join_timeout=0.5)


# ---------------------------------------------------------------------------- malicious-server mode

MALICIOUS = {"malicious": True, "corrupt_fraction": 0.0, "dropout_fraction": 0.0}  # tiny rounds: no colluders

@pytest.fixture(scope="module")
def identities():
    from secagg.crypto.randomness import TestOnlySeededRandomness
    from secagg.crypto.signatures import IdentityKey

    keys = [IdentityKey.generate(TestOnlySeededRandomness(i, b"flower-fedavg-client")) for i in range(4)]
    return keys, {i: k.public_bytes for i, k in enumerate(keys)}


def test_the_malicious_server_mode_signs_by_client_id_and_computes_what_fit_computes(banks, identities):
    # each node signs with its client's identity and checks every signature against its own
    # directory (by client id), through the session places the server announced and it checked
    keys, directory = identities
    data = [(b.X_train, b.y_train) for b in banks]
    make = lambda: configuration(rounds=2, clients_per_round=3, aggregator_options=MALICIOUS)  # noqa: E731
    local = make()
    local.fit(data)
    app = fedavg_client_app(make(), 4, client_data=lambda i: data[i], identity=lambda i: keys[i],
                            verify_keys=directory)
    fedavg, workflow, _ = flower_run(make, data, app=app, verify_keys=directory)
    assert all(r.config.malicious and r.ok for r in workflow.reports)
    assert [r.participants for r in fedavg.history] == [r.participants for r in local.history]
    for mine, theirs in zip(fedavg.weights, local.weights):
        assert np.array_equal(mine, theirs)
    with pytest.raises(ParameterError, match="identity=lambda client_id"):
        fedavg_client_app(make(), 4, client_data=lambda i: data[i], verify_keys=directory)


def test_a_node_refuses_a_session_place_announced_for_another_client(banks, identities):
    # the server names which client plays each session place (the key each place's signatures are
    # checked against): a node given another client's place refuses before it draws a key
    keys, directory = identities
    data = [(b.X_train, b.y_train) for b in banks]
    make = lambda: configuration(rounds=1, aggregator_options=MALICIOUS)  # noqa: E731

    class Swapped(FedAvgWorkflow):
        def _masking_session(self, grid, plan, client_of):
            swapped = dict(client_of)
            first, second = sorted(client_of)[:2]
            swapped[first], swapped[second] = client_of[second], client_of[first]
            return super()._masking_session(grid, plan, swapped)

    app = fedavg_client_app(make(), 4, client_data=lambda i: data[i], identity=lambda i: keys[i],
                            verify_keys=directory)
    fedavg, workflow, _ = flower_run(make, data, app=app, workflow=Swapped, verify_keys=directory)
    [report] = workflow.reports
    refusals = list(report.errors.values())
    assert len(refusals) == 2 and all("the session place of client" in why for why in refusals)
    assert not fedavg.history[0].applied


# ---------------------------------------------------------------------------- the Paillier path

@pytest.fixture(scope="module")
def bank_keys():
    pytest.importorskip("gmpy2")
    from secagg.crypto.randomness import TestOnlySeededRandomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier import generate_threshold_keypair
    from secagg.paillier.threshold import safe_prime

    p = safe_prime(256)
    q = safe_prime(256)
    while q == p:
        q = safe_prime(256)
    public, shares = generate_threshold_keypair(4, 3, primes=(p, q))
    identities = [IdentityKey.generate(TestOnlySeededRandomness(i, b"flower-fedavg-bank")) for i in range(4)]
    return public, shares, identities, {i: k.public_bytes for i, k in enumerate(identities)}


def paillier_run(bank_keys, data, *, inbound=None, **options):
    """The in-process fit (the dealer's keys, every bank in one process) and the Flower run (the
    coordinator holds the public key only; bank i's node its own share) of one configuration."""
    from secagg.aggregation.paillier import PaillierAggregator
    from secagg.integrations.flower import make_secagg_paillier_mod

    public, shares, identities, verify_keys = bank_keys
    local = configuration(aggregator="paillier", aggregator_options={"keys": (public, shares)}, **options)
    local.fit(data)
    make = lambda: configuration(aggregator=PaillierAggregator(keys=(public, None), verify_keys=verify_keys),  # noqa: E731
                                 **options)
    app = fedavg_client_app(make(), 4, client_data=lambda i: data[i], paillier=lambda i: make_secagg_paillier_mod(
        share=shares[i], identity=identities[i], verify_keys=verify_keys))
    apps = {} if inbound is None else {2: lambda message, context: app(inbound(message), context)}
    fedavg, workflow, _ = flower_run(make, data, app=app, client_apps=apps)
    return local, fedavg, workflow, app


def test_the_paillier_path_on_flower_computes_exactly_what_fit_computes(banks, bank_keys):
    data = [(b.X_train, b.y_train) for b in banks]
    local, fedavg, workflow, _ = paillier_run(bank_keys, data, rounds=2)
    assert all(r.applied and r.included == (0, 1, 2, 3) for r in fedavg.history)
    for mine, theirs in zip(fedavg.weights, local.weights):
        assert np.array_equal(mine, theirs)
    assert [r.total_weight for r in fedavg.history] == [r.total_weight for r in local.history]


def test_client_level_dp_on_the_paillier_path_raises_every_banks_floor_to_min_shares(banks, bank_keys):
    pytest.importorskip("dp_accounting")
    from secagg.dp import DPConfig

    data = [(b.X_train, b.y_train) for b in banks]
    dp = DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.0)  # min_shares: all 4 banks
    local, fedavg, workflow, app = paillier_run(bank_keys, data, rounds=2, dp=dp)
    assert [float(e) for e in fedavg.history.epsilon] == [float(e) for e in local.history.epsilon]
    assert all(r.applied and r.total_weight == 4.0 for r in fedavg.history)
    # every bank decrypts no aggregate of fewer contributions than the noise was calibrated for (the
    # ClientApp's process-wide cache holds each node's bank mod)
    floors = {key[2]: mod.floor for key, mod in fedavg_module._Tasks._cache.items()
              if key[1] == "bank" and mod.tasks.fedavg.dp is dp}
    assert sorted(floors) == [0, 1, 2, 3] and set(floors.values()) == {fedavg.dp_mechanism.min_shares} == {4}


def test_a_bank_sent_another_model_than_the_one_announced_refuses_to_contribute(banks, bank_keys):
    # every bank signs its contribution over the digest of the announcement and the model it was
    # sent: a server that sends one bank another model cannot get it decrypted with the others
    from flwr.app import ConfigRecord

    from secagg.integrations.flower.fedavg import FEDAVG_RECORD_KEY

    def another_model(message):
        record = message.content.config_records.get(FEDAVG_RECORD_KEY)
        if record is not None and "model" in record:
            model = np.frombuffer(record["model"], dtype="<f8").copy()
            model[0] += 1.0
            message.content.config_records[FEDAVG_RECORD_KEY] = ConfigRecord({"model": model.tobytes()})
        return message

    data = [(b.X_train, b.y_train) for b in banks]
    _, fedavg, workflow, _ = paillier_run(bank_keys, data, rounds=1, inbound=another_model)
    [record] = fedavg.history
    assert record.applied and record.included == (0, 1, 3)
    assert list(record.refused) == [2] and "another encoding" in record.refused[2]


def test_the_paillier_path_needs_each_banks_own_mod(banks, bank_keys):
    data = [(b.X_train, b.y_train) for b in banks]
    with pytest.raises(ParameterError, match="paillier=lambda client_id"):
        fedavg_client_app(configuration(aggregator="paillier", aggregator_options={"key_bits": 512}), 4,
                          client_data=lambda i: data[i])
    with pytest.raises(ParameterError, match="only it takes one"):
        fedavg_client_app(configuration(), 4, client_data=lambda i: data[i], paillier=lambda i: None)


def test_a_bank_announced_a_masking_session_on_the_paillier_path_refuses_it(banks, bank_keys):
    # a hostile server may announce any protocol in a bank's setup: one that is not a Paillier
    # round is refused as the server's fault (it raised AttributeError: a MaskingSpec has no round)
    import json

    from flwr.app import ConfigRecord

    from secagg.integrations.flower.paillier import PAILLIER_RECORD_KEY
    from secagg.protocol.config import SecAggConfig
    from secagg.transport.sessions import config_to_header

    def masking_setup(message):
        record = message.content.config_records.get(PAILLIER_RECORD_KEY)
        if record is not None and "setup" in record:
            header = json.loads(record["setup"])
            header["protocol"] = "masking"
            header["config"] = config_to_header(SecAggConfig(num_clients=len(header["cohort"]), threshold=3,
                                                             vector_length=8))
            message.content.config_records[PAILLIER_RECORD_KEY] = ConfigRecord(
                {**dict(record), "setup": json.dumps(header, sort_keys=True)})
        return message

    data = [(b.X_train, b.y_train) for b in banks]
    _, fedavg, workflow, _ = paillier_run(bank_keys, data, rounds=1, inbound=masking_setup)
    [record] = fedavg.history
    assert record.applied and record.included == (0, 1, 3)
    assert list(record.refused) == [2]
    assert record.refused[2].startswith("ProtocolViolation: the server announced a masking session on the Paillier")
