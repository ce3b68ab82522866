"""Client and server cost of the masking protocol, beside the machine's crypto floor.

For every cell of the grid (clients n, graph, dropout) this runs ``secagg.simulate`` once in a
warm process and prints each party's time per round. Beside it stands the *crypto floor* of the
same run: the time this machine's AES-256-CTR takes to expand exactly the mask bytes the protocol
needed (all parties together) plus the time of the X25519 operations it needed, both measured in
this process just before the grid. ``ratio`` = simulate wall time / floor.

Dropouts happen in the masked-input round: the dropped clients received their peers' shares but
never sent a masked input, so the server must reconstruct their mask keys and remove their pairwise
masks from every surviving neighbour (the expensive case).

    python benchmarks/bench_core.py            # n in {100, 500}: a few minutes
    python benchmarks/bench_core.py --quick    # n = 100 only
    python benchmarks/bench_core.py --json benchmarks/results/core.json
"""

from __future__ import annotations

import argparse
import json
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
from secagg.protocol.graph import NeighbourGraph, choose_graph_parameters


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


def protocol_work(config: secagg.SecAggConfig, result: secagg.SimulationResult) -> tuple[int, int]:
    """(mask expansions, X25519 operations) the protocol needed in this run, all parties together."""
    n = config.num_clients
    graph = NeighbourGraph.for_config(config, result.session_id)
    gone = {name: set(ids) for name, ids in result.dropped.items()}
    u1 = set(range(n)) - gone.get("advertise_keys", set())
    u2 = u1 - gone.get("share_keys", set())
    u3 = u2 - gone.get("masked_input", set())
    dropped = u2 - u3
    peers = {u: set(graph.neighbours(u).tolist()) for u in u1}
    x25519 = 2 * len(u1)  # key generation
    x25519 += sum(len(peers[u] & u1) for u in u2)  # share-encryption agreements
    x25519 += sum(len(peers[u] & u2) for u in u3)  # pairwise-mask agreements
    x25519 += sum(len(peers[v] & u3) + 1 for v in dropped)  # server: masks of dropped clients + key check
    expansions = sum(len(peers[u] & u2) + 1 for u in u3)  # clients: pairwise + self masks
    expansions += len(u3) + sum(len(peers[v] & u3) for v in dropped)  # server
    return expansions, x25519


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


def run_cell(n: int, m: int, neighbors: int | None, threshold: int, dropout: float,
             aes_rate: float, x25519_time: float) -> dict:
    config = secagg.SecAggConfig(num_clients=n, threshold=threshold, vector_length=m, neighbors=neighbors)
    gen = np.random.default_rng(n)
    inputs = [gen.integers(0, 2**32, size=m, dtype=np.uint32) for _ in range(n)]
    dropped = gen.choice(n, size=int(round(dropout * n)), replace=False).tolist()
    start = time.perf_counter()
    result = secagg.simulate(config, inputs, drop={"masked_input": dropped})
    wall = time.perf_counter() - start
    expected = config.ring.sum([inputs[u] for u in result.survivors])
    expansions, x25519_ops = protocol_work(config, result)
    mask_bytes = expansions * m * config.ring.element_bytes
    floor = mask_bytes / aes_rate + x25519_ops * x25519_time
    return {
        "n": n, "m": m, "graph": "complete" if neighbors is None else f"k={neighbors}",
        "neighbors": neighbors, "threshold": threshold, "dropout": dropout,
        "exact": bool(np.array_equal(result.aggregate, expected)), "survivors": len(result.survivors),
        "rounds": [{"round": r.round, "client_ms_mean": 1e3 * r.client_seconds_mean,
                    "client_ms_max": 1e3 * r.client_seconds_max, "server_ms": 1e3 * r.server_seconds,
                    "bytes_to_server": r.bytes_to_server, "bytes_to_clients": r.bytes_to_clients}
                   for r in result.rounds],
        "wall_s": wall, "mask_bytes": mask_bytes, "x25519_ops": x25519_ops,
        "floor_s": floor, "floor_aes_s": mask_bytes / aes_rate, "floor_x25519_s": x25519_ops * x25519_time,
        "ratio": wall / floor,
    }


def machine_info() -> dict:
    import cryptography
    import galois

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "numpy": np.__version__,
            "cryptography": cryptography.__version__, "galois": galois.__version__, "secagg": secagg.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 100 only")
    parser.add_argument("--clients", type=int, nargs="*", default=None, help="override the n grid")
    parser.add_argument("--length", type=int, default=100_000, help="vector length m")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = parser.parse_args()
    ns = args.clients or ([100] if args.quick else [100, 500])
    m = args.length

    info = machine_info()
    print(f"# secagg core benchmark, {info['date']}, {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
          f"cryptography {info['cryptography']}, numpy {info['numpy']}, galois {info['galois']}")
    warm_cfg = secagg.SecAggConfig(num_clients=4, threshold=3, vector_length=8)
    secagg.simulate(warm_cfg, [np.zeros(8, np.uint32)] * 4)  # galois JIT, imports: once per process
    aes_rate = aes_ctr_bytes_per_second()
    x25519_time = x25519_seconds_per_operation()
    peak = masked_input_peak_vectors(m)
    print(f"# crypto floor of this run: AES-256-CTR {aes_rate / 1e9:.2f} GB/s, X25519 {1e6 * x25519_time:.1f} us/op")
    print(f"# one client's masked-input step, m={m:,}: peak allocation {peak:.2f} input vectors (tracemalloc)")
    print()
    header = (f"{'n':>4} {'graph':>9} {'t':>4} {'drop':>5} | {'client ms (share / mask / unmask)':>33} | "
              f"{'server ms (share / mask / unmask)':>33} | {'wall s':>7} {'floor s':>7} {'ratio':>5} exact")
    print(header)
    print("-" * len(header))
    cells = []
    for n in ns:
        params = choose_graph_parameters(n, 0.3, 0.05)
        graphs = [(None, (2 * n) // 3 + 1)]
        if params.neighbors is not None:
            graphs.append((params.neighbors, params.threshold))
        for neighbors, threshold in graphs:
            for dropout in (0.0, 0.1, 0.3):
                cell = run_cell(n, m, neighbors, threshold, dropout, aes_rate, x25519_time)
                cells.append(cell)
                r = {x["round"]: x for x in cell["rounds"]}
                client = " / ".join(f"{r[k]['client_ms_mean']:.1f}" for k in ("share_keys", "masked_input", "unmasking"))
                server = " / ".join(f"{r[k]['server_ms']:.1f}" for k in ("share_keys", "masked_input", "unmasking"))
                print(f"{n:>4} {cell['graph']:>9} {threshold:>4} {dropout:>5.0%} | {client:>33} | {server:>33} | "
                      f"{cell['wall_s']:>7.2f} {cell['floor_s']:>7.2f} {cell['ratio']:>5.2f} {cell['exact']}",
                      flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": info, "aes_ctr_bytes_per_s": aes_rate, "x25519_s_per_op": x25519_time,
                       "masked_input_peak_vectors": peak, "cells": cells}, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
