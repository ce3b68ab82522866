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
    assert "round 3/3  AUC" in out and "pooled (centralised)" in out and "federated (plain)" in out
    assert "mean of banks alone" in out


def test_demo_runs_on_paillier(capsys):
    import pytest

    pytest.importorskip("phe")
    assert main(["demo", "--banks", "4", "--samples", "1500", "--rounds", "2", "--aggregator", "paillier",
                 "--key-bits", "512", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "federated (paillier)" in out and "0 rounds aborted" in out


def test_private_model_beats_banks_alone_at_epsilon_3():
    import pytest

    pytest.importorskip("dp_accounting")
    result = run_demo(demo_args(aggregator="plain", dp_epsilon=3.0, dp_delta=1e-5, dp_rounds=60,
                                dp_sampling_rate=0.02, dp_clip=1.0, dp_learning_rate=1.0, dp_mechanism="dgauss",
                                dp_bits=20))
    spent = result.private_history.epsilon
    assert len(spent) == 60 and spent[-1] <= 3.0 and spent[-1] > 2.99
    assert result.private["roc_auc"] - result.alone_mean["roc_auc"] > 0.05
    assert result.private["roc_auc"] < result.federated["roc_auc"] + 0.02


def test_demo_command_prints_private_auc_beside_the_non_private_one(capsys):
    import pytest

    pytest.importorskip("dp_accounting")
    assert main(["demo", "--banks", "4", "--samples", "1500", "--rounds", "3", "--aggregator", "masking",
                 "--dp-epsilon", "3", "--dp-rounds", "8", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "federated + DP (eps 3.00, delta 1e-05)" in out and "federated (masking)" in out
    assert "record-level DP: ROC-AUC" in out and "non-private" in out and "0 private rounds discarded" in out


def test_private_run_samples_records_from_a_csprng_not_the_demo_seed(monkeypatch):
    import numpy as np
    import pytest

    pytest.importorskip("dp_accounting")
    from secagg.fedavg.data import make_bank_transactions
    from secagg.fedavg.demo import _private_run
    from secagg.fedavg.models import NumpyLogisticRegression

    banks = make_bank_transactions(3, 800, seed=3)
    clients = [(b.X_train, b.y_train) for b in banks]
    seen = []
    original = NumpyLogisticRegression.per_example_gradients

    def recording(self, X, y):
        seen.append(float(np.sum(X)))
        return original(self, X, y)

    monkeypatch.setattr(NumpyLogisticRegression, "per_example_gradients", recording)
    samples = []
    for _ in range(2):
        seen.clear()
        args = demo_args(banks=3, aggregator="plain", dp_epsilon=3.0, dp_rounds=2)
        config, fl = _private_run(args, clients[0][0].shape[1], len(clients), 1 / 3)
        assert fl.dp_sampling_source is None  # the default: a fresh CSPRNG, whatever --seed says
        fl.fit(clients)
        samples.append(list(seen))
    # the same --seed: the non-private figures repeat, the private run's record samples do not
    assert len(samples[0]) >= 4 and samples[0] != samples[1]


def test_the_paillier_key_setup_says_what_it_does_and_how_long_it_took(capsys):
    import re

    import pytest

    pytest.importorskip("phe")
    assert main(["demo", "--banks", "3", "--samples", "800", "--rounds", "1", "--aggregator", "paillier",
                 "--key-bits", "512"]) == 0
    out = capsys.readouterr().out
    started = out.index("dealing a 512-bit threshold Paillier key to 3 banks")
    finished = re.search(r"dealing a 512-bit threshold Paillier key to 3 banks .*: done in \d+\.\d s", out)
    assert finished and started < finished.start() < out.index("round 1/1")
