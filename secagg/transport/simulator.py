"""In-process driver: every client and the server in one process, messages as real bytes.

Each party does its own work exactly as it would on its own machine: every message is encoded,
decoded and decrypted by the party receiving it, and no computation is shared between parties,
so the per-party timings are honest. Dropouts follow a schedule: a client listed under a round
vanishes before sending that round's message, and the server closes the round as a deadline would.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from secagg.crypto import shamir
from secagg.crypto.randomness import RandomSource, TestOnlySeededRandomness, system_randomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import ParameterError, SessionStateError
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.messages import SESSION_ID_BYTES
from secagg.protocol.server import ServerSession, ServerState

__all__ = ["RoundReport", "SimulationResult", "simulate", "warm_up", "ROUND_NAMES"]

ROUND_NAMES = tuple(r.value for r in Round)


@dataclass(frozen=True)
class RoundReport:
    """What happened in one round, and what it cost each party."""

    round: str
    expected: int  # clients the round started with
    dropped: int  # of those, clients whose message never arrived
    survivors: int  # clients whose message the server accepted
    client_seconds_mean: float
    client_seconds_max: float
    server_seconds: float
    bytes_to_server: int
    bytes_to_clients: int


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of :func:`simulate`: the server's output plus per-round costs."""

    aggregate: np.ndarray  # sum of the survivors' inputs mod 2**modulus_bits
    survivors: list[int]  # sorted ids whose inputs are in the aggregate
    rounds: list[RoundReport]
    dropped: dict[str, list[int]]  # per round, clients whose message never arrived
    config: SecAggConfig
    session_id: bytes = field(repr=False, default=b"")
    bytes_sent: dict[int, int] = field(repr=False, default_factory=dict)  # per client, whole session
    holders: dict[int, np.ndarray] | None = field(repr=False, default=None)  # SecAgg+: each client's draw

    @property
    def server_seconds(self) -> float:
        return sum(r.server_seconds for r in self.rounds)

    @property
    def client_seconds(self) -> float:
        """Wall time of the slowest client, summed over rounds (its critical path)."""
        return sum(r.client_seconds_max for r in self.rounds)


def _schedule(config: SecAggConfig, drop: Mapping[str, Iterable[int]] | None) -> dict[Round, set[int]]:
    schedule: dict[Round, set[int]] = {r: set() for r in Round}
    if drop is None:
        return schedule
    if not isinstance(drop, Mapping):
        raise ParameterError("drop must map round names to client ids")
    for name, ids in drop.items():
        try:
            round_name = Round(str(name))
        except ValueError:
            raise ParameterError(f"unknown round {name!r} in drop; rounds are {', '.join(ROUND_NAMES)}") from None
        for client in ids:
            if isinstance(client, bool) or not isinstance(client, (int, np.integer)) \
                    or not 0 <= client < config.num_clients:
                raise ParameterError(f"drop[{name!r}] names {client!r}, not a client id in 0..{config.num_clients - 1}")
            schedule[round_name].add(int(client))
    if not config.malicious:
        # No consistency round without the malicious mode: those clients vanish before unmasking.
        schedule[Round.UNMASKING] |= schedule.pop(Round.CONSISTENCY_CHECK)
    return schedule


def warm_up() -> None:
    """Share and reconstruct once, so that first-call costs (imports, allocations) are billed to
    no party: milliseconds since reconstruction left galois' JIT-compiled kernels (1.6-3 s).

    ``simulate`` calls it before timing anything.
    """
    rng = TestOnlySeededRandomness(0)
    shares = shamir.share(np.arange(3), 2, [1, 2, 3], rng)
    shamir.reconstruct(np.array([[1, 2]]), shares[None, :2])


def simulate(
    config: SecAggConfig,
    inputs: Sequence[object],
    drop: Mapping[str, Iterable[int]] | None = None,
    seed: int | bytes | None = None,
    *,
    session_id: bytes | None = None,
) -> SimulationResult:
    """Run one secure-aggregation session in process and return the server's result.

    ``inputs``: n integer vectors of length m with values in [0, 2**modulus_bits).
    ``drop``: round name -> clients that vanish before sending that round's message.
    ``seed``: None for real randomness; an int/bytes makes the run reproducible (TEST ONLY: the
    seed determines every key).

    Raises :class:`AbortError` when fewer than ``threshold`` clients remain in a round.
    """
    if not isinstance(config, SecAggConfig):
        raise ParameterError("config must be a SecAggConfig")
    n, ring = config.num_clients, config.ring
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__") or len(inputs) != n:
        raise ParameterError(f"inputs must be a sequence of {n} vectors (one per client)")
    vectors = [ring.element(v, length=config.vector_length, name=f"inputs[{i}]") for i, v in enumerate(inputs)]
    schedule = _schedule(config, drop)
    root: RandomSource = system_randomness() if seed is None else TestOnlySeededRandomness(seed)

    def party_rng(label: str) -> RandomSource:
        return root.child(label.encode()) if isinstance(root, TestOnlySeededRandomness) else root

    if session_id is None:
        session_id = party_rng("session").random_bytes(SESSION_ID_BYTES)
    identities = verify_keys = None
    if config.malicious:
        identities = [IdentityKey.generate(party_rng(f"identity/{u}")) for u in range(n)]
        verify_keys = {u: key.public_bytes for u, key in enumerate(identities)}
    warm_up()

    server = ServerSession(config, session_id, verify_keys=verify_keys)
    clients = {u: ClientSession(config, u, session_id, vectors[u], rng=party_rng(f"client/{u}"),
                                identity=identities[u] if identities else None, verify_keys=verify_keys)
               for u in range(n)}
    del vectors
    alive = set(range(n))
    bytes_sent = dict.fromkeys(range(n), 0)
    inbox: dict[int, bytes] = {}
    reports = []
    rounds = [r for r in Round if config.malicious or r is not Round.CONSISTENCY_CHECK]
    for round_name in rounds:
        participants = sorted(alive) if round_name is Round.ADVERTISE_KEYS else sorted(inbox)
        expected = len(server.expected_clients)
        client_times: list[float] = []
        server_time = 0.0
        bytes_up = 0
        bytes_down = sum(len(b) for b in inbox.values())
        outbox: dict[int, bytes] = {}
        for u in participants:
            if u in schedule[round_name]:
                alive.discard(u)
            if u not in alive:
                continue
            start = time.perf_counter()
            reply = clients[u].start() if round_name is Round.ADVERTISE_KEYS else clients[u].handle(inbox.pop(u))
            client_times.append(time.perf_counter() - start)
            if reply is None:  # a client session answers every server message of these rounds: typed anyway
                raise SessionStateError(f"client {u} has no reply in round {round_name.value}")
            bytes_up += len(reply)
            bytes_sent[u] += len(reply)
            start = time.perf_counter()
            closed = server.receive(u, reply)
            server_time += time.perf_counter() - start
            if closed or server.state is not ServerState(round_name.value):
                outbox = closed
        if server.state is ServerState(round_name.value):
            start = time.perf_counter()
            outbox = server.close_round()
            server_time += time.perf_counter() - start
        dropped_now = len(server.dropped.get(round_name.value, []))
        reports.append(RoundReport(
            round=round_name.value, expected=expected, dropped=dropped_now, survivors=expected - dropped_now,
            client_seconds_mean=float(np.mean(client_times)) if client_times else 0.0,
            client_seconds_max=max(client_times, default=0.0), server_seconds=server_time,
            bytes_to_server=bytes_up, bytes_to_clients=bytes_down))
        inbox = outbox
    result = server.result
    if result is None:  # unreachable: the last round either completes or raises AbortError
        raise SessionStateError(f"session ended in state {server.state.value}")
    holders = {u: c.drawn_holders for u, c in clients.items() if c.drawn_holders is not None} \
        if config.is_sparse else None
    return SimulationResult(result.aggregate, result.survivors, reports, result.dropped, config, session_id,
                            bytes_sent, holders)
