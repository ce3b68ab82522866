import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.fedavg.data import (
    FEATURE_NAMES,
    make_bank_transactions,
    partition_dirichlet,
    partition_iid,
    partition_quantity,
)
from secagg.fedavg.models import NumpyLogisticRegression


def test_banks_have_realistic_imbalance_and_shapes():
    banks = make_bank_transactions(8, 3000, seed=1)
    assert len(banks) == 8 and len({b.name for b in banks}) == 8
    overall = np.mean(np.concatenate([np.concatenate([b.y_train, b.y_test]) for b in banks]))
    assert 0.005 < overall < 0.02
    for b in banks:
        assert b.X_train.shape[1] == len(FEATURE_NAMES) == b.X_test.shape[1]
        assert b.y_train.sum() >= 5 and b.y_test.sum() >= 2
        assert 0.004 < b.fraud_rate < 0.02
        assert abs(b.X_test.shape[0] / (b.X_train.shape[0] + b.X_test.shape[0]) - 0.3) < 0.01
        assert np.all(np.isfinite(b.X_train))


def test_common_standardisation_and_bank_specific_profiles():
    banks = make_bank_transactions(8, 4000, seed=2)
    pooled = np.vstack([b.X_train for b in banks])
    assert np.all(np.abs(pooled.mean(axis=0)) < 0.6)  # one transform for all, roughly centred overall
    online = [b.X_train[:, FEATURE_NAMES.index("online")].mean() for b in banks]
    assert max(online) - min(online) > 1.0  # e.g. the neobank is far more online than rural savings


def test_determinism():
    a, b = make_bank_transactions(3, 500, seed=4), make_bank_transactions(3, 500, seed=4)
    c = make_bank_transactions(3, 500, seed=5)
    assert all(np.array_equal(x.X_train, y.X_train) for x, y in zip(a, b))
    assert not np.array_equal(a[0].X_train, c[0].X_train)


def auc_of(model, X, y):
    return model.evaluate(X, y)["roc_auc"]


@pytest.mark.parametrize("seed", [0, 7])
def test_pooled_training_beats_banks_alone_on_everyones_fraud(seed):
    banks = make_bank_transactions(8, 4000, seed=seed)
    X_test = np.vstack([b.X_test for b in banks])
    y_test = np.concatenate([b.y_test for b in banks])

    def fit(X, y):
        model = NumpyLogisticRegression(X.shape[1])
        model.train(X, y, epochs=10, batch_size=64, learning_rate=0.1, proximal_mu=0.0, rng=np.random.default_rng(0))
        return model

    alone = np.mean([auc_of(fit(b.X_train, b.y_train), X_test, y_test) for b in banks])
    pooled = auc_of(fit(np.vstack([b.X_train for b in banks]), np.concatenate([b.y_train for b in banks])),
                    X_test, y_test)
    assert 0.88 < pooled < 0.995
    assert pooled - alone > 0.05


@pytest.mark.parametrize("kwargs,match", [
    ({"n_banks": 0}, "n_banks"), ({"samples_per_bank": 50}, "samples_per_bank"),
    ({"samples_per_bank": [500, 500]}, "entries"), ({"fraud_rate": 0.5}, "fraud_rate"),
    ({"test_fraction": 0.95}, "test_fraction"),
])
def test_bad_generator_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make_bank_transactions(**({"n_banks": 3, "samples_per_bank": 500} | kwargs))


def labelled(n=1000, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, classes, n)


@pytest.mark.parametrize("partition,kwargs", [(partition_iid, {}), (partition_dirichlet, {"alpha": 0.3}),
                                              (partition_quantity, {"alpha": 0.5})])
def test_every_sample_used_exactly_once_and_no_empty_client(partition, kwargs):
    X, y = labelled()
    X[:, 0] = np.arange(X.shape[0])  # tag rows
    shards = partition(X, y, 10, seed=3, **kwargs)
    assert len(shards) == 10 and all(len(s[1]) >= 1 for s in shards)
    tags = np.sort(np.concatenate([s[0][:, 0] for s in shards]))
    assert np.array_equal(tags, np.arange(X.shape[0]))
    for Xs, ys in shards:
        assert np.array_equal(y[Xs[:, 0].astype(int)], ys)


def test_dirichlet_skews_labels_and_quantity_skews_sizes():
    X, y = labelled(5000)
    iid = partition_iid(X, y, 10, seed=1)
    skewed = partition_dirichlet(X, y, 10, alpha=0.1, seed=1)
    def dominant_share(shards):
        return np.mean([np.bincount(ys, minlength=5).max() / len(ys) for _, ys in shards])
    assert dominant_share(skewed) > 0.5 > dominant_share(iid)
    sizes = [len(ys) for _, ys in partition_quantity(X, y, 10, alpha=0.3, seed=1)]
    assert max(sizes) > 4 * min(sizes)
    assert max(len(ys) for _, ys in iid) - min(len(ys) for _, ys in iid) <= 1


@pytest.mark.parametrize("call,match", [
    (lambda X, y: partition_iid(X, y, 0), "n_clients"),
    (lambda X, y: partition_iid(X, y, 2000), "exceeds"),
    (lambda X, y: partition_iid(X, y[:10], 2), "samples"),
    (lambda X, y: partition_iid(X[:0], y[:0], 2), "empty"),
    (lambda X, y: partition_dirichlet(X, y, 2, alpha=0), "alpha"),
    (lambda X, y: partition_quantity(X, y, 10, min_samples=500), "min_samples"),
])
def test_bad_partition_arguments(call, match):
    X, y = labelled()
    with pytest.raises(ParameterError, match=match):
        call(X, y)
