"""The bank anti-fraud demo with real processes: one coordinator and one process per bank.

    .venv/bin/python examples/network_bank_demo.py                  # 4 banks, 5 rounds, mutual TLS
    .venv/bin/python examples/network_bank_demo.py --banks 6 --rounds 10 --kill-one

Makes a development PKI in a temporary directory, starts ``secagg serve --task demo`` and
``secagg join --task demo`` for every bank on 127.0.0.1 (each bank trains on its own synthetic
transactions; only masked vectors leave it), and prints the coordinator's log. With ``--kill-one``
the last bank is killed (SIGKILL) after its masked input in the second round: that round still
sums exactly, and the bank is gone for the rounds after it.

On separate machines, run the same two commands by hand (see docs/network.md).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--kill-one", action="store_true", help="kill the last bank mid-round in round 2")
    args = parser.parse_args()
    py, n, port = sys.executable, args.banks, free_port()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp) / "pki"
        subprocess.run([py, "-m", "secagg", "certs", "--out", str(pki), "--clients", str(n)], check=True,
                       stdout=subprocess.DEVNULL)
        coordinator = subprocess.Popen(
            [py, "-m", "secagg", "serve", "--task", "demo", "-n", str(n), "--rounds", str(args.rounds),
             "--samples", str(args.samples), "--address", f"127.0.0.1:{port}", "--join-deadline", "60",
             "--deadline", "30", "--state-dir", str(Path(tmp) / "state"), "--cert", str(pki / "coordinator.pem"),
             "--key", str(pki / "coordinator.key"), "--ca", str(pki / "ca.pem")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        banks = []
        for i in range(n):
            join = ["join", "--task", "demo", "--id", str(i), "--banks", str(n), "-n", str(n), "--samples",
                    str(args.samples), "--coordinator", f"localhost:{port}", "--ca", str(pki / "ca.pem"),
                    "--cert", str(pki / f"client-{i}.pem"), "--key", str(pki / f"client-{i}.key"), "--quiet"]
            if args.kill_one and i == n - 1:
                command = [py, "-m", "secagg.transport.faults", "--die-before", "unmasking", "--session", "1", "--",
                           *join]
            else:
                command = [py, "-m", "secagg", *join]
            banks.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for line in coordinator.stdout:  # type: ignore[union-attr]
            print(line.rstrip())
        codes = [coordinator.wait(), *(bank.wait(timeout=60) for bank in banks)]
    print(f"exit codes: coordinator {codes[0]}, banks {codes[1:]}")
    return 0 if codes[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
