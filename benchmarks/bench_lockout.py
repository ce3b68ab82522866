"""Silent streams against honest clients: can a peer that never says hello lock clients out?

    .venv/bin/python benchmarks/bench_lockout.py                       # this version
    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_lockout.py  # the same run on another version
    .venv/bin/python benchmarks/bench_lockout.py --tls                 # mutual TLS, attacker with a valid certificate

A coordinator (``SumTask``, n = 10, m = 10,000, plaintext or mutual TLS on 127.0.0.1) runs 60 sessions (after one warm-up job)
with n honest clients in threads, first alone and then beside an attacker that keeps ``k`` streams
open that never send a hello, re-opening each one as soon as the coordinator cuts it off (from
its own process). For
each ``k`` it reports the job's wall time (from the honest clients' start to the last decoded sum), its ratio to
the run without attacker, how often the honest clients were refused, whether every session had every client and the last sum was exact,
and the security events the coordinator logged (when the version counts them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from secagg.protocol.config import SecAggConfig  # noqa: E402
from secagg.transport.network import SERVICE_METHOD, Coordinator, NetworkClient, RetryPolicy, TLSConfig  # noqa: E402
from secagg.transport.tasks import SumClient, SumTask  # noqa: E402

INSECURE = TLSConfig(insecure=True)


_ATTACKER = r"""
import sys, threading, grpc
target, count, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pki = sys.argv[4] if len(sys.argv) > 4 else None  # mutual TLS: a CA-signed certificate outside the job
opened = [0]
def silent(stop):
    stop.wait(600)
    return
    yield
def channel_of():
    if pki is None:
        return grpc.insecure_channel(target)
    read = lambda name: open(f"{pki}/{name}", "rb").read()
    credentials = grpc.ssl_channel_credentials(read("ca.pem"), read("stranger.key"), read("stranger.pem"))
    return grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
def hold():
    channel = channel_of()
    stop = threading.Event()
    while True:
        opened[0] += 1
        try:
            for _ in channel.stream_stream(method)(silent(stop), timeout=600):
                pass
        except grpc.RpcError:
            pass
for _ in range(count):
    threading.Thread(target=hold, daemon=True).start()
sys.stdin.read()  # until the benchmark closes our stdin
print(opened[0], flush=True)
"""


class Attacker:
    """A separate process keeping ``count`` silent streams open, re-opening each one the moment it
    ends (its own process, so it costs the coordinator what a remote attacker would: streams, not
    this process's interpreter)."""

    def __init__(self, target: str, count: int, pki: str | None = None) -> None:
        self.count = count
        self.opened = 0
        self.process = None
        if count:
            self.process = subprocess.Popen([sys.executable, "-c", _ATTACKER, target, str(count), SERVICE_METHOD,
                                             *([pki] if pki else [])],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.process is not None:
            out, _ = self.process.communicate("", timeout=30)
            self.opened = int(out.strip() or 0)


def _tls(pki: str | None, who: str) -> TLSConfig:
    if pki is None:
        return INSECURE
    if who == "coordinator":
        return TLSConfig(ca=f"{pki}/ca.pem", cert=f"{pki}/coordinator.pem", key=f"{pki}/coordinator.key")
    return TLSConfig(ca=f"{pki}/ca.pem", cert=f"{pki}/{who}.pem", key=f"{pki}/{who}.key", server_name="localhost")


def one_session(n: int, m: int, silent: int, sessions: int, pki: str | None = None) -> dict:
    config = SecAggConfig(num_clients=n, threshold=(2 * n + 2) // 3, vector_length=m)
    task = SumTask(config, sessions=sessions)
    coordinator = Coordinator(task, n, address="127.0.0.1:0", tls=_tls(pki, "coordinator"), linger=0.2)
    listening = threading.Event()
    server = threading.Thread(target=coordinator.serve, args=(lambda port: listening.set(),), daemon=True)
    server.start()
    listening.wait(30)
    target = f"127.0.0.1:{coordinator.port}"
    attacker = Attacker(target, silent, pki)
    time.sleep(1.0)  # the attacker's streams are in before any honest client
    started = time.perf_counter()
    rng = np.random.default_rng(5)
    inputs = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
    outcomes: dict = {}

    def run(i: int) -> None:
        client = NetworkClient(target, i, SumClient(inputs[i], repeat=True), tls=_tls(pki, f"client-{i}"),
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
    attacker.stop()
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="mutual TLS; the attacker holds one valid certificate "
                        "(signed by the job's CA, for an identity outside the job)")
    args = parser.parse_args()
    pki = None
    if args.tls:
        import shutil
        import tempfile

        from secagg.transport.certs import make_dev_pki

        pki = tempfile.mkdtemp(prefix="lockout-pki-")
        make_dev_pki(pki, args.n + 1)
        for suffix in ("pem", "key"):  # client n: CA-signed, in no roster
            shutil.move(f"{pki}/client-{args.n}.{suffix}", f"{pki}/stranger.{suffix}")
    import os
    import platform
    from datetime import datetime, timezone

    import logging

    import secagg
    logging.getLogger("secagg.net").setLevel(logging.ERROR)  # the events are counted below
    # not benchmarks/common.py: this script also runs against older checkouts
    print(f"# lock-out benchmark {datetime.now(timezone.utc).isoformat(timespec='seconds')}: {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; secagg from "
          f"{Path(secagg.__file__).resolve().parent.parent}; n = {args.n}, m = {args.m:,}, {args.sessions} sessions; "
          + ("mutual TLS, the attacker holding a valid certificate outside the job" if pki else "plaintext"))
    one_session(args.n, args.m, 0, 1, pki)  # warm-up: imports, first connections
    # interleaved and repeated (this machine's load varies): each repeat runs every configuration once
    runs: dict[int, list[dict]] = {k: [] for k in [0, *args.silent]}
    for _ in range(args.repeats):
        for k in runs:
            runs[k].append(one_session(args.n, args.m, k, args.sessions, pki))
    base = float(np.median([r["seconds"] for r in runs[0]]))
    print(f"  no attacker        | job {base:6.2f} s (median of {args.repeats}) | every session complete and exact "
          f"{all(r['exact'] for r in runs[0])} | honest refusals {sum(r['refused'] for r in runs[0])}", flush=True)
    for k in args.silent:
        rs = runs[k]
        seconds = float(np.median([r["seconds"] for r in rs]))
        each = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        events: dict = {}
        for r in rs:
            for kind, count in r["events"].items():
                events[kind] = events.get(kind, 0) + count
        print(f"  {k:3d} silent streams | job {seconds:6.2f} s = {seconds / base:5.2f}x (median of {args.repeats}; "
              f"{each}) | every session complete and exact "
              f"{all(r['exact'] for r in rs)} | honest refusals {sum(r['refused'] for r in rs)}, clients failed "
              f"{sum(r['failed'] for r in rs)} | attacker opened {sum(r['attacker_streams'] for r in rs)} streams | "
              f"security events {events or '(not counted)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
