"""Secure aggregation by pairwise masking (Bonawitz SecAgg / SecAgg+) behind the aggregator interface.

Each round runs one full protocol session among the round's participants: every client encodes its
weighted update and weight into Z_(2^k) (:class:`secagg.encoding.FixedPointEncoder`), and the server
only ever handles masked vectors; the decoded sums are all that leaves the round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from secagg.aggregation.base import AggregateResult, AggregationRound, Aggregator
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, ParameterError
from secagg.protocol.bounds import log2_smaller_sum
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import choose_graph_parameters
from secagg.transport.simulator import simulate

__all__ = ["MaskingAggregator"]


class _MaskingRound(AggregationRound):
    def __init__(self, aggregator: MaskingAggregator, participants: Sequence[int], dimension: int,
                 max_weight: float, clip: float, rng: np.random.Generator, min_contributions: int = 1) -> None:
        super().__init__(participants, dimension, max_weight, rng)
        n = len(self.participants)
        if n < 2:
            raise ParameterError("aggregator 'masking' needs at least 2 clients per round (the sum of one "
                                 "update is that update)")
        self.encoder = FixedPointEncoder(num_clients=n, max_weight=max_weight, clip=clip,
                                         fractional_bits=aggregator.fractional_bits,
                                         modulus_bits=aggregator.modulus_bits)
        self.config = aggregator.config_for(n, dimension + 1, self.encoder.ring.bits, min_contributions)
        self._index = {client: i for i, client in enumerate(self.participants)}
        self._inputs: list[np.ndarray | None] = [None] * n

    def _accept(self, client_id: int, weighted_update: np.ndarray, weight: float,
                rng: np.random.Generator) -> None:
        self._inputs[self._index[client_id]] = self.encoder.encode(weighted_update, weight, rng)

    def _finish(self, drop: dict[str, set[int]]) -> AggregateResult:
        start = time.perf_counter()
        ring = self.config.ring
        inputs = [v if v is not None else ring.zeros(self.config.vector_length) for v in self._inputs]
        self._inputs = []
        local_drop = {name: [self._index[c] for c in ids] for name, ids in drop.items()}
        try:
            result = simulate(self.config, inputs, drop=local_drop)
        except AbortError as exc:
            return AggregateResult(None, 0.0, (), self.participants, time.perf_counter() - start, {},
                                   aborted=str(exc))
        weighted_sum, total_weight = self.encoder.decode_sum(result.aggregate)
        included = tuple(self.participants[i] for i in result.survivors)
        dropped = tuple(sorted(set(self.participants) - set(included)))
        bytes_sent = {self.participants[i]: b for i, b in result.bytes_sent.items() if b}
        return AggregateResult(weighted_sum, float(total_weight), included, dropped, time.perf_counter() - start,
                               bytes_sent, error_bound=self.encoder.error_bound(len(included)))


class MaskingAggregator(Aggregator):
    """Secure aggregation by masking.

    * ``threshold``: shares needed per client; an int, a fraction of the holders (``0 < f <= 1``:
      t = ceil(f * holders)), or None for 2/3 (3 clients: t = 2 of 2 holders; 8 clients: t = 5 of 7).
    * ``neighbors``: None (complete graph), an int k (SecAgg+; the complete graph when k >= n - 1),
      or ``"auto"`` (k and t from ``choose_graph_parameters(n, dropout_fraction, corrupt_fraction)``).
    * ``dropout_fraction``, ``corrupt_fraction``: the threat model every round's configuration is
      checked against (``ceil(corrupt_fraction * n)`` corrupt clients): a round whose parameters
      do not withstand it raises :class:`ParameterError` naming the bound.
    * ``fractional_bits``: fixed-point precision (the rounding error per client is below 2^-f).
    * ``modulus_bits``: None picks the smallest ring that cannot overflow.
    """

    name = "masking"

    def __init__(self, *, threshold: int | float | None = None, neighbors: int | str | None = None,
                 malicious: bool = False, fractional_bits: int = 16, modulus_bits: int | None = None,
                 dropout_fraction: float = 0.1, corrupt_fraction: float = 0.05) -> None:
        if neighbors not in (None, "auto") and (isinstance(neighbors, bool) or not isinstance(neighbors, int)
                                               or neighbors < 1):
            raise ParameterError(f"neighbors must be None, 'auto' or a positive int, got {neighbors!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or threshold <= 0 or (isinstance(threshold, float) and threshold > 1)):
            raise ParameterError(f"threshold must be a positive int, a fraction in (0, 1], or None; got {threshold!r}")
        for name, value in (("dropout_fraction", dropout_fraction), ("corrupt_fraction", corrupt_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ParameterError(f"{name} must be in [0, 1), got {value!r}")
        if dropout_fraction + corrupt_fraction >= 1:
            raise ParameterError("dropout_fraction + corrupt_fraction must be below 1")
        self.threshold = threshold
        self.neighbors = neighbors
        self.malicious = bool(malicious)
        self.fractional_bits = fractional_bits
        self.modulus_bits = modulus_bits
        self.dropout_fraction = dropout_fraction
        self.corrupt_fraction = corrupt_fraction

    def graph_for(self, n: int, min_contributions: int = 1) -> tuple[int | None, int]:
        """(neighbors, threshold) for a round of n clients.

        ``min_contributions`` (DP's ``min_shares``) raises the threshold to ``min_contributions -
        1`` where the graph allows it: the server can only remove the masks of a sum that has t + 1
        inputs or more (each survivor needs t surviving holders), so the protocol itself refuses
        every sum with fewer noise shares than the DP guarantee counts on, at the first round that
        falls short. With a SecAgg+ graph of fewer neighbours, in malicious mode, the coordinator
        could unmask any set each of whose members keeps t holders inside it (it decides who masks
        with whom); where that is not below 2^-40 (:func:`~secagg.protocol.bounds.log2_smaller_sum`)
        ``neighbors="auto"`` moves to the complete graph at t = ``min_contributions - 1``, and a fixed
        graph is refused. Every client also reveals no share for a survivor list shorter than
        ``min_contributions`` (the network participant's ``min_sum``)."""
        neighbors, threshold = self._graph(n)
        holders = n - 1 if neighbors is None else neighbors
        if threshold < min_contributions - 1 <= holders:
            threshold = min_contributions - 1
        if self.malicious and threshold < min_contributions - 1:
            # a malicious coordinator decides who masks with whom, so it can unmask any set whose members
            # each keep t holders inside it (review 14). "auto" widens the graph until a set smaller than
            # min_contributions is below 2^-40 (in practice: until t can be min_contributions - 1).
            corrupt = min(n - 1, math.ceil(self.corrupt_fraction * n - 1e-9))
            if log2_smaller_sum(n, neighbors, threshold, min_contributions, corrupt) > -40:
                if self.neighbors != "auto" or neighbors is None:
                    raise ParameterError(
                        f"a sum of fewer than {min_contributions} inputs is not unlikely enough with n={n}, K={holders}, "
                        f"t={threshold} and {corrupt} corrupt clients (a set each of whose members keeps t holders "
                        f"inside it): raise the threshold to {min_contributions - 1}, or use neighbors='auto'")
                # the complete graph at t = min_contributions - 1: every client keeps the dropout margin
                # (a SecAgg+ graph with t that close to K would not survive the dropouts)
                neighbors, threshold = None, max(threshold, min(n - 1, min_contributions - 1))
        return neighbors, threshold

    def _graph(self, n: int) -> tuple[int | None, int]:
        neighbors = self.neighbors
        if isinstance(neighbors, str):  # "auto", the only string the constructor takes
            params = choose_graph_parameters(n, self.dropout_fraction, self.corrupt_fraction,
                                             malicious=self.malicious)
            if self.threshold is None:
                return params.neighbors, params.threshold
            neighbors = params.neighbors
        if isinstance(neighbors, int) and neighbors >= n - 1:
            neighbors = None
        holders = n - 1 if neighbors is None else neighbors
        if self.threshold is None or isinstance(self.threshold, float):
            fraction = 2 / 3 if self.threshold is None else self.threshold
            threshold = max(1, min(holders, math.ceil(fraction * holders - 1e-9)))
        else:
            threshold = self.threshold
        if threshold > holders:
            raise ParameterError(f"threshold {threshold} exceeds the {holders} share holders of a round of {n}")
        return neighbors, threshold

    def config_for(self, n: int, vector_length: int, modulus_bits: int, min_contributions: int = 1) -> SecAggConfig:
        """The checked session configuration of a round of n clients (no sum of fewer than
        ``min_contributions`` inputs: see :meth:`graph_for`)."""
        neighbors, threshold = self.graph_for(n, min_contributions)
        corrupt = min(n - 1, math.ceil(self.corrupt_fraction * n - 1e-9))
        dropout = self.dropout_fraction
        if min_contributions > 1:
            # a round left with fewer than min_contributions inputs is refused anyway (DP's min_shares), so the
            # session need only survive the others missing: dropouts plus, in malicious mode, silent corrupt clients
            silent = corrupt if self.malicious else 0
            dropout = min(dropout, max(0.0, (n - min_contributions - silent + 0.5) / n))
        return SecAggConfig(num_clients=n, threshold=threshold, vector_length=vector_length,
                            modulus_bits=modulus_bits, neighbors=neighbors, malicious=self.malicious,
                            corrupt_clients=corrupt, dropout_fraction=dropout)

    def session_spec(self, num_clients, encoder, dimension, *, min_contributions=1):
        """Network mode: the masking session a coordinator announces for ``num_clients`` clients."""
        from secagg.transport.sessions import MaskingSpec

        return MaskingSpec(self.config_for(num_clients, encoder.vector_length(dimension), encoder.modulus_bits,
                                           min_contributions))

    def open_round(self, participants, dimension, *, max_weight, clip=1.0, rng, min_contributions=1):
        return _MaskingRound(self, participants, dimension, max_weight, clip, rng, min_contributions)
