"""The protocols a network session can run, behind one small interface the drivers use.

A session is one secure aggregation: the masking protocol (``ServerSession``/``ClientSession``)
or one round of the Paillier path (``PaillierCoordinator``/``BankSession``). The network driver
moves bytes, keeps the clocks and knows nothing else about either; the adapters here say, for each
protocol, which round is open, which messages are late, and what the outcome is.

* :func:`server_run` builds the coordinator's side from a plan's spec (:class:`MaskingSpec` or
  :class:`PaillierSpec`); :func:`client_spec` parses and checks what a SESSION announces, and
  :func:`client_run` builds the client's side for the input its task prepared.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from secagg.errors import MalformedMessage, ParameterError, ProtocolViolation
from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.config import MAX_CLIENTS, SecAggConfig
from secagg.protocol.server import ServerSession, ServerState
from secagg.transport.envelope import field_of, number_of

if TYPE_CHECKING:  # imported when used: the Paillier path loads only for a Paillier round
    from secagg.paillier.threshold import ThresholdPublicKey

__all__ = ["SessionOutcome", "MaskingSpec", "PaillierSpec", "server_run", "client_spec", "client_run",
           "config_to_header", "config_from_header", "DEADLINE_OF_ROUND", "check_cohort", "session_cohort",
           "cohort_verify_keys"]

# Which Deadlines field governs each protocol round (the first round of either is the join window).
DEADLINE_OF_ROUND = {"advertise_keys": "advertise_keys", "share_keys": "share_keys", "masked_input": "masked_input",
                     "consistency_check": "consistency_check", "unmasking": "unmasking",
                     "contribution": "advertise_keys", "decryption": "unmasking"}


@dataclass(frozen=True)
class SessionOutcome:
    """What a finished session gave the coordinator."""

    aggregate: np.ndarray | list[int] | None  # masking: ring vector; Paillier: plaintext integers
    survivors: list[int]  # clients whose input is in the aggregate
    dropped: dict[str, list[int]]
    aborted: str | None
    misbehaving: dict[int, str] = field(default_factory=dict)  # refused messages (bad proof, signature)
    refused: dict[int, str] = field(default_factory=dict)  # clients that refused the session, and why


class ServerRun(Protocol):
    """The coordinator side of one session (either protocol), as :func:`server_run` gives it to the
    driver: every client id it takes and gives is the client's own."""

    @property
    def round(self) -> str: ...
    @property
    def joining(self) -> bool: ...
    @property
    def finished(self) -> bool: ...
    @property
    def threshold(self) -> int: ...
    @property
    def expected_clients(self) -> frozenset[int]: ...
    @property
    def pending_clients(self) -> frozenset[int]: ...
    def opening(self) -> dict[int, bytes]: ...
    def receive(self, client: int, data: bytes) -> dict[int, bytes]: ...
    def close_round(self) -> dict[int, bytes]: ...
    def abort(self, reason: str) -> dict[int, bytes]: ...
    def is_late(self, data: bytes) -> bool: ...
    def outcome(self, aborted: str | None) -> SessionOutcome: ...


class ClientRun(Protocol):
    """A client's side of one session (either protocol), as :func:`client_run` gives it to the driver."""

    def start(self) -> bytes | None: ...
    def handle(self, data: bytes) -> bytes | None: ...
    @property
    def contributed(self) -> bool: ...


# ----------------------------------------------------------------------------- masking

def config_to_header(config: SecAggConfig) -> dict:
    return {"num_clients": config.num_clients, "threshold": config.threshold,
            "vector_length": config.vector_length, "modulus_bits": config.modulus_bits,
            "neighbors": config.neighbors, "malicious": config.malicious,
            "corrupt_clients": config.threat_model.corrupt_clients if config.threat_model else None,
            "dropout_fraction": config.dropout_fraction}


def config_from_header(header: dict) -> SecAggConfig:
    """The SecAgg config in a SESSION header; :class:`ProtocolViolation` (party "server") if invalid.

    The bounds are checked again here, by the client: a coordinator cannot send parameters its own
    declared threat model (or, with none declared, no corrupt client at all) refuses."""
    raw = field_of(header, "config", dict)
    try:
        values = {name: field_of(raw, name, int) for name in ("num_clients", "threshold", "vector_length",
                                                               "modulus_bits")}
        values["neighbors"] = field_of(raw, "neighbors", int, optional=True)
        values["malicious"] = field_of(raw, "malicious", bool)
        values["corrupt_clients"] = field_of(raw, "corrupt_clients", int, optional=True)
        values["dropout_fraction"] = number_of(raw, "dropout_fraction", optional=True) or 0.0
        return SecAggConfig(**values)
    except (ParameterError, MalformedMessage) as exc:
        raise ProtocolViolation(f"coordinator sent an invalid configuration: {exc}", party="server") from None


@dataclass(frozen=True)
class MaskingSpec:
    """A masking session: its config (and, in malicious mode, every client's Ed25519 key)."""

    config: SecAggConfig
    verify_keys: Mapping[int, bytes] | None = None
    name = "masking"

    def header(self) -> dict:
        return {"protocol": "masking", "config": config_to_header(self.config)}


_ROUND_ORDER = ["advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking"]
_ROUND_OF_MESSAGE = {1: "advertise_keys", 3: "share_keys", 5: "masked_input", 7: "consistency_check",
                     9: "unmasking"}  # by MessageType value


class _MaskingServerRun:
    def __init__(self, spec: MaskingSpec, session_id: bytes) -> None:
        self.spec = spec
        self.session = ServerSession(spec.config, session_id,
                                     verify_keys=spec.verify_keys if spec.config.malicious else None)

    @property
    def round(self) -> str:
        return self.session.state.value

    @property
    def joining(self) -> bool:
        return self.session.state is ServerState.ADVERTISE_KEYS

    @property
    def finished(self) -> bool:
        return self.session.state in (ServerState.COMPLETED, ServerState.ABORTED)

    @property
    def threshold(self) -> int:
        """Clients that must answer the first round before it may close early: t + 1 (each needs t others)."""
        return self.spec.config.threshold + 1

    expected_clients = property(lambda self: self.session.expected_clients)
    pending_clients = property(lambda self: self.session.pending_clients)

    def opening(self) -> dict[int, bytes]:
        return {}

    def receive(self, client: int, data: bytes) -> dict[int, bytes]:
        return self.session.receive(client, data)

    def close_round(self) -> dict[int, bytes]:
        return self.session.close_round()

    def abort(self, reason: str) -> dict[int, bytes]:
        return self.session.abort(reason)

    def is_late(self, data: bytes) -> bool:
        """A well-framed client message for a round that has closed (a slow client, not a cheat)."""
        if len(data) < 6 or data[:4] != b"SAGG" or self.round not in _ROUND_ORDER:
            return False
        round_of_message = _ROUND_OF_MESSAGE.get(data[5])
        return round_of_message is not None and _ROUND_ORDER.index(round_of_message) < _ROUND_ORDER.index(self.round)

    def outcome(self, aborted: str | None) -> SessionOutcome:
        result = self.session.result
        if aborted is None and self.session.state is ServerState.ABORTED:
            aborted = self.session.abort_reason
        if result is None or aborted:
            return SessionOutcome(None, [], self.session.dropped, aborted or "no result")
        return SessionOutcome(result.aggregate, list(result.survivors), self.session.dropped, None,
                              dict(result.misbehaving))


class _MaskingClientRun:
    def __init__(self, spec: MaskingSpec, client_id: int, session_id: bytes, vector, identity,
                 min_survivors: int = 1) -> None:
        config = spec.config
        if min_survivors > config.num_clients:
            raise ProtocolViolation(f"coordinator announced a session of {config.num_clients} clients; this client "
                                    f"contributes to no sum of fewer than {min_survivors}", party="server")
        try:
            self.session = ClientSession(config, client_id, session_id, vector,
                                         identity=identity if config.malicious else None,
                                         verify_keys=spec.verify_keys if config.malicious else None,
                                         min_survivors=min_survivors)
        except ParameterError as exc:
            if "min_survivors" not in str(exc):
                raise
            raise ProtocolViolation(f"coordinator announced a session that cannot keep this client's minimum sum: "
                                    f"{exc}", party="server") from None

    def start(self) -> bytes | None:
        return self.session.start()

    def handle(self, data: bytes) -> bytes | None:
        return self.session.handle(data)

    @property
    def contributed(self) -> bool:
        """The masked input has gone out: this input must never enter another sum."""
        return self.session.state in (ClientState.AWAIT_CONSISTENCY_REQUEST, ClientState.AWAIT_UNMASK_REQUEST,
                                      ClientState.DONE)


# ----------------------------------------------------------------------------- Paillier

@dataclass(frozen=True)
class PaillierSpec:
    """One Paillier round: the public parameters, the banks' identities, the packing of the
    values each bank contributes and the fewest contributions to decrypt."""

    public: ThresholdPublicKey
    verify_keys: Mapping[int, bytes]
    values: int  # integers per contribution (packed into ciphertexts)
    value_bound: int  # |value| <= value_bound
    max_summands: int
    min_contributors: int
    round: int = 1
    # What else the integers mean, beyond the packing: the codec's parameters, or (network mode)
    # the digest of the whole announcement the bank accepted. Part of :attr:`encoding`.
    meaning: Mapping = field(default_factory=dict)
    name = "paillier"

    @property
    def encoding(self) -> bytes:
        """The digest every bank signs its contribution over (:func:`secagg.paillier.roles.encoding_digest`):
        banks told different packings, codecs or announcements can never be decrypted together."""
        from secagg.paillier.roles import encoding_digest

        return encoding_digest({"fingerprint": self.public.fingerprint.hex(), "values": self.values,
                                "value_bound": self.value_bound, "max_summands": self.max_summands,
                                "min_contributors": self.min_contributors, "round": self.round,
                                "meaning": dict(self.meaning)})

    @property
    def scheme(self):
        from secagg.paillier import PackingScheme

        return PackingScheme(self.public.key_bits, self.value_bound, self.max_summands)

    def header(self) -> dict:
        return {"protocol": "paillier", "paillier": {
            "fingerprint": self.public.fingerprint.hex(), "values": self.values, "value_bound": self.value_bound,
            "max_summands": self.max_summands, "min_contributors": self.min_contributors, "round": self.round}}


class _PaillierServerRun:
    def __init__(self, spec: PaillierSpec, session_id: bytes, cohort: tuple[int, ...], mapper=None) -> None:
        from secagg.paillier.roles import PaillierCoordinator

        self.spec = spec
        self.coordinator = PaillierCoordinator(spec.public, session_id, spec.verify_keys, round=spec.round,
                                               ciphertexts=spec.scheme.plaintexts_for(spec.values),
                                               min_contributors=spec.min_contributors, encoding=spec.encoding,
                                               banks=cohort, mapper=mapper)

    @property
    def round(self) -> str:
        return self.coordinator.state.value

    @property
    def joining(self) -> bool:
        return self.round == "contribution"

    @property
    def finished(self) -> bool:
        return self.round in ("completed", "aborted")

    @property
    def threshold(self) -> int:
        return self.spec.min_contributors

    expected_clients = property(lambda self: self.coordinator.expected_clients)
    pending_clients = property(lambda self: self.coordinator.pending_clients)

    def opening(self) -> dict[int, bytes]:
        return self.coordinator.start()

    def receive(self, client: int, data: bytes) -> dict[int, bytes]:
        return self.coordinator.receive(client, data)

    def close_round(self) -> dict[int, bytes]:
        return self.coordinator.close_round()

    def abort(self, reason: str) -> dict[int, bytes]:
        return self.coordinator.abort(reason)

    def is_late(self, data: bytes) -> bool:
        # a contribution arriving in the decryption round; partials after completion never arrive here
        return len(data) >= 6 and data[:4] == b"SAGP" and data[5] == 2 and self.round == "decryption"

    def outcome(self, aborted: str | None) -> SessionOutcome:
        c = self.coordinator
        if aborted is None and c.abort_reason is not None:
            aborted = c.abort_reason
        if c.result is None or aborted:
            return SessionOutcome(None, [], dict(c.dropped), aborted or "no result", dict(c.misbehaving))
        return SessionOutcome(c.result.plaintexts, list(c.result.contributors), dict(c.dropped), None,
                              dict(c.result.misbehaving))


def paillier_spec_from_header(header: dict, public, verify_keys) -> PaillierSpec:
    """The Paillier round a SESSION announces, checked against this bank's own key (its fingerprint)."""
    raw = field_of(header, "paillier", dict)
    try:
        fingerprint = bytes.fromhex(field_of(raw, "fingerprint", str))
        values = {name: field_of(raw, name, int) for name in ("values", "value_bound", "max_summands",
                                                               "min_contributors", "round")}
    except (MalformedMessage, ValueError) as exc:
        raise ProtocolViolation(f"coordinator sent an invalid Paillier round: {exc}", party="server") from None
    if fingerprint != public.fingerprint:
        raise ProtocolViolation("coordinator announces another Paillier key (fingerprint mismatch)", party="server")
    try:
        spec = PaillierSpec(public, verify_keys, **values)
        spec.scheme  # noqa: B018 - refuse an impossible packing now
    except ParameterError as exc:
        raise ProtocolViolation(f"coordinator sent an invalid Paillier round: {exc}", party="server") from None
    if not 1 <= spec.values <= 1 << 28:
        raise ProtocolViolation(f"coordinator asks for {spec.values} values", party="server")
    return spec


class _PaillierClientRun:
    """A bank's side of one Paillier round: the BankSession decides everything security-relevant;
    this adapter packs and encrypts the values the task prepared."""

    def __init__(self, spec: PaillierSpec, share, session_id: bytes, values: np.ndarray, identity,
                 floor: int) -> None:
        from secagg.paillier.roles import BankSession

        self.spec = spec
        self.bank = BankSession(share, session_id, identity, spec.verify_keys, min_contributors=floor)
        values = np.asarray(values)
        if values.ndim != 1 or values.size != spec.values or values.dtype.kind not in "iu":
            raise ParameterError(f"the task prepared {values.size} values, the round takes {spec.values} integers")
        self.values = values
        self.encoding = spec.encoding
        self.sent = False

    def start(self) -> bytes | None:
        return None  # the coordinator speaks first (its RoundRequest)

    def handle(self, data: bytes) -> bytes | None:
        from secagg.paillier.messages import PaillierMessageType

        if len(data) >= 6 and data[:4] == b"SAGP" and data[5] == PaillierMessageType.ROUND_REQUEST:
            request = self.bank.read_request(data)
            if self.sent or request.round != self.spec.round:
                # one input, one round: the same update in two rounds of different contributors
                # would give the coordinator their difference
                raise ProtocolViolation(f"a RoundRequest for round {request.round}: this session announced round "
                                        f"{self.spec.round}, and this bank's input goes into one round only",
                                        party="server")
            plaintexts = self.spec.scheme.pack(self.values)
            if len(plaintexts) != request.ciphertexts:
                raise ProtocolViolation(f"the round asks for {request.ciphertexts} ciphertexts, the announced packing "
                                        f"gives {len(plaintexts)}", party="server")
            reply = self.bank.contribute(request, plaintexts, encoding=self.encoding)
            self.sent = True
            return reply
        if len(data) >= 6 and data[:4] == b"SAGP" and data[5] == PaillierMessageType.DECRYPTION_REQUEST:
            from secagg.paillier.messages import DecryptionRequest, decode_paillier_message

            try:
                decoded = decode_paillier_message(data)
            except MalformedMessage as exc:
                exc.party = "server"
                raise
            if not isinstance(decoded, DecryptionRequest):  # its type byte says it is: typed anyway
                raise MalformedMessage(f"a {type(decoded).__name__} sent as a DecryptionRequest", party="server")
            round_ = decoded.round
            if round_ != self.spec.round:
                raise ProtocolViolation(f"a DecryptionRequest for round {round_}: this session announced round "
                                        f"{self.spec.round} only", party="server")
        return self.bank.handle(data)

    @property
    def contributed(self) -> bool:
        return self.sent


# ----------------------------------------------------------------------------- cohorts

def check_cohort(cohort, num_clients: int, spec=None) -> tuple[int, ...]:
    """``cohort`` as a sorted tuple of distinct client ids in ``0..num_clients-1`` (the clients a
    session is for); a masking session's config must be for exactly that many clients.
    :class:`ParameterError` otherwise."""
    try:
        ids = tuple(sorted(int(c) for c in cohort))
    except (TypeError, ValueError):
        raise ParameterError(f"a cohort is a collection of client ids, got {cohort!r}") from None
    if any(isinstance(c, bool) for c in cohort) or len(set(ids)) != len(ids) or not ids \
            or not all(0 <= c < num_clients for c in ids):
        raise ParameterError(f"a cohort is a non-empty set of distinct client ids in 0..{num_clients - 1}, got "
                             f"{list(cohort)[:20]}")
    if isinstance(spec, MaskingSpec) and spec.config.num_clients != len(ids):
        raise ParameterError(f"the session is configured for {spec.config.num_clients} clients, its cohort has "
                             f"{len(ids)}")
    return ids


def session_cohort(header: Mapping, client_id: int, num_clients: int | None = None) -> tuple[tuple[int, ...], int]:
    """The cohort a SESSION announces and this client's place in it (its id inside a masking
    session); :class:`ProtocolViolation` (party "server") if the cohort is invalid or leaves this
    client out (a coordinator announces a session only to its cohort).

    Every id must be one the coordinator can admit: below ``num_clients`` when this client knows
    the job's size, else below :data:`~secagg.protocol.config.MAX_CLIENTS` (no coordinator admits
    more). An id no client can hold (10**30, or the job's size) would otherwise pass as a cohort
    member that never comes, and every later check would work on a cohort the coordinator made up."""
    try:
        raw = field_of(dict(header), "cohort", list)
    except MalformedMessage as exc:
        raise ProtocolViolation(f"coordinator sent an invalid announcement: {exc}", party="server") from None
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in raw):
        raise ProtocolViolation("coordinator announced a cohort of non-integer ids", party="server")
    try:
        cohort = check_cohort(raw, num_clients if num_clients is not None else MAX_CLIENTS)
    except ParameterError as exc:
        raise ProtocolViolation(f"coordinator announced an invalid cohort: {exc}", party="server") from None
    if list(cohort) != raw:
        raise ProtocolViolation("coordinator announced a cohort that is not sorted", party="server")
    if client_id not in cohort:
        raise ProtocolViolation(f"coordinator announced a session to client {client_id}, outside its cohort",
                                party="server")
    return cohort, cohort.index(client_id)


def cohort_verify_keys(verify_keys: Mapping[int, bytes] | None, cohort: tuple[int, ...]):
    """Every cohort member's verify key, re-keyed by its id inside the masking session."""
    if verify_keys is None:
        return None
    missing = [c for c in cohort if c not in verify_keys]
    if missing:
        raise ParameterError(f"no verify key for clients {missing[:10]}")
    return {i: verify_keys[c] for i, c in enumerate(cohort)}


class _CohortServerRun:
    """A masking session among a cohort: the session numbers its clients ``0..k-1``; outside, every
    id is the client's own (its network id), so the driver never sees the session's numbering."""

    def __init__(self, inner: _MaskingServerRun, cohort: tuple[int, ...]) -> None:
        self.inner, self.cohort = inner, cohort
        self.index = {c: i for i, c in enumerate(cohort)}

    round = property(lambda self: self.inner.round)
    joining = property(lambda self: self.inner.joining)
    finished = property(lambda self: self.inner.finished)
    threshold = property(lambda self: self.inner.threshold)
    expected_clients = property(lambda self: frozenset(self.cohort[i] for i in self.inner.expected_clients))
    pending_clients = property(lambda self: frozenset(self.cohort[i] for i in self.inner.pending_clients))

    def _out(self, outbox: Mapping[int, bytes]) -> dict[int, bytes]:
        return {self.cohort[i]: data for i, data in outbox.items()}

    def opening(self) -> dict[int, bytes]:
        return self._out(self.inner.opening())

    def receive(self, client: int, data: bytes) -> dict[int, bytes]:
        if client not in self.index:
            raise ProtocolViolation(f"client {client} is not in this session's cohort", party=client)
        return self._out(self.inner.receive(self.index[client], data))

    def close_round(self) -> dict[int, bytes]:
        return self._out(self.inner.close_round())

    def abort(self, reason: str) -> dict[int, bytes]:
        return self._out(self.inner.abort(reason))

    def is_late(self, data: bytes) -> bool:
        return self.inner.is_late(data)

    def outcome(self, aborted: str | None) -> SessionOutcome:
        inner = self.inner.outcome(aborted)
        return replace(inner, survivors=[self.cohort[i] for i in inner.survivors],
                       dropped={name: [self.cohort[i] for i in ids] for name, ids in inner.dropped.items()},
                       misbehaving={self.cohort[i]: why for i, why in inner.misbehaving.items()})


# ----------------------------------------------------------------------------- factories

def server_run(spec: MaskingSpec | PaillierSpec, session_id: bytes, cohort: tuple[int, ...], *,
               mapper=None) -> ServerRun:
    """The coordinator side of a session for ``spec`` (MaskingSpec or PaillierSpec) among
    ``cohort`` (client ids, sorted); every id it takes and gives is a client's own."""
    if isinstance(spec, MaskingSpec):
        keys = cohort_verify_keys(spec.verify_keys, cohort) if spec.config.malicious else None
        return _CohortServerRun(_MaskingServerRun(MaskingSpec(spec.config, keys), session_id), cohort)
    if isinstance(spec, PaillierSpec):
        return _PaillierServerRun(spec, session_id, cohort, mapper)
    raise ParameterError(f"unknown session protocol {type(spec).__name__}")


def announcement_digest(header: Mapping, blob: bytes) -> str:
    """Hex digest of a whole SESSION announcement (its header, canonically, and its blob): the
    ``meaning`` of a network Paillier round, so that every contribution is signed over everything
    its bank was told (packing, training settings, global model)."""
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(b"secagg/announcement\x00" + len(canonical).to_bytes(8, "little") + canonical
                          + bytes(blob)).hexdigest()


def client_spec(header: dict, *, verify_keys=None, paillier=None, blob: bytes = b"",
                cohort: tuple[int, ...] | None = None) -> MaskingSpec | PaillierSpec:
    """The session a SESSION header announces, as this client checks it: a MaskingSpec (its
    SecAggConfig, bounds checked, for exactly the announced ``cohort``; verify keys re-keyed by the
    session's numbering) or a PaillierSpec (checked against this bank's own key, its ``meaning``
    the digest of the whole announcement, ``header`` and ``blob``).
    ``paillier`` is the bank's ``(public key, key share, floor)``; ProtocolViolation if invalid."""
    protocol = field_of(header, "protocol", str, optional=True) or "masking"
    if protocol == "masking":
        config = config_from_header(header)
        if cohort is None:
            return MaskingSpec(config, verify_keys)
        if config.num_clients != len(cohort):
            raise ProtocolViolation(f"coordinator configured a session of {config.num_clients} clients for a cohort "
                                    f"of {len(cohort)}", party="server")
        try:
            keys = cohort_verify_keys(verify_keys, cohort)
        except ParameterError as exc:
            raise ProtocolViolation(f"coordinator announced a cohort this client has no keys for: {exc}",
                                    party="server") from None
        return MaskingSpec(config, keys)
    if protocol == "paillier":
        if paillier is None:
            raise ProtocolViolation("coordinator runs the Paillier path; this client has no key share", party="server")
        spec = paillier_spec_from_header(header, paillier[0], verify_keys)
        return replace(spec, meaning={"announcement": announcement_digest(header, blob)})
    raise ProtocolViolation(f"coordinator runs an unknown protocol {protocol!r}", party="server")


def client_run(spec: MaskingSpec | PaillierSpec, client_id: int, session_id: bytes, prepared, *, identity=None,
               paillier=None, min_sum: int = 1) -> ClientRun:
    """The client side of ``spec``'s session for the input the task ``prepared``. ``min_sum``: the
    fewest inputs of a sum this client helps produce (a masking client reveals no shares for a
    shorter survivor list; a bank decrypts no aggregate of fewer contributions)."""
    if isinstance(spec, MaskingSpec):
        return _MaskingClientRun(spec, client_id, session_id, prepared, identity, min_sum)
    _, share, floor = paillier
    return _PaillierClientRun(spec, share, session_id, prepared, identity, max(floor, min_sum))
