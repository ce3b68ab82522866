"""The aggregator interface FedAvg talks to, and the registry that resolves names to paths."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from secagg.errors import ParameterError

__all__ = ["AggregateResult", "AggregationRound", "Aggregator", "make_aggregator", "available_aggregators"]

# Protocol rounds a client can vanish before (the masking protocol's names; every path accepts them).
DROP_ROUNDS = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
# A client that vanishes before one of these never delivered its update: it is not in the sum.
DROP_BEFORE_INPUT = ("advertise_keys", "share_keys", "masked_input")


@dataclass(frozen=True)
class AggregateResult:
    """Everything the server of one federated round learns.

    ``weighted_sum`` is sum_k w_k u_k over ``included`` and ``total_weight`` is sum_k w_k; no field
    holds anything about an individual client beyond membership and bytes sent.
    """

    weighted_sum: np.ndarray | None  # None when the round aborted
    total_weight: float
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    seconds: float
    bytes_sent: Mapping[int, int] = field(default_factory=dict)
    aborted: str | None = None
    error_bound: float = 0.0  # largest decoding error of one coordinate of weighted_sum

    @property
    def ok(self) -> bool:
        return self.aborted is None

    def average(self) -> np.ndarray:
        """The weighted average update sum_k w_k u_k / sum_k w_k."""
        if self.weighted_sum is None or self.total_weight <= 0:
            raise ParameterError("no aggregate to average (the round aborted or carried no weight)")
        return self.weighted_sum / self.total_weight


class AggregationRound(ABC):
    """One round of aggregation. Client code calls :meth:`submit`; server code gets :meth:`finish`'s
    result and nothing else."""

    def __init__(self, participants: Sequence[int], dimension: int, max_weight: float,
                 rng: np.random.Generator | None = None) -> None:
        ids = [int(p) for p in participants]
        if not ids:
            raise ParameterError("a round needs at least one participant")
        if len(set(ids)) != len(ids):
            raise ParameterError("participants must be distinct client ids")
        if dimension < 1:
            raise ParameterError(f"dimension must be >= 1, got {dimension}")
        self.participants = tuple(ids)
        self.dimension = int(dimension)
        self.max_weight = float(max_weight)
        self._submitted: set[int] = set()
        self._finished = False
        self._rounding_rng = rng if rng is not None else np.random.default_rng()

    def submit(self, client_id: int, weighted_update: np.ndarray, weight: float, *,
               rng: np.random.Generator | None = None) -> None:
        """Client side: hand over ``w * u`` (1-D, ``dimension`` floats) and the weight ``w``.

        ``rng`` drives this client's stochastic rounding (the trainer derives one per client and
        round, so every runtime rounds a contribution the same way); None draws one from the
        round's ``rng``."""
        if self._finished:
            raise ParameterError("this round is finished")
        if client_id not in self.participants:
            raise ParameterError(f"client {client_id} is not a participant of this round")
        if client_id in self._submitted:
            raise ParameterError(f"client {client_id} already submitted in this round")
        vector = np.asarray(weighted_update, dtype=np.float64)
        if vector.shape != (self.dimension,):
            raise ParameterError(f"update of client {client_id} has shape {vector.shape}, expected ({self.dimension},)")
        if not np.all(np.isfinite(vector)):
            raise ParameterError(f"update of client {client_id} contains NaN or infinity")
        if isinstance(weight, bool) or not 0 <= weight <= self.max_weight:
            raise ParameterError(f"weight of client {client_id} must be in [0, max_weight={self.max_weight:g}], "
                                 f"got {weight!r}")
        if rng is None:
            rng = np.random.default_rng(self._rounding_rng.integers(2**63))
        self._accept(client_id, vector, float(weight), rng)
        self._submitted.add(client_id)

    def finish(self, drop: Mapping[str, Collection[int]] | None = None) -> AggregateResult:
        """Server side: run the aggregation and return the sums.

        ``drop`` maps a protocol round name (``advertise_keys``, ``share_keys``, ``masked_input``,
        ``consistency_check``, ``unmasking``) to the clients that vanish before sending it; clients
        that never submitted count as vanished before the first round.
        """
        if self._finished:
            raise ParameterError("this round is finished")
        schedule: dict[str, set[int]] = {name: set() for name in DROP_ROUNDS}
        for name, ids in (drop or {}).items():
            if name not in schedule:
                raise ParameterError(f"unknown round {name!r} in drop; rounds are {', '.join(DROP_ROUNDS)}")
            unknown = set(ids) - set(self.participants)
            if unknown:
                raise ParameterError(f"drop[{name!r}] names non-participants {sorted(unknown)}")
            schedule[name] |= set(ids)
        schedule["advertise_keys"] |= set(self.participants) - self._submitted
        self._finished = True
        return self._finish(schedule)

    @abstractmethod
    def _accept(self, client_id: int, weighted_update: np.ndarray, weight: float,
                rng: np.random.Generator) -> None: ...

    @abstractmethod
    def _finish(self, drop: dict[str, set[int]]) -> AggregateResult: ...


class Aggregator(ABC):
    """A way to compute a round's sums (secure or not)."""

    name: str = ""

    def setup(self, num_clients: int) -> None:
        """Once per training run, before the first round: e.g. key generation for clients
        ``0..num_clients-1``. Nothing to do for most aggregators."""

    def setup_step(self, num_clients: int) -> str | None:
        """What :meth:`setup` would do now for ``num_clients`` clients if it takes long enough to
        announce (a sentence for a progress line), else None."""
        return None

    @abstractmethod
    def open_round(self, participants: Sequence[int], dimension: int, *, max_weight: float, clip: float,
                   rng: np.random.Generator, min_contributions: int = 1) -> AggregationRound:
        """Start a round for ``participants`` with updates of ``dimension`` floats, each coordinate of
        an update in ``[-clip, clip]`` and weights up to ``max_weight``; ``rng`` drives randomness
        that is not key material (e.g. stochastic rounding). ``min_contributions``: no sum of fewer
        updates may be released (DP's ``min_shares``); a path that can refuse to compute one does
        (Paillier: no bank decrypts it), and the trainer discards such sums on every path."""

    def session_spec(self, num_clients: int, encoder, dimension: int, *, min_contributions: int = 1):
        """Network mode: the session a coordinator announces for a round of ``num_clients``
        clients whose contributions ``encoder`` (:class:`~secagg.encoding.FixedPointEncoder`)
        encodes (a :class:`~secagg.transport.sessions.MaskingSpec` or ``PaillierSpec``); see
        :class:`secagg.aggregation.codec.UpdateCodec` for the encoding both sides share."""
        raise ParameterError(f"the {self.name!r} aggregator has no network mode")


_REGISTRY = {
    "masking": "secagg.aggregation.masking:MaskingAggregator",
    "plain": "secagg.aggregation.plain:PlainAggregator",
    "paillier": "secagg.aggregation.paillier:PaillierAggregator",
}


def available_aggregators() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_aggregator(name: str | Aggregator, **options: object) -> Aggregator:
    """The aggregator called ``name`` ("masking", "plain" or "paillier"), built with ``options``."""
    if isinstance(name, Aggregator):
        if options:
            raise ParameterError("options apply only when the aggregator is given by name")
        return name
    target = _REGISTRY.get(name) if isinstance(name, str) else None
    if target is None:
        raise ParameterError(f"unknown aggregator {name!r}; choose one of {', '.join(_REGISTRY)}")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ParameterError(f"aggregator {name!r}: {exc}") from None
