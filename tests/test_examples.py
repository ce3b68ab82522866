"""The example scripts run (with smaller settings) and print their results."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script,argv,expect", [
    ("bank_antifraud.py", ["--banks", "7", "--rounds", "3", "--samples", "1500"], "federated model on all banks"),
    ("hospitals_breast_cancer.py", ["--rounds", "5"], "match the pooled means: True"),
    ("digits_mlp.py", ["--clients", "30", "--rounds", "3", "--per-round", "10"], "final test accuracy"),
    ("bank_consortium_paillier.py", ["--banks", "4", "--rounds", "2", "--key-bits", "512"], "decryption needs 3 of 4"),
    ("dp_digits_cross_device.py", ["--clients", "200", "--per-round", "40", "--rounds", "3"], "final test accuracy"),
])
def test_example_runs(script, argv, expect, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("phe")
    pytest.importorskip("dp_accounting")
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert expect in capsys.readouterr().out
