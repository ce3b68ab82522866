"""The banks' ClientApp: a NumPyClient that trains the fraud model on the bank's transactions.

Secure aggregation is the mod: ``secagg_masking_mod`` in ``app``; ``flower_app`` (Flower's
``secaggplus_mod``) and ``plain_app`` (no mod, no secure aggregation) differ from it in that line only.
"""

from __future__ import annotations

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.app import Context

from secagg.integrations.flower import secagg_masking_mod
from secagg_bank_app.task import bank, build_model, settings


class BankClient(NumPyClient):
    def __init__(self, partition_id: int, run_config) -> None:
        self.run_config = run_config
        self.data = bank(partition_id, int(run_config["num-banks"]), int(run_config["samples-per-bank"]))
        self.model = build_model(run_config)
        self.partition_id = partition_id

    def fit(self, parameters, config):
        if self.partition_id in {int(p) for p in str(config.get("crash", "")).split(",") if p}:
            raise RuntimeError(f"bank {self.partition_id} went offline while training")
        self.model.set_weights([np.asarray(p, dtype=np.float64) for p in parameters])
        self.model.train(self.data.X_train, self.data.y_train, epochs=int(self.run_config["local-epochs"]),
                         batch_size=int(self.run_config["batch-size"]),
                         learning_rate=float(self.run_config["learning-rate"]),
                         rng=np.random.default_rng([self.partition_id, int(config.get("round", 0))]))
        return self.model.get_weights(), len(self.data.y_train), {}

    def evaluate(self, parameters, config):
        self.model.set_weights([np.asarray(p, dtype=np.float64) for p in parameters])
        metrics = self.model.evaluate(self.data.X_test, self.data.y_test)
        return float(metrics["loss"]), len(self.data.y_test), {"accuracy": float(metrics["accuracy"])}


def make_client_app(mods, overrides=None) -> ClientApp:
    def client_fn(context: Context):
        return BankClient(int(context.node_config["partition-id"]), settings(context.run_config, overrides)).to_client()

    return ClientApp(client_fn=client_fn, mods=mods)


app = make_client_app(mods=[secagg_masking_mod])

# The same ClientApp with Flower's own SecAgg+, and without secure aggregation (for the benchmark).
flower_app = make_client_app(mods=[secaggplus_mod])
plain_app = make_client_app(mods=[])
