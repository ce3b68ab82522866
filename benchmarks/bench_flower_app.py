"""The same Flower app, two secure aggregations: secagg's workflow vs Flower's SecAgg+ workflow.

    .venv/bin/python benchmarks/bench_flower_app.py --baseline              # n=100, m=100,077, 4 rounds
    .venv/bin/python benchmarks/bench_flower_app.py --append --crash 3,14   # a section with offline banks
    .venv/bin/python benchmarks/bench_flower_app.py --banks 20 --neighbors 10 --threshold 6  # quicker

Runs examples/flower/bank_app (bank anti-fraud MLP, 13 -> 256 -> 374 -> 1: 100,077 weights) in
Flower's simulation engine (``run_simulation``, Ray, one CPU per ClientApp), once with
``secagg_masking_mod`` + ``SecAggMaskingWorkflow`` and once with Flower's ``secaggplus_mod`` +
``SecAggPlusWorkflow`` (``--baseline``: also with no secure aggregation): same app, data, neighbour
count and threshold, same machine, one process each, one after the other. A round's time is the fit
workflow's wall time (both protocols, the local training, Flower's messaging); the first round also
starts Ray's workers, so the per-round figure is the mean over rounds 2.. . Accuracy, ROC-AUC and
average precision are those of the global model after the last round on every bank's test split.

Writes benchmarks/results/flower_app.txt (``--append`` adds a section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "flower" / "run_simulation.py"
RESULTS = Path(__file__).resolve().parent / "results"


def run_variant(secure: str, args, out: Path) -> dict:
    command = [sys.executable, str(SCRIPT), "--secure", secure, "--banks", str(args.banks), "--rounds",
               str(args.rounds), "--samples", str(args.samples), "--model", "mlp", "--hidden", args.hidden,
               "--neighbors", str(args.neighbors), "--threshold", str(args.threshold), "--crash", args.crash,
               "--learning-rate", str(args.learning_rate), "--json", str(out)]
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"{secure} run failed ({proc.returncode})")
    data = json.loads(out.read_text())
    rounds = data["rounds"]
    steady = [r["seconds"] for r in rounds[1:]] or [rounds[0]["seconds"]]
    return {"secure": secure, "workflow": rounds[0]["workflow"], "rounds": rounds, "first_round_s": rounds[0]["seconds"],
            "per_round_s": sum(steady) / len(steady), "process_wall_s": wall, "load_before": load_before,
            "load_after": os.getloadavg()[0], "final": {k: rounds[-1][k] for k in
                                                         ("accuracy", "roc_auc", "average_precision", "loss")}}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=600, help="transactions per bank (70%% for training)")
    parser.add_argument("--hidden", default="256,374")
    parser.add_argument("--neighbors", type=int, default=50, help="k (Flower: num_shares = k + 1)")
    parser.add_argument("--threshold", type=int, default=26)
    parser.add_argument("--crash", default="", help="banks that go offline while training, e.g. 3,17")
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--baseline", action="store_true",
                        help="also run the app without secure aggregation (plain FedAvg, updates in the clear)")
    parser.add_argument("--only", choices=["secagg", "flower"])
    parser.add_argument("--append", action="store_true", help="add a section to the output instead of replacing it")
    parser.add_argument("--output", type=Path, default=RESULTS / "flower_app.txt")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sizes = [13, *map(int, args.hidden.split(",")), 1]
    m = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    variants = (["none"] if args.baseline else []) + [v for v in ("secagg", "flower") if args.only in (None, v)]
    rows = {}
    scratch = Path(tempfile.mkdtemp(prefix="secagg-bench-"))
    for secure in variants:
        print(f"running {secure} ...", flush=True)
        r = rows[secure] = run_variant(secure, args, scratch / f"{secure}.json")
        print(f"  {r['workflow']}: {r['per_round_s']:.2f} s per round (first round {r['first_round_s']:.2f} s), "
              f"accuracy {r['final']['accuracy']:.4f}, ROC-AUC {r['final']['roc_auc']:.4f}", flush=True)
    lines = [
        f"## n = {args.banks}, m = {m:,}, offline banks: {args.crash or 'none'}",
        "",
        f"command: .venv/bin/python benchmarks/bench_flower_app.py {' '.join(argv or sys.argv[1:])}".rstrip(),
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (other jobs running: see load average)",
        f"app: examples/flower/bank_app, bank anti-fraud MLP 13-{args.hidden.replace(',', '-')}-1 "
        f"(m = {m:,} weights), n = {args.banks} banks x {args.samples} transactions, "
        f"{args.rounds} rounds, lr {args.learning_rate}, Flower run_simulation (Ray, 1 CPU per ClientApp)",
        f"secure aggregation: k = {args.neighbors} neighbours (Flower num_shares = {args.neighbors + 1}), "
        f"threshold {args.threshold}",
        "",
        "| ClientApp mod + fit workflow | s per round (rounds 2..) | first round s | accuracy | ROC-AUC "
        "| avg precision | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"none": "none + default_fit_workflow (no secure aggregation)",
              "secagg": "secagg_masking_mod + SecAggMaskingWorkflow",
              "flower": "secaggplus_mod + SecAggPlusWorkflow (Flower)"}
    for secure, r in rows.items():
        f = r["final"]
        lines.append(f"| {labels[secure]} | {r['per_round_s']:.2f} | {r['first_round_s']:.2f} | {f['accuracy']:.4f} | "
                     f"{f['roc_auc']:.4f} | {f['average_precision']:.4f} | "
                     f"{r['load_before']:.1f} -> {r['load_after']:.1f} |")
    if "secagg" in rows and "flower" in rows:
        ratio = rows["flower"]["per_round_s"] / rows["secagg"]["per_round_s"]
        lines += ["", f"speed-up per round, secagg over Flower SecAgg+: **{ratio:.1f}x**"]
    if "secagg" in rows:
        steady = rows["secagg"]["rounds"][1:] or rows["secagg"]["rounds"]
        stages = steady[0].get("stage_seconds", {})
        if stages:
            lines += ["", "secagg, mean over rounds 2.. per protocol round: wall s (of which the server session s): "
                      + ", ".join(f"{name} {np.mean([x['stage_seconds'][name] for x in steady]):.2f} "
                                  f"({np.mean([x['server_seconds'][name] for x in steady]):.2f})" for name in stages)]
    lines += ["", "per-round seconds: " + "; ".join(
        f"{r['workflow']} " + ", ".join(f"{x['seconds']:.2f}" for x in r["rounds"]) for r in rows.values())]
    out = args.output
    header = ["# Flower app, secure aggregation by secagg vs by Flower's SecAgg+ (benchmarks/bench_flower_app.py)", ""]
    previous = out.read_text().rstrip("\n").split("\n") + [""] if args.append and out.exists() else header
    out.write_text("\n".join(previous + lines) + "\n")
    print("\n".join(lines))
    return [rows[v] for v in variants]


if __name__ == "__main__":
    main()
