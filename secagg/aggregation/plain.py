"""The baseline: exact float64 sums in the clear (no privacy; for comparison and tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import DROP_BEFORE_INPUT, AggregateResult, AggregationRound, Aggregator

__all__ = ["PlainAggregator"]


class _PlainRound(AggregationRound):
    def __init__(self, participants: Sequence[int], dimension: int, max_weight: float) -> None:
        super().__init__(participants, dimension, max_weight)
        self._updates: dict[int, tuple[np.ndarray, float]] = {}

    def _accept(self, client_id: int, weighted_update: np.ndarray, weight: float,
                rng: np.random.Generator) -> None:
        self._updates[client_id] = (weighted_update.copy(), weight)

    def _finish(self, drop: dict[str, set[int]]) -> AggregateResult:
        start = time.perf_counter()
        gone = set().union(*(drop[name] for name in DROP_BEFORE_INPUT))
        included = tuple(sorted(set(self._updates) - gone))
        total = np.zeros(self.dimension)
        weight = 0.0
        for client in included:
            update, w = self._updates[client]
            total += update
            weight += w
        self._updates.clear()
        dropped = tuple(sorted(set(self.participants) - set(included)))
        bytes_sent = {c: 8 * (self.dimension + 1) for c in included}
        return AggregateResult(total, weight, included, dropped, time.perf_counter() - start, bytes_sent)


class PlainAggregator(Aggregator):
    """Sums updates in the clear. The server sees every update: use only as a baseline."""

    name = "plain"

    def open_round(self, participants, dimension, *, max_weight, clip=1.0, rng=None, min_contributions=1):
        return _PlainRound(participants, dimension, max_weight)
