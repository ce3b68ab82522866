"""The `flower` extra (flwr without Ray) is enough for secagg's mods and workflows: Ray, which only
Flower's simulation engine needs (the `flower-sim` extra), is never imported by them."""

import subprocess
import sys

import pytest

pytest.importorskip("flwr")

BLOCK_RAY = """
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"{name} is not installed (the flower extra has no Ray)")
sys.meta_path.insert(0, NoRay())
"""


def test_the_mods_and_workflows_import_and_build_without_ray():
    code = BLOCK_RAY + """
from flwr.client import ClientApp
from flwr.server.workflow import DefaultWorkflow
from secagg.integrations.flower import (SecAggMaskingWorkflow, SecAggPaillierWorkflow, make_secagg_paillier_mod,
                                        secagg_masking_mod)
ClientApp(mods=[secagg_masking_mod])
DefaultWorkflow(fit_workflow=SecAggMaskingWorkflow(neighbors="auto"))
assert not any(m == "ray" or m.startswith("ray.") for m in sys.modules)
try:
    import flwr.simulation.ray_transport.ray_actor  # noqa: F401  the simulation engine does need it
except ImportError as exc:
    print("simulation needs Ray:", exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "simulation needs Ray" in done.stdout  # the blocker works: without it this test could not fail
