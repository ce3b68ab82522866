import sys

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.fedavg import FedAvg, ModelAdapter


def problem(seed=0, n=600, d=6, classes=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if classes == 2:
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    else:
        y = np.argmax(X[:, :classes], axis=1)
    return X, y


def average(weight_lists):
    return [np.mean(ws, axis=0) for ws in zip(*weight_lists)]


# ------------------------------------------------------------------------------ scikit-learn

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression as SkLogistic  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402

from secagg.fedavg.adapters import SklearnLinearAdapter  # noqa: E402


@pytest.fixture(params=["sgd", "logistic"])
def sk_model(request):
    estimator = SGDClassifier(loss="log_loss", alpha=1e-4) if request.param == "sgd" else SkLogistic()
    return SklearnLinearAdapter(estimator, n_features=6)


def test_sklearn_adapter_trains_from_zero_and_round_trips_weights(sk_model):
    X, y = problem()
    assert isinstance(sk_model, ModelAdapter)
    assert all(np.all(w == 0) for w in sk_model.get_weights())
    sk_model.train(X, y, epochs=3, batch_size=32, learning_rate=0.05, proximal_mu=0.0, rng=np.random.default_rng(0))
    metrics = sk_model.evaluate(X, y)
    assert metrics["accuracy"] > 0.9 and metrics["roc_auc"] > 0.95
    weights = sk_model.get_weights()
    twin = sk_model.copy()
    twin.set_weights([w * 0 for w in weights])
    assert np.allclose(sk_model.get_weights()[0], weights[0])  # copy is independent
    with pytest.raises(ParameterError, match="shape"):
        sk_model.set_weights([weights[0][:, :3], weights[1]])
    with pytest.raises(ParameterError, match="NaN"):
        sk_model.set_weights([weights[0] * np.nan, weights[1]])


def test_sklearn_training_continues_from_the_set_weights():
    X, y = problem()
    model = SklearnLinearAdapter(SGDClassifier(loss="log_loss"), n_features=6)
    start = [np.full((1, 6), 3.0), np.array([-2.0])]
    model.set_weights(start)
    model.train(X[:16], y[:16], epochs=1, batch_size=16, learning_rate=1e-4, proximal_mu=0.0,
                rng=np.random.default_rng(0))
    assert np.allclose(model.get_weights()[0], 3.0, atol=0.01)  # a tiny step from the start, not from zero


def test_sklearn_fedavg_of_two_halves_works():
    X, y = problem(1)
    # two clients: the sum tells each the other's update, so no corrupt client can be tolerated
    fl = FedAvg(SklearnLinearAdapter(SGDClassifier(loss="log_loss"), n_features=6), aggregator="masking",
                rounds=3, learning_rate=0.01, seed=0, aggregator_options={"corrupt_fraction": 0})
    fl.fit([(X[:300], y[:300]), (X[300:], y[300:])])
    assert fl.model.evaluate(X, y)["accuracy"] > 0.9


def test_sklearn_refuses_fedprox_and_bad_labels():
    X, y = problem()
    model = SklearnLinearAdapter(SGDClassifier(), n_features=6)
    with pytest.raises(ParameterError, match="FedProx"):
        model.train(X, y, epochs=1, batch_size=8, learning_rate=0.1, proximal_mu=0.1)
    with pytest.raises(ParameterError, match="labels"):
        model.train(X, y + 5, epochs=1, batch_size=8, learning_rate=0.1, proximal_mu=0.0)
    with pytest.raises(ParameterError, match="SGDClassifier"):
        SklearnLinearAdapter(object(), n_features=6)


def test_sklearn_multiclass_and_one_class_local_data():
    X, y = problem(2, classes=3)
    model = SklearnLinearAdapter(SGDClassifier(loss="log_loss"), n_features=6, n_classes=3)
    model.train(X, y, epochs=3, batch_size=32, learning_rate=0.05, proximal_mu=0.0, rng=np.random.default_rng(0))
    assert model.evaluate(X, y)["accuracy"] > 0.8
    logistic = SklearnLinearAdapter(SkLogistic(), n_features=6)
    logistic.train(X[y == 0], np.zeros(int((y == 0).sum()), int), epochs=5, batch_size=1, learning_rate=1,
                   proximal_mu=0.0)
    assert all(np.all(w == 0) for w in logistic.get_weights())  # one class: weights kept


# ------------------------------------------------------------------------------ missing extras

def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"secagg\[sklearn\]"):
        SklearnLinearAdapter(None, n_features=2)
    monkeypatch.setitem(sys.modules, "torch", None)
    from secagg.fedavg.adapters import TorchModuleAdapter

    with pytest.raises(ImportError, match=r"secagg\[torch\]"):
        TorchModuleAdapter(None)


def test_importing_the_adapters_module_does_not_import_the_frameworks():
    import subprocess

    code = ("import sys, secagg.fedavg.adapters; "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------ PyTorch

def torch_or_skip():
    return pytest.importorskip("torch")


def test_torch_adapter_binary_and_multiclass():
    torch = torch_or_skip()
    from secagg.fedavg.adapters import TorchModuleAdapter

    torch.manual_seed(0)
    X, y = problem(3)
    binary = TorchModuleAdapter(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)))
    before = binary.evaluate(X, y)["loss"]
    binary.train(X, y, epochs=5, batch_size=32, learning_rate=0.1, proximal_mu=0.0, rng=np.random.default_rng(0))
    after = binary.evaluate(X, y)
    assert after["loss"] < before and after["roc_auc"] > 0.95 and binary.n_classes == 2
    X3, y3 = problem(4, classes=3)
    multi = TorchModuleAdapter(torch.nn.Linear(6, 3), n_features=6)
    multi.train(X3, y3, epochs=5, batch_size=32, learning_rate=0.1, proximal_mu=0.0, rng=np.random.default_rng(0))
    assert multi.evaluate(X3, y3)["accuracy"] > 0.8 and multi.n_classes == 3


def test_torch_weights_round_trip_copy_and_fedprox():
    torch = torch_or_skip()
    from secagg.fedavg.adapters import TorchModuleAdapter

    torch.manual_seed(1)
    X, y = problem(5)
    model = TorchModuleAdapter(torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)))
    weights = model.get_weights()
    assert len(weights) == 4 + 2 + 2  # parameters, then the float buffers (running mean and var)
    twin = model.copy()
    twin.set_weights([w + 1 for w in weights])
    assert np.allclose(model.get_weights()[0], weights[0])
    distances = []
    for mu in (0.0, 10.0):
        trained = model.copy()
        trained.train(X, y, epochs=3, batch_size=16, learning_rate=0.05, proximal_mu=mu, rng=np.random.default_rng(0))
        distances.append(sum(np.linalg.norm(a - b) for a, b in zip(trained.get_weights()[:4], weights[:4])))
    assert distances[1] < 0.5 * distances[0]
    with pytest.raises(ParameterError, match="shape"):
        model.set_weights([w[..., :1] if w.ndim else w for w in weights])


def test_torch_fedavg_with_masking_matches_plain():
    torch = torch_or_skip()
    from secagg.fedavg.adapters import TorchModuleAdapter

    X, y = problem(6)
    clients = [(X[i::3], y[i::3]) for i in range(3)]
    final = {}
    for name in ("plain", "masking"):
        torch.manual_seed(0)
        fl = FedAvg(TorchModuleAdapter(torch.nn.Linear(6, 1)), aggregator=name, rounds=4, learning_rate=0.2, seed=0)
        history = fl.fit(clients, eval_data=(X, y))
        final[name] = (fl.weights, history)
    bound = sum(r.error_bound for r in final["masking"][1])
    # float32 parameters add their own rounding (~1e-7 relative) on top of the fixed-point bound
    assert max(np.max(np.abs(a - b)) for a, b in zip(final["plain"][0], final["masking"][0])) <= bound + 1e-6
    assert final["masking"][1][-1].metrics["roc_auc"] > 0.95
