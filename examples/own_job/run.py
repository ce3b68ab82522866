"""Your own FedAvg job over the network, checked against the in-process FedAvg on the same data.

    .venv/bin/python examples/own_job/run.py              # 5 bank processes, mutual TLS, 8 rounds
    .venv/bin/python examples/own_job/run.py --mismatch   # bank 4 brings a model with one more feature

Makes a development PKI, starts ``secagg serve --job examples/own_job/fraud_job.py:job`` and five
``secagg join --job ... --id i`` processes on 127.0.0.1 over mutual TLS (each bank loads only its
own rows through the job's loader), then runs ``FedAvg`` in-process on the same data with the same
configuration and prints both ROC-AUCs. With ``--mismatch`` bank 4 joins with
``fraud_job.py:job_with_an_extra_feature``: it refuses each round with its reason, the coordinator
logs the refusal and closes the round without waiting for the deadline, and the job goes on with
the other four banks. Needs the ``sklearn`` extra.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = f"{HERE / 'fraud_job.py'}:job"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(rounds: int) -> float:
    from secagg.fedavg.job import load_job

    job = load_job(JOB)
    fl = job.configuration()  # the very FedAvg the coordinator and the banks built
    fl.rounds = rounds
    history = fl.fit([job.client_data(b) for b in range(5)], job.holdout())
    return history.rounds[-1].metrics["roc_auc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--mismatch", action="store_true", help="bank 4 brings a model with an extra feature")
    args = parser.parse_args()
    py, n, port = sys.executable, 5, free_port()
    with tempfile.TemporaryDirectory() as tmp:
        pki, state = Path(tmp) / "pki", Path(tmp) / "state"
        subprocess.run([py, "-m", "secagg", "certs", "--out", str(pki), "--clients", str(n)], check=True,
                       stdout=subprocess.DEVNULL)
        started = time.perf_counter()
        coordinator = subprocess.Popen(
            [py, "-m", "secagg", "serve", "--job", JOB, "-n", str(n), "--rounds", str(args.rounds),
             "--address", f"127.0.0.1:{port}", "--join-deadline", "60", "--deadline", "30", "--state-dir", str(state),
             "--cert", str(pki / "coordinator.pem"), "--key", str(pki / "coordinator.key"), "--ca", str(pki / "ca.pem")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        banks = []
        for i in range(n):
            job = f"{HERE / 'fraud_job.py'}:job_with_an_extra_feature" if args.mismatch and i == n - 1 else JOB
            banks.append(subprocess.Popen(
                [py, "-m", "secagg", "join", "--job", job, "--id", str(i), "-n", str(n), "--rounds", str(args.rounds),
                 "--coordinator",
                 f"localhost:{port}", "--ca", str(pki / "ca.pem"), "--cert", str(pki / f"client-{i}.pem"),
                 "--key", str(pki / f"client-{i}.key"), "--quiet"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for line in coordinator.stdout:  # type: ignore[union-attr]
            print(line.rstrip())
        codes = [coordinator.wait(), *(bank.wait(timeout=60) for bank in banks)]
        seconds = time.perf_counter() - started
        history = json.loads((state / "fedavg_state.json").read_text())["history"]  # RoundRecord.to_dict()
    print(f"exit codes: coordinator {codes[0]}, banks {codes[1:]}; whole job {seconds:.1f} s")
    network = history[-1]["metrics"]["roc_auc"]
    reference = in_process(len(history))
    note = " (the network job without bank 4)" if args.mismatch else ""
    print(f"ROC-AUC over the network {network:.4f}{note}, in-process FedAvg on the same data {reference:.4f}: "
          f"difference {abs(network - reference):.4f}")
    return 0 if codes[0] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
