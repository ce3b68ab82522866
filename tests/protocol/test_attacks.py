"""The attacks of issue 12, played by a malicious coordinator with corrupt clients (tests/protocol/adversary.py).

Each attack recovered an honest client's exact input from protocol version 1 under parameters it
accepted (reproduced on that code; numbers in docs/security.md). Here each one fails: the
parameters it needs are refused by SecAggConfig naming the bound, and at every accepted parameter
set the coalition ends up unable to compute any honest input. Where a test skips the bounds on
purpose (``unsafe_skip_bounds``), it is to show that the same attack does succeed there, so the
check in ``Coalition.exposed`` can fail.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.errors import ParameterError
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import HolderGraph, choose_graph_parameters, draw_holders
from tests.protocol.adversary import Coalition, Strategy

pytestmark = pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")


def unsafe(**kwargs) -> SecAggConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SecAggConfig(vector_length=3, unsafe_skip_bounds=True, **kwargs)


# ---------------------------------------------------------------- 1. trimmed directory

@pytest.mark.parametrize("n, t", [(11, 6), (10, 4), (10, 6), (20, 11)])
@pytest.mark.parametrize("malicious", [False, True])
def test_a_directory_trimmed_to_the_victim_and_t_minus_1_colluders_is_refused(n, t, malicious):
    # Version 1 counted the victim as one of its own holders, so victim + t - 1 colluders passed.
    cfg = unsafe(num_clients=n, threshold=t, malicious=malicious)
    coalition = Coalition(cfg, corrupt=set(range(1, t)), victim=0).run(Strategy(trim=0))
    assert "only" in coalition.refused.get(0, "") and "holders advertised keys" in coalition.refused[0]
    assert coalition.exposed() == []


@pytest.mark.parametrize("n, t", [(11, 6), (10, 4), (10, 6), (20, 11)])
def test_trimming_with_colluders_is_bounded_by_the_malicious_threshold_rule(n, t):
    # With one honest holder more, the trimmed directory passes the victim's check; what then keeps
    # the victim safe is 2t > (n - 1) + c. Its t - 1 colluders are more than any accepted
    # malicious configuration with this t tolerates...
    with pytest.raises(ParameterError):
        SecAggConfig(num_clients=n, threshold=t, vector_length=3, malicious=True, corrupt_clients=t - 1)
    # ... and with the bounds skipped the coordinator indeed gets the input (two honest holders,
    # split between the two share kinds, plus the colluders, reach t twice)
    cfg = unsafe(num_clients=n, threshold=t, malicious=True)
    coalition = Coalition(cfg, corrupt=set(range(1, t)), victim=0).run(Strategy(trim=2, split=True))
    assert coalition.exposed() == [0]


def test_honest_but_curious_mode_does_not_claim_to_resist_a_lying_coordinator():
    # Documented (docs/security.md): without signatures a coordinator that splits survivor lists
    # gets both share kinds from two honest holders. The malicious mode is the answer.
    cfg = SecAggConfig(num_clients=11, threshold=6, vector_length=3, corrupt_clients=5)
    honest_run = Coalition(cfg, corrupt=set(range(1, 6)), victim=0).run(Strategy())
    assert honest_run.exposed() == []  # following the protocol, 5 < t colluders learn nothing
    lying = Coalition(cfg, corrupt=set(range(1, 6)), victim=0).run(Strategy(trim=2, split=True))
    assert lying.exposed() == [0]


# ---------------------------------------------------------------- 2. split survivor lists

@pytest.mark.parametrize("n, t", [(10, 4), (100, 2), (100, 1), (10, 5)])
def test_malicious_mode_refuses_the_thresholds_a_split_defeats(n, t):
    if 2 * t > n - 1:
        SecAggConfig(num_clients=n, threshold=t, vector_length=3, malicious=True)  # accepted: c = 0
        return
    with pytest.raises(ParameterError, match=r"2t > \(n - 1\) \+ c"):
        SecAggConfig(num_clients=n, threshold=t, vector_length=3, malicious=True)


def test_a_split_succeeds_below_the_bound_and_fails_at_it():
    below = Coalition(unsafe(num_clients=10, threshold=4, malicious=True), corrupt=set(), victim=0)
    assert below.run(Strategy(split=True)).exposed() == [0]
    at = Coalition(SecAggConfig(num_clients=10, threshold=5, vector_length=3, malicious=True), corrupt=set(), victim=0)
    assert at.run(Strategy(split=True)).exposed() == []
    assert any("signed the survivor list" in why for why in at.refused.values())


# ---------------------------------------------------------------- property: every strategy, every accepted config

STRATEGIES = {
    "honest": lambda: Strategy(),
    "trim": lambda: Strategy(trim=0),
    "trim-1": lambda: Strategy(trim=1),
    "trim-2": lambda: Strategy(trim=2),
    "split": lambda: Strategy(split=True),
    "trim-split": lambda: Strategy(trim=2, split=True),
    "exclude-split": lambda: Strategy(exclude=frozenset({9, 10, 11}), split=True),
}


@st.composite
def accepted_sessions(draw):
    sparse = draw(st.booleans())
    n = draw(st.integers(24, 40)) if sparse else draw(st.integers(4, 13))
    malicious = draw(st.booleans())
    k = draw(st.integers(4, 12)) if sparse else None
    t = draw(st.integers(1, (k or n - 1)))
    c = draw(st.integers(0, 3 if sparse else n - 2))
    try:
        cfg = SecAggConfig(num_clients=n, threshold=t, vector_length=3, neighbors=k, malicious=malicious,
                           corrupt_clients=c)
    except ParameterError:
        cfg = None
    victim = draw(st.integers(0, n - 1))
    corrupt = set(draw(st.permutations([u for u in range(n) if u != victim]))[:c])
    return cfg, corrupt, victim, draw(st.sampled_from(sorted(STRATEGIES))), draw(st.integers(0, 2**16))


@settings(max_examples=80)
@given(accepted_sessions())
def test_no_strategy_exposes_an_honest_input_at_any_accepted_parameter_set(session):
    """For random parameters the config accepts and a random coalition of at most c corrupt clients,
    no coordinator strategy (trim, split, exclusion, in combination) leaves the coalition holding
    t shares of both kinds of an honest client, or able to compute its input otherwise. The
    honest-but-curious mode is held to its own model: a coordinator that follows the protocol."""
    cfg, corrupt, victim, name, seed = session
    if cfg is None:
        return
    if not cfg.malicious and name != "honest":
        return
    coalition = Coalition(cfg, corrupt=corrupt, victim=victim, seed=seed).run(STRATEGIES[name]())
    assert coalition.exposed() == [], (cfg, sorted(corrupt), victim, name)


# ---------------------------------------------------------------- 3. SecAgg+ graph grinding

def test_holder_draws_do_not_depend_on_the_session_id():
    # version 1: the graph was HKDF(session id), which the coordinator picks; now only the client's
    # own randomness enters its draw
    a = draw_holders(5, 100, 28, TestOnlySeededRandomness(1))
    b = draw_holders(5, 100, 28, TestOnlySeededRandomness(1))
    assert np.array_equal(a, b)
    cfg = SecAggConfig(num_clients=100, threshold=10, vector_length=3, neighbors=28)
    draws = [Coalition(cfg, set(), 0, session_id=bytes([sid]) * 16).clients[5] for sid in (1, 2)]
    for client in draws:
        client.start()
    assert np.array_equal(draws[0].drawn_holders, draws[1].drawn_holders)  # same client randomness


def test_the_grinding_parameters_of_issue_12_are_refused():
    # n = 100, k = 28, t = 17 with 33 corrupt clients: some honest client has >= 17 corrupt holders
    # with probability about 2^-3 per session, so the bound refuses it
    with pytest.raises(ParameterError, match="2\\^-40"):
        SecAggConfig(num_clients=100, threshold=17, vector_length=3, neighbors=28, corrupt_clients=33)


def test_sessions_at_accepted_sparse_parameters_never_expose_within_a_budget():
    # A coordinator can no longer grind offline: each new graph costs a live session whose draws
    # it cannot predict. The issue's k = 28, t = 17 at n = 100 is what choose_graph_parameters picks
    # for 5 corrupt clients in malicious mode; a budget of 3 sessions, split and exclusion.
    params = choose_graph_parameters(100, 0.0, 0.05, malicious=True)
    assert (params.neighbors, params.threshold) == (28, 17)
    cfg = SecAggConfig(num_clients=100, threshold=17, vector_length=2, neighbors=28, malicious=True,
                       corrupt_clients=5)
    for seed in range(3):
        corrupt = set(range(95, 100))
        strategy = Strategy(split=True, exclude=frozenset(range(60, 60 + 3 * seed)))
        coalition = Coalition(cfg, corrupt=corrupt, victim=seed, seed=seed).run(strategy)
        assert coalition.exposed() == []


def test_below_the_sparse_bound_the_same_adversary_does_expose_someone():
    # k = 8 holders, t = 5, a third of the clients corrupt, splitting every victim's holders:
    # far below the bound (the config refuses it); the harness must then see an exposure
    n, k, t = 60, 8, 5
    with pytest.raises(ParameterError):
        SecAggConfig(num_clients=n, threshold=t, vector_length=2, neighbors=k, malicious=True, corrupt_clients=20)
    cfg = unsafe(num_clients=n, threshold=t, neighbors=k, malicious=True)
    exposed = []
    for seed in range(6):
        corrupt = set(range(40, 60))
        graph = {}
        coalition = Coalition(cfg, corrupt=corrupt, victim=0, seed=seed)
        for u, client in coalition.clients.items():
            client.start()
            graph[u] = client.drawn_holders
        victims = [u for u in range(40) if len(set(graph[u].tolist()) & corrupt) >= 2 * t - k]
        if not victims:
            continue
        fresh = Coalition(cfg, corrupt=corrupt, victim=victims[0], seed=seed).run(Strategy(split=True))
        exposed += fresh.exposed()
    assert exposed


# ---------------------------------------------------------------- 5. replayed signatures

def test_consistency_signatures_from_another_session_with_the_same_id_never_verify():
    cfg = SecAggConfig(num_clients=10, threshold=5, vector_length=3, malicious=True)
    first = Coalition(cfg, corrupt=set(), victim=0, seed=1).run(Strategy(split=True))
    harvested = first.signatures  # per survivor list, from a session with the same session id
    assert any(len(sigs) >= 5 for sigs in harvested.values())
    second = Coalition(cfg, corrupt=set(), victim=0, seed=2).run(Strategy(split=True, replay=harvested))
    assert second.exposed() == []
    assert any("bad consistency signature" in why for why in second.refused.values())


# ---------------------------------------------------------------- 7. the SecAgg+ dropout cascade

def test_the_cascade_does_work_linear_in_the_holder_relations():
    # version 1 rescanned every client's holders on every pass: quadratic in n for a chain of
    # clients, each of which becomes short when the previous one leaves (k - t + 1 adjacent
    # clients that never advertise start it). Count the relation checks instead of timing them.
    n, k, t = 2000, 20, 11
    draws = {u: np.sort(np.array([(u + d) % n for d in range(1, k + 1)])) for u in range(n)}
    graph = HolderGraph(np.arange(n), draws)
    checks = [0]

    def counted(owner, holder):
        checks[0] += 1
        return True

    alive = graph.prune(set(range(n)) - set(range(k - t + 1)), t, counts_as_holder=counted)
    assert alive == set()
    assert checks[0] <= 2 * n * k  # each relation is looked at once when counting, once on removal


# ---------------------------------------------------------------- 4. one participant excluding honest clients

def _session_with_a_bundle_corrupter(n, t, corrupted):
    """Client 1 flips a bit in its bundles to the holders in ``corrupted``."""
    import dataclasses

    from secagg.protocol.messages import decode_message
    from tests.harness import Harness

    h = Harness(n=n, t=t)
    h.start()
    h.last_replies = {}
    for u, data in sorted(h.inbox.items()):
        reply = h.clients[u].handle(data)
        if u == 1:
            message = decode_message(reply)
            garbled = message.ciphertexts.copy()
            rows = np.isin(message.peers, list(corrupted))
            garbled[rows, 0] ^= 1
            reply = dataclasses.replace(message, ciphertexts=garbled).encode()
        h.last_replies[u] = reply
    h._deliver_to_server()
    return h


def test_a_client_corrupting_bundles_excludes_nobody_and_the_round_goes_on():
    # Version 1: a bundle that did not open made its recipient refuse the whole ShareBundles
    # message (blaming the server) and drop out, so one client could push chosen honest ones out.
    from secagg.protocol.server import ServerState

    h = _session_with_a_bundle_corrupter(7, 3, corrupted={0, 2, 3})
    while h.server.state not in (ServerState.COMPLETED, ServerState.ABORTED):
        h.step()
    result = h.server.result
    assert result.survivors == list(range(7))  # the victims stay in, and so does the cheater
    assert np.array_equal(result.aggregate, h.expected_sum(result.survivors))
    assert sorted(result.reports) == [(0, 1), (2, 1), (3, 1)]  # every victim names the sender


def test_corrupting_too_many_bundles_aborts_naming_the_cheater_not_a_victim():
    # A client whose bundles leave it fewer than t valid holders cannot have its masks removed:
    # the round aborts (a denial of service, never a wrong sum) and the reason names it.
    from secagg.errors import AbortError

    h = _session_with_a_bundle_corrupter(7, 3, corrupted={0, 2, 3, 4, 5, 6})
    with pytest.raises(AbortError, match=r"client 1 has 0 share holders left.*reported its share bundles"):
        h.step()


# ---------------------------------------------------------------- found in review

@pytest.mark.parametrize("n, k, t", [(30, 8, 4), (100, 20, 10), (100, 20, 5), (20, 6, 3), (12, 4, 2)])
def test_sparse_malicious_mode_with_no_corrupt_client_still_needs_2t_above_k(n, k, t):
    # With 2t <= K the coordinator alone splits a victim's K honest holders between the two
    # kinds (review of this change recovered inputs at these parameters): refused whatever c is.
    with pytest.raises(ParameterError, match="2t - K"):
        SecAggConfig(num_clients=n, threshold=t, vector_length=2, neighbors=k, malicious=True)


def test_one_identity_cannot_take_part_twice_in_one_session_id():
    # Two sessions of one client under one id would let the coordinator count it twice (each
    # session signs its own survivor list). The identity refuses a second, different session.
    from secagg.crypto.signatures import IdentityKey
    from secagg.errors import SessionStateError
    from secagg.protocol.client import ClientSession

    cfg = SecAggConfig(num_clients=5, threshold=3, vector_length=2, malicious=True)
    identities = [IdentityKey.generate(TestOnlySeededRandomness(u, b"id")) for u in range(5)]
    verify = {u: k.public_bytes for u, k in enumerate(identities)}
    first = ClientSession(cfg, 1, bytes(16), [0, 0], identity=identities[1], verify_keys=verify,
                          rng=TestOnlySeededRandomness(1))
    first.start()
    replay = ClientSession(cfg, 1, bytes(16), [0, 0], identity=identities[1], verify_keys=verify,
                           rng=TestOnlySeededRandomness(1))
    replay.start()  # the same session rebuilt (same randomness): fine
    second = ClientSession(cfg, 1, bytes(16), [0, 0], identity=identities[1], verify_keys=verify,
                           rng=TestOnlySeededRandomness(2))
    with pytest.raises(SessionStateError, match="joins a session id once"):
        second.start()
    other_id = ClientSession(cfg, 1, b"\x01" * 16, [0, 0], identity=identities[1], verify_keys=verify)
    other_id.start()  # another session id: fine
