"""The coordinator's journal of the session in progress: what a restarted coordinator resumes from.

A session's state on the coordinator is a deterministic function of what it received and when it
closed each round, so the journal records exactly that, in order: the announcement, every message
the session accepted, every round the driver closed, every client it expelled or that refused. A
coordinator restarted on the same journal rebuilds the session by replaying the records and goes
on where it stopped; clients that kept their own state take up the session again
(:class:`secagg.transport.network.Coordinator`), so a round interrupted after its masked inputs
went out still ends in its sum instead of being lost.

Durability: every record is written (and flushed to the OS) before it takes effect; :meth:`sync`
(``fsync``) runs before the coordinator delivers any message a round produced, so nothing a client
has seen from the coordinator is missing from the journal, even after a power cut. A torn last
record (a kill mid-write) is ignored: it was never synced, so nobody saw its effect.

Layout: ``"SGJ1"`` then records ``kind u8 || length u32 || payload`` (little-endian). Nothing is
unpickled; anything else is a :class:`~secagg.errors.ParameterError` naming the file.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from secagg.errors import ParameterError

__all__ = ["SessionJournal", "JournaledSession"]

MAGIC = b"SGJ1"
_FRAME = struct.Struct("<BI")
_CLIENT = struct.Struct("<I")
MAX_RECORD = 1 << 31


class _Record(IntEnum):
    BEGIN = 1  # u32 json length || json {index, session_id, cohort, header} || u32 announcement length || announcement || blob
    RECEIVED = 2  # u32 client || protocol message
    CLOSED = 3  # json {"round": name}
    EXPELLED = 4  # json {"client": id, "reason": text}
    REFUSED = 5  # json {"client": id, "reason": text}
    ENDED = 6  # empty: the task recorded the outcome; nothing to resume


@dataclass
class JournaledSession:
    """A session a journal holds, with everything that happened to it."""

    index: int
    session_id: bytes
    cohort: tuple[int, ...]
    header: dict  # the task's plan header (its round number, ...)
    blob: bytes  # the task's plan blob (the global model of a FedAvg round)
    announcement: bytes  # the SESSION envelope exactly as clients received it
    events: list[tuple[str, object]] = field(default_factory=list)  # ("received", (client, bytes)), ("closed", name), ...
    ended: bool = False


class SessionJournal:
    """Append-only journal of one coordinator's current session at ``path``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None

    # ---------------------------------------------------------------- reading
    def pending(self) -> JournaledSession | None:
        """The session the journal holds if it did not end (to resume), else None."""
        session = self.read()
        return session if session is not None and not session.ended else None

    def read(self) -> JournaledSession | None:
        if not self.path.exists():
            return None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ParameterError(f"cannot read the session journal {self.path}: {exc}") from None
        if not data:
            return None
        if data[:4] != MAGIC:
            raise ParameterError(f"{self.path} is not a secagg session journal")
        session: JournaledSession | None = None
        offset = 4
        while offset < len(data):
            if offset + _FRAME.size > len(data):
                break  # a torn last record: never synced, nobody saw its effect
            kind, length = _FRAME.unpack_from(data, offset)
            start, offset = offset + _FRAME.size, offset + _FRAME.size + length
            if offset > len(data):
                break
            payload = data[start:offset]
            try:
                record = _Record(kind)
                if record is _Record.BEGIN:
                    session = self._begin_record(payload)
                elif session is None:
                    raise ValueError("a record before the session's announcement")
                elif record is _Record.RECEIVED:
                    (client,) = _CLIENT.unpack_from(payload)
                    session.events.append(("received", (client, payload[_CLIENT.size:])))
                elif record is _Record.ENDED:
                    session.ended = True
                else:
                    fields = json.loads(payload)
                    if record is _Record.CLOSED:
                        session.events.append(("closed", str(fields["round"])))
                    else:
                        session.events.append((record.name.lower(), (int(fields["client"]), str(fields["reason"]))))
            except (ValueError, KeyError, TypeError, struct.error) as exc:
                raise ParameterError(f"{self.path}: a damaged journal record at byte {start}: {exc}") from None
        return session

    @staticmethod
    def _begin_record(payload: bytes) -> JournaledSession:
        (length,) = _CLIENT.unpack_from(payload)
        fields = json.loads(payload[4:4 + length])
        rest = payload[4 + length:]
        (announcement_length,) = _CLIENT.unpack_from(rest)
        announcement = rest[4:4 + announcement_length]
        if len(announcement) != announcement_length:
            raise ValueError("truncated announcement")
        session_id = bytes.fromhex(fields["session_id"])
        cohort = tuple(int(c) for c in fields["cohort"])
        return JournaledSession(int(fields["index"]), session_id, cohort, dict(fields["header"]),
                                rest[4 + announcement_length:], announcement)

    # ---------------------------------------------------------------- writing
    def _append(self, record: _Record, payload: bytes) -> None:
        if self._file is None:
            raise ParameterError("the journal has no session: begin() first")
        if len(payload) >= MAX_RECORD:
            raise ParameterError(f"a journal record of {len(payload)} bytes")
        self._file.write(_FRAME.pack(record, len(payload)) + payload)
        self._file.flush()

    def begin(self, index: int, session_id: bytes, cohort, header: dict, blob: bytes, announcement: bytes) -> None:
        """Start a new journal for a new session (the previous one is replaced)."""
        self.close()
        fields = json.dumps({"index": index, "session_id": session_id.hex(), "cohort": list(cohort),
                             "header": header}, sort_keys=True, separators=(",", ":")).encode()
        payload = (_CLIENT.pack(len(fields)) + fields + _CLIENT.pack(len(announcement)) + bytes(announcement)
                   + bytes(blob))
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC + _FRAME.pack(_Record.BEGIN, len(payload)) + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for appends while the session runs

    def resume(self) -> None:
        """Append to the journal of a session being resumed."""
        self.close()
        self._file = open(self.path, "ab")  # noqa: SIM115

    def received(self, client: int, data: bytes) -> None:
        self._append(_Record.RECEIVED, _CLIENT.pack(client) + bytes(data))

    def closed(self, round_name: str) -> None:
        self._append(_Record.CLOSED, json.dumps({"round": round_name}).encode())

    def expelled(self, client: int, reason: str) -> None:
        self._append(_Record.EXPELLED, json.dumps({"client": client, "reason": reason[:500]}).encode())

    def refused(self, client: int, reason: str) -> None:
        self._append(_Record.REFUSED, json.dumps({"client": client, "reason": reason[:700]}).encode())

    def sync(self) -> None:
        """Make everything recorded so far durable (before the coordinator delivers what it produced)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def ended(self) -> None:
        """The task recorded the session's outcome: nothing left to resume."""
        if self._file is not None:
            self._append(_Record.ENDED, b"")
            self.sync()
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
