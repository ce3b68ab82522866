"""The SecAgg+ dropout cascade: ServerSession.close_round of the first round, worst case vs random.

    .venv/bin/python benchmarks/bench_cascade.py            # n = 500, 1000, 2000 (K = 20, t = 11)
    .venv/bin/python benchmarks/bench_cascade.py --n 20000

Protocol version 1 rescanned every client's neighbours on every pruning pass, so k - t + 1 clients
adjacent on its public ring that never advertised made close_round quadratic (12.6 s at n = 2000).
Here the worst case is built directly: every client's advertised holders are the next K ids, and
the first K - t + 1 clients never advertise, so each removal makes exactly one more client short
and everyone falls, one after the other (an abort, after the longest possible cascade). Beside it:
10% and 40% of the clients absent at random, with honestly drawn holders. The time includes
building the transcript tree and every KeyDirectory when the session goes on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from secagg.crypto.keys import AgreementKey
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.errors import AbortError
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import draw_holders
from secagg.protocol.messages import AdvertiseKeys
from secagg.protocol.server import ServerSession

SID = bytes(16)


def adverts(n: int, k: int, chain: bool, seed: int = 0) -> dict[int, bytes]:
    rng = TestOnlySeededRandomness(seed)
    out = {}
    for u in range(n):
        c, s = AgreementKey.generate(rng), AgreementKey.generate(rng)
        holders = np.sort([(u + d) % n for d in range(1, k + 1)]) if chain else draw_holders(u, n, k, rng)
        out[u] = AdvertiseKeys(SID, u, c.public_bytes, s.public_bytes, holders).encode()
    return out


def close_round_seconds(n: int, k: int, t: int, absent: set[int], messages: dict[int, bytes]) -> tuple[float, str]:
    config = SecAggConfig(num_clients=n, threshold=t, vector_length=1, neighbors=k, unsafe_skip_bounds=True)
    server = ServerSession(config, SID)
    for u, data in messages.items():
        if u not in absent:
            server.receive(u, data)
    start = time.perf_counter()
    try:
        outbox = server.close_round()
        outcome = f"{len(outbox)} directories"
    except AbortError:
        outcome = "aborted: everyone fell"
    return time.perf_counter() - start, outcome


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")  # unsafe_skip_bounds: a timing benchmark, not a deployment
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--t", type=int, default=11)
    args = parser.parse_args()
    k, t = args.k, args.t
    print(f"SecAgg+ close_round of advertise_keys, K = {k}, t = {t} (seconds)")
    print(f"{'n':>7} {'worst-case chain':>18} {'10% absent':>12} {'40% absent':>12}")
    for n in args.n:
        chain = adverts(n, k, chain=True)
        worst, outcome = close_round_seconds(n, k, t, set(range(k - t + 1)), chain)
        honest = adverts(n, k, chain=False)
        rng = np.random.default_rng(n)
        times = []
        for fraction in (0.1, 0.4):
            absent = set(rng.choice(n, size=int(fraction * n), replace=False).tolist())
            times.append(close_round_seconds(n, k, t, absent, honest)[0])
        print(f"{n:>7} {worst:>13.3f} ({outcome.split(':')[0]}) {times[0]:>12.3f} {times[1]:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
