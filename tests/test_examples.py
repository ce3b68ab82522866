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


def test_your_own_job_over_the_network_matches_in_process_fedavg():
    # issue 13's bar: a scikit-learn model on 20 features defined outside secagg, five bank
    # processes over mutual TLS, the same ROC-AUC as the in-process FedAvg (within 0.005)
    import re
    import subprocess

    pytest.importorskip("sklearn")
    pytest.importorskip("grpc")
    out = subprocess.run([sys.executable, str(EXAMPLES / "own_job" / "run.py"), "--rounds", "4"], capture_output=True,
                         text=True, timeout=240).stdout
    assert "exit codes: coordinator 0, banks [0, 0, 0, 0, 0]" in out, out[-2000:]
    assert "4 rounds, 4 updates applied" in out
    difference = float(re.search(r"difference (\d\.\d+)", out).group(1))
    assert difference <= 0.005


def test_a_bank_with_another_model_says_why_and_the_rounds_go_on_without_it():
    import subprocess

    pytest.importorskip("sklearn")
    pytest.importorskip("grpc")
    out = subprocess.run([sys.executable, str(EXAMPLES / "own_job" / "run.py"), "--rounds", "2", "--mismatch"],
                         capture_output=True, text=True, timeout=240).stdout
    assert "client 4 refuses session" in out and "this client's model 22" in out  # logged when it happens
    assert "client 4 refused round [0]" in out and "2 rounds, 2 updates applied" in out  # and in the report
    assert "banks [0, 0, 0, 0, 2]" in out
