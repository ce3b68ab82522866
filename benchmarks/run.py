"""Dropout-tolerance and scaling benchmarks of secagg, beside the crypto floor and Flower's SecAgg+.

    .venv/bin/pip install -e '.[bench]'               # matplotlib, flwr
    .venv/bin/python benchmarks/run.py --preset quick  # about a minute
    .venv/bin/python benchmarks/run.py --preset paper  # the full grid, about an hour

Writes ``benchmarks/local/<preset>/`` (ignored by git; ``--out`` elsewhere, ``--update-results``
to replace the committed ``benchmarks/results/<preset>/``): ``results.json`` (machine, library
versions, crypto floor, every row), ``results.csv`` (one row per session), ``summary.md`` (the
tables) and ``plots/*.png``.

Sweeps (every session is one ``secagg.simulate`` run in this warm process, its floor computed from
the masks and X25519 operations it actually needed, at the AES-CTR and X25519 rates measured at the
start of the run):

* ``n``: clients, complete graph vs SecAgg+ (k, t from ``choose_graph_parameters(n, 0.3, 0.05)``);
* ``dropout``: 0/10/20/30% of clients vanish before sending their masked input (the costly case);
* ``m``: vector length;
* ``tolerance``: for fixed n and t, success rate and server cost as dropout grows, dropping before
  each round in turn (where dropouts cost the server most; where the protocol aborts);
* ``flower``: the same n, m, dropout and neighbour count through Flower's SecAgg+ code
  (``benchmarks/flower_secaggplus.py``) and through secagg, in the same process.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Floor, machine_info, masked_input_peak_vectors, run_session, warm_up  # noqa: E402

from secagg.protocol.graph import choose_graph_parameters  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"  # committed: replaced only with --update-results
LOCAL = Path(__file__).resolve().parent / "local"  # ignored by git: every other run

PRESETS = {
    "quick": {
        "n": {"ns": [50, 100, 200], "m": 100_000, "dropout": 0.1},
        "dropout": {"cells": [(100, 100_000)], "dropouts": [0.0, 0.1, 0.2, 0.3]},
        "server_bar": {"cells": [(500, 100_000, 0.3)]},
        "m": {"n": 50, "ms": [1_000, 10_000, 100_000, 1_000_000], "dropout": 0.1},
        "tolerance": {"n": 100, "m": 10_000, "fractions": [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8],
                      "trials": 1,
                      "rounds": ["share_keys", "masked_input", "unmasking"]},
        "flower": [{"n": 50, "m": 10_000, "neighbors": 20, "dropout": 0.1}],
    },
    "paper": {
        "n": {"ns": [100, 200, 500, 1000], "m": 100_000, "dropout": 0.1},
        "dropout": {"cells": [(100, 100_000), (500, 100_000)], "dropouts": [0.0, 0.1, 0.2, 0.3]},
        "server_bar": {"cells": [(500, 100_000, 0.3)]},
        "m": {"n": 100, "ms": [10_000, 100_000, 1_000_000], "dropout": 0.1},
        "tolerance": {"n": 100, "m": 10_000, "fractions": [i / 20 for i in range(17)], "trials": 5,
                      "rounds": ["share_keys", "masked_input", "unmasking"]},
        "flower": [{"n": 100, "m": 100_000, "neighbors": 50, "dropout": 0.1},
                   {"n": 100, "m": 100_000, "neighbors": None, "dropout": 0.1}],
    },
}


def graphs_for(n: int) -> list[tuple[int | None, int]]:
    """Complete graph with t = ceil(2n/3), and SecAgg+ with k, t chosen for 30% dropout, 5% corrupt."""
    out = [(None, math.ceil(2 * n / 3))]
    params = choose_graph_parameters(n, 0.3, 0.05)
    if params.neighbors is not None:
        out.append((params.neighbors, params.threshold))
    return out


def log(row: dict) -> None:
    if not row["ok"]:
        print(f"  n={row['n']:>5} {row['graph']:>8} m={row['m']:>8,} drop {row['dropout']:>4.0%} "
              f"before {row['drop_round']}: ABORT in {row['abort_round']}", flush=True)
        return
    print(f"  n={row['n']:>5} {row['graph']:>8} m={row['m']:>8,} drop {row['dropout']:>4.0%}: "
          f"client {1e3 * row['client_s_mean']:7.1f} ms, server {1e3 * row['server_s']:8.1f} ms, "
          f"wall {row['wall_s']:6.2f} s = {row['ratio']:.2f}x floor (server {row['server_ratio']:.2f}x)"
          f"{'' if row['exact'] else '  INEXACT'}", flush=True)


def sweep_n(spec, floor):
    rows = []
    for n in spec["ns"]:
        for neighbors, threshold in graphs_for(n):
            rows.append(run_session(n, spec["m"], neighbors, threshold, floor, dropout=spec["dropout"]) | {"sweep": "n"})
            log(rows[-1])
    return rows


def sweep_dropout(spec, floor, name="dropout"):
    rows = []
    for n, m in spec["cells"]:
        for neighbors, threshold in graphs_for(n):
            for dropout in spec["dropouts"]:
                rows.append(run_session(n, m, neighbors, threshold, floor, dropout=dropout) | {"sweep": name})
                log(rows[-1])
    return rows


def sweep_server_bar(spec, floor):
    rows = []
    for n, m, dropout in spec["cells"]:
        neighbors, threshold = graphs_for(n)[-1]
        rows.append(run_session(n, m, neighbors, threshold, floor, dropout=dropout) | {"sweep": "server_bar"})
        log(rows[-1])
    return rows


def sweep_m(spec, floor):
    rows = []
    n = spec["n"]
    for m in spec["ms"]:
        for neighbors, threshold in graphs_for(n):
            rows.append(run_session(n, m, neighbors, threshold, floor, dropout=spec["dropout"]) | {"sweep": "m"})
            log(rows[-1])
    return rows


def sweep_tolerance(spec, floor):
    rows = []
    n, m = spec["n"], spec["m"]
    for neighbors, threshold in graphs_for(n):
        for drop_round in spec["rounds"]:
            for fraction in spec["fractions"]:
                trials = 1 if neighbors is None else spec["trials"]
                for trial in range(trials):
                    rows.append(run_session(n, m, neighbors, threshold, floor, dropout=fraction,
                                            drop_round=drop_round, seed=trial) | {"sweep": "tolerance", "trial": trial})
        print(f"  tolerance n={n} {rows[-1]['graph']} t={threshold}: done", flush=True)
    return rows


def run_flower(specs, floor):
    try:
        from flower_secaggplus import run_flower_round
    except ImportError:
        print("  flwr not installed: pip install -e '.[bench]' for the side-by-side", flush=True)
        return []
    rows = []
    for spec in specs:
        n, m, k, dropout = spec["n"], spec["m"], spec["neighbors"], spec["dropout"]
        rng = np.random.default_rng(0)
        dropped = set(rng.choice(n, size=int(round(dropout * n)), replace=False).tolist())
        # Flower counts the client itself among its num_shares; k neighbours = k + 1 shares.
        num_shares = n if k is None else k + 1
        flower_t = math.ceil(num_shares / 2) + (0 if k else 1)
        ours_t = math.ceil(num_shares / 2) + (0 if k else 1)
        start = time.perf_counter()
        flower = run_flower_round(n, m, num_shares, flower_t, {d + 1 for d in dropped})
        flower_wall = time.perf_counter() - start
        ours = run_session(n, m, k, ours_t, floor, dropout=dropout)
        row = {"sweep": "flower", "n": n, "m": m, "graph": "complete" if k is None else f"k={k}", "dropout": dropout,
               "flower_wall_s": flower_wall, "flower_client_s_total": flower["client_seconds_total"],
               "flower_server_s": flower["server_seconds"], "flower_max_abs_error": flower["max_abs_error"],
               "secagg_wall_s": ours["wall_s"], "secagg_server_s": ours["server_s"], "secagg_exact": ours["exact"],
               "secagg_floor_s": ours["floor_s"], "speedup": flower_wall / ours["wall_s"],
               "flower_threshold": flower_t, "secagg_threshold": ours_t}
        rows.append(row)
        print(f"  Flower SecAgg+ n={n} m={m:,} {row['graph']} drop {dropout:.0%}: flower {flower_wall:.2f} s, "
              f"secagg {ours['wall_s']:.2f} s -> {row['speedup']:.1f}x", flush=True)
    return rows


# ------------------------------------------------------------------------------ output

def write_csv(rows, path):
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows]
    keys = sorted({k for r in flat for k in r})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(flat)


def plot(rows, floor, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    style = {"complete": ("tab:blue", "o"), "secagg+": ("tab:orange", "s")}

    def kind(row):
        return "complete" if row["graph"] == "complete" else "secagg+"

    def series(sweep, x, y, where=lambda r: True):
        data = {}
        for r in rows:
            if r.get("sweep") == sweep and r.get("ok") and where(r):
                data.setdefault(kind(r), []).append((r[x], r[y] if not callable(y) else y(r)))
        return {k: sorted(v) for k, v in data.items()}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(name)

    # 1. cost against n
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (y, floor_key, title) in zip(axes, [("client_s_mean", "client_floor_per_client", "client (per client)"),
                                                ("server_s", "server_floor_s", "server")]):
        for k, pts in series("n", "n", y).items():
            color, marker = style[k]
            ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], marker=marker, color=color, label=k)
        for k, pts in series("n", "n", lambda r: (r["client_floor_s"] / r["survivors"]) if floor_key ==
                             "client_floor_per_client" else r["server_floor_s"]).items():
            ax.plot([p[0] for p in pts], [1e3 * p[1] for p in pts], linestyle="--", color=style[k][0], alpha=0.6,
                    label=f"{k} crypto floor")
        ax.set_xlabel("clients n")
        ax.set_ylabel("milliseconds")
        ax.set_title(f"{title} time, m = 100k, 10% dropout")
        ax.legend(fontsize=8)
    save(fig, "cost_vs_clients.png")

    # 2. server cost against dropout
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in sorted({r["n"] for r in rows if r.get("sweep") == "dropout"}):
        for k, pts in series("dropout", "dropout", "server_s", lambda r, n=n: r["n"] == n).items():
            color, marker = style[k]
            ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                    alpha=1.0 if n == max(r["n"] for r in rows if r.get("sweep") == "dropout") else 0.5,
                    label=f"{k}, n={n}")
    ax.set_xlabel("clients dropped before masked input (%)")
    ax.set_ylabel("server seconds")
    ax.set_title("server time against dropout, m = 100k")
    ax.legend(fontsize=8)
    save(fig, "server_vs_dropout.png")

    # 3. bytes
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (y, title, scale) in zip(axes, [("bytes_per_client_up", "upload per client (MiB)", 2**20),
                                            ("bytes_total", "all traffic (MiB)", 2**20)]):
        for k, pts in series("n", "n", y).items():
            color, marker = style[k]
            ax.plot([p[0] for p in pts], [p[1] / scale for p in pts], marker=marker, color=color, label=k)
        ax.set_xlabel("clients n")
        ax.set_title(title + ", m = 100k")
        ax.legend(fontsize=8)
    save(fig, "bytes_vs_clients.png")

    # 4. vector length
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, pts in series("m", "m", "wall_s").items():
        color, marker = style[k]
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=k)
    for k, pts in series("m", "m", "floor_s").items():
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], linestyle="--", color=style[k][0], alpha=0.6,
                  label=f"{k} crypto floor")
    ax.set_xlabel("vector length m")
    ax.set_ylabel("whole session, seconds")
    ax.set_title("scaling with m (10% dropout)")
    ax.legend(fontsize=8)
    save(fig, "cost_vs_length.png")

    # 5. dropout tolerance
    tol = [r for r in rows if r.get("sweep") == "tolerance"]
    if tol:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for k in ("complete", "secagg+"):
            for drop_round, line in zip(["share_keys", "masked_input", "unmasking"], ["-", "--", ":"]):
                pts = {}
                for r in tol:
                    if kind(r) == k and r["drop_round"] == drop_round:
                        pts.setdefault(r["dropout"], []).append(r)
                xs = sorted(pts)
                if not xs:
                    continue
                success = [np.mean([r["ok"] for r in pts[x]]) for x in xs]
                axes[0].plot([100 * x for x in xs], success, line, color=style[k][0], marker=style[k][1],
                             label=f"{k}, drop before {drop_round}")
                cost = [np.mean([r["server_s"] for r in pts[x] if r["ok"]]) if any(r["ok"] for r in pts[x])
                        else np.nan for x in xs]
                axes[1].plot([100 * x for x in xs], cost, line, color=style[k][0], marker=style[k][1],
                             label=f"{k}, before {drop_round}")
        axes[0].set_title(f"success rate, n = {tol[0]['n']}")
        axes[0].set_xlabel("clients dropped (%)")
        axes[0].set_ylim(-0.05, 1.05)
        axes[1].set_title("server seconds (successful runs)")
        axes[1].set_xlabel("clients dropped (%)")
        axes[0].legend(fontsize=7)
        save(fig, "dropout_tolerance.png")

    # 6. Flower side by side
    fl = [r for r in rows if r.get("sweep") == "flower"]
    if fl:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = [f"n={r['n']}, m={r['m']:,}\n{r['graph']}" for r in fl]
        x = np.arange(len(fl))
        ax.bar(x - 0.2, [r["flower_wall_s"] for r in fl], 0.4, label="Flower SecAgg+")
        ax.bar(x + 0.2, [r["secagg_wall_s"] for r in fl], 0.4, label="secagg")
        for i, r in enumerate(fl):
            ax.text(i, r["flower_wall_s"], f"{r['speedup']:.0f}x", ha="center", va="bottom")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("one round, all parties, seconds")
        ax.set_title("Flower SecAgg+ vs secagg, 10% dropout")
        ax.legend(fontsize=8)
        save(fig, "flower_vs_secagg.png")
    return written


def summary(rows, info, floor, peak, out: Path) -> str:
    lines = [f"# Benchmark results ({info['date']})", "",
             f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, cryptography {info['cryptography']}, "
             f"numpy {info['numpy']}, galois {info['galois']}" + (f", flwr {info['flwr']}" if "flwr" in info else ""),
             "", f"Crypto floor of this run: AES-256-CTR {floor.aes_bytes_per_second / 1e9:.2f} GB/s, "
             f"X25519 {1e6 * floor.x25519_seconds:.1f} us per operation. One client's masked-input step, "
             f"m = 100,000: peak allocation {peak:.2f} input vectors.", ""]

    def table(title, sweep, columns):
        picked = [r for r in rows if r.get("sweep") == sweep and r.get("ok", True)]
        if not picked:
            return
        lines.extend([f"## {title}", "", "| " + " | ".join(c[0] for c in columns) + " |",
                      "|" + "---|" * len(columns)])
        for r in picked:
            lines.append("| " + " | ".join(c[1](r) for c in columns) + " |")
        lines.append("")

    ms = lambda key: lambda r: f"{1e3 * r[key]:.1f}"  # noqa: E731
    common_cols = [("n", lambda r: str(r["n"])), ("m", lambda r: f"{r['m']:,}"), ("graph", lambda r: r["graph"]),
                   ("t", lambda r: str(r["threshold"])), ("dropout", lambda r: f"{r['dropout']:.0%}"),
                   ("client ms", ms("client_s_mean")), ("server ms", ms("server_s")),
                   ("upload KiB/client", lambda r: f"{r['bytes_per_client_up'] / 1024:.0f}"),
                   ("wall s", lambda r: f"{r['wall_s']:.2f}"), ("floor s", lambda r: f"{r['floor_s']:.2f}"),
                   ("ratio", lambda r: f"{r['ratio']:.2f}"), ("server / its floor", lambda r: f"{r['server_ratio']:.2f}"),
                   ("exact", lambda r: "yes" if r["exact"] else "NO")]
    table("Clients (n)", "n", common_cols)
    table("Dropout", "dropout", common_cols)
    table("Server bar: SecAgg+, 30% dropout", "server_bar", common_cols)
    table("Vector length (m)", "m", common_cols)
    tol = [r for r in rows if r.get("sweep") == "tolerance"]
    if tol:
        lines.extend(["## Dropout tolerance", "", "| graph | t | drop before | highest dropout that finished | "
                      "first abort | abort round | server ms at 10% |", "|---|---|---|---|---|---|---|"])
        for graph in dict.fromkeys(r["graph"] for r in tol):
            for drop_round in dict.fromkeys(r["drop_round"] for r in tol):
                sel = [r for r in tol if r["graph"] == graph and r["drop_round"] == drop_round]
                by = {}
                for r in sel:
                    by.setdefault(r["dropout"], []).append(r)
                finished = [x for x in sorted(by) if all(r["ok"] for r in by[x])]
                aborted = [x for x in sorted(by) if any(not r["ok"] for r in by[x])]
                ten = [r["server_s"] for r in by.get(0.1, []) if r["ok"]]
                abort_rounds = {r["abort_round"] for x in aborted[:1] for r in by[x] if not r["ok"]}
                lines.append(f"| {graph} | {sel[0]['threshold']} | {drop_round} | "
                             f"{max(finished):.0%} | " if finished else f"| {graph} | {sel[0]['threshold']} | {drop_round} | - | ")
                lines[-1] += (f"{aborted[0]:.0%} | {', '.join(sorted(abort_rounds))} | " if aborted else "none | - | ")
                lines[-1] += f"{1e3 * np.mean(ten):.1f} |" if ten else "- |"
        lines.append("")
    fl = [r for r in rows if r.get("sweep") == "flower"]
    if fl:
        lines.extend(["## Flower SecAgg+ side by side (same process)", "",
                      "| n | m | graph | dropout | Flower s | secagg s | speed-up | Flower max error | secagg exact |",
                      "|---|---|---|---|---|---|---|---|---|"])
        for r in fl:
            lines.append(f"| {r['n']} | {r['m']:,} | {r['graph']} | {r['dropout']:.0%} | {r['flower_wall_s']:.2f} | "
                         f"{r['secagg_wall_s']:.2f} | {r['speedup']:.1f}x | {r['flower_max_abs_error']:.1e} | "
                         f"{'yes' if r['secagg_exact'] else 'NO'} |")
        lines.extend(["", "| security | Flower SecAgg+ | secagg |", "|---|---|---|",
                      "| mask PRG | numpy MT19937 seeded with a 32-bit XOR-fold of the seed: 2^32 possible masks | "
                      "AES-256-CTR keyed by the full 256-bit seed |",
                      "| key agreement | ECDH P-384 + HKDF, Fernet (AES-128-CBC + HMAC) | X25519 + HKDF, AES-256-GCM |",
                      "| secret sharing | Shamir over GF(2^128) (PyCryptodome), 16-byte chunks | "
                      "Shamir over GF(2^31-1), vectorised (galois + BLAS) |", ""])
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--out", default=None, help="output directory (default benchmarks/local/<preset>)")
    output.add_argument("--update-results", action="store_true",
                        help="write to benchmarks/results/<preset>, replacing the committed results")
    parser.add_argument("--only", nargs="*", choices=["n", "dropout", "server_bar", "m", "tolerance", "flower"],
                        help="run only these sweeps")
    args = parser.parse_args()
    spec = PRESETS[args.preset]
    out = Path(args.out) if args.out else (RESULTS if args.update_results else LOCAL) / args.preset
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine_info()
    print(f"# secagg benchmarks, preset {args.preset}: {info['cpu']}, {info['cores']} cores", flush=True)
    warm_up()
    floor = Floor()
    peak = masked_input_peak_vectors(100_000)
    print(f"# crypto floor: AES-256-CTR {floor.aes_bytes_per_second / 1e9:.2f} GB/s, "
          f"X25519 {1e6 * floor.x25519_seconds:.1f} us/op", flush=True)
    sweeps = {"n": lambda: sweep_n(spec["n"], floor), "dropout": lambda: sweep_dropout(spec["dropout"], floor),
              "server_bar": lambda: sweep_server_bar(spec["server_bar"], floor), "m": lambda: sweep_m(spec["m"], floor),
              "tolerance": lambda: sweep_tolerance(spec["tolerance"], floor),
              "flower": lambda: run_flower(spec["flower"], floor)}
    rows = []
    for name, run in sweeps.items():
        if args.only and name not in args.only:
            continue
        print(f"## {name}", flush=True)
        rows += run()
    (out / "results.json").write_text(json.dumps({"preset": args.preset, "machine": info, "floor": floor.as_dict(),
                                                  "masked_input_peak_vectors": peak, "rows": rows}, indent=1))
    write_csv(rows, out / "results.csv")
    text = summary(rows, info, floor, peak, out)
    try:
        plots = plot(rows, floor, out / "plots")
    except ImportError:
        plots = []
        print("matplotlib not installed: pip install -e '.[bench]' for the plots")
    print(text)
    print(f"wrote {out}/results.json, results.csv, summary.md and {len(plots)} plots in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
