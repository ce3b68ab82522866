"""Bank anti-fraud on a real Flower deployment on this machine: one SuperLink, N SuperNodes, loopback.

    .venv/bin/python examples/flower/run_deployment.py                 # 4 banks, 3 rounds
    .venv/bin/python examples/flower/run_deployment.py --banks 6 --crash 2

What it does, step by step (each step is the command you would type on separate machines):

1. ``flower-superlink --insecure --host 127.0.0.1 --port P`` (the coordinator);
2. for each bank i: ``flower-supernode --insecure --superlink 127.0.0.1:P --port P+1+i
   --node-config "partition-id=i num-partitions=N"`` (each bank's node, its own process);
3. ``flwr run examples/flower/bank_app deployment --stream`` with a Flower config (in a private
   ``FLWR_HOME``) whose ``[superlink.deployment]`` points at the SuperLink; the app ships as a FAB,
   the SuperLink starts the ServerApp and each SuperNode starts a ClientApp process per message.

The app's ClientApp carries ``secagg_masking_mod`` and its ServerApp runs ``SecAggMaskingWorkflow``
(see bank_app/). Every process this script starts is stopped at the end. Plain HTTP on loopback
only: a real deployment uses TLS certificates and SuperNode authentication (Flower's docs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE / "bank_app"
BIN = Path(sys.executable).parent


def free_port_block(size: int) -> int:
    """A base port with ``size`` free consecutive ports after it (best effort)."""
    for base in range(29100, 60000, 97):
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block on 127.0.0.1")


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crash", default="", help="banks that go offline while training, e.g. 2")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run to finish")
    args = parser.parse_args(argv)

    base = free_port_block(args.banks + 1)
    home = Path(tempfile.mkdtemp(prefix="secagg-flwr-"))
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "deployment"\n\n'
        f'[superlink.deployment]\naddress = "127.0.0.1:{base}"\ninsecure = true\n')
    # The SuperLink and SuperNodes start Flower's helper processes (flower-superexec, ...) by name.
    env = {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1",
           "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    logs = home / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(proc)
        return proc

    try:
        start("superlink", [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(base),
                            "--database", str(home / "state.db"),
                            "--disable-runtime-dependency-installation"])  # use this environment
        wait_for_port(base, 60)
        for i in range(args.banks):
            start(f"supernode-{i}", [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{base}",
                                     "--port", str(base + 1 + i),
                                     "--node-config", f"partition-id={i} num-partitions={args.banks}"])
        config = (f"num-banks={args.banks} num-server-rounds={args.rounds} crash='{args.crash}' "
                  f"samples-per-bank=2000 timeout=120")
        run = subprocess.run([str(BIN / "flwr"), "run", str(APP), "deployment", "--stream", "--run-config", config],
                             env=env, capture_output=True, text=True, timeout=args.timeout)
        output = run.stdout + run.stderr
        print(output[-6000:])
        lines = [ln for ln in output.splitlines() if "SecAggMaskingWorkflow round" in ln]
        if run.returncode or len(lines) != args.rounds:
            print(f"run failed (exit {run.returncode}, {len(lines)} of {args.rounds} rounds); logs in {logs}")
            for log in sorted(logs.iterdir()):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")
            return 1
        print(f"{args.rounds} secure rounds over {args.banks} SuperNodes: done")
        return 0
    finally:
        for proc in reversed(processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
