"""FedAvg (McMahan et al., 2017) on top of any aggregator, with FedProx and dropouts.

Per round: sample clients; each trains locally from the global weights and hands the aggregator
``w_k * u_k`` (its clipped update, weighted by its capped sample count ``w_k``) and ``w_k``; the
server receives an :class:`~secagg.aggregation.AggregateResult` — the two sums and who was included
— and moves the global model by ``server_learning_rate * sum(w_k u_k) / sum(w_k)``.

The split is structural: :class:`FedAvgServer` accepts nothing but aggregate results, and the
driver (:class:`FedAvg`) plays the clients, which in a deployment run on their own machines.

With ``dp=DPConfig(...)`` every party adds its share of integer noise to its contribution before
the aggregator sees it (:mod:`secagg.dp`), and each round's record carries the epsilon spent so far.
The DP sampling (the client cohort, the records of DP-SGD) is drawn from a CSPRNG, never from
``seed``: amplification by sampling holds only if the sample is unpredictable.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from secagg.aggregation import AggregateResult, Aggregator, make_aggregator
from secagg.crypto.randomness import RandomSource
from secagg.dp.config import DPConfig, tolerated_dropouts
from secagg.dp.sampling import AesCtrRandomness, poisson_subsample, sample_cohort
from secagg.errors import AbortError, ParameterError, TrainingDiverged
from secagg.fedavg.models import ModelAdapter, check_dataset

if TYPE_CHECKING:
    from secagg.dp.mechanism import DistributedMechanism

__all__ = ["FedAvg", "FedAvgServer", "History", "RoundRecord", "flatten", "unflatten"]

# Protocol rounds a dropped client may vanish before (the consistency check exists only in
# malicious mode; the aggregators treat it like unmasking otherwise).
DROP_ROUNDS = ("advertise_keys", "share_keys", "masked_input", "unmasking")
ON_ABORT = ("skip", "warn", "raise")
# A metric repeated exactly over this many rounds that moved the model is worth a warning.
CONSTANT_METRIC_ROUNDS = 3

log = logging.getLogger("secagg.fedavg")


@runtime_checkable
class _PerExampleGradients(Protocol):
    """The optional method of a model that record-level DP needs (see :class:`ModelAdapter`)."""

    def per_example_gradients(self, X: np.ndarray, y: np.ndarray) -> np.ndarray: ...


def flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    """All weight arrays as one float64 vector (in order)."""
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights]) if weights else np.zeros(0)


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`flatten`, shaped like ``like``."""
    out, start = [], 0
    for w in like:
        size = int(np.size(w))
        out.append(np.asarray(vector[start:start + size], dtype=np.float64).reshape(np.shape(w)).copy())
        start += size
    if start != vector.size:
        raise ParameterError(f"vector has {vector.size} values, the weights need {start}")
    return out


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one FedAvg round."""

    round: int
    participants: tuple[int, ...]
    included: tuple[int, ...]  # clients whose update is in the aggregate
    dropped: tuple[int, ...]
    total_weight: float
    metrics: dict[str, float]  # evaluation after the round ({} without eval_data)
    bytes_sent: dict[int, int]  # per client, aggregation traffic
    seconds: float  # the whole round: local training, aggregation, server update, evaluation
    aggregation_seconds: float
    aborted: str | None = None  # why aggregation failed (the model then stays unchanged)
    error_bound: float = 0.0  # largest rounding error of one coordinate of the applied average update
    epsilon: float | None = None  # with DP: epsilon spent by all rounds so far (at the configured delta)
    applied: bool = True  # the aggregate moved the global model (False: aborted, or no weight)
    refused: dict[int, str] = field(default_factory=dict)  # clients that refused the round, and why (network)
    misbehaving: dict[int, str] = field(default_factory=dict)  # clients whose messages were refused, and why

    @property
    def bytes_per_client(self) -> float:
        return float(np.mean(list(self.bytes_sent.values()))) if self.bytes_sent else 0.0

    def to_dict(self) -> dict:
        """A JSON-able form (client ids as keys become strings); :meth:`from_dict` inverts it."""
        return {"round": self.round, "participants": list(self.participants), "included": list(self.included),
                "dropped": list(self.dropped), "total_weight": self.total_weight, "metrics": dict(self.metrics),
                "bytes_sent": {str(k): v for k, v in self.bytes_sent.items()}, "seconds": self.seconds,
                "aggregation_seconds": self.aggregation_seconds, "aborted": self.aborted,
                "error_bound": self.error_bound, "epsilon": self.epsilon, "applied": self.applied,
                "refused": {str(k): v for k, v in self.refused.items()},
                "misbehaving": {str(k): v for k, v in self.misbehaving.items()}}

    @classmethod
    def from_dict(cls, raw: Mapping) -> RoundRecord:
        """The record :meth:`to_dict` wrote; ParameterError if ``raw`` is not one."""
        try:
            return cls(int(raw["round"]), tuple(int(c) for c in raw["participants"]),
                       tuple(int(c) for c in raw["included"]), tuple(int(c) for c in raw["dropped"]),
                       float(raw["total_weight"]), {str(k): float(v) for k, v in raw["metrics"].items()},
                       {int(k): int(v) for k, v in raw["bytes_sent"].items()}, float(raw["seconds"]),
                       float(raw["aggregation_seconds"]), None if raw["aborted"] is None else str(raw["aborted"]),
                       float(raw["error_bound"]), None if raw["epsilon"] is None else float(raw["epsilon"]),
                       bool(raw["applied"]), {int(k): str(v) for k, v in raw["refused"].items()},
                       {int(k): str(v) for k, v in raw["misbehaving"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParameterError(f"not a FedAvg round record: {type(exc).__name__}: {exc}") from None


@dataclass
class History:
    """Per-round records of a :meth:`FedAvg.fit` run."""

    rounds: list[RoundRecord] = field(default_factory=list)

    def metric(self, name: str) -> list[float]:
        """One metric per round (NaN where it was not computed)."""
        return [r.metrics.get(name, float("nan")) for r in self.rounds]

    @property
    def epsilon(self) -> list[float | None]:
        """Epsilon spent after each round (None per round when training without DP)."""
        return [r.epsilon for r in self.rounds]

    def __len__(self) -> int:
        return len(self.rounds)

    def __getitem__(self, index: int) -> RoundRecord:
        return self.rounds[index]

    def __iter__(self):
        return iter(self.rounds)


class FedAvgServer:
    """The server side of FedAvg: the global weights, moved only by aggregate results."""

    def __init__(self, weights: Sequence[np.ndarray], server_learning_rate: float = 1.0) -> None:
        if not server_learning_rate > 0:
            raise ParameterError(f"server_learning_rate must be > 0, got {server_learning_rate}")
        self._template = [np.asarray(w, dtype=np.float64).copy() for w in weights]
        self._vector = flatten(self._template)
        self.server_learning_rate = float(server_learning_rate)

    @property
    def weights(self) -> list[np.ndarray]:
        return unflatten(self._vector, self._template)

    @property
    def vector(self) -> np.ndarray:
        return self._vector.copy()

    def apply(self, result: AggregateResult) -> bool:
        """Move the model by the weighted average update; False (no change) if the round aborted
        or nobody's update arrived."""
        if not isinstance(result, AggregateResult):
            raise ParameterError("the server applies AggregateResult objects only")
        if not result.ok or result.total_weight <= 0:
            return False
        average = result.average()
        if average.shape != self._vector.shape:
            raise ParameterError(f"aggregate has {average.size} values, the model has {self._vector.size}")
        self._vector = self._vector + self.server_learning_rate * average
        return True


def _fraction_or_count(name: str, value: float | int | None, total: int) -> int:
    if value is None:
        return total
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be an int, a fraction or None, got {value!r}")
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise ParameterError(f"{name} as a fraction must be in (0, 1], got {value}")
        return max(1, round(value * total))
    if not 1 <= value <= total:
        raise ParameterError(f"{name} must be in 1..{total} (the number of clients), got {value}")
    return value


class FedAvg:
    """Federated averaging with secure aggregation.

    ``model`` is any :class:`~secagg.fedavg.models.ModelAdapter`; its weights at ``fit`` time are the
    starting point. ``aggregator`` is ``"masking"`` (secure), ``"plain"`` (baseline), ``"paillier"``,
    or an :class:`~secagg.aggregation.Aggregator`; ``aggregator_options`` go to its constructor.

    * ``clients_per_round``: None (all), an int, or a fraction of the clients, sampled uniformly.
    * ``local_epochs``, ``batch_size``, ``learning_rate``: local mini-batch SGD; ``proximal_mu``: FedProx.
    * ``server_learning_rate``: global step on the averaged update (1.0 is plain FedAvg).
    * ``simulated_dropout``: fraction of each round's participants that vanish (clients going
      offline, not neural-network dropout), each before a random protocol
      round; they are simply not in that round's sum.
    * ``clip``: every coordinate of a client's update is clipped to ``[-clip, clip]`` before it is
      weighted (the fixed-point range of the masking path is sized from it).
    * ``max_weight``: public cap on a client's weight (sample count); None uses the largest client
      dataset of the run. Sample counts above the cap count as the cap.
    * ``seed``: sampling, local training, dropouts and rounding become reproducible; cryptographic
      keys, DP noise and (with ``dp``) the DP sampling always come from a CSPRNG.
    * ``dp``: a :class:`~secagg.dp.DPConfig` to train with distributed differential privacy.
      At client level every round takes a cohort of exactly ``clients_per_round`` clients, sampled
      without replacement; each one's update is clipped to L2 norm ``dp.clip`` and counts with
      weight 1, and the server divides the noisy sum by the cohort size (public, fixed). At record
      level (cross-silo DP-SGD) every institution takes part in every round, which is one noisy
      gradient step of size ``learning_rate`` on its Poisson-sampled records (``local_epochs``,
      ``batch_size`` and ``proximal_mu`` do not apply). ``simulated_dropout`` must not exceed
      ``dp.dropout_tolerance``; with DP both are turned into a number of parties the same way
      (:func:`~secagg.dp.config.tolerated_dropouts`). A second :meth:`fit` continues the same private
      run (epsilon keeps composing) and is refused unless it has the same clients, cohort and model
      size. See docs/dp.md.
    * ``on_abort``: what a round that cannot finish (too few clients left, a refused sum) does.
      Such a round leaves the global model unchanged. ``"skip"`` (default): logged at INFO on the
      ``secagg.fedavg`` logger, and one WARNING after :meth:`fit` says how many rounds were lost;
      ``"warn"``: a WARNING for every aborted round, when it happens; ``"raise"``: :meth:`fit`
      stops with :class:`~secagg.errors.AbortError` at the first (its record is in :attr:`history`).
    * ``progress``: say on standard error when a long set-up step starts and how long it took
      (dealing a Paillier key: seconds to a minute), with a spinner on a terminal with ``rich``.
    * ``record_counts``: record-level DP outside the in-process fit (network, Flower): each client's
      record count, public or a public upper bound (a client holding more refuses to take part);
      the mechanism's grid and the expected batch are sized from them. In-process they replace the
      data's own sizes, so every runtime calibrates the same mechanism.
    * ``dp_sampling_source``: TEST ONLY. A deterministic :class:`~secagg.crypto.randomness.RandomSource`
      (e.g. ``TestOnlySeededRandomness``) for the DP sampling, to replay a run; None (the default)
      draws it from a fresh AES-CTR CSPRNG keyed by ``os.urandom`` every fit. A predictable sample
      voids the amplification by sampling that the reported epsilon counts on.
    """

    def __init__(self, model: ModelAdapter, *, aggregator: str | Aggregator = "masking", rounds: int = 20,
                 clients_per_round: int | float | None = None, local_epochs: int = 1, batch_size: int = 32,
                 learning_rate: float = 0.1, proximal_mu: float = 0.0, server_learning_rate: float = 1.0,
                 simulated_dropout: float = 0.0, clip: float = 1.0, max_weight: float | None = None,
                 seed: int | None = None, aggregator_options: dict | None = None,
                 dp: DPConfig | None = None, dp_sampling_source: RandomSource | None = None,
                 on_abort: str = "skip", progress: bool = True, dropout: float | None = None,
                 record_counts: Sequence[int] | None = None) -> None:
        if not isinstance(model, ModelAdapter):
            raise ParameterError("model must implement the ModelAdapter protocol "
                                 "(get_weights, set_weights, train, evaluate, copy)")
        if on_abort not in ON_ABORT:
            raise ParameterError(f"on_abort must be one of {', '.join(map(repr, ON_ABORT))}, got {on_abort!r}")
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
        if dropout is not None:
            warnings.warn("FedAvg(dropout=...) is now simulated_dropout= (it reads as neural-network dropout); "
                          "the old name goes in the next release", DeprecationWarning, stacklevel=2)
            if simulated_dropout:
                raise ParameterError("give simulated_dropout only (dropout is its deprecated name)")
            simulated_dropout = dropout
        dropout = simulated_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ParameterError(f"simulated_dropout must be a fraction in [0, 1), got {dropout!r}")
        if not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip > 0):
            raise ParameterError(f"clip must be a positive number, got {clip!r}")
        if max_weight is not None and not (math.isfinite(max_weight) and max_weight >= 1):
            raise ParameterError(f"max_weight must be >= 1, got {max_weight!r}")
        for name, value, low in (("local_epochs", local_epochs, 1), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(f"{name} must be an int >= {low}, got {value!r}")
        if not learning_rate > 0:
            raise ParameterError(f"learning_rate must be > 0, got {learning_rate}")
        if proximal_mu < 0:
            raise ParameterError(f"proximal_mu must be >= 0, got {proximal_mu}")
        if dp is not None:
            if not isinstance(dp, DPConfig):
                raise ParameterError(f"dp must be a secagg.dp.DPConfig, got {type(dp).__name__}")
            if dropout > dp.dropout_tolerance:
                raise ParameterError(f"simulated_dropout {dropout} exceeds dp.dropout_tolerance "
                                     f"{dp.dropout_tolerance}: the noise would not cover the rounds' sums")
            if dp.mechanism == "skellam" and dp.level == "record" and dp.record_sampling_rate < 1:
                raise ParameterError("Skellam noise is accounted only without sampling: record-level Skellam needs "
                                     "record_sampling_rate=1; use mechanism='dgauss' with sampling")
            if dp.level == "record":
                if clients_per_round is not None:
                    raise ParameterError("record-level DP takes every institution in every round: leave "
                                         "clients_per_round None (records are sampled instead)")
                if not callable(getattr(model, "per_example_gradients", None)):
                    raise ParameterError("record-level DP needs a model with per_example_gradients(X, y) "
                                         "(NumpyLogisticRegression, NumpyMLP, TorchModuleAdapter)")
            from secagg.dp.accounting import require_dp_accounting

            require_dp_accounting()  # the missing `dp` extra is named now, before anything trains
        if record_counts is not None:
            if isinstance(record_counts, (str, bytes)) or not hasattr(record_counts, "__len__") or \
                    not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1
                            for c in record_counts) or len(record_counts) == 0:
                raise ParameterError("record_counts must be a non-empty sequence of positive ints, one per client")
            record_counts = tuple(int(c) for c in record_counts)
        if dp_sampling_source is not None and not isinstance(dp_sampling_source, RandomSource):
            raise ParameterError(f"dp_sampling_source must provide random_bytes(n), got "
                                 f"{type(dp_sampling_source).__name__}")
        self.model = model
        self.aggregator = make_aggregator(aggregator, **(aggregator_options or {}))
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.local_epochs, self.batch_size = local_epochs, batch_size
        self.learning_rate, self.proximal_mu = float(learning_rate), float(proximal_mu)
        self.server_learning_rate = float(server_learning_rate)
        self.simulated_dropout, self.clip, self.max_weight = float(dropout), float(clip), max_weight
        self.seed = seed
        self.dp = dp
        self.dp_sampling_source = dp_sampling_source
        self.on_abort, self.progress = on_abort, bool(progress)
        self.record_counts = record_counts
        self.dp_mechanism: DistributedMechanism | None = None  # the calibrated mechanism, set by the first fit
        self._dp_schedule: tuple | None = None  # what the mechanism was calibrated for
        self.server = FedAvgServer(model.get_weights(), server_learning_rate)
        self.history = History()

    @property
    def weights(self) -> list[np.ndarray]:
        """The global model's weights."""
        return self.server.weights

    @property
    def dropout(self) -> float:
        """Deprecated name of :attr:`simulated_dropout`."""
        warnings.warn("FedAvg.dropout is now simulated_dropout", DeprecationWarning, stacklevel=2)
        return self.simulated_dropout

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(None if self.seed is None else [self.seed, *key])

    def _check_clients(self, clients: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        if isinstance(clients, (str, bytes)) or not hasattr(clients, "__len__") or len(clients) == 0:
            raise ParameterError("clients must be a non-empty sequence of (X, y) pairs")
        n_features = getattr(self.model, "n_features", None)
        prepare = getattr(self.model, "client_data", None)
        checked = []
        for i, pair in enumerate(clients):
            if not isinstance(pair, (tuple, list)) and callable(prepare):
                try:  # the model's own data form, e.g. a torch DataLoader
                    X, y = prepare(pair)
                except ParameterError as exc:
                    raise ParameterError(f"clients[{i}]: {exc}") from None
                if n_features is not None and X.shape[1] != n_features:
                    raise ParameterError(f"clients[{i}]: {X.shape[1]} features, the others have {n_features}")
            elif not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ParameterError(f"clients[{i}] must be an (X, y) pair" +
                                     (" or a data loader the model reads" if callable(prepare) else ""))
            else:
                X, y = check_dataset(pair[0], pair[1], n_features, getattr(self.model, "n_classes", None),
                                     name=f"clients[{i}]")
            if n_features is None:
                n_features = X.shape[1]
            checked.append((X, y))
        return checked

    def fit(self, clients: Sequence[tuple[np.ndarray, np.ndarray]], eval_data: tuple[np.ndarray, np.ndarray] | None = None,
            *, callback: Callable[[RoundRecord], None] | None = None) -> History:
        """Train for ``rounds`` rounds; returns (and extends) :attr:`history`.

        ``clients`` is one ``(X, y)`` per client; ``eval_data`` an optional held-out ``(X, y)``
        evaluated after every round; ``callback(record)`` is called after every round.
        """
        data = self._check_clients(clients)
        if eval_data is not None:
            eval_data = check_dataset(eval_data[0], eval_data[1], data[0][0].shape[1],
                                      getattr(self.model, "n_classes", None), name="eval_data")
        plan = self._plan(len(data), np.array([X.shape[0] for X, _ in data]))
        self._setup_aggregator(len(data))
        local_models = [self.model.copy() for _ in data]
        template = self.server.weights
        first_round = len(self.history)
        for offset in range(self.rounds):
            index = first_round + offset
            started = time.perf_counter()
            participants = self._cohort(plan, index)
            drop = self._simulated_drops(plan, index, participants)
            signs = self._signs(plan, index)
            aggregation = self._open_round(plan, index, participants)
            global_vector = self.server.vector
            for client in participants:
                if client in drop["advertise_keys"]:
                    continue  # never showed up: no local training
                vector, weight = self._contribution(plan, index, client, local_models[client], template,
                                                    global_vector, data[client], signs)
                aggregation.submit(client, vector, weight, rng=self._rounding_rng(index, client))
            result = aggregation.finish(drop)
            record = self._finish_round(plan, index, participants, result, signs, eval_data, started)
            self.history.rounds.append(record)
            if callback is not None:
                callback(record)
            self._review_round(record)
        self.model.set_weights(self.server.weights)
        self._review_run(self.history.rounds[first_round:])
        return self.history

    # ------------------------------------------------------------------ what a user is told
    def _setup_aggregator(self, num_clients: int) -> None:
        """The aggregator's once-per-run set-up, announced when it is a long step (``progress``)."""
        step = self.aggregator.setup_step(num_clients)
        if step is None:
            self.aggregator.setup(num_clients)
            return
        log.info("%s", step)
        from secagg.display import status

        with status(step, sys.stderr, enabled=self.progress):
            self.aggregator.setup(num_clients)

    def _review_round(self, record: RoundRecord) -> None:
        """After each round (in-process and over the network): an aborted round is logged, warned
        about or raised as :class:`~secagg.errors.AbortError`, as ``on_abort`` says."""
        if record.aborted is None:
            return
        if self.on_abort == "raise":
            self.model.set_weights(self.server.weights)
            raise AbortError(f"FedAvg round {record.round} aborted: {record.aborted} (on_abort='raise')")
        log.log(logging.WARNING if self.on_abort == "warn" else logging.INFO,
                "FedAvg round %d aborted, the global model is unchanged: %s", record.round, record.aborted)

    def _review_run(self, records: Sequence[RoundRecord]) -> None:
        """After a run's rounds (in-process and over the network): WARNINGs for what should not
        pass without a word: rounds lost to aborts (``on_abort="skip"``), and metrics repeated
        exactly while the model moved (a ROC-AUC of 0.5 every round: all scores equal)."""
        aborted = [r for r in records if r.aborted is not None]
        if aborted and self.on_abort == "skip":
            log.warning("%d of %d FedAvg rounds aborted and were skipped (the model did not move in them)%s; "
                        "first reason: %s", len(aborted), len(records),
                        ": no round updated the model" if len(aborted) == len(records) else "", aborted[0].aborted)
        moved = [r for r in records if r.applied and r.metrics]
        if len(moved) < CONSTANT_METRIC_ROUNDS:
            return
        perfect = {"accuracy": 1.0, "roc_auc": 1.0, "average_precision": 1.0, "loss": 0.0}
        constant = {}
        for name, first in moved[0].metrics.items():
            if name != "accuracy" and all(r.metrics.get(name) == first for r in moved) and math.isfinite(first) \
                    and perfect.get(name) != first:
                constant[name] = first
        if not constant:
            return
        hint = " (a ROC-AUC of exactly 0.5: every example gets the same score, e.g. a sigmoid saturated by " \
               "unscaled features: standardise them, secagg.fedavg.preprocessing.federated_standard_scaler)" \
            if constant.get("roc_auc") == 0.5 else " (a learning rate too small, or updates clipped away?)"
        log.warning("%s stayed exactly the same in all %d rounds that updated the model: the model is probably not "
                    "learning%s", ", ".join(f"{k} {v:.6g}" for k, v in constant.items()), len(moved), hint)

    # ------------------------------------------------------------------ the global model
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The global model's class probabilities, ``(n, n_classes)`` like scikit-learn's
        (column 1 is P(y=1) for a binary model). ParameterError for a model without probabilities."""
        self.model.set_weights(self.server.weights)
        probabilities = getattr(self.model, "predict_proba", None)
        if not callable(probabilities):
            raise ParameterError(f"{type(self.model).__name__} has no predict_proba")
        p = np.asarray(probabilities(X), dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The global model's predicted class of every row (the model's ``predict`` where it has
        one, e.g. a hinge-loss ``SGDClassifier``; else the most probable class)."""
        self.model.set_weights(self.server.weights)
        predict = getattr(self.model, "predict", None)
        if callable(predict):
            return np.asarray(predict(X))
        return self.predict_proba(X).argmax(axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the global model to ``path`` (``.npz``: the weights and a schema naming the model,
        every weight's name, shape and dtype, and the secagg version; no pickle). The metadata
        records the rounds trained, the aggregator and, with DP, the epsilon spent. Read it back
        with :meth:`load_weights` (or :func:`secagg.fedavg.checkpoint.load_weights` into a bare model)."""
        from secagg.fedavg.checkpoint import save_weights

        last = self.history.rounds[-1] if self.history.rounds else None
        metadata = {"rounds": len(self.history), "aggregator": self.aggregator.name,
                    "epsilon": None if last is None or last.epsilon is None else float(last.epsilon),
                    "delta": None if self.dp is None else self.dp.delta}
        return save_weights(self.model, path, weights=self.server.weights, metadata=metadata)

    def load_weights(self, path: str | os.PathLike) -> dict:
        """Make the model saved at ``path`` (by :meth:`save`) this FedAvg's global model, e.g. to
        predict with it or to train on from it; returns the file's schema. ParameterError, nothing
        changed, if the file holds another model (class, description, weight names, shapes)."""
        from secagg.fedavg.checkpoint import read_weights

        weights, schema = read_weights(self.model, path)
        self.model.set_weights(weights)
        self.server = FedAvgServer(weights, self.server_learning_rate)
        return schema

    # ------------------------------------------------------------------ the network roles
    def coordinator(self, num_clients: int, *, tls, address: str = "127.0.0.1:0",
                    eval_data: tuple[np.ndarray, np.ndarray] | None = None, state_dir=None,
                    callback: Callable[[RoundRecord], None] | None = None, **network_options):
        """This configuration's coordinator for a network run over ``num_clients`` participants
        (ids ``0..n-1``, each its own process): a :class:`~secagg.fedavg.network.FedAvgCoordinator`.

        ``tls`` is a :class:`~secagg.transport.network.TLSConfig`; ``eval_data`` is evaluated
        after every round; ``state_dir`` makes the run survive a restart. Other options go to
        :class:`~secagg.transport.network.Coordinator` (``deadlines``, ``roster``, ``verify_keys``,
        ``join_quorum``, ``join_grace``, ``linger``, ...). Its ``serve()`` trains this FedAvg:
        the rounds land in :attr:`history` and the model in :attr:`weights`. Needs the ``net``
        extra. ``max_weight`` must be set (the coordinator cannot see the clients' data).
        """
        from secagg.fedavg.network import FedAvgCoordinator

        return FedAvgCoordinator(self, num_clients, tls=tls, address=address, eval_data=eval_data,
                                 state_dir=state_dir, callback=callback, **network_options)

    def participant(self, client_id: int, data: tuple[np.ndarray, np.ndarray], *, coordinator: str, tls,
                    num_clients: int, **options):
        """Participant ``client_id`` of a network run of this configuration, training on its own
        ``data = (X, y)``: a :class:`~secagg.fedavg.network.FedAvgParticipant` connecting to
        ``coordinator`` (``host:port``). It refuses (and tells the coordinator why) any round
        whose settings are not this configuration's. Options: ``state_dir``, ``min_threshold``,
        ``min_neighbors``, ``identity``/``verify_keys`` (malicious-server mode), ``paillier``
        (a bank's ``(public key, key share, floor)``), ``retry``. Needs the ``net`` extra.
        """
        from secagg.fedavg.network import FedAvgParticipant

        return FedAvgParticipant(self, client_id, data, coordinator=coordinator, tls=tls, num_clients=num_clients,
                                 **options)

    # ------------------------------------------------------------------ one round, in pieces
    # fit() runs every piece in one process; the network roles (secagg.fedavg.network) run the
    # coordinator's pieces (_plan, _cohort, _signs, _finish_round) in one process and the
    # client's (_plan, _contribution, _rounding_rng) in each participant's, so a round computes
    # the same thing in every runtime.

    def _plan(self, num_clients: int, sizes: np.ndarray | None = None) -> _RunPlan:
        """What every round of a run shares: clients per round, the weight cap, the DP mechanism.
        ``sizes`` (each client's sample count) is known in-process only; elsewhere the weight cap
        must be given (``max_weight``), and record-level DP needs the public ``record_counts``
        (in-process too, when given: then every runtime calibrates the same mechanism)."""
        if self.max_weight is not None:
            cap = float(self.max_weight)
        elif sizes is not None:
            cap = float(sizes.max())
        else:
            raise ParameterError("max_weight is needed outside the in-process fit (the coordinator cannot see the "
                                 "clients' sample counts to take the largest): set FedAvg(max_weight=...)")
        if self.record_counts is not None:
            if len(self.record_counts) != num_clients:
                raise ParameterError(f"record_counts names {len(self.record_counts)} clients, the run has "
                                     f"{num_clients}")
            if sizes is not None and np.any(np.asarray(sizes) > np.asarray(self.record_counts)):
                over = int(np.flatnonzero(np.asarray(sizes) > np.asarray(self.record_counts))[0])
                raise ParameterError(f"client {over} holds {int(sizes[over])} records, more than its record_counts "
                                     f"entry {self.record_counts[over]} (a public upper bound)")
        per_round = _fraction_or_count("clients_per_round", self.clients_per_round, num_clients)
        dp = None
        if self.dp is not None:
            if self.record_counts is not None:
                sizes = np.asarray(self.record_counts, dtype=np.int64)
            elif sizes is None:
                if self.dp.level == "record":
                    raise ParameterError("record-level DP outside the in-process fit needs each institution's record "
                                         "count, public or a public upper bound: FedAvg(record_counts=[...])")
                sizes = np.ones(num_clients, dtype=np.int64)  # client level: one contribution per client
            dp = self._dp_setup(self.dp, sizes, per_round)
        if isinstance(per_round, int) and per_round < 2 and self.aggregator.name != "plain":
            raise ParameterError(f"{per_round} client per round: a secure sum of one update is that update")
        return _RunPlan(num_clients, per_round, cap, dp)

    def _cohort(self, plan: _RunPlan, index: int) -> list[int]:
        """Round ``index``'s participants: uniform without replacement, ``plan.per_round`` of them
        (from a CSPRNG with DP: amplification by sampling needs an unpredictable sample)."""
        if plan.dp is not None:
            return sorted(sample_cohort(plan.num_clients, plan.dp.cohort, plan.dp.source).tolist())
        if plan.per_round == plan.num_clients:
            return list(range(plan.num_clients))
        return sorted(self._rng(0, index).choice(plan.num_clients, size=plan.per_round, replace=False).tolist())

    def _simulated_drops(self, plan: _RunPlan, index: int, participants: list[int]) -> dict[str, list[int]]:
        """In-process only: which participants vanish, each before a random protocol round."""
        count = tolerated_dropouts(self.simulated_dropout, len(participants)) if plan.dp is not None else \
            round(self.simulated_dropout * len(participants))
        drop_rng = self._rng(2, index)
        vanishing = drop_rng.choice(participants, size=count, replace=False).tolist() if count else []
        drop: dict[str, list[int]] = {name: [] for name in DROP_ROUNDS}
        for client in vanishing:
            drop[DROP_ROUNDS[int(drop_rng.integers(len(DROP_ROUNDS)))]].append(int(client))
        return drop

    def _signs(self, plan: _RunPlan, index: int) -> np.ndarray | None:
        """The DP rotation's public random signs of round ``index`` (None without DP or rotation)."""
        if plan.dp is None or not plan.dp.config.rotation:
            return None
        return plan.dp.mechanism.signs(self._signs_seed(index))

    def _signs_seed(self, index: int) -> bytes:
        return self._rng(4, index).bytes(32)

    def _encoder_options(self, plan: _RunPlan) -> tuple[int, float, float]:
        """(dimension, max_weight, clip) of what a client hands the aggregator in this run."""
        if plan.dp is None:
            return self.server.vector.size, plan.cap, self.clip
        return plan.dp.mechanism.padded, 1.0, float(plan.dp.value_bound)

    def _open_round(self, plan: _RunPlan, index: int, participants: list[int]):
        dimension, max_weight, clip = self._encoder_options(plan)
        return self.aggregator.open_round(participants, dimension, max_weight=max_weight, clip=clip,
                                          rng=self._rng(3, index),
                                          min_contributions=plan.dp.mechanism.min_shares if plan.dp else 1)

    def _rounding_rng(self, index: int, client: int) -> np.random.Generator:
        """The stochastic rounding of ``client``'s contribution in round ``index`` (seeded runs
        round the same way in every runtime)."""
        return self._rng(3, index, client)

    def _contribution(self, plan: _RunPlan, index: int, client: int, model: ModelAdapter,
                      template: list[np.ndarray], global_vector: np.ndarray,
                      dataset: tuple[np.ndarray, np.ndarray], signs: np.ndarray | None) -> tuple[np.ndarray, float]:
        """Client side: what ``client`` hands the aggregator in round ``index``, ``(w * u, w)``
        (with DP: its rounded, noised integers and weight 1)."""
        if plan.dp is not None:
            noisy = self._dp_contribution(plan.dp, signs, model, template, global_vector, dataset, index, client)
            return noisy.astype(np.float64), 1.0
        weight = float(min(dataset[0].shape[0], plan.cap))
        update = self._local_update(model, template, global_vector, dataset, self._rng(1, index, client), client)
        return weight * update, weight

    def _finish_round(self, plan: _RunPlan, index: int, participants: Sequence[int], result: AggregateResult,
                      signs: np.ndarray | None, eval_data: tuple[np.ndarray, np.ndarray] | None,
                      started: float, *, refused: Mapping[int, str] | None = None,
                      misbehaving: Mapping[int, str] | None = None) -> RoundRecord:
        """Server side: decode (DP), move the global model, evaluate; the round's record."""
        epsilon = None
        if plan.dp is not None:
            result = self._dp_decode(plan.dp, result, signs)
            epsilon = plan.dp.mechanism.epsilon(index + 1)
        applied = self.server.apply(result)
        metrics: dict[str, float] = {}
        if eval_data is not None:
            self.model.set_weights(self.server.weights)
            metrics = {k: float(v) for k, v in self.model.evaluate(*eval_data).items()}
        return RoundRecord(index, tuple(participants), result.included, result.dropped, result.total_weight,
                           metrics, dict(result.bytes_sent), time.perf_counter() - started, result.seconds,
                           result.aborted, result.error_bound / result.total_weight if result.total_weight else 0.0,
                           epsilon, applied=applied, refused=dict(refused or {}), misbehaving=dict(misbehaving or {}))

    # ------------------------------------------------------------------ differential privacy
    def _dp_setup(self, config: DPConfig, sizes: np.ndarray, per_round: int) -> _DPRun:
        """Calibrate the mechanism once (first fit) and fix this run's sampling and bounds.

        Client level: a fixed cohort of ``per_round`` clients each round, sampled without replacement
        (replace-one accounting; the number of noise shares cannot depend on the protected client).
        Record level: every institution, Poisson-sampled records. A later fit must have the schedule
        the mechanism was calibrated for, else its epsilon would be misreported: it is refused.
        """
        from secagg.dp.mechanism import MechanismParameters

        clients = len(sizes)
        dimension = self.server.vector.size
        client_level = config.level == "client"
        parameters = MechanismParameters.for_training(config, rounds=self.rounds, dimension=dimension, parties=clients,
                                                      cohort=per_round if client_level else None, records=sizes)
        cohort = parameters.cohort if client_level else clients
        if cohort is None:  # client level samples a fixed cohort of a known population: typed anyway
            raise ParameterError("the DP mechanism's parameters name no cohort size")
        expected, max_contributions = parameters.expected_contributions, 1 if client_level else int(sizes.max())
        schedule = (config, clients, cohort, parameters.min_shares, dimension)
        if self.dp_mechanism is None:
            mechanism = parameters.build()
        else:
            mechanism = self.dp_mechanism
            if schedule != self._dp_schedule:
                if self._dp_schedule is None:  # dp_mechanism set from outside a fit
                    raise ParameterError("this FedAvg's DP mechanism has no record of what it was calibrated for: "
                                         "start a new FedAvg")
                _, old_clients, old_cohort, _, old_dimension = self._dp_schedule
                raise ParameterError(
                    f"this FedAvg's DP mechanism was calibrated for {old_clients} clients, {old_cohort} per round "
                    f"and {old_dimension} weights with the same DPConfig; a fit with {clients} clients, {cohort} "
                    f"per round and {dimension} weights (or another DPConfig) would misreport epsilon: "
                    "start a new FedAvg")
        value_bound = mechanism.value_bound(max_contributions)
        if cohort * value_bound >= 2**53:
            raise ParameterError(f"{cohort} parties' vectors of up to {value_bound:.3g} per coordinate can sum "
                                 f"beyond 2^53, which float64 aggregates do not hold exactly: lower dp.bits "
                                 f"(now {config.bits})")
        self.dp_mechanism, self._dp_schedule = mechanism, schedule
        denominator = float(cohort) if config.level == "client" else expected
        source = self.dp_sampling_source if self.dp_sampling_source is not None else AesCtrRandomness()
        return _DPRun(mechanism, cohort, value_bound, denominator, source, config)

    def _dp_contribution(self, dp: _DPRun, signs: np.ndarray | None, model: ModelAdapter,
                         template: list[np.ndarray], global_vector: np.ndarray,
                         dataset: tuple[np.ndarray, np.ndarray], index: int, client: int) -> np.ndarray:
        """Client side: clipped contributions, rounded, plus this client's noise share (integers).

        The rounding and the noise come from a fresh CSPRNG per client and round (the mechanism's
        default), never from ``seed``: a replayable rounding would break the sensitivity bound.
        """
        if dp.config.level == "client":
            rng = self._rng(1, index, client)  # local training only (public randomness is fine there)
            contributions = self._local_update(model, template, global_vector, dataset, rng, client, clip=False)
        else:
            X, y = dataset
            chosen = np.flatnonzero(poisson_subsample(X.shape[0], dp.config.record_sampling_rate, dp.source))
            model.set_weights(unflatten(global_vector, template))
            if not isinstance(model, _PerExampleGradients):  # the constructor checked the model: typed anyway
                raise ParameterError("record-level DP needs a model with per_example_gradients(X, y)")
            if chosen.size:
                contributions = -model.per_example_gradients(X[chosen], y[chosen])
            else:
                contributions = np.zeros((0, global_vector.size))
            if not np.all(np.isfinite(contributions)):
                raise TrainingDiverged(f"client {client}'s gradients contain NaN or infinity")
        return dp.mechanism.encode(contributions, signs)

    def _dp_decode(self, dp: _DPRun, result: AggregateResult, signs: np.ndarray | None) -> AggregateResult:
        """Server side: the real-valued noisy sum, scaled for the server's step.

        The denominator is public and fixed (the cohort size at client level, the expected batch at
        record level; McMahan et al. 2018): dividing by the number of updates that arrived would
        release that number without noise.
        """
        if not result.ok or result.weighted_sum is None:
            return result
        shares = len(result.included)
        if shares < dp.mechanism.min_shares:
            everyone = tuple(sorted(set(result.included) | set(result.dropped)))
            return AggregateResult(None, 0.0, (), everyone, result.seconds, result.bytes_sent,
                                   aborted=f"only {shares} noise shares in the sum, the DP guarantee needs "
                                           f"{dp.mechanism.min_shares}: result discarded")
        noisy_sum = dp.mechanism.decode(result.weighted_sum, signs)
        if dp.config.level == "client":
            weighted_sum, total = noisy_sum, dp.denominator
        else:  # one gradient step on the consortium's expected batch
            weighted_sum, total = self.learning_rate * noisy_sum, dp.denominator
        return AggregateResult(weighted_sum, total, result.included, result.dropped, result.seconds,
                               result.bytes_sent)

    def _local_update(self, model: ModelAdapter, template: list[np.ndarray], global_vector: np.ndarray,
                      dataset: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, client: int,
                      clip: bool = True) -> np.ndarray:
        """Client side: train from the global weights; the clipped difference is the update."""
        model.set_weights(unflatten(global_vector, template))
        model.train(*dataset, epochs=self.local_epochs, batch_size=self.batch_size,
                    learning_rate=self.learning_rate, proximal_mu=self.proximal_mu, rng=rng)
        update = flatten(model.get_weights()) - global_vector
        if update.shape != global_vector.shape:
            raise ParameterError(f"client {client}'s model returned {update.size} weights, expected {global_vector.size}")
        if not np.all(np.isfinite(update)):
            raise TrainingDiverged(f"client {client}'s update contains NaN or infinity (local training diverged: "
                                 "lower learning_rate)")
        return np.clip(update, -self.clip, self.clip) if clip else update


@dataclass(frozen=True)
class _RunPlan:
    """What the rounds of one run share: the number of clients, clients per round, the public cap
    on a client's weight, and the DP set-up (None without DP)."""

    num_clients: int
    per_round: int
    cap: float
    dp: _DPRun | None


@dataclass(frozen=True)
class _DPRun:
    """What the rounds of one DP fit share: the mechanism, cohort size, per-party bound, the server's
    fixed denominator, the CSPRNG (or test-only source) of the DP sampling, and the DP configuration."""

    mechanism: DistributedMechanism
    cohort: int
    value_bound: int
    denominator: float
    source: RandomSource
    config: DPConfig  # what the mechanism was calibrated for (the FedAvg's dp)
