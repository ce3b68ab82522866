"""Drive a NetworkClient's stream without gRPC: the coordinator's envelopes in, the client's out.

``NetworkClient._one_stream(call)`` only needs ``call(requests)`` to return an iterable of raw
envelopes with a ``cancel()``; this module plays that coordinator, so a test sees exactly what a
client answers to a hostile sequence (REFUSE, DECLINE, PROTOCOL resends) in milliseconds.
"""

from __future__ import annotations

import json
import struct

from secagg.transport.envelope import MAGIC, VERSION, Envelope, Kind, decode_envelope


class _Responses:
    def __init__(self, envelopes) -> None:
        self._items = iter([e.encode() if isinstance(e, Envelope) else e for e in envelopes])

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._items)

    def cancel(self) -> None:
        pass


def drive(client, envelopes):
    """Feed ``envelopes`` to ``client`` on one stream; (its error or None, the envelopes it sent
    after its HELLO). The stream ends after the last envelope (the client then sees a broken
    stream, a transient error, unless it refused or finished first)."""
    box = {}
    responses = _Responses(envelopes)  # encoded before the client starts: an unencodable envelope fails here

    def call(requests):
        box["requests"] = requests
        return responses

    error = None
    try:
        client._one_stream(call)
    except Exception as exc:  # noqa: BLE001 - returned for the assertions
        error = exc
    sent = [decode_envelope(raw) for raw in box["requests"]]
    assert sent[0].kind is Kind.HELLO
    return error, sent[1:]


def raw_envelope(kind: Kind, header_json: str, blob: bytes = b"") -> bytes:
    """An envelope whose header is ``header_json`` as written: JSON a Python dict cannot produce
    through :meth:`Envelope.encode` (e.g. the number ``1e400``, which every JSON reader takes for
    infinity, while ``json.dumps`` refuses to write an infinite float)."""
    json.loads(header_json)  # valid JSON, whatever it means
    header = header_json.encode()
    return struct.pack("<4sBBI", MAGIC, VERSION, int(kind), len(header)) + header + blob


def stream_ended(error) -> bool:
    """The client saw the stream end (a transient failure: it would reconnect), not a refusal."""
    return error is not None and type(error).__name__ == "_Ended"
