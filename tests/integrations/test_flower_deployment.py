"""secagg on a real Flower deployment: a SuperLink and SuperNodes as separate processes on loopback.

Slow (about a minute: each message starts a ClientApp process), so kept out of CI:
``pytest -m slow tests/integrations/test_flower_deployment.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("flwr")

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "flower" / "run_deployment.py"


@pytest.mark.slow
def test_superlink_and_three_supernodes_one_goes_offline(capsys):
    spec = importlib.util.spec_from_file_location("run_deployment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--banks", "4", "--rounds", "1", "--crash", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 secure rounds over 4 SuperNodes: done" in out
    assert "3 of 4 banks in the sum" in out
