"""Drive a ClientSession set and a ServerSession round by round, with every message visible.

Tests use it to stop a session at any round and tamper with, replay or drop messages.
"""

from __future__ import annotations

import numpy as np

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.protocol.server import ServerSession, ServerState

SESSION = bytes(range(16))


class Harness:
    def __init__(self, n=5, t=3, m=8, bits=32, neighbors=None, malicious=False, seed=1, session_id=SESSION,
                 **config):
        self.config = SecAggConfig(num_clients=n, threshold=t, vector_length=m, modulus_bits=bits,
                                   neighbors=neighbors, malicious=malicious, **config)
        self.session_id = session_id
        root = TestOnlySeededRandomness(seed)
        gen = np.random.default_rng(seed)
        ring = self.config.ring
        self.inputs = [gen.integers(0, ring.modulus, size=m, dtype=np.uint64) if bits < 64
                       else gen.integers(0, 2**64, size=m, dtype=np.uint64) for _ in range(n)]
        self.identities = self.verify_keys = None
        if malicious:
            self.identities = [IdentityKey.generate(root.child(b"id%d" % u)) for u in range(n)]
            self.verify_keys = {u: k.public_bytes for u, k in enumerate(self.identities)}
        self.server = ServerSession(self.config, session_id, verify_keys=self.verify_keys)
        self.clients = [ClientSession(self.config, u, session_id, self.inputs[u], rng=root.child(b"c%d" % u),
                                      identity=self.identities[u] if malicious else None,
                                      verify_keys=self.verify_keys) for u in range(n)]
        self.inbox: dict[int, bytes] = {}
        self.last_replies: dict[int, bytes] = {}

    def start(self, skip=()):
        """Round 0: clients not in ``skip`` advertise keys; returns the server's next messages."""
        self.last_replies = {u: c.start() for u, c in enumerate(self.clients) if u not in skip}
        return self._deliver_to_server()

    def step(self, skip=()):
        """Hand every pending server message to its client and the replies to the server."""
        self.last_replies = {}
        for u, data in sorted(self.inbox.items()):
            if u in skip:
                continue
            reply = self.clients[u].handle(data)
            if reply is not None:
                self.last_replies[u] = reply
        return self._deliver_to_server()

    def _deliver_to_server(self):
        outbox = {}
        state = self.server.state
        for u, reply in sorted(self.last_replies.items()):
            out = self.server.receive(u, reply)
            if out:
                outbox = out
        if self.server.state is state:
            outbox = self.server.close_round()
        self.inbox = outbox
        return outbox

    def run(self, drops=None):
        """Run to the end; ``drops`` maps a round name to clients that vanish before sending it."""
        drops = drops or {}
        self.start(skip=drops.get("advertise_keys", ()))
        while self.server.state not in (ServerState.COMPLETED, ServerState.ABORTED):
            self.step(skip=drops.get(self.server.state.value, ()))
        return self.server.result

    def run_until(self, state):
        """Advance until the server is in ``state`` (a ServerState) with its requests in ``inbox``."""
        if self.server.state is ServerState.ADVERTISE_KEYS and not self.inbox:
            self.start()
        while self.server.state is not state:
            self.step()
        return self.inbox

    def expected_sum(self, survivors):
        ring = self.config.ring
        return ring.sum([ring.element(self.inputs[u]) for u in survivors])
