"""What the coordinator and every bank share: one FedAvg configuration and where the data come from.

In a deployment this module is the consortium's agreed configuration (versioned, reviewed): each
bank imports it on its own machine, so every party builds the very same ``FedAvg``; a bank whose
copy differs refuses the rounds and says which setting differs.
"""

from __future__ import annotations

from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import make_bank_transactions

BANKS, SAMPLES, SEED = 4, 1500, 3


def configuration() -> FedAvg:
    """The run: logistic regression on 13 features, 6 rounds, 3 of the 4 banks sampled per round."""
    return FedAvg(NumpyLogisticRegression(13), rounds=6, clients_per_round=3, local_epochs=1, batch_size=64,
                  learning_rate=0.1, max_weight=float(SAMPLES), seed=SEED)


def bank_data(bank: int):
    """Bank ``bank``'s own training rows (synthetic here; your own table in practice)."""
    chosen = make_bank_transactions(BANKS, SAMPLES, seed=SEED)[bank]
    return chosen.X_train, chosen.y_train


def holdout():
    """The coordinator's evaluation set."""
    import numpy as np

    banks = make_bank_transactions(BANKS, SAMPLES, seed=SEED)
    return np.vstack([b.X_test for b in banks]), np.concatenate([b.y_test for b in banks])
