"""A consortium of banks on the Paillier path: no single bank can decrypt another bank's update.

A trusted dealer (e.g. run once by the consortium's operator, then erased) splits a 2048-bit
Paillier decryption key 4-of-6 among the banks. Each round every bank encrypts its packed,
fixed-point update under the public key; the coordinator multiplies the ciphertexts; four banks
partially decrypt the aggregate (only the aggregate) and the coordinator combines their partial
decryptions into the sums.

    .venv/bin/pip install -e '.[paillier]'
    .venv/bin/python examples/bank_consortium_paillier.py [--rounds 10]
"""

import argparse

import numpy as np

from secagg.aggregation import make_aggregator
from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import make_bank_transactions


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--banks", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--key-bits", type=int, default=2048)
    args = parser.parse_args(argv)

    banks = make_bank_transactions(args.banks, 5000, seed=2)
    X_test = np.vstack([b.X_test for b in banks])
    y_test = np.concatenate([b.y_test for b in banks])

    paillier = make_aggregator("paillier", key_bits=args.key_bits, threshold=2 / 3)
    paillier.setup(args.banks)  # the dealer's one-off setup
    key = paillier.public_key
    print(f"{key.key_bits}-bit key, decryption needs {key.threshold} of {key.parties} banks "
          f"(set up in {paillier.setup_seconds:.1f} s)")

    fl = FedAvg(NumpyLogisticRegression(X_test.shape[1]), aggregator=paillier, rounds=args.rounds, local_epochs=2,
                batch_size=64, learning_rate=0.1, simulated_dropout=1 / args.banks, seed=0)
    for record in fl.fit([(b.X_train, b.y_train) for b in banks], eval_data=(X_test, y_test)):
        print(f"round {record.round + 1:>2}: AUC {record.metrics['roc_auc']:.3f}, banks in the sum "
              f"{list(record.included)}, {record.bytes_per_client / 1024:.1f} KiB per bank, "
              f"{record.aggregation_seconds:.2f} s to aggregate and decrypt")
    print(f"\nfederated fraud model on all banks' test data: ROC-AUC {fl.model.evaluate(X_test, y_test)['roc_auc']:.3f}")


if __name__ == "__main__":
    main()
