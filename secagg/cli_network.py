"""``secagg serve``, ``secagg join`` and ``secagg certs``: the network mode from the command line.

Both paths run here: masking sessions (default) and, with ``--aggregator paillier``, one Paillier
round per session, the coordinator holding only the public parameters and the banks' verify keys,
each bank its own key share (``secagg paillier-keygen``) and identity key (``secagg certs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from secagg.errors import ParameterError, ProtocolViolation, SessionStateError

if TYPE_CHECKING:
    from secagg.aggregation.paillier import PaillierAggregator
    from secagg.paillier.threshold import ThresholdPublicKey

__all__ = ["add_network_commands"]


def _tls_arguments(parser: argparse.ArgumentParser, side: str) -> None:
    group = parser.add_argument_group("TLS")
    if side == "serve":
        group.add_argument("--cert", help="coordinator certificate (PEM)")
        group.add_argument("--key", help="coordinator private key (PEM)")
        group.add_argument("--ca", help="CA bundle of client certificates: turns on mutual TLS")
        group.add_argument("--roster", help="JSON {certificate common name: client id} (default: client-<id>)")
    else:
        group.add_argument("--ca", help="CA bundle that signed the coordinator's certificate")
        group.add_argument("--cert", help="this client's certificate (mutual TLS)")
        group.add_argument("--key", help="this client's private key (mutual TLS)")
        group.add_argument("--server-name", help="name expected in the coordinator's certificate")
    group.add_argument("--insecure", action="store_true",
                       help="no TLS at all: plaintext on the wire, for local trials ONLY")


def _tls(args: argparse.Namespace):
    from secagg.transport.network import TLSConfig

    given = [f"--{name.replace('_', '-')}" for name in ("ca", "cert", "key", "roster", "server_name")
             if getattr(args, name, None)]
    if args.insecure and given:
        raise ParameterError(f"--insecure turns TLS off, but {', '.join(given)} were given too: drop --insecure "
                             "to use them (they would be ignored)")
    if args.insecure:
        print("WARNING: --insecure: no TLS, anyone on the path reads and alters the traffic (local trials only)",
              file=sys.stderr)
        return TLSConfig(insecure=True)
    return TLSConfig(ca=args.ca, cert=args.cert, key=args.key, server_name=getattr(args, "server_name", None))


def _logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    # secagg's own loggers get the level; the root stays at INFO at most, so -v does not turn on
    # every library's debug output (numba's compiler alone printed ~3,000 lines per start)
    logging.basicConfig(level=max(level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("secagg").setLevel(level)


def _threshold(value: str | None):
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"--threshold must be an int or a fraction in (0, 1], got {value!r}") from None
    return int(number) if number >= 1 and number == int(number) and "." not in value else number


def _load_array(path: str, what: str, keys: tuple[str, ...] = ()):
    """An .npy array, or the named arrays of an .npz file (never unpickled); typed errors."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not keys:
            return loaded
        with loaded:
            return tuple(loaded[k] for k in keys)
    except (OSError, ValueError, KeyError) as exc:
        raise ParameterError(f"cannot read {what} from {path}: {exc}") from None


def _load_roster(path: str) -> dict[str, int]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read the roster {path}: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                            for k, v in raw.items()):
        raise ParameterError(f"{path}: the roster must be a JSON object {{common name: client id}}")
    return raw


def _job(args: argparse.Namespace):
    from secagg.fedavg.job import load_job

    if not args.job:
        raise ParameterError("--task job needs --job package.module:name (or file.py:name)")
    return load_job(args.job)


def _paillier_public(args: argparse.Namespace) -> tuple[ThresholdPublicKey, dict[int, bytes]]:
    from secagg.paillier import _gmpy2
    from secagg.paillier.threshold import load_public_key

    _gmpy2()  # the paillier extra, named, before any work
    if not args.paillier_public:
        raise ParameterError("--aggregator paillier needs --paillier-public (public.json from secagg paillier-keygen)")
    if not args.verify_keys:
        raise ParameterError("--aggregator paillier needs --verify-keys (every bank's Ed25519 public key)")
    from secagg.transport.certs import load_verify_keys

    public = load_public_key(args.paillier_public, min_key_bits=args.min_key_bits)
    return public, load_verify_keys(args.verify_keys)


def _fedavg_job(args: argparse.Namespace, num_clients: int):
    """The job ``serve``/``join`` run: ``--job REF``, or the demo built from its options. A
    ``--rounds`` given on the command line replaces the job's (give it on every side)."""
    if args.task == "job":
        job = _job(args)
        fedavg = job.configuration()
    else:
        from secagg.fedavg.demo_job import demo_job

        options = _masking_options(args)
        job = demo_job(banks=num_clients, samples=args.samples, seed=args.seed,
                       rounds=10 if args.rounds is None else args.rounds, local_epochs=args.local_epochs,
                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                       aggregator_options=options or None)
        fedavg = job.configuration()
    if args.rounds is not None:
        if isinstance(args.rounds, bool) or args.rounds < 1:
            raise ParameterError(f"--rounds must be a positive int, got {args.rounds}")
        fedavg.rounds = args.rounds
    return job, fedavg


def _masking_options(args: argparse.Namespace) -> dict:
    """The demo's masking options from serve's flags (a job sets its own in its FedAvg)."""
    options = {}
    if getattr(args, "threshold", None) is not None:
        options["threshold"] = _threshold(args.threshold)
    if getattr(args, "neighbors", None) is not None:
        options["neighbors"] = args.neighbors
    if getattr(args, "malicious", False):
        options["malicious"] = True
    return options


def _cmd_serve(args: argparse.Namespace) -> int:
    from secagg.transport.network import Coordinator, Deadlines
    from secagg.transport.tasks import SumTask

    if args.job:
        args.task = "job"

    _logging(args)
    n = args.clients
    round_deadline = args.deadline
    deadlines = Deadlines(advertise_keys=args.join_deadline, share_keys=round_deadline,
                          masked_input=round_deadline, consistency_check=round_deadline, unmasking=round_deadline)
    verify_keys: dict[int, bytes] | None = None
    aggregator: PaillierAggregator | None = None  # the Paillier path's (the masking path's is in its job or task)
    if args.aggregator == "paillier":
        from secagg.aggregation.paillier import PaillierAggregator

        public, verify_keys = _paillier_public(args)
        if public.parties != n:
            raise ParameterError(f"the Paillier key was set up for {public.parties} banks, not -n {n}")
        aggregator = PaillierAggregator(keys=(public, None), verify_keys=verify_keys,
                                        min_contributors=args.min_contributors, corrupt_banks=args.corrupt_banks)
    elif args.task == "job" and _masking_options(args):
        raise ParameterError("--threshold, --neighbors and --malicious set the session of --task sum and demo; a job "
                             "sets them in its own FedAvg (aggregator_options), which every participant checks")
    if args.task == "sum":
        if aggregator is not None:
            from secagg.transport.sessions import PaillierSpec

            floor = aggregator.min_contributors_for(n)
            spec = PaillierSpec(aggregator.key(), aggregator.verify_keys, values=args.length,
                                value_bound=args.value_bound, max_summands=n, min_contributors=floor)
            spec.scheme  # noqa: B018 - refuse an impossible packing now
            task = SumTask(spec, output=args.output, sessions=args.sessions)
            max_message = spec.scheme.plaintexts_for(spec.values) * (aggregator.key().key_bits // 4 + 8) + 2**20
        else:
            from secagg.aggregation.masking import MaskingAggregator

            masking = MaskingAggregator(**_masking_options(args))
            if args.malicious:
                verify_keys = _verify_keys(args)
            config = masking.config_for(n, args.length, args.bits)
            task = SumTask(config, output=args.output, sessions=args.sessions)
            max_message = config.vector_length * config.ring.dtype.itemsize + n * 256 + 2**20
        if args.max_message_mb:
            max_message = int(args.max_message_mb * 2**20)
        roster = _load_roster(args.roster) if getattr(args, "roster", None) else None
        coordinator = Coordinator(task, n, address=args.address, tls=_tls(args), deadlines=deadlines,
                                  max_message_bytes=max_message, roster=roster, linger=args.linger,
                                  verify_keys=verify_keys, join_grace=args.join_grace, join_quorum=args.join_quorum)
    else:
        job, fedavg = _fedavg_job(args, n)
        if aggregator is not None:
            aggregator.fractional_bits = getattr(fedavg.aggregator, "fractional_bits", aggregator.fractional_bits)
            fedavg.aggregator = aggregator
        elif getattr(fedavg.aggregator, "malicious", False):
            verify_keys = _verify_keys(args)
        options: dict[str, object] = {}
        if args.max_message_mb:
            options["max_message_bytes"] = int(args.max_message_mb * 2**20)
        if getattr(args, "roster", None):
            options["roster"] = _load_roster(args.roster)
        fedavg_coordinator = fedavg.coordinator(n, tls=_tls(args), address=args.address, eval_data=job.holdout(),
                                                state_dir=args.state_dir, deadlines=deadlines,
                                                verify_keys=verify_keys, linger=args.linger,
                                                join_grace=args.join_grace, join_quorum=args.join_quorum, **options)
        coordinator, task = fedavg_coordinator, fedavg_coordinator.task

    def started(port: int) -> None:
        if aggregator is not None:
            from secagg.transport.sessions import PaillierSpec

            spec = task.spec
            if not isinstance(spec, PaillierSpec):  # a Paillier aggregator's task runs Paillier sessions: typed anyway
                raise SessionStateError("the Paillier task has no Paillier session")
            what = (f"Paillier, decryption by {aggregator.key().threshold} of {n} banks, at least "
                    f"{spec.min_contributors} contributions")
        elif task.config is not None:
            what = f"threshold {task.config.threshold}"
        else:  # a masking task always has its configuration: typed anyway
            raise SessionStateError("the masking task has no session configuration")
        print(f"secagg serve: task {args.task!r}, {n} clients, {what}, listening on port {port}", flush=True)
        if args.port_file:
            tmp = Path(args.port_file + ".tmp")
            tmp.write_text(str(port))
            tmp.replace(args.port_file)

    from secagg.transport.grpc_log import watch_grpc_log

    network = coordinator.network if hasattr(coordinator, "network") else coordinator
    with watch_grpc_log(network.grpc_log_line):  # failed TLS handshakes become security events
        coordinator.serve(on_started=started)
    if network.security_events:
        print(f"security events: {dict(sorted(network.security_events.items()))}")
    if args.task == "sum":
        if task.aborted:
            print(f"session ABORTED: {task.aborted}")
            if task.refused:
                print(f"clients that refused the session: {task.refused}")
            return 2
        print(f"sum of {len(task.survivors)} of {n} clients in {task.seconds:.2f} s; survivors {task.survivors}"
              + (f"; written to {args.output}.npy" if args.output else ""))
        if task.misbehaving:
            print(f"misbehaving clients (refused, named): {task.misbehaving}")
        if task.refused:
            print(f"clients that refused the session: {task.refused}")
        return 0
    print(fedavg_coordinator.report())  # the sum task returned above: this is the FedAvg job's coordinator
    return 0


def _verify_keys(args: argparse.Namespace):
    from secagg.transport.certs import load_verify_keys

    if not args.verify_keys:
        raise ParameterError("the malicious-server mode needs --verify-keys (every client's Ed25519 public key)")
    return load_verify_keys(args.verify_keys)


def _cmd_join(args: argparse.Namespace) -> int:
    from secagg.transport.network import ClientPolicy, NetworkClient, NetworkError, RetryPolicy
    from secagg.transport.tasks import SumClient

    if args.job:
        args.task = "job"

    _logging(args)
    identity = verify_keys = paillier = None
    if args.identity or args.verify_keys or args.paillier_share:
        from secagg.transport.certs import load_identity, load_verify_keys

        if not (args.identity and args.verify_keys):
            raise ParameterError("the malicious-server mode and a Paillier bank need both --identity and "
                                 "--verify-keys")
        identity, verify_keys = load_identity(args.identity), load_verify_keys(args.verify_keys)
    if args.paillier_share:
        from secagg.paillier.roles import default_min_contributors, paillier_threat_model
        from secagg.paillier.threshold import load_key_share

        public = _paillier_public(args)[0]
        share = load_key_share(args.paillier_share, public)
        floor = args.min_contributors if args.min_contributors is not None else \
            default_min_contributors(public.parties, public.threshold, args.corrupt_banks)
        paillier_threat_model(public.parties, public.threshold, floor, args.corrupt_banks)  # refuse now
        paillier = (public, share, floor)
        print(f"bank {args.id}: key {public.fingerprint.hex()[:16]}..., decrypts no aggregate of fewer than {floor} "
              "contributions", flush=True)
    retry = RetryPolicy(give_up_after=args.give_up_after)
    if args.task == "sum":
        if args.vector:
            vector = _load_array(args.vector, "the client's vector")
        elif args.random_vector is not None:
            rng = np.random.default_rng(args.random_vector)
            if args.paillier_share:
                vector = rng.integers(-args.value_bound, args.value_bound + 1, size=args.length, dtype=np.int64)
            else:
                vector = rng.integers(0, 2**args.bits, size=args.length, dtype=np.uint64)
        else:
            raise ParameterError("give the client's vector: --vector FILE.npy (or --random-vector SEED for trials)")
        if args.repeat:
            print("WARNING: --repeat: this client's vector may enter several sums; the coordinator can subtract "
                  "them (measurements on synthetic data only)", file=sys.stderr)
        client = NetworkClient(args.coordinator, args.id, SumClient(vector, repeat=args.repeat), tls=_tls(args),
                               policy=ClientPolicy(num_clients=args.clients, min_threshold=args.min_threshold,
                                                   min_neighbors=args.min_neighbors, min_corrupt=args.min_corrupt),
                               retry=retry, identity=identity, verify_keys=verify_keys, paillier=paillier)
    else:
        n = args.clients if args.clients is not None else (args.banks if args.task == "demo" else None)
        if n is None:
            raise ParameterError("join --job needs -n: the number of participants the job runs with")
        job, fedavg = _fedavg_job(args, n)
        if args.data:
            X, y = _load_array(args.data, "this bank's data (arrays X and y)", ("X", "y"))
        else:
            X, y = job.client_data(args.id)
        if paillier:
            from secagg.aggregation.paillier import PaillierAggregator

            bank_side = PaillierAggregator(keys=(paillier[0], None),
                                           fractional_bits=getattr(fedavg.aggregator, "fractional_bits", 16))
            fedavg.aggregator = bank_side
        client = fedavg.participant(args.id, (X, y), coordinator=args.coordinator, tls=_tls(args), num_clients=n,
                                    state_dir=args.state_dir, min_threshold=args.min_threshold,
                                    min_neighbors=args.min_neighbors, identity=identity, verify_keys=verify_keys,
                                    paillier=paillier, retry=retry)
    try:
        counts = client.run()
    except NetworkError as exc:
        print(f"secagg join: {exc}", file=sys.stderr)
        return 3
    except ProtocolViolation as exc:
        print(f"secagg join: refused the coordinator: {exc}", file=sys.stderr)
        return 2
    print(f"client {args.id}: finished; sessions {counts}")
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from secagg.transport.certs import make_dev_pki

    out = make_dev_pki(args.out, args.clients, hosts=args.host or ["localhost"], ips=args.ip or ["127.0.0.1"],
                       days=args.days)
    print(f"wrote a development CA, coordinator.pem/.key and client-0..{args.clients - 1}.pem/.key to {out}")
    return 0


def _paillier_arguments(parser: argparse.ArgumentParser, side: str) -> None:
    group = parser.add_argument_group("Paillier path (banks with key shares from secagg paillier-keygen)")
    if side == "serve":
        group.add_argument("--aggregator", choices=["masking", "paillier"], default="masking",
                           help="'paillier': one Paillier round per session; the coordinator holds no key share")
    else:
        group.add_argument("--paillier-share", help="this bank's key share (share-<id+1>.json): join as a bank")
    group.add_argument("--paillier-public", help="public parameters (public.json), checked against the fingerprint "
                       "you were given out of band")
    group.add_argument("--min-contributors", type=int, default=None,
                       help="fewest contributions per decrypted aggregate (default c + 2)" if side == "serve" else
                       "this bank decrypts no aggregate of fewer contributions (default c + 2)")
    group.add_argument("--corrupt-banks", type=int, default=None,
                       help="corrupt banks the parameters must withstand (checked: t > c, 2t > n + c, floor >= c + 2)")
    group.add_argument("--value-bound", type=int, default=2**31 - 1,
                       help="task sum: largest |value| of a bank's integer vector")
    group.add_argument("--min-key-bits", type=int, default=2048,
                       help="refuse a smaller modulus (lower it only for local trials with toy keys)")


def add_network_commands(sub) -> None:
    """Register ``serve``, ``join`` and ``certs`` on the ``secagg`` sub-command parser."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    serve = sub.add_parser("serve", help="network mode: run the coordinator (gRPC, TLS)", formatter_class=fmt)
    serve.add_argument("--task", choices=["sum", "demo", "job"], default="demo",
                       help="'sum': one session summing the clients' vectors; 'demo': FedAvg on the bank demo; "
                       "'job': FedAvg with your own model (--job)")
    serve.add_argument("--job", help="your FedAvg job, 'package.module:name' or 'file.py:name' (a FedAvgJob or a "
                       "function returning one; see docs/network.md); implies --task job")
    serve.add_argument("--clients", "-n", type=int, default=8, help="number of clients (ids 0..n-1)")
    serve.add_argument("--threshold", "-t", default=None, help="int, or fraction of share holders (default 2/3)")
    serve.add_argument("--neighbors", type=int, default=None, help="SecAgg+ neighbours (default complete graph)")
    serve.add_argument("--malicious", action="store_true",
                       help="malicious-server mode: signed keys and the consistency check (needs --verify-keys)")
    serve.add_argument("--verify-keys", help="JSON {client id: Ed25519 public key, hex} (secagg certs writes one)")
    _paillier_arguments(serve, "serve")
    serve.add_argument("--address", default="127.0.0.1:50051", help="host:port to listen on (port 0: any free)")
    serve.add_argument("--port-file", help="write the port actually bound to this file")
    serve.add_argument("--join-deadline", type=float, default=120.0,
                       help="seconds the first round stays open for clients to join (and train)")
    serve.add_argument("--join-grace", type=float, default=1.0,
                       help="from the second session on, close the first round this many quiet seconds after every "
                       "connected client sent its keys (absent clients do not hold it open)")
    serve.add_argument("--join-quorum", type=int, default=None,
                       help="close the first round as soon as this many clients (at least t + 1) sent their keys, "
                       "instead of waiting out the join window for the others")
    serve.add_argument("--deadline", type=float, default=60.0, help="seconds each later round stays open")
    serve.add_argument("--max-message-mb", type=float, default=None,
                       help="largest accepted message (default: sized from the vector length)")
    serve.add_argument("--linger", type=float, default=2.0, help="seconds to answer late clients after the job")
    serve.add_argument("--quiet", action="store_true", help="warnings only")
    serve.add_argument("--verbose", "-v", action="store_true", help="also log when each round completes")
    sum_group = serve.add_argument_group("task sum")
    sum_group.add_argument("--length", "-m", type=int, default=100_000, help="vector length")
    sum_group.add_argument("--bits", "-k", type=int, default=32, help="ring Z_2^k")
    sum_group.add_argument("--output", help="write the sum to OUTPUT.npy and a summary to OUTPUT.json")
    sum_group.add_argument("--sessions", type=int, default=1, help="repeat the session (for measurements)")
    demo_group = serve.add_argument_group("task demo (FedAvg on the synthetic bank data)")
    demo_group.add_argument("--rounds", type=int, default=None,
                            help="FedAvg rounds (default: 10 for the demo, the job's own settings for --job)")
    demo_group.add_argument("--samples", type=int, default=6000, help="transactions per bank")
    demo_group.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    demo_group.add_argument("--local-epochs", type=int, default=1)
    demo_group.add_argument("--batch-size", type=int, default=64)
    demo_group.add_argument("--learning-rate", type=float, default=0.1)
    demo_group.add_argument("--state-dir", help="keep the model and history here; a restart resumes from it")
    _tls_arguments(serve, "serve")
    serve.set_defaults(func=_cmd_serve)

    join = sub.add_parser("join", help="network mode: run one client", formatter_class=fmt)
    join.add_argument("--coordinator", default="localhost:50051", help="host:port of the coordinator")
    join.add_argument("--id", type=int, required=True, help="this client's id (0..n-1)")
    join.add_argument("--task", choices=["sum", "demo", "job"], default="demo")
    join.add_argument("--job", help="the same FedAvg job reference as the coordinator's (your model and data "
                      "loader); implies --task job")
    join.add_argument("--clients", "-n", type=int, default=None,
                      help="number of clients this client agreed to (refuses a coordinator asking otherwise)")
    join.add_argument("--min-threshold", type=int, default=None,
                      help="lowest threshold accepted (default: a majority of the share holders)")
    join.add_argument("--min-neighbors", type=int, default=None,
                      help="accept SecAgg+ graphs with at least this many neighbours (default: complete graph only)")
    join.add_argument("--min-corrupt", type=int, default=0,
                      help="corrupt clients (colluding with the coordinator) the session must keep this client's "
                      "input private against, by the bounds of docs/security.md, whatever the coordinator declares")
    join.add_argument("--identity", help="this client's Ed25519 identity key (PEM): requires the malicious-server "
                      "mode, refusing sessions without it")
    join.add_argument("--verify-keys", help="JSON {client id: Ed25519 public key, hex}, obtained out of band")
    _paillier_arguments(join, "join")
    join.add_argument("--give-up-after", type=float, default=120.0,
                      help="seconds without reaching the coordinator before giving up")
    join.add_argument("--quiet", action="store_true", help="warnings only")
    sum_group = join.add_argument_group("task sum")
    sum_group.add_argument("--vector", help=".npy file with this client's integer vector")
    sum_group.add_argument("--random-vector", type=int, default=None, metavar="SEED",
                           help="trials: a random vector from this seed (with --length, --bits)")
    sum_group.add_argument("--repeat", action="store_true",
                           help="measurements only: contribute the same vector to every session (lets the "
                           "coordinator subtract sums)")
    sum_group.add_argument("--length", "-m", type=int, default=100_000)
    sum_group.add_argument("--bits", "-k", type=int, default=32)
    demo_group = join.add_argument_group("task demo and --job (FedAvg)")
    demo_group.add_argument("--data", help=".npz with arrays X (features) and y (0/1 labels): this bank's data")
    demo_group.add_argument("--state-dir", help="remember which requests this participant contributed to across "
                            "restarts (the one-sum rule)")
    demo_group.add_argument("--rounds", type=int, default=None,
                            help="FedAvg rounds, as given to serve (default: 10 for the demo, the job's own)")
    demo_group.add_argument("--banks", type=int, default=8, help="synthetic data: number of banks")
    demo_group.add_argument("--samples", type=int, default=6000, help="synthetic data: transactions per bank")
    demo_group.add_argument("--seed", type=int, default=0, help="synthetic data: seed (same as the coordinator's)")
    demo_group.add_argument("--local-epochs", type=int, default=1, help="the demo's, as given to serve")
    demo_group.add_argument("--batch-size", type=int, default=64, help="the demo's, as given to serve")
    demo_group.add_argument("--learning-rate", type=float, default=0.1, help="the demo's, as given to serve")
    _tls_arguments(join, "join")
    join.set_defaults(func=_cmd_join)

    certs = sub.add_parser("certs", help="network mode: make a development CA and certificates",
                           formatter_class=fmt)
    certs.add_argument("--out", default="certs", help="directory to write to")
    certs.add_argument("--clients", "-n", type=int, default=8)
    certs.add_argument("--host", action="append", default=None, help="coordinator host name (repeatable)")
    certs.add_argument("--ip", action="append", default=None, help="coordinator IP address (repeatable)")
    certs.add_argument("--days", type=int, default=30)
    certs.set_defaults(func=_cmd_certs)
