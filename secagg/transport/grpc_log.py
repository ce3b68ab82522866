"""gRPC's own log lines, seen by secagg: a failed TLS handshake becomes a security event.

gRPC's C core reports a failed handshake (a client certificate from another CA, a scanner speaking
plain TCP, an expired certificate) only on the process's standard error, as a line such as
``ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: ... certificate
signature failure``; no Python API exposes it. :func:`watch_grpc_log` passes everything written to
file descriptor 2 on unchanged and calls a function for each line, so the coordinator can count and
log those failures with its other security events. The tap is for a process's main program (the
``secagg serve`` command uses it); a library embedding the coordinator decides for itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator

__all__ = ["watch_grpc_log", "handshake_failure"]

_HANDSHAKE = re.compile(r"Handshake failed with (?:fatal )?error (?P<what>.*)$")


def handshake_failure(line: str) -> str | None:
    """The reason of a failed-handshake line of gRPC's log, or None for any other line."""
    match = _HANDSHAKE.search(line)
    return match.group("what").strip()[:300] if match else None


@contextlib.contextmanager
def watch_grpc_log(on_line: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, call ``on_line`` with every line written to standard error (fd 2),
    which still reaches the real standard error unchanged."""
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                return
            if not chunk:
                return
            os.write(original, chunk)  # first: standard error keeps flowing whatever on_line does
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    on_line(line.decode(errors="replace"))
                except Exception:  # noqa: BLE001 - a failing observer must not stop standard error
                    pass

    thread = threading.Thread(target=pump, daemon=True, name="secagg-grpc-log")
    thread.start()
    try:
        yield
    finally:
        os.dup2(original, 2)  # the pipe's last writer is gone: the pump reads to the end and stops
        thread.join(5)
        os.close(read_end)
        os.close(original)
