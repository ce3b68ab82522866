"""Network mode against the in-process simulator: same n, m and dropout, one run.

    .venv/bin/python benchmarks/bench_network.py                  # n = 20, m = 100,000, mutual TLS and insecure
    .venv/bin/python benchmarks/bench_network.py -n 10 -m 10000   # smaller

For each transport (mutual TLS with a fresh development PKI, then plaintext) it starts a
coordinator (``secagg serve --task sum --sessions 5``) and n client processes (``secagg join``) on
127.0.0.1. Session 0 warms up (process start, connections); sessions 1-3 run with everyone; in
session 4 one client is killed (SIGKILL) after sending its masked input, i.e. when the server's
unmasking request reaches it. The script checks every sum exactly against the plaintext sum of
that session's survivors, checks that every process exited (the killed one by SIGKILL, the rest
with 0), and compares the coordinator's wall time per session (from announcing the session to
the decoded sum) with the in-process simulator running the same session (same n, m, and the same
victim for session 4) in this process, measured three times before and three times after each
networked run (medians; this machine's load varies).

The simulator plays every party in turn on one core; the networked clients run in parallel on the
machine's cores, with every message encoded, sent through gRPC (and TLS), and decoded.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402

from secagg.protocol.config import SecAggConfig  # noqa: E402
from secagg.transport.certs import make_dev_pki  # noqa: E402
from secagg.transport.simulator import simulate  # noqa: E402

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def networked(n: int, m: int, threshold: int, victim: int, tls: bool, work: Path) -> dict:
    port = free_port()
    rng = np.random.default_rng(11)
    vectors = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
    for i, v in enumerate(vectors):
        np.save(work / f"v{i}.npy", v)
    out = work / ("sum-tls" if tls else "sum-plain")
    if tls:
        pki = make_dev_pki(work / "pki", n)
        serve_tls = ["--cert", str(pki / "coordinator.pem"), "--key", str(pki / "coordinator.key"),
                     "--ca", str(pki / "ca.pem")]
        join_tls = lambda i: ["--ca", str(pki / "ca.pem"), "--cert", str(pki / f"client-{i}.pem"),  # noqa: E731
                              "--key", str(pki / f"client-{i}.key")]
    else:
        serve_tls, join_tls = ["--insecure"], lambda i: ["--insecure"]  # noqa: E731
    logs = open(work / f"{out.name}.log", "w")
    started = time.perf_counter()
    coordinator = subprocess.Popen([PY, "-m", "secagg", "serve", "--task", "sum", "-n", str(n), "-t", str(threshold),
                                    "-m", str(m), "--address", f"127.0.0.1:{port}", "--sessions", "5",
                                    "--join-deadline", "120", "--deadline", "60", "--output", str(out),
                                    "--linger", "1", "--quiet", *serve_tls], stdout=logs, stderr=subprocess.STDOUT)
    clients = []
    for i in range(n):
        join = ["join", "--task", "sum", "--id", str(i), "--coordinator", f"localhost:{port}", "-n", str(n),
                "--min-threshold", str(threshold), "--vector", str(work / f"v{i}.npy"), "--repeat", "--quiet", *join_tls(i)]
        if i == victim:
            command = [PY, "-m", "secagg.transport.faults", "--die-before", "unmasking", "--session", "4", "--", *join]
        else:
            command = [PY, "-m", "secagg", *join]
        clients.append(subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT))
    codes = []
    for p in [coordinator, *clients]:
        try:
            codes.append(p.wait(timeout=600))
        except subprocess.TimeoutExpired:
            for q in [coordinator, *clients]:
                q.kill()
            raise SystemExit("a process hung") from None
    total = time.perf_counter() - started
    logs.close()
    summary = json.loads(out.with_suffix(".json").read_text())
    exact = []
    for k, session in enumerate(summary["sessions"]):
        expected = sum(vectors[i] for i in session["survivors"]) % 2**32
        exact.append(bool(np.array_equal(np.load(work / f"{out.name}-{k}.npy").astype(np.uint64), expected)))
    expected_codes = [0] + [-signal.SIGKILL if i == victim else 0 for i in range(n)]
    return {"tls": tls, "session_seconds": [s["seconds"] for s in summary["sessions"]],
            "survivors": [len(s["survivors"]) for s in summary["sessions"]],
            "dropped_before_unmasking": summary["sessions"][-1]["dropped"].get("unmasking", []),
            "exact": exact, "clean_exit": codes == expected_codes, "exit_codes": codes, "wall_seconds": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("-m", type=int, default=100_000)
    args = parser.parse_args()
    n, m = args.n, args.m
    threshold = (2 * n + 2) // 3
    victim = n // 2
    info = machine_info()
    print(f"# network benchmark {info['date']}: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"# n = {n}, m = {m:,}, Z_2^32, threshold {threshold}, client {victim} killed after its masked input")
    config = SecAggConfig(num_clients=n, threshold=threshold, vector_length=m)
    rng = np.random.default_rng(11)
    inputs = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]

    def simulator_seconds(drop) -> list[float]:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = simulate(config, inputs, drop=drop)
            times.append(time.perf_counter() - start)
            assert result.survivors == list(range(n))
        return times

    simulate(config, inputs)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        for tls in (True, False):
            work = Path(tmp) / ("tls" if tls else "plain")
            work.mkdir()
            before_full, before_kill = simulator_seconds(None), simulator_seconds({"unmasking": [victim]})
            r = networked(n, m, threshold, victim, tls, work)
            after_full, after_kill = simulator_seconds(None), simulator_seconds({"unmasking": [victim]})
            sim_full = float(np.median(before_full + after_full))
            sim_kill = float(np.median(before_kill + after_kill))
            net_full = float(np.median(r["session_seconds"][1:4]))
            net_kill = r["session_seconds"][4]
            print(f"{'mutual TLS' if tls else 'plaintext':<10} | everyone: network {1e3 * net_full:6.0f} ms (median of "
                  f"sessions 1-3) vs simulator {1e3 * sim_full:6.0f} ms = {net_full / sim_full:.2f}x | one killed "
                  f"after masked input: network {1e3 * net_kill:6.0f} ms vs simulator {1e3 * sim_kill:6.0f} ms = "
                  f"{net_kill / sim_kill:.2f}x", flush=True)
            print(f"{'':<10} | session 0 (includes connecting) {r['session_seconds'][0]:.2f} s; sums exact "
                  f"{all(r['exact'])}; clients in each sum {r['survivors']}; vanished before unmasking in session 4 "
                  f"{r['dropped_before_unmasking']}; all processes exited cleanly: {r['clean_exit']} "
                  f"(whole run with process start-up {r['wall_seconds']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
