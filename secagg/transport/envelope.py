"""The network driver's envelope: one canonical framing around protocol messages and control data.

Layout (all integers little-endian)::

    magic "SGNT" (4) || version u8 (1) || kind u8 || header_len u32 || header || blob

``header`` is a UTF-8 JSON object (no NaN/Infinity, at most 64 KiB); ``blob`` is opaque bytes:
a protocol message (``PROTOCOL``) or a float64 little-endian vector (``SESSION``: the global model
of a FedAvg round). Nothing is ever unpickled; :func:`decode_envelope` raises
:class:`~secagg.errors.MalformedMessage` for anything else.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from secagg.encoding import finite_float
from secagg.errors import MalformedMessage, ParameterError

__all__ = ["Kind", "Envelope", "decode_envelope", "MAGIC", "VERSION", "MAX_HEADER_BYTES"]

MAGIC = b"SGNT"
# 2: SESSION announces the session's cohort; HEARTBEAT (both ways) replaces trust in HTTP/2 keepalive;
# RESUME takes a session up again after a broken stream or a coordinator restart
VERSION = 2
MAX_HEADER_BYTES = 64 * 1024
_PREFIX = struct.Struct("<4sBBI")


class Kind(IntEnum):
    HELLO = 1  # client -> coordinator: {"client": id, "task": name}
    SESSION = 2  # coordinator -> client: session id, SecAgg config, task parameters (+ model blob)
    PROTOCOL = 3  # both ways: one canonical secagg protocol message in the blob
    SESSION_END = 4  # coordinator -> client: {"included": bool, "aborted": reason|null, "final": bool}
    ERROR = 5  # coordinator -> client: {"error": type name, "message": text}; the stream then closes
    FINISHED = 6  # coordinator -> client: the job is over, nothing more will come
    DECLINE = 7  # client -> coordinator: {"reason": text}; this client sits the announced session out
    REFUSE = 8  # client -> coordinator: {"error": type name, "message": text}; it refuses the session and leaves
    HEARTBEAT = 9  # both ways, every "interval" seconds: {"interval": s} (coordinator) or {} (client)
    RESUME = 10  # coordinator -> client: {"session_id": hex}; take this session up again (or DECLINE)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    header: dict = field(default_factory=dict)
    blob: bytes = b""

    def encode(self) -> bytes:
        header = json.dumps(self.header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        if len(header) > MAX_HEADER_BYTES:
            raise MalformedMessage(f"envelope header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
        return _PREFIX.pack(MAGIC, VERSION, int(self.kind), len(header)) + header + bytes(self.blob)

    def vector(self) -> np.ndarray:
        """The blob as a float64 vector (SESSION envelopes of FedAvg rounds)."""
        if len(self.blob) % 8:
            raise MalformedMessage(f"vector blob of {len(self.blob)} bytes is not a whole number of float64")
        values = np.frombuffer(self.blob, dtype="<f8").astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise MalformedMessage("vector blob contains NaN or infinity")
        return values


def vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f8").tobytes()


def decode_envelope(data: bytes) -> Envelope:
    """Parse and validate one envelope; :class:`MalformedMessage` for anything that is not one."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"an envelope is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise MalformedMessage(f"envelope of {len(data)} bytes is shorter than its {_PREFIX.size}-byte prefix")
    magic, version, kind, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage("not a secagg network envelope (bad magic)")
    if version != VERSION:
        raise MalformedMessage(f"unsupported envelope version {version} (this side speaks {VERSION})")
    try:
        kind = Kind(kind)
    except ValueError:
        raise MalformedMessage(f"unknown envelope kind {kind}") from None
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(data):
        raise MalformedMessage(f"envelope header length {header_len} exceeds the limit or the message")
    raw_header = data[_PREFIX.size:_PREFIX.size + header_len]
    try:
        header = json.loads(raw_header.decode("utf-8"), parse_constant=_reject_constant) if header_len else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"envelope header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedMessage("envelope header must be a JSON object")
    return Envelope(kind, header, data[_PREFIX.size + header_len:])


def field_of(header: dict, name: str, kind: type | tuple[type, ...], *, optional: bool = False):
    """``header[name]`` checked against ``kind`` (bools are not ints); MalformedMessage otherwise."""
    if name not in header:
        if optional:
            return None
        raise MalformedMessage(f"envelope header lacks {name!r}")
    value = header[name]
    if value is None and optional:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise MalformedMessage(f"envelope field {name!r} must be {'/'.join(k.__name__ for k in kinds)}")
    if not isinstance(value, kinds):
        raise MalformedMessage(f"envelope field {name!r} must be {'/'.join(k.__name__ for k in kinds)}, "
                               f"got {type(value).__name__}")
    return value


def number_of(header: dict, name: str, *, optional: bool = False) -> float | None:
    """``header[name]``, a JSON number, as a finite float; MalformedMessage otherwise.

    JSON numbers have no range: ``1e400`` reads as infinity and a 401-digit integer is a Python
    int that ``float()`` cannot convert (OverflowError, an untyped crash). Both are refused here,
    so a number a peer sent is always one a float can hold."""
    value = field_of(header, name, (int, float), optional=optional)
    if value is None:
        return None
    try:
        return finite_float(f"envelope field {name!r}", value)
    except ParameterError as exc:
        raise MalformedMessage(str(exc)) from None
