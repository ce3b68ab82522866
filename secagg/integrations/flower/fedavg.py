"""FedAvg on Flower: the same :class:`~secagg.fedavg.FedAvg` configuration, with Flower moving the messages.

``flower_apps(fedavg, num_clients, client_data=..., eval_data=...)`` gives a ``ServerApp`` and a
``ClientApp`` that run exactly what ``fedavg.fit`` runs, in the roles of secagg's network mode
(:mod:`secagg.fedavg.network`), with Flower as the transport:

* the ServerApp drives a :class:`~secagg.fedavg.network.FedAvgTask`: every round's cohort comes
  from ``FedAvg._cohort`` (uniform, fixed size; from a CSPRNG with DP), never from a Flower
  strategy; the round's secure sum is one masking session over Flower messages
  (:func:`~secagg.integrations.flower.workflow.run_masking_session`, the one
  ``SecAggMaskingWorkflow`` runs); the sum is decoded, the global model moved, evaluated and
  recorded by ``FedAvg._finish_round``, so ``fedavg.history`` and ``fedavg.weights`` are the
  results;
* the ClientApp is a :class:`~secagg.fedavg.network.FedAvgClient` behind secagg's masking mod:
  the node whose ``partition-id`` is ``i`` is FedAvg client ``i`` and trains on
  ``client_data(i)``; it checks the round's announcement against its own configuration (settings,
  cohort size, masking threshold and graph, DP calibration) before it draws a key, trains with
  ``FedAvg._contribution`` (with DP: clipped, rounded and noised by its own share) and encodes with
  ``FedAvg._rounding_rng``, so a seeded run computes what ``fit`` computes, bit for bit.

With DP, a node never helps unmask a sum of fewer inputs than the mechanism's ``min_shares``
(its protocol session's ``min_survivors``), refuses a session for a smaller cohort, and refuses
a coordinator whose announced calibration is not the one its own configuration gives.

On the Paillier path each round is one Paillier round
(:func:`~secagg.integrations.flower.paillier.run_paillier_session`) announced as the network
coordinator announces it, and each bank's node is a ``FedAvgClient`` behind the bank mod: it signs
its contribution over the digest of the announcement and the model it was sent. In the masking
malicious-server mode, identities are by FedAvg client id; the server names the client of each
session place, and each node checks its own before it draws a key.

Every node must be enrolled before the first round: the ServerApp asks each node for its client
id (a ``query`` message) and starts once all ``num_clients`` have answered, within ``join_timeout``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation
from secagg.integrations.flower.mod import _Mod
from secagg.integrations.flower.paillier import _BankMod, run_paillier_session
from secagg.integrations.flower.records import SessionSetup, check_finite_positive
from secagg.integrations.flower.workflow import SecureRoundReport, run_masking_session
from secagg.protocol.derivation import Round
from secagg.protocol.messages import SESSION_ID_BYTES

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues

__all__ = ["FEDAVG_RECORD_KEY", "FedAvgWorkflow", "fedavg_client_app", "flower_apps"]

logger = logging.getLogger("secagg.flower")

FEDAVG_RECORD_KEY = "secagg.fedavg"  # the round's announcement (advertise_keys), the global model (masked_input)
FEDAVG_STATE_KEY = "secagg.fedavg.state"  # a node's one-sum ledger, in its Context
_HEADER_STATE = "fedavg.header"  # the announcement a node agreed to, kept with its session state
_CACHE_SIZE = 64


def _check_num_clients(num_clients: object) -> int:
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 2:
        raise ParameterError(f"num_clients must be an int >= 2, got {num_clients!r}")
    return num_clients


def _check_verify_keys(verify_keys, num_clients: int) -> dict[int, bytes]:
    if not isinstance(verify_keys, Mapping):
        raise ParameterError("the malicious-server mode needs verify_keys: every client's Ed25519 public key, by "
                             "FedAvg client id")
    keys = {int(c): bytes(k) for c, k in dict(verify_keys).items()}
    missing = sorted(set(range(num_clients)) - set(keys))
    if missing or any(len(k) != 32 for k in keys.values()):
        raise ParameterError(f"verify_keys must map every client id 0..{num_clients - 1} to a 32-byte Ed25519 "
                             f"public key (missing {missing[:10]})")
    return keys


def _malicious(fedavg) -> bool:
    return bool(getattr(fedavg.aggregator, "malicious", False))


def _check_fedavg(fedavg) -> None:
    from secagg.fedavg import FedAvg

    if not isinstance(fedavg, FedAvg):
        raise ParameterError(f"needs a secagg.fedavg.FedAvg, got {type(fedavg).__name__}")
    if fedavg.aggregator.name not in ("masking", "paillier"):
        raise ParameterError(f"FedAvg on Flower runs the masking or the Paillier aggregator; this configuration's "
                             f"is {fedavg.aggregator.name!r}")


def flower_apps(fedavg, num_clients: int, *, client_data: Callable[[int], tuple[np.ndarray, np.ndarray]],
                eval_data: tuple[np.ndarray, np.ndarray] | None = None, paillier: Callable | None = None,
                identity: Callable | None = None, verify_keys: Mapping[int, bytes] | None = None,
                **server_options):
    """``(server_app, client_app)`` running ``fedavg`` on Flower over ``num_clients`` nodes.

    ``client_data(i)`` returns client ``i``'s ``(X, y)``; it runs on the node whose ``partition-id``
    is ``i`` (Flower's simulation numbers them ``0..n-1``; a SuperNode gets it from
    ``--node-config "partition-id=i"``). ``eval_data`` is evaluated by the server after every round.
    On the Paillier path (``fedavg``'s aggregator a ``PaillierAggregator(keys=(public, None),
    verify_keys=...)``), ``paillier(i)`` returns bank ``i``'s mod,
    :func:`~secagg.integrations.flower.make_secagg_paillier_mod` with its own key share and identity.
    In the masking path's malicious-server mode, ``identity(i)`` returns client ``i``'s Ed25519
    :class:`~secagg.crypto.signatures.IdentityKey` and ``verify_keys`` maps every client id to its
    public key (obtained out of band, never from the server).
    ``server_options`` go to :class:`FedAvgWorkflow` (``callback``, ``timeout``, ``join_timeout``).
    After the run, ``fedavg.history`` holds the rounds and ``fedavg.weights`` the model.
    """
    from flwr.server import ServerApp

    workflow = FedAvgWorkflow(fedavg, num_clients, eval_data=eval_data,
                              verify_keys=verify_keys if _malicious(fedavg) else None, **server_options)
    server_app = ServerApp()
    server_app.main()(workflow)
    return server_app, fedavg_client_app(fedavg, num_clients, client_data=client_data, paillier=paillier,
                                         identity=identity, verify_keys=verify_keys)


class FedAvgWorkflow:
    """The ServerApp's main function for a FedAvg run: ``ServerApp().main()(FedAvgWorkflow(...))``.

    Enrols the ``num_clients`` nodes (within ``join_timeout`` seconds), then runs every remaining
    round of ``fedavg``'s :class:`~secagg.fedavg.network.FedAvgTask` as one secure-aggregation
    session among the round's cohort (masking, or a Paillier round). ``timeout``: seconds to wait for each protocol round's replies (None: for
    all of them); a node that fails, refuses or is late is a dropout of that round, and the round's
    record names it (``refused``: its error reply; ``misbehaving``: a reply the server refused).
    ``verify_keys`` (client id -> Ed25519 public key): the masking malicious-server mode's
    directory. ``reports`` keeps each round's :class:`~secagg.integrations.flower.SecureRoundReport`.
    """

    def __init__(self, fedavg, num_clients: int, *, eval_data: tuple[np.ndarray, np.ndarray] | None = None,
                 callback: Callable | None = None, timeout: float | None = None, join_timeout: float = 120.0,
                 verify_keys: Mapping[int, bytes] | None = None) -> None:
        from secagg.fedavg.network import FedAvgTask

        _check_fedavg(fedavg)
        self.timeout = None if timeout is None else check_finite_positive("timeout", timeout)
        self.join_timeout = check_finite_positive("join_timeout", join_timeout)
        self.fedavg, self.num_clients = fedavg, _check_num_clients(num_clients)
        self.verify_keys = _check_verify_keys(verify_keys, num_clients) if _malicious(fedavg) else None
        self.task = FedAvgTask(fedavg, num_clients, eval_data=eval_data, callback=callback)
        self.nodes: dict[int, int] = {}  # FedAvg client id -> Flower node id
        self.enrol_errors: dict[int, str] = {}  # node id -> why it did not enrol, or refuses the settings
        self.reports: list[SecureRoundReport] = []

    @property
    def history(self):
        return self.fedavg.history

    def __call__(self, grid, context) -> None:
        self.nodes = self.enrol(grid)
        while (plan := self.task.next_session()) is not None:
            self.run_round(grid, plan)

    # ------------------------------------------------------------------ enrolment

    def enrol(self, grid) -> dict[int, int]:
        """Every client's node: each node is asked for its FedAvg client id (and checks this run's
        settings against its own: one that refuses them is enrolled, and refuses every round it
        is sampled for); AbortError if not all ``num_clients`` answer in time."""
        from flwr.app import ConfigRecord, Message, RecordDict
        from flwr.app.message_type import MessageType

        announced = json.dumps(self.task.announced, sort_keys=True)
        deadline = time.monotonic() + self.join_timeout
        nodes: dict[int, int] = {}
        asked: set[int] = set()
        while True:
            new = sorted(int(n) for n in grid.get_node_ids() if int(n) not in asked)
            asked.update(new)
            messages = [Message(RecordDict({FEDAVG_RECORD_KEY: ConfigRecord({"announcement": announced})}),
                                dst_node_id=node, message_type=MessageType.QUERY, group_id="enrol") for node in new]
            wait = max(1.0, deadline - time.monotonic())
            for reply in grid.send_and_receive(messages, timeout=wait) if messages else ():
                node = int(reply.metadata.src_node_id)
                if reply.has_error():
                    self.enrol_errors[node] = str(reply.error.reason)
                    logger.warning("node %s did not enrol: %s", node, reply.error.reason)
                    continue
                record = reply.content.config_records.get(FEDAVG_RECORD_KEY)
                client = record.get("client_id") if record is not None else None
                if type(client) is not int or not 0 <= client < self.num_clients:
                    self.enrol_errors[node] = f"answered client id {client!r}, not one of 0..{self.num_clients - 1}"
                elif client in nodes:
                    self.enrol_errors[node] = f"claims client id {client}, already node {nodes[client]}'s"
                else:
                    nodes[client] = node
                    if type(record.get("refused")) is str:
                        self.enrol_errors[node] = record["refused"]
                        logger.warning("client %d (node %s) refuses this run's settings: %s", client, node,
                                       record["refused"])
                    continue
                logger.warning("node %s not enrolled: %s", node, self.enrol_errors[node])
            if len(nodes) == self.num_clients:
                logger.info("FedAvg on Flower: %d clients enrolled", len(nodes))
                return nodes
            if time.monotonic() >= deadline:
                missing = sorted(set(range(self.num_clients)) - set(nodes))
                raise AbortError(f"{len(nodes)} of {self.num_clients} FedAvg clients enrolled within "
                                 f"{self.join_timeout:g} s; missing clients {missing[:10]}"
                                 + (f"; nodes that did not enrol: {self.enrol_errors}" if self.enrol_errors else ""))
            time.sleep(0.2)

    # ------------------------------------------------------------------ one round

    def run_round(self, grid, plan) -> SecureRoundReport:
        """One FedAvg round: the session among ``plan.cohort``'s nodes (masking, or a Paillier
        round), then the task's decoding, server update, evaluation and record."""
        from secagg.transport.sessions import PaillierSpec

        started = time.perf_counter()
        index = int(plan.header["round"])
        client_of = {self.nodes[c]: c for c in plan.cohort}
        if isinstance(plan.spec, PaillierSpec):
            report, aggregate = self._paillier_session(grid, plan, client_of)
        else:
            report, aggregate = self._masking_session(grid, plan, client_of)
        self.reports.append(report)
        for node, why in report.errors.items():
            logger.warning("FedAvg round %d: client %d (node %s) failed or refused: %s", index, client_of[node], node,
                           why)
        self.task.finish_session(plan, aggregate, sorted(client_of[n] for n in report.survivors), {}, report.aborted,
                                 time.perf_counter() - started,
                                 misbehaving={client_of[n]: why for n, why in report.misbehaving.items()},
                                 refused={client_of[n]: why for n, why in report.errors.items()})
        return report

    def _masking_session(self, grid, plan, client_of: dict[int, int]):
        from flwr.app import ConfigRecord, RecordDict

        index, cohort = int(plan.header["round"]), tuple(plan.cohort)
        config, own = plan.spec.config, self.task.codec.encoder
        encoder = FixedPointEncoder(num_clients=config.num_clients, max_weight=own.max_weight, clip=own.clip,
                                    fractional_bits=own.fractional_bits, modulus_bits=config.modulus_bits)
        setup = SessionSetup(os.urandom(SESSION_ID_BYTES), tuple(sorted(client_of)), config, encoder)
        places = [client_of[node] for node in setup.node_ids]  # the client id playing each session place
        announced = json.dumps({**plan.header, "cohort": list(cohort), "places": places}, sort_keys=True)
        verify_keys = None
        if config.malicious:
            verify_keys = {i: self.verify_keys[client] for i, client in enumerate(places)}  # type: ignore[index]

        def content(node: int, round_name: Round):
            if round_name is Round.ADVERTISE_KEYS:
                return RecordDict({FEDAVG_RECORD_KEY: ConfigRecord({"header": announced})})
            if round_name is Round.MASKED_INPUT:
                return RecordDict({FEDAVG_RECORD_KEY: ConfigRecord({"model": plan.blob})})
            return None

        report = SecureRoundReport(index + 1, list(setup.node_ids))
        result = run_masking_session(grid, setup, report, group_id=f"fedavg-{index}", timeout=self.timeout,
                                     verify_keys=verify_keys, content=content)
        return report, None if result is None else result.aggregate

    def _paillier_session(self, grid, plan, client_of: dict[int, int]):
        """One Paillier round among the cohort's banks, announced as the network coordinator announces
        it (every bank signs its contribution over the digest of the announcement and the model)."""
        from flwr.app import ConfigRecord, RecordDict

        from secagg.paillier.roles import PaillierCoordinator
        from secagg.transport.sessions import announcement_digest

        index, cohort = int(plan.header["round"]), tuple(plan.cohort)
        session_id = os.urandom(16)
        header = {**plan.header, **plan.spec.header(), "session_id": session_id.hex(), "cohort": list(cohort)}
        spec = dataclasses.replace(plan.spec, meaning={"announcement": announcement_digest(header, plan.blob)})
        coordinator = PaillierCoordinator(spec.public, session_id, spec.verify_keys, round=spec.round,
                                          ciphertexts=spec.scheme.plaintexts_for(spec.values),
                                          min_contributors=spec.min_contributors, encoding=spec.encoding,
                                          banks=cohort, corrupt_banks=self.fedavg.aggregator.corrupt_banks)

        def content(node: int, round_name: str):
            return RecordDict({FEDAVG_RECORD_KEY: ConfigRecord({"model": plan.blob})}) \
                if round_name == "contribution" else None

        report = SecureRoundReport(index + 1, sorted(client_of))
        result = run_paillier_session(grid, coordinator, client_of, report, group_id=f"fedavg-{index}",
                                      timeout=self.timeout, setup=json.dumps(header, sort_keys=True), content=content)
        return report, None if result is None else result.plaintexts


# ---------------------------------------------------------------------------- client side

class _Tasks:
    """Each node's :class:`~secagg.fedavg.network.FedAvgClient`, built from its ``partition-id`` and
    ``client_data``; kept per process (Flower may start a process per message, or reuse one), so the
    data is loaded once per process. Whatever must outlive a process is in the node's Context."""

    _cache: OrderedDict = OrderedDict()
    _lock = threading.Lock()

    def __init__(self, fedavg, num_clients: int, client_data: Callable) -> None:
        if not callable(client_data):
            raise ParameterError("client_data must be a function of the client id returning its (X, y)")
        self.fedavg, self.num_clients, self.client_data = fedavg, _check_num_clients(num_clients), client_data
        self.token = os.urandom(16).hex()  # this app's entries in the process-wide cache

    def client_id(self, ctxt) -> int:
        client = ctxt.node_config.get("partition-id")
        if isinstance(client, bool) or not isinstance(client, int) or not 0 <= client < self.num_clients:
            raise ParameterError(f"this node's partition-id {client!r} is not a FedAvg client id in "
                                 f"0..{self.num_clients - 1} (set it with --node-config \"partition-id=i\")")
        return client

    def task(self, ctxt):
        from secagg.fedavg.network import FedAvgClient

        client = self.client_id(ctxt)
        key = (self.token, client)
        with self._lock:
            task = self._cache.get(key)
            if task is not None:
                self._cache.move_to_end(key)
                return task
        data = self.client_data(client)
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ParameterError(f"client_data({client}) must return (X, y)")
        task = FedAvgClient(self.fedavg, client, data[0], data[1], num_clients=self.num_clients)
        with self._lock:
            self._cache[key] = task
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return task

    def bank_mod(self, ctxt, paillier: Callable) -> _FedAvgBankMod:
        """This node's Paillier bank mod: its key share and identity from ``paillier(client_id)``."""
        task = self.task(ctxt)
        key = (self.token, "bank", task.client_id)
        with self._lock:
            mod = self._cache.get(key)
        if mod is None:
            mod = _FedAvgBankMod(self, paillier(task.client_id), task)
            with self._lock:
                self._cache[key] = mod
        return mod

    def identity(self, task, identity: Callable):
        """This node's Ed25519 identity, ``identity(client_id)`` (loaded once per process)."""
        from secagg.crypto.signatures import IdentityKey

        key = (self.token, "identity", task.client_id)
        with self._lock:
            found = self._cache.get(key)
        if found is None:
            found = identity(task.client_id)
            if not isinstance(found, IdentityKey):
                raise ParameterError(f"identity({task.client_id}) must return an IdentityKey, got "
                                     f"{type(found).__name__}")
            with self._lock:
                self._cache[key] = found
        return found

    @staticmethod
    def load_ledger(task, ctxt) -> None:
        stored = ctxt.state.config_records.get(FEDAVG_STATE_KEY)
        task.contributed_requests = set(stored["contributed"]) if stored is not None else set()

    @staticmethod
    def save_ledger(task, ctxt) -> None:
        from flwr.app import ConfigRecord

        ctxt.state.config_records[FEDAVG_STATE_KEY] = ConfigRecord({"contributed": sorted(task.contributed_requests)})


def _server_violation(text: str) -> ProtocolViolation:
    return ProtocolViolation(text, party="server")


def _fedavg_record(msg, field: str, kind: type):
    record = msg.content.config_records.get(FEDAVG_RECORD_KEY)
    value = record.get(field) if record is not None else None
    if type(value) is not kind:
        raise _server_violation(f"the server sent no FedAvg {field} (record {FEDAVG_RECORD_KEY!r})")
    return value


def check_round(task, setup: SessionSetup, place: int, header: dict) -> int:
    """The checks a node makes of a FedAvg round before it draws a key: the announced settings
    are its own, it is in the announced cohort, the cohort has the job's size and the session's
    places are exactly that cohort (this node's place, ``place``, its own client id), the masking session is at least as strong as its own aggregator's
    (threshold, graph), the session can hold the ``min_sum`` inputs it requires (DP's
    ``min_shares``), the encoding is its own and, with DP, the announced calibration is the one its
    own configuration gives. The round index, or ProtocolViolation (party ``"server"``)."""
    from secagg.fedavg.network import _session_encoder
    from secagg.transport.sessions import session_cohort

    index = task.check_announcement(header)
    cohort, _ = session_cohort(header, task.client_id, task.plan.num_clients)
    if len(cohort) != task.plan.per_round:
        raise _server_violation(f"coordinator samples {len(cohort)} clients, this job samples {task.plan.per_round} "
                                "per round")
    if setup.config.num_clients != len(cohort):
        raise _server_violation(f"coordinator configured a session of {setup.config.num_clients} clients for a "
                                f"cohort of {len(cohort)}")
    places = header.get("places")
    if not (isinstance(places, list) and all(type(c) is int for c in places) and sorted(places) == list(cohort)):
        raise _server_violation("coordinator announced session places that are not the cohort's client ids")
    if places[place] != task.client_id:
        raise _server_violation(f"coordinator gives this node (client {task.client_id}) the session place of "
                                f"client {places[place]}")
    policy = task.policy(task.plan.num_clients)
    policy.check_cohort(cohort)
    policy.check(setup.config)
    if task.min_sum > setup.config.num_clients:
        raise _server_violation(f"coordinator announced a session of {setup.config.num_clients} clients; this client "
                                f"contributes to no sum of fewer than {task.min_sum}")
    own, _ = _session_encoder(task.fedavg, task.plan, len(cohort))
    announced = (setup.encoder.clip, setup.encoder.max_weight, setup.encoder.fractional_bits)
    if announced != (own.clip, own.max_weight, own.fractional_bits):
        raise _server_violation(f"coordinator announced the encoding (clip, max_weight, fractional_bits) = "
                                f"{announced}; this job's is {(own.clip, own.max_weight, own.fractional_bits)}")
    if task.plan.dp is not None:
        try:
            task.plan.dp.mechanism.check_calibration(header.get("dp_calibration"))
        except ParameterError as exc:
            raise _server_violation(f"coordinator announced another DP calibration: {exc}") from None
    return index


class _FedAvgMod(_Mod):
    """secagg's masking mod with a FedAvg client as its input: the node trains what ``fit`` trains."""

    def __init__(self, tasks: _Tasks, identity: Callable | None, verify_keys: dict[int, bytes] | None) -> None:
        super().__init__(None, None)
        self.tasks, self.identity, self.directory = tasks, identity, verify_keys

    def _accept(self, msg, ctxt, setup: SessionSetup, client_id: int) -> dict:
        try:
            header = json.loads(_fedavg_record(msg, "header", str))
        except ValueError as exc:
            raise _server_violation(f"the FedAvg announcement is not JSON: {exc}") from None
        if not isinstance(header, dict):
            raise _server_violation("the FedAvg announcement is not a JSON object")
        check_round(self.tasks.task(ctxt), setup, client_id, header)
        return {_HEADER_STATE: json.dumps(header, sort_keys=True)}

    def _identity_and_keys(self, ctxt, setup: SessionSetup, state: dict):
        """Malicious-server mode: this client's identity, and each session place's key from this
        node's own directory (by client id) through the places it checked in :func:`check_round`."""
        if self.identity is None or self.directory is None:
            raise ParameterError("the server asks for the malicious-server mode, but this node has no identity: "
                                 "build the ClientApp with identity=... and verify_keys=...")
        task = self.tasks.task(ctxt)
        places = json.loads(state[_HEADER_STATE])["places"]
        return self.tasks.identity(task, self.identity), {i: self.directory[c] for i, c in enumerate(places)}

    def _min_survivors(self, ctxt, setup: SessionSetup) -> int:
        return int(self.tasks.task(ctxt).min_sum)

    def _input(self, msg, ctxt, call_next, setup: SessionSetup, state: dict):
        from secagg.transport.sessions import MaskingSpec

        task = self.tasks.task(ctxt)
        header = json.loads(state[_HEADER_STATE])
        self.tasks.load_ledger(task, ctxt)
        encoded = task.prepare(MaskingSpec(setup.config), header, _fedavg_record(msg, "model", bytes))
        if encoded is None:
            # the same global model and settings as a round this node already sent its masked
            # update for: a second sum over other clients would expose the difference
            raise _server_violation("this client's update of this global model is already in an earlier sum: it "
                                    "contributes once per model")
        return encoded, None

    def _sent(self, ctxt, state: dict) -> None:
        task = self.tasks.task(ctxt)
        task.contributed(json.loads(state[_HEADER_STATE]))
        self.tasks.save_ledger(task, ctxt)


class _FedAvgBankMod(_BankMod):
    """secagg's Paillier bank mod with a FedAvg client as its input: the bank trains what ``fit``
    trains, on the announced global model, and contributes to the round it checked."""

    def __init__(self, tasks: _Tasks, bank, task) -> None:
        if not isinstance(bank, _BankMod):
            raise ParameterError("paillier(client_id) must return the bank's make_secagg_paillier_mod(share=..., "
                                 f"identity=..., verify_keys=...), got {type(bank).__name__}")
        if bank.share.index != task.client_id + 1:
            raise ParameterError(f"client {task.client_id} holds the key share of bank {bank.share.index - 1}")
        # with DP, no aggregate of fewer noise shares than calibrated is decrypted by this bank
        super().__init__(bank.share, bank.identity, bank.verify_keys, max(bank.floor, task.min_sum),
                         bank.corrupt_banks, bank.ledger)
        self.tasks = tasks

    def _contribute(self, msg, ctxt, call_next, record, data: bytes, state: dict):
        from secagg.transport.envelope import field_of
        from secagg.transport.sessions import PaillierSpec, client_spec, session_cohort

        task = self.tasks.task(ctxt)
        try:
            header = json.loads(record.get("setup") or "")
            if not isinstance(header, dict):
                raise ValueError("not an object")
            session = bytes.fromhex(field_of(header, "session_id", str))
        except (ValueError, MalformedMessage) as exc:
            raise _server_violation(f"invalid FedAvg Paillier announcement: {exc}") from None
        if session != self._session_of(data):
            raise _server_violation("the announcement and the round request name different sessions")
        blob = _fedavg_record(msg, "model", bytes)
        cohort, _ = session_cohort(header, task.client_id, task.plan.num_clients)
        spec = client_spec(header, verify_keys=self.verify_keys, paillier=(self.public, self.share, self.floor),
                           blob=blob, cohort=cohort)
        if not isinstance(spec, PaillierSpec):  # the header names its protocol, and the server chose it
            raise _server_violation(f"the server announced a {spec.name} session on the Paillier path")
        bank = self._bank(session, state)
        request = bank.read_request(data)  # before training: a refused request costs nothing
        if request.round != spec.round:
            raise _server_violation(f"the round request is for round {request.round}, the announcement for "
                                    f"{spec.round}")
        task.contributed_requests = set(state.get("models", []))
        values = task.prepare(spec, header, blob)
        if values is None:
            raise _server_violation("this bank's update of this global model is already in an earlier sum: it "
                                    "contributes once per model")
        plaintexts = spec.scheme.pack(values)
        if len(plaintexts) != request.ciphertexts:
            raise _server_violation(f"the round asks for {request.ciphertexts} ciphertexts, the announced packing "
                                    f"gives {len(plaintexts)}")
        reply = bank.contribute(request, plaintexts, encoding=spec.encoding)
        task.contributed(header)
        state["models"] = sorted(task.contributed_requests)  # kept in the Context and the bank's ledger
        return reply, bank, session, None


def _refuse_plain_training(msg, ctxt):
    raise _server_violation("a FedAvg node trains only inside a secure-aggregation round")


def fedavg_client_app(fedavg, num_clients: int, *, client_data: Callable[[int], tuple[np.ndarray, np.ndarray]],
                      paillier: Callable | None = None, identity: Callable | None = None,
                      verify_keys: Mapping[int, bytes] | None = None):
    """The ClientApp of ``fedavg``'s run over ``num_clients`` nodes (see :func:`flower_apps`): the
    node with ``partition-id`` ``i`` is FedAvg client ``i`` and trains on ``client_data(i)``; on
    the Paillier path it is bank ``i``, with the mod ``paillier(i)`` returns; in the masking
    malicious-server mode it signs with ``identity(i)`` and checks every signature against
    ``verify_keys`` (client id -> key)."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.client import ClientApp

    _check_fedavg(fedavg)
    if (fedavg.aggregator.name == "paillier") != (paillier is not None):
        raise ParameterError("the Paillier path needs paillier=lambda client_id: make_secagg_paillier_mod(share=..., "
                             "identity=..., verify_keys=...) (each bank's own key share), and only it takes one")
    directory = None
    if _malicious(fedavg):
        if identity is None:
            raise ParameterError("the malicious-server mode needs identity=lambda client_id: IdentityKey (each "
                                 "client's own Ed25519 key) and verify_keys")
        directory = _check_verify_keys(verify_keys, num_clients)
    tasks = _Tasks(fedavg, num_clients, client_data)
    mod = _FedAvgMod(tasks, identity, directory)
    app = ClientApp()

    @app.train()
    def train(msg, ctxt):
        if paillier is not None:
            return tasks.bank_mod(ctxt, paillier)(msg, ctxt, _refuse_plain_training)
        return mod(msg, ctxt, _refuse_plain_training)

    @app.query()
    def enrol(msg: Message, ctxt: Context) -> Message:
        """Answer the server's enrolment: this node's client id, and why it will refuse the run's
        rounds if the announced settings are not its own."""
        try:
            announced = json.loads(_fedavg_record(msg, "announcement", str))
        except ValueError as exc:
            raise _server_violation(f"the FedAvg announcement is not JSON: {exc}") from None
        task = tasks.task(ctxt)
        answer: dict[str, ConfigRecordValues] = {"client_id": task.client_id}
        try:
            task.check_announcement({"round": 0, "fedavg": announced})
        except ProtocolViolation as exc:  # said now, and again (as an error) in every round it is sampled for
            answer["refused"] = str(exc)
        return Message(RecordDict({FEDAVG_RECORD_KEY: ConfigRecord(answer)}), reply_to=msg)

    return app
