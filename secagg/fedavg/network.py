"""FedAvg over the network: the same :class:`~secagg.fedavg.FedAvg` configuration, split into roles.

``FedAvg(...).fit(clients)`` runs every party in one process. Over the network the very same
configuration (model, aggregator, sampling, DP, settings) builds the two roles:

* :meth:`FedAvg.coordinator(num_clients, ...) <secagg.fedavg.FedAvg.coordinator>` gives a
  :class:`FedAvgCoordinator`: it holds the global model, samples each round's cohort, announces it
  and moves the model only by decoded sums, exactly as ``fit`` does (the rounds are recorded in
  ``fedavg.history`` and the model is ``fedavg.weights``);
* :meth:`FedAvg.participant(client_id, (X, y), ...) <secagg.fedavg.FedAvg.participant>` gives a
  :class:`FedAvgParticipant`: it trains on its own data and hands the session ``w * u`` and ``w``
  (or its DP noise share), encoded by :class:`~secagg.aggregation.codec.UpdateCodec` as the
  in-process aggregators do.

A round runs the same code in every runtime (``FedAvg._cohort``, ``_contribution``,
``_finish_round``), so a seeded network job computes what the in-process ``fit`` computes.

A participant checks every announcement against its own configuration before it trains: the
training settings, the DP configuration and the cohort size must be exactly its own (a
``ProtocolViolation`` names the first difference, and the coordinator logs and reports the
refusal), and a masking session must be at least as strong as the one its own aggregator would
run (threshold, neighbours, malicious mode). It contributes an update to one sum only: a request
for a global model and settings it already sent a masked update for is declined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from secagg.aggregation import AggregateResult
from secagg.aggregation.codec import UpdateCodec
from secagg.encoding import FixedPointEncoder
from secagg.errors import (
    AbortError,
    MalformedMessage,
    ParameterError,
    ProtocolViolation,
    SessionStateError,
    TrainingDiverged,
)
from secagg.fedavg.models import check_dataset
from secagg.fedavg.trainer import FedAvg, History, RoundRecord, _RunPlan, unflatten
from secagg.transport.envelope import Envelope, Kind, field_of, vector_blob
from secagg.transport.network import ClientPolicy, Coordinator, Deadlines, NetworkClient, RetryPolicy, SessionPlan, \
    TLSConfig
from secagg.transport.sessions import MaskingSpec
from secagg.transport.tasks import atomic_json, atomic_npy

__all__ = ["FedAvgCoordinator", "FedAvgParticipant", "FedAvgTask", "FedAvgClient"]

log = logging.getLogger("secagg.net")


def _lock_state_dir(path: Path):
    """An exclusive lock on ``path/lock`` for this process's lifetime: two coordinators on one
    state directory would interleave their rounds and one history would silently win."""
    import fcntl

    handle = open(path / "lock", "a+")  # noqa: SIM115 - held open: the lock lives as long as the task
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ParameterError(f"{path} is in use by another process (its lock is held): one coordinator or "
                             "participant per state directory") from None
    return handle


def _fractional_bits(fedavg: FedAvg) -> int:
    return int(getattr(fedavg.aggregator, "fractional_bits", 16))


def announcement(fedavg: FedAvg, plan: _RunPlan) -> dict:
    """Everything about a round that a participant must have agreed to, as JSON: the settings
    every party of the run shares. Both roles compute it from their own FedAvg; they must match."""
    dp = fedavg.dp.to_dict() if fedavg.dp is not None else None
    return {"rounds": fedavg.rounds, "clients": plan.num_clients, "per_round": plan.per_round,
            "local_epochs": fedavg.local_epochs, "batch_size": fedavg.batch_size,
            "learning_rate": fedavg.learning_rate, "proximal_mu": fedavg.proximal_mu,
            "server_learning_rate": fedavg.server_learning_rate, "clip": fedavg.clip, "max_weight": plan.cap,
            "aggregator": fedavg.aggregator.name, "fractional_bits": _fractional_bits(fedavg), "dp": dp,
            "record_counts": list(fedavg.record_counts) if fedavg.record_counts is not None else None}


def _same_json(announced: object, own: object) -> bool:
    """Equal values of the same JSON kind (1 and 1.0 are one number; True is not 1).

    Numbers compare exactly, as Python compares an int with a float: ``float()`` of a JSON integer
    of 400 digits raises OverflowError (an untyped crash), and would make 2**53 + 1 equal 2**53."""
    if isinstance(own, bool) or isinstance(announced, bool):
        return type(own) is type(announced) and own == announced
    if isinstance(own, (int, float)) and isinstance(announced, (int, float)):
        return own == announced
    if isinstance(own, dict) and isinstance(announced, dict):
        return own.keys() == announced.keys() and all(_same_json(announced[k], own[k]) for k in own)
    if isinstance(own, (list, tuple)) and isinstance(announced, (list, tuple)):
        return len(own) == len(announced) and all(_same_json(a, b) for a, b in zip(announced, own))
    return type(own) is type(announced) and own == announced


def _session_encoder(fedavg: FedAvg, plan: _RunPlan, cohort_size: int) -> tuple[FixedPointEncoder, int]:
    """The fixed-point encoder of a round of ``cohort_size`` contributions and its dimension."""
    dimension, max_weight, clip = fedavg._encoder_options(plan)
    encoder = FixedPointEncoder(num_clients=cohort_size, max_weight=max_weight, clip=clip,
                                fractional_bits=_fractional_bits(fedavg))
    return encoder, dimension


def _min_contributions(plan: _RunPlan) -> int:
    return plan.dp.mechanism.min_shares if plan.dp is not None else 1


class FedAvgTask:
    """Coordinator task: one secure-aggregation session per round of ``fedavg``'s run over
    ``num_clients`` network clients (ids ``0..n-1``), each for the round's sampled cohort.

    The rounds land in ``fedavg.history`` and move ``fedavg``'s global model. ``state_dir`` makes
    training survive a coordinator restart: after every round the global model and the history
    are written there (atomically) and a coordinator started on the same directory with the same
    job resumes after the last recorded round. ``eval_data`` is evaluated after every round and
    ``callback(record)`` called with each round's :class:`~secagg.fedavg.RoundRecord`.
    """

    name = "fedavg"

    def __init__(self, fedavg: FedAvg, num_clients: int, *, state_dir: str | os.PathLike | None = None,
                 eval_data: tuple[np.ndarray, np.ndarray] | None = None,
                 callback: Callable[[RoundRecord], None] | None = None) -> None:
        if not isinstance(fedavg, FedAvg):
            raise ParameterError(f"FedAvgTask needs a secagg.fedavg.FedAvg, got {type(fedavg).__name__}")
        self.fedavg, self.num_clients, self.callback = fedavg, num_clients, callback
        self.plan = fedavg._plan(num_clients)
        self.dimension = fedavg.server.vector.size
        if eval_data is not None:
            eval_data = check_dataset(eval_data[0], eval_data[1], getattr(fedavg.model, "n_features", None),
                                      getattr(fedavg.model, "n_classes", None), name="eval_data")
        self.eval_data = eval_data
        encoder, dimension = _session_encoder(fedavg, self.plan, self.plan.per_round)
        # the session every round runs (one cohort size per run): refused now if it cannot exist
        self.spec = fedavg.aggregator.session_spec(self.plan.per_round, encoder, dimension,
                                                   min_contributions=_min_contributions(self.plan))
        self.codec = UpdateCodec(self.spec, dimension, max_weight=encoder.max_weight, clip=encoder.clip,
                                 fractional_bits=encoder.fractional_bits)
        self.announced = announcement(fedavg, self.plan)
        self.fingerprint = hashlib.sha256(json.dumps({
            "announcement": self.announced, "dimension": self.dimension, "session": self.spec.header()},
            sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._lock = None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_state_dir(self.state_dir)
            try:
                self._load(self.state_dir)
            except BaseException:
                self.close()
                raise

    @property
    def history(self) -> History:
        return self.fedavg.history

    @property
    def config(self):
        """The masking configuration of every round (None on the Paillier path)."""
        return self.spec.config if isinstance(self.spec, MaskingSpec) else None

    @property
    def completed_rounds(self) -> int:
        """Rounds run to an outcome, applied or not (each is one record of :attr:`history`)."""
        return len(self.history)

    @property
    def applied_updates(self) -> int:
        """Rounds whose aggregate moved the global model."""
        return sum(r.applied for r in self.history)

    @property
    def weights(self) -> list[np.ndarray]:
        return self.fedavg.weights

    # ---------------------------------------------------------------- state directory
    def _load(self, state_dir: Path) -> None:
        state_file = state_dir / "fedavg_state.json"
        if not state_file.exists():
            return
        try:
            state = json.loads(state_file.read_text())
            fingerprint, model_name, raw_history = state["fingerprint"], state["model"], list(state["history"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ParameterError(f"{state_file} is not a readable FedAvg state: {exc}") from None
        if fingerprint != self.fingerprint:
            raise ParameterError(f"{state_file} belongs to another job (different settings, model size or clients); "
                                 "use a fresh --state-dir")
        if not (isinstance(model_name, str) and model_name.startswith("model-") and model_name.endswith(".npy")
                and "/" not in model_name and "\\" not in model_name):
            raise ParameterError(f"{state_file} names an unexpected model file {model_name!r}")
        try:
            vector = np.load(state_dir / model_name, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ParameterError(f"cannot read the saved model {model_name}: {exc}") from None
        if vector.dtype != np.float64 or vector.shape != (self.dimension,) or not np.all(np.isfinite(vector)):
            raise ParameterError(f"the saved model {model_name} is not {self.dimension} finite float64 weights (got "
                                 f"{vector.dtype} of shape {vector.shape})")
        records = [RoundRecord.from_dict(r) for r in raw_history]
        server = self.fedavg.server
        self.fedavg.server = type(server)(unflatten(vector, server.weights), server.server_learning_rate)
        self.fedavg.history.rounds[:] = records
        log.info("resuming FedAvg after round %d of %d from %s", len(records), self.fedavg.rounds, state_dir)

    def _save(self) -> None:
        if self.state_dir is None:
            return
        name = f"model-{self.completed_rounds:05d}.npy"
        atomic_npy(self.state_dir / name, np.asarray(self.fedavg.server.vector, dtype=np.float64))
        atomic_json(self.state_dir / "fedavg_state.json",
                    {"fingerprint": self.fingerprint, "model": name,
                     "history": [r.to_dict() for r in self.history]})
        for old in self.state_dir.glob("model-*.npy"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the state directory (also done once every round has run)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---------------------------------------------------------------- CoordinatorTask
    def next_session(self) -> SessionPlan | None:
        index = self.completed_rounds
        if index >= self.fedavg.rounds:
            self.close()
            return None
        cohort = self.fedavg._cohort(self.plan, index)
        header = {"task": self.name, "round": index, "fedavg": self.announced}
        if self.plan.dp is not None:
            header["dp_calibration"] = self.plan.dp.mechanism.calibration()
        if self.plan.dp is not None and self.plan.dp.config.rotation:
            header["signs_seed"] = self.fedavg._signs_seed(index).hex()
        return SessionPlan(self.spec, header, vector_blob(self.fedavg.server.vector), cohort=tuple(cohort))

    def resume_plan(self, header: Mapping, blob: bytes, cohort) -> SessionPlan | None:
        """The journaled session of a restarted coordinator, if it is this job's next round on the
        current model (else None: it was recorded before the restart, or belongs elsewhere)."""
        if header.get("task") != self.name or header.get("round") != self.completed_rounds or \
                self.completed_rounds >= self.fedavg.rounds or header.get("fedavg") != self.announced or \
                bytes(blob) != vector_blob(self.fedavg.server.vector):
            return None
        return SessionPlan(self.spec, dict(header), bytes(blob), cohort=tuple(cohort))

    def finish_session(self, plan, aggregate, survivors, dropped, aborted, seconds, *, misbehaving=None,
                       refused=None) -> bool:
        started = time.perf_counter() - seconds
        index = int(plan.header["round"])
        cohort = tuple(plan.cohort)
        if aggregate is not None:
            try:
                weighted_sum, total_weight = self.codec.decode(aggregate, len(survivors))
            except AbortError as exc:  # the round is lost, not the job
                aborted, aggregate, total_weight = str(exc), None, 0.0
        if aggregate is not None and self.plan.dp is None and \
                not 0 < total_weight <= len(survivors) * self.plan.cap:
            # masked inputs cannot be range-checked: a client that wrapped its weight shows here
            aborted, aggregate = f"implausible total weight {total_weight} for {len(survivors)} clients", None
        if aggregate is not None:
            result = AggregateResult(weighted_sum, float(total_weight), tuple(survivors),
                                     tuple(sorted(set(cohort) - set(survivors))), seconds,
                                     error_bound=self.codec.error_bound(len(survivors)))
        else:
            result = AggregateResult(None, 0.0, (), cohort, seconds, aborted=aborted)
        signs = None
        if "signs_seed" in plan.header:
            if self.plan.dp is None:  # only a DP run's plans carry a rotation seed: typed anyway
                raise SessionStateError("a session plan with a rotation seed finished in a run without DP")
            signs = self.plan.dp.mechanism.signs(bytes.fromhex(plan.header["signs_seed"]))
        record = self.fedavg._finish_round(self.plan, index, cohort, result, signs, self.eval_data, started,
                                           refused=refused, misbehaving=misbehaving)
        self.history.rounds.append(record)
        self._save()
        auc = record.metrics.get("roc_auc")
        log.info("FedAvg round %d/%d: %s%s%s", self.completed_rounds, self.fedavg.rounds,
                 f"ABORTED ({record.aborted})" if record.aborted else
                 f"{len(record.included)} of {len(cohort)} sampled clients in the sum",
                 f", ROC-AUC {auc:.3f}" if auc is not None else "",
                 f", epsilon {record.epsilon:.3f}" if record.epsilon is not None else "")
        if self.callback is not None:
            self.callback(record)
        if self.completed_rounds >= self.fedavg.rounds:
            self.fedavg.model.set_weights(self.fedavg.weights)
            return True
        return False

    def report(self) -> str:
        """One paragraph on the run: rounds, updates applied, the last metrics, every refusal."""
        history = self.history
        applied = self.applied_updates
        lines = [f"FedAvg finished: {len(history)} rounds, {applied} update{'' if applied == 1 else 's'} applied"]
        not_applied = [r.round for r in history if not r.applied]
        if not_applied:
            lines[0] += f" (not applied: rounds {not_applied})"
        last = history[-1] if len(history) else None
        if last is not None and "roc_auc" in last.metrics:
            lines[0] += (f", ROC-AUC {last.metrics['roc_auc']:.3f}, average precision "
                         f"{last.metrics.get('average_precision', float('nan')):.3f}")
        dp = self.fedavg.dp
        if last is not None and last.epsilon is not None and dp is not None:  # epsilon is spent with DP only
            lines[0] += f", epsilon {last.epsilon:.3f} (delta {dp.delta:g})"
        named = {c: why for r in history for c, why in r.misbehaving.items()}
        if named:
            lines.append(f"misbehaving clients (refused, named): {named}")
        refusals: dict[int, list[tuple[int, str]]] = {}
        for r in history:
            for client, why in r.refused.items():
                refusals.setdefault(client, []).append((r.round, why))
        for client, items in sorted(refusals.items()):
            rounds = [rnd for rnd, _ in items]
            lines.append(f"client {client} refused round{'s' if len(rounds) > 1 else ''} {rounds}: {items[-1][1]}")
        return "\n".join(lines)


class FedAvgClient:
    """Client task: participant ``client_id`` of ``fedavg``'s run over ``num_clients`` clients,
    training on its own ``(X, y)``.

    Every announcement is checked against this client's own configuration first (see the module
    docstring); a round it agreed to is trained exactly as :meth:`FedAvg.fit` trains it, and the
    contribution encoded for the announced session (a masking session, or a Paillier round when
    the client runs as a bank). ``state_dir`` keeps the digests of the requests it contributed to
    and the session ids it took, so that the one-sum rule and the one-session-per-id rule survive
    a restart of this process.
    """

    name = "fedavg"

    def __init__(self, fedavg: FedAvg, client_id: int, X: np.ndarray, y: np.ndarray, *, num_clients: int,
                 state_dir: str | os.PathLike | None = None) -> None:
        if not isinstance(fedavg, FedAvg):
            raise ParameterError(f"FedAvgClient needs a secagg.fedavg.FedAvg, got {type(fedavg).__name__}")
        if isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < num_clients:
            raise ParameterError(f"client_id must be an int in 0..{num_clients - 1}, got {client_id!r}")
        self.fedavg, self.client_id = fedavg, client_id
        self.X, self.y = check_dataset(X, y, getattr(fedavg.model, "n_features", None),
                                       getattr(fedavg.model, "n_classes", None), name="client data")
        self.plan = fedavg._plan(num_clients)
        counts = fedavg.record_counts
        if counts is not None and self.X.shape[0] > counts[client_id]:
            raise ParameterError(f"this client holds {self.X.shape[0]} records, more than the job's public record "
                                 f"count {counts[client_id]} for it: the noise and the grid were sized for that")
        self.model = fedavg.model.copy()
        self.template = fedavg.server.weights
        self.dimension = fedavg.server.vector.size
        self.announced = announcement(fedavg, self.plan)
        # with DP, no sum of fewer noise shares than calibrated: this client's session refuses to
        # help unmask (or, as a bank, decrypt) one, whatever the coordinator announces
        self.min_sum = _min_contributions(self.plan)
        self.rounds_trained = 0
        self.contributed_requests: set[str] = set()  # digests of requests whose masked update went out
        self.sessions: dict[str, str] = {}  # session ids taken (hex) -> digest of the announcement taken
        self._pending: str | None = None
        self.state_file = None
        self._lock = None
        if state_dir is not None:
            directory = Path(state_dir)
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_state_dir(directory)
            self.state_file = directory / f"participant-{client_id}.json"
            if self.state_file.exists():
                try:
                    state = json.loads(self.state_file.read_text())
                    contributed, sessions = state["contributed"], state.get("sessions", {})  # older files: none
                    if not (isinstance(contributed, list) and isinstance(sessions, dict)
                            and all(isinstance(v, str) for v in [*contributed, *sessions.values()])):
                        raise TypeError("expected a list of digests and a mapping of session ids to digests")
                    self.contributed_requests, self.sessions = set(contributed), dict(sessions)
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise ParameterError(f"{self.state_file} is not a participant state: {exc}") from None

    def policy(self, num_clients: int, *, min_threshold: int | None = None, min_neighbors: int | None = None,
               require_malicious: bool = False) -> ClientPolicy:
        """What this client accepts of a masking session: at least as strong as the one its own
        aggregator would run for the configured cohort (threshold, neighbours, malicious mode, and
        private against as many corrupt clients), unless lower floors are given explicitly."""
        expected = self.expected_session()
        neighbors = threshold = None
        malicious = require_malicious
        corrupt, security_bits = 0, 40.0
        if isinstance(expected, MaskingSpec):
            config = expected.config
            threshold = config.threshold if min_threshold is None else min_threshold
            neighbors = config.neighbors if min_neighbors is None else min_neighbors
            malicious = malicious or config.malicious
            # the corrupt clients its own session tolerates, checked with the announced graph: the floors
            # alone let a complete graph at an accepted threshold tolerate fewer (2t > h + c)
            if config.threat_model is not None:
                corrupt, security_bits = config.threat_model.corrupt_clients, config.security_bits
        return ClientPolicy(num_clients=num_clients, min_threshold=threshold, min_neighbors=neighbors,
                            require_malicious=malicious, min_cohort=self.plan.per_round, min_corrupt=corrupt,
                            min_sum=self.min_sum, security_bits=security_bits)

    def expected_session(self):
        """The session this client's own aggregator would announce for a round (None when it
        cannot say: a Paillier bank checks the round against its key instead)."""
        if self.fedavg.aggregator.name != "masking":
            return None
        encoder, dimension = _session_encoder(self.fedavg, self.plan, self.plan.per_round)
        return self.fedavg.aggregator.session_spec(self.plan.per_round, encoder, dimension,
                                                   min_contributions=_min_contributions(self.plan))

    def check_announcement(self, header: Mapping) -> int:
        """The announced round number, after checking the announced settings are this client's
        own; ProtocolViolation (party "server") naming the first difference."""
        try:
            index = field_of(dict(header), "round", int)
            announced = field_of(dict(header), "fedavg", dict)
        except MalformedMessage as exc:
            raise ProtocolViolation(f"coordinator sent an invalid FedAvg announcement: {exc}", party="server") from None
        if not 0 <= index < self.fedavg.rounds:
            raise ProtocolViolation(f"coordinator announces round {index} of a {self.fedavg.rounds}-round job",
                                    party="server")
        extra = sorted(set(announced) - set(self.announced))
        if extra:
            raise ProtocolViolation(f"coordinator announces unknown settings {extra}", party="server")
        for name, own in self.announced.items():
            if name not in announced or not _same_json(announced[name], own):
                raise ProtocolViolation(f"coordinator announces {name} = {announced.get(name)!r}; this participant's "
                                        f"job says {own!r}", party="server")
        return index

    def request_digest(self, global_vector: np.ndarray) -> str:
        """What the coordinator actually asked for: the global model's values under these
        settings. The round number is left out on purpose (the coordinator's to choose: a guard
        keyed by it let the same model be contributed twice), and so is the model's byte encoding."""
        typed = json.dumps(self.announced, sort_keys=True, separators=(",", ":")).encode()
        values = np.ascontiguousarray(global_vector + 0.0, dtype="<f8").tobytes()  # -0.0 is 0.0
        return hashlib.sha256(b"secagg-fedavg-request/v3\x00" + len(typed).to_bytes(4, "little") + typed
                              + len(values).to_bytes(8, "little") + values).hexdigest()

    def prepare(self, spec, header, blob):
        self._pending = None
        index = self.check_announcement(header)
        try:
            global_vector = np.asarray(Envelope(Kind.SESSION, blob=blob).vector(), dtype=np.float64)
        except MalformedMessage as exc:
            raise ProtocolViolation(f"coordinator sent an invalid global model: {exc}", party="server") from None
        if global_vector.size != self.dimension:
            raise ProtocolViolation(f"the coordinator's model has {global_vector.size} weights, this client's model "
                                    f"{self.dimension}", party="server")
        cohort = tuple(header.get("cohort", ()))
        if len(cohort) != self.plan.per_round:
            raise ProtocolViolation(f"coordinator samples {len(cohort)} clients, this job samples "
                                    f"{self.plan.per_round} per round", party="server")
        digest = self.request_digest(global_vector)
        if digest in self.contributed_requests:
            # The same model and settings as a request this client already sent its masked
            # update for (a rerun after a coordinator restart, or the same model under a new
            # round number): a second sum over other clients would expose the difference.
            return None
        encoder, dimension = _session_encoder(self.fedavg, self.plan, len(cohort))
        try:
            codec = UpdateCodec(spec, dimension, max_weight=encoder.max_weight, clip=encoder.clip,
                                fractional_bits=encoder.fractional_bits)
        except ParameterError as exc:
            raise ProtocolViolation(f"coordinator announced a session this job cannot encode into: {exc}",
                                    party="server") from None
        signs = None
        if self.plan.dp is not None:
            try:
                self.plan.dp.mechanism.check_calibration(dict(header).get("dp_calibration"))
            except ParameterError as exc:
                raise ProtocolViolation(f"coordinator announced another DP calibration: {exc}", party="server") from None
        if self.plan.dp is not None and self.plan.dp.config.rotation:
            try:
                seed = bytes.fromhex(field_of(dict(header), "signs_seed", str))
            except (MalformedMessage, ValueError) as exc:
                raise ProtocolViolation(f"coordinator sent no valid rotation seed: {exc}", party="server") from None
            if len(seed) != 32:
                raise ProtocolViolation("coordinator sent a rotation seed that is not 32 bytes", party="server")
            signs = self.plan.dp.mechanism.signs(seed)
        try:
            vector, weight = self.fedavg._contribution(self.plan, index, self.client_id, self.model, self.template,
                                                       global_vector, (self.X, self.y), signs)
        except TrainingDiverged:
            # The starting weights are the coordinator's and the settings are the job's, checked
            # equal above: a finite model that does not train (weights near 1e308) is the
            # coordinator's to answer for, not a learning rate this participant could lower.
            raise ProtocolViolation(
                f"the coordinator's global model (largest |weight| {float(np.max(np.abs(global_vector))):.3g}) does "
                "not train: local training from it under the job's agreed settings gives NaN or infinite weights",
                party="server") from None
        self._pending = digest
        self.rounds_trained += 1
        return codec.encode(vector, weight, self.fedavg._rounding_rng(index, self.client_id))

    def contributed(self, header):
        if self._pending is not None:
            self.contributed_requests.add(self._pending)
            self._save_state()

    def taken_sessions(self) -> dict[str, str]:
        """The session ids this participant took (hex), each with the digest of its announcement."""
        return dict(self.sessions)

    def session_taken(self, session_id: str, digest: str) -> None:
        """Record (with a ``state_dir``: persist, atomically) a session id before it is answered:
        a restarted participant must never take it again under another announcement, where the
        one-update digest guard has nothing to say (another model is another request)."""
        self.sessions[session_id] = digest
        self._save_state()

    def _save_state(self) -> None:
        if self.state_file is not None:
            atomic_json(self.state_file, {"contributed": sorted(self.contributed_requests), "sessions": self.sessions})

    def session_ended(self, header):
        pass

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class FedAvgCoordinator:
    """The coordinator of a network FedAvg run: built by :meth:`FedAvg.coordinator`.

    :meth:`serve` runs every round (one secure-aggregation session each, for its sampled cohort)
    and returns ``fedavg.history``; ``fedavg.weights`` is then the trained model. ``port`` is the
    port it listens on (``address`` with port 0 picks a free one).
    """

    def __init__(self, fedavg: FedAvg, num_clients: int, *, tls: TLSConfig, address: str = "127.0.0.1:0",
                 eval_data: tuple[np.ndarray, np.ndarray] | None = None, state_dir: str | os.PathLike | None = None,
                 deadlines: Deadlines = Deadlines(), callback: Callable[[RoundRecord], None] | None = None,
                 verify_keys: Mapping[int, bytes] | None = None, **network_options) -> None:
        self.fedavg = fedavg
        self.task = FedAvgTask(fedavg, num_clients, state_dir=state_dir, eval_data=eval_data, callback=callback)
        try:
            if "max_message_bytes" not in network_options:
                network_options["max_message_bytes"] = self._max_message_bytes(num_clients)
            if state_dir is not None:  # the round in progress survives a restart too
                network_options.setdefault("journal", Path(state_dir) / "session.journal")
            self.network = Coordinator(self.task, num_clients, address=address, tls=tls, deadlines=deadlines,
                                       verify_keys=verify_keys, **network_options)
        except BaseException:
            self.task.close()
            raise

    def _max_message_bytes(self, num_clients: int) -> int:
        spec = self.task.spec
        if isinstance(spec, MaskingSpec):
            return spec.config.vector_length * spec.config.ring.dtype.itemsize + num_clients * 256 + 2**20
        return spec.scheme.plaintexts_for(spec.values) * (spec.public.key_bits // 4 + 8) + 2**20

    @property
    def port(self) -> int:
        return self.network.port

    @property
    def history(self) -> History:
        return self.fedavg.history

    def serve(self, on_started: Callable[[int], None] | None = None) -> History:
        """Run the remaining rounds; the history of the whole run."""
        try:
            self.network.serve(on_started=on_started)
        finally:
            self.task.close()
        return self.fedavg.history

    def stop(self) -> None:
        self.network.stop()

    def report(self) -> str:
        return self.task.report()


class FedAvgParticipant:
    """One participant of a network FedAvg run: built by :meth:`FedAvg.participant`.

    :meth:`run` serves the coordinator's rounds until the job is finished (a dict of session
    counts) or raises :class:`~secagg.transport.network.NetworkError` (unreachable, refused) or
    :class:`~secagg.errors.ProtocolViolation` (this participant refused the coordinator, after
    telling it why).
    """

    def __init__(self, fedavg: FedAvg, client_id: int, data: tuple[np.ndarray, np.ndarray], *, coordinator: str,
                 tls: TLSConfig, num_clients: int, state_dir: str | os.PathLike | None = None,
                 min_threshold: int | None = None, min_neighbors: int | None = None, identity=None,
                 verify_keys: Mapping[int, bytes] | None = None, paillier: tuple | None = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        if not (isinstance(data, tuple) and len(data) == 2):
            raise ParameterError("data must be this participant's (X, y)")
        self.task = FedAvgClient(fedavg, client_id, data[0], data[1], num_clients=num_clients, state_dir=state_dir)
        policy = self.task.policy(num_clients, min_threshold=min_threshold, min_neighbors=min_neighbors,
                                  require_malicious=identity is not None)
        self.client = NetworkClient(coordinator, client_id, self.task, tls=tls, policy=policy, retry=retry,
                                    identity=identity, verify_keys=verify_keys, paillier=paillier)

    def run(self) -> dict:
        try:
            return self.client.run()
        finally:
            self.task.close()

