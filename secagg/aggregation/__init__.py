"""One aggregator interface, three ways to compute a federated round's sums.

``make_aggregator("masking" | "plain" | "paillier", **options)`` returns an :class:`Aggregator`.
Per round, ``open_round`` gives an :class:`AggregationRound`: clients ``submit`` their weighted
update and weight through it, and ``finish`` returns an :class:`AggregateResult` — the only thing
the server side of a trainer ever receives (sums, total weight, who was included).
"""

from secagg.aggregation.base import (
    AggregateResult,
    AggregationRound,
    Aggregator,
    available_aggregators,
    make_aggregator,
)

__all__ = ["AggregateResult", "AggregationRound", "Aggregator", "available_aggregators", "make_aggregator"]
