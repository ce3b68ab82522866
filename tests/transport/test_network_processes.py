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
    coordinator = spawn("-m", "secagg", "serve", "--task", "sum", "-n", str(n), "-t", "2", "-m", str(m),
                        "--address", f"127.0.0.1:{port}", "--insecure", "--join-quorum", "5", "--join-deadline", "120",
                        "--deadline", "60", "--output", str(out), "--linger", "3", log=logs("coordinator"))
    join = ["join", "--task", "sum", "--coordinator", f"127.0.0.1:{port}", "--insecure", "-n", str(n),
            "--min-threshold", "2", "--give-up-after", "30"]
    clients = {}
    for i in (0, 1, 3):
        clients[i] = spawn("-m", "secagg", *join, "--id", str(i), "--vector", str(tmp_path / f"v{i}.npy"),
                           log=logs(f"client{i}"))
    clients[2] = spawn("-m", "secagg.transport.faults", "--die-before", "unmasking", "--", *join, "--id", "2",
                       "--vector", str(tmp_path / "v2.npy"), log=logs("client2"))
    clients[4] = spawn("-m", "secagg.transport.faults", "--garbage-at", "masked_input", "--", *join, "--id", "4",
                       "--vector", str(tmp_path / "v4.npy"), log=logs("client4"))
    # client 5 never connects: the first round closes once the other five sent their keys
    codes = wait_all([coordinator, *clients.values()])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert codes[0] == 0
    assert dict(zip(clients, codes[1:])) == {0: 0, 1: 0, 3: 0, 2: -signal.SIGKILL, 4: 0}
    assert summary["dropped"]["advertise_keys"] == [5]
    assert summary["dropped"]["masked_input"] == [4]  # expelled: its masked input never counted
    assert summary["survivors"] == [0, 1, 2, 3]  # 2 sent its masked input, then died
    expected = sum(vectors[i] for i in summary["survivors"]) % 2**32
    assert np.array_equal(np.load(out.with_suffix(".npy")).astype(np.uint64), expected)


# Where the first coordinator is killed (a named checkpoint of its session 1, i.e. FedAvg round 1),
# the rounds it had saved, and which rounds of the resumed job are applied.
RESTART_POINTS = {
    # between rounds: rounds 0 and 1 are saved, the new coordinator runs rounds 2 and 3
    "session_recorded": (2, [True, True, True, True]),
    # round 1 in progress, no masked input out yet: the new coordinator resumes the session from
    # its journal and the clients take it up again
    "share_keys_closed": (1, [True, True, True, True]),
    # round 1's masked inputs are out (the case that used to lose the round: every client rightly
    # declines to contribute its update to a second sum): resumed, the round ends in its sum
    "masked_input_closed": (1, [True, True, True, True]),
}


@pytest.mark.parametrize("point", RESTART_POINTS)
def test_coordinator_killed_at_a_named_point_and_restarted_resumes_from_disk(tmp_path, logs, point):
    n, rounds = 3, 4
    saved_before, applied = RESTART_POINTS[point]
    port = free_port()
    state = tmp_path / "state"
    serve = ["serve", "--task", "demo", "-n", str(n), "--rounds", str(rounds), "--samples", "800",
             "--address", f"127.0.0.1:{port}", "--insecure", "--state-dir", str(state), "--join-deadline", "60",
             "--deadline", "60", "--linger", "2"]
    first = spawn("-m", "secagg.transport.faults", "--kill-coordinator-at", point, "--session", "1", "--", *serve,
                  log=logs("coordinator-1"))
    join = ["-m", "secagg", "join", "--task", "demo", "--coordinator", f"127.0.0.1:{port}", "--insecure",
            "--banks", str(n), "--samples", "800", "--rounds", str(rounds), "--give-up-after", "40"]
    clients = [spawn(*join, "--id", str(i), log=logs(f"client{i}")) for i in range(n)]
    assert wait_all([first]) == [-signal.SIGKILL]  # killed itself at the checkpoint, nothing saved after
    state_file = state / "fedavg_state.json"
    assert [r["round"] for r in json.loads(state_file.read_text())["history"]] == list(range(saved_before))
    second_log = logs("coordinator-2")
    second = spawn("-m", "secagg", *serve, log=second_log)
    codes = wait_all([second, *clients])
    assert codes == [0] * (n + 1)
    history = json.loads(state_file.read_text())["history"]
    assert [r["round"] for r in history] == list(range(rounds))
    assert [r["applied"] for r in history] == applied
    assert all(r["aborted"] is None for r in history if r["applied"])
    assert sorted(os.listdir(state)) == ["fedavg_state.json", "lock", f"model-{rounds:05d}.npy", "session.journal"]
    second_log.flush()
    report = (tmp_path / "coordinator-2.log").read_text()
    count = sum(applied)
    assert f"FedAvg finished: {rounds} rounds, {count} update{'' if count == 1 else 's'} applied" in report
