"""Replaying transcript vectors against an implementation (see protocols/vectors/README.md)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

ROUNDS = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")


@dataclass
class Transcript:
    data: dict

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def session_id(self) -> bytes:
        return bytes.fromhex(self.data["session_id"])

    def rounds(self) -> list[str]:
        return [r for r in ROUNDS if self.config["malicious"] or r != "consistency_check"]

    def sent(self, round_name: str) -> list[tuple[int, bytes]]:
        """Client-to-server messages of a round, in delivery order."""
        return [(m["from"], bytes.fromhex(m["message"])) for m in self.data["messages"]
                if m["round"] == round_name and "from" in m]

    def received(self, round_name: str) -> dict[int, bytes]:
        """Server-to-client messages that start a round."""
        return {m["to"]: bytes.fromhex(m["message"]) for m in self.data["messages"]
                if m["round"] == round_name and "to" in m}

    def per_client(self) -> dict[int, list[dict]]:
        out = defaultdict(list)
        for m in self.data["messages"]:
            out[m.get("from", m.get("to"))].append(m)
        return out

    def verify_keys(self, impl) -> dict[int, bytes] | None:
        if not self.config["malicious"]:
            return None
        return {int(u): impl.identity_public_key(bytes.fromhex(s)) for u, s in self.data["identity_keys"].items()}

    def new_client(self, impl, u: int):
        seed = self.data["identity_keys"].get(str(u))
        return impl.new_client(self.config, u, self.session_id, [int(v) for v in self.data["inputs"][u]],
                               bytes.fromhex(self.data["client_randomness"][str(u)]),
                               bytes.fromhex(seed) if seed else None, self.verify_keys(impl))


def drive_server(impl, transcript: Transcript, server=None, on_round=None):
    """Run a server through the transcript; returns (server, per-round outboxes, abort error or None)."""
    server = server or impl.new_server(transcript.config, transcript.session_id, transcript.verify_keys(impl))
    outboxes = {}
    rounds = transcript.rounds()
    for index, round_name in enumerate(rounds):
        outbox = {}
        try:
            if on_round is not None:
                on_round(server, round_name)
            for u, data in transcript.sent(round_name):
                outbox = server.receive(u, data) or outbox
            if not outbox and server.outcome() is None:  # still open: its deadline passes
                outbox = server.close_round()
        except Exception as exc:  # noqa: BLE001 - classified by the caller through error_kind
            return server, outboxes, exc
        if index + 1 < len(rounds):
            outboxes[rounds[index + 1]] = outbox
    return server, outboxes, None
