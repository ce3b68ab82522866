"""A bank's own FedAvg job for the network mode: a scikit-learn model on 20 features.

Nothing here is secagg's: the model is a scikit-learn ``SGDClassifier`` behind secagg's adapter,
the data come from this file's own loader. The coordinator and every bank name the same job:

    secagg serve --job examples/own_job/fraud_job.py:job -n 5 ...            # the coordinator
    secagg join  --job examples/own_job/fraud_job.py:job --id 3 ...          # bank 3, on its machine

In a real deployment ``bank_data`` reads the bank's own table (each bank runs it on its own
machine and only ever loads its own rows); here it cuts one synthetic, imbalanced data set into
five banks so that the run can be compared with the in-process FedAvg on the same data
(``examples/own_job/run.py``).
"""

from __future__ import annotations

import numpy as np

from secagg.fedavg import FedAvg, FedAvgJob, SklearnLinearAdapter

BANKS, FEATURES, SEED = 5, 20, 7


def _all_data():
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=BANKS * 1500 + 3000, n_features=FEATURES, n_informative=8,
                               weights=[0.9, 0.1], flip_y=0.02, random_state=SEED)
    X = StandardScaler().fit_transform(X)  # public scaling of a synthetic set; a bank scales its own features
    return X, y


def bank_data(bank: int):
    """Bank ``bank``'s own training rows (X, y)."""
    if not 0 <= bank < BANKS:
        raise ValueError(f"this job has banks 0..{BANKS - 1}, not {bank}")
    X, y = _all_data()
    rows = slice(bank * 1500, (bank + 1) * 1500)
    return X[rows], y[rows]


def holdout():
    """The coordinator's evaluation set (never trained on)."""
    X, y = _all_data()
    return X[BANKS * 1500:], y[BANKS * 1500:]


def fedavg(features: int = FEATURES) -> FedAvg:
    """The run's configuration: the same object trains in-process (``fedavg().fit(...)``), and
    builds the coordinator and every bank's participant over the network."""
    from sklearn.linear_model import SGDClassifier

    model = SklearnLinearAdapter(SGDClassifier(loss="log_loss"), features)
    return FedAvg(model, rounds=8, local_epochs=1, batch_size=64, learning_rate=0.01, max_weight=5000.0, seed=0)


def job() -> FedAvgJob:
    return FedAvgJob(fedavg=fedavg, data=bank_data, eval_data=holdout)


def job_with_an_extra_feature() -> FedAvgJob:
    """A bank that added a feature on its side (21 columns): its model no longer matches the
    coordinator's, so it refuses every round, and says why."""

    def data(bank: int):
        X, y = bank_data(bank)
        return np.hstack([X, np.ones((X.shape[0], 1))]), y

    return FedAvgJob(fedavg=lambda: fedavg(FEATURES + 1), data=data)
