"""The coordinator's session journal: what it records, what it replays, what it refuses."""

from __future__ import annotations

import pytest

from secagg.errors import ParameterError
from secagg.transport.journal import SessionJournal


def test_a_journal_round_trips_the_session_and_its_events(tmp_path):
    journal = SessionJournal(tmp_path / "s.journal")
    assert journal.pending() is None
    journal.begin(3, bytes(range(16)), (0, 2, 5), {"round": 7, "task": "fedavg"}, b"model", b"announcement")
    journal.received(2, b"first message")
    journal.closed("advertise_keys")
    journal.expelled(5, "MalformedMessage: garbage")
    journal.refused(0, "ProtocolViolation: another model")
    journal.sync()
    session = SessionJournal(tmp_path / "s.journal").pending()
    assert (session.index, session.session_id, session.cohort) == (3, bytes(range(16)), (0, 2, 5))
    assert (session.header, session.blob, session.announcement) == ({"round": 7, "task": "fedavg"}, b"model",
                                                                     b"announcement")
    assert session.events == [("received", (2, b"first message")), ("closed", "advertise_keys"),
                              ("expelled", (5, "MalformedMessage: garbage")),
                              ("refused", (0, "ProtocolViolation: another model"))]
    journal.ended()
    assert SessionJournal(tmp_path / "s.journal").pending() is None  # recorded: nothing to resume
    journal.begin(4, bytes(16), (0, 1), {"round": 8}, b"", b"a")  # a new session replaces the old one
    assert SessionJournal(tmp_path / "s.journal").pending().events == []


def test_a_torn_last_record_is_ignored_and_damage_is_a_typed_error(tmp_path):
    path = tmp_path / "s.journal"
    journal = SessionJournal(path)
    journal.begin(0, bytes(16), (0, 1), {}, b"", b"a")
    journal.received(1, b"x" * 100)
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # killed mid-write: never synced, nobody saw its effect
    assert SessionJournal(path).pending().events == []
    path.write_bytes(whole[:-109] + b"\x63" + whole[-108:])  # an unknown record kind (the last frame: 109 bytes)
    with pytest.raises(ParameterError, match="damaged journal record"):
        SessionJournal(path).pending()
    path.write_bytes(b"NOPE" + whole[4:])
    with pytest.raises(ParameterError, match="not a secagg session journal"):
        SessionJournal(path).pending()
    begin_length = 5 + int.from_bytes(whole[5:9], "little")
    path.write_bytes(whole[:4] + whole[4 + begin_length:])  # events before any announcement
    with pytest.raises(ParameterError, match="before the session's announcement"):
        SessionJournal(path).pending()
