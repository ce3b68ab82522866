import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.protocol.graph import NeighbourGraph, choose_graph_parameters


@given(st.integers(3, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))), st.binary(min_size=16, max_size=16))
def test_harary_graph_is_k_regular_symmetric_and_loop_free(nk, session):
    n, k = nk
    if n * k % 2:
        k -= 1
    if k == 0:
        return
    graph = NeighbourGraph(n, k, session)
    adjacency = np.zeros((n, n), dtype=bool)
    for u in range(n):
        neighbours = graph.neighbours(u)
        assert neighbours.size == k and u not in neighbours
        assert np.all(np.diff(neighbours) > 0)
        adjacency[u, neighbours] = True
    assert np.array_equal(adjacency, adjacency.T)


def test_graph_is_derived_from_the_session_id_only():
    a, b = NeighbourGraph(50, 6, bytes(16)), NeighbourGraph(50, 6, bytes(16))
    c = NeighbourGraph(50, 6, b"\x01" * 16)
    assert all(np.array_equal(a.neighbours(u), b.neighbours(u)) for u in range(50))
    assert any(not np.array_equal(a.neighbours(u), c.neighbours(u)) for u in range(50))


def test_harary_graph_is_connected_after_removing_fewer_than_k_nodes():
    n, k = 40, 6
    graph = NeighbourGraph(n, k, bytes(16))
    rng = np.random.default_rng(0)
    for _ in range(50):
        removed = set(rng.choice(n, size=k - 1, replace=False).tolist())
        alive = [u for u in range(n) if u not in removed]
        seen, frontier = {alive[0]}, [alive[0]]
        while frontier:
            u = frontier.pop()
            for v in graph.neighbours(u).tolist():
                if v not in removed and v not in seen:
                    seen.add(v)
                    frontier.append(v)
        assert len(seen) == len(alive)


def test_complete_graph_holders_include_self():
    graph = NeighbourGraph(5, None, bytes(16))
    assert graph.holders(2).tolist() == [0, 1, 2, 3, 4]
    assert graph.neighbours(2).tolist() == [0, 1, 3, 4]


@pytest.mark.parametrize("n", [100, 1000, 10_000])
def test_chosen_parameters_meet_their_bounds_and_grow_slowly(n):
    params = choose_graph_parameters(n, 0.1, 0.05)
    assert params.neighbors is not None and params.neighbors < 60
    assert params.neighbors // 2 < params.threshold <= params.neighbors
    assert params.privacy_failure_log2 <= -40 and params.correctness_failure_log2 <= -20


def test_chosen_parameters_against_an_exact_recomputation():
    n, delta, gamma = 1000, 0.1, 0.05
    params = choose_graph_parameters(n, delta, gamma)
    k, t = params.neighbors, params.threshold
    pmf = lambda j, p: math.comb(k, j) * p**j * (1 - p) ** (k - j)
    privacy = n * sum(pmf(j, gamma) for j in range(t, k + 1)) + n * n * (delta + gamma) ** k
    correctness = n * sum(pmf(j, 1 - delta) for j in range(0, t))
    assert math.log2(privacy) == pytest.approx(params.privacy_failure_log2, abs=0.01)
    assert math.log2(correctness) == pytest.approx(params.correctness_failure_log2, abs=0.01)
    # and k is the smallest even k that works: k - 2 has no feasible threshold
    smaller = k - 2
    feasible = False
    for t2 in range(1, smaller + 1):
        pm = lambda j, p: math.comb(smaller, j) * p**j * (1 - p) ** (smaller - j)
        pr = n * sum(pm(j, gamma) for j in range(t2, smaller + 1)) + n * n * (delta + gamma) ** smaller
        co = n * sum(pm(j, 1 - delta) for j in range(0, t2))
        feasible |= pr <= 2**-40 and co <= 2**-20
    assert not feasible


def test_malicious_mode_needs_larger_thresholds():
    honest = choose_graph_parameters(1000, 0.1, 0.05)
    malicious = choose_graph_parameters(1000, 0.1, 0.05, malicious=True)
    assert malicious.neighbors is None or malicious.neighbors > honest.neighbors
    assert 2 * malicious.threshold - (malicious.neighbors or 1000) > 0


def test_small_n_falls_back_to_the_complete_graph():
    params = choose_graph_parameters(10, 0.1, 0.1)
    assert params.neighbors is None and 1 < params.threshold <= 9


@pytest.mark.parametrize("args", [(1, 0.1, 0.1), (100, -0.1, 0.1), (100, 0.5, 0.5), (100, 0.1, 1.0), (4, 0.7, 0.2)])
def test_bad_parameter_requests(args):
    with pytest.raises(ParameterError):
        choose_graph_parameters(*args)
