"""Replaying transcript vectors against an implementation (protocols/vectors/README.md)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

ROUNDS = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
HEADER_BYTES = 26


@dataclass
class Transcript:
    data: dict

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def session_id(self) -> bytes:
        return bytes.fromhex(self.data["session_id"])

    @property
    def messages(self) -> list[dict]:
        return self.data["messages"]

    def rounds(self) -> list[str]:
        return [r for r in ROUNDS if self.config["malicious"] or r != "consistency_check"]

    def next_round(self, round_name: str) -> str | None:
        rounds = self.rounds()
        i = rounds.index(round_name)
        return rounds[i + 1] if i + 1 < len(rounds) else None

    def sent(self, round_name: str) -> list[tuple[int, bytes]]:
        """Client-to-server messages of a round, in delivery order."""
        return [(m["from"], bytes.fromhex(m["message"])) for m in self.messages
                if m["round"] == round_name and "from" in m]

    def received(self, round_name: str | None) -> dict[int, bytes]:
        """Server-to-client messages that start a round (not abort notices)."""
        return {m["to"]: bytes.fromhex(m["message"]) for m in self.messages
                if m["round"] == round_name and "to" in m and not m.get("abort_notice")}

    def notices(self) -> dict[int, bytes]:
        return {m["to"]: bytes.fromhex(m["message"]) for m in self.messages if m.get("abort_notice")}

    def driver_closes(self, round_name: str) -> bool:
        """True when the driver closes the round (some expected client never answered)."""
        return any(m.get("driver") == "close_round" and m["round"] == round_name for m in self.messages)

    def per_client(self) -> dict[int, list[dict]]:
        out = defaultdict(list)
        for m in self.messages:
            if "from" in m or "to" in m:
                out[m.get("from", m.get("to"))].append(m)
        return out

    def started(self, u: int) -> bool:
        return any(m["round"] == "advertise_keys" and m.get("from") == u for m in self.messages)

    def verify_keys(self, impl) -> dict[int, bytes] | None:
        if not self.config["malicious"]:
            return None
        return {int(u): impl.identity_public_key(bytes.fromhex(s)) for u, s in self.data["identity_keys"].items()}

    def new_client(self, impl, u: int):
        seed = self.data["identity_keys"].get(str(u))
        return impl.new_client(self.config, u, self.session_id, [int(v) for v in self.data["inputs"][u]],
                               bytes.fromhex(self.data["client_randomness"][str(u)]),
                               bytes.fromhex(seed) if seed else None, self.verify_keys(impl))


def is_abort_notice(data: bytes, expected: bytes) -> bool:
    """``data`` is an AbortNotice with ``expected``'s header; its reason (free text) may differ."""
    if data[:HEADER_BYTES] != expected[:HEADER_BYTES] or len(data) < HEADER_BYTES + 2:
        return False
    length = int.from_bytes(data[HEADER_BYTES:HEADER_BYTES + 2], "little")
    if length > 1024 or len(data) != HEADER_BYTES + 2 + length:
        return False
    try:
        data[HEADER_BYTES + 2:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def same_notices(got: dict[int, bytes], expected: dict[int, bytes]) -> bool:
    return sorted(got) == sorted(expected) and all(is_abort_notice(got[u], expected[u]) for u in expected)


@dataclass
class ServerRun:
    server: object
    error: BaseException | None = None
    abort_round: str | None = None
    checked_rounds: list[str] = field(default_factory=list)


def drive_server(impl, transcript: Transcript, inject=None) -> ServerRun:
    """Run a server through the transcript, checking every message it emits as it goes.

    A round must close by itself exactly when the transcript has no driver ``close_round`` for it:
    the receive of its last message returns the next round's messages (all of them, byte for
    byte), every earlier receive returns nothing. ``inject(server, round, delivered)`` runs before
    each client message and driver action (``delivered``: the round's messages handed over so
    far). An error from the implementation ends the run (``error``); an abort is then checked
    against the transcript's notices by the caller.
    """
    server = impl.new_server(transcript.config, transcript.session_id, transcript.verify_keys(impl))
    run = ServerRun(server)
    delivered: dict[str, int] = defaultdict(int)
    last_from = {r: max((i for i, m in enumerate(transcript.messages) if m["round"] == r and "from" in m),
                        default=None) for r in transcript.rounds()}
    for i, m in enumerate(transcript.messages):
        if "from" not in m and "driver" not in m:
            continue
        round_name = m["round"]
        if inject is not None:
            inject(server, round_name, delivered[round_name])
        try:
            if "from" in m:
                outbox = server.receive(m["from"], bytes.fromhex(m["message"]))
                delivered[round_name] += 1
                closes_here = i == last_from[round_name] and not transcript.driver_closes(round_name)
            elif m["driver"] == "close_round":
                outbox, closes_here = server.close_round(), True
            else:
                outbox = server.abort(m["reason"])
                assert same_notices(outbox, transcript.notices()), "abort notices from the driver's abort"
                run.abort_round = round_name
                return run
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified by the caller through error_kind
            run.error = exc
            run.abort_round = round_name
            return run
        if closes_here:
            following = transcript.next_round(round_name)
            assert outbox == transcript.received(following), \
                f"the messages starting {following or 'the end'} (after {round_name} closed)"
            run.checked_rounds.append(round_name)
        else:
            assert outbox == {}, f"round {round_name} closed before its last expected message or the driver"
    return run


def check_server_outcome(impl, transcript: Transcript, run: ServerRun) -> None:
    """The run ends as the transcript does: same aborted round and notices, or same result."""
    outcome = transcript.data["outcome"]
    if "abort_round" in outcome:
        assert run.abort_round == outcome["abort_round"], (run.abort_round, run.error)
        if run.error is not None:
            assert impl.error_kind(run.error) == "abort", repr(run.error)
            assert getattr(run.error, "round", None) in (None, outcome["abort_round"])
            assert same_notices(run.server.abort_notices(), transcript.notices()), "abort notices"
        return
    assert run.error is None, repr(run.error)
    survivors, aggregate = run.server.outcome()
    assert survivors == outcome["survivors"]
    assert [str(v) for v in aggregate] == outcome["aggregate"]
    reports, misbehaving = run.server.flagged()
    assert [list(r) for r in reports] == outcome["reports"] and list(misbehaving) == outcome["misbehaving"]


def replay_client(impl, transcript: Transcript, u: int) -> None:
    """Client u fed every server message of the transcript replies byte for byte."""
    client = transcript.new_client(impl, u)
    entries = transcript.per_client()[u]
    pending = None
    for entry in entries:
        data = bytes.fromhex(entry["message"])
        if entry.get("abort_notice"):
            try:
                client.handle(data)
            except Exception as exc:  # noqa: BLE001
                assert impl.error_kind(exc) == "abort", f"client {u}: {exc!r} for an AbortNotice"
                continue
            raise AssertionError(f"client {u} takes an AbortNotice without stopping")
        if "to" in entry:
            pending = data
            continue
        reply = client.start() if entry["round"] == "advertise_keys" else client.handle(pending)
        if "tampered" in entry:  # the cheater's message is not what an honest client sends
            assert reply != data, f"client {u}, round {entry['round']}: tampering changed nothing"
            continue
        assert reply == data, f"client {u}, round {entry['round']}"


def advance(impl, transcript: Transcript, u: int, round_name: str, at: str):
    """A client fed the transcript up to the server's message of ``round_name`` (``at="before"``)
    or through everything it handles in that round (``at="after"``); returns (client, that
    message, the client's recorded reply to it or None)."""
    client = transcript.new_client(impl, u)
    pending = None
    entries = transcript.per_client()[u]
    for i, e in enumerate(entries):
        data = bytes.fromhex(e["message"])
        if e["round"] == round_name and "to" in e and at == "before":
            replies = [bytes.fromhex(x["message"]) for x in entries[i + 1:] if x["round"] == round_name and "from" in x]
            return client, data, (replies[0] if replies else None)
        if e.get("abort_notice"):
            try:
                client.handle(data)
            except Exception as exc:  # noqa: BLE001
                assert impl.error_kind(exc) == "abort", repr(exc)
        elif "to" in e:
            pending = data
        else:
            reply = client.start() if e["round"] == "advertise_keys" else client.handle(pending)
            assert "tampered" in e or reply == data, f"client {u}, round {e['round']}"
        last_of_round = i + 1 == len(entries) or entries[i + 1]["round"] != round_name
        if at == "after" and e["round"] == round_name and last_of_round:
            return client, pending, None
    raise AssertionError(f"client {u} never reaches {round_name} ({at})")
