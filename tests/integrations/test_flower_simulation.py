"""secagg's mod and workflow in Flower's own simulation engine (``run_simulation``, Ray backend).

Ray starts worker processes, so every ClientApp call may land in a different process from the
previous one: the mod's state must live in the node's Context, which this test exercises.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flwr.app import Context  # noqa: E402
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.compat.common import recorddict_compat as compat  # noqa: E402
from flwr.server import LegacyContext, ServerApp, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from secagg.integrations.flower import SecAggMaskingWorkflow  # noqa: E402
from tests.integrations.test_flower import client_app, expected_average, initial  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_run_simulation_eleven_nodes_one_crashes(monkeypatch):
    n, crashed = 11, 3
    # Ray's workers import the ClientApp's code (tests.integrations...) by name.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    workflow = SecAggMaskingWorkflow(neighbors=6, threshold=4, timeout=120, dropout_fraction=0,
                                     corrupt_fraction=0)  # small graph: no threat model beyond the mechanics
    out = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                          initial_parameters=ndarrays_to_parameters(initial()),
                          on_fit_config_fn=lambda r: {"crash": str(crashed)})
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
        out["parameters"] = parameters_to_ndarrays(
            compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))

    run_simulation(server_app=server_app, client_app=client_app(), num_supernodes=n,
                   backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}})
    report = workflow.reports[-1]
    assert report.ok, report.aborted
    assert len(report.survivors) == n - 1
    assert [len(ids) for ids in report.dropped.values()] == [0, 0, 1, 0]
    # node ids are Flower's; the crashed node is the one missing from the survivors
    survivors = [p for p in range(n) if p != crashed]
    for got, want in zip(out["parameters"], expected_average(survivors)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_run_simulation_example_trains_the_bank_model(capsys, monkeypatch):
    import runpy
    import sys

    script = ROOT / "examples" / "flower" / "run_simulation.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--banks", "10", "--rounds", "3", "--crash", "3"])
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # the script extends it for Ray
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert out.count("SecAggMaskingWorkflow") >= 3
    last = [line for line in out.splitlines() if line.startswith("round 3:")][0]
    assert float(last.split("ROC-AUC ")[1].split(",")[0]) > 0.75


@pytest.mark.slow
def test_the_fedavg_example_matches_in_process_on_flower(capsys, monkeypatch):
    import runpy
    import sys

    script = ROOT / "examples" / "flower" / "run_fedavg.py"
    for extra in ([], ["--dp", "8"]):
        monkeypatch.setattr(sys, "argv", [str(script), "--banks", "5", "--per-round", "4", "--rounds", "2",
                                          "--samples", "800", *extra])
        runpy.run_path(str(script), run_name="__main__")
        out = capsys.readouterr().out
        assert "same epsilon every round: True" in out
        if not extra:
            assert "same cohorts every round: True; weights bit for bit the same: True" in out
