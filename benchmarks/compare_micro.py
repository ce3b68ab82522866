"""Compare a pytest-benchmark run of benchmarks/test_micro.py with the saved ratios.

    python benchmarks/compare_micro.py benchmarks/local/micro.json            # compare (exit 1 if slower)
    python benchmarks/compare_micro.py benchmarks/local/micro.json --save     # make this run the baseline

Each kernel's figure is its best (minimum) time divided by the best time of the reference kernel
(``test_reference_aes_ctr_4mib``) of the same run, so a faster or slower machine, or one busy with
other work for the whole run, moves the kernel and the reference together and the ratio stays. A
kernel fails when its ratio exceeds the saved one by more than ``--tolerance`` (default 50%: kernels
that are NumPy-bound and the AES-NI-bound reference do not scale identically across CPUs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REFERENCE = "test_reference_aes_ctr_4mib"
BASELINE = Path(__file__).resolve().parent / "baselines" / "micro_ratios.json"


def ratios(run: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Each benchmark's best time (s) and its ratio to the reference's best time in the same run."""
    best = {b["name"]: float(b["stats"]["min"]) for b in run["benchmarks"]}
    if REFERENCE not in best:
        raise SystemExit(f"the run has no {REFERENCE}: run the whole of benchmarks/test_micro.py")
    return best, {name: seconds / best[REFERENCE] for name, seconds in best.items() if name != REFERENCE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the --benchmark-json output of benchmarks/test_micro.py")
    parser.add_argument("--baseline", default=str(BASELINE))
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed relative increase of a ratio")
    parser.add_argument("--save", action="store_true", help="write this run's ratios as the baseline")
    args = parser.parse_args(argv)
    run = json.loads(Path(args.run).read_text())
    best, measured = ratios(run)
    machine = run.get("machine_info", {})
    print(f"reference {REFERENCE}: {1e3 * best[REFERENCE]:.2f} ms "
          f"({(4 << 20) / best[REFERENCE] / 1e9:.2f} GB/s AES-256-CTR) on {machine.get('cpu', {}).get('brand_raw', '?')}")
    if args.save:
        Path(args.baseline).write_text(json.dumps({
            "reference": REFERENCE, "reference_seconds": best[REFERENCE], "cpu": machine.get("cpu", {}).get("brand_raw"),
            "python": machine.get("python_version"), "ratios": dict(sorted(measured.items()))}, indent=1) + "\n")
        print(f"saved {len(measured)} ratios to {args.baseline}")
        return 0
    saved = json.loads(Path(args.baseline).read_text())["ratios"]
    failed = []
    width = max(map(len, measured))
    print(f"{'kernel':<{width}}  {'ms':>9}  {'x ref':>8}  {'saved':>8}  {'change':>7}")
    for name, ratio in sorted(measured.items()):
        if name not in saved:
            print(f"{name:<{width}}  {1e3 * best[name]:>9.2f}  {ratio:>8.3f}  {'-':>8}  (new: not compared)")
            continue
        change = ratio / saved[name] - 1
        slower = change > args.tolerance
        failed += [name] if slower else []
        print(f"{name:<{width}}  {1e3 * best[name]:>9.2f}  {ratio:>8.3f}  {saved[name]:>8.3f}  {change:>+7.0%}"
              f"{'  SLOWER' if slower else ''}")
    missing = sorted(set(saved) - set(measured))
    if missing:
        print(f"not measured in this run: {', '.join(missing)}")
    if failed:
        print(f"{len(failed)} kernels slower than the baseline by more than {args.tolerance:.0%} relative to the "
              "reference")
        return 1
    print(f"all {len(measured)} kernels within {args.tolerance:.0%} of their saved ratio to the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
