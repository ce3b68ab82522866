"""Hospitals: a tumour classifier from five hospitals' patients, on scikit-learn's breast-cancer data.

Patients are split across hospitals with label skew (Dirichlet, alpha = 0.5). The hospitals first
compute the feature means and variances of all their patients together *through secure
aggregation* (each hands in its sums of x and x^2 and its patient count), so every hospital
standardises with the same statistics without revealing its own; then they train with FedAvg.

    .venv/bin/python examples/hospitals_breast_cancer.py
"""

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from secagg.aggregation import make_aggregator
from secagg.fedavg import FedAvg, LogisticRegression
from secagg.fedavg.data import partition_dirichlet


def secure_feature_statistics(hospitals, aggregator):
    """Global mean and standard deviation of every feature from securely summed moments."""
    d = hospitals[0][0].shape[1]
    scale = max(float(np.abs(X).max()) for X, _ in hospitals)  # public bound on |x| (here: known ranges)
    round_ = aggregator.open_round(list(range(len(hospitals))), 2 * d,
                                   max_weight=max(len(y) for _, y in hospitals), clip=1.0,
                                   rng=np.random.default_rng(0))
    for i, (X, _) in enumerate(hospitals):
        n = len(X)
        # per-patient averages of x/scale and (x/scale)^2 lie in [-1, 1]; weighted by n they are sums
        moments = np.concatenate([(X / scale).mean(axis=0), ((X / scale) ** 2).mean(axis=0)])
        round_.submit(i, n * moments, n)
    result = round_.finish()
    mean_scaled, square_scaled = np.split(result.average(), 2)
    variance = np.maximum(square_scaled - mean_scaled**2, 1e-12)
    return mean_scaled * scale, np.sqrt(variance) * scale


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--hospitals", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    hospitals = partition_dirichlet(X_train, y_train, args.hospitals, alpha=0.5, seed=1, min_samples=10)

    aggregator = make_aggregator("masking", fractional_bits=24)
    mean, std = secure_feature_statistics(hospitals, aggregator)
    print("feature means from secure aggregation match the pooled means:",
          bool(np.allclose(mean, X_train.mean(axis=0), rtol=1e-4, atol=1e-4)))
    standardise = lambda A: (A - mean) / std  # noqa: E731
    clients = [(standardise(Xh), yh) for Xh, yh in hospitals]
    for i, (_, yh) in enumerate(clients):
        print(f"  hospital {i}: {len(yh):>3} patients, {yh.mean():.0%} benign")

    fl = FedAvg(LogisticRegression(X.shape[1], l2=1e-3), aggregator=aggregator, rounds=args.rounds,
                local_epochs=2, batch_size=16, learning_rate=0.05, seed=0)
    history = fl.fit(clients, eval_data=(standardise(X_test), y_test))
    federated = history[-1].metrics

    alone = []
    for Xh, yh in clients:
        model = LogisticRegression(X.shape[1], l2=1e-3)
        model.train(Xh, yh, epochs=2 * args.rounds, batch_size=16, learning_rate=0.05, proximal_mu=0.0,
                    rng=np.random.default_rng(0))
        alone.append(model.evaluate(standardise(X_test), y_test))
    print(f"\nfederated: accuracy {federated['accuracy']:.3f}, ROC-AUC {federated['roc_auc']:.3f}")
    print(f"hospitals alone (mean): accuracy {np.mean([a['accuracy'] for a in alone]):.3f}, "
          f"ROC-AUC {np.mean([a['roc_auc'] for a in alone]):.3f}")


if __name__ == "__main__":
    main()
