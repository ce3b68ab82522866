"""Silent streams against honest clients: can a peer that never says hello lock clients out?

    .venv/bin/python benchmarks/bench_lockout.py                       # this version
    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_lockout.py  # the same run on another version

A coordinator (``SumTask``, n = 10, m = 10,000, plaintext transport on 127.0.0.1) runs 60 sessions (after one warm-up job)
with n honest clients in threads, first alone and then beside an attacker that keeps ``k`` streams
open that never send a hello, re-opening each one as soon as the coordinator cuts it off. For
each ``k`` it reports the job's wall time (from the honest clients' start to the last decoded sum), its ratio to
the run without attacker, how often the honest clients were refused, whether every session had every client and the last sum was exact,
and the security events the coordinator logged (when the version counts them).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from secagg.protocol.config import SecAggConfig  # noqa: E402
from secagg.transport.network import SERVICE_METHOD, Coordinator, NetworkClient, RetryPolicy, TLSConfig  # noqa: E402
from secagg.transport.tasks import SumClient, SumTask  # noqa: E402

INSECURE = TLSConfig(insecure=True)


class Attacker:
    """Keeps ``count`` silent streams open, re-opening each one the moment it ends."""

    def __init__(self, target: str, count: int) -> None:
        self.target, self.count = target, count
        self.stop = threading.Event()
        self.opened = 0
        self.threads = [threading.Thread(target=self._hold, daemon=True) for _ in range(count)]

    def _silent(self):
        self.stop.wait(120)
        return
        yield  # makes this a generator that sends nothing

    def _hold(self) -> None:
        channel = grpc.insecure_channel(self.target)
        while not self.stop.is_set():
            self.opened += 1
            call = channel.stream_stream(SERVICE_METHOD)(self._silent(), timeout=120)
            try:
                for _ in call:
                    pass
            except grpc.RpcError:
                pass
        channel.close()

    def start(self) -> "Attacker":
        for t in self.threads:
            t.start()
        return self


def one_session(n: int, m: int, silent: int, sessions: int) -> dict:
    config = SecAggConfig(num_clients=n, threshold=(2 * n + 2) // 3, vector_length=m)
    task = SumTask(config, sessions=sessions)
    coordinator = Coordinator(task, n, address="127.0.0.1:0", tls=INSECURE, linger=0.2)
    listening = threading.Event()
    server = threading.Thread(target=coordinator.serve, args=(lambda port: listening.set(),), daemon=True)
    server.start()
    listening.wait(30)
    target = f"127.0.0.1:{coordinator.port}"
    attacker = Attacker(target, silent).start()
    time.sleep(0.5)  # the attacker's streams are in before any honest client
    started = time.perf_counter()
    rng = np.random.default_rng(5)
    inputs = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
    outcomes: dict = {}

    def run(i: int) -> None:
        client = NetworkClient(target, i, SumClient(inputs[i], repeat=True), tls=INSECURE,
                               retry=RetryPolicy(initial=0.05, maximum=0.5, give_up_after=120))
        try:
            outcomes[i] = client.run()
        except Exception as exc:  # noqa: BLE001 - reported
            outcomes[i] = exc

    clients = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(300)
    server.join(300)
    seconds = time.perf_counter() - started
    attacker.stop.set()
    expected = config.ring.sum([config.ring.element(v) for v in inputs])
    exact = (len(task.results) == sessions and all(not r["aborted"] and len(r["survivors"]) == n for r in task.results)
             and task.aggregate is not None and bool(np.array_equal(task.aggregate, expected)))
    refused = sum(o.get("refused", 0) for o in outcomes.values() if isinstance(o, dict))
    failed = sum(1 for o in outcomes.values() if not isinstance(o, dict))
    events = dict(getattr(coordinator, "security_events", {}) or {})
    return {"seconds": seconds, "exact": exact, "refused": refused, "failed": failed, "events": events,
            "attacker_streams": attacker.opened}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("-m", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=60, help="sessions in a row (default 60, about 8 s: "
                        "longer than the hello deadline, so silent streams are cut off and re-opened)")
    parser.add_argument("--silent", type=int, nargs="+", default=[8, 16, 64])
    args = parser.parse_args()
    import os
    import platform
    from datetime import datetime, timezone

    import logging

    import secagg
    logging.getLogger("secagg.net").setLevel(logging.ERROR)  # the events are counted below
    # not benchmarks/common.py: this script also runs against older checkouts
    print(f"# lock-out benchmark {datetime.now(timezone.utc).isoformat(timespec='seconds')}: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; secagg from "
          f"{Path(secagg.__file__).resolve().parent.parent}; n = {args.n}, m = {args.m:,}, {args.sessions} sessions")
    one_session(args.n, args.m, 0, 1)  # warm-up: imports, first connections
    base = one_session(args.n, args.m, 0, args.sessions)
    print(f"  no attacker        | job {base['seconds']:6.2f} s | exact {base['exact']} | honest refusals "
          f"{base['refused']}", flush=True)
    for k in args.silent:
        r = one_session(args.n, args.m, k, args.sessions)
        print(f"  {k:3d} silent streams | job {r['seconds']:6.2f} s = {r['seconds'] / base['seconds']:5.2f}x | "
              f"exact {r['exact']} | honest refusals {r['refused']}, clients failed {r['failed']} | attacker opened "
              f"{r['attacker_streams']} streams | security events {r['events'] or '(not counted)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
