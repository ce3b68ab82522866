"""Cross-device with client-level differential privacy: 1,000 phones, SecAgg+, discrete Gaussian shares.

scikit-learn's 8x8 digits are split over 1,000 clients (one or two images each). Every round a
fixed-size cohort of 100 clients is drawn without replacement from a CSPRNG; each trains locally, clips its update to L2 norm 1, rotates and
rounds it onto an integer grid and adds its share of discrete Gaussian noise before secure
aggregation (a sparse SecAgg+ graph). The noise is calibrated with dp-accounting so the whole run
is (epsilon, 1e-5)-DP for every client, and holds with up to 5% of a round's clients dropping out.

    .venv/bin/python examples/dp_digits_cross_device.py [--epsilon 4] [--rounds 40]
"""

import argparse

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from secagg.dp import DPConfig
from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.data import partition_iid


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--epsilon", type=float, default=4.0)
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16, a public range
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    clients = partition_iid(X_train, y_train, args.clients, seed=0)

    dp = DPConfig(epsilon=args.epsilon, delta=1e-5, clip=1.0, dropout_tolerance=0.05)
    fl = FedAvg(NumpyLogisticRegression(64, 10), aggregator="masking", rounds=args.rounds,
                clients_per_round=args.per_round, local_epochs=5, batch_size=8, learning_rate=0.5,
                simulated_dropout=0.05, seed=0, dp=dp,
                aggregator_options={"neighbors": "auto", "dropout_fraction": 0.05, "corrupt_fraction": 0.05})
    history = fl.fit(clients, eval_data=(X_test, y_test))
    mechanism = fl.dp_mechanism
    print(f"noise multiplier {mechanism.noise_multiplier:.3f}: each client adds 1/{mechanism.min_shares} of the "
          f"noise variance (enough when at least {mechanism.min_shares} updates reach a sum)")
    for record in list(history)[::5]:
        print(f"round {record.round + 1:>3}: accuracy {record.metrics['accuracy']:.3f}  epsilon so far "
              f"{record.epsilon:.2f}  ({len(record.included)} of {len(record.participants)} clients in the sum)")
    print(f"\nfinal test accuracy: {history[-1].metrics['accuracy']:.3f} at epsilon {history.epsilon[-1]:.2f}, "
          f"delta {dp.delta:g}")


if __name__ == "__main__":
    main()
