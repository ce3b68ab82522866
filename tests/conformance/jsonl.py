"""The JSON-lines harness: the conformance suite drives an implementation in another process (any
language) through its stdin and stdout. The protocol is documented in docs/conformance.md.

    python -m tests.conformance.jsonl                    # serve secagg (the reference) on stdin/stdout
    python -m tests.conformance.jsonl my.module:factory  # serve any in-process implementation

:class:`SubprocessImplementation` is the suite's side: it starts the program, sends one request
per line and reads one response per line, and looks to the tests like any other implementation.
:func:`serve` is the program's side for a Python implementation; CI runs the whole suite through
it against secagg, so the harness itself is tested.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import tempfile
from typing import IO

PROTOCOL = "secagg-conformance-jsonl/1"
KINDS = ("malformed", "violation", "abort")
CALL_SECONDS = 120.0


class HarnessError(Exception):
    """A typed error the implementation reported (``kind`` is one of KINDS), or ``other``/``harness``."""

    def __init__(self, kind: str, message: str, round_name: str | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.round = round_name


def _ints(values) -> list[str]:
    return [str(int(v)) for v in values]


def _outbox(data: dict) -> dict[int, bytes]:
    return {int(k): bytes.fromhex(v) for k, v in data.items()}


# ------------------------------------------------------------------------------ the suite's side

class _Proxy:
    def __init__(self, harness: SubprocessImplementation, handle: str) -> None:
        self._harness, self._handle = harness, handle

    def _call(self, op: str, **args):
        return self._harness.call(op, handle=self._handle, **args)


class _ClientProxy(_Proxy):
    def start(self) -> bytes:
        return bytes.fromhex(self._call("client_start"))

    def handle(self, data: bytes) -> bytes | None:
        reply = self._call("client_handle", message=bytes(data).hex())
        return None if reply is None else bytes.fromhex(reply)


class _ServerProxy(_Proxy):
    def receive(self, client_id: int, data: bytes) -> dict[int, bytes]:
        return _outbox(self._call("server_receive", client=int(client_id), message=bytes(data).hex()))

    def close_round(self) -> dict[int, bytes]:
        return _outbox(self._call("server_close_round"))

    def abort(self, reason: str) -> dict[int, bytes]:
        return _outbox(self._call("server_abort", reason=reason))

    def abort_notices(self) -> dict[int, bytes]:
        return _outbox(self._call("server_abort_notices"))

    def outcome(self):
        out = self._call("server_outcome")
        return None if out is None else (out["survivors"], [int(v) for v in out["aggregate"]])

    def flagged(self):
        out = self._call("server_flagged")
        return out["reports"], out["misbehaving"]


class SubprocessImplementation:
    """An implementation in another process, reached through the JSON-lines protocol."""

    def __init__(self, command: str | list[str], cwd: str | os.PathLike | None = None) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, bufsize=0, cwd=cwd)
        self._buffer = b""
        self._next_id = 0
        hello = self.call("hello", protocol=PROTOCOL)
        if hello.get("protocol") != PROTOCOL:
            raise HarnessError("harness", f"the program speaks {hello.get('protocol')!r}, not {PROTOCOL!r}")
        self.name = hello.get("name", self.command[0])

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._send({"id": -1, "op": "quit"})
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            stream.close()
        self._stderr.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def _send(self, request: dict) -> None:
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        self._process.stdin.flush()

    def _read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._process.stdout], [], [], CALL_SECONDS)
            if not ready:
                raise HarnessError("harness", f"no answer within {CALL_SECONDS:g} s")
            chunk = os.read(self._process.stdout.fileno(), 1 << 16)
            if not chunk:
                raise HarnessError("harness", f"the program exited ({self._process.poll()}); its stderr:\n"
                                              f"{self._stderr_tail()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, op: str, **args):
        self._next_id += 1
        request_id = self._next_id
        self._send({"id": request_id, "op": op, **args})
        try:
            response = json.loads(self._read_line())
        except json.JSONDecodeError as exc:
            raise HarnessError("harness", f"not a JSON line: {exc}") from None
        if response.get("id") != request_id:
            raise HarnessError("harness", f"answer {response.get('id')!r} to request {request_id}")
        if "error" in response:
            error = response["error"]
            raise HarnessError(error.get("kind", "other"), error.get("message", ""), error.get("round"))
        return response.get("ok")

    # the Implementation interface
    def hkdf(self, ikm, label, context, length):
        return bytes.fromhex(self.call("hkdf", ikm=ikm.hex(), label=label, context=context.hex(), length=length))

    def prg(self, seed, count, modulus_bits):
        return [int(v) for v in self.call("prg", seed=seed.hex(), count=count, modulus_bits=modulus_bits)]

    def shamir_share(self, limbs, threshold, holders, randomness):
        out = self.call("shamir_share", limbs=list(limbs), threshold=threshold, holders=list(holders),
                        randomness=randomness.hex())
        return {int(h): list(v) for h, v in out.items()}

    def shamir_reconstruct(self, holders, shares):
        return list(self.call("shamir_reconstruct", holders=list(holders), shares=[list(s) for s in shares]))

    def reencode(self, data):
        return bytes.fromhex(self.call("reencode", message=bytes(data).hex()))

    def draw_holders(self, client, num_clients, count, randomness):
        return list(self.call("draw_holders", client=client, num_clients=num_clients, count=count,
                              randomness=randomness.hex()))

    def transcript_tree(self, advertise_keys):
        out = self.call("transcript_tree", advertise_keys=[m.hex() for m in advertise_keys])
        return bytes.fromhex(out["root"]), [[bytes.fromhex(h) for h in path] for path in out["paths"]]

    def identity_public_key(self, seed):
        return bytes.fromhex(self.call("identity_public_key", seed=seed.hex()))

    def new_client(self, config, client_id, session_id, inputs, randomness, identity_seed, verify_keys):
        handle = self.call("new_client", config=config, client_id=client_id, session_id=session_id.hex(),
                           inputs=_ints(inputs), randomness=randomness.hex(),
                           identity_seed=identity_seed.hex() if identity_seed else None,
                           verify_keys={str(k): v.hex() for k, v in verify_keys.items()} if verify_keys else None)
        return _ClientProxy(self, handle)

    def new_server(self, config, session_id, verify_keys):
        handle = self.call("new_server", config=config, session_id=session_id.hex(),
                           verify_keys={str(k): v.hex() for k, v in verify_keys.items()} if verify_keys else None)
        return _ServerProxy(self, handle)

    def error_kind(self, error):
        if isinstance(error, HarnessError) and error.kind in KINDS:
            return error.kind
        return None


# ------------------------------------------------------------------------------ the program's side

class _Sessions:
    """Dispatches JSON-lines requests to an in-process implementation."""

    def __init__(self, impl) -> None:
        self.impl = impl
        self.objects: dict[str, object] = {}
        self.count = 0

    def _keep(self, prefix: str, obj) -> str:
        self.count += 1
        handle = f"{prefix}{self.count}"
        self.objects[handle] = obj
        return handle

    def _get(self, request: dict):
        try:
            return self.objects[request["handle"]]
        except KeyError:
            raise HarnessError("harness", f"unknown handle {request.get('handle')!r}") from None

    def dispatch(self, request: dict):
        op, impl = request.get("op"), self.impl
        hexed = bytes.fromhex
        if op == "hello":
            return {"protocol": PROTOCOL, "name": getattr(impl, "name", type(impl).__name__)}
        if op == "hkdf":
            return impl.hkdf(hexed(request["ikm"]), request["label"], hexed(request["context"]), request["length"]).hex()
        if op == "prg":
            return _ints(impl.prg(hexed(request["seed"]), request["count"], request["modulus_bits"]))
        if op == "shamir_share":
            shares = impl.shamir_share(request["limbs"], request["threshold"], request["holders"],
                                       hexed(request["randomness"]))
            return {str(h): [int(v) for v in row] for h, row in shares.items()}
        if op == "shamir_reconstruct":
            return [int(v) for v in impl.shamir_reconstruct(request["holders"], request["shares"])]
        if op == "reencode":
            return impl.reencode(hexed(request["message"])).hex()
        if op == "draw_holders":
            return [int(v) for v in impl.draw_holders(request["client"], request["num_clients"], request["count"],
                                                      hexed(request["randomness"]))]
        if op == "transcript_tree":
            root, paths = impl.transcript_tree([hexed(m) for m in request["advertise_keys"]])
            return {"root": root.hex(), "paths": [[h.hex() for h in path] for path in paths]}
        if op == "identity_public_key":
            return impl.identity_public_key(hexed(request["seed"])).hex()
        if op in ("new_client", "new_server"):
            keys = request.get("verify_keys")
            keys = {int(k): hexed(v) for k, v in keys.items()} if keys else None
            if op == "new_server":
                return self._keep("s", impl.new_server(request["config"], hexed(request["session_id"]), keys))
            seed = request.get("identity_seed")
            return self._keep("c", impl.new_client(request["config"], request["client_id"],
                                                   hexed(request["session_id"]), [int(v) for v in request["inputs"]],
                                                   hexed(request["randomness"]), hexed(seed) if seed else None, keys))
        if op == "client_start":
            return self._get(request).start().hex()
        if op == "client_handle":
            reply = self._get(request).handle(hexed(request["message"]))
            return None if reply is None else reply.hex()
        if op in ("server_receive", "server_close_round", "server_abort", "server_abort_notices"):
            server = self._get(request)
            if op == "server_receive":
                out = server.receive(request["client"], hexed(request["message"]))
            elif op == "server_close_round":
                out = server.close_round()
            elif op == "server_abort":
                out = server.abort(request["reason"])
            else:
                out = server.abort_notices()
            return {str(k): v.hex() for k, v in sorted(out.items())}
        if op == "server_outcome":
            outcome = self._get(request).outcome()
            return None if outcome is None else {"survivors": [int(v) for v in outcome[0]],
                                                 "aggregate": _ints(outcome[1])}
        if op == "server_flagged":
            reports, misbehaving = self._get(request).flagged()
            return {"reports": [[int(a), int(b)] for a, b in reports], "misbehaving": [int(v) for v in misbehaving]}
        if op == "drop":
            self.objects.pop(request.get("handle"), None)
            return None
        raise HarnessError("harness", f"unknown op {op!r}")


def serve(impl, stdin: IO[str], stdout: IO[str]) -> None:
    """Answer JSON-lines requests for ``impl`` until ``quit`` or end of input."""
    sessions = _Sessions(impl)
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            stdout.write(json.dumps({"id": None, "error": {"kind": "harness", "message": str(exc)}}) + "\n")
            stdout.flush()
            continue
        if request.get("op") == "quit":
            return
        try:
            response = {"id": request.get("id"), "ok": sessions.dispatch(request)}
        except HarnessError as exc:
            response = {"id": request.get("id"), "error": {"kind": exc.kind, "message": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the suite, typed or not
            kind = impl.error_kind(exc) or "other"
            error = {"kind": kind, "message": f"{type(exc).__name__}: {exc}"}
            if kind == "abort":
                error["round"] = getattr(exc, "round", None)
            response = {"id": request.get("id"), "error": error}
        stdout.write(json.dumps(response) + "\n")
        stdout.flush()


def main(argv: list[str] | None = None) -> int:
    from tests.conformance.adapter import load_in_process

    argv = sys.argv[1:] if argv is None else argv
    serve(load_in_process(argv[0] if argv else None), sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
