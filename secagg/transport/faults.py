"""Fault injection for the network mode: a ``secagg join`` client that misbehaves on purpose.

For dropout-tolerance experiments with real processes and for the end-to-end tests::

    python -m secagg.transport.faults --die-before unmasking -- join --task sum --id 3 ...
    python -m secagg.transport.faults --garbage-at masked_input -- join --task sum --id 4 ...

``--die-before ROUND`` kills the process (SIGKILL, no goodbye) when the coordinator's request for
that round arrives: ``unmasking`` means the client has sent its masked input and then vanishes.
``--garbage-at ROUND`` sends random bytes instead of that round's protocol message.
``--session K`` misbehaves in the client's K-th session (0-based) only, behaving before.

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

    client_module.ClientSession.start = start
    client_module.ClientSession.handle = handle


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
    parser.add_argument("--kill-coordinator-at", choices=CHECKPOINTS,
                        help="SIGKILL this coordinator (secagg serve) at this point of the session")
    parser.add_argument("--session", type=int, default=0, help="misbehave in this session (0-based) only")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- followed by a secagg command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.session < 0:
        parser.error("--session must be >= 0")
    if args.kill_coordinator_at is not None:
        if args.die_before or args.garbage_at:
            parser.error("--kill-coordinator-at is for a coordinator; --die-before/--garbage-at for a client")
        if command[:1] != ["serve"]:
            parser.error("--kill-coordinator-at needs a 'serve' command line after --")
        _install_coordinator_kill(args.kill_coordinator_at, args.session)
    else:
        if command[:1] != ["join"]:
            parser.error("--die-before/--garbage-at need a 'join' command line after --")
        _install(args.die_before, args.garbage_at, args.session)
    from secagg.cli import main as secagg_main

    return secagg_main(command)


if __name__ == "__main__":
    sys.exit(main())
