"""Fault injection for the network mode: a ``secagg join`` client that misbehaves on purpose.

For dropout-tolerance experiments with real processes and for the end-to-end tests::

    python -m secagg.transport.faults --die-before unmasking -- join --task sum --id 3 ...
    python -m secagg.transport.faults --garbage-at masked_input -- join --task sum --id 4 ...

``--die-before ROUND`` kills the process (SIGKILL, no goodbye) when the coordinator's request for
that round arrives: ``unmasking`` means the client has sent its masked input and then vanishes.
``--garbage-at ROUND`` sends random bytes instead of that round's protocol message.
``--session K`` misbehaves in the client's K-th session (0-based) only, behaving before.

A bank of the Paillier path (``join --paillier-share ...``)::

    python -m secagg.transport.faults --bank-die-at decryption -- join --task sum --id 2 --paillier-share ...
    python -m secagg.transport.faults --wrong-partials -- join --task sum --id 3 --paillier-share ...

``--bank-die-at contribution|decryption`` SIGKILLs the bank when the coordinator's request for that
round arrives (``decryption``: its contribution is in the aggregate, its partial never comes).
``--wrong-partials`` multiplies the bank's first partial decryption by ``1 + N`` (which would shift
the decrypted sum by one) and sends it with its proof: the cheat the proofs must catch.

The coordinator's side, for restart experiments::

    python -m secagg.transport.faults --kill-coordinator-at masked_input_closed --session 1 -- serve ...

``--kill-coordinator-at POINT`` SIGKILLs a ``secagg serve`` process at a named point of its K-th
session (one of :data:`secagg.transport.network.CHECKPOINTS`): ``session_recorded`` is between two
FedAvg rounds (the first one saved), ``masked_input_closed`` after the survivors' masked inputs
went out and before anyone was asked to unmask.
Everything after ``--`` is an ordinary ``secagg`` command line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from secagg.protocol.derivation import Round
from secagg.transport.network import CHECKPOINTS

__all__ = ["main"]

# The server message that asks for each round's client message.
_PROMPTS = {"share_keys": "KeyDirectory", "masked_input": "ShareBundles",
            "consistency_check": "ConsistencyRequest", "unmasking": "UnmaskRequest"}


def _install(die_before: str | None, garbage_at: str | None, session: int = 0) -> None:
    from secagg.protocol import client as client_module
    from secagg.protocol.messages import decode_message

    original_start = client_module.ClientSession.start
    original_handle = client_module.ClientSession.handle

    started = [0]

    def start(self):
        started[0] += 1
        if started[0] - 1 != session:
            return original_start(self)
        if die_before == "advertise_keys":
            os.kill(os.getpid(), signal.SIGKILL)
        reply = original_start(self)
        return os.urandom(len(reply)) if garbage_at == "advertise_keys" else reply

    def handle(self, data):
        if started[0] - 1 != session:
            return original_handle(self, data)
        prompt = type(decode_message(data)).__name__
        if die_before is not None and prompt == _PROMPTS.get(die_before):
            os.kill(os.getpid(), signal.SIGKILL)
        reply = original_handle(self, data)
        if reply is not None and garbage_at is not None and prompt == _PROMPTS.get(garbage_at):
            return os.urandom(len(reply))
        return reply

    # replacing methods on the class is the point of this module (a misbehaving process, on purpose)
    setattr(client_module.ClientSession, "start", start)  # noqa: B010
    setattr(client_module.ClientSession, "handle", handle)  # noqa: B010


def _install_bank(die_at: str | None, wrong_partials: bool, session: int = 0) -> None:
    from secagg.paillier import roles
    from secagg.paillier.messages import PartialDecryptions, decode_paillier_message

    original_read, original_handle = roles.BankSession.read_request, roles.BankSession.handle
    sessions: list[bytes] = []

    def ours(bank) -> bool:
        if bank.session_id not in sessions:
            sessions.append(bank.session_id)
        return sessions.index(bank.session_id) == session

    def read_request(self, data):
        if ours(self) and die_at == "contribution":
            os.kill(os.getpid(), signal.SIGKILL)
        return original_read(self, data)

    def handle(self, data, **kwargs):
        if not ours(self):
            return original_handle(self, data, **kwargs)
        if die_at == "decryption":
            os.kill(os.getpid(), signal.SIGKILL)
        reply = original_handle(self, data, **kwargs)
        if wrong_partials:
            m = decode_paillier_message(reply)
            n = self.public.n
            values = (m.values[0] * (1 + n) % (n * n),) + m.values[1:]
            unsigned = PartialDecryptions(m.session_id, m.party, m.round, m.fingerprint, m.width, values,
                                          m.challenge, m.response, m.request_digest, bytes(64))
            # signed with its own key, as a cheating bank would: the proof, not the signature, catches it
            reply = PartialDecryptions(m.session_id, m.party, m.round, m.fingerprint, m.width, values, m.challenge,
                                       m.response, m.request_digest,
                                       self.identity.sign(roles.partials_payload(unsigned))).encode()
        return reply

    setattr(roles.BankSession, "read_request", read_request)  # noqa: B010 - as in _install
    setattr(roles.BankSession, "handle", handle)  # noqa: B010


def _install_coordinator_kill(point: str, session: int) -> None:
    from secagg.transport.network import Coordinator

    def hook(name: str, index: int) -> None:
        if name == point and index == session:
            os.kill(os.getpid(), signal.SIGKILL)

    Coordinator.checkpoint_hook = hook


def main(argv: list[str] | None = None) -> int:
    rounds = [r.value for r in Round]
    parser = argparse.ArgumentParser(prog="python -m secagg.transport.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--die-before", choices=rounds, help="SIGKILL this process when this round starts")
    parser.add_argument("--garbage-at", choices=rounds, help="send random bytes as this round's message")
    parser.add_argument("--bank-die-at", choices=["contribution", "decryption"],
                        help="Paillier bank: SIGKILL this process when this round's request arrives")
    parser.add_argument("--wrong-partials", action="store_true",
                        help="Paillier bank: send a wrong partial decryption (with the proof of the right one)")
    parser.add_argument("--kill-coordinator-at", choices=CHECKPOINTS,
                        help="SIGKILL this coordinator (secagg serve) at this point of the session")
    parser.add_argument("--session", type=int, default=0, help="misbehave in this session (0-based) only")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- followed by a secagg command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.session < 0:
        parser.error("--session must be >= 0")
    bank_faults = args.bank_die_at is not None or args.wrong_partials
    if args.kill_coordinator_at is not None:
        if args.die_before or args.garbage_at or bank_faults:
            parser.error("--kill-coordinator-at is for a coordinator; --die-before/--garbage-at for a client")
        if command[:1] != ["serve"]:
            parser.error("--kill-coordinator-at needs a 'serve' command line after --")
        _install_coordinator_kill(args.kill_coordinator_at, args.session)
    else:
        if command[:1] != ["join"]:
            parser.error("--die-before/--garbage-at/--bank-die-at/--wrong-partials need a 'join' command line after --")
        if bank_faults and (args.die_before or args.garbage_at):
            parser.error("--bank-die-at/--wrong-partials are for Paillier banks; --die-before/--garbage-at for masking")
        if bank_faults:
            _install_bank(args.bank_die_at, args.wrong_partials, args.session)
        else:
            _install(args.die_before, args.garbage_at, args.session)
    from secagg.cli import main as secagg_main

    return secagg_main(command)


if __name__ == "__main__":
    sys.exit(main())
