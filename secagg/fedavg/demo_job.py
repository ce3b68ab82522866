"""The bank anti-fraud demo as a network job: ``secagg serve --task demo`` is this job.

It is an ordinary :class:`~secagg.fedavg.job.FedAvgJob`, so it also runs as
``secagg serve --job secagg.fedavg.demo_job:job`` (and ``join --job ...``), and it is the example
to copy for your own: a FedAvg configuration, a data loader that each bank runs on its own
machine, and the coordinator's held-out set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from secagg.errors import ParameterError
from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.job import FedAvgJob
from secagg.fedavg.models import NumpyLogisticRegression
from secagg.fedavg.trainer import FedAvg

__all__ = ["demo_job", "job"]


@lru_cache(maxsize=4)
def _banks(banks: int, samples: int, seed: int):
    return make_bank_transactions(banks, samples, seed=seed)


def demo_job(*, banks: int = 8, samples: int = 6000, seed: int = 0, rounds: int = 10, local_epochs: int = 1,
             batch_size: int = 64, learning_rate: float = 0.1, clients_per_round: int | float | None = None,
             aggregator: str = "masking", aggregator_options: dict | None = None, dp=None) -> FedAvgJob:
    """FedAvg of a logistic-regression fraud model over ``banks`` synthetic banks (``samples``
    transactions each, from ``seed``): bank ``i`` trains on its own training rows, the
    coordinator evaluates on the union of the banks' test rows."""
    n_features = _banks(banks, samples, seed)[0].X_train.shape[1]

    def fedavg() -> FedAvg:
        return FedAvg(NumpyLogisticRegression(n_features), aggregator=aggregator, aggregator_options=aggregator_options,
                      rounds=rounds, clients_per_round=clients_per_round, local_epochs=local_epochs,
                      batch_size=batch_size, learning_rate=learning_rate, max_weight=float(samples), dp=dp)

    def data(bank: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= bank < banks:
            raise ParameterError(f"--id {bank} is not one of the {banks} synthetic banks (--banks)")
        chosen = _banks(banks, samples, seed)[bank]
        return chosen.X_train, chosen.y_train

    def holdout() -> tuple[np.ndarray, np.ndarray]:
        all_banks = _banks(banks, samples, seed)
        return np.vstack([b.X_test for b in all_banks]), np.concatenate([b.y_test for b in all_banks])

    return FedAvgJob(fedavg=fedavg, data=data, eval_data=holdout)


def job() -> FedAvgJob:
    """The demo with its defaults (8 banks, 10 rounds)."""
    return demo_job()
