"""How long a frozen client (SIGSTOP) holds the coordinator: HTTP/2 keepalive against a stopped process.

    .venv/bin/python benchmarks/bench_frozen_client.py             # waits up to 200 s
    .venv/bin/python benchmarks/bench_frozen_client.py --wait 60

A coordinator (``secagg serve --task sum -n 3 --sessions 3`` with 300 s deadlines, so that only
keepalive could end the wait) and three ``secagg join`` processes; once session 0 completes, client
2 is stopped with SIGSTOP. The script reports when (if ever within ``--wait``) the coordinator
noticed the client gone and finished the job, and the coordinator's log lines about session 1.
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
        server = subprocess.Popen([PY, "-m", "secagg", "serve", "--task", "sum", "-n", "3", "-t", "2", "-m", "1000",
                                   "--address", f"127.0.0.1:{port}", "--insecure", "--sessions", "3", "--deadline",
                                   "300", "--join-deadline", "300", "-v"], stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1)
        clients = [subprocess.Popen([PY, "-m", "secagg", "join", "--task", "sum", "--id", str(i), "--coordinator",
                                     f"localhost:{port}", "-n", "3", "--min-threshold", "2", "--random-vector", str(i),
                                     "-m", "1000", "--repeat", "--insecure", "--quiet"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
        try:
            while "session 0 completed" not in log_path.read_text():
                time.sleep(0.01)
            os.kill(clients[2].pid, signal.SIGSTOP)
            frozen = time.monotonic()
            while server.poll() is None and time.monotonic() - frozen < args.wait:
                time.sleep(0.2)
            waited = time.monotonic() - frozen
            finished = server.poll() is not None
            print(f"# frozen client: coordinator {'finished' if finished else 'still waiting'} {waited:.1f} s after "
                  f"client 2 was stopped (keepalive 20 s + 10 s configured; round deadlines 300 s)")
            for line in log_path.read_text().splitlines():
                if re.search(r"session [12]|closed|gone|missing", line):
                    print("  " + line[:160])
        finally:
            for c in clients:
                c.kill()
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
