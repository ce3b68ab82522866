"""The client side: a Flower mod that answers :class:`SecAggMaskingWorkflow` with secagg's protocol.

Flower may run every message of a node in a different process (Ray actors in simulation, a fresh
ClientApp process in deployment), so the only state that survives between rounds is the node's
``Context``. The mod keeps there, as bytes, a 32-byte session secret, the setup and the server
messages handled so far; the :class:`ClientSession` is rebuilt by replaying them, with every random
draw taken from an AES-CTR stream keyed by the secret, so the replay re-derives the same keys,
seeds and shares. A process keeps its live session in a small cache after the masked input, so the
unmasking round normally skips the replay; a cache miss only costs time (little: see ``_session``).
The input is needed only in ``masked_input``: the node trains in that round (as with Flower's
SecAgg+), and the replays of other rounds run on a zero vector, whose masked output is discarded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.crypto.signatures import IdentityKey
from secagg.errors import ParameterError, ProtocolViolation, SessionStateError
from secagg.integrations.flower.records import (
    METRICS_KEY,
    RECORD_KEY,
    ROUND_NAMES,
    STATE_KEY,
    SessionSetup,
    flatten,
    message_bytes,
)
from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.derivation import Round

__all__ = ["secagg_masking_mod", "make_secagg_masking_mod"]

logger = logging.getLogger("secagg.flower")

SECRET_BYTES = 32
_CACHE_SIZE = 256


class _SessionStream:
    """The session's randomness: AES-256-CTR keyed by a secret drawn from the OS once per session.

    Replaying the same calls yields the same bytes, which is what lets a session be rebuilt from
    its context; the secret is as sensitive as the keys it derives and never leaves the node.
    """

    def __init__(self, secret: bytes) -> None:
        self._stream = Cipher(algorithms.AES(secret), modes.CTR(bytes(16))).encryptor()

    def random_bytes(self, n: int) -> bytes:
        return self._stream.update(bytes(n))


class _LiveSessions:
    """Sessions past their masked input, per (session id, node), most recent last."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[bytes, int], tuple[int, ClientSession]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, int], handled: int) -> ClientSession | None:
        with self._lock:
            item = self._items.pop(key, None)
        if item is None or item[0] != handled:
            return None
        return item[1]

    def put(self, key: tuple[bytes, int], handled: int, session: ClientSession) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = (handled, session)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_LIVE = _LiveSessions(_CACHE_SIZE)


def _server_violation(text: str) -> ProtocolViolation:
    return ProtocolViolation(text, party="server")


class _Mod:
    """The mod's logic; an instance is the mod (Flower calls it with msg, context, call_next)."""

    def __init__(self, identity: IdentityKey | None, verify_keys: Mapping[int, bytes] | None) -> None:
        if (identity is None) != (verify_keys is None):
            raise ParameterError("malicious mode needs both identity and verify_keys (or neither)")
        if identity is not None and not isinstance(identity, IdentityKey):
            raise ParameterError("identity must be an IdentityKey")
        self._identity = identity
        self._directory = None if verify_keys is None else {int(k): bytes(v) for k, v in verify_keys.items()}
        if self._directory is not None and any(len(v) != 32 for v in self._directory.values()):
            raise ParameterError("verify_keys must map node ids to 32-byte Ed25519 public keys")

    # ------------------------------------------------------------------ Flower entry point

    def __call__(self, msg, ctxt, call_next):
        from flwr.app import ConfigRecord, Message, RecordDict

        if msg.metadata.message_type.split(".")[0] != "train":
            return call_next(msg, ctxt)
        record = msg.content.config_records.get(RECORD_KEY)
        if record is None:
            # Passing the message on would send this node's update in the clear.
            raise _server_violation("train message without secure-aggregation instructions: refusing to send "
                                    "an unmasked update (the server must run SecAggMaskingWorkflow)")
        round_name = record.get("round")
        if round_name not in ROUND_NAMES:
            raise _server_violation(f"unknown secagg round {round_name!r}")
        node_id = int(msg.metadata.dst_node_id)
        metrics = None
        if round_name == Round.ADVERTISE_KEYS.value:
            reply, state = self._advertise(msg, ctxt, record, node_id)
        elif round_name == Round.MASKED_INPUT.value:
            reply, state, metrics = self._masked_input(msg, ctxt, call_next, record, node_id)
        else:
            reply, state = self._continue(ctxt, record, round_name, node_id)
        if state is None:
            ctxt.state.config_records.pop(STATE_KEY, None)
        else:
            ctxt.state.config_records[STATE_KEY] = ConfigRecord(state)
        content = RecordDict({RECORD_KEY: ConfigRecord({"round": round_name, "message": reply})})
        if metrics:
            content.config_records[METRICS_KEY] = ConfigRecord(dict(metrics))
        return Message(content, reply_to=msg)

    # ------------------------------------------------------------------ rounds

    def _advertise(self, msg, ctxt, record, node_id: int) -> tuple[bytes, dict]:
        setup, client_id = SessionSetup.from_record(record, node_id)
        kept = self._accept(msg, ctxt, setup, client_id)
        secret = os.urandom(SECRET_BYTES)
        session = self._session(setup, client_id, secret, None, ctxt, kept)
        reply = session.start()
        state = {key: value for key, value in record.items() if key != "round"}
        state.update(kept)
        state.update({"secret": secret, "handled": 0, "next_round": Round.SHARE_KEYS.value})
        return reply, state

    def _masked_input(self, msg, ctxt, call_next, record, node_id: int):
        state, setup, client_id = self._load(ctxt, Round.MASKED_INPUT.value, node_id)
        data = message_bytes(record, Round.MASKED_INPUT.value, "server")
        encoded, metrics = self._input(msg, ctxt, call_next, setup, state)
        session = self._replay(state, setup, client_id, encoded, ctxt)
        reply = session.handle(data)
        self._sent(ctxt, state)
        handled = int(state["handled"]) + 1
        state.update({f"message.{handled - 1}": data, "handled": handled,
                      "next_round": (Round.CONSISTENCY_CHECK if setup.config.malicious else Round.UNMASKING).value})
        _LIVE.put((setup.session_id, node_id), handled, session)
        return reply, state, metrics

    # ------------------------------------------------------------------ what a subclass may change

    def _accept(self, msg, ctxt, setup: SessionSetup, client_id: int) -> dict:
        """Checks of the setup beyond its own consistency, before any key is drawn (raise to refuse
        the session); returns extra entries to keep in the session's state (ConfigRecord values)."""
        return {}

    def _min_survivors(self, ctxt, setup: SessionSetup) -> int:
        """The fewest inputs of a sum this node helps unmask (its session refuses a shorter survivor list)."""
        return 1

    def _sent(self, ctxt, state: dict) -> None:
        """This node's masked input is about to leave (it must never enter another sum)."""

    def _input(self, msg, ctxt, call_next, setup: SessionSetup, state: dict):
        """This node's encoded input and the fit metrics to send along: the rest of the ClientApp
        trains, and the update ``params - global``, weighted by the capped sample count, is encoded."""
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import parameters_to_ndarrays

        sent = compat.recorddict_to_fitins(msg.content, keep_input=True)
        global_arrays = parameters_to_ndarrays(sent.parameters)
        out = call_next(msg, ctxt)
        if out.has_error():
            raise SessionStateError(f"local training failed: {out.error.reason}")
        fitres = compat.recorddict_to_fitres(out.content, keep_input=True)
        local_arrays = parameters_to_ndarrays(fitres.parameters)
        if [a.shape for a in local_arrays] != [a.shape for a in global_arrays]:
            raise ParameterError("the client returned parameters shaped unlike the ones it received")
        update = flatten(local_arrays) - flatten(global_arrays)
        if update.size != setup.dimension:
            raise _server_violation(f"session set up for {setup.dimension} parameters, the model has {update.size}")
        # The weight is the sample count, capped as the encoder requires (as the trainer does).
        if int(fitres.num_examples) < 0:
            raise ParameterError(f"num_examples must be >= 0, got {fitres.num_examples}")
        weight = float(min(int(fitres.num_examples), int(setup.encoder.max_weight)))
        if weight < fitres.num_examples:
            logger.warning("num_examples %s capped at the session's max_weight %s", fitres.num_examples, weight)
        return setup.encoder.encode(weight * update, weight, np.random.default_rng()), fitres.metrics

    def _continue(self, ctxt, record, round_name: str, node_id: int) -> tuple[bytes, dict | None]:
        state, setup, client_id = self._load(ctxt, round_name, node_id)
        data = message_bytes(record, round_name, "server")
        handled = int(state["handled"])
        session = _LIVE.get((setup.session_id, node_id), handled) if handled >= 2 else None
        if session is None:
            session = self._replay(state, setup, client_id, None, ctxt)
        reply = session.handle(data)
        if reply is None:  # every server message the session accepts has an answer today; typed anyway
            raise SessionStateError(f"the client session has no answer to the {round_name} message")
        if session.state is ClientState.DONE:
            return reply, None  # the session is over: forget its secret
        state.update({f"message.{handled}": data, "handled": handled + 1,
                      "next_round": ROUND_NAMES[ROUND_NAMES.index(round_name) + 1]})
        if handled + 1 >= 2:
            _LIVE.put((setup.session_id, node_id), handled + 1, session)
        return reply, state

    # ------------------------------------------------------------------ state

    def _load(self, ctxt, round_name: str, node_id: int) -> tuple[dict, SessionSetup, int]:
        stored = ctxt.state.config_records.get(STATE_KEY)
        if stored is None:
            raise _server_violation(f"round {round_name} for a node with no secure-aggregation session")
        state = dict(stored)
        if state.get("next_round") != round_name:
            raise _server_violation(f"round {round_name} out of order: this node expects {state.get('next_round')}")
        setup, client_id = SessionSetup.from_record(state, node_id)
        return state, setup, client_id

    def _session(self, setup: SessionSetup, client_id: int, secret: bytes, input_vector, ctxt,
                 state: dict) -> ClientSession:
        """The session, with this node's input; without one, a stand-in session of vector length 1.

        Only the masked input depends on the vector length: keys, shares, the neighbour graph and
        every other message derive from the session id, n and k. So the rounds that need no input
        (and replays whose masked output is discarded) run with m = 1 instead of masking m zeros.
        A stand-in that diverged would fail to open its share bundles and raise, never go on wrong.
        """
        config = setup.config
        if input_vector is None:
            config = dataclasses.replace(config, vector_length=1)
            input_vector = config.ring.zeros(1)
        identity, verify_keys = self._identity_and_keys(ctxt, setup, state) if setup.config.malicious else (None, None)
        return ClientSession(config, client_id, setup.session_id, input_vector, rng=_SessionStream(secret),
                             identity=identity, verify_keys=verify_keys, min_survivors=self._min_survivors(ctxt, setup))

    def _identity_and_keys(self, ctxt, setup: SessionSetup, state: dict) -> tuple[IdentityKey, dict[int, bytes]]:
        """Malicious-server mode: this node's identity and every session place's verify key, from
        this node's own directory (Flower node id -> key), never from the server."""
        if self._identity is None or self._directory is None:
            raise ParameterError("the server asks for malicious-server mode, but this node's mod has no identity "
                                 "key: build it with make_secagg_masking_mod(identity=..., verify_keys=...)")
        missing = [nid for nid in setup.node_ids if nid not in self._directory]
        if missing:
            raise _server_violation(f"setup names nodes {missing[:5]} absent from this node's verify-key directory")
        return self._identity, {i: self._directory[nid] for i, nid in enumerate(setup.node_ids)}

    def _replay(self, state: dict, setup: SessionSetup, client_id: int, input_vector, ctxt) -> ClientSession:
        """Rebuild the session from its secret and the server messages it has handled."""
        session = self._session(setup, client_id, state["secret"], input_vector, ctxt, state)
        session.start()
        for i in range(int(state["handled"])):
            try:
                session.handle(state[f"message.{i}"])
            except ProtocolViolation as exc:  # the same bytes were accepted before: the state is corrupt
                raise SessionStateError(f"stored secure-aggregation state does not replay: {exc}") from None
        return session


def make_secagg_masking_mod(*, identity: IdentityKey | None = None,
                            verify_keys: Mapping[int, bytes] | None = None) -> Callable:
    """A client mod for :class:`SecAggMaskingWorkflow`.

    For the malicious-server mode, give this node's long-term Ed25519 ``identity`` and a trusted
    directory ``verify_keys`` (Flower node id -> 32-byte public key) obtained out of band: the
    node checks every signature against that directory, never against keys the server sends.
    """
    return _Mod(identity, verify_keys)


secagg_masking_mod = make_secagg_masking_mod()
secagg_masking_mod.__doc__ = "Client mod for SecAggMaskingWorkflow (honest-but-curious server)."
