"""Load test of the network mode: as many participant processes as the machine holds, one coordinator.

    .venv/bin/python benchmarks/bench_load.py                    # n = 50 processes, m = 100,000, 4 sessions
    .venv/bin/python benchmarks/bench_load.py -n 80 --sessions 3

Starts ``secagg serve --task sum`` and n ``secagg join`` processes (plaintext on 127.0.0.1; every
client contributes to every session, ``--repeat``, a measurement-only mode) and reports, in the same
run:

* the coordinator's round time: each session's wall time from its announcement to its sum (the
  first session includes the processes connecting; the median of the later ones is the figure);
* the coordinator's peak resident memory (``wait4``'s ``ru_maxrss``) and the participants';
* the in-process simulator (``secagg.simulate``) on the same n, m and threshold, in a process of
  its own (its peak memory then means the same thing): its session time and peak memory.

On a 2-core machine the n participant processes share the cores with the coordinator, so the
round time includes their masking work; the simulator does all of it in one process too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable

SIMULATE = """
import json, resource, sys, time
import numpy as np
import secagg
n, m, t, sessions = (int(a) for a in sys.argv[1:5])
cfg = secagg.SecAggConfig(num_clients=n, threshold=t, vector_length=m, modulus_bits=32)
rng = np.random.default_rng(3)
inputs = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
secagg.simulate(cfg, inputs)  # warm-up (galois' JIT)
times = []
for _ in range(sessions):
    started = time.perf_counter()
    secagg.simulate(cfg, inputs)
    times.append(time.perf_counter() - started)
print(json.dumps({"seconds": times, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def network(n: int, m: int, t: int, sessions: int, work: Path) -> dict:
    rng = np.random.default_rng(3)
    vectors = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
    for i, v in enumerate(vectors):
        np.save(work / f"v{i}.npy", v)
    port = free_port()
    log = open(work / "log", "w")
    started = time.perf_counter()
    server = subprocess.Popen([PY, "-m", "secagg", "serve", "--task", "sum", "-n", str(n), "-t", str(t), "-m", str(m),
                               "--sessions", str(sessions), "--address", f"127.0.0.1:{port}", "--insecure", "--quiet",
                               "--linger", "1", "--join-deadline", "600", "--deadline", "300",
                               "--output", str(work / "out")], stdout=log, stderr=subprocess.STDOUT)
    processes = {server.pid: "coordinator"}
    for i in range(n):
        p = subprocess.Popen([PY, "-m", "secagg", "join", "--task", "sum", "--id", str(i), "--coordinator",
                              f"127.0.0.1:{port}", "-n", str(n), "--min-threshold", str(t), "--repeat",
                              "--vector", str(work / f"v{i}.npy"), "--insecure", "--quiet", "--give-up-after", "600"],
                             stdout=log, stderr=subprocess.STDOUT)
        processes[p.pid] = i
    usage: dict = {}
    while processes:
        pid, status, rusage = os.wait4(-1, 0)
        if pid in processes:
            usage[processes.pop(pid)] = (rusage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
    seconds = time.perf_counter() - started
    log.close()
    summary = json.loads((work / "out.json").read_text())
    expected = sum(vectors) % 2**32
    exact = np.array_equal(np.load(work / "out.npy").astype(np.uint64), expected)
    clients = [usage[i] for i in range(n)]
    return {"sessions": [s["seconds"] for s in summary["sessions"]],
            "in_sum": [len(s["survivors"]) for s in summary["sessions"]], "exact": exact,
            "coordinator_rss_mb": usage["coordinator"][0], "coordinator_exit": usage["coordinator"][1],
            "client_rss_mb": [c[0] for c in clients], "client_exits": sorted({c[1] for c in clients}),
            "wall": seconds}


def simulator(n: int, m: int, t: int, sessions: int) -> dict:
    out = subprocess.run([PY, "-c", SIMULATE, str(n), str(m), str(t), str(sessions)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50, help="participant processes")
    parser.add_argument("-m", type=int, default=100_000, help="vector length")
    parser.add_argument("--sessions", type=int, default=4, help="sessions (the first includes connecting)")
    args = parser.parse_args()
    n, m = args.n, args.m
    t = (2 * (n - 1) + 2) // 3
    print(f"# load test {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    print(f"# n = {n} participant processes, m = {m:,}, Z_2^32, threshold {t}, {args.sessions} sessions", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = network(n, m, t, args.sessions, Path(tmp))
    sim = simulator(n, m, t, max(1, args.sessions - 1))
    later = result["sessions"][1:] or result["sessions"]
    round_time, sim_time = statistics.median(later), statistics.median(sim["seconds"])
    rss = result["client_rss_mb"]
    print(f"  network   | round {round_time:.2f} s (median of sessions 2-{len(result['sessions'])}; session 1, "
          f"connecting included, {result['sessions'][0]:.2f} s) | coordinator peak RSS "
          f"{result['coordinator_rss_mb']:.0f} MB | participants peak RSS {min(rss):.0f}-{max(rss):.0f} MB "
          f"(median {statistics.median(rss):.0f}) | every sum exact {result['exact']}, clients in each sum "
          f"{result['in_sum']} | exit codes coordinator {result['coordinator_exit']}, participants "
          f"{result['client_exits']} | whole run {result['wall']:.1f} s")
    print(f"  simulator | session {sim_time:.2f} s (median of {len(sim['seconds'])}) | peak RSS {sim['rss_mb']:.0f} MB "
          f"(one process holding all {n} clients)")
    print(f"  ratio     | round time {round_time / sim_time:.2f}x the simulator's; memory of the coordinator "
          f"{result['coordinator_rss_mb'] / sim['rss_mb']:.2f}x the simulator's, of all {n + 1} processes "
          f"{(result['coordinator_rss_mb'] + sum(rss)) / sim['rss_mb']:.1f}x")
    return 0 if result["exact"] and result["coordinator_exit"] == 0 and result["client_exits"] == [0] else 1


if __name__ == "__main__":
    sys.exit(main())
