"""Review 14, attack 2: is ``bounds.log2_smaller_sum`` right, by brute force on small graphs?

The attack of ``test_one_sided_masks`` needs only the summed group A to be closed (every member
keeping t of its drawn holders inside A plus the c corrupt clients, a + c < min_sum): the other
signers can mask with A one-sidedly. The first bound (review 13) asked for a second closed group as
well and was far below the frequency of this event (2^-22.7 where it happened in every trial).
Since review 14 the bound is of A alone: at least the Monte Carlo frequency, and exact for the
complete graph.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.protocol.bounds import log2_smaller_sum


def draw(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """drew[u, v]: u drew v among its K holders, uniformly among the n - 1 others (as draw_holders)."""
    drew = np.zeros((n, n), dtype=bool)
    for u in range(n):
        others = np.delete(np.arange(n), u)
        drew[u, rng.choice(others, k, replace=False)] = True
    return drew


def closed_groups(drew: np.ndarray, honest: int, t: int) -> list[int]:
    """Bit masks of the non-empty sets of honest clients (ids 0..honest-1; the rest are corrupt)
    whose every member drew t holders inside the set plus the corrupt clients."""
    n = drew.shape[0]
    found = []
    for mask in range(1, 1 << honest):
        inside = np.zeros(n, dtype=bool)
        inside[honest:] = True
        members = [i for i in range(honest) if mask >> i & 1]
        inside[members] = True
        if all(int(drew[u][inside].sum()) >= t for u in members):
            found.append(mask)
    return found


def frequencies(n, k, t, min_sum, c, trials, seed=0):
    """(P[the bound's event], P[A closed and small only: the one-sided attack]) by Monte Carlo."""
    rng = np.random.default_rng(seed)
    model = real = 0
    for _ in range(trials):
        groups = closed_groups(draw(n, k, rng), n - c, t)
        size = [bin(g).count("1") for g in groups]
        small = [g for g, s in zip(groups, size) if s + c < min_sum]
        real += bool(small)
        model += any(not (a & b) and bin(a).count("1") + s + c >= min_sum
                     for a in small for b, s in zip(groups, size))
    return model / trials, real / trials


def test_the_bound_is_above_the_frequency_of_the_attack_in_a_case_where_it_is_rare_enough_to_matter():
    # n = 10, K = 6, t = 5, min_sum = 7, c = 0: a closed set of 6 or fewer, each member with 5 of 6 draws inside
    bound = 2 ** log2_smaller_sum(10, 6, 5, 7, 0)
    _, real = frequencies(10, 6, 5, 7, 0, trials=40)
    assert real <= bound < 1


def test_the_complete_graph_bound_is_exact():
    # K = n - 1: every draw is the same, so the event is certain or impossible
    for n, t, min_sum, c in [(8, 3, 7, 0), (8, 4, 7, 0), (8, 3, 8, 1), (9, 5, 9, 0), (7, 2, 6, 1)]:
        groups = closed_groups(draw(n, n - 1, np.random.default_rng(0)), n - c, t)
        size = {g: bin(g).count("1") for g in groups}
        happens = any(size[a] + c < min_sum for a in groups)
        assert log2_smaller_sum(n, None, t, min_sum, c) == (0.0 if happens else -math.inf), (n, t, min_sum, c)


def test_the_bound_is_above_the_frequency_of_the_attack_that_works():
    # n = 10, K = 6, t = 4, min_sum = 9, c = 0: the review-13 bound said 2^-22.7, the attack worked every time
    bound = 2 ** log2_smaller_sum(10, 6, 4, 9, 0)
    _, real = frequencies(10, 6, 4, 9, 0, trials=20)
    assert real <= bound + 0.05, f"a closed group of fewer than 9 in {real:.0%} of sessions; the bound says {bound:.1e}"
