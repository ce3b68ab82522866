"""The Paillier path on Flower: a server workflow that coordinates, and a client mod for each bank.

The same two sans-IO roles as in process and over secagg's network mode
(:mod:`secagg.paillier.roles`): :class:`SecAggPaillierWorkflow` drives a
:class:`~secagg.paillier.roles.PaillierCoordinator`, which holds no key share; the mod built by
:func:`make_secagg_paillier_mod` drives one :class:`~secagg.paillier.roles.BankSession` with the
bank's own key share and Ed25519 identity. Each Flower round is one Paillier round (round number =
Flower's server round) of one session per workflow:

1. ``contribution``: a train message carrying the fit instructions and the bank's RoundRequest;
   the node trains, encodes ``n_k * (params_k - global)`` and ``n_k``
   (:class:`~secagg.aggregation.codec.UpdateCodec`), packs, encrypts and replies with its signed
   Contribution;
2. ``decryption``: the DecryptionRequest (every valid signed contribution); the bank checks them,
   recomputes the aggregate itself and replies with its proven partial decryptions.

A bank keeps, in its Flower ``Context``, the rounds of the session it contributed to and
decrypted, so it decrypts one aggregate per round even when every message runs in a fresh
process, and a digest of every (global model, fit instructions) it contributed an update for: it
contributes once per model, so a server that claims a round aborted and sends the same model again
to fewer banks cannot subtract the two sums. The strategy receives only the weighted average.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import replace
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from secagg.aggregation.codec import UpdateCodec
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation, SessionStateError
from secagg.integrations.flower.records import check_finite_positive, flatten, message_bytes, unflatten
from secagg.integrations.flower.workflow import SecureFitWorkflow, SecureRoundReport, readable_reply
from secagg.transport.envelope import field_of
from secagg.transport.sessions import PaillierSpec, paillier_spec_from_header

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues

__all__ = ["PAILLIER_RECORD_KEY", "PAILLIER_STATE_KEY", "SecAggPaillierWorkflow", "make_secagg_paillier_mod",
           "run_paillier_session"]

logger = logging.getLogger("secagg.flower")

PAILLIER_RECORD_KEY = "secagg.paillier"
PAILLIER_METRICS_KEY = "secagg.paillier.metrics"
PAILLIER_STATE_KEY = "secagg.paillier.state"  # a bank's rounds contributed / decrypted, in its Context
_ROUNDS = ("contribution", "decryption")


def _server_violation(text: str) -> ProtocolViolation:
    return ProtocolViolation(text, party="server")


def _identities(banks: Mapping[int, int], verify_keys: Mapping[int, bytes], parties: int):
    node_to_bank = {int(node): int(bank) for node, bank in dict(banks).items()}
    if sorted(node_to_bank.values()) != sorted(set(node_to_bank.values())) or \
            any(not 0 <= b < parties for b in node_to_bank.values()):
        raise ParameterError(f"banks must map Flower node ids to distinct bank ids in 0..{parties - 1}")
    return node_to_bank


class SecAggPaillierWorkflow(SecureFitWorkflow):
    """Secure weighted aggregation of Flower fit results on the Paillier path.

    * ``public``: the key's public parameters (``load_public_key("public.json")``); the workflow
      never holds a key share.
    * ``banks``: Flower node id -> bank id (bank ``i`` holds key share ``i + 1``);
      ``verify_keys``: bank id -> Ed25519 public key, obtained out of band.
    * ``min_contributors``: the fewest contributions per decrypted aggregate (None: ``c + 2``
      for ``corrupt_banks``, default the most the key's ``t`` tolerates); every bank also
      enforces its own floor.
    * ``clip``, ``max_weight``, ``fractional_bits``: the fixed-point encoding, as for
      :class:`~secagg.integrations.flower.SecAggMaskingWorkflow`.
    * ``timeout``: seconds to wait for each round's replies; late or failed replies are dropouts.
    """

    def __init__(self, public, banks: Mapping[int, int], verify_keys: Mapping[int, bytes], *, clip: float = 8.0,
                 max_weight: float = 1_000_000.0, fractional_bits: int = 16, min_contributors: int | None = None,
                 corrupt_banks: int | None = None, timeout: float | None = None) -> None:
        from secagg.paillier.roles import _check_identities, default_min_contributors, paillier_threat_model
        from secagg.paillier.threshold import ThresholdPublicKey

        if not isinstance(public, ThresholdPublicKey) or not public.verifiable:
            raise ParameterError("public must be a ThresholdPublicKey with verification keys")
        self.public = public
        self.banks = _identities(banks, verify_keys, public.parties)
        self.verify_keys = _check_identities(public, verify_keys)
        self.clip = check_finite_positive("clip", clip)
        self.max_weight = check_finite_positive("max_weight", max_weight)
        self.fractional_bits = fractional_bits
        self.encoder = FixedPointEncoder(num_clients=public.parties, max_weight=self.max_weight, clip=self.clip,
                                         fractional_bits=fractional_bits)  # refuse impossible precision now
        self.min_contributors = min_contributors if min_contributors is not None else \
            default_min_contributors(public.parties, public.threshold, corrupt_banks)
        self.corrupt_banks = corrupt_banks
        paillier_threat_model(public.parties, public.threshold, self.min_contributors, corrupt_banks)
        self.timeout = None if timeout is None else check_finite_positive("timeout", timeout)
        self.session_id = os.urandom(16)  # one session per workflow; Flower's server round is the round
        self.reports: list[SecureRoundReport] = []

    def spec(self, dimension: int, server_round: int) -> PaillierSpec:
        return PaillierSpec(self.public, self.verify_keys, **UpdateCodec.spec_values(self.encoder, dimension),
                            min_contributors=self.min_contributors, round=server_round)

    def aggregate(self, grid, server_round: int, fit_ins: dict) -> tuple[SecureRoundReport, list | None, dict]:
        """One Paillier round among the nodes of ``fit_ins``; as :meth:`SecAggMaskingWorkflow.aggregate`."""
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import parameters_to_ndarrays

        from secagg.paillier.roles import PaillierCoordinator

        node_ids = sorted(int(n) for n in fit_ins)
        report = SecureRoundReport(server_round, node_ids)
        unknown = [n for n in node_ids if n not in self.banks]
        if unknown:
            raise ParameterError(f"nodes {unknown[:5]} hold no key share (not in banks)")
        first = fit_ins[node_ids[0]].parameters
        if any(fit_ins[n].parameters.tensors != first.tensors for n in node_ids[1:]):
            raise ParameterError("SecAggPaillierWorkflow aggregates updates against one global model: configure_fit "
                                 "must send every client the same parameters")
        global_arrays = parameters_to_ndarrays(first)
        global_vector = flatten(global_arrays)
        spec = self.spec(global_vector.size, server_round)
        spec = replace(spec, meaning=_meaning(self.clip, self.max_weight, self.fractional_bits, self.session_id,
                                              global_arrays))
        codec = UpdateCodec(spec, global_vector.size, max_weight=self.max_weight, clip=self.clip,
                            fractional_bits=self.fractional_bits)
        node_of = {self.banks[n]: n for n in node_ids}
        if len(node_ids) < spec.min_contributors:
            report.aborted = (f"{len(node_ids)} banks sampled, fewer than the {spec.min_contributors} contributions "
                              "needed")
            return report, None, {}
        coordinator = PaillierCoordinator(self.public, self.session_id, self.verify_keys, round=server_round,
                                          ciphertexts=spec.scheme.plaintexts_for(spec.values),
                                          min_contributors=spec.min_contributors, encoding=spec.encoding,
                                          banks=sorted(node_of), corrupt_banks=self.corrupt_banks)
        announced = {**spec.header()["paillier"], "clip": self.clip, "max_weight": self.max_weight,
                     "fractional_bits": self.fractional_bits, "session_id": self.session_id.hex()}
        by_bank: dict[int, dict] = {}

        def fit_instructions(node: int, round_name: str):
            return compat.fitins_to_recorddict(fit_ins[node], True) if round_name == "contribution" else None

        result = run_paillier_session(grid, coordinator, {n: self.banks[n] for n in node_ids}, report,
                                      group_id=str(server_round), timeout=self.timeout,
                                      setup=json.dumps(announced, sort_keys=True), content=fit_instructions,
                                      metrics=by_bank)
        if result is None:
            return report, None, {}
        try:
            weighted_sum, total_weight = codec.decode(result.plaintexts, len(result.contributors))
        except AbortError as exc:  # a contributor packed values outside their slots: this round is lost
            report.aborted = str(exc)
            return report, None, {}
        report.total_weight = total_weight
        if total_weight <= 0:
            report.aborted = "the contributors carried no weight (num_examples all 0)"
            return report, None, {}
        report.error_bound = codec.error_bound(len(result.contributors)) / total_weight
        average = unflatten(global_vector + weighted_sum / total_weight, global_arrays)
        return report, average, {node_of[b]: m for b, m in by_bank.items() if node_of[b] in report.survivors}


def run_paillier_session(grid, coordinator, banks: Mapping[int, int], report: SecureRoundReport, *, group_id: str,
                         timeout: float | None, setup: str, content: Callable | None = None,
                         metrics: dict[int, dict] | None = None):
    """One Paillier round of ``coordinator`` (a new :class:`~secagg.paillier.roles.PaillierCoordinator`)
    among the nodes of ``banks`` (Flower node id -> bank id) over ``grid``: its result, or None when
    the round aborted (``report.aborted`` says why).

    ``setup`` (JSON) rides along with each bank's round request, for the bank to check what it
    contributes to; ``content(node, round)`` gives the rest of a message's content (a ``RecordDict``
    or None); ``metrics`` collects the banks' fit metrics by bank id. ``report`` receives the
    contributors (node ids), dropouts, refused banks (``misbehaving``), error replies (``errors``) and
    timings.
    """
    from secagg.paillier.roles import PaillierRoundState

    node_of = {bank: node for node, bank in banks.items()}
    outbox = coordinator.start()
    try:
        for round_name in _ROUNDS:
            start = time.perf_counter()
            messages = [_message(node_of[bank], round_name, data, group_id,
                                 content(node_of[bank], round_name) if content is not None else None, setup)
                        for bank, data in sorted(outbox.items())]
            replies = list(grid.send_and_receive(messages, timeout=timeout))
            waited = time.perf_counter()
            outbox = {}
            for reply in replies:
                node = int(reply.metadata.src_node_id)
                if not readable_reply(reply, node in banks, round_name, report):
                    continue
                bank = banks[node]
                try:
                    data = message_bytes(reply.content.config_records.get(PAILLIER_RECORD_KEY), round_name, node)
                    outbox = coordinator.receive(bank, data) or outbox
                except ProtocolViolation as exc:
                    logger.warning("round %s: refused the reply of node %s: %s", round_name, node, exc)
                    report.failures.append(f"{round_name}: node {node}: {exc}")
                    continue
                if round_name == "contribution" and metrics is not None and \
                        PAILLIER_METRICS_KEY in reply.content.config_records:
                    metrics[bank] = dict(reply.content.config_records[PAILLIER_METRICS_KEY])
            if coordinator.state.value == round_name:
                outbox = coordinator.close_round()  # the deadline: whoever has not answered dropped out
            done = time.perf_counter()
            report.seconds[round_name] = done - start
            report.server_seconds[round_name] = done - waited
    except AbortError as exc:
        report.aborted = str(exc)
    report.misbehaving.update({node_of[b]: why for b, why in coordinator.misbehaving.items()})
    report.dropped = {name: [node_of[b] for b in ids] for name, ids in coordinator.dropped.items()}
    if report.aborted is not None:
        return None
    result = coordinator.result
    if coordinator.state is not PaillierRoundState.COMPLETED or result is None:  # pragma: no cover
        raise SessionStateError(f"round ended in state {coordinator.state.value}")
    report.survivors = sorted(node_of[b] for b in result.contributors)
    return result


def _message(node_id: int, round_name: str, payload: bytes, group_id: str, content, setup: str):
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.app.message_type import MessageType

    record: dict[str, ConfigRecordValues] = {"round": round_name, "message": payload}
    if round_name == "contribution":
        record["setup"] = setup
    content = content if content is not None else RecordDict()
    content.config_records[PAILLIER_RECORD_KEY] = ConfigRecord(record)
    return Message(content=content, dst_node_id=node_id, message_type=MessageType.TRAIN, group_id=group_id)


class _BankMod:
    def __init__(self, share, identity, verify_keys, min_contributors, corrupt_banks, ledger=None) -> None:
        from secagg.crypto.signatures import IdentityKey
        from secagg.paillier.roles import _check_identities, default_min_contributors, paillier_threat_model
        from secagg.paillier.threshold import KeyShare

        if not isinstance(share, KeyShare):
            raise ParameterError("share must be this bank's KeyShare (load_key_share)")
        if not isinstance(identity, IdentityKey):
            raise ParameterError("identity must be this bank's IdentityKey")
        public = share.public_key
        self.share, self.identity, self.public = share, identity, public
        self.verify_keys = _check_identities(public, verify_keys)
        self.floor = min_contributors if min_contributors is not None else \
            default_min_contributors(public.parties, public.threshold, corrupt_banks)
        self.corrupt_banks = corrupt_banks
        paillier_threat_model(public.parties, public.threshold, self.floor, corrupt_banks)  # refuse now
        share.check()
        self.ledger = None if ledger is None else Path(ledger)
        if self.ledger is not None:
            _read_ledger(self.ledger)  # an unreadable ledger is refused now, not at the first round

    def __call__(self, msg, ctxt, call_next):
        from flwr.app import ConfigRecord, Message, RecordDict

        if msg.metadata.message_type.split(".")[0] != "train":
            return call_next(msg, ctxt)
        record = msg.content.config_records.get(PAILLIER_RECORD_KEY)
        if record is None:
            raise _server_violation("train message without Paillier instructions: refusing to send an unencrypted "
                                    "update (the server must run SecAggPaillierWorkflow)")
        round_name = record.get("round")
        if round_name not in _ROUNDS:
            raise _server_violation(f"unknown Paillier round {round_name!r}")
        data = message_bytes(record, round_name, "server")
        state = self._state(ctxt)
        if self.ledger is not None:
            state = _merge(state, _read_ledger(self.ledger).get(self.public.fingerprint.hex(), {}))
        metrics = None
        if round_name == "contribution":
            reply, bank, session, metrics = self._contribute(msg, ctxt, call_next, record, data, state)
        else:
            session = self._session_of(data)
            bank = self._bank(session, state)
            reply = bank.handle(data)
        state.setdefault("sessions", {})[session.hex()] = {
            "contributed": sorted(bank.contributed), "decrypted": sorted(bank.decrypted),
            "encodings": {str(r): e.hex() for r, e in sorted(bank.encodings.items())}}
        ctxt.state.config_records[PAILLIER_STATE_KEY] = ConfigRecord({"rounds": json.dumps(state, sort_keys=True)})
        if self.ledger is not None:
            ledger = _read_ledger(self.ledger)
            ledger[self.public.fingerprint.hex()] = state
            tmp = self.ledger.with_name(self.ledger.name + ".tmp")
            tmp.write_text(json.dumps(ledger, sort_keys=True))
            os.replace(tmp, self.ledger)  # before the reply leaves: a crash after it cannot forget
        content = RecordDict({PAILLIER_RECORD_KEY: ConfigRecord({"round": round_name, "message": reply})})
        if metrics:
            content.config_records[PAILLIER_METRICS_KEY] = ConfigRecord(dict(metrics))
        return Message(content, reply_to=msg)

    # ------------------------------------------------------------------ rounds

    def _contribute(self, msg, ctxt, call_next, record, data: bytes, state: dict):
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import parameters_to_ndarrays

        try:
            announced = json.loads(record.get("setup") or "")
            if not isinstance(announced, dict):
                raise ValueError("not an object")
            session = bytes.fromhex(field_of(announced, "session_id", str))
            spec = paillier_spec_from_header({"paillier": announced}, self.public, self.verify_keys)
            clip = float(field_of(announced, "clip", (int, float)))
            max_weight = float(field_of(announced, "max_weight", (int, float)))
            fractional_bits = field_of(announced, "fractional_bits", int)
        except (ValueError, MalformedMessage) as exc:
            raise _server_violation(f"invalid Paillier setup: {exc}") from None
        if session != self._session_of(data):
            raise _server_violation("the setup and the round request name different sessions")
        bank = self._bank(session, state)
        request = bank.read_request(data)  # before training: a refused request costs nothing
        if request.round != spec.round:
            raise _server_violation(f"the round request is for round {request.round}, the setup for {spec.round}")
        sent = compat.recorddict_to_fitins(msg.content, keep_input=True)
        global_arrays = parameters_to_ndarrays(sent.parameters)
        digest = _model_digest(global_arrays)
        if digest in state.get("models", []):
            # the same model and fit instructions as a round this bank already contributed to: two
            # sums over different banks would expose the difference (e.g. after a claimed abort)
            raise _server_violation("this bank already contributed an update of this global model; it contributes "
                                    "once per model")
        dimension = flatten(global_arrays).size
        spec = replace(spec, meaning=_meaning(clip, max_weight, fractional_bits, session, global_arrays))
        try:
            codec = UpdateCodec(spec, dimension, max_weight=max_weight, clip=clip, fractional_bits=fractional_bits)
        except ParameterError as exc:
            raise _server_violation(f"invalid Paillier setup: {exc}") from None
        if spec.scheme.plaintexts_for(spec.values) != request.ciphertexts:
            raise _server_violation(f"the round asks for {request.ciphertexts} ciphertexts, the announced packing "
                                    f"gives {spec.scheme.plaintexts_for(spec.values)}")
        out = call_next(msg, ctxt)
        if out.has_error():
            raise SessionStateError(f"local training failed: {out.error.reason}")
        fitres = compat.recorddict_to_fitres(out.content, keep_input=True)
        local_arrays = parameters_to_ndarrays(fitres.parameters)
        if [a.shape for a in local_arrays] != [a.shape for a in global_arrays]:
            raise ParameterError("the client returned parameters shaped unlike the ones it received")
        update = flatten(local_arrays) - flatten(global_arrays)
        if int(fitres.num_examples) < 0:
            raise ParameterError(f"num_examples must be >= 0, got {fitres.num_examples}")
        weight = float(min(int(fitres.num_examples), math.floor(max_weight)))
        values = codec.encode(weight * np.clip(update, -clip, clip), weight, np.random.default_rng())
        reply = bank.contribute(request, spec.scheme.pack(values), encoding=spec.encoding)
        state["models"] = [*state.get("models", []), digest]
        return reply, bank, session, fitres.metrics

    # ------------------------------------------------------------------ state

    @staticmethod
    def _session_of(data: bytes) -> bytes:
        from secagg.paillier.messages import decode_paillier_message

        try:
            return decode_paillier_message(data).session_id
        except MalformedMessage as exc:
            exc.party = "server"
            raise

    @staticmethod
    def _state(ctxt) -> dict:
        stored = ctxt.state.config_records.get(PAILLIER_STATE_KEY)
        if stored is None:
            return {}
        try:
            state = json.loads(stored["rounds"])
            if not isinstance(state, dict):
                raise ValueError("not an object")
            return state
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionStateError(f"stored Paillier state is unreadable: {exc}") from None

    def _bank(self, session: bytes, state: dict):
        from secagg.paillier.roles import BankSession

        bank = BankSession(self.share, session, self.identity, self.verify_keys, min_contributors=self.floor,
                           corrupt_banks=self.corrupt_banks)
        rounds = state.get("sessions", {}).get(session.hex(), {})
        bank.contributed = {int(r) for r in rounds.get("contributed", [])}
        bank.decrypted = {int(r) for r in rounds.get("decrypted", [])}
        try:
            bank.encodings = {int(r): bytes.fromhex(e) for r, e in rounds.get("encodings", {}).items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise SessionStateError(f"stored Paillier state is unreadable: {exc}") from None
        return bank


def _read_ledger(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        ledger = json.loads(path.read_text())
        if not isinstance(ledger, dict):
            raise ValueError("not a JSON object")
        return ledger
    except (OSError, ValueError) as exc:
        raise ParameterError(f"the bank's ledger {path} is unreadable: {exc}") from None


def _merge(a: dict, b: dict) -> dict:
    """Union of two bank states: every model and every round either one remembers."""
    models = list(dict.fromkeys([*a.get("models", []), *b.get("models", [])]))
    sessions: dict = {}
    for state in (a, b):
        for sid, rounds in state.get("sessions", {}).items():
            merged = sessions.setdefault(sid, {"contributed": [], "decrypted": [], "encodings": {}})
            for kind in ("contributed", "decrypted"):
                merged[kind] = sorted(set(merged[kind]) | {int(r) for r in rounds.get(kind, [])})
            for round_, encoding in rounds.get("encodings", {}).items():
                if merged["encodings"].setdefault(str(round_), encoding) != encoding:
                    raise SessionStateError(f"the Context and the ledger remember two encodings for round {round_} "
                                            f"of session {sid}: refusing to guess which one this bank used")
    return {"models": models, "sessions": sessions}


def _model_digest(arrays) -> str:
    """The global model the server sent, as values, and nothing the server could vary at will: not
    the fit config (an extra, ignored config key would make the same model new), not the serialized
    tensors (another dtype or byte order of the same values would). Each array is hashed as its
    shape and its values in little-endian float64 (-0.0 read as 0.0: the same weight)."""
    import hashlib

    h = hashlib.sha256(b"secagg-flower-paillier-model/v2\x00")
    h.update(len(arrays).to_bytes(8, "little"))
    for array in arrays:
        values = np.ascontiguousarray(np.asarray(array, dtype="<f8") + 0.0)
        h.update(len(values.shape).to_bytes(8, "little") + b"".join(d.to_bytes(8, "little") for d in values.shape))
        h.update(values.tobytes())
    return h.hexdigest()


def _meaning(clip: float, max_weight: float, fractional_bits: int, session_id: bytes, arrays) -> dict:
    """What a Flower Paillier round's integers mean beyond the packing (part of the signed encoding):
    the codec's parameters and the global model the update is taken against."""
    return {"codec": {"clip": float(clip), "max_weight": float(max_weight), "fractional_bits": int(fractional_bits)},
            "session_id": session_id.hex(), "model": _model_digest(arrays)}


def make_secagg_paillier_mod(*, share, identity, verify_keys: Mapping[int, bytes], min_contributors: int | None = None,
                             corrupt_banks: int | None = None, ledger: str | os.PathLike | None = None) -> Callable:
    """A client mod that makes this Flower node a bank of :class:`SecAggPaillierWorkflow`.

    ``share``: this bank's key share (``load_key_share``); ``identity``: its Ed25519 identity;
    ``verify_keys``: every bank's public key (bank id -> 32 bytes), obtained out of band.
    ``min_contributors``: this bank decrypts no aggregate of fewer contributions (default ``c + 2``).
    ``ledger``: a file on the node's own disk where the bank also keeps the models it contributed
    for and the rounds it decrypted (per key). The Flower Context alone lives as long as the
    SuperNode's run state: a restarted SuperNode, or a new run, starts with an empty one, and a
    server could then ask for the same model again. Give a ledger in any deployment.
    """
    return _BankMod(share, identity, verify_keys, min_contributors, corrupt_banks, ledger)
