"""Hospitals: a tumour classifier from five hospitals' patients, on scikit-learn's breast-cancer data.

Patients are split across hospitals with label skew (Dirichlet, alpha = 0.5). The hospitals first
compute the feature means and variances of all their patients together *through secure
aggregation* (``secagg.fedavg.preprocessing.federated_standard_scaler``: each hands in, masked,
the sums of its values and of their squares, centred on the measurements' public ranges, and its
patient count), so every hospital standardises with the same statistics without revealing its
own; then they train with FedAvg.

    .venv/bin/python examples/hospitals_breast_cancer.py
"""

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import partition_dirichlet
from secagg.fedavg.preprocessing import federated_standard_scaler

# The public range of each measurement (the data dictionary's, in the data set's units): the same
# upper bounds for the mean and the worst value of a nucleus, smaller ones for the standard errors;
# every measurement is >= 0. The scaler clips to these ranges (and counts what it clipped).
MEASUREMENT_UPPER = [50, 100, 300, 3000, 1, 1, 1, 1, 1, 1]  # radius, texture, perimeter, area, smoothness, ...
ERROR_UPPER = [5, 10, 50, 1000, 1, 1, 1, 1, 1, 1]
WORST_UPPER = [50, 100, 300, 5000, 1, 2, 2, 1, 1, 1]
VALUE_RANGE = (0.0, np.array(MEASUREMENT_UPPER + ERROR_UPPER + WORST_UPPER, dtype=float))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--hospitals", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    hospitals = partition_dirichlet(X_train, y_train, args.hospitals, alpha=0.5, seed=1, min_samples=10)

    scaler = federated_standard_scaler(hospitals, value_range=VALUE_RANGE, aggregator="masking", seed=0)
    print("feature means from secure aggregation match the pooled means:",
          bool(np.all(np.abs(scaler.mean_ - X_train.mean(axis=0)) <= scaler.mean_error_bound_ + 1e-12)),
          f"(largest error bound {scaler.mean_error_bound_.max():.1e}; {scaler.n_clipped_.sum()} values clipped)")
    standardise = scaler.transform
    clients = [(standardise(Xh), yh) for Xh, yh in hospitals]
    for i, (_, yh) in enumerate(clients):
        print(f"  hospital {i}: {len(yh):>3} patients, {yh.mean():.0%} benign")

    fl = FedAvg(NumpyLogisticRegression(X.shape[1], l2=1e-3), aggregator="masking", rounds=args.rounds,
                local_epochs=2, batch_size=16, learning_rate=0.05, seed=0)
    history = fl.fit(clients, eval_data=(standardise(X_test), y_test))
    federated = history[-1].metrics

    alone = []
    for Xh, yh in clients:
        model = NumpyLogisticRegression(X.shape[1], l2=1e-3)
        model.train(Xh, yh, epochs=2 * args.rounds, batch_size=16, learning_rate=0.05, proximal_mu=0.0,
                    rng=np.random.default_rng(0))
        alone.append(model.evaluate(standardise(X_test), y_test))
    print(f"\nfederated: accuracy {federated['accuracy']:.3f}, ROC-AUC {federated['roc_auc']:.3f}")
    print(f"hospitals alone (mean): accuracy {np.mean([a['accuracy'] for a in alone]):.3f}, "
          f"ROC-AUC {np.mean([a['roc_auc'] for a in alone]):.3f}")


if __name__ == "__main__":
    main()
