"""The dealerless key ceremony over the network: a relay process and one process per bank.

The relay (``secagg paillier-keygen --no-dealer --serve``) runs :class:`~secagg.paillier.dkg.DkgCoordinator`:
it holds nothing secret, only moves the banks' canonical ceremony messages (wrapped in
:mod:`secagg.transport.envelope` envelopes) over one gRPC stream per bank, TLS on by default and
mutual TLS identifying each bank by its certificate, as the aggregation coordinator does. Each bank
(``secagg paillier-keygen --no-dealer --bank i``) runs :class:`~secagg.paillier.dkg.DkgBank` and, once
every bank signed the same key, writes its own ``share-<i+1>.json`` (mode 0600) and ``public.json``.

Restarts: when a bank's stream breaks or a round passes its deadline, the relay aborts the
ceremony (every bank gets the reason) and, as soon as every bank is connected again, starts a
fresh one with a new ceremony id; nothing of the aborted attempt is reused. A bank process that
died is simply started again. The service is separate from the aggregation coordinator's
(``/secagg.v1.KeyCeremony/Relay``), so a ceremony never shares a port or a task with training.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from secagg.errors import (
    AbortError,
    MalformedMessage,
    ParameterError,
    ProtocolViolation,
    SecAggError,
    SessionStateError,
)

if TYPE_CHECKING:
    from secagg.paillier.dkg import CeremonyStats
    from secagg.paillier.threshold import ThresholdPublicKey
from secagg.transport.certs import client_common_name
from secagg.transport.envelope import Envelope, Kind, decode_envelope, field_of
from secagg.transport.network import TLSConfig, _grpc, NetworkError

__all__ = ["CeremonyRelay", "CeremonyBank", "RelayOutcome", "SERVICE_METHOD"]

log = logging.getLogger("secagg.dkg")
SERVICE_METHOD = "/secagg.v1.KeyCeremony/Relay"
TASK = "paillier-dkg"
_KEEPALIVE = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000),
              ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
_MAX_MESSAGE = 512 * 2**20


@dataclass
class RelayOutcome:
    """What the relay saw: the key, each attempt's abort reason, time and traffic of the last attempt."""

    public_key: ThresholdPublicKey | None = None
    signatures: dict = field(default_factory=dict)
    attempts: int = 0
    aborted: list = field(default_factory=list)
    seconds: float = 0.0  # whole ceremony, first connection to the key
    last_attempt_seconds: float = 0.0
    rounds: int = 0
    bytes_relayed: int = 0


class _Peer:
    def __init__(self, bank: int) -> None:
        self.bank = bank
        self.outbox: queue.Queue = queue.Queue()
        self.closed = threading.Event()

    def send(self, envelope: Envelope) -> None:
        if not self.closed.is_set():
            self.outbox.put(envelope.encode())

    def close(self) -> None:
        self.closed.set()
        self.outbox.put(None)


class CeremonyRelay:
    """The relay process: waits for the ``config.banks`` banks, runs ceremonies until one completes.

    ``round_deadline`` seconds per round (a bank that says nothing that long aborts the attempt),
    ``join_deadline`` seconds for every bank to be connected before an attempt, ``attempts``
    ceremonies at most.
    """

    def __init__(self, config, verify_keys: Mapping[int, bytes], *, tls: TLSConfig, address: str = "127.0.0.1:0",
                 round_deadline: float = 300.0, join_deadline: float = 300.0, attempts: int = 5,
                 roster: Mapping[str, int] | None = None) -> None:
        grpc = _grpc()
        from secagg.paillier.dkg import DkgConfig

        if not isinstance(config, DkgConfig):
            raise ParameterError("the relay needs a DkgConfig")
        self.config, self.tls = config, tls
        self.verify_keys = {int(i): bytes(k) for i, k in verify_keys.items()}
        self.round_deadline, self.join_deadline, self.attempts = float(round_deadline), float(join_deadline), attempts
        self.roster = dict(roster) if roster is not None else {client_common_name(i): i for i in range(config.banks)}
        self._peers: dict[int, _Peer] = {}
        self._lock = threading.Lock()
        self._events: queue.Queue = queue.Queue()
        handler = grpc.method_handlers_generic_handler("secagg.v1.KeyCeremony", {
            "Relay": grpc.stream_stream_rpc_method_handler(self._stream)})
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2 * config.banks + 4), handlers=[handler],
                                   options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                                            ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0),
                                            *_KEEPALIVE, ("grpc.http2.min_ping_interval_without_data_ms", 5_000)])
        self.port = self._server.add_insecure_port(address) if tls.insecure else \
            self._server.add_secure_port(address, tls.server_credentials())
        if not self.port:
            raise NetworkError(f"cannot listen on {address}")
        self.outcome = RelayOutcome()

    # ---------------------------------------------------------------- gRPC side

    def _stream(self, request_iterator, context):
        grpc = _grpc()
        certified = None
        if self.tls.mutual:
            names = context.auth_context().get("x509_common_name", [])
            certified = self.roster.get(names[0].decode(errors="replace") if names else "")
            if certified is None:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate not in the roster")
        try:
            hello = decode_envelope(next(request_iterator))
            if hello.kind is not Kind.HELLO or field_of(hello.header, "task", str) != TASK:
                raise MalformedMessage("the first message must be a key-ceremony HELLO")
            bank = field_of(hello.header, "client", int)
        except (StopIteration, MalformedMessage) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"MalformedMessage: {exc}")
        if not 0 <= bank < self.config.banks or (certified is not None and certified != bank):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"not bank {bank}")
        peer = _Peer(bank)
        with self._lock:
            current = self._peers.get(bank)
            if current is not None and not current.closed.is_set():
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"bank {bank} is already connected")
            self._peers[bank] = peer
        self._events.put(("joined", bank, peer, None))
        log.info("bank %d connected", bank)

        def read():
            try:
                for raw in request_iterator:
                    self._events.put(("message", bank, peer, raw))
            except Exception:  # noqa: BLE001 - the stream broke: the bank is gone
                pass
            peer.close()
            self._events.put(("gone", bank, peer, None))

        threading.Thread(target=read, daemon=True).start()
        while True:
            item = peer.outbox.get()
            if item is None:
                return
            yield item

    # ---------------------------------------------------------------- driver

    def _connected(self) -> set[int]:
        with self._lock:
            return {b for b, p in self._peers.items() if not p.closed.is_set()}

    def _broadcast(self, envelope_for: Callable[[int], Envelope]) -> None:
        with self._lock:
            peers = [p for p in self._peers.values() if not p.closed.is_set()]
        for peer in peers:
            peer.send(envelope_for(peer.bank))

    def serve(self, on_started: Callable[[int], None] | None = None) -> RelayOutcome:
        """Run ceremonies until one completes (returns its outcome) or ``attempts`` aborted (AbortError)."""
        from secagg.paillier.dkg import CoordinatorState, DkgCoordinator, new_ceremony_id

        self._server.start()
        log.info("key-ceremony relay listening on port %d (%s)", self.port,
                 "INSECURE, no TLS" if self.tls.insecure else "mutual TLS" if self.tls.mutual else "TLS")
        if on_started is not None:
            on_started(self.port)
        started = time.perf_counter()
        try:
            for attempt in range(self.attempts):
                self._wait_for_everyone()
                self.outcome.attempts += 1
                ceremony = new_ceremony_id()
                coordinator = DkgCoordinator(self.config, ceremony, self.verify_keys)
                attempt_started = time.perf_counter()
                members = self._connected()
                header = {"ceremony_id": ceremony.hex(), "config": self.config.digest().hex(), "attempt": attempt}
                self._broadcast(lambda b: Envelope(Kind.SESSION, header))
                log.info("ceremony %s started (attempt %d)", ceremony.hex(), attempt + 1)
                deadline = time.monotonic() + self.round_deadline
                while not coordinator.finished:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        outbox = coordinator.close_round()
                        self._deliver(outbox)
                        break
                    try:
                        kind, bank, peer, raw = self._events.get(timeout=min(timeout, 0.5))
                    except queue.Empty:
                        continue
                    if kind == "joined":
                        continue
                    if kind == "gone":
                        if bank in members:
                            self._deliver(coordinator.abort(f"bank {bank} disconnected in round {coordinator.round}",
                                                             missing={bank}))
                        continue
                    if bank not in members:
                        continue
                    try:
                        envelope = decode_envelope(raw)
                        if envelope.kind is not Kind.PROTOCOL:
                            raise MalformedMessage(f"unexpected {envelope.kind.name}")
                        round_before = coordinator.round
                        outbox = coordinator.receive(bank, envelope.blob)
                    except ProtocolViolation as exc:
                        log.warning("bank %d: %s: %s", bank, type(exc).__name__, exc)
                        coordinator.misbehaving[bank] = str(exc)
                        self._deliver(coordinator.abort(f"bank {bank} sent an invalid message: {exc}"))
                        continue
                    if coordinator.round != round_before:
                        deadline = time.monotonic() + self.round_deadline
                    self._deliver(outbox)
                if coordinator.state is CoordinatorState.COMPLETED:
                    public = coordinator.public_key
                    if public is None:  # a completed ceremony has its key: typed anyway
                        raise SessionStateError("the key ceremony completed without a public key")
                    self.outcome.public_key, self.outcome.signatures = public, coordinator.signatures
                    self.outcome.rounds = coordinator.stats.rounds
                    self.outcome.bytes_relayed = coordinator.stats.bytes_in + coordinator.stats.bytes_out
                    self.outcome.last_attempt_seconds = time.perf_counter() - attempt_started
                    self.outcome.seconds = time.perf_counter() - started
                    fingerprint = public.fingerprint.hex()
                    self._broadcast(lambda b: Envelope(Kind.SESSION_END, {"fingerprint": fingerprint, "final": True}))
                    time.sleep(0.5)
                    self._broadcast(lambda b: Envelope(Kind.FINISHED))
                    log.info("ceremony complete: key fingerprint %s (%d rounds, %.1f MB relayed)", fingerprint,
                             self.outcome.rounds, self.outcome.bytes_relayed / 1e6)
                    return self.outcome
                reason = coordinator.abort_reason or "aborted"
                self.outcome.aborted.append(reason)
                log.warning("ceremony %s aborted: %s; starting afresh when every bank is connected", ceremony.hex(),
                            reason)
            raise AbortError(f"the key ceremony aborted {self.attempts} times; last: {self.outcome.aborted[-1]}",
                             round="dkg")
        finally:
            time.sleep(0.2)
            with self._lock:
                for peer in self._peers.values():
                    peer.close()
            self._server.stop(grace=1.0)

    def _wait_for_everyone(self) -> None:
        deadline = time.monotonic() + self.join_deadline
        while self._connected() != set(range(self.config.banks)):
            if time.monotonic() > deadline:
                raise AbortError(f"banks {sorted(set(range(self.config.banks)) - self._connected())} did not "
                                 f"connect within {self.join_deadline:g} s", round="dkg")
            try:
                self._events.get(timeout=0.2)
            except queue.Empty:
                pass
        # stale events of a previous attempt say nothing about this one
        while True:
            try:
                kind, bank, peer, raw = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "gone":
                self._events.put((kind, bank, peer, raw))
                break

    def _deliver(self, outbox: Mapping[int, bytes]) -> None:
        with self._lock:
            peers = dict(self._peers)
        for bank, data in outbox.items():
            peer = peers.get(bank)
            if peer is not None:
                peer.send(Envelope(Kind.PROTOCOL, blob=data))


class CeremonyBank:
    """A bank process: connects to the relay, takes part in every ceremony it announces, and once
    one completes writes its key share and the public key under ``out_dir``.

    ``fault_exit_at_round`` (TESTS ONLY) ends the process abruptly when its first ceremony reaches
    that round, as a crash would.
    """

    def __init__(self, target: str, bank: int, config, identity, verify_keys: Mapping[int, bytes], *,
                 tls: TLSConfig, out_dir: str | os.PathLike, give_up_after: float = 120.0,
                 fault_exit_at_round: int | None = None) -> None:
        self.target, self.bank, self.config, self.identity = target, bank, config, identity
        self.verify_keys = {int(i): bytes(k) for i, k in verify_keys.items()}
        self.tls, self.out_dir, self.give_up_after = tls, Path(out_dir), float(give_up_after)
        self.fault_exit_at_round = fault_exit_at_round
        self.written: list[Path] = []
        self.ceremonies = 0
        self.stats: CeremonyStats | None = None  # of the ceremony that wrote this bank's share

    def _channel(self):
        grpc = _grpc()
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", -1),
                   *_KEEPALIVE]
        if self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        if self.tls.insecure:
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, self.tls.channel_credentials(), options=options)

    def run(self) -> list[Path]:
        """Take part until a ceremony completes; the files written."""
        grpc = _grpc()
        last_progress, delay = time.monotonic(), 0.2
        with self._channel() as channel:
            call = channel.stream_stream(SERVICE_METHOD)
            while True:
                try:
                    if self._one_stream(call):
                        return self.written
                    last_progress = time.monotonic()
                except grpc.RpcError as exc:
                    if time.monotonic() - last_progress > self.give_up_after:
                        raise NetworkError(f"bank {self.bank}: relay at {self.target} unreachable ({exc.code().name}: "
                                           f"{exc.details()}); giving up") from None
                time.sleep(delay * secrets.SystemRandom().uniform(0.5, 1.0))
                delay = min(2 * delay, 5.0)

    def _one_stream(self, call) -> bool:
        from secagg.paillier.dkg import DkgBank

        requests: queue.Queue = queue.Queue()
        requests.put(Envelope(Kind.HELLO, {"client": self.bank, "task": TASK}).encode())

        def outgoing():
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        responses = call(outgoing())
        bank = None
        try:
            for raw in responses:
                try:
                    envelope = decode_envelope(raw)
                except MalformedMessage as exc:
                    raise ProtocolViolation(f"relay sent a malformed envelope: {exc}", party="server") from None
                if envelope.kind is Kind.SESSION:
                    if field_of(envelope.header, "config", str) != self.config.digest().hex():
                        raise ProtocolViolation("the relay announces other ceremony parameters than this bank's "
                                                "(banks, threshold, key size)", party="server")
                    try:
                        ceremony = bytes.fromhex(field_of(envelope.header, "ceremony_id", str))
                    except ValueError:
                        raise ProtocolViolation("malformed ceremony id", party="server") from None
                    bank = DkgBank(self.config, self.bank, ceremony, self.identity, self.verify_keys)
                    self.ceremonies += 1
                    requests.put(Envelope(Kind.PROTOCOL, blob=bank.start()).encode())
                elif envelope.kind is Kind.PROTOCOL:
                    if bank is None:
                        raise ProtocolViolation("protocol message before the ceremony", party="server")
                    if self.fault_exit_at_round is not None and self.ceremonies == 1 \
                            and bank.round >= self.fault_exit_at_round:
                        log.warning("bank %d: TEST fault injection: exiting at round %d", self.bank, bank.round)
                        os._exit(17)
                    try:
                        reply = bank.handle(envelope.blob)
                    except AbortError as exc:
                        log.warning("bank %d: %s", self.bank, exc)
                        bank = None
                        continue
                    except SecAggError as exc:
                        log.warning("bank %d refuses the ceremony: %s: %s", self.bank, type(exc).__name__, exc)
                        requests.put(Envelope(Kind.PROTOCOL, blob=bank.abort_message(
                            f"{type(exc).__name__}: {exc}")).encode())
                        bank = None
                        continue
                    if reply is not None:
                        requests.put(Envelope(Kind.PROTOCOL, blob=reply).encode())
                    elif bank.key_share is not None:
                        self.stats = bank.stats
                        self._write(bank)
                elif envelope.kind is Kind.SESSION_END:
                    if not self.written:
                        raise ProtocolViolation("the relay ended the ceremony before this bank saw every "
                                                "signature", party="server")
                    if envelope.header.get("fingerprint") != bank_fingerprint(self.written):
                        raise ProtocolViolation("the relay reports another key than this bank's", party="server")
                elif envelope.kind is Kind.FINISHED:
                    return bool(self.written)
            return bool(self.written)
        finally:
            requests.put(None)
            responses.cancel()

    def _write(self, bank) -> None:
        from secagg.paillier.threshold import save_key_material

        self.written = save_key_material(self.out_dir, bank.public_key, [bank.key_share])
        log.info("bank %d: key share written (%s), public key fingerprint %s", self.bank, self.written[1],
                 bank.public_key.fingerprint.hex())


def bank_fingerprint(written: list[Path]) -> str:
    import json

    return json.loads(Path(written[0]).read_text())["fingerprint"]
