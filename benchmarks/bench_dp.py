"""Differential privacy: sampler speed and fit, calibration, accounting, and accuracy against epsilon.

    .venv/bin/python benchmarks/bench_dp.py            # full run: writes docs/img/dp_accuracy_vs_epsilon.png
    .venv/bin/python benchmarks/bench_dp.py --quick    # fewer points, for a smoke test

Results go to benchmarks/results/dp.txt (text) and docs/img/dp_*.png (plots; needs matplotlib).
Every figure is printed beside its floor: the sampler's speed beside the AES-CTR stream it reads,
the calibration time beside one evaluation of the accountant.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secagg.aggregation import make_aggregator  # noqa: E402
from secagg.crypto.randomness import TestOnlySeededRandomness  # noqa: E402
from secagg.dp import (  # noqa: E402
    AesCtrRandomness,
    DistributedMechanism,
    DPConfig,
    discrete_gaussian_pmf,
    discrete_gaussian_reference,
    sample_discrete_gaussian,
    sample_skellam,
)
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402


class _Counting:
    """A random source that counts the bytes it hands out."""

    def __init__(self, inner):
        self.inner, self.count = inner, 0

    def random_bytes(self, n):
        self.count += n
        return self.inner.random_bytes(n)


def _best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def sampler_speed(lines, n=100_000):
    floor_bytes = 16 << 20
    source = AesCtrRandomness()
    aes_rate = floor_bytes / _best_of(lambda: source.random_bytes(floor_bytes))
    lines.append(f"AES-256-CTR stream (the samplers' randomness): {aes_rate / 1e6:,.0f} MB/s")
    lines.append(f"{'sampler':<34} {'variance':>10} {'n':>8} {'seconds':>8} {'samples/s':>11} {'bytes/sample':>13}")
    for sigma2 in (1e2, 1e6, 1e10):
        counting = _Counting(AesCtrRandomness())
        sample_discrete_gaussian(sigma2, n, counting)
        per_sample = counting.count / n
        seconds = _best_of(lambda: sample_discrete_gaussian(sigma2, n))
        lines.append(f"{'discrete Gaussian (vectorised)':<34} {sigma2:>10.0e} {n:>8,} {seconds:>8.3f} "
                     f"{n / seconds:>11,.0f} {per_sample:>13.1f}")
    small = 1024
    seconds = _best_of(lambda: sample_discrete_gaussian(1e6, small), 10)
    lines.append(f"{'discrete Gaussian (vectorised)':<34} {1e6:>10.0e} {small:>8,} {seconds:>8.4f} {small / seconds:>11,.0f}")
    m = 2000
    seconds = _best_of(lambda: [discrete_gaussian_reference(1e6) for _ in range(m)], 1)
    lines.append(f"{'discrete Gaussian (reference)':<34} {1e6:>10.0e} {m:>8,} {seconds:>8.3f} {m / seconds:>11,.0f}")
    for variance in (1e2, 1e6):
        seconds = _best_of(lambda: sample_skellam(variance, n))
        lines.append(f"{'Skellam (PTRS Poisson, float64)':<34} {variance:>10.0e} {n:>8,} {seconds:>8.3f} "
                     f"{n / seconds:>11,.0f}")


def chi_square(lines, n=100_000):
    from scipy import stats

    lines.append(f"chi-square goodness of fit of {n:,} vectorised samples against the exact pmf "
                 "(TestOnlySeededRandomness(2026), tails lumped so every bin expects >= 5):")
    for sigma2 in (0.7, 4.0, 250.25, 12345.678):
        samples = sample_discrete_gaussian(sigma2, n, TestOnlySeededRandomness(2026, str(sigma2).encode()))
        reach = int(np.abs(samples).max()) + 50
        support = np.arange(-reach, reach + 1)
        expected = n * discrete_gaussian_pmf(sigma2, support)
        keep = np.flatnonzero(expected >= 5)
        lo, hi = keep[0], keep[-1]
        counts = np.bincount(samples + reach, minlength=support.size)
        observed = np.concatenate([[counts[:lo].sum()], counts[lo:hi + 1], [counts[hi + 1:].sum()]])
        wanted = np.concatenate([[expected[:lo].sum()], expected[lo:hi + 1], [expected[hi + 1:].sum()]])
        wanted *= n / wanted.sum()
        used = wanted > 0
        statistic = float(np.sum((observed[used] - wanted[used]) ** 2 / wanted[used]))
        p = stats.chi2.sf(statistic, used.sum() - 1)
        lines.append(f"  sigma^2 = {sigma2:<10g} bins {used.sum():>4}  chi2 {statistic:>9.1f}  p = {p:.3f}  "
                     f"sample variance / sigma^2 = {samples.var() / sigma2:.4f}")


def variance_check(lines, clients=20, dimension=16_000):
    mech = DistributedMechanism(DPConfig(noise_multiplier=1.0, clip=1.0), dimension=dimension, rounds=10,
                                sampling_rate=1.0, expected_contributions=clients, min_shares=clients)
    signs = mech.signs(bytes(32))
    aggregation = make_aggregator("masking").open_round(list(range(clients)), mech.padded, max_weight=1.0,
                                                        clip=float(mech.value_bound(1)), rng=np.random.default_rng(0))
    for client in range(clients):
        aggregation.submit(client, mech.encode(np.zeros(dimension), signs).astype(np.float64), 1.0)
    noise = mech.decode(aggregation.finish().weighted_sum, signs)
    ratio = noise.var() / mech.noise_stddev**2
    stderr = math.sqrt(2 / (noise.size - 1))
    lines.append(f"decoded aggregate of {clients} clients' zero updates through 'masking', {dimension:,} coordinates: "
                 f"sample variance / calibrated = {ratio:.4f} ({(ratio - 1) / stderr:+.2f} standard errors); "
                 f"calibrated sigma = {mech.noise_stddev:.4g} = z {mech.noise_multiplier:.4g} x l2 {mech.l2:.1f} "
                 f"x gamma {mech.granularity:.3g}")


# (name, level, dimension, rounds, sampling_rate, expected_contributions, min_shares, population)
SCHEDULES = [
    ("anti-fraud demo: record level, 8 banks, q = 0.02, 100 rounds", "record", 14, 100, 0.02, 670.0, 7, None),
    ("digits: client level, 100 of 1,000 per round, 60 rounds", "client", 650, 60, 0.1, 100.0, 95, 1000),
]


def accounting_check(lines):
    """Reported epsilons against dp-accounting, and what the proven default costs over the old bound."""
    import dp_accounting

    from secagg.dp.accounting import RDP_ORDERS, MechanismAccountant

    relation = dp_accounting.NeighboringRelation
    for label, level, dimension, rounds, rate, expected, shares, population in SCHEDULES:
        for epsilon in (1.0, 3.0, 8.0):
            kwargs = dict(dimension=dimension, rounds=rounds, sampling_rate=rate, expected_contributions=expected,
                          min_shares=shares, population=population)
            proven = DistributedMechanism(DPConfig(epsilon=epsilon, level=level), **kwargs)
            approximate = DistributedMechanism(DPConfig(epsilon=epsilon, level=level,
                                                        accountant="gaussian_approximation"), **kwargs)
            # the approximation's number from dp-accounting itself (its RdpAccountant at secagg's orders)
            rdp = dp_accounting.rdp.RdpAccountant(orders=list(RDP_ORDERS), neighboring_relation=(
                relation.ADD_OR_REMOVE_ONE if population is None else relation.REPLACE_ONE))
            rdp.compose(approximate.accountant.dp_accounting_event(rounds))
            direct = rdp.get_epsilon(1e-5)
            # the old noise read with the proven bound: what the old report should have said
            old = approximate.accountant
            reread = MechanismAccountant(old.mechanism, old.l2, old.l1, old.variance, old.shares, old.dimension,
                                         old.sampling_rate, old.delta, old.population).epsilon(rounds)
            lines.append(f"  {label}, target {epsilon:g}: proven default z = {proven.noise_multiplier:.3f} "
                         f"(reports {float(proven.epsilon(rounds)):.9f}); gaussian_approximation z = "
                         f"{approximate.noise_multiplier:.3f} (reports {float(approximate.epsilon(rounds)):.9f}, "
                         f"dp-accounting {direct:.9f}), which the proven bound reads as epsilon {reread:.3f}")


def calibration_times(lines, quick=False):
    """Construction time of every configuration of a grid (the grid of tests/dp/test_mechanism.py)."""
    import itertools

    from secagg.dp.accounting import _zcdp_rdp, rho_budget
    from secagg.errors import ParameterError

    grid = {  # (dimension, rounds, sampling_rate, expected_contributions, min_shares, population)
        "record, demo": (14, 100, 0.02, 670.0, 7, None),
        "record, big model": (50_000, 500, 0.01, 100.0, 3, None),
        "client, digits": (650, 60, 0.1, 100.0, 95, 1000),
        "client, few": (10_000, 20, 0.5, 10.0, 9, 20),
        "everyone, every round": (1000, 30, 1.0, 8.0, 8, None),
    }
    start = time.perf_counter()
    rho_budget(1.0, 10, 1e-5, 0.5)  # imports dp-accounting once, outside the timings
    lines.append(f"(importing dp-accounting: {time.perf_counter() - start:.2f} s, once per process)")
    epsilons = (1.0, 4.0) if quick else (0.3, 1.0, 4.0, 16.0)
    bits_grid = (8, 20) if quick else (8, 12, 16, 20, 32)
    rows = []
    for (name, schedule), epsilon, bits, accountant, mechanism in itertools.product(
            grid.items(), epsilons, bits_grid, ("proven", "gaussian_approximation"), ("dgauss", "skellam")):
        dimension, rounds, rate, expected, shares, population = schedule
        if mechanism == "skellam" and rate < 1:
            continue
        config = DPConfig(epsilon=epsilon, bits=bits, accountant=accountant, mechanism=mechanism,
                          level="client" if population else "record")
        _zcdp_rdp.cache_clear()  # every configuration from a cold cache
        start = time.perf_counter()
        try:
            mech = DistributedMechanism(config, dimension=dimension, rounds=rounds, sampling_rate=rate,
                                        expected_contributions=expected, min_shares=shares, population=population)
            evaluations, outcome = mech.calibration_evaluations, "built"
        except ParameterError as error:
            evaluations = 0
            outcome = ("refused" if "width" in str(error) else
                       "too fine" if "lower bits" in str(error) else f"error: {error}")
        rows.append((time.perf_counter() - start, evaluations, outcome, name, epsilon, bits, accountant, mechanism))
    built = [r for r in rows if r[2] == "built"]
    refused = [r for r in rows if r[2] == "refused"]
    fine = [r for r in rows if r[2] == "too fine"]
    others = [r for r in rows if r[2] not in ("built", "refused", "too fine")]
    times = sorted(r[0] for r in built)
    lines.append(f"{len(rows)} configurations: {len(built)} built, {len(refused)} refused up front (naming a width), "
                 f"{len(fine)} refused as finer than a sampler can take (\"lower bits\"), {len(others)} other errors")
    lines.append(f"  construction time: median {times[len(times) // 2] * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms; "
                 f"refusals at most {max((r[0] for r in refused), default=0) * 1e3:.1f} ms")
    for row in sorted(built, reverse=True)[:4]:
        lines.append(f"  slowest: {row[0] * 1e3:7.1f} ms, {row[1]:4d} accountant evaluations  ({row[3]}, "
                     f"eps {row[4]:g}, bits {row[5]}, {row[6]}, {row[7]})")
    for kind in ("proven", "gaussian_approximation"):
        for scheme, population in (("Poisson", None), ("cohort", 1000)):
            rate = 0.1
            _zcdp_rdp.cache_clear()
            start = time.perf_counter()
            _zcdp_rdp(0.01, rate, population, kind)
            lines.append(f"  one accountant evaluation ({kind}, {scheme}, rho 0.01): "
                         f"{(time.perf_counter() - start) * 1e3:.2f} ms")
    for row in others:
        lines.append(f"  UNEXPECTED {row}")


class _Replay:
    """A fixed byte string as a RandomSource: a party's secret stream, fixed to build a coupling."""

    def __init__(self, data):
        self.data, self.offset = data, 0

    def random_bytes(self, n):
        self.offset += n
        return self.data[self.offset - n:self.offset]


def sensitivity_check(lines, records=100, removals=20):
    """Removing one record: the sum moves by that record's rounding (secret keys, coupled stream), or
    by far more when the rounding coins can be replayed (what a public seed allowed)."""
    from secagg.dp.mechanism import ROUNDING_KEY_BYTES

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(records, 14))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for bits in (12, 16, 20):
        mech = DistributedMechanism(DPConfig(epsilon=3.0, level="record", bits=bits), dimension=14, rounds=100,
                                    sampling_rate=0.02, expected_contributions=670, min_shares=7)
        signs = mech.signs(bytes(32))
        coupled_worst = replayed_worst = 0.0
        for trial in range(removals):
            stream = TestOnlySeededRandomness(trial, b"secret").random_bytes(1 << 16)
            k = int(rng.integers(records - 1))
            full = mech.encode(rows, signs, _Replay(stream))
            cut = stream[:ROUNDING_KEY_BYTES * k] + stream[ROUNDING_KEY_BYTES * (k + 1):]
            coupled = full - mech.encode(np.delete(rows, k, axis=0), signs, _Replay(cut))
            # the same coins read in order (a replayable stream): later records take shifted coins
            keys = stream[:ROUNDING_KEY_BYTES * records]
            replayed = (mech._round(rows, signs, keys).sum(axis=0)
                        - mech._round(np.delete(rows, k, axis=0), signs, keys[:-ROUNDING_KEY_BYTES]).sum(axis=0))
            coupled_worst = max(coupled_worst, float(np.linalg.norm(coupled)) / mech.l2)
            replayed_worst = max(replayed_worst, float(np.linalg.norm(replayed)) / mech.l2)
        lines.append(f"  bits {bits}: largest |sum(D) - sum(D - x)| / l2 over {removals} removals from {records} "
                     f"records: {coupled_worst:.3f} with the secret stream coupled as the proof does (noise included), "
                     f"{replayed_worst:.2f} for the rounded sums if the coins could be replayed (as the seed's were)")


def _banks():
    from secagg.fedavg.data import make_bank_transactions

    banks = make_bank_transactions(8, 6000, seed=0)
    test = (np.vstack([b.X_test for b in banks]), np.concatenate([b.y_test for b in banks]))
    return [(b.X_train, b.y_train) for b in banks], test


def antifraud_curve(lines, epsilons, seeds):
    clients, test = _banks()
    points = []
    baseline = []
    for seed in seeds:
        fl = FedAvg(NumpyLogisticRegression(13), aggregator="plain", rounds=20, local_epochs=1, batch_size=64,
                    learning_rate=0.1, simulated_dropout=0.125, seed=seed)
        baseline.append(fl.fit(clients, eval_data=test).metric("roc_auc")[-1])
    clipped = []
    for seed in seeds:  # the same DP-SGD schedule and clipping, without noise: what noise costs on its own
        config = DPConfig(noise_multiplier=1e-6, clip=1.0, level="record", record_sampling_rate=0.02,
                          dropout_tolerance=0.125)
        fl = FedAvg(NumpyLogisticRegression(13), aggregator="plain", rounds=100, learning_rate=1.0,
                    simulated_dropout=0.125, seed=seed, dp=config)
        clipped.append(fl.fit(clients, eval_data=test).metric("roc_auc")[-1])
    lines.append(f"  anti-fraud  same DP-SGD schedule without noise (clipping only): ROC-AUC {np.mean(clipped):.3f}")
    for epsilon in epsilons:
        aucs, spent = [], []
        for seed in seeds:
            config = DPConfig(epsilon=epsilon, delta=1e-5, clip=1.0, level="record", record_sampling_rate=0.02,
                              dropout_tolerance=0.125)
            fl = FedAvg(NumpyLogisticRegression(13), aggregator="plain", rounds=100, learning_rate=1.0,
                        simulated_dropout=0.125, seed=seed, dp=config)
            history = fl.fit(clients, eval_data=test)
            aucs.append(history.metric("roc_auc")[-1])
            spent.append(history.epsilon[-1])
        points.append((epsilon, float(np.mean(aucs)), float(np.std(aucs)), max(spent)))
        lines.append(f"  anti-fraud  eps {epsilon:>5g}: ROC-AUC {np.mean(aucs):.3f} +- {np.std(aucs):.3f} "
                     f"(spent {max(spent):.3f}, z {fl.dp_mechanism.noise_multiplier:.3f})")
    lines.append(f"  anti-fraud  non-private FedAvg (20 rounds): ROC-AUC {np.mean(baseline):.3f}")
    return points, float(np.mean(baseline)), float(np.mean(clipped))


def _digits(clients):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from secagg.fedavg.data import partition_iid

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    return partition_iid(X_train, y_train, clients, seed=0), (X_test, y_test)


def digits_curve(lines, epsilons, seeds, clients=1000, per_round=100, rounds=60):
    shards, test = _digits(clients)
    # client level: a fixed cohort of per_round clients, replace-one accounting (docs/dp.md)
    common = dict(aggregator="plain", rounds=rounds, clients_per_round=per_round, local_epochs=5, batch_size=8,
                  learning_rate=0.5, simulated_dropout=0.05)
    baseline = [FedAvg(NumpyLogisticRegression(64, 10), seed=s, **common).fit(shards, eval_data=test)
                .metric("accuracy")[-1] for s in seeds]
    clipped = [FedAvg(NumpyLogisticRegression(64, 10), seed=s, **common,
                      dp=DPConfig(noise_multiplier=1e-6, clip=1.0, dropout_tolerance=0.05)
                      ).fit(shards, eval_data=test).metric("accuracy")[-1] for s in seeds]
    lines.append(f"  digits      same schedule, L2 clip 1.0 and unit weights, without noise: accuracy "
                 f"{np.mean(clipped):.3f}")
    points = []
    for epsilon in epsilons:
        accuracy, spent = [], []
        for seed in seeds:
            config = DPConfig(epsilon=epsilon, delta=1e-5, clip=1.0, dropout_tolerance=0.05)
            fl = FedAvg(NumpyLogisticRegression(64, 10), seed=seed, dp=config, **common)
            history = fl.fit(shards, eval_data=test)
            accuracy.append(history.metric("accuracy")[-1])
            spent.append(history.epsilon[-1])
        points.append((epsilon, float(np.mean(accuracy)), float(np.std(accuracy)), max(spent)))
        lines.append(f"  digits      eps {epsilon:>5g}: accuracy {np.mean(accuracy):.3f} +- {np.std(accuracy):.3f} "
                     f"(spent {max(spent):.3f}, z {fl.dp_mechanism.noise_multiplier:.3f}, "
                     f"noise shares >= {fl.dp_mechanism.min_shares})")
    lines.append(f"  digits      non-private FedAvg: accuracy {np.mean(baseline):.3f}")
    return points, float(np.mean(baseline)), float(np.mean(clipped))


def plot(path, fraud, digits):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (points, baseline, noiseless), title, ylabel in (
            (axes[0], fraud, "anti-fraud, 8 banks, record-level DP-SGD (delta 1e-5)", "ROC-AUC"),
            (axes[1], digits, "digits, 1,000 clients, client-level DP (delta 1e-5)", "accuracy")):
        eps = [p[0] for p in points]
        ax.errorbar(eps, [p[1] for p in points], yerr=[p[2] for p in points], marker="o", capsize=3,
                    label="DP FedAvg, discrete Gaussian shares")
        ax.axhline(baseline, color="grey", linestyle="--", label="non-private FedAvg")
        if noiseless is not None:
            ax.axhline(noiseless, color="tab:green", linestyle=":", label="same DP schedule and clipping, no noise")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(eps)
        ax.set_xticklabels([f"{e:g}" for e in eps])
        ax.set_xlabel("epsilon")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epsilons and one seed")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "dp.txt"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "dp_accuracy_vs_epsilon.png"))
    args = parser.parse_args(argv)
    lines = [f"bench_dp on {platform.platform()}, Python {platform.python_version()}, numpy {np.__version__}", ""]

    def section(title, fn, *a):
        lines.append(f"## {title}")
        start = time.perf_counter()
        out = fn(lines, *a)
        lines.append(f"({time.perf_counter() - start:.1f} s)")
        lines.append("")
        print("\n".join(lines[-4:]), flush=True)
        return out

    section("sampler speed", sampler_speed)
    section("sampler fit", chi_square)
    section("calibration: variance of the decoded noise", variance_check)
    section("calibration time over a grid of configurations (schedules x epsilon x bits x accountant x noise)",
            calibration_times, args.quick)
    section("accounting: proven default against the Gaussian approximation (and dp-accounting's number for it)",
            accounting_check)
    section("record-level sensitivity of the rounded sum, demo schedule (l2 is the accounted bound)",
            sensitivity_check)
    fraud_eps = [0.25, 3.0] if args.quick else [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 8.0]
    digit_eps = [2.0, 8.0] if args.quick else [1.0, 2.0, 4.0, 8.0, 16.0]
    seeds = [0] if args.quick else [0, 1, 2]
    fraud = section("accuracy against epsilon, proven accountant: anti-fraud (plain aggregator; the masking and "
                    "Paillier paths sum the same integers exactly)", antifraud_curve, fraud_eps, seeds)
    digits = section("accuracy against epsilon, proven accountant: digits, 1,000 clients, 100 per round (fixed "
                     "cohort, replace-one), 60 rounds", digits_curve, digit_eps, seeds[:2])
    try:
        plot(Path(args.plot), fraud, digits)
        lines.append(f"plot: {_shown(Path(args.plot))}")
    except ImportError:
        lines.append("plot skipped: matplotlib is not installed (pip install 'secagg[bench]')")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
