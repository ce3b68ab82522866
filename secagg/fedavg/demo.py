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
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from secagg.display import Column, RoundProgress, print_table, status
from secagg.dp.accounting import require_dp_accounting
from secagg.dp.config import DPConfig
from secagg.fedavg.data import make_bank_transactions
from secagg.fedavg.models import NumpyLogisticRegression
from secagg.fedavg.trainer import FedAvg, History, RoundRecord

if TYPE_CHECKING:
    from secagg.aggregation.paillier import PaillierAggregator

__all__ = ["DemoResult", "run_demo", "print_report"]


@dataclass(frozen=True)
class DemoResult:
    federated: dict[str, float]
    pooled: dict[str, float]
    alone: list[dict[str, float]]  # one per bank
    bank_names: list[str]
    history: History
    seconds: float
    private: dict[str, float] | None = None  # the DP federated model (with --dp-epsilon)
    private_history: History | None = None
    dp_config: DPConfig | None = None

    @property
    def alone_mean(self) -> dict[str, float]:
        return {k: float(np.mean([m[k] for m in self.alone])) for k in ("roc_auc", "average_precision")}


def _train_alone(X: np.ndarray, y: np.ndarray, epochs: int, args: argparse.Namespace,
                 seed: int) -> NumpyLogisticRegression:
    model = NumpyLogisticRegression(X.shape[1])
    model.train(X, y, epochs=epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                proximal_mu=0.0, rng=np.random.default_rng(seed))
    return model


def _round_line(record: RoundRecord, names: list[str]) -> str:
    """What one round did, short enough for an 80-column terminal with the usual bank names."""
    if record.aborted:
        return f"ABORTED: {record.aborted}"
    dropped = ", ".join(names[c].split(" ")[0] for c in record.dropped) or "none"
    privacy = f"  eps {record.epsilon:.2f}" if record.epsilon is not None else ""
    return (f"AUC {record.metrics['roc_auc']:.3f}  AP {record.metrics['average_precision']:.3f}  "
            f"in sum {len(record.included)}/{len(record.participants)}{privacy}  dropped: {dropped}")


def _fit_with_progress(fl: FedAvg, clients: list, eval_data: tuple, names: list[str], args: argparse.Namespace,
                       out: IO[str] | None = None) -> History:
    with RoundProgress(fl.rounds, enabled=not args.quiet, out=out) as progress:
        return fl.fit(clients, eval_data=eval_data, callback=lambda record: progress.advance(_round_line(record, names)))


def _paillier_aggregator(args: argparse.Namespace, banks: int, out: IO[str] | None = None) -> PaillierAggregator:
    """The Paillier aggregator with its key dealt now, saying so: safe primes take seconds to a minute."""
    from secagg.aggregation.paillier import PaillierAggregator

    aggregator = PaillierAggregator(key_bits=getattr(args, "key_bits", 2048))  # names the extra if it is missing
    with status(aggregator.setup_step(banks) or "setting up the Paillier aggregator", out, enabled=not args.quiet):
        aggregator.setup(banks)
    return aggregator


def run_demo(args: argparse.Namespace) -> DemoResult:
    started = time.perf_counter()
    banks = make_bank_transactions(args.banks, args.samples, seed=args.seed)
    names = [b.name for b in banks]
    X_test = np.vstack([b.X_test for b in banks])
    y_test = np.concatenate([b.y_test for b in banks])
    clients = [(b.X_train, b.y_train) for b in banks]
    dropout = args.dropout if args.dropout is not None else 1.0 / args.banks
    epochs = args.rounds * args.local_epochs
    config = private_fl = None
    if getattr(args, "dp_epsilon", None) is not None:  # refuse bad DP options before training anything
        config, private_fl = _private_run(args, banks[0].X_train.shape[1], len(clients), dropout)
    aggregator: str | PaillierAggregator = args.aggregator
    if args.aggregator == "paillier":
        aggregator = _paillier_aggregator(args, len(clients))
    fl = FedAvg(NumpyLogisticRegression(banks[0].X_train.shape[1]), aggregator=aggregator, rounds=args.rounds,
                local_epochs=args.local_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                simulated_dropout=dropout, clip=1.0, seed=args.seed)
    history = _fit_with_progress(fl, clients, (X_test, y_test), names, args)
    federated = fl.model.evaluate(X_test, y_test)
    alone = [_train_alone(X, y, epochs, args, args.seed + i).evaluate(X_test, y_test) for i, (X, y) in enumerate(clients)]
    pooled_model = _train_alone(np.vstack([X for X, _ in clients]), np.concatenate([y for _, y in clients]),
                                epochs, args, args.seed)
    private = private_history = None
    if private_fl is not None and config is not None:
        if not args.quiet:
            print(f"private run: record-level DP, epsilon {config.epsilon:g}, delta {config.delta:g}, "
                  f"{private_fl.rounds} DP-SGD rounds", flush=True)
        private_history = _fit_with_progress(private_fl, clients, (X_test, y_test), names, args)
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
    require_dp_accounting()  # a missing `dp` extra is named now, not after the non-private model trained
    options: dict[str, Any] | None = None
    aggregator: str | PaillierAggregator = args.aggregator
    if args.aggregator == "paillier":
        aggregator = _paillier_aggregator(args, banks)
    elif args.aggregator == "masking":
        # the protocol itself refuses to unmask a sum carrying fewer noise shares than calibrated: every
        # survivor needs t other survivors, so a sum has at least t + 1 inputs
        options = {"threshold": max(1, config.min_shares(banks) - 1)}
    fl = FedAvg(NumpyLogisticRegression(n_features), aggregator=aggregator,
                rounds=getattr(args, "dp_rounds", 100),
                learning_rate=getattr(args, "dp_learning_rate", 1.0), simulated_dropout=dropout, seed=args.seed,
                aggregator_options=options, dp=config)
    return config, fl


def print_report(result: DemoResult, args: argparse.Namespace, out: IO[str] | None = None) -> None:
    out = out if out is not None else sys.stdout
    rows: list[list[str] | None] = [[f"{name} alone", *_scores(m)] for name, m in zip(result.bank_names, result.alone)]
    rows += [None, ["mean of banks alone", *_scores(result.alone_mean)],
             [f"federated ({args.aggregator})", *_scores(result.federated)]]
    if result.private is not None and result.private_history is not None and result.dp_config is not None:
        spent = result.private_history.epsilon[-1]
        rows.append([f"federated + DP (eps {spent:.2f}, delta {result.dp_config.delta:g})", *_scores(result.private)])
    rows.append(["pooled (centralised)", *_scores(result.pooled)])
    print(file=out)
    print_table([Column("model (evaluated on all banks' test data)", "left"), Column("ROC-AUC"), Column("avg prec")],
                rows, out)
    records = list(result.history)
    included = sum(len(r.included) for r in records)
    offered = sum(len(r.participants) for r in records)
    versus_pooled = result.federated["roc_auc"] - result.pooled["roc_auc"]
    versus_alone = result.federated["roc_auc"] - result.alone_mean["roc_auc"]
    aborted = sum(1 for r in records if r.aborted)
    # each line fits an 80-column terminal
    print(f"\nROC-AUC: federated minus pooled {versus_pooled:+.3f}, minus mean bank alone {versus_alone:+.3f}",
          file=out)
    print(f"{len(records)} rounds, {aborted} rounds aborted; {included} of {offered} bank updates in the sums",
          file=out)
    if included < offered:
        print("(missing: banks gone before their masked input; one gone later still counts)", file=out)
    print(f"upload {np.mean([r.bytes_per_client for r in records]) / 1024:.1f} KiB per bank per round; "
          f"{result.seconds:.1f} s in all", file=out)
    if result.private is not None and result.private_history is not None and result.dp_config is not None:
        dp_records = list(result.private_history)
        print(f"record-level DP: ROC-AUC {result.private['roc_auc']:.3f} private vs {result.federated['roc_auc']:.3f} "
              f"non-private", file=out)
        print(f"(epsilon {result.private_history.epsilon[-1]:.2f}, delta {result.dp_config.delta:g}, {len(dp_records)} "
              f"rounds; {sum(1 for r in dp_records if r.aborted)} private rounds discarded)", file=out)


def _scores(metrics: dict[str, float]) -> list[str]:
    return [f"{metrics['roc_auc']:.3f}", f"{metrics['average_precision']:.3f}"]
