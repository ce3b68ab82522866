"""What one participant process costs: start-up time and peak memory of ``secagg join``.

    .venv/bin/python benchmarks/bench_client_startup.py            # n = 5 clients, m = 100,000
    .venv/bin/python benchmarks/bench_client_startup.py -n 20

Starts a coordinator (``secagg serve --task sum``, plaintext on 127.0.0.1) and n client processes
(``secagg join --task sum``) and reports, per client, its peak resident memory (``wait4``'s
``ru_maxrss``) and wall time from process start to exit; and, separately, the time a fresh
interpreter takes to import everything ``join`` needs (median of 5), which is the start-up before
the client's first message.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_seconds() -> float:
    code = ("import time; t = time.perf_counter(); import secagg.cli, secagg.cli_network, secagg.transport.network, "
            "secagg.protocol.client, grpc; print(time.perf_counter() - t)")
    times = [float(subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(5)]
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("-m", type=int, default=100_000)
    args = parser.parse_args()
    n, m = args.n, args.m
    print(f"# client start-up benchmark: n = {n}, m = {m:,}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"  importing what join needs: {import_seconds():.2f} s (median of 5 fresh interpreters)", flush=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(3)
        for i in range(n):
            np.save(work / f"v{i}.npy", rng.integers(0, 2**32, size=m, dtype=np.uint64))
        log = open(work / "log", "w")
        server = subprocess.Popen([PY, "-m", "secagg", "serve", "--task", "sum", "-n", str(n), "-t",
                                   str((2 * n + 2) // 3), "-m", str(m), "--address", f"127.0.0.1:{port}", "--insecure",
                                   "--quiet", "--linger", "1", "--output", str(work / "out")], stdout=log,
                                  stderr=subprocess.STDOUT)
        time.sleep(0.5)
        started, clients = {}, {}
        for i in range(n):
            started[i] = time.perf_counter()
            p = subprocess.Popen([PY, "-m", "secagg", "join", "--task", "sum", "--id", str(i), "--coordinator",
                                  f"localhost:{port}", "-n", str(n), "--min-threshold", str((2 * n + 2) // 3),
                                  "--vector", str(work / f"v{i}.npy"), "--insecure", "--quiet"], stdout=log,
                                 stderr=subprocess.STDOUT)
            clients[p.pid] = i
        results = {}
        while clients:
            pid, status, usage = os.wait4(-1, 0)
            if pid in clients:
                i = clients.pop(pid)
                results[i] = (time.perf_counter() - started[i], usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
        server.wait(120)
        log.close()
    rss = [r[1] for r in results.values()]
    wall = [r[0] for r in results.values()]
    print(f"  {n} clients: peak RSS {min(rss):.0f}-{max(rss):.0f} MB (median {statistics.median(rss):.0f}); wall time "
          f"start to exit, session included, {min(wall):.2f}-{max(wall):.2f} s; exit codes "
          f"{sorted({r[2] for r in results.values()})}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
