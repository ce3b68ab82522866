import numpy as np
import pytest

from secagg.aggregation import AggregateResult
from secagg.errors import ParameterError
from secagg.fedavg import FedAvg, FedAvgServer, NumpyLogisticRegression, NumpyMLP


def blobs(seed, clients=6, d=8, n=(60, 200)):
    """A linear problem split unevenly across clients (a dataset nobody tuned on)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    def draw(size):
        X = rng.normal(size=(size, d))
        return X, (X @ w + rng.normal(scale=1.0, size=size) > 0).astype(int)
    return [draw(int(rng.integers(*n))) for _ in range(clients)], draw(1000)


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", [11, 12])
def test_masking_matches_plain_within_the_quantisation_bound(seed):
    clients, test = blobs(seed)
    runs = {}
    for name in ("plain", "masking"):
        fl = FedAvg(NumpyLogisticRegression(8), aggregator=name, rounds=6, local_epochs=1, batch_size=16,
                    learning_rate=0.05, simulated_dropout=0.2, seed=seed,
                    aggregator_options={"threshold": 0.5} if name == "masking" else None)
        runs[name] = (fl.fit(clients, eval_data=test), fl.weights)
    (plain_h, plain_w), (mask_h, mask_w) = runs["plain"], runs["masking"]
    assert [r.included for r in plain_h] == [r.included for r in mask_h]
    bound = sum(r.error_bound for r in mask_h)  # per-round bounds of the average, server lr 1
    assert 0 < max_difference(plain_w, mask_w) <= bound
    assert mask_h.metric("roc_auc")[-1] > 0.85


def test_federated_training_learns_and_records_history():
    clients, test = blobs(3)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="masking", rounds=4, clients_per_round=4, learning_rate=0.1,
                simulated_dropout=0.25, seed=1)
    history = fl.fit(clients, eval_data=test)
    assert len(history) == 4
    for record in history:
        assert len(record.participants) == 4 and len(record.dropped) <= 1  # a drop at unmasking is still summed
        assert set(record.included) | set(record.dropped) == set(record.participants)
        assert record.total_weight == sum(min(len(clients[c][1]), max(len(y) for _, y in clients)) for c in record.included)
        assert record.bytes_per_client > 8 * 9 and record.seconds > 0 and record.aborted is None
    assert history.metric("roc_auc")[-1] > 0.9


def test_dropped_clients_are_simply_not_in_the_sum():
    # The update of a round with client c dropped equals the plain average over the others.
    clients, _ = blobs(4, clients=4)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, simulated_dropout=0.25, seed=5)
    start = fl.server.vector
    record = fl.fit(clients)[0]
    (gone,) = record.dropped
    manual = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, seed=5)
    kept = [i for i in range(4) if i != gone]
    updates = []
    for i in kept:
        model = NumpyLogisticRegression(8)
        model.train(*clients[i], epochs=1, batch_size=32, learning_rate=0.1, proximal_mu=0.0,
                    rng=manual._rng(1, 0, i))
        updates.append((len(clients[i][1]), np.concatenate([w.ravel() for w in model.get_weights()]) - start))
    expected = start + sum(n * u for n, u in updates) / sum(n for n, _ in updates)
    assert np.allclose(fl.server.vector, expected)


def test_an_aborted_round_leaves_the_model_unchanged():
    clients, _ = blobs(5, clients=3)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="masking", rounds=1, simulated_dropout=0.67, seed=0,
                aggregator_options={"threshold": 2})
    before = fl.server.vector
    record = fl.fit(clients)[0]
    assert record.aborted and record.included == ()
    assert np.array_equal(fl.server.vector, before)


def test_fedprox_and_server_learning_rate_and_mlp_run():
    clients, test = blobs(6)
    fl = FedAvg(NumpyMLP(8, hidden=(6,), seed=0), aggregator="masking", rounds=3, proximal_mu=0.1,
                server_learning_rate=0.5, learning_rate=0.05, seed=2)
    assert fl.fit(clients, eval_data=test).metric("accuracy")[-1] > 0.7


def test_server_accepts_only_aggregate_results():
    server = FedAvgServer([np.zeros(3)])
    with pytest.raises(ParameterError, match="AggregateResult"):
        server.apply(np.ones(3))
    assert not server.apply(AggregateResult(None, 0.0, (), (1,), 0.0, aborted="too few"))
    assert server.apply(AggregateResult(np.array([2.0, 4.0, 6.0]), 2.0, (0, 1), (), 0.0))
    assert server.weights[0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("clients,match", [
    ([], "non-empty"),
    ([(np.zeros((0, 8)), np.zeros(0))], "no samples"),
    ([(np.zeros((5, 8)), np.zeros(5)), (np.zeros((5, 7)), np.zeros(5))], "clients\\[1\\].*n_features=8"),
    ([(np.full((5, 8), np.nan), np.zeros(5))], "NaN"),
    ([(np.zeros((5, 8)), np.zeros(4))], "one label per row"),
    ([np.zeros((5, 8))], "pair"),
])
def test_bad_client_data_names_the_problem(clients, match):
    with pytest.raises(ParameterError, match=match):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1).fit(clients)


@pytest.mark.parametrize("kwargs,match", [
    ({"rounds": 0}, "rounds"), ({"simulated_dropout": 1.0}, "simulated_dropout"), ({"clip": 0}, "clip"),
    ({"clients_per_round": 10}, "clients_per_round"), ({"clients_per_round": 1.5}, "clients_per_round"),
    ({"aggregator": "nope"}, "unknown aggregator"), ({"learning_rate": 0}, "learning_rate"),
    ({"max_weight": 0.5}, "max_weight"), ({"batch_size": 0}, "batch_size"),
    ({"aggregator_options": {"fractional_bits": 40}, "max_weight": 1e9}, "64|2\\*\\*52"),
])
def test_bad_configuration_names_the_parameter(kwargs, match):
    clients, _ = blobs(7, clients=3)
    with pytest.raises(ParameterError, match=match):
        FedAvg(NumpyLogisticRegression(8), **({"rounds": 1} | kwargs)).fit(clients)


def test_diverging_local_training_is_reported():
    class Exploding(NumpyLogisticRegression):
        def train(self, X, y, **kwargs):
            self._weights[0][:] = np.nan

    clients, _ = blobs(8, clients=2)
    with pytest.raises(ParameterError, match="NaN"):
        FedAvg(Exploding(8), aggregator="plain", rounds=1).fit(clients)


def test_dropout_is_now_simulated_dropout():
    clients, _ = blobs(4, clients=4)
    with pytest.warns(DeprecationWarning, match="simulated_dropout"):
        old = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, dropout=0.25, seed=5)
    new = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=1, simulated_dropout=0.25, seed=5)
    assert old.simulated_dropout == new.simulated_dropout == 0.25
    assert old.fit(clients)[0].dropped == new.fit(clients)[0].dropped
    with pytest.warns(DeprecationWarning):
        assert new.dropout == 0.25
    with pytest.raises(ParameterError, match="simulated_dropout only"), pytest.warns(DeprecationWarning):
        FedAvg(NumpyLogisticRegression(8), dropout=0.1, simulated_dropout=0.2)
