import math

import numpy as np
import pytest

from secagg.dp import DPConfig
from secagg.errors import ParameterError
from secagg.fedavg import MLP, FedAvg, LogisticRegression
from tests.fedavg.test_trainer import blobs

dp_accounting = pytest.importorskip("dp_accounting")


def dp_accounting_epsilon(noise_multiplier, rate, rounds, delta):
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    event = gaussian if rate >= 1 else dp_accounting.PoissonSampledDpEvent(rate, gaussian)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return accountant.get_epsilon(delta)


def test_client_level_history_reports_dp_accountings_epsilon_per_round():
    clients, test = blobs(21, clients=40)
    fl = FedAvg(LogisticRegression(8), aggregator="plain", rounds=6, clients_per_round=20, learning_rate=0.1,
                seed=3, dp=DPConfig(epsilon=4.0, delta=1e-5, clip=1.0))
    history = fl.fit(clients, eval_data=test)
    mech = fl.dp_mechanism
    # the mechanism of a round: Poisson-sampled clients (rate 20/40), Gaussian with z = sigma / l2
    z = math.sqrt(mech.total_variance) / mech.l2
    expected = [dp_accounting_epsilon(z, 0.5, t, 1e-5) for t in range(1, 7)]
    assert history.epsilon == pytest.approx(expected, rel=1e-9)
    assert history.epsilon[-1] <= 4.0 and history.epsilon[-1] == pytest.approx(4.0, rel=1e-3)
    assert all(a < b for a, b in zip(history.epsilon, history.epsilon[1:]))
    sizes = [len(r.participants) for r in history]
    assert len(set(sizes)) > 1  # Poisson sampling, not a fixed cohort


@pytest.mark.parametrize("aggregator", ["plain", "masking"])
def test_client_level_dp_learns_with_little_noise(aggregator):
    clients, test = blobs(22, clients=20)
    fl = FedAvg(LogisticRegression(8), aggregator=aggregator, rounds=8, learning_rate=0.2, seed=4, dropout=0.1,
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
        fl = FedAvg(LogisticRegression(8), aggregator="plain", rounds=2, seed=5,
                    dp=DPConfig(noise_multiplier=5.0, clip=1.0))
        fl.fit(clients)
        runs.append(fl.server.vector)
    # same seed, same data: only the CSPRNG noise differs, by about its standard deviation
    difference = runs[0] - runs[1]
    noise = fl.dp_mechanism.noise_stddev / 10  # the average of 10 clients, two rounds
    assert np.std(difference) > 0.5 * noise


def test_record_level_dp_sgd_across_institutions():
    clients, test = blobs(24, clients=4, n=(800, 1200))
    fl = FedAvg(LogisticRegression(8), aggregator="masking", rounds=25, learning_rate=0.5, seed=6, dropout=0.25,
                dp=DPConfig(epsilon=3.0, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.05,
                            dropout_tolerance=0.25), aggregator_options={"threshold": 3})
    history = fl.fit(clients, eval_data=test)
    assert history.metric("roc_auc")[-1] > 0.9
    assert all(len(r.participants) == 4 for r in history)  # every institution, every round
    assert fl.dp_mechanism.min_shares == 3
    z = math.sqrt(fl.dp_mechanism.total_variance) / fl.dp_mechanism.l2
    assert history.epsilon[-1] == pytest.approx(dp_accounting_epsilon(z, 0.05, 25, 1e-5), rel=1e-9)
    assert history.epsilon[-1] <= 3.0


def test_record_level_dp_on_paillier():
    pytest.importorskip("phe")
    clients, test = blobs(25, clients=3, n=(300, 400))
    fl = FedAvg(MLP(8, hidden=(4,), seed=0), aggregator="paillier", rounds=2, learning_rate=0.5, seed=7,
                aggregator_options={"key_bits": 512},
                dp=DPConfig(noise_multiplier=1.0, clip=1.0, level="record", record_sampling_rate=0.1))
    history = fl.fit(clients, eval_data=test)
    assert all(r.aborted is None for r in history) and len(history.epsilon) == 2


def test_a_round_short_of_noise_shares_is_discarded():
    clients, _ = blobs(26, clients=6)
    fl = FedAvg(LogisticRegression(8), aggregator="plain", rounds=4, seed=8, dropout=0.5,
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
    for model in (LogisticRegression(5, 3, l2=0.1), MLP(5, hidden=(4,), n_classes=3, seed=1)):
        model.set_weights([w + rng.normal(size=w.shape) * 0.1 for w in model.get_weights()])
        rows = model.per_example_gradients(X, y)
        batch = model._gradients(X, y)
        if model.l2:
            batch[0] = batch[0] + model.l2 * model.get_weights()[0]
        assert rows.shape == (7, sum(w.size for w in model.get_weights()))
        assert np.allclose(rows.mean(axis=0), np.concatenate([g.ravel() for g in batch]))


@pytest.mark.parametrize("kwargs,match", [
    ({"dp": {"epsilon": 1.0}}, "DPConfig"),
    ({"dp": DPConfig(epsilon=1.0, dropout_tolerance=0.1), "dropout": 0.2}, "dropout_tolerance"),
    ({"dp": DPConfig(epsilon=1.0, level="record"), "clients_per_round": 2}, "clients_per_round"),
    ({"dp": DPConfig(epsilon=1.0, level="record", mechanism="skellam")}, "Skellam"),
])
def test_bad_dp_options(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        FedAvg(LogisticRegression(8), aggregator="plain", rounds=1, **kwargs)


def test_record_level_needs_per_example_gradients():
    class Opaque(LogisticRegression):
        per_example_gradients = None

    with pytest.raises(ParameterError, match="per_example_gradients"):
        FedAvg(Opaque(8), aggregator="plain", dp=DPConfig(epsilon=1.0, level="record"))


def test_client_level_skellam_with_full_participation():
    clients, test = blobs(27, clients=8)
    fl = FedAvg(LogisticRegression(8), aggregator="masking", rounds=3, learning_rate=0.2, seed=10,
                dp=DPConfig(epsilon=8.0, clip=2.0, mechanism="skellam"))
    history = fl.fit(clients, eval_data=test)
    mech = fl.dp_mechanism
    v, l2 = mech.total_variance, mech.l2
    zcdp = dp_accounting.ZCDpEvent(l2**2 / (2 * v) + l2**2 / (2 * v * v), max(0.0, (6 * mech.l1 - l2**2) / (4 * v * v)))
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(zcdp, 3)
    assert history.epsilon[-1] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    assert history.epsilon[-1] <= 8.0 and all(r.aborted is None for r in history)
    with pytest.raises(ParameterError, match="Skellam"):
        FedAvg(LogisticRegression(8), aggregator="plain", rounds=2, clients_per_round=4,
               dp=DPConfig(epsilon=8.0, mechanism="skellam")).fit(clients)
