"""A malicious coordinator with corrupt clients, driving honest ClientSessions through the sans-IO API.

The coordinator writes every server-to-client message itself (no ServerSession): it may trim
directories, exclude clients, split survivor lists, replay signatures from an earlier session with
the same session id. Corrupt clients run secagg's client code, but the coalition reads their
secrets (the shares sealed to them, their identity keys). After the session, :meth:`exposed`
says which honest inputs the coalition can compute from what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import SecAggError
from secagg.protocol import derivation as d
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.protocol.messages import (
    ConsistencyRequest,
    KeyDirectory,
    ShareBundles,
    UnmaskRequest,
    decode_message,
)

SID = bytes(range(16))


@dataclass
class Strategy:
    """What the coordinator does differently from the protocol.

    * ``trim``: give the victim a directory with its corrupt holders and only this many honest
      ones; None: no trimming;
    * ``exclude``: clients the coordinator pretends never advertised (to everyone);
    * ``split``: tell half of the honest holders that the victim survived and the other half that
      it dropped, with each half's own signatures (and the coalition's on both lists);
    * ``replay``: signatures to add to every unmask request, e.g. from an earlier session.
    """

    trim: int | None = None
    exclude: frozenset[int] = frozenset()
    split: bool = False
    replay: dict[tuple[int, ...], list[tuple[int, bytes]]] = field(default_factory=dict)


class Coalition:
    def __init__(self, config: SecAggConfig, corrupt: set[int], victim: int, *, seed: int = 0,
                 session_id: bytes = SID) -> None:
        self.config, self.corrupt, self.victim, self.sid = config, set(corrupt), victim, session_id
        n = config.num_clients
        root = TestOnlySeededRandomness(seed)
        self.identities = self.verify_keys = None
        if config.malicious:
            self.identities = [IdentityKey.generate(root.child(b"id%d" % u)) for u in range(n)]
            self.verify_keys = {u: k.public_bytes for u, k in enumerate(self.identities)}
        gen = np.random.default_rng(seed)
        self.inputs = [gen.integers(0, config.ring.modulus, size=config.vector_length, dtype=np.uint64)
                       for _ in range(n)]
        self.clients = {u: ClientSession(config, u, session_id, self.inputs[u], rng=root.child(b"c%d" % u),
                                         identity=self.identities[u] if self.identities else None,
                                         verify_keys=self.verify_keys) for u in range(n)}
        self.refused: dict[int, str] = {}  # honest clients that refused a message, and why
        self.self_mask_holders: dict[int, set[int]] = {u: set() for u in range(n)}  # owner -> holders
        self.mask_key_holders: dict[int, set[int]] = {u: set() for u in range(n)}
        self.signatures: dict[tuple[int, ...], list[tuple[int, bytes]]] = {}  # list -> (signer, sig)
        self.masked: set[int] = set()

    # ------------------------------------------------------------------ helpers

    def _send(self, u: int, message) -> object | None:
        try:
            reply = self.clients[u].handle(message.encode())
        except SecAggError as exc:
            if u not in self.corrupt:
                self.refused[u] = f"{type(exc).__name__}: {exc}"
            return None
        return decode_message(reply) if reply is not None else None

    def holders_of(self, u: int) -> np.ndarray:
        drawn = self.clients[u].drawn_holders
        return drawn if drawn is not None else np.array([v for v in range(self.config.num_clients) if v != u])

    # ------------------------------------------------------------------ the session

    def run(self, strategy: Strategy = Strategy()) -> Coalition:
        cfg, n, v = self.config, self.config.num_clients, self.victim
        adverts = {u: self.clients[u].start() for u in range(n) if u not in strategy.exclude}
        members = sorted(adverts)
        tree = d.TranscriptTree([d.transcript_leaf(adverts[u]) for u in members])
        self.root = tree.root
        entries = {u: decode_message(adverts[u]).entry for u in members}
        share_keys = {}
        self.listed: dict[int, set[int]] = {}
        for i, u in enumerate(members):
            holders = [h for h in self.holders_of(u).tolist() if h in entries]
            owners = [o for o in members if o != u and u in self.holders_of(o).tolist()]
            listed = set(holders) | set(owners) | {u}
            if strategy.trim is not None and u == v:
                corrupt = [h for h in holders if h in self.corrupt]
                honest = [h for h in holders if h not in self.corrupt]
                listed = {u, *corrupt, *honest[:strategy.trim]}
            self.listed[u] = listed
            directory = KeyDirectory(self.sid, u, tuple(entries[w] for w in sorted(listed)), tree.transcript(i))
            reply = self._send(u, directory)
            if reply is not None:
                share_keys[u] = reply
        # route every bundle as sent; each client learns which of its holders got its bundle
        masked = {}
        for r in sorted(share_keys):
            senders = [o for o in sorted(share_keys) if np.any(share_keys[o].peers == r) and o in self.listed[r]]
            table = np.stack([share_keys[o].ciphertexts[list(share_keys[o].peers).index(r)] for o in senders]) \
                if senders else np.zeros((0, share_keys[r].ciphertexts.shape[1]), np.uint8)
            holders = [h for h in share_keys[r].peers.tolist() if h in share_keys]
            reply = self._send(r, ShareBundles(self.sid, r, senders, table, holders))
            if reply is not None:
                masked[r] = reply
        self.masked = set(masked)
        for c in self.corrupt & self.masked:  # the coalition opens every bundle sealed to its members
            held = self.clients[c]
            for owner in held._held_owners.tolist():
                self.self_mask_holders[owner].add(c)
                self.mask_key_holders[owner].add(c)
        survivors = sorted(masked)
        full, without = tuple(survivors), tuple(u for u in survivors if u != v)
        # the split puts half the honest holders of the victim, rounded up (the victim signs the other
        # list itself), and half the other honest clients on the list that says the victim dropped
        honest = [u for u in survivors if u not in self.corrupt and u != v]
        holds_for_v = [u for u in honest if u in self.holders_of(v).tolist() and u in self.listed[v]]
        others = [u for u in honest if u not in holds_for_v]
        told_dropped = set(holds_for_v[::2] + others[::2]) if strategy.split else set()

        def list_for(u: int) -> tuple[int, ...]:
            return without if u in told_dropped else full

        if cfg.malicious:
            for u in survivors:
                if u in self.corrupt:
                    continue
                reply = self._send(u, ConsistencyRequest(self.sid, u, list(list_for(u))))
                if reply is not None:
                    self.signatures.setdefault(list_for(u), []).append((u, reply.signature))
            for survivor_list in {full, without}:
                payload = d.consistency_payload(self.sid, self.root, np.array(survivor_list))
                self.signatures.setdefault(survivor_list, []).extend(
                    (c, self.identities[c].sign(payload)) for c in sorted(self.corrupt) if c in survivor_list)
        for u in survivors:
            if u in self.corrupt:
                continue
            survivor_list = list_for(u)
            signatures = ()
            if cfg.malicious:
                pooled = dict(self.signatures.get(survivor_list, []))
                pooled.update(dict(strategy.replay.get(survivor_list, [])))
                signatures = tuple(sorted(pooled.items()))
            reply = self._send(u, UnmaskRequest(self.sid, u, list(survivor_list), signatures))
            if reply is None:
                continue
            for owner in reply.self_mask_owners.tolist():
                self.self_mask_holders[owner].add(u)
            for owner in reply.mask_key_owners.tolist():
                self.mask_key_holders[owner].add(u)
        return self

    # ------------------------------------------------------------------ what the coalition knows

    def knows_self_mask(self, u: int) -> bool:
        return len(self.self_mask_holders[u]) >= self.config.threshold

    def knows_mask_key(self, u: int) -> bool:
        return u in self.corrupt or len(self.mask_key_holders[u]) >= self.config.threshold

    def exposed(self) -> list[int]:
        """Honest clients whose input the coalition can compute: it knows the self mask and, for
        every partner the client masked with, the pairwise mask (a corrupt partner, or the mask key
        of either end), or it holds both share kinds outright."""
        out = []
        for u in sorted(self.masked - self.corrupt):
            client = self.clients[u]
            partners = np.union1d(client._live_holders, client._mask_owners).tolist()
            both_kinds = self.knows_self_mask(u) and len(self.mask_key_holders[u]) >= self.config.threshold
            masks_known = self.knows_self_mask(u) and all(
                self.knows_mask_key(p) or self.knows_mask_key(u) for p in partners)
            if both_kinds or masks_known:
                out.append(u)
        return out
