"""Shared pieces of the benchmarks: machine facts, the crypto floor, one measured secagg session."""

from __future__ import annotations

import os
import platform
import sys
import time
import tracemalloc
from datetime import datetime, timezone

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import secagg
from secagg.crypto.prg import DEFAULT_CHUNK_BYTES
from secagg.errors import AbortError
from secagg.protocol.graph import HolderGraph


def machine_info() -> dict:
    """Where and with what the figures were measured."""
    import cryptography
    import galois

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__,
            "cryptography": cryptography.__version__, "galois": galois.__version__, "secagg": secagg.__version__}
    try:
        import flwr

        info["flwr"] = flwr.__version__
    except ImportError:
        pass
    return info


def aes_ctr_bytes_per_second(total_bytes: int = 1 << 29) -> float:
    """Raw AES-256-CTR key-stream rate into a preallocated buffer (best of 3)."""
    chunk = DEFAULT_CHUNK_BYTES
    zeros, out = bytes(chunk), bytearray(chunk + 16)
    best = float("inf")
    for _ in range(3):
        enc = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor()
        start = time.perf_counter()
        for _ in range(total_bytes // chunk):
            enc.update_into(zeros, out)
        best = min(best, time.perf_counter() - start)
    return total_bytes / best


def x25519_seconds_per_operation(count: int = 2000) -> float:
    """One X25519 scalar multiplication (agreement with a fresh peer key), best of 3."""
    keys = [X25519PrivateKey.generate() for _ in range(count)]
    peer = X25519PrivateKey.generate().public_key()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for key in keys:
            key.exchange(peer)
        best = min(best, time.perf_counter() - start)
    return best / count


class Floor:
    """The machine's crypto floor, measured once per benchmark run."""

    def __init__(self) -> None:
        self.aes_bytes_per_second = aes_ctr_bytes_per_second()
        self.x25519_seconds = x25519_seconds_per_operation()

    def seconds(self, mask_bytes: float, x25519_ops: float) -> float:
        return mask_bytes / self.aes_bytes_per_second + x25519_ops * self.x25519_seconds

    def as_dict(self) -> dict:
        return {"aes_ctr_bytes_per_s": self.aes_bytes_per_second, "x25519_s_per_op": self.x25519_seconds}


def protocol_work(config: secagg.SecAggConfig, result: secagg.SimulationResult) -> dict[str, int]:
    """Mask expansions and X25519 operations this run needed, for the clients and the server."""
    n = config.num_clients
    gone = {name: set(ids) for name, ids in result.dropped.items()}
    u1 = set(range(n)) - gone.get("advertise_keys", set())
    u2 = u1 - gone.get("share_keys", set())
    u3 = u2 - gone.get("masked_input", set())
    dropped = u2 - u3
    graph = HolderGraph(np.array(sorted(u1)), result.holders)
    peers = {u: set(graph.partners(u).tolist()) for u in u1}
    surviving_partners = {v: len(peers[v] & u3) for v in dropped}
    return {
        # every survivor expands its self mask and one mask per live partner
        "client_expansions": sum(len(peers[u] & u2) + 1 for u in u3),
        # two key generations each; in round 1 two agreements (cipher, mask) with every listed peer
        "client_x25519": 2 * len(u1) + sum(2 * len(peers[u] & u1) for u in u2),
        "server_expansions": len(u3) + sum(surviving_partners.values()),
        "server_x25519": sum(c + 1 for c in surviving_partners.values()),
    }


def warm_up() -> None:
    """galois JIT and imports, once per process, so no measured run pays for them."""
    cfg = secagg.SecAggConfig(num_clients=4, threshold=3, vector_length=8)
    secagg.simulate(cfg, [np.zeros(8, np.uint32)] * 4)


def run_session(n: int, m: int, neighbors: int | None, threshold: int, floor: Floor, *, dropout: float = 0.0,
                drop_round: str = "masked_input", bits: int = 32, seed: int = 0) -> dict:
    """One secagg session: per-round costs, bytes, the floor of this run's work, exactness."""
    config = secagg.SecAggConfig(num_clients=n, threshold=threshold, vector_length=m, modulus_bits=bits,
                                 neighbors=neighbors)
    gen = np.random.default_rng(seed)
    ring = config.ring
    inputs = [gen.integers(0, ring.modulus, size=m, dtype=np.uint64).astype(ring.dtype) if bits < 64
              else gen.integers(0, 2**64, size=m, dtype=np.uint64) for _ in range(n)]
    dropped = gen.choice(n, size=int(round(dropout * n)), replace=False).tolist()
    row = {"n": n, "m": m, "graph": "complete" if neighbors is None else f"k={neighbors}", "neighbors": neighbors,
           "threshold": threshold, "bits": bits, "dropout": dropout, "drop_round": drop_round,
           "dropped": len(dropped)}
    start = time.perf_counter()
    try:
        result = secagg.simulate(config, inputs, drop={drop_round: dropped})
    except AbortError as exc:
        return row | {"ok": False, "abort_round": exc.round, "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    work = protocol_work(config, result)
    element = ring.element_bytes
    client_floor = floor.seconds(work["client_expansions"] * m * element, work["client_x25519"])
    server_floor = floor.seconds(work["server_expansions"] * m * element, work["server_x25519"])
    rounds = {r.round: r for r in result.rounds}
    bytes_up = sum(result.bytes_sent.values())
    bytes_down = sum(r.bytes_to_clients for r in result.rounds)
    return row | {
        "ok": True,
        "exact": bool(np.array_equal(result.aggregate, ring.sum([inputs[u] for u in result.survivors]))),
        "survivors": len(result.survivors),
        "wall_s": wall,
        "client_s_mean": sum(r.client_seconds_mean for r in result.rounds),
        "client_s_max": sum(r.client_seconds_max for r in result.rounds),
        "server_s": result.server_seconds,
        "rounds": {name: {"client_ms_mean": 1e3 * r.client_seconds_mean, "client_ms_max": 1e3 * r.client_seconds_max,
                          "server_ms": 1e3 * r.server_seconds, "dropped": r.dropped,
                          "bytes_to_server": r.bytes_to_server, "bytes_to_clients": r.bytes_to_clients}
                   for name, r in rounds.items()},
        "bytes_per_client_up": bytes_up / max(1, sum(1 for b in result.bytes_sent.values() if b)),
        "bytes_total": bytes_up + bytes_down,
        **work,
        "floor_s": client_floor + server_floor,
        "client_floor_s": client_floor,
        "server_floor_s": server_floor,
        "ratio": wall / (client_floor + server_floor),
        "server_ratio": result.server_seconds / server_floor if server_floor else float("nan"),
    }


def masked_input_peak_vectors(m: int) -> float:
    """Peak memory of one client's masked-input step, in input vectors (tracemalloc)."""
    cfg = secagg.SecAggConfig(num_clients=10, threshold=7, vector_length=m)
    session = bytes(16)
    server = secagg.ServerSession(cfg, session)
    clients = [secagg.ClientSession(cfg, u, session, np.zeros(m, np.uint32)) for u in range(10)]
    outbox = {}
    for u, c in enumerate(clients):
        outbox = server.receive(u, c.start()) or outbox
    replies = {u: clients[u].handle(data) for u, data in outbox.items()}
    for u, data in replies.items():
        outbox = server.receive(u, data) or outbox
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    clients[0].handle(outbox[0])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak - before) / (m * cfg.ring.element_bytes)
