"""``secagg demo``: federated anti-fraud training across banks with secure aggregation.

Eight banks (by default) hold synthetic card transactions with ~1% fraud, different customers and
different fraud patterns. They train one logistic-regression fraud model with FedAvg; every round
one bank (by default) drops out at a random point of the secure-aggregation protocol. The closing
table compares, on the union of all banks' test sets, each bank training alone, the federated
model, and a pooled model trained on all data in one place (what the banks cannot legally do).

With ``--dp-epsilon`` the banks also train a second federated model with record-level differential
privacy (one customer's transaction is the protected unit): every round is one DP-SGD step on
Poisson-sampled transactions, each bank adding its share of discrete Gaussian noise before secure
aggregation, calibrated so the whole run is (epsilon, delta)-DP (dp-accounting). The table then
shows its ROC-AUC beside the non-private federated model's.

``--seed`` fixes the data, the non-private runs and the private run's local rounding, never its
noise or its record sampling: both come from a CSPRNG (the amplification by sampling the epsilon
counts on needs a sample nobody can predict), so the private figure varies from run to run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from secagg.dp.config import DPConfig
from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.models import LogisticRegression
from secagg.fedavg.trainer import FedAvg, RoundRecord

__all__ = ["DemoResult", "run_demo", "print_report"]


@dataclass(frozen=True)
class DemoResult:
    federated: dict[str, float]
    pooled: dict[str, float]
    alone: list[dict[str, float]]  # one per bank
    bank_names: list[str]
    history: object
    seconds: float
    private: dict[str, float] | None = None  # the DP federated model (with --dp-epsilon)
    private_history: object = None
    dp_config: DPConfig | None = None

    @property
    def alone_mean(self) -> dict[str, float]:
        return {k: float(np.mean([m[k] for m in self.alone])) for k in ("roc_auc", "average_precision")}


def _train_alone(X: np.ndarray, y: np.ndarray, epochs: int, args: argparse.Namespace, seed: int) -> LogisticRegression:
    model = LogisticRegression(X.shape[1])
    model.train(X, y, epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                proximal_mu=0.0, rng=np.random.default_rng(seed))
    return model


class _Progress:
    """A one-line progress bar on terminals, one line per round otherwise."""

    def __init__(self, total: int, names: list[str], enabled: bool, stream=None) -> None:
        stream = stream if stream is not None else sys.stdout
        self.total, self.names, self.enabled, self.stream = total, names, enabled, stream
        self.tty = enabled and stream.isatty()

    def __call__(self, record: RoundRecord) -> None:
        if not self.enabled:
            return
        done = record.round + 1
        width = 20
        bar = "#" * round(width * done / self.total) + "." * (width - round(width * done / self.total))
        dropped = ", ".join(self.names[c].split(" ")[0] for c in record.dropped) or "none"
        privacy = f"  eps {record.epsilon:.2f}" if record.epsilon is not None else ""
        status = "ABORTED " + record.aborted if record.aborted else (
            f"AUC {record.metrics['roc_auc']:.3f}  AP {record.metrics['average_precision']:.3f}  "
            f"in sum {len(record.included)}/{len(record.participants)} (dropped: {dropped}){privacy}")
        line = f"[{bar}] round {done:>2}/{self.total}  {status}"
        if self.tty:
            self.stream.write("\r" + line.ljust(110))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_demo(args: argparse.Namespace) -> DemoResult:
    started = time.perf_counter()
    banks = make_bank_transactions(args.banks, args.samples, seed=args.seed)
    names = [b.name for b in banks]
    X_test = np.vstack([b.X_test for b in banks])
    y_test = np.concatenate([b.y_test for b in banks])
    clients = [(b.X_train, b.y_train) for b in banks]
    dropout = args.dropout if args.dropout is not None else 1.0 / args.banks
    epochs = args.rounds * args.local_epochs
    options = {"key_bits": getattr(args, "key_bits", 2048)} if args.aggregator == "paillier" else None
    config = private_fl = None
    if getattr(args, "dp_epsilon", None) is not None:  # refuse bad DP options before training anything
        config, private_fl = _private_run(args, banks[0].X_train.shape[1], len(clients), dropout)
    fl = FedAvg(LogisticRegression(banks[0].X_train.shape[1]), aggregator=args.aggregator, rounds=args.rounds,
                local_epochs=args.local_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                dropout=dropout, clip=1.0, seed=args.seed, aggregator_options=options)
    history = fl.fit(clients, eval_data=(X_test, y_test), callback=_Progress(args.rounds, names, not args.quiet))
    federated = fl.model.evaluate(X_test, y_test)
    alone = [_train_alone(X, y, epochs, args, args.seed + i).evaluate(X_test, y_test) for i, (X, y) in enumerate(clients)]
    pooled_model = _train_alone(np.vstack([X for X, _ in clients]), np.concatenate([y for _, y in clients]),
                                epochs, args, args.seed)
    private = private_history = None
    if private_fl is not None:
        if not args.quiet:
            print(f"private run: record-level DP, epsilon {config.epsilon:g}, delta {config.delta:g}, "
                  f"{private_fl.rounds} DP-SGD rounds", flush=True)
        private_history = private_fl.fit(clients, eval_data=(X_test, y_test),
                                         callback=_Progress(private_fl.rounds, names, not args.quiet))
        private = private_fl.model.evaluate(X_test, y_test)
    return DemoResult(federated, pooled_model.evaluate(X_test, y_test), alone, names, history,
                      time.perf_counter() - started, private, private_history, config)


def _private_run(args: argparse.Namespace, n_features: int, banks: int, dropout: float) -> tuple[DPConfig, FedAvg]:
    """The record-level DP federated run: one DP-SGD step per round, noise split across the banks.

    No ``dp_sampling_source`` is passed, so the records are sampled from a fresh CSPRNG every run.
    """
    config = DPConfig(epsilon=args.dp_epsilon, delta=getattr(args, "dp_delta", 1e-5),
                      clip=getattr(args, "dp_clip", 1.0), level="record",
                      mechanism=getattr(args, "dp_mechanism", "dgauss"),
                      record_sampling_rate=getattr(args, "dp_sampling_rate", 0.02),
                      bits=getattr(args, "dp_bits", 20), dropout_tolerance=dropout)
    options: dict | None = None
    if args.aggregator == "paillier":
        options = {"key_bits": getattr(args, "key_bits", 2048)}
    elif args.aggregator == "masking":
        # the protocol itself refuses to unmask a sum carrying fewer noise shares than calibrated: every
        # survivor needs t other survivors, so a sum has at least t + 1 inputs
        options = {"threshold": max(1, config.min_shares(banks) - 1)}
    fl = FedAvg(LogisticRegression(n_features), aggregator=args.aggregator, rounds=getattr(args, "dp_rounds", 100),
                learning_rate=getattr(args, "dp_learning_rate", 1.0), dropout=dropout, seed=args.seed,
                aggregator_options=options, dp=config)
    return config, fl


def print_report(result: DemoResult, args: argparse.Namespace, out=None) -> None:
    out = out if out is not None else sys.stdout
    rows = [(f"{name} alone", m) for name, m in zip(result.bank_names, result.alone)]
    rows += [("mean of banks alone", result.alone_mean),
             (f"federated ({args.aggregator})", result.federated)]
    if result.private is not None:
        spent = result.private_history.epsilon[-1]
        rows.append((f"federated + DP (eps {spent:.2f}, delta {result.dp_config.delta:g})", result.private))
    rows.append(("pooled (centralised)", result.pooled))
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'model (evaluated on all banks test data)':<{width}} {'ROC-AUC':>8} {'avg prec':>9}", file=out)
    print("-" * (width + 19), file=out)
    for i, (label, metrics) in enumerate(rows):
        if i == len(result.bank_names):
            print("-" * (width + 19), file=out)
        print(f"{label:<{width}} {metrics['roc_auc']:>8.3f} {metrics['average_precision']:>9.3f}", file=out)
    records = list(result.history)
    included = sum(len(r.included) for r in records)
    offered = sum(len(r.participants) for r in records)
    versus_pooled = result.federated["roc_auc"] - result.pooled["roc_auc"]
    versus_alone = result.federated["roc_auc"] - result.alone_mean["roc_auc"]
    print(f"\nROC-AUC, federated minus pooled: {versus_pooled:+.3f}; federated minus mean bank alone: "
          f"{versus_alone:+.3f}", file=out)
    print(f"{len(records)} rounds, {included} of {offered} bank updates in the sums "
          f"({offered - included} missing: a bank that vanishes after its masked input still counts), "
          f"{sum(1 for r in records if r.aborted)} rounds aborted; "
          f"upload {np.mean([r.bytes_per_client for r in records]) / 1024:.1f} KiB per bank per round; "
          f"{result.seconds:.1f} s", file=out)
    if result.private is not None:
        dp_records = list(result.private_history)
        print(f"record-level DP: ROC-AUC {result.private['roc_auc']:.3f} private (epsilon "
              f"{result.private_history.epsilon[-1]:.2f}, delta {result.dp_config.delta:g}, {len(dp_records)} "
              f"rounds) vs {result.federated['roc_auc']:.3f} non-private; "
              f"{sum(1 for r in dp_records if r.aborted)} private rounds discarded", file=out)
