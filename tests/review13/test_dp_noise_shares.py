"""Review 13, attack family 2: fewer DP noise shares in a released sum than the calibration counts on.

Claim 16 (docs/security.md): "With DP, no participant helps release a sum of fewer noise shares
than the calibration counts on (min_shares): the threshold is raised to min_shares - 1 where the
graph allows it, and every participant's own session refuses a shorter survivor list".

Where the graph does not allow it (SecAgg+ with fewer neighbours than min_shares - 1) the only
guard is the survivor list's *length*. A participant can check only the survivors that are its
own partners (holders and owners in its key directory); every other id on the list is taken on
trust. A malicious coordinator that excludes clients at round 0 (it may exclude anyone) can name
them on the survivor list anyway: they are nobody's partner, so nobody checks them, and the list
reaches min_shares while the sum it unmasks holds far fewer inputs (and noise shares).

Fixed in two steps. Review 13's fix counted signatures on the list; review 14 showed the
coordinator makes every edge into the summed set one-sided, so every client signs while the sum
holds only the closed set. Now the parameters themselves are checked: the library's own DP session
here is the complete graph at t = min_shares - 1 (`MaskingAggregator.graph_for`), and every
participant refuses a session under which a smaller closed set is likely (`log2_smaller_sum`),
the former SecAgg+ choice (K = 60, t = 33) included.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.crypto.prg import apply_masks
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.shamir import FIELD_PRIME, limbs_to_secrets
from secagg.crypto.signatures import IdentityKey
from secagg.errors import ParameterError, ProtocolViolation, SecAggError
from secagg.protocol import derivation as d
from secagg.protocol.bounds import log2_smaller_sum
from secagg.protocol.config import SecAggConfig
from secagg.protocol.messages import (
    ConsistencyRequest,
    KeyDirectory,
    ShareBundles,
    UnmaskRequest,
    decode_message,
)
from secagg.transport.sessions import MaskingSpec, client_run

pytest.importorskip("dp_accounting")

from secagg.aggregation.masking import MaskingAggregator  # noqa: E402
from secagg.dp import DPConfig  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402
from secagg.fedavg.network import FedAvgClient  # noqa: E402

SID = bytes(range(16))
N = 100  # a cohort of 100 (every client, every round), as in docs/security.md's SecAgg+ example


def dp_job():
    """Client-level DP with a cohort of 100 over the library's own SecAgg+ choice in malicious
    mode: neighbours 60, threshold 33 (choose_graph_parameters), min_shares 90 (10% tolerance)."""
    return FedAvg(NumpyLogisticRegression(13), rounds=2, clients_per_round=N, max_weight=300.0, seed=0,
                  aggregator=MaskingAggregator(neighbors="auto", malicious=True),
                  dp=DPConfig(epsilon=8.0, delta=1e-5, clip=0.5, dropout_tolerance=0.1))


def smallest_closed_set(draws: dict[int, np.ndarray], t: int) -> list[int]:
    """The coordinator's choice after seeing every AdvertiseKeys: a set in which every member keeps
    at least t of the holders it drew (so each one passes its own directory and survivor checks),
    as small as greedy peeling finds (drop the member fewest others drew, prune, repeat)."""
    n = len(draws)
    drew = np.zeros((n, n), dtype=bool)  # drew[u, v]: u drew v as a holder
    for u, holders in draws.items():
        drew[u, holders] = True
    members = np.ones(n, dtype=bool)
    best = np.flatnonzero(members)
    while members.any():
        while True:
            short = members & ((drew & members[None, :]).sum(axis=1) < t)
            if not short.any():
                break
            members &= ~short
        if not members.any():
            break
        if members.sum() < best.size:
            best = np.flatnonzero(members)
        drawn_by = np.where(members, (drew & members[:, None]).sum(axis=0), n + 1)
        members[int(np.argmin(drawn_by))] = False
    return best.tolist()


def lagrange_at_zero(xs: list[int], shares: np.ndarray) -> np.ndarray:
    """The secret's limbs from t shares (x = holder + 1), in Python integers: the coordinator's
    reconstruction, without galois' start-up cost."""
    p = FIELD_PRIME
    out = np.zeros(shares.shape[1], dtype=np.uint32)
    total = [0] * shares.shape[1]
    for i, xi in enumerate(xs):
        num = den = 1
        for j, xj in enumerate(xs):
            if j != i:
                num, den = num * xj % p, den * (xj - xi) % p
        weight = num * pow(den, p - 2, p) % p
        total = [(acc + weight * int(s)) % p for acc, s in zip(total, shares[i])]
    out[:] = total
    return out


@pytest.fixture(scope="module")
def participant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 13))
    return FedAvgClient(dp_job(), 0, X, (X[:, 0] > 0).astype(np.int64), num_clients=N)


def former_session(participant):
    """The session the library chose for this job before review 14: SecAgg+, K = 60, t = 33."""
    own = participant.expected_session().config
    return SecAggConfig(num_clients=N, threshold=33, vector_length=own.vector_length, modulus_bits=own.modulus_bits,
                        neighbors=60, malicious=True, corrupt_clients=5, dropout_fraction=0.1)


def test_the_participants_own_session_leaves_no_smaller_sum(participant):
    config = participant.expected_session().config
    assert config.malicious and not config.is_sparse
    assert (config.threshold, participant.min_sum) == (89, 90)
    assert log2_smaller_sum(N, None, 89, 90, config.threat_model.corrupt_clients) == -math.inf
    participant.policy(N).check(config)


def test_the_former_sparse_session_is_refused_before_round_0(participant):
    weak = former_session(participant)
    assert log2_smaller_sum(N, 60, 33, 90, 5) == 0.0  # a closed set of about 60 exists
    with pytest.raises(ProtocolViolation):  # fewer neighbours than its own, and the smaller-sum bound
        participant.policy(N).check(weak)
    with pytest.raises(ProtocolViolation, match="cannot keep this client's minimum sum"):
        client_run(MaskingSpec(weak, {u: IdentityKey.generate(TestOnlySeededRandomness(u)).public_bytes
                                      for u in range(N)}),
                   0, SID, np.zeros(weak.vector_length, np.uint64),
                   identity=IdentityKey.generate(TestOnlySeededRandomness(0)), min_sum=participant.min_sum)


def pad_the_survivor_list(config, min_sum, *, pad: bool = True):
    """The attack: run every participant's own session (its config, its min_sum); keep a closed
    set R, exclude everybody else at round 0, name everybody on the survivor list (``pad``; else
    R only, the honest list). Returns
    (R, the sum the coordinator unmasked or None, the inputs, the refusals)."""
    t, ring = config.threshold, config.ring
    root = TestOnlySeededRandomness(13)
    identities = [IdentityKey.generate(root.child(b"id%d" % u)) for u in range(N)]
    spec = MaskingSpec(config, {u: k.public_bytes for u, k in enumerate(identities)})
    inputs = [np.random.default_rng(u).integers(0, ring.modulus, config.vector_length, dtype=np.uint64)
              for u in range(N)]
    runs = {u: client_run(spec, u, SID, inputs[u], identity=identities[u], min_sum=min_sum)
            for u in range(N)}
    assert all(run.session.min_survivors == min_sum for run in runs.values())
    adverts = {u: run.start() for u, run in runs.items()}
    draws = {u: runs[u].session.drawn_holders for u in range(N)}
    kept = smallest_closed_set(draws, t)
    tree = d.TranscriptTree([d.transcript_leaf(adverts[u]) for u in kept])
    entries = {u: decode_message(adverts[u]).entry for u in kept}
    refused: dict[int, str] = {}

    def send(u, message):
        try:
            reply = runs[u].handle(message.encode())
        except SecAggError as exc:
            refused.setdefault(u, f"{type(exc).__name__}: {exc}")  # the first refusal says why
            return None
        return decode_message(reply) if reply is not None else None

    listed, share_keys = {}, {}
    for i, u in enumerate(kept):
        partners = {int(h) for h in draws[u] if int(h) in entries} | \
                   {o for o in kept if o != u and u in draws[o].tolist()}
        listed[u] = partners | {u}
        share_keys[u] = send(u, KeyDirectory(SID, u, tuple(entries[w] for w in sorted(listed[u])),
                                             tree.transcript(i)))
    if refused:
        return kept, None, inputs, refused
    masked = {}
    for r in kept:
        senders = [o for o in kept if np.any(share_keys[o].peers == r) and o in listed[r]]
        table = np.stack([share_keys[o].ciphertexts[list(share_keys[o].peers).index(r)] for o in senders])
        masked[r] = send(r, ShareBundles(SID, r, senders, table, share_keys[r].peers.tolist()))
    # the survivor list: R, plus every excluded client (none of them is anyone's partner)
    survivors = list(range(N)) if pad else list(kept)
    signed = {u: send(u, ConsistencyRequest(SID, u, survivors)) for u in kept}
    signatures = tuple(sorted((u, m.signature) for u, m in signed.items() if m is not None))
    revealed = {u: send(u, UnmaskRequest(SID, u, survivors, signatures)) for u in kept}
    rows: dict[int, list[tuple[int, np.ndarray]]] = {u: [] for u in kept}
    for holder, message in revealed.items():
        if message is None:
            continue
        for owner, limbs in zip(message.self_mask_owners.tolist(), message.self_mask_shares):
            rows[owner].append((holder, limbs))
    if any(len(rows[u]) < t for u in kept):
        return kept, None, inputs, refused
    seeds = []  # every self mask of R (no mask key is needed: R's pairwise masks cancel)
    for u in kept:
        limbs = lagrange_at_zero([h + 1 for h, _ in rows[u][:t]], np.stack([s for _, s in rows[u][:t]]))
        seed = limbs_to_secrets(limbs[None, :])[0]
        assert d.self_mask_commitment(SID, u, seed) == share_keys[u].self_mask_commitment
        seeds.append(seed)
    aggregate = ring.sum([masked[u].values for u in kept])
    apply_masks(aggregate, [], seeds, ring)
    return kept, aggregate, inputs, refused


def test_without_the_bound_a_padded_list_releases_the_sum_of_the_closed_set_alone(participant):
    # what the smaller-sum bound prevents: on the former session, with a minimum sum the bound allows
    # (34 = t + 1), the padded list of all 100 unmasks the exact sum of the closed set (about 60)
    weak = former_session(participant)
    kept, released, inputs, refused = pad_the_survivor_list(weak, 34)
    assert 34 <= len(kept) < participant.min_sum and not refused
    assert released is not None and np.array_equal(released, weak.ring.sum([inputs[u] for u in kept]))


# ----------------------------------------------------------------------------- what is left to the coalition

def test_the_bound_on_a_smaller_closed_set():
    from secagg.protocol.bounds import log2_smaller_sum

    # the complete graph: exact. A closed set needs t + 1 - c members, so none is smaller than t + 1
    assert log2_smaller_sum(10, None, 8, 9, 0) == -math.inf
    assert log2_smaller_sum(10, None, 6, 9, 0) == 0.0
    assert log2_smaller_sum(N, None, 89, 90, 5) == -math.inf
    # this module's former SecAgg+ setting: certain
    assert log2_smaller_sum(N, 60, 33, 90, 5) == 0.0
    # a large cohort with a small minimum sum keeps SecAgg+
    assert log2_smaller_sum(1000, 100, 60, 80, 0) < -1000


def test_a_session_under_which_a_smaller_sum_is_likely_is_refused_by_every_layer():
    from secagg.protocol.bounds import log2_smaller_sum
    from secagg.protocol.client import ClientSession
    from secagg.protocol.config import SecAggConfig
    from secagg.transport.network import ClientPolicy

    config = SecAggConfig(num_clients=30, threshold=14, vector_length=4, neighbors=25, malicious=True,
                          corrupt_clients=2, dropout_fraction=0.0)
    identity = IdentityKey.generate(TestOnlySeededRandomness(1))
    keys = {u: identity.public_bytes for u in range(30)}
    with pytest.raises(ParameterError, match="min_survivors 28 cannot be guaranteed"):
        ClientSession(config, 0, SID, np.zeros(4, dtype=np.uint64), identity=identity, verify_keys=keys,
                      min_survivors=28)
    ClientSession(config, 0, SID, np.zeros(4, dtype=np.uint64), identity=identity, verify_keys=keys, min_survivors=15)
    with pytest.raises(ProtocolViolation, match="fewer than this client's 28 inputs"):
        ClientPolicy(num_clients=30, min_threshold=14, min_neighbors=25, min_sum=28).check(config)
    # the aggregator widens an "auto" graph until the split is negligible, and refuses a fixed one
    neighbors, threshold = MaskingAggregator(neighbors="auto", malicious=True, dropout_fraction=0.0).graph_for(30, 28)
    holders = 29 if neighbors is None else neighbors
    assert log2_smaller_sum(30, neighbors, threshold, 28, 2) <= -40 and threshold <= holders
    with pytest.raises(ParameterError, match="raise the threshold to 27"):
        MaskingAggregator(neighbors=25, threshold=14, malicious=True, dropout_fraction=0.0).graph_for(30, 28)
