import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.fedavg import ModelAdapter, NumpyLogisticRegression, NumpyMLP
from secagg.fedavg.metrics import average_precision, roc_auc


def numeric_gradient(model, X, y, eps=1e-6):
    grads = []
    weights = model.get_weights()
    for i, w in enumerate(weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            for sign in (1, -1):
                shifted = [v.copy() for v in weights]
                shifted[i][idx] += sign * eps
                model.set_weights(shifted)
                g[idx] += sign * model.evaluate(X, y)["loss"] / (2 * eps)
        grads.append(g)
    model.set_weights(weights)
    return grads


@pytest.mark.parametrize("model", [NumpyLogisticRegression(4), NumpyLogisticRegression(4, n_classes=3),
                                   NumpyMLP(4, hidden=(5,), seed=1),
                                   NumpyMLP(4, hidden=(3, 4), n_classes=3, seed=2)])
def test_gradients_match_finite_differences(model):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    y = rng.integers(0, model.n_classes, 20)
    model.set_weights([w + rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    analytic = model._gradients(X, y)
    for a, n in zip(analytic, numeric_gradient(model, X, y)):
        assert np.allclose(a, n, atol=1e-5)


def test_models_implement_the_adapter_protocol_and_learn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 5))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    for model in (NumpyLogisticRegression(5), NumpyMLP(5, hidden=(8,))):
        assert isinstance(model, ModelAdapter)
        before = model.evaluate(X, y)["loss"]
        model.train(X, y, epochs=5, batch_size=32, learning_rate=0.1, proximal_mu=0.0, rng=rng)
        after = model.evaluate(X, y)
        assert after["loss"] < before and after["accuracy"] > 0.9 and after["roc_auc"] > 0.95


def test_fedprox_keeps_weights_near_the_start():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    distances = []
    for mu in (0.0, 10.0):
        model = NumpyLogisticRegression(3)
        model.train(X, y, epochs=5, batch_size=16, learning_rate=0.05, proximal_mu=mu, rng=np.random.default_rng(0))
        distances.append(np.linalg.norm(np.concatenate([w.ravel() for w in model.get_weights()])))
    assert distances[1] < 0.5 * distances[0]


def test_copy_is_independent():
    model = NumpyMLP(3, hidden=(4,))
    twin = model.copy()
    twin.set_weights([w + 1 for w in twin.get_weights()])
    assert not np.allclose(model.get_weights()[0], twin.get_weights()[0])


@pytest.mark.parametrize("call,match", [
    (lambda m: m.set_weights([np.zeros((3, 1))]), "expected 2 weight arrays"),
    (lambda m: m.set_weights([np.zeros((4, 1)), np.zeros(1)]), "shape"),
    (lambda m: m.set_weights([np.full((3, 1), np.nan), np.zeros(1)]), "NaN"),
    (lambda m: m.evaluate(np.zeros((2, 4)), [0, 1]), "n_features=3"),
    (lambda m: m.evaluate(np.zeros((2, 3)), [0, 2]), "labels"),
    (lambda m: m.evaluate(np.zeros((0, 3)), []), "no samples"),
    (lambda m: m.evaluate(np.full((2, 3), np.nan), [0, 1]), "NaN"),
    (lambda m: m.train(np.zeros((2, 3)), [0, 1], epochs=0, batch_size=1, learning_rate=0.1, proximal_mu=0), "local_epochs"),
    (lambda m: m.train(np.zeros((2, 3)), [0, 1], epochs=1, batch_size=1, learning_rate=-1, proximal_mu=0), "learning_rate"),
    (lambda m: m.train(np.full((2, 3), 1e200), [0, 1], epochs=1, batch_size=1, learning_rate=1e200, proximal_mu=0),
     "diverged"),
])
def test_bad_inputs_name_the_problem(call, match):
    with pytest.raises(ParameterError, match=match):
        call(NumpyLogisticRegression(3))


def test_metrics_against_hand_computed_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, s) == pytest.approx(0.75)
    assert average_precision(y, s) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)


def test_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 2)  # with ties
    assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s))


def test_the_former_names_still_work_and_warn():
    import secagg.fedavg
    import secagg.fedavg.models

    for module in (secagg.fedavg, secagg.fedavg.models):
        with pytest.warns(DeprecationWarning, match="LogisticRegression is now NumpyLogisticRegression"):
            assert module.LogisticRegression is NumpyLogisticRegression
        with pytest.warns(DeprecationWarning, match="MLP is now NumpyMLP"):
            assert module.MLP is NumpyMLP
    with pytest.warns(DeprecationWarning):
        from secagg.fedavg import LogisticRegression  # noqa: F401  (the import form users wrote)
    with pytest.raises(AttributeError):
        secagg.fedavg.NoSuchModel  # noqa: B018
