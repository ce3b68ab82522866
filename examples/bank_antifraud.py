"""Bank consortium: one fraud model, no pooled transactions.

Each bank trains on its own card transactions; the coordinator learns only the masked sum of the
banks' weighted updates. The malicious-server mode (signed keys, signed survivor lists) with a
threshold of 2/3 of the other banks, checked at every round against one corrupt bank and the
dropout rate; one bank in eight drops out each round. At least 7 banks: with fewer, no threshold
withstands a corrupt bank, a dropout and a malicious coordinator at once (2t > n - 1 + c and
t <= n - 1 - c - d).

    .venv/bin/python examples/bank_antifraud.py [--rounds 20] [--banks 8]
"""

import argparse

import numpy as np

from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import make_bank_transactions


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--banks", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=6000)
    args = parser.parse_args(argv)

    banks = make_bank_transactions(args.banks, args.samples, seed=0)
    clients = [(b.X_train, b.y_train) for b in banks]
    X_test = np.vstack([b.X_test for b in banks])
    y_test = np.concatenate([b.y_test for b in banks])

    model = NumpyLogisticRegression(n_features=X_test.shape[1])
    fl = FedAvg(model, aggregator="masking", rounds=args.rounds, local_epochs=1, batch_size=64,
                learning_rate=0.1, simulated_dropout=1 / args.banks, seed=0,
                aggregator_options={"threshold": 2 / 3, "malicious": True, "dropout_fraction": 1 / args.banks,
                                    "corrupt_fraction": 1 / args.banks})
    history = fl.fit(clients, eval_data=(X_test, y_test))

    for record in history:
        print(f"round {record.round + 1:>2}: AUC {record.metrics['roc_auc']:.3f}, "
              f"AP {record.metrics['average_precision']:.3f}, banks in the sum {list(record.included)}")
    final = fl.model.evaluate(X_test, y_test)
    print(f"\nfederated model on all banks' test data: ROC-AUC {final['roc_auc']:.3f}, "
          f"average precision {final['average_precision']:.3f}")
    for bank in banks:
        own = fl.model.evaluate(bank.X_test, bank.y_test)
        print(f"  {bank.name:<32} AUC {own['roc_auc']:.3f}  fraud rate {bank.fraud_rate:.2%}")


if __name__ == "__main__":
    main()
