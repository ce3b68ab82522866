"""``secagg`` command line.

``secagg demo`` trains a fraud model across banks with FedAvg on secure aggregation (the main job).
``secagg serve`` / ``secagg join`` / ``secagg certs`` run the network mode (coordinator and clients
as separate processes over gRPC with TLS; see docs/network.md).
``secagg paillier-keygen`` is the dealer's key ceremony of the Paillier path (docs/paillier.md).
``secagg simulate`` runs one secure-aggregation session in process with dropouts and prints,
per round, who dropped, who survived and what each party spent, then checks the server's output
against the plaintext sum of the survivors' inputs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from secagg._version import __version__
from secagg.display import Column, print_table, status
from secagg.errors import AbortError, SecAggError
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.graph import choose_graph_parameters, complete_graph_threshold
from secagg.transport.simulator import simulate, warm_up

__all__ = ["main"]


def _drop_schedule(args: argparse.Namespace, config: SecAggConfig, rng: np.random.Generator) -> dict[str, list[int]]:
    rounds = [r.value for r in Round if config.malicious or r is not Round.CONSISTENCY_CHECK]
    if args.drop_round != "spread":
        rounds = [args.drop_round]
    count = int(round(args.dropout * config.num_clients))
    victims = rng.choice(config.num_clients, size=count, replace=False)
    # Never drop anyone before advertising keys in the default spread: start the story in round 1.
    spread = rounds[1:] if args.drop_round == "spread" and len(rounds) > 1 else rounds
    schedule: dict[str, list[int]] = {r: [] for r in spread}
    for i, victim in enumerate(sorted(victims.tolist())):
        schedule[spread[i % len(spread)]].append(victim)
    return schedule


def _cmd_simulate(args: argparse.Namespace) -> int:
    n = args.clients
    neighbors = args.neighbors
    threshold = args.threshold
    if neighbors == "auto" or (threshold is None and neighbors is not None):
        params = choose_graph_parameters(n, max(args.dropout, 0.01), args.corrupt, malicious=args.malicious)
        if neighbors == "auto":
            neighbors = params.neighbors
        if threshold is None and neighbors == params.neighbors:
            threshold = params.threshold
    neighbors = None if neighbors in (None, "none", "complete") else int(neighbors)
    corrupt = min(n - 1, math.ceil(args.corrupt * n - 1e-9))
    if threshold is None:
        threshold = complete_graph_threshold(n, args.dropout, corrupt, malicious=args.malicious) \
            if neighbors is None else neighbors // 2 + 1
    config = SecAggConfig(num_clients=n, threshold=threshold, vector_length=args.length,
                          modulus_bits=args.bits, neighbors=neighbors, malicious=args.malicious,
                          corrupt_clients=None if args.unsafe else corrupt,
                          dropout_fraction=args.dropout, unsafe_skip_bounds=args.unsafe)
    rng = np.random.default_rng(args.schedule_seed)
    ring = config.ring
    inputs = [rng.integers(0, ring.modulus, size=config.vector_length, dtype=np.uint64, endpoint=False)
              if ring.bits < 64 else rng.integers(0, 2**64, size=config.vector_length, dtype=np.uint64)
              for _ in range(n)]
    drop = _drop_schedule(args, config, rng)
    graph = "complete graph" if neighbors is None else f"SecAgg+ graph, {neighbors} neighbours"
    mode = "malicious server (signatures + consistency check)" if config.malicious else "honest-but-curious server"
    print(f"secagg simulate: {n} clients, threshold {threshold}, vector length {config.vector_length:,}, "
          f"Z_2^{config.modulus_bits}, {graph}, {mode}")
    if args.test_seed is not None:
        print("  (--test-seed: deterministic keys, for reproducing a run only)")
    started = time.perf_counter()
    warm_up()
    setup = time.perf_counter() - started
    started = time.perf_counter()
    try:
        result = simulate(config, inputs, drop=drop, seed=args.test_seed)
    except AbortError as exc:
        print(f"ABORTED in round {exc.round}: {exc}")
        return 2
    elapsed = time.perf_counter() - started
    print()
    columns = [Column("round", "left"), Column("clients"), Column("dropped"), Column("survivors"),
               Column("client ms mean"), Column("client ms max"), Column("server ms"), Column("KiB up"),
               Column("KiB down")]
    rows: list[list[str] | None] = [
        [r.round, str(r.expected), str(r.dropped), str(r.survivors), f"{1e3 * r.client_seconds_mean:.2f}",
         f"{1e3 * r.client_seconds_max:.2f}", f"{1e3 * r.server_seconds:.2f}", f"{r.bytes_to_server / 1024:.0f}",
         f"{r.bytes_to_clients / 1024:.0f}"] for r in result.rounds]
    rows += [None, ["total", "", "", "", "", f"{1e3 * result.client_seconds:.2f}", f"{1e3 * result.server_seconds:.2f}",
                    "", ""]]
    print_table(columns, rows)
    expected = ring.sum([ring.element(inputs[i]) for i in result.survivors])
    matches = bool(np.array_equal(result.aggregate, expected))
    print()
    print(f"inputs in the aggregate: {len(result.survivors)} of {n} clients")
    print(f"aggregate equals the plaintext sum of the survivors' inputs: {'yes' if matches else 'NO'}")
    print(f"wall time of the simulation: {elapsed:.2f} s (every party in turn; plus {setup:.2f} s one-time "
          "set-up)")
    return 0 if matches else 1


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--banks", type=int, default=8, help="number of banks")
    parser.add_argument("--samples", type=int, default=6000, help="transactions per bank")
    parser.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    parser.add_argument("--dropout", type=float, default=None,
                        help="fraction of banks dropping out each round (default: one bank per round)")
    parser.add_argument("--aggregator", default="masking", choices=["masking", "plain", "paillier"],
                        help="how the coordinator sums the updates")
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier key size (aggregator paillier)")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="data, sampling and training seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    dp = parser.add_argument_group("differential privacy (record level: one customer's transaction)")
    dp.add_argument("--dp-epsilon", type=float, default=None,
                    help="also train with record-level DP at this epsilon and print its AUC beside the non-private one")
    dp.add_argument("--dp-delta", type=float, default=1e-5, help="delta of the DP guarantee")
    dp.add_argument("--dp-rounds", type=int, default=100, help="DP-SGD rounds (one noisy step each)")
    dp.add_argument("--dp-sampling-rate", type=float, default=0.02,
                    help="probability a transaction is in a round's batch (Poisson sampling)")
    dp.add_argument("--dp-clip", type=float, default=1.0, help="L2 bound of one transaction's gradient")
    dp.add_argument("--dp-learning-rate", type=float, default=1.0, help="DP-SGD step size")
    dp.add_argument("--dp-mechanism", default="dgauss", choices=["dgauss", "skellam"],
                    help="integer noise each bank adds before aggregation (skellam needs --dp-sampling-rate 1)")
    dp.add_argument("--dp-bits", type=int, default=20, help="bits of the integer grid of the noisy sum")


def _cmd_demo(args: argparse.Namespace) -> int:
    from secagg.fedavg.demo import print_report, run_demo

    if args.aggregator == "paillier":  # missing extras are named before any data is made or model trained
        from secagg.paillier import _gmpy2, _phe

        _phe(), _gmpy2()
    if args.dp_epsilon is not None:
        from secagg.dp.accounting import require_dp_accounting

        require_dp_accounting()

    print(f"secagg demo: {args.banks} banks train one fraud model with FedAvg; aggregator {args.aggregator!r}, "
          f"{args.rounds} rounds, a bank drops out each round" if args.dropout is None else
          f"secagg demo: {args.banks} banks, aggregator {args.aggregator!r}, {args.rounds} rounds, "
          f"dropout {args.dropout:.0%} per round")
    result = run_demo(args)
    print_report(result, args)
    return 0


def _cmd_paillier_keygen(args: argparse.Namespace) -> int:
    from secagg.paillier import generate_threshold_keypair
    from secagg.paillier.roles import default_min_contributors, paillier_threat_model
    from secagg.paillier.threshold import save_key_material

    threshold = args.threshold if args.threshold is not None else math.ceil(2 * args.banks / 3)
    # the floor the banks apply by default (c + 2), so that --corrupt c alone is checked as they will run
    floor = args.min_contributors if args.min_contributors is not None else \
        default_min_contributors(args.banks, threshold, args.corrupt)
    model = paillier_threat_model(args.banks, threshold, floor, args.corrupt)  # refuse an unsafe key now
    if args.no_dealer:
        from secagg.cli_dkg import run_dkg

        return run_dkg(args, threshold)
    print(f"secagg paillier-keygen: {args.banks} banks, decryption needs {threshold}; tolerates "
          f"{model.tolerated_corrupt} corrupt banks", flush=True)
    with status(f"generating a {args.key_bits}-bit key (safe primes: seconds to a minute)"):
        public, shares = generate_threshold_keypair(args.banks, threshold, args.key_bits)
    written = save_key_material(args.out, public, shares)
    print(f"wrote {written[0]} (public parameters, fingerprint {public.fingerprint.hex()[:16]}...) and "
          f"{len(written) - 1} key shares share-1.json .. share-{args.banks}.json (mode 0600)")
    print("Hand share-i.json to bank i only (bank ids 0..n-1 hold shares 1..n), over a channel only that bank "
          "reads; then erase every share file on this machine. This process kept nothing else: p, q and d "
          "existed only in its memory. Every bank checks the fingerprint out of band.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secagg", description="Secure aggregation for federated learning.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run one secure-aggregation session in process, with dropouts",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sim.add_argument("--clients", "-n", type=int, default=100, help="number of clients")
    sim.add_argument("--threshold", "-t", type=int, default=None,
                     help="shares needed to reconstruct, out of the n-1 other clients or the K holders (default: "
                     "between the bounds for --corrupt and --dropout)")
    sim.add_argument("--length", "-m", type=int, default=100_000, help="vector length")
    sim.add_argument("--bits", "-k", type=int, default=32, help="ring Z_2^k")
    sim.add_argument("--neighbors", default=None,
                     help="SecAgg+ neighbours per client; 'auto' picks k and t (Bell et al.); default complete graph")
    sim.add_argument("--malicious", action="store_true", help="malicious-server mode (signatures, consistency check)")
    sim.add_argument("--dropout", type=float, default=0.1, help="fraction of clients that drop out")
    sim.add_argument("--drop-round", default="spread",
                     choices=["spread"] + [r.value for r in Round],
                     help="round before which the dropped clients vanish ('spread': across rounds 1..4)")
    sim.add_argument("--corrupt", type=float, default=0.05,
                     help="fraction of corrupt clients the parameters must withstand (checked, and used to pick "
                     "SecAgg+ parameters)")
    sim.add_argument("--unsafe", action="store_true",
                     help="research on attacks and aborts only: skip the threat-model bounds (the session protects "
                     "nothing it claims to)")
    sim.add_argument("--schedule-seed", type=int, default=0, help="seed of the inputs and the dropout schedule")
    sim.add_argument("--test-seed", type=int, default=None,
                     help="TEST ONLY: derive every key from this seed to reproduce a run")
    sim.set_defaults(func=_cmd_simulate)
    demo = sub.add_parser("demo", help="federated anti-fraud training across banks with secure aggregation",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _demo_arguments(demo)
    demo.set_defaults(func=_cmd_demo)
    keygen = sub.add_parser("paillier-keygen", help="Paillier path: the dealer's key ceremony (public parameters "
                            "and one key share per bank)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    keygen.add_argument("--banks", "-n", type=int, required=True, help="number of banks (key shares)")
    keygen.add_argument("--threshold", "-t", type=int, default=None, help="banks needed to decrypt (default 2n/3)")
    keygen.add_argument("--key-bits", type=int, default=2048, help="modulus size (2048 or 3072)")
    keygen.add_argument("--corrupt", type=int, default=None,
                        help="corrupt banks the key must withstand (checked: t > c and 2t > n + c)")
    keygen.add_argument("--min-contributors", type=int, default=None,
                        help="the banks' floor of contributions per decrypted aggregate (checked: >= c + 2; default c + 2)")
    keygen.add_argument("--out", default="paillier-keys", help="directory to write to")
    from secagg.cli_dkg import add_dkg_arguments

    add_dkg_arguments(keygen)
    keygen.set_defaults(func=_cmd_paillier_keygen)
    from secagg.cli_network import add_network_commands

    add_network_commands(sub)
    return parser


# A module some command needs -> the extra that brings it (for an ImportError that does not say).
EXTRA_OF_MODULE = {"phe": "paillier", "gmpy2": "paillier", "grpc": "net", "dp_accounting": "dp", "flwr": "flower",
                   "ray": "flower-sim", "sklearn": "sklearn", "torch": "torch", "matplotlib": "bench"}


def missing_extra_message(exc: ImportError) -> str | None:
    """One line naming the extra to install for ``exc``, or None if it is not a missing optional package."""
    text = str(exc)
    if "pip install" in text:  # secagg's own import guards already name the extra
        return text.splitlines()[0]
    root = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(root)
    if extra is None:
        return None
    return f"this command needs {root}, which is not installed: pip install 'secagg[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"secagg: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
