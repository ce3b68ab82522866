"""Placeholder for the Paillier path (packed plaintexts, threshold decryption)."""

from __future__ import annotations

from secagg.aggregation.base import Aggregator

__all__ = ["PaillierAggregator"]


class PaillierAggregator(Aggregator):
    """Not available yet: the Paillier path arrives with packed fixed-point plaintexts and a
    decryption key split among the parties (the Paillier issue)."""

    name = "paillier"

    def __init__(self, **options: object) -> None:
        raise NotImplementedError(
            "aggregator 'paillier' (packed Paillier plaintexts with threshold decryption among the banks) "
            "is not implemented yet; use aggregator='masking' (secure) or 'plain' (baseline)")

    def open_round(self, participants, dimension, *, max_weight, clip, rng):  # pragma: no cover - never constructed
        raise NotImplementedError
