"""Network driver: a coordinator process and client processes over gRPC, TLS on by default.

The protocol stays in the sans-IO sessions (:class:`~secagg.protocol.ServerSession`,
:class:`~secagg.protocol.ClientSession`); this module only moves their canonical bytes, wrapped in
:mod:`secagg.transport.envelope`, over one bidirectional gRPC stream per client (kept across sessions), and
owns the clocks: each round closes when every expected message arrived, when every client still
pending has disconnected, or at its deadline. Whoever did not answer is a dropout.

No protobuf: the service ``secagg.v1.Coordinator/Session`` carries raw bytes both ways.

Coordinator threads: the gRPC side runs on a private asyncio event loop (``grpc.aio``): one
coroutine per client stream, no thread per stream, so silent or slow streams cost memory only and
never an honest client's place. Streams only enqueue events. A single driver thread
(:meth:`Coordinator.serve`) owns the session adapter and consumes the events, so the protocol
state needs no locks; it hands messages back with thread-safe calls onto the loop.

No lock-out: under mutual TLS a stream is identified by its certificate before it says anything;
an unknown certificate, or a second stream of a client that already has one, is refused at once,
so a peer with one valid certificate holds one slot, its own. Without mutual TLS at most
``4n + 64`` streams may wait for their hello (5 s each); identified streams are one per client id.
Refusals are counted in :attr:`Coordinator.security_events` and logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from secagg.errors import (
    AbortError,
    MalformedMessage,
    ParameterError,
    ProtocolViolation,
    SecAggError,
    SessionStateError,
)
from secagg.protocol.bounds import log2_smaller_sum, privacy_failure
from secagg.protocol.config import MAX_CLIENTS, SecAggConfig
from secagg.protocol.messages import SESSION_ID_BYTES
from secagg.transport.certs import client_common_name
from secagg.transport.envelope import Envelope, Kind, decode_envelope, field_of
from secagg.transport.journal import JournaledSession, SessionJournal
from secagg.transport.sessions import (
    DEADLINE_OF_ROUND,
    ClientRun,
    MaskingSpec,
    PaillierSpec,
    ServerRun,
    SessionOutcome,
    announcement_digest,
    check_cohort,
    client_run,
    client_spec,
    config_from_header,
    config_to_header,
    server_run,
    session_cohort,
)
from secagg.transport.simulator import warm_up

__all__ = ["TLSConfig", "Deadlines", "RetryPolicy", "SessionPlan", "CoordinatorTask", "ClientTask", "ClientPolicy",
           "Coordinator", "NetworkClient", "NetworkError", "config_to_header", "config_from_header"]

log = logging.getLogger("secagg.net")
# HTTP/2 pings every 20 s on idle streams (both sides): a peer whose path died silently is noticed
# within half a minute, without a deadline on the long-lived stream itself.
_KEEPALIVE = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000),
              ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
SERVICE_METHOD = "/secagg.v1.Coordinator/Session"
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "CANCELLED",
              "UNKNOWN", "INTERNAL", "ABORTED")


class NetworkError(SecAggError):
    """The network driver cannot go on: the coordinator refused us, or stayed unreachable."""


def _grpc():
    try:
        import grpc
    except ImportError:  # pragma: no cover - depends on the installation
        raise ParameterError("the network mode needs grpcio: pip install 'secagg[net]'") from None
    return grpc


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TLSConfig:
    """Certificates of one side. ``insecure=True`` sends everything in clear text (local trials only).

    Coordinator: ``cert``/``key`` its certificate; ``ca`` set means mutual TLS (clients must
    present certificates signed by it). Client: ``ca`` verifies the coordinator; ``cert``/``key``
    are its own certificate for mutual TLS.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    server_name: str | None = None  # client side: expected name in the coordinator's certificate

    def __post_init__(self) -> None:
        if self.insecure and (self.ca or self.cert or self.key):
            raise ParameterError("insecure mode takes no certificates")
        if bool(self.cert) != bool(self.key):
            raise ParameterError("a certificate needs its key and a key its certificate")
        for path in (self.ca, self.cert, self.key):
            if path and not Path(path).is_file():
                raise ParameterError(f"certificate file {path} does not exist")

    @property
    def mutual(self) -> bool:
        return bool(self.ca) and not self.insecure

    def server_credentials(self):
        grpc = _grpc()
        if not (self.cert and self.key):
            raise ParameterError("the coordinator needs --cert and --key (or --insecure for local trials)")
        ca = Path(self.ca).read_bytes() if self.ca else None
        return grpc.ssl_server_credentials([(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
                                           root_certificates=ca, require_client_auth=ca is not None)

    def channel_credentials(self):
        grpc = _grpc()
        if not self.ca:
            raise ParameterError("the client needs --ca to verify the coordinator (or --insecure for local trials)")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes() if self.key else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert else None)


@dataclass(frozen=True)
class Deadlines:
    """Seconds each protocol round may stay open. ``advertise_keys`` is also the join window and
    covers the clients' local work (FedAvg training) before they send their keys."""

    advertise_keys: float = 120.0
    share_keys: float = 60.0
    masked_input: float = 60.0
    consistency_check: float = 60.0
    unmasking: float = 60.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (isinstance(value, (int, float)) and 0 < value <= 86_400):
                raise ParameterError(f"deadline {name} must be in (0, 86400] seconds, got {value!r}")

    def for_round(self, round_name: str) -> float:
        """The deadline of a protocol round (Paillier's contribution round uses ``advertise_keys``,
        its decryption round ``unmasking``)."""
        return float(getattr(self, DEADLINE_OF_ROUND[getattr(round_name, "value", round_name)]))


@dataclass(frozen=True)
class RetryPolicy:
    """Client reconnection: exponential backoff with jitter, giving up after ``give_up_after``
    seconds without progress."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    give_up_after: float = 120.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.multiplier >= 1 and self.give_up_after > 0):
            raise ParameterError("retry policy needs 0 < initial <= maximum, multiplier >= 1, give_up_after > 0")


# ----------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class SessionPlan:
    """One secure-aggregation session the coordinator runs: its protocol and what clients need.

    ``spec`` is a :class:`~secagg.transport.sessions.MaskingSpec` or
    :class:`~secagg.transport.sessions.PaillierSpec`; a bare :class:`SecAggConfig` means a
    masking session (with the coordinator's ``verify_keys`` in malicious mode).
    """

    spec: MaskingSpec | PaillierSpec  # (a SecAggConfig given here becomes its MaskingSpec)
    header: dict = field(default_factory=dict)  # task parameters sent to clients (JSON-able)
    blob: bytes = b""  # e.g. the global model (float64) of a FedAvg round
    # the clients the session is for (a FedAvg round's sample); None: every client. A masking
    # session's config is for exactly this many clients, numbered by their order here.
    cohort: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.spec, SecAggConfig):
            object.__setattr__(self, "spec", MaskingSpec(self.spec))
        if not isinstance(self.spec, (MaskingSpec, PaillierSpec)):
            raise ParameterError("a session plan needs a SecAggConfig, a MaskingSpec or a PaillierSpec")
        if self.cohort is not None:
            object.__setattr__(self, "cohort", check_cohort(self.cohort, max(self.cohort, default=0) + 1, self.spec))

    @property
    def config(self) -> SecAggConfig | None:
        """The masking config (None for a Paillier round)."""
        return self.spec.config if isinstance(self.spec, MaskingSpec) else None


class CoordinatorTask(Protocol):
    """What the coordinator aggregates for: one session (a sum) or many (FedAvg rounds)."""

    name: str

    def next_session(self) -> SessionPlan | None:
        """The next session to run, or None when the job is finished."""

    def finish_session(self, plan: SessionPlan, aggregate: np.ndarray | list[int] | None, survivors: list[int],
                       dropped: Mapping[str, list[int]], aborted: str | None, seconds: float, *,
                       misbehaving: Mapping[int, str], refused: Mapping[int, str]) -> bool:
        """Consume one session's outcome; True when that was the job's last session.

        ``aggregate`` is None when the session aborted; otherwise the ring vector of a masking
        session, or the plaintext sums of a Paillier round (one integer per packed plaintext).
        ``misbehaving`` names the clients whose messages were refused (bad proof, bad signature);
        ``refused`` the clients that refused the session themselves, with their reason (a
        parameter they did not agree to, a model they cannot train)."""


class ClientTask(Protocol):
    """The client's side of a task: turns a SESSION into this client's input."""

    name: str

    def prepare(self, spec, header: dict, blob: bytes) -> np.ndarray | None:
        """This client's input for the session announced with ``spec`` (after local training, for
        FedAvg): for a :class:`MaskingSpec`, a vector of ``spec.config``'s ring; for a
        :class:`PaillierSpec`, ``spec.values`` signed integers of magnitude up to
        ``spec.value_bound``. None sits the session out (e.g. this input was already in a sum)."""

    def contributed(self, header: dict) -> None:
        """This client's input has gone out in the session announced by ``header``."""

    # Optional: ``min_sum``, the fewest inputs of a sum this client's input may go into (e.g.
    # DP's min_shares); enforced by the client's protocol session, whatever the coordinator says.

    # Optional, for a client whose state outlives its process: ``taken_sessions()``, a mapping of
    # the session ids (hex) this client took before to the digest of the announcement it took
    # (read once, when the NetworkClient is built), and ``session_taken(session_id, digest)``,
    # called before the client answers a new session: it must persist the pair (atomically)
    # before returning. A restarted client then refuses a session id it took before under another
    # announcement, and declines the same announcement (it holds none of that session's state).

    def session_ended(self, header: dict) -> None:
        """The coordinator closed the session (header: included, aborted, final)."""


# ----------------------------------------------------------------------------- coordinator

MAX_IN_FLIGHT = 8  # unprocessed messages one client may have queued before it is cut off
HEARTBEATS_MISSED = 3  # a peer silent for this many heartbeat intervals is gone
DEFAULT_HEARTBEAT = 5.0  # seconds; a client assumes it until the coordinator announces its own
#: Named points of a session where fault injection may stop the coordinator
#: (``python -m secagg.transport.faults --kill-coordinator-at POINT``): the SESSION envelopes went
#: out; a round closed (the next round's messages not yet delivered: ``masked_input_closed`` means
#: the survivors' masked inputs are out); the task recorded the outcome (FedAvg: the state is saved).
CHECKPOINTS = ("session_started", "advertise_keys_closed", "share_keys_closed", "masked_input_closed",
               "consistency_check_closed", "unmasking_closed", "contribution_closed", "decryption_closed",
               "session_recorded")


class _Peer:
    """One connected client stream. Its outbox lives on the gRPC event loop; the driver thread
    hands it messages with :meth:`send` (thread-safe)."""

    def __init__(self, client_id: int, loop) -> None:
        import asyncio

        self.client_id = client_id
        self.loop = loop
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.session: int | None = None  # index of the session it received
        self.closed = threading.Event()
        self.expelled = False  # whatever it still sends is ignored
        self.in_flight = 0  # messages queued for the driver and not yet handled
        self.lock = threading.Lock()
        self.last_seen = time.monotonic()  # anything from it, heartbeats included
        self.silent = False  # cut off for missing heartbeats

    def _put(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # the event loop has stopped: the stream is gone anyway
            pass

    def send(self, envelope: Envelope) -> None:
        if not self.closed.is_set():
            self._put(envelope.encode())

    def close(self) -> None:
        self.closed.set()
        self._put(None)


@dataclass
class _Run:
    index: int
    plan: SessionPlan
    server: ServerRun
    session_envelope: Envelope
    opening: dict[int, bytes] = field(default_factory=dict)  # first protocol messages (Paillier requests)
    cohort: frozenset[int] = frozenset()  # the clients this session is for
    members: set[int] = field(default_factory=set)  # clients that received the SESSION envelope
    gone: set[int] = field(default_factory=set)  # members whose stream ended or who were expelled
    expelled: set[int] = field(default_factory=set)
    silent: set[int] = field(default_factory=set)  # cut off for missing heartbeats (frozen, or a dead path)
    declined: set[int] = field(default_factory=set)  # connected, but sitting this session out
    refused: dict[int, str] = field(default_factory=dict)  # clients that refused the session, and why
    heard: set[int] = field(default_factory=set)  # clients whose messages the session accepted
    last_activity: float = field(default_factory=time.monotonic)  # last join or message (first round)
    session_id: bytes = b""
    # the last protocol message the session produced for each client: resent when it reconnects
    last_delivered: dict[int, bytes] = field(default_factory=dict)
    digests: set[bytes] = field(default_factory=set)  # (client, message) accepted: a resend is dropped


class Coordinator:
    """The coordinator process: accepts ``num_clients`` client ids (0..n-1) and runs ``task``.

    ``address`` like ``"127.0.0.1:0"`` (0 picks a free port; see :attr:`port`). ``roster`` maps
    certificate common names to client ids under mutual TLS (default ``client-<id>``).
    ``max_message_bytes`` bounds every incoming message (gRPC refuses larger ones).
    ``join_grace``: from the second session on, the first round closes once every connected client
    has sent its keys (at least t) and nobody joined or answered for this many seconds.
    ``join_quorum``: the first round closes as soon as this many clients have
    sent their keys, without waiting out the join window for the rest (never fewer than t + 1:
    each client needs t others; on the Paillier path never fewer than ``min_contributors``); None
    waits for all n. ``mapper`` (a process pool's ``map``) spreads the coordinator's checks of the
    Paillier decryption proofs over its cores. ``heartbeat``: seconds between HEARTBEATs both ways; a
    client silent for three of them (a frozen process, a dead path) is dropped, and it drops a
    coordinator silent as long. ``journal``: a file where the session in progress is journaled; a
    coordinator restarted on it resumes that session (clients that kept their state take it up)
    instead of losing it, if the task's ``resume_plan`` accepts it.
    """

    #: Fault injection only: called as ``hook(point, session_index)`` at each of :data:`CHECKPOINTS`
    #: (``session_index`` counts this process's sessions from 0). None in normal operation.
    checkpoint_hook: ClassVar[Callable[[str, int], None] | None] = None

    def __init__(self, task: CoordinatorTask, num_clients: int, *, address: str = "127.0.0.1:0",
                 tls: TLSConfig, deadlines: Deadlines = Deadlines(), max_message_bytes: int | None = None,
                 roster: Mapping[str, int] | None = None, linger: float = 2.0,
                 verify_keys: Mapping[int, bytes] | None = None, join_grace: float = 1.0,
                 join_quorum: int | None = None, mapper: Callable | None = None,
                 heartbeat: float = DEFAULT_HEARTBEAT, journal: str | os.PathLike | None = None) -> None:
        grpc = _grpc()
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or not 2 <= num_clients <= MAX_CLIENTS:
            raise ParameterError(f"num_clients must be an int in 2..{MAX_CLIENTS}, got {num_clients!r}")
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0.5 <= heartbeat <= 600:
            raise ParameterError(f"heartbeat must be in [0.5, 600] seconds, got {heartbeat!r}")
        # Both sides send a HEARTBEAT every `heartbeat` seconds; a peer silent for HEARTBEATS_MISSED
        # of them is gone (a frozen process keeps its TCP connection, and HTTP/2 keepalive did not
        # reliably notice it: benchmarks/bench_frozen_client.py).
        self.heartbeat = float(heartbeat)
        self.silence_limit = HEARTBEATS_MISSED * self.heartbeat
        # the session in progress, journaled so that a restarted coordinator resumes it (the task
        # must offer resume_plan(): it decides whether the journaled session is still its next)
        self.journal = SessionJournal(journal) if journal is not None else None
        self.task, self.num_clients, self.tls, self.deadlines = task, num_clients, tls, deadlines
        self.linger = float(linger)
        self._past_session_ids: set[bytes] = set()  # sessions that have ended (their late messages are dropped)
        self._current_session_id: bytes | None = None
        self.hello_timeout = 5.0  # seconds a new stream may take to send its hello
        self._tarpitted = 0  # refused certificates being answered slowly (at most max_pending_streams)
        self.join_grace = float(join_grace)
        if join_quorum is not None and (isinstance(join_quorum, bool) or not isinstance(join_quorum, int)
                                        or not 1 <= join_quorum <= num_clients):
            raise ParameterError(f"join_quorum must be an int in [1, {num_clients}] or None, got {join_quorum!r}")
        self.join_quorum = join_quorum
        self.verify_keys = dict(verify_keys) if verify_keys is not None else None
        if roster is not None:
            ids = list(roster.values())
            if len(set(ids)) != len(ids) or any(not 0 <= i < num_clients for i in ids):
                raise ParameterError("roster must map distinct names to distinct ids in 0..num_clients-1")
        self.roster = dict(roster) if roster is not None else {client_common_name(i): i for i in range(num_clients)}
        self.max_message_bytes = int(max_message_bytes or 64 * 2**20)
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._peers: dict[int, _Peer] = {}
        self._run: _Run | None = None
        self._accepting = False  # the current session is in its advertise-keys round
        self._finished = False
        self._stopping = threading.Event()
        self.sessions_run = 0
        self.mapper = mapper  # e.g. a process pool's map: spreads the Paillier proof checks over cores
        self.outcomes: list[SessionOutcome] = []  # every session's outcome, misbehaving clients included
        # Streams that have not said who they are yet: bounded, and none of them can take an
        # identified client's place (identified streams are at most one per client id).
        self.max_pending_streams = 4 * num_clients + 64
        self._pending = 0  # touched on the event loop only
        self._pending_by_identity: dict[int, int] = {}  # mutual TLS: unidentified streams per certificate
        self.security_events: dict[str, int] = {}  # refused identities, duplicates, hello timeouts, pressure
        # clients that refused a session and have not reconnected since: a later session does not
        # hold its join window open for them (they refuse what this coordinator announces)
        self._refusers: set[int] = set()
        self._loop, self._loop_thread = _start_event_loop()
        credentials = None if tls.insecure else tls.server_credentials()
        try:
            self._server, self.port = self._call(self._make_server(address, credentials))
        except Exception:
            self._stop_loop()
            raise
        if not self.port:
            self._stop_loop()
            raise NetworkError(f"cannot listen on {address}")

    # ---------------------------------------------------------------- the event loop (gRPC side)

    def _call(self, coroutine, timeout: float | None = 30.0):
        """Run ``coroutine`` on the gRPC event loop from the driver thread; its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _make_server(self, address: str, credentials):
        grpc = _grpc()
        server = grpc.aio.server(
            handlers=[grpc.method_handlers_generic_handler("secagg.v1.Coordinator", {
                "Session": grpc.stream_stream_rpc_method_handler(self._stream)})],
            options=[("grpc.max_receive_message_length", self.max_message_bytes),
                     ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0), *_KEEPALIVE,
                     ("grpc.http2.min_ping_interval_without_data_ms", 5_000)])
        port = server.add_insecure_port(address) if credentials is None else \
            server.add_secure_port(address, credentials)
        return server, port

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(5)

    def grpc_log_line(self, line: str) -> None:
        """A line of gRPC's own log (see :func:`secagg.transport.grpc_log.watch_grpc_log`): a failed
        TLS handshake (unknown CA, bad or expired certificate, not TLS at all) is a security event."""
        from secagg.transport.grpc_log import handshake_failure

        what = handshake_failure(line)
        if what is not None:
            self._security_event("tls_handshake", "a TLS handshake failed: %s", what)

    def _security_event(self, kind: str, text: str, *args) -> None:
        self.security_events[kind] = self.security_events.get(kind, 0) + 1
        count = self.security_events[kind]
        if count <= 20 or count % 100 == 0:  # logged, but a flood cannot flood the log
            log.warning("security: " + text + (f" ({count} so far)" if count > 1 else ""), *args)

    # ---------------------------------------------------------------- gRPC side (worker threads)

    def _certificate_identity(self, context) -> tuple[str, int | None]:
        names = context.auth_context().get("x509_common_name", [])
        common_name = names[0].decode(errors="replace") if names else ""
        return common_name, self.roster.get(common_name)

    async def _identify(self, raw: bytes, context, certified: int | None) -> int:
        grpc = _grpc()
        try:
            hello = decode_envelope(raw)
            if hello.kind is not Kind.HELLO:
                raise MalformedMessage(f"the first message must be HELLO, got {hello.kind.name}")
            client = field_of(hello.header, "client", int)
            task = field_of(hello.header, "task", str)
        except MalformedMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"MalformedMessage: {exc}")
        if task != self.task.name:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this coordinator runs task {self.task.name!r}, the client asked for {task!r}")
        if not 0 <= client < self.num_clients:
            self._security_event("unknown_id", "a stream claimed unknown client id %d", client)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"unknown client id {client}")
        if self.tls.mutual and certified != client:
            self._security_event("impersonation", "the certificate of client %s claimed to be client %d",
                                 certified, client)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"this certificate does not belong to client {client}")
        return client

    async def _stream(self, request_iterator, context):
        import asyncio

        grpc = _grpc()
        certified = None
        if self.tls.mutual:
            # The certificate says who this is before it says anything: an unknown certificate,
            # or a second stream of a client that already has one, is refused at once and holds
            # nothing (one valid certificate buys one slot, its own).
            common_name, certified = self._certificate_identity(context)
            if certified is None:
                self._security_event("unknown_certificate", "refused a certificate outside the roster: %r",
                                     common_name)
                if self._tarpitted < self.max_pending_streams:
                    # no client of this job holds such a certificate: answer it slowly, so that a peer
                    # re-opening at once costs a TLS handshake per hello timeout, not hundreds a second
                    self._tarpitted += 1
                    try:
                        await asyncio.sleep(self.hello_timeout)
                    finally:
                        self._tarpitted -= 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"certificate {common_name!r} is not in the "
                                    "roster")
            current = self._peers.get(certified)
            if (current is not None and not current.closed.is_set()) or self._pending_by_identity.get(certified):
                self._security_event("duplicate_stream", "refused a second stream of client %d", certified)
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"client {certified} already has a stream")
            self._pending_by_identity[certified] = 1
        elif self._pending >= self.max_pending_streams:
            self._security_event("slot_pressure", "%d streams have not said hello: refusing more", self._pending)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many streams waiting for their hello")
        self._pending += 1
        try:
            # A stream that never says hello is cut off quickly; it never held an identity's place.
            first = await asyncio.wait_for(request_iterator.__anext__(), self.hello_timeout)
        except asyncio.TimeoutError:
            timed_out = True
        except (StopAsyncIteration, Exception):  # noqa: BLE001 - the peer left before its hello
            return
        else:
            timed_out = False
        finally:
            self._pending -= 1
            if certified is not None:
                self._pending_by_identity.pop(certified, None)
        if timed_out:
            self._security_event("hello_timeout", "a stream sent no hello within %.1f s", self.hello_timeout)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no hello within {self.hello_timeout:g} s")
        client = await self._identify(first, context, certified)
        peer = _Peer(client, self._loop)
        peer.send(Envelope(Kind.HEARTBEAT, {"interval": self.heartbeat}))  # first: the client adopts the interval
        with self._lock:
            current = self._peers.get(client)
            duplicate = current is not None and not current.closed.is_set()
            if not duplicate:
                self._peers[client] = peer
                self._refusers.discard(client)
                if self._finished:
                    peer.send(Envelope(Kind.FINISHED))
                    peer.close()
                elif self._run is not None:
                    self._admit(self._run, peer)
        if duplicate:
            self._security_event("duplicate_stream", "refused a second stream of client %d", client)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"client {client} already has a session")
        log.info("client %d connected", client)
        reader = asyncio.ensure_future(self._read(peer, request_iterator))
        try:
            while True:
                item = await peer.outbox.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            self._gone(peer)

    async def _read(self, peer: _Peer, request_iterator) -> None:
        try:
            async for raw in request_iterator:
                if peer.expelled or peer.closed.is_set():
                    break
                peer.last_seen = time.monotonic()
                if _is_heartbeat(raw):
                    continue  # liveness only: never queued for the driver
                with peer.lock:
                    peer.in_flight += 1
                    flooding = peer.in_flight > MAX_IN_FLIGHT
                if flooding:  # bounded memory: nobody may queue more than a few messages
                    peer.expelled = True
                    log.warning("client %d expelled: more than %d messages in flight", peer.client_id,
                                MAX_IN_FLIGHT)
                    peer.send(Envelope(Kind.ERROR, {"error": "ProtocolViolation",
                                                    "message": "too many messages in flight"}))
                    break
                self._events.put(("message", peer, raw, peer.session))
        except BaseException:  # noqa: BLE001 - the stream broke, or was cancelled: the client is gone
            pass
        self._gone(peer)

    def _gone(self, peer: _Peer) -> None:
        with self._lock:
            if peer.closed.is_set() and self._peers.get(peer.client_id) is not peer:
                return
            peer.close()
            if self._peers.get(peer.client_id) is peer:
                del self._peers[peer.client_id]
        self._events.put(("gone", peer, None, peer.session))

    # ---------------------------------------------------------------- driver (one thread)

    def serve(self, on_started: Callable[[int], None] | None = None) -> None:
        """Run every session of the task, then tell connected clients the job is finished."""
        import asyncio

        warm_up()  # first-call costs before the first deadline starts, not inside a round
        self._call(self._server.start())
        pulse = asyncio.run_coroutine_threadsafe(self._heartbeats(), self._loop)
        log.info("coordinator listening on port %d (%s)", self.port,
                 "INSECURE, no TLS" if self.tls.insecure else "mutual TLS" if self.tls.mutual else "TLS")
        if on_started is not None:
            on_started(self.port)
        try:
            self._resume_journaled()
            while not self._stopping.is_set():
                plan = self.task.next_session()
                if plan is None:
                    break
                self._run_session(plan)
            with self._lock:
                self._finished = True
                peers = list(self._peers.values())
            for peer in peers:
                peer.send(Envelope(Kind.FINISHED))
                peer.close()
            deadline = time.monotonic() + self.linger  # answer late reconnects with FINISHED
            while time.monotonic() < deadline and not self._stopping.is_set():
                time.sleep(0.05)
        finally:
            pulse.cancel()
            try:
                self._call(self._server.stop(grace=1.0), timeout=10)
            finally:
                self._stop_loop()

    def _resume_journaled(self) -> None:
        """Run the journaled session first, if it did not end and the task still wants it."""
        pending = self.journal.pending() if self.journal is not None else None
        if pending is None:
            return
        resume_plan = getattr(self.task, "resume_plan", None)
        plan = resume_plan(pending.header, pending.blob, pending.cohort) if resume_plan is not None else None
        if plan is None:
            log.info("the journal holds session %s, which the task no longer runs: starting afresh",
                     pending.session_id.hex())
            return
        log.info("resuming session %s (interrupted by a restart)", pending.session_id.hex())
        self._run_session(plan, resume=pending)

    async def _heartbeats(self) -> None:
        """On the event loop: a HEARTBEAT to every client each interval, and the stream of a client
        silent for too long closed (the driver then sees it gone: a dropout, not a deadline)."""
        import asyncio

        beat = Envelope(Kind.HEARTBEAT, {"interval": self.heartbeat})
        last_beat = 0.0
        while True:  # ticks of a quarter interval: a silent peer is noticed within 3.25 intervals
            await asyncio.sleep(self.heartbeat / 4)
            now = time.monotonic()
            beating = now - last_beat >= self.heartbeat
            if beating:
                last_beat = now
            with self._lock:
                peers = [p for p in self._peers.values() if not p.closed.is_set()]
            for peer in peers:
                silent = now - peer.last_seen
                if silent > self.silence_limit:
                    log.warning("client %d silent for %.1f s (no heartbeat): its stream is closed, it counts as "
                                "gone", peer.client_id, silent)
                    peer.silent = True
                    self._gone(peer)
                elif beating:
                    peer.send(beat)

    def stop(self) -> None:
        self._stopping.set()

    def _expel(self, run: _Run, peer: _Peer, exc: Exception) -> None:
        if self.journal is not None:
            self.journal.expelled(peer.client_id, f"{type(exc).__name__}: {exc}")
        peer.expelled = True
        log.warning("client %d expelled: %s: %s", peer.client_id, type(exc).__name__, exc)
        peer.send(Envelope(Kind.ERROR, {"error": type(exc).__name__, "message": str(exc)[:500]}))
        run.gone.add(peer.client_id)
        run.expelled.add(peer.client_id)
        self._gone(peer)

    def _quorum_reached(self, server) -> bool:
        if self.join_quorum is None:
            return False
        answered = len(server.expected_clients) - len(server.pending_clients)
        return answered >= max(self.join_quorum, server.threshold)  # masking: t + 1, each needs t others

    def _quorum_settled(self, run: _Run, server, now: float) -> bool:
        """From the second session on, clients stay connected between sessions, so one that is not
        connected when a session starts has most likely gone for good. The first round then closes
        once every connected member has sent its keys, at least t have, and nobody new has joined
        or answered for ``join_grace`` seconds, instead of holding every later session open for
        the whole join window."""
        with self._lock:
            connected = {c for c, p in self._peers.items() if p.session == run.index and not p.closed.is_set()}
        answered = server.expected_clients - server.pending_clients
        return (len(answered) >= server.threshold and connected <= answered
                and now - run.last_activity >= self.join_grace)

    def _admit(self, run: _Run, peer: _Peer) -> None:
        """Bring a connected client into the session, if it belongs there (under ``self._lock``).

        A cohort member the session has not heard from gets the announcement while the session
        accepts joins; one it has heard from (its stream broke, or this coordinator restarted and
        resumed the session) is asked to take the session up again, with the last message the
        session produced for it: it goes on if it kept its state, and declines if not."""
        client = peer.client_id
        if client not in run.cohort or client in run.expelled or not (client in run.heard or self._accepting):
            return
        peer.session = run.index
        run.members.add(client)
        run.gone.discard(client)
        run.silent.discard(client)
        run.declined.discard(client)
        run.last_activity = time.monotonic()
        if client in run.heard:
            peer.send(Envelope(Kind.RESUME, {"session_id": run.session_id.hex()}))
            if client in run.last_delivered:
                peer.send(Envelope(Kind.PROTOCOL, blob=run.last_delivered[client]))
        else:
            peer.send(run.session_envelope)
            if client in run.opening:
                peer.send(Envelope(Kind.PROTOCOL, blob=run.opening[client]))

    def _replay(self, run: _Run, resume: JournaledSession) -> str | None:
        """Rebuild a resumed session from its journal: every accepted message and round close, in
        order (the session is a deterministic function of them). The abort reason if it had aborted."""
        server = run.server
        try:
            for event in resume.events:
                match event:
                    case ("received", (int() as client, bytes() as blob)):
                        run.last_delivered.update(server.receive(client, blob))
                        run.heard.add(client)
                        run.digests.add(hashlib.sha256(client.to_bytes(4, "little") + blob).digest())
                    case ("closed", str()):
                        run.last_delivered.update(server.close_round())
                    case ("expelled", (int() as client, str())):
                        run.expelled.add(client)
                    case ("refused", (int() as client, str() as reason)):
                        run.refused[client] = reason
                        run.declined.add(client)
                    case _:  # SessionJournal reads only these events: typed anyway
                        raise ParameterError(f"the session journal holds an unknown event {event[0]!r}")
        except AbortError as exc:
            return str(exc)
        except ProtocolViolation as exc:  # a journal this session refuses is not its own
            raise ParameterError(f"the session journal does not replay: {exc}") from None
        log.info("session %d resumed from its journal in round %s: %d messages, %d clients heard from",
                 run.index, server.round, sum(k == "received" for k, _ in resume.events), len(run.heard))
        return None

    def _absent_refusers(self) -> set[int]:
        with self._lock:
            return {c for c in self._refusers if c not in self._peers or self._peers[c].closed.is_set()}

    def _checkpoint(self, point: str, index: int) -> None:
        hook = type(self).checkpoint_hook
        if hook is not None:
            hook(point, index)

    def _round_closed(self, run: _Run, round_name: str, outbox: Mapping[int, bytes]) -> None:
        self._checkpoint(f"{round_name}_closed", run.index)
        self._deliver(run, outbox)

    def _deliver(self, run: _Run, outbox: Mapping[int, bytes]) -> None:
        run.last_delivered.update(outbox)
        if self.journal is not None and outbox:
            self.journal.sync()  # nothing a client sees may be missing from the journal
        with self._lock:
            for client, data in outbox.items():
                peer = self._peers.get(client)
                if peer is not None and peer.session == run.index:
                    peer.send(Envelope(Kind.PROTOCOL, blob=data))

    def _run_session(self, plan: SessionPlan, resume: JournaledSession | None = None) -> None:
        started = time.perf_counter()
        spec = plan.spec
        if isinstance(spec, MaskingSpec) and spec.verify_keys is None and spec.config.malicious:
            spec = MaskingSpec(spec.config, self.verify_keys)
        cohort = check_cohort(range(self.num_clients) if plan.cohort is None else plan.cohort, self.num_clients,
                              spec)
        if resume is None:
            session_id = os.urandom(SESSION_ID_BYTES)
            header = {**plan.header, **spec.header(), "session_id": session_id.hex(), "cohort": list(cohort),
                      "deadlines": dict(self.deadlines.__dict__)}
            announcement = Envelope(Kind.SESSION, header, plan.blob)
            if self.journal is not None:
                self.journal.begin(self.sessions_run, session_id, cohort, plan.header, plan.blob,
                                   announcement.encode())
        else:  # the very announcement the clients hold
            session_id, announcement = resume.session_id, decode_envelope(resume.announcement)
        if isinstance(spec, PaillierSpec):  # every bank signs over the announcement as it will read it
            sent = decode_envelope(announcement.encode())
            spec = replace(spec, meaning={"announcement": announcement_digest(sent.header, sent.blob)})
        server = server_run(spec, session_id, cohort, mapper=self.mapper)
        if self._current_session_id is not None:
            self._past_session_ids.add(self._current_session_id)
        self._current_session_id = session_id
        run = _Run(self.sessions_run, plan, server, announcement, server.opening(), frozenset(cohort),
                   session_id=session_id)
        run.last_delivered.update(run.opening)
        self.sessions_run += 1
        aborted: str | None = None
        if resume is not None:
            aborted = self._replay(run, resume)
            if self.journal is None:  # a session is resumed from its journal only: typed anyway
                raise SessionStateError("a resumed session has no journal to append to")
            self.journal.resume()
        # Events from the previous session's streams are stale now.
        while True:
            try:
                kind, peer, _, _ = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "message":
                with peer.lock:
                    peer.in_flight -= 1
        with self._lock:
            self._run, self._accepting = run, server.joining and aborted is None
            for peer in self._peers.values():
                if not peer.closed.is_set():
                    self._admit(run, peer)
        log.info("session %d started (%s, %d of %d clients, %s)", run.index, spec.name, len(cohort),
                 self.num_clients, session_id.hex())
        self._checkpoint("session_started", run.index)
        deadline = time.monotonic() + self.deadlines.for_round(server.round)
        try:
            while aborted is None and not server.finished and not self._stopping.is_set():
                state, joining = server.round, server.joining
                now = time.monotonic()
                # Later rounds close as soon as every pending client has disconnected; the first
                # round keeps its join window open for reconnects, unless the rest were expelled.
                reason = None
                if now >= deadline:
                    reason = "its deadline"
                elif server.pending_clients <= (run.expelled | run.silent | run.declined if joining
                                                else run.gone | run.declined):
                    reason = "disconnects of every pending client"
                elif joining and server.pending_clients <= (run.expelled | run.declined | self._absent_refusers()):
                    reason = "refusals of every pending client (they left after refusing an earlier session)"
                elif joining and self._quorum_reached(server):
                    reason = f"the join quorum of {self.join_quorum} clients"
                elif joining and run.index > 0 and self._quorum_settled(run, server, now):
                    reason = "every connected client having answered"
                if reason is not None:
                    if joining:
                        with self._lock:
                            self._accepting = False
                    log.info("round %s closed by %s; missing %s", state, reason, sorted(server.pending_clients))
                    if self.journal is not None:
                        self.journal.closed(state)
                    outbox = server.close_round()
                    self._round_closed(run, state, outbox)
                    if not server.finished:
                        deadline = time.monotonic() + self.deadlines.for_round(server.round)
                    continue
                try:
                    kind, peer, raw, tagged = self._events.get(timeout=min(0.25, deadline - now))
                except queue.Empty:
                    continue
                if kind == "gone":
                    with self._lock:
                        current = self._peers.get(peer.client_id)
                    # a stale event from a stream the client has since replaced says nothing
                    if tagged == run.index and (current is None or current is peer or current.session != run.index):
                        run.gone.add(peer.client_id)
                        if peer.silent:  # frozen: the join window need not wait for it to come back
                            run.silent.add(peer.client_id)
                    continue
                with peer.lock:
                    peer.in_flight -= 1
                if peer.expelled:
                    continue
                if tagged is None:  # connected but in no session: it has nothing to say
                    self._expel(run, peer, ProtocolViolation("sent a message outside any session",
                                                             party=peer.client_id))
                    continue
                if tagged != run.index:
                    continue  # a late reply to an earlier session
                run.last_activity = time.monotonic()
                try:
                    envelope = decode_envelope(raw)
                    if envelope.kind is Kind.REFUSE:
                        reason = (f"{str(envelope.header.get('error'))[:60]}: "
                                  f"{str(envelope.header.get('message'))[:500]}")
                        log.warning("client %d refuses session %d: %s", peer.client_id, run.index, reason)
                        if self.journal is not None:
                            self.journal.refused(peer.client_id, reason)
                        run.refused[peer.client_id] = reason
                        run.declined.add(peer.client_id)
                        with self._lock:
                            self._refusers.add(peer.client_id)
                        with self._lock:
                            peer.session = None
                        continue
                    if envelope.kind is Kind.DECLINE:  # at the start, or back without its state
                        log.info("client %d sits session %d out: %s", peer.client_id, run.index,
                                 str(envelope.header.get("reason"))[:200])
                        run.declined.add(peer.client_id)
                        with self._lock:
                            peer.session = None
                        continue
                    if envelope.kind is not Kind.PROTOCOL:
                        raise MalformedMessage(f"clients send PROTOCOL envelopes, got {envelope.kind.name}")
                    if server.is_late(envelope.blob):
                        log.debug("late message from client %d dropped in round %s", peer.client_id, state)
                        continue
                    if envelope.blob[6:22] in self._past_session_ids:
                        # a client frozen past a session's end wakes and sends what it owed that
                        # session: late, not a replay; it is not blamed and the message goes nowhere
                        log.info("client %d sent a message for an earlier session: dropped", peer.client_id)
                        continue
                    digest = hashlib.sha256(peer.client_id.to_bytes(4, "little") + envelope.blob).digest()
                    if digest in run.digests:
                        # a client taking the session up again resends its last message
                        log.debug("client %d resent a message the session has: dropped", peer.client_id)
                        continue
                    outbox = server.receive(peer.client_id, envelope.blob)
                    if self.journal is not None:  # before anything it produced is delivered
                        self.journal.received(peer.client_id, envelope.blob)
                    run.digests.add(digest)
                    with self._lock:
                        run.heard.add(peer.client_id)
                except ProtocolViolation as exc:  # MalformedMessage included: the session is unchanged
                    self._expel(run, peer, exc)
                    continue
                if outbox or server.round != state:
                    log.debug("round %s complete at %.1f ms", state, 1e3 * (time.perf_counter() - started))
                    with self._lock:
                        self._accepting = False
                    self._round_closed(run, state, outbox)
                    if not server.finished:
                        deadline = time.monotonic() + self.deadlines.for_round(server.round)
            if self._stopping.is_set() and not server.finished:
                server.abort("coordinator shutting down")
        except AbortError as exc:
            aborted = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not take the coordinator down
            log.exception("session %d failed", run.index)
            aborted = f"internal error: {type(exc).__name__}: {exc}"
        with self._lock:
            self._run, self._accepting = None, False
        outcome = server.outcome(aborted)
        outcome = dataclasses.replace(outcome, refused=dict(run.refused))
        survivors = outcome.survivors
        if outcome.misbehaving:
            log.warning("session %d: misbehaving clients %s", run.index, outcome.misbehaving)
        log.info("session %d %s in %.2f s: %d clients in the sum", run.index,
                 f"ABORTED ({outcome.aborted})" if outcome.aborted else "completed", time.perf_counter() - started,
                 len(survivors))
        self.outcomes.append(outcome)
        final = False
        try:
            final = self.task.finish_session(plan, outcome.aggregate, survivors, outcome.dropped, outcome.aborted,
                                             time.perf_counter() - started, misbehaving=outcome.misbehaving,
                                             refused=outcome.refused)
        finally:
            with self._lock:
                peers = [p for p in self._peers.values() if p.session == run.index]
            for peer in peers:  # streams stay open for the next session, unless this was the last
                peer.send(Envelope(Kind.SESSION_END, {"included": peer.client_id in survivors,
                                                      "aborted": outcome.aborted, "final": final}))
                if final:
                    peer.close()
        if self.journal is not None:
            self.journal.ended()
        self._checkpoint("session_recorded", run.index)


# ----------------------------------------------------------------------------- client

@dataclass(frozen=True)
class ClientPolicy:
    """What a client accepts from a coordinator (the privacy-relevant parameters it agreed to).

    ``min_threshold`` None means a majority of the share holders: a coordinator cannot lower t so
    that a minority of holders (plus itself) could unmask an input. ``min_neighbors`` None means
    the complete graph only; an int k allows SecAgg+ graphs of at least k neighbours (otherwise a
    coordinator could shrink the holders, and so the threshold, to one or two). ``min_corrupt``:
    the number of corrupt clients (colluding with the coordinator) the session must keep this
    client's input private against, by the paper's bound for the announced graph and mode, whatever
    number the coordinator declares; a FedAvg participant sets it to what its own session tolerates
    (the three floors alone are not enough: in malicious mode a larger graph at the same threshold
    tolerates fewer corrupt clients).
    """

    num_clients: int | None = None
    min_threshold: int | None = None
    min_neighbors: int | None = None
    require_malicious: bool = False  # refuse sessions without signatures and the consistency check
    # the smallest session this client takes part in; None: every one of num_clients (no sampling)
    min_cohort: int | None = None
    min_corrupt: int = 0
    # malicious mode: the fewest inputs of a sum this client helps unmask (DP's min_shares); the session
    # must make a sum of fewer unlikely whoever the coordinator shows whom (bounds.log2_smaller_sum)
    min_sum: int = 1
    security_bits: float = 40.0  # SecAgg+ graphs: the privacy bound's failure probability, 2^-security_bits

    def __post_init__(self) -> None:
        if isinstance(self.min_corrupt, bool) or not isinstance(self.min_corrupt, int) or self.min_corrupt < 0:
            raise ParameterError(f"min_corrupt must be a non-negative int, got {self.min_corrupt!r}")

    def check_cohort(self, cohort: tuple[int, ...]) -> None:
        """A sampled session is no smaller than this client agreed to (a sum over few clients
        tells the coordinator more about each)."""
        minimum = self.min_cohort if self.min_cohort is not None else self.num_clients
        if minimum is not None and len(cohort) < minimum:
            raise ProtocolViolation(f"coordinator announces a session of {len(cohort)} clients, this client agreed "
                                    f"to sessions of at least {minimum}", party="server")

    def check(self, config: SecAggConfig) -> None:
        if self.require_malicious and not config.malicious:
            raise ProtocolViolation("coordinator asks for the honest-server mode, this client requires the "
                                    "malicious-server mode (signatures, consistency check)", party="server")
        minimum = self.min_threshold if self.min_threshold is not None else config.holders_per_client // 2 + 1
        if config.threshold < minimum:
            raise ProtocolViolation(f"coordinator asks for threshold {config.threshold}, below the agreed "
                                    f"minimum {minimum}", party="server")
        if config.neighbors is not None and (self.min_neighbors is None or config.neighbors < self.min_neighbors):
            raise ProtocolViolation(
                f"coordinator asks for a SecAgg+ graph of {config.neighbors} neighbours; this client accepts "
                + ("the complete graph only" if self.min_neighbors is None else f"at least {self.min_neighbors}"),
                party="server")
        # the announced corrupt_clients is the coordinator's word: check the bound with this client's
        weak = privacy_failure(config.num_clients, config.threshold, config.neighbors if config.is_sparse else None,
                               config.malicious, self.min_corrupt, security_bits=self.security_bits)
        if weak is not None:
            raise ProtocolViolation(f"coordinator asks for a session that does not keep this client's input private "
                                    f"against {self.min_corrupt} corrupt clients: {weak}", party="server")
        if config.malicious and self.min_sum > 1:
            declared = config.threat_model.corrupt_clients if config.threat_model is not None else 0
            corrupt = max(self.min_corrupt, declared)
            failure = log2_smaller_sum(config.num_clients, config.neighbors if config.is_sparse else None,
                                       config.threshold, self.min_sum, corrupt)
            if failure > -self.security_bits:
                raise ProtocolViolation(f"coordinator asks for a session in which it could unmask a sum of fewer than "
                                        f"this client's {self.min_sum} inputs with {corrupt} corrupt clients (a set "
                                        f"each of whose members keeps t holders inside it: 2^{failure:.1f})",
                                        party="server")


class NetworkClient:
    """A client process: connects to ``target`` (``host:port``) as ``client_id`` and serves sessions
    until the coordinator says the job is finished (returns) or it gives up (:class:`NetworkError`).

    A bank of the Paillier path passes ``paillier=(public, share, floor)``: the public parameters,
    its own key share (client id = share index - 1) and the fewest contributions it will ever help
    decrypt; with its ``identity`` and every bank's ``verify_keys``.

    A broken connection, or a coordinator that is not up yet or restarting, is retried with
    backoff; within a session a broken stream makes this client a dropout of that session.
    """

    def __init__(self, target: str, client_id: int, task: ClientTask, *, tls: TLSConfig,
                 policy: ClientPolicy = ClientPolicy(), retry: RetryPolicy = RetryPolicy(),
                 max_message_bytes: int = 256 * 2**20, identity=None, verify_keys: Mapping[int, bytes] | None = None,
                 paillier: tuple | None = None) -> None:
        known = policy.num_clients if policy.num_clients is not None else MAX_CLIENTS
        if isinstance(client_id, bool) or not isinstance(client_id, int) or not 0 <= client_id < known:
            raise ParameterError(f"client_id must be an int in 0..{known - 1}, got {client_id!r}")
        self.target, self.client_id, self.task, self.tls = target, client_id, task, tls
        self.policy, self.retry = policy, retry
        self.max_message_bytes = int(max_message_bytes)
        self.sessions = {"completed": 0, "included": 0, "aborted": 0, "refused": 0}
        self.identity, self.verify_keys = identity, verify_keys
        if paillier is not None:
            from secagg.paillier.threshold import KeyShare

            if len(paillier) != 3 or not isinstance(paillier[1], KeyShare) or identity is None or verify_keys is None:
                raise ParameterError("a bank needs paillier=(public key, its KeyShare, floor), an identity key and "
                                     "every bank's verify key")
            if paillier[1].index != client_id + 1:
                raise ParameterError(f"client {client_id} holds the key share of bank {paillier[1].index - 1}")
        self.paillier = paillier
        self._last_contact = 0.0
        self._seen_sessions: set[bytes] = set()  # a session id is never taken twice (replays)
        # the ids this client took before this process started (the task's persisted state), with
        # the digest of the announcement it took under each
        self._taken_before = _taken_sessions(task)
        self._inflight: _InFlight | None = None  # the session in progress: kept across broken streams
        if identity is not None and not policy.require_malicious:
            self.policy = replace(policy, require_malicious=True)

    def _channel(self):
        grpc = _grpc()
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", -1), *_KEEPALIVE]
        if self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        if self.tls.insecure:
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, self.tls.channel_credentials(), options=options)

    def run(self) -> dict:
        """Serve sessions until the job is finished; returns counts of sessions by outcome."""
        grpc = _grpc()
        # no warm_up(): a client only shares (NumPy), and galois is imported only to decode shares with errors
        # (reconstruction), so a participant starts in well under a second and ~60 MB
        delay = self.retry.initial
        last_progress = time.monotonic()
        handshake_failures = 0
        with self._channel() as channel:
            call = channel.stream_stream(SERVICE_METHOD)
            while True:
                sessions_before = self.sessions["completed"] + self.sessions["aborted"]
                stream_started = time.monotonic()
                try:
                    outcome = self._one_stream(call)
                except grpc.RpcError as exc:
                    code = exc.code()
                    last_progress = max(last_progress, self._last_contact)
                    if code.name not in _TRANSIENT:
                        raise NetworkError(f"coordinator refused client {self.client_id}: {code.name}: "
                                           f"{exc.details()}") from None
                    details = str(exc.details()).lower()
                    # a handshake this side failed, or (TLS 1.3) the coordinator hanging up right after
                    # it, before a single message on a fresh stream: it refused this client's certificate
                    refused_early = "socket closed" in details and self._last_contact < stream_started
                    handshake_failures = handshake_failures + 1 if "handshake failed" in details or refused_early \
                        else 0
                    if handshake_failures >= 3:  # a wrong CA or server name is not an outage: say so now
                        raise NetworkError(
                            f"client {self.client_id}: TLS handshake with the coordinator at {self.target} failed "
                            f"{handshake_failures} times in a row: its certificate is not signed by this client's "
                            f"CA (--ca), or its name does not match (--server-name), or it refused this client's "
                            f"certificate (signed by another CA, or expired) ({exc.details()})") from None
                    waited = time.monotonic() - last_progress
                    if waited > self.retry.give_up_after:
                        raise NetworkError(f"client {self.client_id}: coordinator at {self.target} unreachable for "
                                           f"{waited:.0f} s ({code.name}: {exc.details()}); giving up") from None
                    log.info("client %d: %s, retrying in %.1f s", self.client_id, code.name, delay)
                    time.sleep(delay * secrets.SystemRandom().uniform(0.5, 1.0))  # jitter
                    delay = min(delay * self.retry.multiplier, self.retry.maximum)
                    continue
                last_progress = time.monotonic()
                if outcome == "finished":
                    return dict(self.sessions)
                if self.sessions["completed"] + self.sessions["aborted"] > sessions_before or \
                        self._last_contact >= stream_started:
                    # the coordinator was there: the backoff grown while it was unreachable (e.g.
                    # at start-up) no longer applies; an expelled client that waited the maximum
                    # came back after the job had ended and gave up as "unreachable"
                    delay = self.retry.initial
                # expelled: come back, but not in a tight loop
                time.sleep(delay * secrets.SystemRandom().uniform(0.5, 1.0))
                delay = min(delay * self.retry.multiplier, self.retry.maximum)

    def _take_up(self, inflight: _InFlight, send, requests: queue.Queue) -> None:
        """The coordinator asks this client to take its session up again (a broken stream, or the
        coordinator restarted and resumed it): resend the last message, which the coordinator may
        never have received; it drops a copy it already has. A session it sat out, it sits out."""
        if inflight.session is None:
            requests.put(Envelope(Kind.DECLINE, {"reason": _ALREADY_IN_A_SUM}).encode())
            return
        log.info("client %d takes session %s up again", self.client_id, inflight.session_id.hex()[:16])
        if inflight.last_sent is not None:
            send(inflight.last_sent, inflight)

    def _one_stream(self, call) -> str:
        """One stream: HELLO, then sessions until the job is finished ("finished") or the
        coordinator expels this client ("next": reconnect)."""
        requests: queue.Queue = queue.Queue()
        requests.put(Envelope(Kind.HELLO, {"client": self.client_id, "task": self.task.name}).encode())

        def outgoing():
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        responses = call(outgoing())  # no deadline: the stream lives across sessions; heartbeats
        pulse = _ClientPulse(self, requests, responses)

        def send(data: bytes, inflight: _InFlight) -> None:
            inflight.last_sent = data
            requests.put(Envelope(Kind.PROTOCOL, blob=data).encode())

        try:
            for raw in responses:
                self._last_contact = time.monotonic()
                try:
                    envelope = decode_envelope(raw)
                except MalformedMessage as exc:
                    raise ProtocolViolation(f"coordinator sent a malformed envelope: {exc}", party="server") from None
                if envelope.kind is Kind.HEARTBEAT:
                    pulse.adopt(envelope.header)
                    continue
                inflight = self._inflight
                if envelope.kind is Kind.SESSION:
                    session_id = _session_id(field_of(envelope.header, "session_id", str))
                    if inflight is not None and inflight.session_id == session_id and \
                            inflight.header == envelope.header and inflight.blob == envelope.blob:
                        self._take_up(inflight, send, requests)  # announced again, word for word
                        continue
                    cohort, place = session_cohort(envelope.header, self.client_id, self.policy.num_clients)
                    spec = client_spec(envelope.header, verify_keys=self.verify_keys, paillier=self.paillier,
                                       blob=envelope.blob, cohort=cohort)
                    self.policy.check_cohort(cohort)
                    if isinstance(spec, MaskingSpec):
                        self.policy.check(spec.config)
                    digest = announcement_digest(envelope.header, envelope.blob)
                    before = self._taken_before.get(session_id)
                    if session_id in self._seen_sessions or before not in (None, digest):
                        raise ProtocolViolation(f"coordinator reused session id {session_id.hex()}: this client "
                                                "takes part in a session once", party="server")
                    self._seen_sessions.add(session_id)
                    if before is not None:
                        # the same announcement, taken before this process restarted: its secrets are gone
                        self._inflight = _InFlight(session_id, envelope.header, envelope.blob, None)
                        requests.put(Envelope(Kind.DECLINE, {"reason": "this client took session "
                                                             f"{session_id.hex()[:16]} before it restarted and holds "
                                                             "none of its state"}).encode())
                        continue
                    remember = getattr(self.task, "session_taken", None)
                    if remember is not None:
                        remember(session_id.hex(), digest)  # persisted before anything of the session goes out
                    self._inflight = None
                    prepared = self.task.prepare(spec, envelope.header, envelope.blob)
                    if prepared is None:
                        self._inflight = _InFlight(session_id, envelope.header, envelope.blob, None)
                        requests.put(Envelope(Kind.DECLINE, {"reason": _ALREADY_IN_A_SUM}).encode())
                        continue
                    session = client_run(spec, place if isinstance(spec, MaskingSpec) else self.client_id,
                                         session_id, prepared, identity=self.identity, paillier=self.paillier,
                                         min_sum=int(getattr(self.task, "min_sum", 1)))
                    self._inflight = inflight = _InFlight(session_id, envelope.header, envelope.blob, session)
                    first = session.start()
                    if first is not None:
                        send(first, inflight)
                elif envelope.kind is Kind.RESUME:
                    session_id = _session_id(field_of(envelope.header, "session_id", str))
                    if inflight is not None and inflight.session_id == session_id:
                        self._take_up(inflight, send, requests)
                    else:  # e.g. this process restarted: its secrets of that session are gone
                        requests.put(Envelope(Kind.DECLINE, {"reason": "this client holds no state of session "
                                                             f"{session_id.hex()[:16]} (it restarted)"}).encode())
                elif envelope.kind is Kind.PROTOCOL:
                    if inflight is None or inflight.session is None:
                        raise ProtocolViolation("protocol message before the session", party="server")
                    if envelope.blob == inflight.last_request and inflight.last_reply is not None:
                        send(inflight.last_reply, inflight)  # asked again after a break: the same answer
                        continue
                    try:
                        reply = inflight.session.handle(envelope.blob)
                    except AbortError as exc:
                        log.info("client %d: %s", self.client_id, exc)
                        continue
                    inflight.last_request, inflight.last_reply = envelope.blob, reply
                    if reply is not None:
                        send(reply, inflight)
                    if not inflight.contributed and inflight.session.contributed:
                        inflight.contributed = True  # the input is out: never again for the same input
                        self.task.contributed(inflight.header)
                elif envelope.kind is Kind.SESSION_END:
                    self.sessions["completed" if not envelope.header.get("aborted") else "aborted"] += 1
                    self.sessions["included"] += bool(envelope.header.get("included"))
                    self.task.session_ended(envelope.header)
                    self._inflight = None
                    if envelope.header.get("final"):
                        return "finished"
                elif envelope.kind is Kind.FINISHED:
                    return "finished"
                elif envelope.kind is Kind.ERROR:
                    log.warning("client %d expelled by the coordinator: %s: %s", self.client_id,
                                envelope.header.get("error"), envelope.header.get("message"))
                    self.sessions["refused"] += 1
                    return "next"
                else:
                    raise ProtocolViolation(f"unexpected {envelope.kind.name} from the coordinator", party="server")
            if pulse.silent:
                raise _stream_ended("the coordinator went silent (no heartbeat)")
            raise _stream_ended()
        except ProtocolViolation as exc:
            # refusing the coordinator's message: say why before leaving (the coordinator logs it
            # and stops waiting for this client), then the caller decides (the CLI exits non-zero)
            log.warning("client %d refuses the coordinator: %s", self.client_id, exc)
            requests.put(Envelope(Kind.REFUSE, {"error": type(exc).__name__, "message": str(exc)[:500]}).encode())
            requests.put(None)  # half-close: the coordinator reads the refusal, then ends the stream
            timer = threading.Timer(5.0, responses.cancel)
            timer.daemon = True
            timer.start()
            try:
                for _ in responses:
                    pass
            except Exception:  # noqa: BLE001 - cancelled, or the stream broke: the refusal went or never will
                pass
            finally:
                timer.cancel()
            raise
        finally:
            pulse.stop()
            requests.put(None)
            responses.cancel()


_ALREADY_IN_A_SUM = "this client's input is already in an earlier sum"


@dataclass
class _InFlight:
    """A client's session in progress, kept across broken streams so that it can be taken up again."""

    session_id: bytes
    header: dict
    blob: bytes
    session: ClientRun | None  # None: this client sits the session out
    last_sent: bytes | None = None  # its last protocol message (resent when the session is taken up)
    last_request: bytes | None = None  # the coordinator's last message and this client's reply to it
    last_reply: bytes | None = None
    contributed: bool = False


class _ClientPulse:
    """A client stream's heartbeat: once the coordinator has said its interval, a HEARTBEAT to it
    every interval, and the stream cancelled (a transient failure: reconnect) when the coordinator
    has been silent for HEARTBEATS_MISSED intervals."""

    def __init__(self, client: NetworkClient, requests: queue.Queue, responses) -> None:
        self.client, self.requests, self.responses = client, requests, responses
        self.interval = DEFAULT_HEARTBEAT  # until the coordinator says its own (its first message)
        self.adopted = False
        self.silent = False
        self.started = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="secagg-heartbeat")
        self._thread.start()

    def adopt(self, header: Mapping) -> None:
        interval = header.get("interval")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.5 <= interval <= 600:
            raise ProtocolViolation(f"coordinator announced a heartbeat interval of {interval!r} s", party="server")
        self.interval, self.adopted = float(interval), True

    def _run(self) -> None:
        beat = Envelope(Kind.HEARTBEAT).encode()
        last_beat = 0.0
        while not self._stopped.wait(min(0.25, self.interval / 4)):
            now = time.monotonic()
            if self.adopted and now - last_beat >= self.interval:
                self.requests.put(beat)
                last_beat = now
            silent = now - max(self.client._last_contact, self.started)
            if silent > HEARTBEATS_MISSED * self.interval:
                log.warning("client %d: the coordinator has been silent for %.1f s: reconnecting",
                            self.client.client_id, silent)
                self.silent = True
                self.responses.cancel()
                return

    def stop(self) -> None:
        self._stopped.set()


def _is_heartbeat(raw: bytes) -> bool:
    """A well-formed HEARTBEAT envelope (small; anything else goes to the driver and is judged there)."""
    if len(raw) > 256 or raw[:4] != b"SGNT" or len(raw) < 6 or raw[5] != Kind.HEARTBEAT:
        return False
    try:
        return decode_envelope(raw).kind is Kind.HEARTBEAT
    except MalformedMessage:
        return False


def _start_event_loop():
    """A private asyncio event loop on a daemon thread (the coordinator's gRPC side runs there)."""
    import asyncio

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True, name="secagg-grpc-loop")
    thread.start()
    ready.wait(10)
    return loop, thread


def _taken_sessions(task) -> dict[bytes, str]:
    """The session ids ``task`` says this client took before (its optional ``taken_sessions()``),
    each with the digest of the announcement taken; ParameterError if the task's record is not that."""
    taken = getattr(task, "taken_sessions", None)
    if taken is None:
        return {}
    record = {}
    for session_id, digest in dict(taken()).items():
        try:
            raw = bytes.fromhex(session_id)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) != SESSION_ID_BYTES or not isinstance(digest, str):
            raise ParameterError(f"the task's taken sessions hold an invalid entry {session_id!r}: {digest!r}")
        record[raw] = digest
    return record


def _session_id(text: str) -> bytes:
    try:
        session_id = bytes.fromhex(text)
    except ValueError:
        session_id = b""
    if len(session_id) != SESSION_ID_BYTES:
        raise ProtocolViolation(f"coordinator sent an invalid session id {text[:40]!r}", party="server")
    return session_id


def _stream_ended(why: str = "the coordinator closed the stream"):
    """A stream that ended without a session end: treat like an unavailable coordinator."""
    grpc = _grpc()
    rpc_error: Any = grpc.RpcError  # a base class held in a variable (grpcio has no type information)

    class _Ended(rpc_error):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return why

    return _Ended()
