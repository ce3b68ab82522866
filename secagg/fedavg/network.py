"""FedAvg as network roles: a coordinator task and a client task for :mod:`secagg.transport.network`.

The halves split :class:`secagg.fedavg.FedAvg`'s work across processes: the coordinator holds the
global model and moves it only by decoded sums; each client trains on its own data and hands the
session ``w * u`` and ``w``, encoded by :class:`secagg.aggregation.codec.UpdateCodec` exactly as
the in-process aggregators do. The aggregator decides the session: masking (default) or one
Paillier round per FedAvg round (``aggregator=PaillierAggregator(keys=(public, None),
verify_keys=...)``: the coordinator holds no key share; the banks run ``NetworkClient`` with
``paillier=(public, share, floor)``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secagg.aggregation import AggregateResult, Aggregator, make_aggregator
from secagg.aggregation.codec import UpdateCodec
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation
from secagg.fedavg.models import ModelAdapter, check_dataset
from secagg.fedavg.trainer import FedAvgServer, flatten, unflatten
from secagg.transport.envelope import Envelope, Kind, field_of, vector_blob
from secagg.transport.network import SessionPlan
from secagg.transport.sessions import MaskingSpec
from secagg.transport.tasks import atomic_json, atomic_npy

__all__ = ["FedAvgTask", "FedAvgClient", "FedAvgSettings"]

log = logging.getLogger("secagg.net")


@dataclass(frozen=True)
class FedAvgSettings:
    """Training parameters the coordinator announces every round (all public)."""

    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.1
    proximal_mu: float = 0.0
    server_learning_rate: float = 1.0
    clip: float = 1.0
    max_weight: float = 10_000.0
    fractional_bits: int = 16
    # the masking session, when FedAvgTask is given no aggregator (MaskingAggregator's options)
    threshold: int | float | None = None  # int, fraction of holders, None = 2/3
    neighbors: int | str | None = None
    malicious: bool = False  # signatures and the consistency check (needs identity keys)

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        for name in ("learning_rate", "server_learning_rate", "clip", "max_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.proximal_mu, (int, float)) and self.proximal_mu >= 0):
            raise ParameterError(f"proximal_mu must be >= 0, got {self.proximal_mu!r}")

    def announced(self) -> dict:
        return {"local_epochs": self.local_epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "proximal_mu": self.proximal_mu, "clip": self.clip,
                "max_weight": self.max_weight, "fractional_bits": self.fractional_bits}


def _lock_state_dir(path: Path):
    """An exclusive lock on ``path/lock`` for this process's lifetime: two coordinators on one
    state directory would interleave their rounds and one history would silently win."""
    import fcntl

    handle = open(path / "lock", "a+")  # noqa: SIM115 - held open: the lock lives as long as the task
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ParameterError(f"{path} is in use by another coordinator (its lock is held): one coordinator per "
                             "--state-dir") from None
    return handle


class FedAvgTask:
    """Coordinator: FedAvg rounds, one secure-aggregation session each, over ``num_clients`` clients.

    ``state_dir`` makes training survive a coordinator restart: after every completed round the
    global model and the history are written there (atomically); a coordinator started on the same
    directory with the same job resumes after the last completed round. ``eval_data`` is evaluated
    after every round. ``aggregator`` (any with a network mode, see
    :meth:`~secagg.aggregation.Aggregator.session_spec`) decides each round's session; None: the
    masking path with the settings' threshold, neighbours and mode.
    """

    name = "fedavg"

    def __init__(self, model: ModelAdapter, num_clients: int, settings: FedAvgSettings = FedAvgSettings(), *,
                 state_dir: str | os.PathLike | None = None,
                 eval_data: tuple[np.ndarray, np.ndarray] | None = None,
                 aggregator: Aggregator | None = None) -> None:
        self.model, self.num_clients, self.settings = model, num_clients, settings
        self.encoder = FixedPointEncoder(num_clients=num_clients, max_weight=settings.max_weight,
                                         clip=settings.clip, fractional_bits=settings.fractional_bits)
        self.server = FedAvgServer(model.get_weights(), settings.server_learning_rate)
        self.template = self.server.weights
        if aggregator is None:
            aggregator = make_aggregator("masking", threshold=settings.threshold, neighbors=settings.neighbors,
                                         malicious=settings.malicious)
        self.aggregator = aggregator
        dimension = self.server.vector.size
        self.spec = aggregator.session_spec(num_clients, self.encoder, dimension)
        self.codec = UpdateCodec(self.spec, dimension, max_weight=settings.max_weight, clip=settings.clip,
                                 fractional_bits=settings.fractional_bits)
        self.eval_data = eval_data
        self.history: list[dict] = []
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.fingerprint = hashlib.sha256(json.dumps({
            "settings": settings.__dict__, "num_clients": num_clients, "dimension": dimension,
            "session": self.spec.header()}, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self._lock = None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_state_dir(self.state_dir)
            try:
                self._load()
            except BaseException:
                self.close()
                raise

    @property
    def config(self):
        """The masking configuration of every round (None on the Paillier path)."""
        return self.spec.config if isinstance(self.spec, MaskingSpec) else None

    @property
    def completed_rounds(self) -> int:
        """Rounds run to an outcome, applied or not (each is one entry of :attr:`history`)."""
        return len(self.history)

    @property
    def applied_updates(self) -> int:
        """Rounds whose aggregate moved the global model."""
        return sum(bool(r["applied"]) for r in self.history)

    def _load(self) -> None:
        state_file = self.state_dir / "fedavg_state.json"  # type: ignore[operator]
        if not state_file.exists():
            return
        try:
            state = json.loads(state_file.read_text())
            fingerprint, model_name, history = state["fingerprint"], state["model"], list(state["history"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParameterError(f"{state_file} is not a readable FedAvg state: {exc}") from None
        if fingerprint != self.fingerprint:
            raise ParameterError(f"{state_file} belongs to another job (different settings, model size or clients); "
                                 "use a fresh --state-dir")
        if not (isinstance(model_name, str) and model_name.startswith("model-") and model_name.endswith(".npy")
                and "/" not in model_name and "\\" not in model_name):
            raise ParameterError(f"{state_file} names an unexpected model file {model_name!r}")
        try:
            vector = np.load(self.state_dir / model_name, allow_pickle=False)  # type: ignore[operator]
        except (OSError, ValueError) as exc:
            raise ParameterError(f"cannot read the saved model {model_name}: {exc}") from None
        if vector.dtype != np.float64 or vector.shape != (flatten(self.template).size,) or \
                not np.all(np.isfinite(vector)):
            raise ParameterError(f"the saved model {model_name} is not {flatten(self.template).size} finite float64 "
                                 f"weights (got {vector.dtype} of shape {vector.shape})")
        self.server = FedAvgServer(unflatten(vector, self.template), self.settings.server_learning_rate)
        self.history = history
        log.info("resuming FedAvg after round %d of %d from %s", len(self.history), self.settings.rounds,
                 self.state_dir)

    def _save(self) -> None:
        if self.state_dir is None:
            return
        name = f"model-{self.completed_rounds:05d}.npy"
        atomic_npy(self.state_dir / name, np.asarray(self.server.vector, dtype=np.float64))
        atomic_json(self.state_dir / "fedavg_state.json",
                     {"fingerprint": self.fingerprint, "model": name, "history": self.history})
        for old in self.state_dir.glob("model-*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)

    @property
    def weights(self) -> list[np.ndarray]:
        return self.server.weights

    def close(self) -> None:
        """Release the state directory (also done once every round has run)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def next_session(self) -> SessionPlan | None:
        if self.completed_rounds >= self.settings.rounds:
            self.close()
            return None
        header = {"task": self.name, "round": self.completed_rounds, "rounds": self.settings.rounds,
                  "training": self.settings.announced()}
        return SessionPlan(self.spec, header, vector_blob(self.server.vector))

    def finish_session(self, plan, aggregate, survivors, dropped, aborted, seconds, *, misbehaving=None,
                       refused=None) -> bool:
        started = time.perf_counter()
        if aggregate is not None:
            try:
                weighted_sum, total_weight = self.codec.decode(aggregate, len(survivors))
            except AbortError as exc:  # the round is lost, not the job
                aborted, aggregate, total_weight = str(exc), None, 0.0
        if aggregate is not None:
            if not 0 < total_weight <= len(survivors) * self.settings.max_weight:
                # masked inputs cannot be range-checked: a client that wrapped its weight shows here
                aborted, aggregate = f"implausible total weight {total_weight} for {len(survivors)} clients", None
        if aggregate is not None:
            result = AggregateResult(weighted_sum, float(total_weight), tuple(survivors),
                                     tuple(sorted(set(range(self.num_clients)) - set(survivors))), seconds,
                                     error_bound=self.codec.error_bound(len(survivors)))
        else:
            result = AggregateResult(None, 0.0, (), tuple(range(self.num_clients)), seconds, aborted=aborted)
        applied = self.server.apply(result)
        metrics: dict[str, float] = {}
        if self.eval_data is not None:
            self.model.set_weights(self.server.weights)
            metrics = {k: float(v) for k, v in self.model.evaluate(*self.eval_data).items()}
        self.history.append({"round": plan.header["round"], "included": list(result.included),
                             "dropped": {k: list(v) for k, v in dropped.items() if v}, "aborted": aborted,
                             "applied": applied, "total_weight": result.total_weight, "metrics": metrics,
                             "misbehaving": {str(k): v for k, v in (misbehaving or {}).items()},
                             "refused": {str(k): v for k, v in (refused or {}).items()},
                             "seconds": seconds + time.perf_counter() - started})
        self._save()
        auc = metrics.get("roc_auc")
        log.info("FedAvg round %d/%d: %s%s", self.completed_rounds, self.settings.rounds,
                 f"ABORTED ({aborted})" if aborted else f"{len(survivors)} of {self.num_clients} clients in the sum",
                 f", ROC-AUC {auc:.3f}" if auc is not None else "")
        return self.completed_rounds >= self.settings.rounds


class FedAvgClient:
    """Client: trains ``model`` on its ``(X, y)`` from each round's global weights and contributes
    ``w * clip(update)`` and ``w = min(samples, max_weight)``, encoded for the announced session
    (a masking session or a Paillier round: the same client runs as a bank)."""

    name = "fedavg"

    def __init__(self, model: ModelAdapter, X: np.ndarray, y: np.ndarray, *, seed: int | None = None) -> None:
        self.model = model
        self.X, self.y = check_dataset(X, y, getattr(model, "n_features", None), getattr(model, "n_classes", None),
                                       name="client data")
        self.template = model.get_weights()
        self.rng = np.random.default_rng(seed)
        self.rounds_trained = 0
        self.contributed_requests: set[str] = set()  # digests of requests whose masked update went out
        self._pending: str | None = None

    _TRAINING_FIELDS = {"local_epochs": int, "batch_size": int, "learning_rate": (int, float),
                        "proximal_mu": (int, float), "clip": (int, float), "max_weight": (int, float),
                        "fractional_bits": int}

    @classmethod
    def read_request(cls, header: dict, blob: bytes) -> tuple[dict, np.ndarray]:
        """The training settings (typed; an unknown or missing field is refused) and the global
        model the coordinator sent; ProtocolViolation if either is invalid."""
        try:
            training = field_of(header, "training", dict)
            unknown = sorted(set(training) - set(cls._TRAINING_FIELDS))
            if unknown:
                raise ParameterError(f"unknown training fields {unknown}")
            settings = {}
            for name, kind in cls._TRAINING_FIELDS.items():
                value = field_of(training, name, kind)
                settings[name] = value if kind is int else float(value) + 0.0  # -0.0 is 0.0
            # + 0.0: -0.0 and 0.0 are the same weight, so the same model
            global_vector = np.asarray(Envelope(Kind.SESSION, blob=blob).vector(), dtype=np.float64) + 0.0
        except (MalformedMessage, ParameterError) as exc:
            raise ProtocolViolation(f"coordinator sent invalid training parameters: {exc}", party="server") from None
        return settings, global_vector

    @staticmethod
    def request_digest(settings: dict, global_vector: np.ndarray) -> str:
        """What the coordinator actually asked for: the global model's values and the typed
        training settings, nothing it could vary at will.

        The round number is left out on purpose: it is the coordinator's to choose, so a guard
        keyed by it let the same model be retrained and contributed again under a new number. So
        is every other header field, and the model's byte encoding: only the values count.
        """
        typed = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
        values = np.ascontiguousarray(global_vector, dtype="<f8").tobytes()
        return hashlib.sha256(b"secagg-fedavg-request/v2\x00" + len(typed).to_bytes(4, "little") + typed
                              + len(values).to_bytes(8, "little") + values).hexdigest()

    def contributed(self, header):
        if self._pending is not None:
            self.contributed_requests.add(self._pending)

    def effect(self, settings: dict) -> dict:
        """The settings as they act on this client's data: a batch larger than the data is the
        whole data, and the weight is ``min(samples, max_weight)``. Equal effects, equal request."""
        samples = int(self.X.shape[0])
        effect = dict(settings)
        effect["batch_size"] = min(settings["batch_size"], samples)
        effect["max_weight"] = float(min(samples, settings["max_weight"]))
        return effect

    def prepare(self, spec, header, blob):
        self._pending = None
        settings, global_vector = self.read_request(header, blob)
        digest = self.request_digest(self.effect(settings), global_vector)
        if digest in self.contributed_requests:
            # The same model and settings as a request this client already sent its masked
            # update for (a rerun after a coordinator restart, or the same model under a new
            # round number): a second sum over other clients would expose the difference.
            return None
        dimension = flatten(self.template).size
        epochs, batch_size = settings["local_epochs"], settings["batch_size"]
        learning_rate, proximal_mu = settings["learning_rate"], settings["proximal_mu"]
        clip, max_weight = settings["clip"], settings["max_weight"]
        try:
            if global_vector.size != dimension:
                raise ParameterError(f"the coordinator's model has {global_vector.size} weights, this client's "
                                     f"model {dimension}")
            codec = UpdateCodec(spec, dimension, max_weight=max_weight, clip=clip,
                                fractional_bits=settings["fractional_bits"])
        except ParameterError as exc:
            raise ProtocolViolation(f"coordinator sent invalid training parameters: {exc}", party="server") from None
        if not (1 <= epochs <= 10_000 and 1 <= batch_size and learning_rate > 0 and proximal_mu >= 0):
            raise ProtocolViolation(f"coordinator asks for implausible training parameters: epochs {epochs}, batch "
                                    f"size {batch_size}, learning rate {learning_rate}, mu {proximal_mu}",
                                    party="server")
        self._pending = digest
        self.model.set_weights(unflatten(global_vector, self.template))
        self.model.train(self.X, self.y, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         proximal_mu=proximal_mu, rng=self.rng)
        update = flatten(self.model.get_weights()) - global_vector
        if not np.all(np.isfinite(update)):
            raise ParameterError("local training diverged (NaN or infinity in the update): lower the learning rate")
        weight = float(min(self.X.shape[0], max_weight))
        self.rounds_trained += 1
        return codec.encode(weight * np.clip(update, -clip, clip), weight, self.rng)

    def session_ended(self, header):
        pass
