"""Review 14, attack 1: signers whose masks touch the summed group on their side only.

Claim 16 and DP item 4 (docs/security.md) after review 13: in malicious mode a participant with
``min_sum`` (DP's ``min_shares``) helps unmask only if ``min_sum`` distinct survivors signed the
survivor list; "what is left to the coalition is to sum one of two groups of signers whose masks
never touch (each member keeping t of its holders inside its group plus the c corrupt clients)",
bounded by ``bounds.log2_smaller_sum``.

The model asks too much of the second group. A pairwise mask is added by each endpoint that
counts the other as a partner, and the coordinator decides that per client: a client's partners
are its live holders (``ShareBundles.holders``) and the owners whose bundles it is sent
(``ShareBundles.peers``), among the entries of *its own* key directory. So the coordinator can
make every edge between the summed group A and the other signers one-sided: the other signer
masks with the A member (and may even hold its shares), the A member never hears of the other
signer. The A-sum then carries no mask of an outsider, while every outsider still passes all its
checks and signs the same list (the signed payload is the transcript root and the list; the root
commits to every AdvertiseKeys, not to which entries each client was shown). The only condition
left is on A: each member keeps t of its drawn holders in A (plus corrupt clients), the closed
set review 13 used (about 60 of 100). The second group needs nothing: any ``min_sum`` signers do.

Here no client is corrupt at all (c = 0): the coordinator alone, against what was the
participant's own DP session (n = 100, K = 60, t = 33, min_sum = 90; review 13's bound put it
below 2^-70). Fixed: ``log2_smaller_sum`` now bounds the closed set A alone (certain here), the
library's own DP session is the complete graph at t = 89, and every participant refuses this one
before round 0; the attack below still works where no minimum sum is enforced (the control).
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.crypto.prg import apply_masks
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.shamir import limbs_to_secrets
from secagg.crypto.signatures import IdentityKey
from secagg.errors import ProtocolViolation, SecAggError
from secagg.protocol import derivation as d
from secagg.protocol.bounds import log2_smaller_sum
from secagg.protocol.messages import (
    ConsistencyRequest,
    KeyDirectory,
    ShareBundles,
    UnmaskRequest,
    decode_message,
)
from secagg.transport.sessions import MaskingSpec, client_run

pytest.importorskip("dp_accounting")

from secagg.fedavg.network import FedAvgClient  # noqa: E402
from tests.review13.test_dp_noise_shares import (  # noqa: E402
    dp_job,
    former_session,
    lagrange_at_zero,
    smallest_closed_set,
)

SID = bytes(range(16, 32))
N = 100


@pytest.fixture(scope="module")
def participant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 13))
    return FedAvgClient(dp_job(), 0, X, (X[:, 0] > 0).astype(np.int64), num_clients=N)


def one_sided_split(config, min_sum, *, one_sided: bool = True):
    """Run every participant's own session (its config and min_sum) and play the coordinator.

    A: a closed set of the drawn holders (every member keeps t drawn holders in A). Every A member
    is shown the entries of its partners in A only. Every other client is shown its drawn holders
    (A members included) and its owners outside A: it seals shares to all its holders and masks
    with all of them, A members included, who never mask back. Everybody signs the list of all n.
    ``one_sided=False`` is the control: outsiders are shown their partners outside A only and
    their edges into A are cut (so, as the bound assumes, they need t holders outside A).

    Returns (A, the sum unmasked or None, inputs, refusals, signers)."""
    t, ring = config.threshold, config.ring
    root = TestOnlySeededRandomness(14)
    identities = [IdentityKey.generate(root.child(b"id%d" % u)) for u in range(N)]
    spec = MaskingSpec(config, {u: k.public_bytes for u, k in enumerate(identities)})
    inputs = [np.random.default_rng(1000 + u).integers(0, ring.modulus, config.vector_length, dtype=np.uint64)
              for u in range(N)]
    runs = {u: client_run(spec, u, SID, inputs[u], identity=identities[u], min_sum=min_sum)
            for u in range(N)}
    adverts = {u: run.start() for u, run in runs.items()}
    draws = {u: runs[u].session.drawn_holders for u in range(N)}
    group = smallest_closed_set(draws, t)
    in_a = set(group)
    # one transcript over every AdvertiseKeys: all clients sign the same root
    tree = d.TranscriptTree([d.transcript_leaf(adverts[u]) for u in range(N)])
    entries = {u: decode_message(adverts[u]).entry for u in range(N)}
    refused: dict[int, str] = {}

    def send(u, message):
        try:
            reply = runs[u].handle(message.encode())
        except SecAggError as exc:
            refused.setdefault(u, f"{type(exc).__name__}: {exc}")
            return None
        return decode_message(reply) if reply is not None else None

    def shown(u: int) -> set[int]:
        holders = {int(h) for h in draws[u]}
        owners = {o for o in range(N) if o != u and u in draws[o].tolist()}
        if u in in_a:
            return {w for w in holders | owners if w in in_a}
        if one_sided:
            return holders | {o for o in owners if o not in in_a}
        return {w for w in holders | owners if w not in in_a}

    listed = {u: shown(u) | {u} for u in range(N)}
    share_keys = {u: send(u, KeyDirectory(SID, u, tuple(entries[w] for w in sorted(listed[u])), tree.transcript(u)))
                  for u in range(N)}
    masked = {}
    for r in range(N):
        if share_keys[r] is None:
            continue
        # r's bundles: from the owners r was shown (each sealed to r, since r is in its directory)
        senders = [o for o in sorted(listed[r]) if o != r and share_keys[o] is not None
                   and np.any(share_keys[o].peers == r) and r in draws[o].tolist()]
        table = np.stack([share_keys[o].ciphertexts[list(share_keys[o].peers).index(r)] for o in senders])
        masked[r] = send(r, ShareBundles(SID, r, senders, table, share_keys[r].peers.tolist()))
    survivors = list(range(N))
    signed = {u: send(u, ConsistencyRequest(SID, u, survivors)) for u in masked if masked[u] is not None}
    signatures = tuple(sorted((u, m.signature) for u, m in signed.items() if m is not None))
    revealed = {u: send(u, UnmaskRequest(SID, u, survivors, signatures)) for u in group}
    rows: dict[int, list[tuple[int, np.ndarray]]] = {u: [] for u in group}
    for holder, message in revealed.items():
        if message is None:
            continue
        for owner, limbs in zip(message.self_mask_owners.tolist(), message.self_mask_shares):
            if owner in rows:
                rows[owner].append((holder, limbs))
    if any(len(rows[u]) < t for u in group) or any(masked.get(u) is None for u in group):
        return group, None, inputs, refused, len(signatures)
    seeds = []
    for u in group:
        limbs = lagrange_at_zero([h + 1 for h, _ in rows[u][:t]], np.stack([s for _, s in rows[u][:t]]))
        seed = limbs_to_secrets(limbs[None, :])[0]
        assert d.self_mask_commitment(SID, u, seed) == share_keys[u].self_mask_commitment
        seeds.append(seed)
    aggregate = ring.sum([masked[u].values for u in group])
    apply_masks(aggregate, [], seeds, ring)
    return group, aggregate, inputs, refused, len(signatures)


def test_the_bound_calls_this_session_unsafe_and_every_participant_refuses_it(participant):
    weak = former_session(participant)
    assert log2_smaller_sum(N, 60, 33, 90, 0) == 0.0  # the coordinator alone finds a closed set of ~57
    with pytest.raises(ProtocolViolation):
        participant.policy(N).check(weak)
    with pytest.raises(ProtocolViolation, match="cannot keep this client's minimum sum"):
        one_sided_split(weak, participant.min_sum)


def test_one_sided_edges_release_the_closed_set_alone_where_no_minimum_sum_is_enforced(participant):
    # the attack's mechanism, on the same session without a minimum sum: every client signs, the
    # coordinator unmasks the closed set alone (the reason the minimum sum is a bound on parameters)
    weak = former_session(participant)
    group, released, inputs, refused, signers = one_sided_split(weak, 1)
    assert len(group) < participant.min_sum and signers == N and not refused
    assert released is not None and np.array_equal(released, weak.ring.sum([inputs[u] for u in group]))


def test_control_cutting_both_sides_leaves_the_outsiders_too_few_holders(participant):
    # cutting the outsiders' edges into A on both sides: they keep fewer than t holders and refuse
    weak = former_session(participant)
    group, released, _, refused, signers = one_sided_split(weak, 1, one_sided=False)
    assert signers < N and refused
