"""What FedAvg tells its user: aborted rounds, suspicious training, missing extras, long set-up steps."""

import logging
import sys

import numpy as np
import pytest

from secagg.aggregation.plain import PlainAggregator
from secagg.errors import AbortError, ParameterError
from secagg.fedavg import FedAvg, NumpyLogisticRegression
from tests.fedavg.test_trainer import blobs


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "secagg.fedavg" and r.levelno >= logging.WARNING]


def aborting(on_abort, rounds=3):
    """Masking rounds that cannot finish: 4 banks, threshold 3, two dropping out every round."""
    clients, _ = blobs(5, clients=4)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="masking", rounds=rounds, simulated_dropout=0.5, seed=0,
                aggregator_options={"threshold": 3}, on_abort=on_abort)
    return fl, clients


def test_aborted_rounds_are_skipped_and_said(caplog):
    # was: every round aborted and fit returned normally, with nothing logged
    fl, clients = aborting("skip")
    with caplog.at_level(logging.INFO, logger="secagg.fedavg"):
        history = fl.fit(clients)
    assert all(r.aborted for r in history)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "aborted" in r.getMessage()]
    assert len(infos) == 3 and "round 0 aborted, the global model is unchanged" in infos[0]
    (summary,) = warnings_of(caplog)
    assert "3 of 3 FedAvg rounds aborted" in summary and "no round updated the model" in summary


def test_on_abort_warn_warns_at_every_aborted_round(caplog):
    fl, clients = aborting("warn")
    with caplog.at_level(logging.WARNING, logger="secagg.fedavg"):
        fl.fit(clients)
    assert len(warnings_of(caplog)) == 3 and all("aborted" in m for m in warnings_of(caplog))


def test_on_abort_raise_stops_at_the_first_aborted_round():
    fl, clients = aborting("raise")
    with pytest.raises(AbortError, match="round 0 aborted"):
        fl.fit(clients)
    assert len(fl.history) == 1 and fl.history[0].aborted
    assert all(np.array_equal(a, b) for a, b in zip(fl.model.get_weights(), fl.weights))
    with pytest.raises(ParameterError, match="on_abort"):
        FedAvg(NumpyLogisticRegression(8), on_abort="ignore")


def test_a_run_without_aborts_or_oddities_says_nothing(caplog):
    clients, test = blobs(6)
    with caplog.at_level(logging.WARNING, logger="secagg.fedavg"):
        FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=4, seed=0).fit(clients, eval_data=test)
    assert warnings_of(caplog) == []


def test_a_roc_auc_of_exactly_one_half_every_round_is_warned_about(caplog):
    # unscaled features (here: values around 10^4) saturate the sigmoid: every score is exactly 0 or 1
    clients, (X_test, y_test) = blobs(7)
    shift = lambda X: X * 50 + 10_000  # noqa: E731
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=4, seed=0)
    with caplog.at_level(logging.WARNING, logger="secagg.fedavg"):
        history = fl.fit([(shift(X), y) for X, y in clients], eval_data=(shift(X_test), y_test))
    assert history.metric("roc_auc") == [0.5] * 4
    (message,) = warnings_of(caplog)
    assert "roc_auc 0.5" in message and "all 4 rounds" in message and "federated_standard_scaler" in message


def test_missing_dp_extra_is_named_at_construction(monkeypatch):
    from secagg.dp import DPConfig

    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    trained = []
    model = NumpyLogisticRegression(8)
    model.train = lambda *a, **k: trained.append(1)
    with pytest.raises(ImportError) as raised:
        FedAvg(model, aggregator="plain", dp=DPConfig(epsilon=1.0))
    message = str(raised.value)
    assert "pip install 'secagg[dp]'" in message and "\n" not in message and trained == []


class SlowSetup(PlainAggregator):
    """A plain aggregator whose set-up announces itself, like a Paillier key being dealt."""

    def setup_step(self, num_clients):
        return f"dealing keys to {num_clients} clients"


def test_a_long_set_up_step_is_announced_on_stderr(capsys):
    clients, _ = blobs(8, clients=3)
    FedAvg(NumpyLogisticRegression(8), aggregator=SlowSetup(), rounds=1, seed=0).fit(clients)
    err = capsys.readouterr().err
    assert "dealing keys to 3 clients ..." in err and "dealing keys to 3 clients: done in" in err
    FedAvg(NumpyLogisticRegression(8), aggregator=SlowSetup(), rounds=1, seed=0, progress=False).fit(clients)
    assert capsys.readouterr().err == ""


def test_the_paillier_key_dealing_is_the_announced_step():
    pytest.importorskip("phe")
    from secagg.aggregation.paillier import PaillierAggregator

    aggregator = PaillierAggregator(key_bits=512)
    assert aggregator.setup_step(4) == "dealing a 512-bit threshold Paillier key to 4 banks (safe primes: " \
                                       "seconds to a minute)"
    aggregator.setup(4)
    assert aggregator.setup_step(4) is None  # the key exists: nothing long left


def test_predictions_of_the_global_model():
    clients, (X, y) = blobs(9)
    fl = FedAvg(NumpyLogisticRegression(8), aggregator="plain", rounds=3, seed=0)
    history = fl.fit(clients)
    assert isinstance(history, type(fl.history))  # fit still returns the History
    probabilities = fl.predict_proba(X)
    assert probabilities.shape == (len(X), 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert np.allclose(probabilities[:, 1], fl.model.predict_proba(X))
    assert np.array_equal(fl.predict(X), probabilities.argmax(axis=1))
    assert (fl.predict(X) == y).mean() > 0.85
    fl.model.set_weights([w * 0 for w in fl.weights])  # whatever a callback left in the model
    assert np.allclose(fl.predict_proba(X)[:, 1], fl.model.predict_proba(X))  # the global model, always
    multi = FedAvg(NumpyLogisticRegression(8, n_classes=3), aggregator="plain", rounds=1, seed=0)
    multi.fit([(X, np.argmax(X[:, :3], axis=1))] * 2)
    assert multi.predict_proba(X).shape == (len(X), 3)


def test_a_model_without_probabilities_cannot_predict_them():
    class Bare:
        def __init__(self):
            self.inner = NumpyLogisticRegression(8)

        def get_weights(self):
            return self.inner.get_weights()

        def set_weights(self, weights):
            self.inner.set_weights(weights)

        def train(self, *args, **kwargs):
            self.inner.train(*args, **kwargs)

        def evaluate(self, X, y):
            return self.inner.evaluate(X, y)

        def copy(self):
            return Bare()

    with pytest.raises(ParameterError, match="Bare has no predict_proba"):
        FedAvg(Bare(), aggregator="plain").predict_proba(np.zeros((2, 8)))
