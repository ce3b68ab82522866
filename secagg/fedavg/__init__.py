"""Federated averaging on secure aggregation.

    from secagg.fedavg import FedAvg, NumpyLogisticRegression
    fl = FedAvg(NumpyLogisticRegression(n_features=d), aggregator="masking", rounds=20, learning_rate=0.1, seed=0)
    history = fl.fit(clients=[(X1, y1), (X2, y2)], eval_data=(X_test, y_test))
    fl.weights

With differential privacy (noise shares added by every client before aggregation, docs/dp.md):

    fl = FedAvg(model, aggregator="masking", rounds=100, clients_per_round=100,
                dp=DPConfig(epsilon=3.0, delta=1e-5, clip=0.5))
    fl.fit(clients).epsilon   # epsilon spent after each round (dp-accounting)

The same configuration runs over the network (docs/network.md): ``fl.coordinator(n, tls=...)`` in
the coordinator's process, ``fl.participant(i, (X_i, y_i), coordinator=..., tls=..., num_clients=n)``
in each participant's.
"""

from secagg.dp.config import DPConfig
from secagg.fedavg.adapters import SklearnLinearAdapter, TorchModuleAdapter
from secagg.fedavg.job import FedAvgJob, load_job
from secagg.fedavg.models import _RENAMED, ModelAdapter, NumpyLogisticRegression, NumpyMLP, _deprecated_name
from secagg.fedavg.trainer import FedAvg, FedAvgServer, History, RoundRecord

__all__ = ["DPConfig", "FedAvg", "FedAvgJob", "FedAvgServer", "History", "ModelAdapter", "NumpyLogisticRegression",
           "NumpyMLP", "RoundRecord", "SklearnLinearAdapter", "TorchModuleAdapter", "load_job"]


def __getattr__(name: str) -> type:
    """``LogisticRegression`` and ``MLP``: the former names of the NumPy models, deprecated."""
    if name in _RENAMED:
        return _deprecated_name(__name__, name, _RENAMED)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
