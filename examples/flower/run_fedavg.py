"""Your FedAvg configuration on Flower: the same job in process and in Flower's simulation engine.

    .venv/bin/python examples/flower/run_fedavg.py                   # 8 banks, 6 per round, 5 rounds
    .venv/bin/python examples/flower/run_fedavg.py --dp 8            # client-level DP, epsilon 8
    .venv/bin/python examples/flower/run_fedavg.py --record-dp 4     # record-level DP-SGD, epsilon 4

One ``FedAvg(...)`` object describes the job (model, aggregator, sampling, DP); ``fit`` runs it in
one process, ``flower_apps`` turns it into a Flower ServerApp and ClientApp. Seeded and without DP
the two end with bit for bit the same model; with DP they report the same epsilon (the noise and
the DP sampling come from a CSPRNG on purpose, so the models differ by the noise).
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=6, help="banks sampled per round (client level)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000, help="transactions per bank")
    parser.add_argument("--dp", type=float, help="client-level DP at this epsilon (delta 1e-5)")
    parser.add_argument("--record-dp", type=float, help="record-level DP-SGD at this epsilon (delta 1e-5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    from flwr.simulation import run_simulation

    from secagg.dp import DPConfig
    from secagg.fedavg import FedAvg, NumpyLogisticRegression
    from secagg.fedavg.data import make_bank_transactions
    from secagg.integrations.flower import flower_apps

    banks = make_bank_transactions(args.banks, args.samples, seed=0)
    data = [(bank.X_train, bank.y_train) for bank in banks]
    holdout = (np.vstack([b.X_test for b in banks]), np.concatenate([b.y_test for b in banks]))
    options: dict = {"rounds": args.rounds, "max_weight": float(args.samples), "learning_rate": 0.2,
                     "seed": args.seed, "clients_per_round": args.per_round}
    if args.dp is not None:
        options["dp"] = DPConfig(epsilon=args.dp, delta=1e-5, clip=0.5, dropout_tolerance=0.25)
    elif args.record_dp is not None:
        options.update(clients_per_round=None, learning_rate=1.0, record_counts=[X.shape[0] for X, _ in data],
                       dp=DPConfig(epsilon=args.record_dp, delta=1e-5, clip=1.0, level="record",
                                   record_sampling_rate=0.05, dropout_tolerance=0.25))

    def configuration() -> FedAvg:  # what the coordinator, each bank and the in-process run all build
        return FedAvg(NumpyLogisticRegression(data[0][0].shape[1]), **options)

    in_process = configuration()
    in_process.fit(data, eval_data=holdout)

    on_flower = configuration()
    server_app, client_app = flower_apps(on_flower, args.banks, client_data=lambda i: data[i], eval_data=holdout)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=args.banks,
                   backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": args.cpus}})

    print(f"{'round':>5}  {'in process':>10}  {'on Flower':>10}  {'epsilon':>8}  banks in the sum (Flower)")
    for mine, theirs in zip(in_process.history, on_flower.history):
        epsilon = f"{theirs.epsilon:8.3f}" if theirs.epsilon is not None else f"{'-':>8}"
        print(f"{mine.round:>5}  {mine.metrics['roc_auc']:>10.4f}  {theirs.metrics['roc_auc']:>10.4f}  {epsilon}  "
              f"{list(theirs.included)}")
    same_weights = all(np.array_equal(a, b) for a, b in zip(in_process.weights, on_flower.weights))
    same_epsilon = [float(e) if e is not None else None for e in in_process.history.epsilon] == \
        [float(e) if e is not None else None for e in on_flower.history.epsilon]
    print(f"same epsilon every round: {same_epsilon}")
    if "dp" not in options:
        same_cohorts = [r.participants for r in in_process.history] == [r.participants for r in on_flower.history]
        print(f"same cohorts every round: {same_cohorts}; weights bit for bit the same: {same_weights}")
    return {"in_process": in_process.history, "on_flower": on_flower.history, "same_weights": same_weights,
            "same_epsilon": same_epsilon}


if __name__ == "__main__":
    main()
