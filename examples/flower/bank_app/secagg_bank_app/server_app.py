"""The consortium's ServerApp: FedAvg over the banks, aggregated securely.

Secure aggregation is the fit workflow: ``SecAggMaskingWorkflow`` when ``secure = "secagg"``,
Flower's ``SecAggPlusWorkflow`` when ``secure = "flower"``; nothing else differs.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from secagg.integrations.flower import SecAggMaskingWorkflow
from secagg_bank_app.task import build_model, pooled_test_set, settings

logger = logging.getLogger("secagg_bank_app")
ROUND_LOG: list[dict] = []  # per round: workflow, seconds, metrics (read by the benchmark)


def secure_workflow(run_config):
    neighbors = int(run_config.get("neighbors", 0)) or None
    threshold = int(run_config.get("threshold", 0)) or None
    timeout = float(run_config.get("timeout", 0)) or None
    if run_config.get("secure", "secagg") == "none":  # baseline: plain FedAvg, updates in the clear
        from flwr.server.workflow.default_workflows import default_fit_workflow

        return default_fit_workflow
    if run_config.get("secure", "secagg") == "flower":
        n = int(run_config["num-banks"])
        shares = n if neighbors is None else neighbors + 1  # Flower counts the node itself
        return SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=threshold or math.ceil(shares / 2),
                                  timeout=timeout)
    return SecAggMaskingWorkflow(neighbors=neighbors or "auto", threshold=threshold, timeout=timeout)


class TimedWorkflow:
    """Times each round of the fit workflow and evaluates the new global model."""

    def __init__(self, workflow, run_config) -> None:
        self.workflow = workflow
        self.name = getattr(workflow, "__name__", type(workflow).__name__)
        self.model = build_model(run_config)
        self.test = pooled_test_set(int(run_config["num-banks"]), int(run_config["samples-per-bank"]))

    def __call__(self, grid, context) -> None:
        from flwr.common import parameters_to_ndarrays
        from flwr.compat.common import recorddict_compat as compat
        from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

        start = time.perf_counter()
        self.workflow(grid, context)
        seconds = time.perf_counter() - start
        arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))
        self.model.set_weights([np.asarray(a, dtype=np.float64) for a in arrays])
        metrics = self.model.evaluate(*self.test)
        row = {"workflow": self.name, "seconds": seconds, **metrics}
        included = ""
        if getattr(self.workflow, "reports", None):  # secagg's workflow reports who is in the sum
            report = self.workflow.reports[-1]
            included = f", {len(report.survivors)} of {len(report.sampled)} banks in the sum"
            row.update(stage_seconds=report.seconds, server_seconds=report.server_seconds,
                       survivors=len(report.survivors))
        ROUND_LOG.append(row)
        logger.warning("%s round: %.2f s, accuracy %.4f, ROC-AUC %.4f%s", self.name, seconds, metrics["accuracy"],
                       metrics["roc_auc"], included)


def make_server_app(overrides=None) -> ServerApp:
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:
        run(grid, context, settings(context.run_config, overrides))

    return server_app


def run(grid, context: Context, cfg: dict) -> None:
    n = int(cfg["num-banks"])
    crash = str(cfg.get("crash", ""))
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                      initial_parameters=ndarrays_to_parameters(build_model(cfg).get_weights()),
                      on_fit_config_fn=lambda r: {"round": r, "crash": crash})
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=int(cfg["num-server-rounds"])), strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=TimedWorkflow(secure_workflow(cfg), cfg))
    workflow(grid, legacy)


app = make_server_app()
