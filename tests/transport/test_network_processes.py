"""Network mode end to end with real processes on 127.0.0.1: `secagg serve` and `secagg join`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("grpc")

PY = sys.executable
TIMEOUT = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args, log):
    return subprocess.Popen([PY, *args], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_all(processes, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    codes = []
    for p in processes:
        try:
            codes.append(p.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            raise AssertionError("a process hung past the deadline") from None
    return codes


@pytest.fixture
def logs(tmp_path):
    handles = []

    def open_log(name):
        handle = open(tmp_path / f"{name}.log", "w")
        handles.append((name, handle))
        return handle

    yield open_log
    for name, handle in handles:  # shown by pytest only when the test failed
        handle.close()
        print(f"--- {name}\n" + (tmp_path / f"{name}.log").read_text())


def test_killed_garbage_and_absent_clients_leave_an_exact_sum(tmp_path, logs):
    n, m = 6, 20_000
    port = free_port()
    rng = np.random.default_rng(7)
    vectors = [rng.integers(0, 2**32, size=m, dtype=np.uint64) for _ in range(n)]
    for i, v in enumerate(vectors):
        np.save(tmp_path / f"v{i}.npy", v)
    out = tmp_path / "sum"
    coordinator = spawn("-m", "secagg", "serve", "--task", "sum", "-n", str(n), "-t", "3", "-m", str(m),
                        "--address", f"127.0.0.1:{port}", "--insecure", "--join-deadline", "10", "--deadline", "20",
                        "--output", str(out), "--linger", "1", log=logs("coordinator"))
    join = ["join", "--task", "sum", "--coordinator", f"127.0.0.1:{port}", "--insecure", "-n", str(n),
            "--min-threshold", "3", "--give-up-after", "30"]
    clients = {}
    for i in (0, 1, 3):
        clients[i] = spawn("-m", "secagg", *join, "--id", str(i), "--vector", str(tmp_path / f"v{i}.npy"),
                           log=logs(f"client{i}"))
    clients[2] = spawn("-m", "secagg.transport.faults", "--die-before", "unmasking", "--", *join, "--id", "2",
                       "--vector", str(tmp_path / "v2.npy"), log=logs("client2"))
    clients[4] = spawn("-m", "secagg.transport.faults", "--garbage-at", "masked_input", "--", *join, "--id", "4",
                       "--vector", str(tmp_path / "v4.npy"), log=logs("client4"))
    # client 5 never connects
    codes = wait_all([coordinator, *clients.values()])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert codes[0] == 0
    assert dict(zip(clients, codes[1:])) == {0: 0, 1: 0, 3: 0, 2: -signal.SIGKILL, 4: 0}
    assert summary["dropped"]["advertise_keys"] == [5]
    assert summary["dropped"]["masked_input"] == [4]  # expelled: its masked input never counted
    assert summary["survivors"] == [0, 1, 2, 3]  # 2 sent its masked input, then died
    expected = sum(vectors[i] for i in summary["survivors"]) % 2**32
    assert np.array_equal(np.load(out.with_suffix(".npy")).astype(np.uint64), expected)


def test_coordinator_restart_between_fedavg_rounds_resumes_from_disk(tmp_path, logs):
    n, rounds = 3, 4
    port = free_port()
    state = tmp_path / "state"
    serve = ["-m", "secagg", "serve", "--task", "demo", "-n", str(n), "--rounds", str(rounds), "--samples", "800",
             "--address", f"127.0.0.1:{port}", "--insecure", "--state-dir", str(state), "--join-deadline", "30",
             "--deadline", "20", "--linger", "2"]
    first = spawn(*serve, log=logs("coordinator-1"))
    join = ["-m", "secagg", "join", "--task", "demo", "--coordinator", f"127.0.0.1:{port}", "--insecure",
            "--banks", str(n), "--samples", "800", "--give-up-after", "40"]
    clients = [spawn(*join, "--id", str(i), log=logs(f"client{i}")) for i in range(n)]
    state_file = state / "fedavg_state.json"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if state_file.exists() and len(json.loads(state_file.read_text())["history"]) >= 1:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # no chance to save anything more
    first.wait(10)
    done_before = len(json.loads(state_file.read_text())["history"])
    assert 1 <= done_before < rounds
    time.sleep(1.0)  # clients are now retrying with backoff
    second = spawn(*serve, log=logs("coordinator-2"))
    codes = wait_all([second, *clients])
    assert codes == [0] * (n + 1)
    history = json.loads(state_file.read_text())["history"]
    assert [r["round"] for r in history] == list(range(rounds))
    assert all(r["applied"] for r in history)
    assert sorted(os.listdir(state)) == ["fedavg_state.json", f"model-{rounds:05d}.npy"]
