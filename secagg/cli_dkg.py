"""``secagg paillier-keygen --no-dealer``: the banks generate the Paillier key among themselves.

Three ways to run it (docs/paillier.md, "Key ceremony without a dealer"):

* ``--serve``: the relay (holds nothing secret; writes ``public.json`` once every bank signed it);
* ``--bank I --coordinator HOST:PORT``: bank I's process (writes its ``share-<I+1>.json`` and
  ``public.json``); one per bank, each on its own machine;
* neither: a simulation in this process (every bank's state machine here: useful to try the
  ceremony out, not a deployment, since this one process ends up with every share, though never
  with p, q or the decryption exponent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from secagg.errors import ParameterError

__all__ = ["add_dkg_arguments", "run_dkg"]


def add_dkg_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("without a dealer (issue 18)")
    group.add_argument("--no-dealer", action="store_true",
                       help="the banks generate the key among themselves (distributed RSA modulus generation)")
    group.add_argument("--serve", action="store_true", help="--no-dealer: run the relay")
    group.add_argument("--bank", type=int, default=None, help="--no-dealer: run bank I (0..n-1)")
    group.add_argument("--coordinator", default=None, help="--no-dealer --bank: the relay's HOST:PORT")
    group.add_argument("--address", default="127.0.0.1:50061", help="--no-dealer --serve: where to listen")
    group.add_argument("--identity", help="--no-dealer --bank: this bank's Ed25519 identity key (secagg certs)")
    group.add_argument("--verify-keys", help="--no-dealer: every bank's Ed25519 verify key (JSON, secagg certs)")
    group.add_argument("--ca", help="CA bundle (relay: of the banks' certificates, turns on mutual TLS; bank: that "
                       "signed the relay's)")
    group.add_argument("--cert", help="this process's certificate (PEM)")
    group.add_argument("--key", help="this process's private key (PEM)")
    group.add_argument("--server-name", help="--bank: name expected in the relay's certificate")
    group.add_argument("--insecure", action="store_true", help="no TLS at all (local trials ONLY)")
    group.add_argument("--insecure-test-key", action="store_true",
                       help="allow keys below 2048 bits (tests only: such a key protects nothing)")
    group.add_argument("--round-deadline", type=float, default=300.0,
                       help="--serve: seconds a round may wait for a bank before the attempt aborts and restarts")
    group.add_argument("--join-deadline", type=float, default=600.0,
                       help="--serve: seconds to wait for every bank to be connected before an attempt")
    group.add_argument("--attempts", type=int, default=5, help="--serve: ceremonies to try before giving up")
    group.add_argument("--batch", type=int, default=None, help="candidate pairs sieved per batch (default: by size)")
    group.add_argument("--fault-exit-at-round", type=int, default=None, help=argparse.SUPPRESS)  # TESTS ONLY


def _config(args: argparse.Namespace, threshold: int):
    from secagg.paillier.dkg import DkgConfig

    # the generation keeps p and q from as many banks as the honest majority and t allow (c < n/2,
    # c < t); --corrupt is the Paillier rounds' bound, checked by the caller, and must not exceed it
    config = DkgConfig(args.banks, threshold, args.key_bits, batch=args.batch, insecure=args.insecure_test_key)
    if args.corrupt is not None and args.corrupt > config.corrupt:
        raise ParameterError(f"the ceremony keeps p and q from at most {config.corrupt} corrupt banks (an honest "
                             f"majority of {args.banks}, below the threshold {threshold}), not --corrupt {args.corrupt}")
    return config


def _tls(args: argparse.Namespace):
    from secagg.transport.network import TLSConfig

    if args.insecure:
        if args.ca or args.cert or args.key:
            raise ParameterError("--insecure takes no certificates")
        print("WARNING: --insecure: no TLS (the sealed pairwise channels still hide every share)", file=sys.stderr)
        return TLSConfig(insecure=True)
    return TLSConfig(ca=args.ca, cert=args.cert, key=args.key, server_name=args.server_name)


def run_dkg(args: argparse.Namespace, threshold: int) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    config = _config(args, threshold)
    if args.serve and args.bank is not None:
        raise ParameterError("--serve and --bank are two different processes")
    insecure = " (INSECURE TEST KEY)" if config.key_bits < 2048 else ""
    if args.serve or args.bank is not None:
        from secagg.transport.certs import load_identity, load_verify_keys

        if not args.verify_keys:
            raise ParameterError("--no-dealer over the network needs --verify-keys (every bank's Ed25519 key)")
        verify_keys = load_verify_keys(args.verify_keys)
        if set(verify_keys) != set(range(config.banks)):
            raise ParameterError(f"--verify-keys must hold the keys of banks 0..{config.banks - 1}")
    if args.serve:
        from secagg.transport.dkg_session import CeremonyRelay
        from secagg.paillier.threshold import save_key_material

        relay = CeremonyRelay(config, verify_keys, tls=_tls(args), address=args.address,
                              round_deadline=args.round_deadline, join_deadline=args.join_deadline,
                              attempts=args.attempts)
        print(f"secagg paillier-keygen --no-dealer: relay for {config.banks} banks, decryption needs {threshold}, "
              f"{config.key_bits}-bit key{insecure}; listening on port {relay.port}", flush=True)
        outcome = relay.serve()
        if outcome.public_key is None:  # every attempt aborted (the relay raises first today; typed anyway)
            print(f"secagg paillier-keygen --no-dealer: no key: {outcome.aborted}", file=sys.stderr)
            return 2
        save_key_material(args.out, outcome.public_key, [])
        print(json.dumps({"fingerprint": outcome.public_key.fingerprint.hex(), "attempts": outcome.attempts,
                          "aborted": outcome.aborted, "seconds": round(outcome.seconds, 2),
                          "last_attempt_seconds": round(outcome.last_attempt_seconds, 2),
                          "rounds": outcome.rounds, "bytes_relayed": outcome.bytes_relayed}), flush=True)
        return 0
    if args.bank is not None:
        from secagg.transport.dkg_session import CeremonyBank

        if not (args.coordinator and args.identity):
            raise ParameterError("--bank needs --coordinator HOST:PORT and --identity")
        identity = load_identity(args.identity)
        if identity.public_bytes != verify_keys[args.bank]:
            raise ParameterError(f"--identity is not bank {args.bank}'s key in --verify-keys")
        bank = CeremonyBank(args.coordinator, args.bank, config, identity, verify_keys, tls=_tls(args),
                            out_dir=args.out, fault_exit_at_round=args.fault_exit_at_round)
        written = bank.run()
        stats = bank.stats
        print(json.dumps({"bank": args.bank, "written": [str(p) for p in written], "ceremonies": bank.ceremonies,
                          "batches": stats.batches if stats else None,
                          "bytes_sent": stats.bytes_sent if stats else None,
                          "bytes_received": stats.bytes_received if stats else None}), flush=True)
        return 0
    from secagg.crypto.randomness import system_randomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier.dkg import run_ceremony
    from secagg.paillier.threshold import save_key_material

    print(f"secagg paillier-keygen --no-dealer: simulating {config.banks} banks in this process, decryption needs "
          f"{threshold}, {config.key_bits}-bit key{insecure}...", flush=True)
    started = time.perf_counter()
    identities = {i: IdentityKey.generate(system_randomness()) for i in range(config.banks)}
    public, shares, report = run_ceremony(config, identities)
    written = save_key_material(args.out, public, [shares[i] for i in range(config.banks)])
    print(f"wrote {written[0]} (fingerprint {public.fingerprint.hex()[:16]}...) and {len(written) - 1} key shares "
          f"in {time.perf_counter() - started:.1f} s ({report.bank_stats[0].moduli} moduli tried, "
          f"{report.bytes_relayed / 1e6:.1f} MB relayed). No step held p, q or the decryption exponent; this process "
          "held every share, so run one process per bank (--serve / --bank) for a real key.")
    return 0
