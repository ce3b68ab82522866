import argparse

from secagg.cli import main
from secagg.fedavg.demo import run_demo


def demo_args(**overrides):
    args = dict(banks=8, samples=2500, rounds=10, dropout=None, aggregator="masking", local_epochs=3,
                batch_size=64, learning_rate=0.1, seed=3, quiet=True)
    return argparse.Namespace(**(args | overrides))


def test_federated_auc_is_close_to_pooled_and_above_banks_alone():
    result = run_demo(demo_args())
    assert result.pooled["roc_auc"] - result.federated["roc_auc"] < 0.02
    assert result.federated["roc_auc"] - result.alone_mean["roc_auc"] > 0.05
    records = list(result.history)
    assert all(r.aborted is None for r in records)
    assert sum(len(r.participants) - len(r.included) for r in records) >= 1  # dropouts happened


def test_demo_command_prints_the_comparison(capsys):
    assert main(["demo", "--banks", "4", "--samples", "1500", "--rounds", "3", "--aggregator", "plain"]) == 0
    out = capsys.readouterr().out
    assert "round  3/3" in out and "pooled (centralised)" in out and "federated (plain)" in out
    assert "mean of banks alone" in out


def test_demo_runs_on_paillier(capsys):
    import pytest

    pytest.importorskip("phe")
    assert main(["demo", "--banks", "4", "--samples", "1500", "--rounds", "2", "--aggregator", "paillier",
                 "--key-bits", "512", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "federated (paillier)" in out and "0 rounds aborted" in out
