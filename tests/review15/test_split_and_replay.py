"""Review 15: the malicious coordinator (with c corrupt clients) against the consistency check.

Attack 1, the Bonawitz split: two survivor lists, S1 naming the honest target 0 and S2 omitting
it, each signed by a different subset of clients (rules C25-C28), so that some holders reveal
the target's self-mask share and others its mask-key share. With both secrets the coordinator
unmasks the target's input alone. Each honest holder answers one UnmaskRequest (C2) and reveals
one kind per owner (C30), so the coordinator gets at most ``c + |A|`` shares of one kind and
``c + |B|`` of the other with ``|A| + |B| <= h - c``: the split needs ``2t <= h + c``, which
``SecAggConfig`` refuses in malicious mode. In the complete graph the signatures ask even more:
a revealer of S1 needs ``t - c`` honest co-signers besides itself.

Attack 2, dropouts between the check and the unmasking (signed then vanished; on the list but
never signed). Attack 3, replaying an UnmaskRequest or a ConsistencyRequest after the reveal.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.crypto.keys import AgreementKey
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.shamir import limbs_to_secrets, reconstruct
from secagg.crypto.signatures import IdentityKey
from secagg.errors import ParameterError, ProtocolViolation, SecAggError
from secagg.protocol import derivation as d
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import choose_graph_parameters
from secagg.protocol.messages import ConsistencyRequest, UnmaskRequest, decode_message
from secagg.protocol.server import ServerSession

SID = bytes(range(40, 56))
TARGET = 0


class Run:
    """Every client's own session, the real server for rounds 0-2 (it has nothing to cheat on
    there for this attack), then the coordinator plays rounds 3-4 by hand."""

    def __init__(self, config: SecAggConfig, corrupt: set[int], seed: int = 15) -> None:
        n = config.num_clients
        root = TestOnlySeededRandomness(seed)
        ids = [IdentityKey.generate(root.child(b"id%d" % u)) for u in range(n)]
        keys = {u: k.public_bytes for u, k in enumerate(ids)}
        self.config, self.corrupt, self.n, self.ids = config, corrupt, n, ids
        self.share_keys: dict[int, object] = {}
        self.inputs = [np.random.default_rng(500 + u).integers(0, 2 ** config.modulus_bits, config.vector_length,
                                                                 dtype=np.uint64) for u in range(n)]
        self.clients = {u: ClientSession(config, u, SID, self.inputs[u], rng=root.child(b"c%d" % u),
                                         identity=ids[u], verify_keys=keys) for u in range(n)}
        self.server = ServerSession(config, SID, verify_keys=keys)
        self.refused: dict[int, str] = {}
        outbox = {}
        for u, c in self.clients.items():
            outbox = self.server.receive(u, c.start()) or outbox
        for _ in range(2):  # rounds 1 and 2, everybody answers
            nxt = {}
            for u, data in outbox.items():
                reply = self.clients[u].handle(data)
                if not self.share_keys.get(u):
                    self.share_keys[u] = decode_message(reply)
                nxt = self.server.receive(u, reply) or nxt
            outbox = nxt
        self.consistency_requests = outbox  # the honest server's round 3

    def send(self, u: int, message) -> object | None:
        try:
            reply = self.clients[u].handle(message.encode())
        except SecAggError as exc:
            self.refused.setdefault(u, f"{type(exc).__name__}: {exc}")
            return None
        return decode_message(reply) if reply is not None else None

    def split(self, groups: dict[int, list[int]]):
        """groups: client -> survivor list it is asked to sign. Every client whose list has t
        signatures from its holders is sent the UnmaskRequest for it. Returns the shares of the
        target the coalition ends with: {"self_mask": {holder: limbs}, "mask_key": {...}}."""
        signed = {u: self.send(u, ConsistencyRequest(SID, u, s)) for u, s in groups.items()}
        by_list: dict[tuple, list] = {}
        for u, m in signed.items():
            if m is not None:
                by_list.setdefault(tuple(groups[u]), []).append((u, m.signature))
        root = self.clients[min(groups)]._transcript_root
        for c in self.corrupt:  # a corrupt client signs every list
            for lst, sigs in by_list.items():
                if c not in dict(sigs):
                    sigs.append((c, self.ids[c].sign(d.consistency_payload(SID, root, np.array(lst)))))
        got: dict[str, dict[int, np.ndarray]] = {"self_mask": {}, "mask_key": {}}
        for u in sorted(groups):
            if u in self.corrupt or signed[u] is None:
                continue
            lst = tuple(groups[u])
            sigs = tuple(sorted(by_list[lst]))
            reply = self.send(u, UnmaskRequest(SID, u, list(lst), sigs))
            if reply is None:
                continue
            for kind, owners, shares in (("self_mask", reply.self_mask_owners, reply.self_mask_shares),
                                         ("mask_key", reply.mask_key_owners, reply.mask_key_shares)):
                for o, s in zip(owners.tolist(), shares):
                    if o == TARGET:
                        got[kind][u] = s
        for c in self.corrupt:  # a corrupt holder hands over both kinds
            held = self.clients[c]
            for o, limbs in zip(held._held_owners.tolist(), held._held_shares):
                if o == TARGET:
                    got["self_mask"][c], got["mask_key"][c] = limbs[0], limbs[1]
        return got

    def recover(self, shares: dict[int, np.ndarray]) -> bytes:
        holders = sorted(shares)[: self.config.threshold]
        limbs = reconstruct(np.array([[h + 1 for h in holders]]), np.stack([shares[h] for h in holders])[None])
        return limbs_to_secrets(limbs)[0]


def best_split(n: int, t: int, corrupt: set[int]):
    """The balanced split: the honest clients other than the target in two halves A, B. A (and
    the target) sign S1 = everybody; B signs S2 = everybody but the target; the corrupt sign
    both (``Run.split`` adds their signature to every list)."""
    honest = [u for u in range(n) if u not in corrupt and u != TARGET]
    a, b = honest[: (len(honest) + 1) // 2], honest[(len(honest) + 1) // 2:]
    s1, s2 = list(range(n)), [u for u in range(n) if u != TARGET]
    groups = {u: s1 for u in [TARGET, *a]} | {u: s2 for u in b} | {c: s1 for c in corrupt}
    return groups, a, b


# ---------------------------------------------------------------- attack 1: the split

def test_library_parameters_put_the_split_out_of_reach_by_counting():
    # complete graph and SecAgg+ from choose_graph_parameters: each honest holder reveals one kind,
    # so a split needs 2(t - c') <= h - c' with c' corrupt holders of the target; 2t > h + c
    # (complete graph) or P[c' >= 2t - K] tiny (SecAgg+) rules it out
    for n in (9, 20, 100):
        p = choose_graph_parameters(n, 0.1, 0.1, malicious=True)
        c = -(-n // 10)
        h = n - 1 if p.neighbors is None else p.neighbors
        assert p.neighbors is None and 2 * p.threshold > h + c
    p = choose_graph_parameters(200, 0.1, 0.1, malicious=True)
    assert p.neighbors is not None
    c = 20
    rng = np.random.default_rng(3)
    for _ in range(200):  # a random target's draw of K holders among 199 with 20 corrupt
        c_target = int(np.isin(rng.choice(199, p.neighbors, replace=False), np.arange(c)).sum())
        assert 2 * (p.threshold - c_target) > p.neighbors - c_target
    # and the config refuses the threshold the split needs
    with pytest.raises(ParameterError):
        SecAggConfig(num_clients=9, threshold=4, vector_length=3, malicious=True, corrupt_clients=1)


def _split_outcome(config: SecAggConfig, corrupt: set[int]):
    run = Run(config, corrupt)
    assert set(run.consistency_requests) == set(range(config.num_clients))  # honest rounds 0-2
    groups, a, b = best_split(config.num_clients, config.threshold, corrupt)
    got = run.split(groups)
    return run, got, a, b


def test_split_fails_with_library_parameters_complete_graph():
    n, c = 9, 1
    p = choose_graph_parameters(n, 0.1, c / n, malicious=True)
    config = SecAggConfig(num_clients=n, threshold=p.threshold, vector_length=3, malicious=True,
                          corrupt_clients=c, dropout_fraction=0.1)
    run, got, a, b = _split_outcome(config, {n - 1})
    t = config.threshold
    assert not (len(got["self_mask"]) >= t and len(got["mask_key"]) >= t)
    # what stopped it: rule C28 (a revealer has t - c honest co-signers on neither list)
    assert all("signed the survivor list" in run.refused[u] for u in a + b)


def test_control_split_succeeds_where_2t_le_h_plus_c():
    # the same split against a threshold the library refuses (2t = h + c): both secrets of the
    # honest target leave, so its input is exposed; this is what the bound buys
    n, c = 9, 1
    config = SecAggConfig(num_clients=n, threshold=3, vector_length=3, malicious=True,
                          unsafe_skip_bounds=True)
    run, got, a, b = _split_outcome(config, {n - 1})
    assert len(got["self_mask"]) >= 3 and len(got["mask_key"]) >= 3
    seed, key = run.recover(got["self_mask"]), run.recover(got["mask_key"])
    # the target's own commitment and advertised mask key: both secrets are the target's
    assert d.self_mask_commitment(SID, TARGET, seed) == run.share_keys[TARGET].self_mask_commitment
    advertised = run.clients[TARGET]._advertised
    assert AgreementKey.from_private_bytes(key).public_bytes == advertised.mask_public_key


# ---------------------------------------------------------------- attack 3: replays

def _revealed_run():
    n = 9
    p = choose_graph_parameters(n, 0.1, 1 / n, malicious=True)
    config = SecAggConfig(num_clients=n, threshold=p.threshold, vector_length=3, malicious=True,
                          corrupt_clients=1, dropout_fraction=0.1)
    run = Run(config, set())
    everyone = list(range(n))
    sigs = tuple(sorted((u, run.send(u, ConsistencyRequest(SID, u, everyone)).signature) for u in everyone))
    first = run.send(1, UnmaskRequest(SID, 1, everyone, sigs))
    assert first is not None and 1 not in run.refused
    return run, everyone, sigs


def test_replayed_unmask_request_after_reveal_is_refused():
    run, everyone, sigs = _revealed_run()
    without_target = [u for u in everyone if u != TARGET]
    for message in (UnmaskRequest(SID, 1, everyone, sigs),  # verbatim replay
                    UnmaskRequest(SID, 1, without_target, tuple(s for s in sigs if s[0] != TARGET))):
        with pytest.raises(ProtocolViolation, match="unexpected UnmaskRequest"):
            run.clients[1].handle(message.encode())


def test_second_consistency_request_is_refused_before_and_after_reveal():
    run, everyone, sigs = _revealed_run()
    without_target = [u for u in everyone if u != TARGET]
    with pytest.raises(ProtocolViolation, match="unexpected ConsistencyRequest"):
        run.clients[1].handle(ConsistencyRequest(SID, 1, without_target).encode())
    # a client that signed but has not revealed yet cannot be made to sign a second list either
    with pytest.raises(ProtocolViolation, match="unexpected ConsistencyRequest"):
        run.clients[2].handle(ConsistencyRequest(SID, 2, without_target).encode())


# ---------------------------------------------------------------- attack 2: dropouts after the check

def test_on_the_list_but_never_signed_and_signed_then_vanished():
    # n = 12, t = 8 (the library's choice for c = 1, d = 1): client 11 is on the list but never signs, client 10
    # signs and then vanishes. The honest run still finishes with the sum over all 12 survivors
    # (11's input is in the sum, so its self-mask is what must be revealed), and no holder
    # reveals a mask-key share of anyone: nothing of a survivor's mask key leaves.
    n = 12
    p = choose_graph_parameters(n, 0.1, 1 / n, malicious=True)
    config = SecAggConfig(num_clients=n, threshold=p.threshold, vector_length=3, malicious=True,
                          corrupt_clients=1, dropout_fraction=0.1)
    run = Run(config, set())
    outbox = {}
    for u, data in run.consistency_requests.items():
        if u != 11:
            outbox = run.server.receive(u, run.clients[u].handle(data)) or outbox
    outbox = run.server.close_round()
    assert set(outbox) == set(range(11))
    for u, data in outbox.items():
        if u != 10:
            reply = run.clients[u].handle(data)
            assert not decode_message(reply).mask_key_owners.size
            run.server.receive(u, reply)
    run.server.close_round()
    result = run.server.result
    assert result is not None and result.survivors == list(range(n))
    ring = config.ring
    assert np.array_equal(result.aggregate, ring.sum(run.inputs))
