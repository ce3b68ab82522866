"""Time and traffic of the dealerless key ceremony (issue 18) against the dealer, in one run.

Each case generates one key among ``n`` banks:

* ``network``: the relay and n bank processes (``secagg paillier-keygen --no-dealer --serve`` /
  ``--bank``) over mutual TLS on this machine, wall time from start to every bank's share written,
  and the bytes the relay moved;
* ``inprocess`` (``--inprocess``): every bank's state machine in this process, one after the other
  (the sum of the banks' CPU time, the figure a deployment spreads over n machines);

and, in the same run, the dealer (:func:`generate_threshold_keypair`, safe primes) for the ratio.
``--baseline DIR`` also runs every network case with the code in DIR (a source tree of an earlier
version, e.g. ``git archive <commit> secagg | tar -x -C DIR``), so that "before" and "after" come
from one run on one machine; ``--tree DIR`` measures DIR instead of this checkout (a frozen copy,
so that editing the checkout during a long run changes nothing). The load average is printed
before and after each measurement: the machine is shared and noisy, compare within a run.

    nice .venv/bin/python benchmarks/bench_dkg.py                       # 3, 5, 10 banks at 2048, 3 at 3072
    nice .venv/bin/python benchmarks/bench_dkg.py --cases 5:4:2048      # one case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def network_case(banks: int, threshold: int, bits: int, tree: str | None = None) -> dict:
    """One ceremony over the network with the code in ``tree`` (None: the installed secagg)."""
    from secagg.transport.certs import make_dev_pki

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dev_pki(root / "pki", banks)
        pki, port = root / "pki", _free_port()
        common = ["-n", str(banks), "-t", str(threshold), "--key-bits", str(bits),
                  "--verify-keys", str(pki / "verify_keys.json"), "--ca", str(pki / "ca.pem")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if tree is not None:
            env["PYTHONPATH"] = str(Path(tree).resolve())
        load_before = _load()
        started = time.perf_counter()
        # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH
        relay = subprocess.Popen([PY, "-m", "secagg", "paillier-keygen", "--no-dealer", "--serve", *common,
                                  "--address", f"127.0.0.1:{port}", "--cert", str(pki / "coordinator.pem"),
                                  "--key", str(pki / "coordinator.key"), "--out", str(root / "relay")],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=root)
        procs = [subprocess.Popen([PY, "-m", "secagg", "paillier-keygen", "--no-dealer", "--bank", str(b), *common,
                                   "--coordinator", f"localhost:{port}", "--identity", str(pki / f"identity-{b}.key"),
                                   "--cert", str(pki / f"client-{b}.pem"), "--key", str(pki / f"client-{b}.key"),
                                   "--out", str(root / f"bank{b}")],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=root)
                 for b in range(banks)]
        outputs = [p.communicate(timeout=3600)[0] for p in procs]
        relay_out = relay.communicate(timeout=120)[0]
        probe = subprocess.run([PY, "-c", "import secagg; print(secagg.__file__)"], env=env, cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        wall = time.perf_counter() - started
        if relay.returncode or any(p.returncode for p in procs):
            raise SystemExit(f"a process failed: relay {relay.returncode}, banks {[p.returncode for p in procs]}")
        summary = json.loads(relay_out.strip().splitlines()[-1])
        per_bank = [json.loads(o.strip().splitlines()[-1]) for o in outputs]
        return {"wall_seconds": round(wall, 1), "ceremony_seconds": summary["last_attempt_seconds"],
                "rounds": summary["rounds"], "batches": per_bank[0].get("batches"),
                "relayed_MB": round(summary["bytes_relayed"] / 1e6, 1),
                "bank_sent_MB": round(max(b["bytes_sent"] for b in per_bank) / 1e6, 1),
                "relayed_MB_per_batch": round(summary["bytes_relayed"] / 1e6 / per_bank[0]["batches"], 1)
                if per_bank[0].get("batches") else None,
                "attempts": summary["attempts"], "load_before": load_before, "load_after": _load(), "code": probe}


def inprocess_case(banks: int, threshold: int, bits: int) -> dict:
    from secagg.crypto.randomness import system_randomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier.dkg import DkgConfig, run_ceremony

    config = DkgConfig(banks, threshold, bits)
    identities = {i: IdentityKey.generate(system_randomness()) for i in range(banks)}
    load_before = _load()
    started = time.perf_counter()
    _, _, report = run_ceremony(config, identities)
    stats = report.bank_stats[0]
    return {"seconds_all_banks": round(time.perf_counter() - started, 1),
            "max_bank_seconds": round(max(report.bank_seconds.values()), 1), "batches": stats.batches,
            "moduli": stats.moduli, "biprimality_tests": stats.biprimality_tests,
            "relayed_MB": round(report.bytes_relayed / 1e6, 1), "load_before": load_before, "load_after": _load()}


def inprocess_elsewhere(case: str, tree: str) -> dict:
    """:func:`inprocess_case` with the code in ``tree`` (a subprocess with that tree first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    done = subprocess.run([PY, str(Path(__file__).resolve()), "--inprocess-only", case], env=env, capture_output=True,
                          text=True, timeout=7200, check=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def dealer_case(banks: int, threshold: int, bits: int) -> float:
    from secagg.paillier.threshold import generate_threshold_keypair

    started = time.perf_counter()
    generate_threshold_keypair(banks, threshold, bits)
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["3:3:2048", "5:4:2048", "10:7:2048", "3:3:3072"],
                        help="banks:threshold:bits")
    parser.add_argument("--inprocess", action="store_true", help="also run every case in one process")
    parser.add_argument("--dealer-runs", type=int, default=3, help="dealer keys per case (its time varies a lot)")
    parser.add_argument("--tree", default=None, help="measure the secagg source tree in this directory (a frozen copy)")
    parser.add_argument("--baseline", default=None, help="also measure the network cases with the secagg source tree "
                        "in this directory (an earlier version), in the same run")
    parser.add_argument("--inprocess-only", default=None, help=argparse.SUPPRESS)  # one case, JSON (subprocess)
    args = parser.parse_args()
    if args.inprocess_only:
        import secagg

        row = inprocess_case(*(int(x) for x in args.inprocess_only.split(":")))
        print(json.dumps({**row, "code": secagg.__file__}), flush=True)
        return
    if args.tree:
        sys.path.insert(0, str(Path(args.tree).resolve()))
    print(f"# bench_dkg on {platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()}; tree {args.tree or 'this checkout'}"
          + (f", baseline {args.baseline}" if args.baseline else ""), flush=True)
    for case in args.cases:
        banks, threshold, bits = (int(x) for x in case.split(":"))
        row: dict = {"banks": banks, "threshold": threshold, "bits": bits}
        row["network"] = network_case(banks, threshold, bits, args.tree)
        if args.baseline:
            row["baseline_network"] = network_case(banks, threshold, bits, args.baseline)
            before, after = row["baseline_network"], row["network"]
            row["traffic_baseline_over_now"] = round(before["relayed_MB"] / after["relayed_MB"], 2)
            if before.get("relayed_MB_per_batch") and after.get("relayed_MB_per_batch"):
                row["traffic_per_batch_baseline_over_now"] = round(
                    before["relayed_MB_per_batch"] / after["relayed_MB_per_batch"], 2)
        if args.inprocess:
            row["inprocess"] = inprocess_elsewhere(case, args.tree) if args.tree else \
                inprocess_case(banks, threshold, bits)
            if args.baseline:  # traffic per batch (the batches a ceremony needs vary from run to run)
                row["baseline_inprocess"] = inprocess_elsewhere(case, args.baseline)
                before, after = row["baseline_inprocess"], row["inprocess"]
                row["inprocess_traffic_per_batch_baseline_over_now"] = round(
                    before["relayed_MB"] / before["batches"] / (after["relayed_MB"] / after["batches"]), 2)
        dealer = [dealer_case(banks, threshold, bits) for _ in range(args.dealer_runs)]
        row["dealer_seconds"] = dealer
        mean = sum(dealer) / len(dealer)
        row["network_over_dealer"] = round(row["network"]["wall_seconds"] / mean, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
