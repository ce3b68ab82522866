"""Who shares with whom: the complete graph (SecAgg) or a sparse k-regular graph (SecAgg+).

In the complete graph every client's secrets are shared among all n clients, itself included,
and every pair of clients masks with each other. In SecAgg+ (Bell et al., CCS 2020) each client
shares among and masks with only its k neighbours in a Harary graph H(k, n) laid out on a ring in
a random order: the order comes from AES-CTR keyed by HKDF(session id), so every party derives
the same graph from public data and no party (but whoever picks the session id) chooses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.crypto.keys import hkdf
from secagg.crypto.prg import keystream
from secagg.errors import ParameterError

__all__ = ["NeighbourGraph", "GraphParameters", "choose_graph_parameters"]

# Beyond this many neighbours a sparse graph saves little over the complete one.
_MAX_SPARSE_NEIGHBOURS = 2048


class NeighbourGraph:
    """The neighbour relation of one session."""

    def __init__(self, num_clients: int, neighbors: int | None, session_id: bytes) -> None:
        self.num_clients = num_clients
        self.neighbors = neighbors
        if neighbors is None:
            self._order = self._position = None
        else:
            seed = hkdf(bytes(session_id), b"neighbour-graph")
            keys = np.frombuffer(keystream(seed, 8 * num_clients), dtype="<u8")
            self._order = np.lexsort((np.arange(num_clients), keys))  # ring position -> client id
            self._position = np.empty(num_clients, dtype=np.int64)  # client id -> ring position
            self._position[self._order] = np.arange(num_clients)
            offsets = np.arange(1, neighbors // 2 + 1)
            offsets = np.concatenate([offsets, -offsets])
            if neighbors % 2:
                offsets = np.append(offsets, num_clients // 2)
            self._offsets = offsets

    @classmethod
    def for_config(cls, config, session_id: bytes) -> NeighbourGraph:
        return cls(config.num_clients, config.neighbors, session_id)

    @property
    def is_complete(self) -> bool:
        return self.neighbors is None

    def neighbours(self, client: int) -> np.ndarray:
        """Sorted ids of the clients ``client`` masks with (never itself)."""
        if self._order is None:
            ids = np.arange(self.num_clients)
            return ids[ids != client]
        positions = (self._position[client] + self._offsets) % self.num_clients
        return np.sort(self._order[positions])

    def holders(self, client: int) -> np.ndarray:
        """Sorted ids of the clients that receive shares of ``client``'s secrets.

        All n clients (``client`` included) in the complete graph; the k neighbours in SecAgg+.
        """
        if self._order is None:
            return np.arange(self.num_clients)
        return self.neighbours(client)

    def holds_for(self, holder: int, owner: int) -> bool:
        if self._order is None:
            return True
        return holder != owner and bool(np.any(self.neighbours(owner) == holder))


@dataclass(frozen=True)
class GraphParameters:
    """A (neighbours, threshold) choice and the failure bounds it was chosen for.

    ``neighbors`` is None when the complete graph is needed. The log2 bounds are union bounds
    over all clients of one session (see :func:`choose_graph_parameters`).
    """

    num_clients: int
    neighbors: int | None
    threshold: int
    privacy_failure_log2: float
    correctness_failure_log2: float


def _log2_pmf(k: int, p: float) -> np.ndarray:
    """log2 P[Bin(k, p) = i] for i = 0..k."""
    i = np.arange(k + 1)
    with np.errstate(divide="ignore"):
        if p <= 0.0:
            return np.where(i == 0, 0.0, -np.inf)
        if p >= 1.0:
            return np.where(i == k, 0.0, -np.inf)
        lgamma = np.vectorize(math.lgamma)
        log_e = lgamma(k + 1) - lgamma(i + 1) - lgamma(k - i + 1) + i * math.log(p) + (k - i) * math.log1p(-p)
    return log_e / math.log(2)


def _log2_cumsum(log2_terms: np.ndarray) -> np.ndarray:
    """log2 of the running sums of 2**terms, computed stably."""
    return np.logaddexp2.accumulate(log2_terms)


def choose_graph_parameters(
    num_clients: int,
    dropout_fraction: float,
    corrupt_fraction: float,
    *,
    malicious: bool = False,
    security_bits: float = 40.0,
    correctness_bits: float = 20.0,
) -> GraphParameters:
    """Pick the smallest SecAgg+ neighbour count k and a threshold t for n clients.

    Following Bell et al. (CCS 2020), the adversary corrupts a ``corrupt_fraction`` of clients
    and a ``dropout_fraction`` drop out, both independently of the (random) graph. With C the
    number of corrupt neighbours of a client (bounded by Bin(k, gamma), which dominates the
    hypergeometric) and S the number of neighbours that stay online:

    * privacy fails if some client has C >= t (honest-but-curious server), or C >= 2t - k
      (malicious server: the honest neighbours could be split between revealing the two kinds
      of share), or if dropped and corrupt clients disconnect the Harary ring (bounded by
      n^2 q^k, q = dropout + corrupt fraction); the union bound over n clients must stay below
      ``2^-security_bits``;
    * correctness fails if some client has S < t, with S ~ Bin(k, 1 - dropout) (corrupt clients
      also counted as silent in malicious mode); below ``2^-correctness_bits``.

    Among feasible thresholds for the smallest feasible k, t balances the two margins. If no
    k < n works, the complete graph is returned (``neighbors=None``) with a threshold from the
    deterministic counts (t > corrupt clients, t <= online clients).
    """
    n = int(num_clients)
    if n < 2:
        raise ParameterError("num_clients must be at least 2")
    for name, value in (("dropout_fraction", dropout_fraction), ("corrupt_fraction", corrupt_fraction)):
        if not 0.0 <= value < 1.0:
            raise ParameterError(f"{name} must be in [0, 1), got {value}")
    delta, gamma = float(dropout_fraction), float(corrupt_fraction)
    if delta + gamma >= 1.0:
        raise ParameterError("dropout_fraction + corrupt_fraction must be below 1")
    silent = delta + gamma if malicious else delta
    log2_n = math.log2(n)
    best: GraphParameters | None = None
    for k in range(2, min(n, _MAX_SPARSE_NEIGHBOURS + 1), 2):
        disconnect = 2 * log2_n + k * math.log2(delta + gamma) if delta + gamma > 0 else -math.inf
        # upper[c] = log2 P[C >= c]; lower[t] = log2 P[S <= t - 1]
        upper = _log2_cumsum(_log2_pmf(k, gamma)[::-1])[::-1]
        lower = np.concatenate([[-np.inf], _log2_cumsum(_log2_pmf(k, 1.0 - silent))])
        t = np.arange(1, k + 1)
        bad_corrupt = np.clip(2 * t - k if malicious else t, 0, k)
        privacy = np.logaddexp2(log2_n + upper[bad_corrupt], disconnect)
        correctness = log2_n + lower[t]
        slack = np.minimum(-security_bits - privacy, -correctness_bits - correctness)
        if slack.max() >= 0:
            i = int(np.argmax(slack))
            best = GraphParameters(n, k, int(t[i]), float(privacy[i]), float(correctness[i]))
            break
    if best is not None:
        return best
    corrupt = math.ceil(gamma * n)
    online = math.floor((1.0 - silent) * n)
    low = (n + corrupt) // 2 + 1 if malicious else corrupt + 1
    if low > online:
        raise ParameterError(f"no threshold tolerates {delta:.0%} dropout with {gamma:.0%} corrupt clients "
                             f"among {n}")
    t = (low + online) // 2
    return GraphParameters(n, None, max(1, t), -math.inf, -math.inf)
