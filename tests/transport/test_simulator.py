"""End-to-end: simulate() returns the exact sum over survivors, or aborts below t."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import secagg
from secagg import AbortError, ParameterError, SecAggConfig, simulate
from secagg.transport.simulator import ROUND_NAMES

ROUNDS = list(ROUND_NAMES)


def random_inputs(config, seed=0):
    gen = np.random.default_rng(seed)
    ring = config.ring
    return [gen.integers(0, 2**64, size=config.vector_length, dtype=np.uint64) & np.uint64(ring.mask)
            for _ in range(config.num_clients)]


def plaintext_sum(config, inputs, survivors):
    ring = config.ring
    return ring.sum([ring.element(inputs[u]) for u in survivors])


def check(config, drop, seed=0):
    inputs = random_inputs(config, seed)
    result = simulate(config, inputs, drop=drop, seed=seed)
    assert np.array_equal(result.aggregate, plaintext_sum(config, inputs, result.survivors))
    assert result.aggregate.dtype == config.ring.dtype
    return result


def test_readme_example():
    n, m = 10, 50
    cfg = secagg.SecAggConfig(num_clients=n, threshold=6, vector_length=m, modulus_bits=32, neighbors=None,
                              malicious=False)
    inputs = [np.full(m, u, dtype=np.int64) for u in range(n)]
    res = secagg.simulate(cfg, inputs, drop={"share_keys": [3], "masked_input": [5, 9]}, seed=None)
    assert res.survivors == [0, 1, 2, 4, 6, 7, 8]
    assert res.aggregate.tolist() == [sum(res.survivors)] * m


@pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")
@pytest.mark.parametrize("bits", [1, 2, 7, 16, 31, 32, 33, 48, 63, 64])
@pytest.mark.parametrize("neighbors", [None, 4])
def test_exact_for_every_ring_width_and_both_graphs(bits, neighbors):
    # t = 2 of 4 neighbours survives any two drops, whatever graph the session id yields
    cfg = SecAggConfig(num_clients=9, threshold=2 if neighbors else 5, vector_length=13, modulus_bits=bits,
                       neighbors=neighbors, unsafe_skip_bounds=neighbors is not None)  # 9 clients: too few for SecAgg+
    result = check(cfg, {"masked_input": [2], "unmasking": [6]}, seed=bits)
    assert 2 not in result.survivors and 6 in result.survivors


@pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")
@pytest.mark.parametrize("malicious", [False, True])
@pytest.mark.parametrize("neighbors", [None, 8])
def test_drops_in_every_round_at_once(malicious, neighbors):
    # six drops leave every client at least 2 of its 8 holders
    cfg = SecAggConfig(num_clients=16, threshold=9 if neighbors is None else 2, vector_length=20,
                       neighbors=neighbors, malicious=malicious, unsafe_skip_bounds=neighbors is not None)
    drop = {"advertise_keys": [0], "share_keys": [1], "masked_input": [2, 3], "consistency_check": [4],
            "unmasking": [5]}
    result = check(cfg, drop)
    assert result.survivors == [u for u in range(16) if u not in (0, 1, 2, 3)]
    assert result.dropped["share_keys"] == [1] and result.dropped["masked_input"] == [2, 3]


@pytest.mark.parametrize("round_name", ROUNDS)
def test_a_drop_in_each_single_round(round_name):
    cfg = SecAggConfig(num_clients=7, threshold=4, vector_length=5, malicious=True)
    result = check(cfg, {round_name: [1, 4]})
    in_sum = round_name in ("consistency_check", "unmasking")
    assert (1 in result.survivors) == in_sum


def test_abort_below_threshold_raises_abort_error():
    cfg = SecAggConfig(num_clients=6, threshold=5, vector_length=4)
    with pytest.raises(AbortError) as info:
        simulate(cfg, random_inputs(cfg), drop={"masked_input": [0, 1]})
    assert info.value.round == "masked_input"


def test_seeded_runs_are_reproducible_and_unseeded_runs_are_not():
    cfg = SecAggConfig(num_clients=4, threshold=3, vector_length=3)
    inputs = random_inputs(cfg)
    a, b = simulate(cfg, inputs, seed=7), simulate(cfg, inputs, seed=7)
    assert a.session_id == b.session_id
    assert [r.bytes_to_server for r in a.rounds] == [r.bytes_to_server for r in b.rounds]
    assert simulate(cfg, inputs).session_id != simulate(cfg, inputs).session_id


def test_reports_have_one_row_per_round_with_costs():
    cfg = SecAggConfig(num_clients=5, threshold=3, vector_length=100, malicious=True)
    result = check(cfg, {"masked_input": [4]})
    assert [r.round for r in result.rounds] == ROUNDS
    masked = result.rounds[2]
    assert (masked.expected, masked.dropped, masked.survivors) == (5, 1, 4)
    assert masked.bytes_to_server > 4 * 100 * 4 and masked.client_seconds_max > 0
    assert result.server_seconds > 0


@pytest.mark.parametrize("inputs,drop,match", [
    ([[0] * 3] * 3, None, "sequence of 4"),
    ([[0] * 3] * 3 + [[0] * 2], None, "length 2"),
    ([[0] * 3] * 3 + [[0, 0, 2**32]], None, "2\\*\\*32"),
    ([[0] * 3] * 3 + [[0.5] * 3], None, "integers"),
    ([[0] * 3] * 4, {"no_such_round": [1]}, "unknown round"),
    ([[0] * 3] * 4, {"share_keys": [4]}, "not a client id"),
    ([[0] * 3] * 4, [1, 2], "drop must map"),
])
def test_bad_arguments_are_parameter_errors(inputs, drop, match):
    cfg = SecAggConfig(num_clients=4, threshold=2, vector_length=3)
    with pytest.raises(ParameterError, match=match):
        simulate(cfg, inputs, drop=drop)


def complete_graph_outcome(n, t, drops, malicious):
    """Who survives each round of the complete graph, or the round it must abort in: every live
    client needs t other live clients (a client holds no share of its own secrets)."""
    alive = set(range(n))
    survivors = None
    for name in ROUNDS:
        if name == "consistency_check" and not malicious:
            continue
        alive -= drops.get(name, set())
        if name == "unmasking" and not malicious:
            alive -= drops.get("consistency_check", set())
        if len(alive) - 1 < t:
            return name, None
        if name == "masked_input":
            survivors = sorted(alive)
    return None, survivors


@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 9))
    sparse = n >= 3 and draw(st.booleans())
    neighbors = draw(st.integers(1, n - 2)) if sparse else None
    holders = neighbors or n - 1
    t = draw(st.integers(1, holders))
    bits = draw(st.integers(1, 64))
    m = draw(st.integers(1, 6))
    malicious = draw(st.booleans())
    drops = {name: set(draw(st.lists(st.integers(0, n - 1), max_size=2))) for name in ROUNDS}
    # correctness for every parameter set, the threat-model bounds aside
    return SecAggConfig(num_clients=n, threshold=t, vector_length=m, modulus_bits=bits, neighbors=neighbors,
                        malicious=malicious, unsafe_skip_bounds=True), drops, draw(st.integers(0, 2**16))


@pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")
@given(scenarios())
def test_property_exact_sum_or_abort(scenario):
    config, drops, seed = scenario
    inputs = random_inputs(config, seed)
    try:
        result = simulate(config, inputs, drop={k: sorted(v) for k, v in drops.items()}, seed=seed)
    except AbortError as exc:
        if config.neighbors is None:
            expected_round, _ = complete_graph_outcome(config.num_clients, config.threshold, drops, config.malicious)
            assert exc.round == expected_round
        return
    assert np.array_equal(result.aggregate, plaintext_sum(config, inputs, result.survivors))
    if config.neighbors is None:
        expected_round, survivors = complete_graph_outcome(config.num_clients, config.threshold, drops,
                                                           config.malicious)
        assert expected_round is None and result.survivors == survivors
    else:
        gone = drops["advertise_keys"] | drops["share_keys"] | drops["masked_input"]
        assert set(result.survivors).isdisjoint(gone)
