"""The bank anti-fraud task: each Flower node is one bank with its own card transactions."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.models import NumpyLogisticRegression, NumpyMLP


DEFAULTS = {
    "num-server-rounds": 5, "num-banks": 10, "samples-per-bank": 2000, "model": "logreg", "hidden": "256,374",
    "local-epochs": 1, "batch-size": 64, "learning-rate": 0.1, "secure": "secagg", "neighbors": 0, "threshold": 0,
    "timeout": 0, "crash": "",
}


def settings(run_config=None, overrides=None) -> dict:
    """The app's settings: DEFAULTS, then the run config (pyproject.toml / ``flwr run -c``), then overrides."""
    return {**DEFAULTS, **dict(run_config or {}), **dict(overrides or {})}


def build_model(config):
    """``model = "logreg"`` (14 weights) or ``"mlp"`` with ``hidden = "256,374"`` (100,077 weights)."""
    from secagg.fedavg.data import FEATURE_NAMES

    if config.get("model", "logreg") == "mlp":
        hidden = tuple(int(h) for h in str(config.get("hidden", "256,374")).split(","))
        return NumpyMLP(len(FEATURE_NAMES), hidden=hidden, seed=0)
    return NumpyLogisticRegression(len(FEATURE_NAMES))


@lru_cache(maxsize=4)
def banks(num_banks: int, samples_per_bank: int):
    return make_bank_transactions(num_banks, samples_per_bank, seed=0)


def bank(partition_id: int, num_banks: int, samples_per_bank: int):
    return banks(num_banks, samples_per_bank)[partition_id]


def pooled_test_set(num_banks: int, samples_per_bank: int) -> tuple[np.ndarray, np.ndarray]:
    """Every bank's test split (for the example's centralised evaluation only)."""
    all_banks = banks(num_banks, samples_per_bank)
    return np.vstack([b.X_test for b in all_banks]), np.concatenate([b.y_test for b in all_banks])
