"""How long a frozen client (SIGSTOP) holds the coordinator: heartbeats against a stopped process.

    .venv/bin/python benchmarks/bench_frozen_client.py             # waits up to 200 s
    .venv/bin/python benchmarks/bench_frozen_client.py --wait 60

A coordinator (``secagg serve --task sum -n 4 -t 2 --sessions 3`` with 300 s deadlines, so that only
liveness detection can end the wait) and four ``secagg join`` processes; once session 0 completes,
client 2 is stopped with SIGSTOP. The script reports when (if ever within ``--wait``) the
coordinator noticed the client gone and finished the job, and the coordinator's log lines about
session 1. Heartbeats (every 5 s, three missed) should end it in about 15 s; HTTP/2 keepalive alone
did not reliably (60 s once, not within 90 s and 200 s in two runs, before heartbeats existed).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wait", type=float, default=200.0, help="seconds to wait after the freeze")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "serve.log"
        log = open(log_path, "w")
        server = subprocess.Popen([PY, "-m", "secagg", "serve", "--task", "sum", "-n", "4", "-t", "2", "-m", "1000",
                                   "--address", f"127.0.0.1:{port}", "--insecure", "--sessions", "3", "--deadline",
                                   "300", "--join-deadline", "300", "-v"], stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1)
        clients = [subprocess.Popen([PY, "-m", "secagg", "join", "--task", "sum", "--id", str(i), "--coordinator",
                                     f"localhost:{port}", "-n", "4", "--min-threshold", "2", "--random-vector", str(i),
                                     "-m", "1000", "--repeat", "--insecure", "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(4)]
        try:
            while "session 0 completed" not in log_path.read_text():
                time.sleep(0.01)
            os.kill(clients[2].pid, signal.SIGSTOP)
            frozen, frozen_wall = time.monotonic(), time.time()
            while server.poll() is None and time.monotonic() - frozen < args.wait:
                time.sleep(0.2)
            waited = time.monotonic() - frozen
            finished = server.poll() is not None
            closed = [line for line in log_path.read_text().splitlines() if "closed by" in line and "missing [2]" in line]
            if closed:
                stamp = time.mktime(time.strptime(closed[0][:19], "%Y-%m-%d %H:%M:%S")) + int(closed[0][20:23]) / 1000
                print(f"# the round waiting for client 2 closed {stamp - frozen_wall:.1f} s after it was stopped")
            print(f"# frozen client: coordinator {'finished' if finished else 'still waiting'} {waited:.1f} s after "
                  f"client 2 was stopped (heartbeat 5 s, three missed; round deadlines 300 s)")
            for line in log_path.read_text().splitlines():
                if re.search(r"session [12]|closed|gone|missing|silent|round", line):
                    print("  " + line[:160])
        finally:
            for c in clients:
                c.kill()
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
