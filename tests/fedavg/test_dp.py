import math

import numpy as np
import pytest

from secagg.dp import DPConfig
from secagg.errors import ParameterError
from secagg.fedavg import FedAvg, NumpyLogisticRegression, NumpyMLP
from tests.fedavg.test_trainer import blobs

dp_accounting = pytest.importorskip("dp_accounting")
pytest.importorskip("mpmath")

from secagg.dp.accounting import RDP_ORDERS  # noqa: E402
from tests.dp.test_accounting import independent_epsilon  # noqa: E402


def approximation_epsilon(event, relation):
    """dp-accounting's own number for the Gaussian approximation's event, at the orders secagg uses."""
    accountant = dp_accounting.rdp.RdpAccountant(orders=list(RDP_ORDERS), neighboring_relation=relation)
    accountant.compose(event)
    return accountant.get_epsilon(1e-5)


def test_client_level_history_reports_the_proven_epsilon_per_round():
    clients, test = blobs(21, clients=40)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=6, clients_per_round=20, learning_rate=0.1,
                seed=3, dp=DPConfig(epsilon=4.0, delta=1e-5, clip=1.0))
    history = fl.fit(clients, eval_data=test)
    mech = fl.dp_mechanism
    # the mechanism of a round: a cohort of exactly 20 of the 40 clients, sampled without
    # replacement; replace-one neighbours, so the sensitivity is 2 l2; the default accountant is
    # Wang-Balle-Kasiviswanathan's generic Theorem 9 on the discrete mechanism's own curve
    rho = (2 * mech.l2) ** 2 / (2 * mech.total_variance)
    assert mech.accountant.rho == pytest.approx(rho, rel=1e-12)
    expected = [independent_epsilon(mech.accountant.rho, 0.5, t, "cohort") for t in range(1, 7)]
    assert history.epsilon == pytest.approx(expected, rel=1e-9)
    assert all(e.accountant == "proven" and "Theorem 9" in e.theorem for e in history.epsilon)
    assert history[-1].epsilon.accountant == "proven" and history[-1].epsilon.delta == 1e-5
    assert history.epsilon[-1] <= 4.0 and history.epsilon[-1] == pytest.approx(4.0, rel=1e-6)
    assert all(a < b for a, b in zip(history.epsilon, history.epsilon[1:]))
    # the number of noise shares cannot depend on whether the protected client was sampled
    assert [len(r.participants) for r in history] == [20] * 6
    assert mech.min_shares == DPConfig(epsilon=4.0).min_shares(20) == 18


def test_the_gaussian_approximation_is_an_explicit_choice_and_says_so():
    clients, _ = blobs(21, clients=40)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=6, clients_per_round=20, learning_rate=0.1,
                seed=3, dp=DPConfig(epsilon=4.0, delta=1e-5, clip=1.0, accountant="gaussian_approximation"))
    history = fl.fit(clients)
    mech = fl.dp_mechanism
    assert all(e.accountant == "gaussian_approximation" and "APPROXIMATION" in e.theorem for e in history.epsilon)
    z = 1 / math.sqrt(2 * mech.accountant.rho)
    one_round = dp_accounting.rdp.RdpAccountant(orders=list(RDP_ORDERS),
                                                neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    one_round.compose(dp_accounting.SampledWithoutReplacementDpEvent(40, 20, dp_accounting.GaussianDpEvent(z)))
    expected = [dp_accounting.rdp.compute_epsilon(list(RDP_ORDERS), t * one_round.rdp, 1e-5)[0] for t in range(1, 7)]
    assert history.epsilon == pytest.approx(expected, rel=1e-9)
    # less noise than the proven default for the same target: what the approximation buys
    proven = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=6, clients_per_round=20,
                    dp=DPConfig(epsilon=4.0, delta=1e-5, clip=1.0))
    proven.fit(clients)
    assert proven.dp_mechanism.noise_multiplier > mech.noise_multiplier


def test_client_level_divides_by_the_fixed_cohort_not_by_who_arrived():
    clients, test = blobs(31, clients=20)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=4, clients_per_round=10, learning_rate=0.1,
                seed=2, simulated_dropout=0.2, dp=DPConfig(noise_multiplier=1.0, clip=1.0, dropout_tolerance=0.2))
    history = fl.fit(clients, eval_data=test)
    assert any(len(r.included) < 10 for r in history)  # two of each cohort vanish, mostly before their input
    # the denominator is public: the realised number of updates is never released through the model
    assert [r.total_weight for r in history] == [10.0] * 4


@pytest.mark.parametrize("aggregator", ["plain", "masking"])
def test_client_level_dp_learns_with_little_noise(aggregator):
    clients, test = blobs(22, clients=20)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator=aggregator, rounds=8, learning_rate=0.2, seed=4,
                simulated_dropout=0.1,
                dp=DPConfig(noise_multiplier=0.3, clip=2.0), aggregator_options={"threshold": 0.5} if
                aggregator == "masking" else None)
    history = fl.fit(clients, eval_data=test)
    assert history.metric("roc_auc")[-1] > 0.85
    assert all(r.aborted is None for r in history)
    assert all(len(r.included) >= fl.dp_mechanism.min_shares for r in history)
    assert history.epsilon[-1] > history.epsilon[0] > 0


def test_noise_is_really_added():
    clients, test = blobs(23, clients=10)
    runs = []
    for _ in range(2):
        fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=2, seed=5,
                    dp=DPConfig(noise_multiplier=5.0, clip=1.0))
        fl.fit(clients)
        runs.append(fl.server.vector)
    # same seed, same data: only the CSPRNG noise differs, by about its standard deviation
    difference = runs[0] - runs[1]
    noise = fl.dp_mechanism.noise_stddev / 10  # the average of 10 clients, two rounds
    assert np.std(difference) > 0.5 * noise


def test_record_level_dp_sgd_across_institutions():
    clients, test = blobs(24, clients=4, n=(800, 1200))
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="masking", rounds=25, learning_rate=0.5, seed=6,
                simulated_dropout=0.25,
                dp=DPConfig(epsilon=3.0, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.05,
                            dropout_tolerance=0.25), aggregator_options={"threshold": 2})
    history = fl.fit(clients, eval_data=test)
    assert history.metric("roc_auc")[-1] > 0.9
    assert all(len(r.participants) == 4 for r in history)  # every institution, every round
    assert fl.dp_mechanism.min_shares == 3
    # Poisson-sampled records, add-or-remove-one: Zhu & Wang's general bound on the mechanism's curve
    assert history.epsilon[-1] == pytest.approx(independent_epsilon(fl.dp_mechanism.accountant.rho, 0.05, 25,
                                                                    "poisson"), rel=1e-9)
    assert history.epsilon[-1] <= 3.0 and "Zhu & Wang" in history.epsilon[-1].theorem


def test_rounding_and_noise_come_from_a_csprng_whatever_the_seed(monkeypatch):
    """Every public seed fixed, the integer vectors still differ: nothing an adversary can replay."""
    from secagg.dp.mechanism import DistributedMechanism

    clients, _ = blobs(29, clients=3, n=(300, 400))
    sources = []
    original = DistributedMechanism.encode

    def recording(self, contributions, signs, source=None):
        sources.append(source)
        return original(self, contributions, signs, source)

    monkeypatch.setattr(DistributedMechanism, "encode", recording)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, seed=12,
                dp=DPConfig(noise_multiplier=1.0, level="record", record_sampling_rate=0.1))
    fl.fit(clients)
    # the trainer passes no randomness: each party's rounding keys and noise come from a fresh CSPRNG
    assert sources == [None, None, None]


def test_record_level_dp_on_paillier():
    pytest.importorskip("phe")
    clients, test = blobs(25, clients=3, n=(300, 400))
    fl = FedAvg(NumpyMLP(8, hidden=(4,), seed=0), aggregator="paillier", rounds=2, learning_rate=0.5, seed=7,
                aggregator_options={"key_bits": 512},
                dp=DPConfig(noise_multiplier=1.0, clip=1.0, level="record", record_sampling_rate=0.1))
    history = fl.fit(clients, eval_data=test)
    assert all(r.aborted is None for r in history) and len(history.epsilon) == 2


def test_a_round_short_of_noise_shares_is_discarded():
    clients, _ = blobs(26, clients=6)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=4, seed=8, simulated_dropout=0.5,
                dp=DPConfig(noise_multiplier=1.0, dropout_tolerance=0.5))
    before = fl.server.vector
    # pretend the tolerance was smaller than what happens: the guard must refuse the short sums
    fl.dp = DPConfig(noise_multiplier=1.0, dropout_tolerance=0.0)
    history = fl.fit(clients)
    assert fl.dp_mechanism.min_shares == 6
    short = [r for r in history if r.aborted]
    assert short, "the schedule should produce rounds with fewer than 6 updates in the sum"
    for record in history:
        if record.aborted:
            assert "noise shares" in record.aborted and record.included == () and len(record.dropped) == 6
        else:
            assert len(record.included) == 6
    if len(short) == len(history):
        assert np.array_equal(fl.server.vector, before)
    assert len(history.epsilon) == 4 and history.epsilon[-1] > 0  # discarded rounds still count


def test_per_example_gradients_average_to_the_batch_gradient():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(7, 5)), rng.integers(0, 3, size=7)
    for model in (NumpyLogisticRegression(5, 3, l2=0.1), NumpyMLP(5, hidden=(4,), n_classes=3, seed=1)):
        model.set_weights([w + rng.normal(size=w.shape) * 0.1 for w in model.get_weights()])
        rows = model.per_example_gradients(X, y)
        batch = model._gradients(X, y)
        if model.l2:
            batch[0] = batch[0] + model.l2 * model.get_weights()[0]
        assert rows.shape == (7, sum(w.size for w in model.get_weights()))
        assert np.allclose(rows.mean(axis=0), np.concatenate([g.ravel() for g in batch]))


@pytest.mark.parametrize("kwargs,match", [
    ({"dp": {"epsilon": 1.0}}, "DPConfig"),
    ({"dp": DPConfig(epsilon=1.0, dropout_tolerance=0.1), "simulated_dropout": 0.2}, "dropout_tolerance"),
    ({"dp": DPConfig(epsilon=1.0, level="record"), "clients_per_round": 2}, "clients_per_round"),
    ({"dp": DPConfig(epsilon=1.0, level="record", mechanism="skellam")}, "Skellam"),
])
def test_bad_dp_options(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, **kwargs)


def test_record_level_needs_per_example_gradients():
    class Opaque(NumpyLogisticRegression):
        per_example_gradients = None

    with pytest.raises(ParameterError, match="per_example_gradients"):
        FedAvg(Opaque(8), aggregator="plain", dp=DPConfig(epsilon=1.0, level="record"))


def test_client_level_skellam_with_full_participation():
    clients, test = blobs(27, clients=8)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="masking", rounds=3, learning_rate=0.2, seed=10,
                dp=DPConfig(epsilon=8.0, clip=2.0, mechanism="skellam"))
    history = fl.fit(clients, eval_data=test)
    mech = fl.dp_mechanism
    v, l2, l1 = mech.total_variance, 2 * mech.l2, 2 * mech.l1  # replace-one: twice the bounds
    zcdp = dp_accounting.ZCDpEvent(l2**2 / (2 * v) + l2**2 / (2 * v * v), max(0.0, (6 * l1 - l2**2) / (4 * v * v)))
    expected = approximation_epsilon(dp_accounting.SelfComposedDpEvent(zcdp, 3),
                                     dp_accounting.NeighboringRelation.REPLACE_ONE)
    assert history.epsilon[-1] == pytest.approx(expected, rel=1e-9)
    assert history.epsilon[-1] <= 8.0 and all(r.aborted is None for r in history)
    with pytest.raises(ParameterError, match="Skellam"):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=2, clients_per_round=4,
               dp=DPConfig(epsilon=8.0, mechanism="skellam")).fit(clients)


def test_dropout_equal_to_the_tolerance_never_loses_a_round():
    # 20% of 8 parties: the trainer used to drop round(1.6) = 2 while the noise covered floor(1.6) = 1
    clients, _ = blobs(22, clients=8)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=10, learning_rate=0.2, seed=4,
                simulated_dropout=0.2,
                dp=DPConfig(noise_multiplier=1.0, clip=1.0, dropout_tolerance=0.2, level="record",
                            record_sampling_rate=0.5))
    history = fl.fit(clients)
    assert fl.dp_mechanism.min_shares == 7
    assert all(r.aborted is None for r in history)
    assert all(len(r.included) >= 7 for r in history) and any(len(r.included) == 7 for r in history)


def test_a_refit_must_match_the_calibrated_schedule():
    big, _ = blobs(21, clients=40)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=3, clients_per_round=4, learning_rate=0.1,
                seed=3, dp=DPConfig(noise_multiplier=1.0, clip=1.0))
    fl.fit(big)
    before, mechanism = list(fl.history.epsilon), fl.dp_mechanism
    with pytest.raises(ParameterError, match="calibrated for 40 clients, 4 per round"):
        fl.fit(big[:5])  # 4 of 5 per round: a sampling rate of 0.8, not the 0.1 accounted for
    fl.clients_per_round = 8
    with pytest.raises(ParameterError, match="misreport epsilon"):
        fl.fit(big)
    fl.clients_per_round, fl.dp = 4, DPConfig(noise_multiplier=2.0, clip=1.0)
    with pytest.raises(ParameterError, match="another DPConfig"):
        fl.fit(big)
    assert fl.history.epsilon == before and fl.dp_mechanism is mechanism  # refused before any change
    # the same schedule again: the run continues and epsilon keeps composing
    fl.dp = mechanism.config
    fl.fit(big)
    assert fl.history.epsilon == pytest.approx(
        [independent_epsilon(mechanism.accountant.rho, 0.1, t, "cohort") for t in range(1, 7)], rel=1e-9)
    # a mechanism handed to a fresh FedAvg carries no schedule: refused by name (was a TypeError
    # unpacking the missing schedule)
    other = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=3, clients_per_round=8, learning_rate=0.1,
                   seed=3, dp=mechanism.config)
    other.dp_mechanism = mechanism
    with pytest.raises(ParameterError, match="no record of what it was calibrated for"):
        other.fit(big)


def test_dp_sampling_comes_from_a_csprng_whatever_the_seed():
    from secagg.crypto.randomness import TestOnlySeededRandomness

    clients, _ = blobs(28, clients=30)

    def cohorts(**kwargs):
        fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=3, clients_per_round=5, seed=11,
                    dp=DPConfig(noise_multiplier=1.0, clip=1.0), **kwargs)
        return [r.participants for r in fl.fit(clients)]

    # the training seed is public: with it the cohorts (and the amplification) would be predictable
    assert cohorts() != cohorts()
    # a test can replay them with an explicit, test-only source
    assert cohorts(dp_sampling_source=TestOnlySeededRandomness(1)) == cohorts(
        dp_sampling_source=TestOnlySeededRandomness(1))
    with pytest.raises(ParameterError, match="random_bytes"):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", dp=DPConfig(noise_multiplier=1.0), dp_sampling_source=3)


def test_record_sampling_comes_from_a_csprng_whatever_the_seed(monkeypatch):
    clients, _ = blobs(29, clients=3, n=(300, 400))
    seen = []
    original = NumpyLogisticRegression.per_example_gradients

    def recording(self, X, y):
        seen.append(X.sum())
        return original(self, X, y)

    monkeypatch.setattr(NumpyLogisticRegression, "per_example_gradients", recording)
    batches = []
    for _ in range(2):
        seen.clear()
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=2, seed=12,
               dp=DPConfig(noise_multiplier=1.0, level="record", record_sampling_rate=0.1)).fit(clients)
        batches.append(list(seen))
    assert len(batches[0]) == 6 and batches[0] != batches[1]


def test_dp_needs_two_parties_per_round():
    clients, _ = blobs(30, clients=4)
    with pytest.raises(ParameterError, match="at least 2 parties"):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, clients_per_round=1,
               dp=DPConfig(noise_multiplier=1.0)).fit(clients)
    with pytest.raises(ParameterError, match="at least 2 parties"):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1,
               dp=DPConfig(noise_multiplier=1.0, level="record")).fit(clients[:1])


@pytest.mark.parametrize("level", ["client", "record"])
def test_a_deployment_building_the_parameters_like_the_trainer_reports_the_same_epsilon(level):
    """What network mode and Flower need: the trainer's mechanism from public facts alone."""
    from secagg.dp import MechanismParameters

    clients, _ = blobs(32, clients=10, n=(200, 300))
    config = DPConfig(epsilon=2.0, delta=1e-5, clip=1.0, level=level, record_sampling_rate=0.05,
                      dropout_tolerance=0.2)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=4, learning_rate=0.5, seed=1, dp=config,
                clients_per_round=6 if level == "client" else None)
    history = fl.fit(clients)
    records = [len(y) for _, y in clients]
    parameters = MechanismParameters.for_training(config, rounds=4, dimension=fl.server.vector.size, parties=10,
                                                  cohort=6 if level == "client" else None, records=records)
    assert parameters == fl.dp_mechanism.parameters
    elsewhere = MechanismParameters.from_dict(parameters.to_dict()).build()
    elsewhere.check_calibration(fl.dp_mechanism.calibration())
    assert [elsewhere.epsilon(t) for t in range(1, 5)] == history.epsilon


@pytest.mark.parametrize("kwargs,match", [
    (dict(level="client", parties=10, cohort=11), "cohort"),
    (dict(level="client", parties=10, cohort=1), "at least 2 parties"),
    (dict(level="record", parties=3, records=[10, 20]), "record counts"),
    (dict(level="record", parties=3, records=None), "record counts"),
    (dict(level="record", parties=3, cohort=2, records=[1, 2, 3]), "cohort must be None"),
    (dict(level="client", parties=0), "parties"),
])
def test_bad_training_schedules_are_refused(kwargs, match):
    from secagg.dp import MechanismParameters

    level = kwargs.pop("level")
    with pytest.raises(ParameterError, match=match):
        MechanismParameters.for_training(DPConfig(epsilon=1.0, level=level), rounds=3, dimension=9, **kwargs)
