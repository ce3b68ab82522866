"""Bank anti-fraud on Flower's simulation engine, aggregated by secagg (or by Flower's SecAgg+).

    .venv/bin/python examples/flower/run_simulation.py                      # 10 banks, secagg
    .venv/bin/python examples/flower/run_simulation.py --secure flower      # Flower's SecAgg+
    .venv/bin/python examples/flower/run_simulation.py --banks 20 --crash 3  # bank 3 goes offline

The app lives in bank_app/ (a Flower app project: ``flwr run examples/flower/bank_app`` runs the
same code); the two secure-aggregation variants differ only in the ClientApp's mod and the
ServerApp's fit workflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent / "bank_app"
sys.path.insert(0, str(APP_DIR))
# Ray's workers import the app's modules by name: let them find the app too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), os.environ.get("PYTHONPATH")]))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000, help="transactions per bank")
    parser.add_argument("--model", choices=["logreg", "mlp"], default="logreg")
    parser.add_argument("--hidden", default="256,374", help="MLP hidden sizes (256,374: 100,077 weights)")
    parser.add_argument("--secure", choices=["secagg", "flower", "none"], default="secagg",
                        help="none: plain FedAvg without secure aggregation (a baseline)")
    parser.add_argument("--neighbors", type=int, default=0, help="0: secagg chooses (flower: all)")
    parser.add_argument("--threshold", type=int, default=0, help="0: the default for the round size")
    parser.add_argument("--crash", default="", help="comma-separated banks that go offline while training")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the per-round log to this file")
    args = parser.parse_args(argv)

    from flwr.simulation import run_simulation

    from secagg_bank_app.client_app import make_client_app
    from secagg_bank_app.server_app import ROUND_LOG, make_server_app

    overrides = {"num-banks": args.banks, "num-server-rounds": args.rounds, "samples-per-bank": args.samples,
                 "model": args.model, "hidden": args.hidden, "secure": args.secure, "neighbors": args.neighbors,
                 "threshold": args.threshold, "crash": args.crash, "learning-rate": args.learning_rate}
    from flwr.client.mod import secaggplus_mod

    from secagg.integrations.flower import secagg_masking_mod

    mods = {"flower": [secaggplus_mod], "secagg": [secagg_masking_mod], "none": []}[args.secure]
    run_simulation(server_app=make_server_app(overrides), client_app=make_client_app(mods, overrides),
                   num_supernodes=args.banks,
                   backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": args.cpus}})
    for i, row in enumerate(ROUND_LOG, 1):
        print(f"round {i}: {row['workflow']} {row['seconds']:.2f} s, accuracy {row['accuracy']:.4f}, "
              f"ROC-AUC {row['roc_auc']:.4f}, AP {row['average_precision']:.4f}")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": ROUND_LOG}, indent=1))
    return list(ROUND_LOG)


if __name__ == "__main__":
    main()
