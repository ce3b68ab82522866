import json
import zipfile

import numpy as np
import pytest

from secagg._version import __version__
from secagg.errors import ParameterError
from secagg.fedavg import FedAvg, NumpyLogisticRegression, NumpyMLP
from secagg.fedavg.checkpoint import load_weights, read_schema, save_weights
from tests.fedavg.test_trainer import blobs


def trained(model, rounds=2):
    clients, test = blobs(31, clients=3)
    fl = FedAvg(model, aggregator="plain", rounds=rounds, learning_rate=0.1, seed=0)
    fl.fit(clients)
    return fl, test


def test_the_global_model_saves_and_loads_with_its_schema(tmp_path):
    fl, (X, _) = trained(NumpyLogisticRegression(8))
    path = fl.save(tmp_path / "fraud-model")
    assert path.name == "fraud-model.npz"
    schema = read_schema(path)
    assert schema["format"] == "secagg.fedavg.weights" and schema["format_version"] == 1
    assert schema["secagg_version"] == __version__
    assert schema["model"] == {"class": "secagg.fedavg.models.NumpyLogisticRegression", "n_features": 8, "n_classes": 2}
    assert schema["weights"] == [{"name": "W", "shape": [8, 1], "dtype": "float64"},
                                 {"name": "b", "shape": [1], "dtype": "float64"}]
    assert schema["metadata"]["rounds"] == 2 and schema["metadata"]["aggregator"] == "plain"
    fresh = FedAvg(NumpyLogisticRegression(8), aggregator="plain")
    assert not np.allclose(fresh.predict_proba(X), fl.predict_proba(X))
    fresh.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(fresh.weights, fl.weights))
    assert np.array_equal(fresh.predict_proba(X), fl.predict_proba(X))
    bare = NumpyLogisticRegression(8)
    load_weights(bare, path)  # a bare model, e.g. the bank's scoring service
    assert np.array_equal(bare.predict_proba(X), fl.predict_proba(X)[:, 1])


@pytest.mark.parametrize("other, match", [
    (NumpyLogisticRegression(7), "n_features 8 .*this model: 7"),
    (NumpyLogisticRegression(8, n_classes=3), "n_classes 2 .*this model: 3"),
    (NumpyMLP(8, hidden=(4,)), "class 'secagg.fedavg.models.NumpyLogisticRegression'"),
])
def test_a_mismatched_model_is_refused_and_left_unchanged(tmp_path, other, match):
    fl, _ = trained(NumpyLogisticRegression(8))
    path = fl.save(tmp_path / "m.npz")
    before = other.get_weights()
    with pytest.raises(ParameterError, match=match):
        load_weights(other, path)
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), before))


def test_another_architecture_of_the_same_class_is_refused(tmp_path):
    fl, _ = trained(NumpyMLP(8, hidden=(4,), seed=1))
    path = fl.save(tmp_path / "m.npz")
    with pytest.raises(ParameterError, match="shape"):
        FedAvg(NumpyMLP(8, hidden=(5,)), aggregator="plain").load_weights(path)
    with pytest.raises(ParameterError, match=r"weights \['W1', 'b1', 'W2', 'b2'\], this model \['W1', 'b1', 'W2', "):
        FedAvg(NumpyMLP(8, hidden=(4, 4)), aggregator="plain").load_weights(path)


def rewrite(path, target, change):
    """The archive at ``path`` with ``change(contents)`` applied, written to ``target``."""
    with np.load(path, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    change(contents)
    np.savez(target, **contents)
    return target


def set_schema(contents, edit):
    schema = json.loads(str(contents["__schema__"]))
    edit(schema)
    contents["__schema__"] = np.array(json.dumps(schema))


@pytest.mark.parametrize("change, match", [
    (lambda c: c.pop("__schema__"), "no schema"),
    (lambda c: c.update(__schema__=np.array("{not json")), "not JSON"),
    (lambda c: set_schema(c, lambda s: s.update(format="something else")), "not a secagg weights file"),
    (lambda c: set_schema(c, lambda s: s.update(format_version=2)), "format version 2"),
    (lambda c: c.update(w0000=c["w0000"].astype(np.float32)), "float32, not float64"),
    (lambda c: c.update(w0000=c["w0000"][:4]), "shape"),
    (lambda c: c.update(w0002=np.zeros(3)), "do not match the schema"),
    (lambda c: c.pop("w0001"), "do not match the schema"),
    (lambda c: c.update(w0001=np.array([np.nan])), "NaN"),
    (lambda c: set_schema(c, lambda s: s["weights"][0].update(name="V")), r"weights \['V', 'b'\]"),
])
def test_a_tampered_file_is_refused_before_anything_changes(tmp_path, change, match):
    fl, _ = trained(NumpyLogisticRegression(8))
    path = rewrite(fl.save(tmp_path / "m.npz"), tmp_path / "bad.npz", change)
    model = NumpyLogisticRegression(8)
    with pytest.raises(ParameterError, match=match):
        load_weights(model, path)
    assert all(np.all(w == 0) for w in model.get_weights())


executed = []


class Payload:
    def __reduce__(self):
        return (executed.append, ("code ran",))


def test_a_pickle_in_the_file_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __schema__=np.array([Payload()], dtype=object), w0000=np.array([Payload()], dtype=object))
    with pytest.raises(ParameterError, match="not a secagg weights file"):
        load_weights(NumpyLogisticRegression(8), path)
    assert executed == []
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ParameterError, match="not a secagg weights file"):
        load_weights(NumpyLogisticRegression(8), tmp_path / "text.npz")
    with pytest.raises(ParameterError, match="no such file"):
        load_weights(NumpyLogisticRegression(8), tmp_path / "missing.npz")
    assert zipfile.is_zipfile(path)  # the refusal is about the contents, not the container


def test_a_pipeline_is_refused_behind_another_scaling(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline

    from secagg.fedavg.adapters import SklearnLinearAdapter
    from secagg.fedavg.preprocessing import federated_standard_scaler

    clients, (X, _) = blobs(32, clients=3)

    def adapter(scaler):
        return SklearnLinearAdapter(Pipeline([("scale", scaler), ("clf", SGDClassifier(loss="log_loss"))]),
                                    n_features=8)

    scaler = federated_standard_scaler(clients, value_range=(-10, 10), aggregator="plain")
    fl = FedAvg(adapter(scaler), aggregator="plain", rounds=2, learning_rate=0.01, seed=0)
    fl.fit(clients)
    path = fl.save(tmp_path / "pipeline.npz")
    same = FedAvg(adapter(federated_standard_scaler(clients, value_range=(-10, 10), aggregator="plain")),
                  aggregator="plain")
    same.load_weights(path)
    assert np.array_equal(same.predict_proba(X), fl.predict_proba(X))
    other = federated_standard_scaler(clients[:2], value_range=(-10, 10), aggregator="plain")  # other statistics
    with pytest.raises(ParameterError, match="transforms"):
        FedAvg(adapter(other), aggregator="plain").load_weights(path)


def test_a_torch_model_round_trips_and_refuses_another_module(tmp_path):
    torch = pytest.importorskip("torch")
    from secagg.fedavg.adapters import TorchModuleAdapter

    torch.manual_seed(0)
    fl, (X, _) = trained(TorchModuleAdapter(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(),
                                                                torch.nn.Linear(4, 2))))
    path = fl.save(tmp_path / "torch.npz")
    assert [w["name"] for w in read_schema(path)["weights"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    fresh = FedAvg(TorchModuleAdapter(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(),
                                                          torch.nn.Linear(4, 2))), aggregator="plain")
    fresh.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(fresh.weights, fl.weights))  # float64, as saved
    assert np.allclose(fresh.predict_proba(X), fl.predict_proba(X))
    with pytest.raises(ParameterError, match="module 'Sequential' .*this model: 'Linear'"):
        FedAvg(TorchModuleAdapter(torch.nn.Linear(8, 2)), aggregator="plain").load_weights(path)


def test_weights_of_the_wrong_shape_are_not_saved(tmp_path):
    with pytest.raises(ParameterError, match="shape"):
        save_weights(NumpyLogisticRegression(8), tmp_path / "x.npz", weights=[np.zeros((7, 1)), np.zeros(1)])
