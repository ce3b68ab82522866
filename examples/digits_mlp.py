"""Cross-device style: 100 clients with a few handwritten digits each, an MLP, SecAgg+.

scikit-learn's 8x8 digits are split across 100 clients with strong label skew (Dirichlet,
alpha = 0.3); each round samples 20 clients, 10% of them drop out, and the round's secure
aggregation uses a sparse SecAgg+ neighbour graph chosen by ``choose_graph_parameters``.

    .venv/bin/python examples/digits_mlp.py [--rounds 40]
"""

import argparse

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from secagg.fedavg import FedAvg, NumpyMLP
from secagg.fedavg.data import partition_dirichlet


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16, a public range
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    clients = partition_dirichlet(X_train, y_train, args.clients, alpha=0.3, seed=0, min_samples=4)

    model = NumpyMLP(n_features=64, hidden=(32,), n_classes=10, seed=0)
    fl = FedAvg(model, aggregator="masking", rounds=args.rounds, clients_per_round=args.per_round,
                local_epochs=2, batch_size=8, learning_rate=0.1, simulated_dropout=0.1, seed=0,
                aggregator_options={"neighbors": "auto", "dropout_fraction": 0.1, "corrupt_fraction": 0.05})
    history = fl.fit(clients, eval_data=(X_test, y_test))
    for record in list(history)[::5]:
        print(f"round {record.round + 1:>3}: accuracy {record.metrics['accuracy']:.3f} "
              f"({len(record.included)} of {len(record.participants)} clients in the sum, "
              f"{record.bytes_per_client / 1024:.1f} KiB sent per client)")
    print(f"\nfinal test accuracy: {history[-1].metrics['accuracy']:.3f}")


if __name__ == "__main__":
    main()
