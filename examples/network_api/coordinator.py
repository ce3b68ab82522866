"""The coordinator of a network FedAvg run, from Python (no CLI): the shared FedAvg's coordinator role.

    .venv/bin/python examples/network_api/coordinator.py --port 50061 --insecure    # local trial

With certificates (``secagg certs --out certs --clients 4``), drop ``--insecure`` and pass
``--certs certs``: the coordinator then runs mutual TLS and knows each bank by its certificate.
"""

from __future__ import annotations

import argparse
import logging

from secagg.transport.network import TLSConfig

import shared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=50061)
    parser.add_argument("--certs", help="directory of `secagg certs` (mutual TLS)")
    parser.add_argument("--insecure", action="store_true", help="no TLS (local trials only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tls = TLSConfig(insecure=True) if args.insecure else TLSConfig(
        ca=f"{args.certs}/ca.pem", cert=f"{args.certs}/coordinator.pem", key=f"{args.certs}/coordinator.key")
    fedavg = shared.configuration()
    coordinator = fedavg.coordinator(shared.BANKS, tls=tls, address=f"127.0.0.1:{args.port}",
                                     eval_data=shared.holdout())
    history = coordinator.serve(on_started=lambda port: print(f"listening on {port}", flush=True))
    print(coordinator.report())
    print("cohorts:", [list(record.participants) for record in history])
    print("final weights:", [w.round(3).tolist() for w in fedavg.weights][1])  # the bias
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
