"""One bank of a network FedAvg run, from Python (no CLI): the shared FedAvg's participant role.

    .venv/bin/python examples/network_api/participant.py --id 2 --port 50061 --insecure

The bank builds the same FedAvg as the coordinator and hands it only its own data; it trains in
the rounds it is sampled for and refuses (telling the coordinator why) any round whose settings
are not its own.
"""

from __future__ import annotations

import argparse
import sys

from secagg.errors import ProtocolViolation
from secagg.transport.network import NetworkError, TLSConfig

import shared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--port", type=int, default=50061)
    parser.add_argument("--certs", help="directory of `secagg certs` (mutual TLS)")
    parser.add_argument("--insecure", action="store_true", help="no TLS (local trials only)")
    args = parser.parse_args()
    tls = TLSConfig(insecure=True) if args.insecure else TLSConfig(
        ca=f"{args.certs}/ca.pem", cert=f"{args.certs}/client-{args.id}.pem", key=f"{args.certs}/client-{args.id}.key")
    participant = shared.configuration().participant(args.id, shared.bank_data(args.id),
                                                     coordinator=f"localhost:{args.port}", tls=tls,
                                                     num_clients=shared.BANKS)
    try:
        sessions = participant.run()
    except (NetworkError, ProtocolViolation) as exc:
        print(f"bank {args.id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"bank {args.id}: done, {participant.task.rounds_trained} rounds trained, sessions {sessions}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
