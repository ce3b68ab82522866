"""Federated averaging on secure aggregation.

    from secagg.fedavg import FedAvg, LogisticRegression
    fl = FedAvg(LogisticRegression(n_features=d), aggregator="masking", rounds=20, learning_rate=0.1, seed=0)
    history = fl.fit(clients=[(X1, y1), (X2, y2)], eval_data=(X_test, y_test))
    fl.weights
"""

from secagg.fedavg.models import MLP, LogisticRegression, ModelAdapter
from secagg.fedavg.trainer import FedAvg, FedAvgServer, History, RoundRecord

__all__ = ["FedAvg", "FedAvgServer", "History", "LogisticRegression", "MLP", "ModelAdapter", "RoundRecord"]
