"""Who holds whose shares: every other client (SecAgg), or K holders each client draws itself (SecAgg+).

In the complete graph every client shares its secrets among all n - 1 other clients and masks with
each of them. In SecAgg+ (Bell et al., CCS 2020, with the graph drawn by the clients) each client
draws its K holders uniformly without replacement among the other n - 1 clients, with its own
CSPRNG, when it generates its keys, and announces them in its (signed) AdvertiseKeys. Two clients
mask with each other when either one drew the other.

Why the clients draw: in protocol version 1 the graph was a pure function of the session id, which
the coordinator picks, so a coordinator could grind session ids until a victim's neighbours were
its colluders. Now no one but the client influences its draw, and a coordinator that excludes
clients only removes holders; it cannot add corrupt ones (docs/security.md, "SecAgg+ graph").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from secagg.crypto.randomness import RandomSource
from secagg.errors import ParameterError
from secagg.protocol import bounds

__all__ = ["draw_holders", "HolderGraph", "GraphParameters", "choose_graph_parameters", "complete_graph_threshold"]

# Beyond this many holders a sparse graph saves little over the complete one.
_MAX_SPARSE_HOLDERS = 2048
_WORD = 1 << 32


def draw_holders(client_id: int, num_clients: int, count: int, rng: RandomSource) -> np.ndarray:
    """``count`` distinct holder ids, uniform among the other clients, sorted (spec section 7).

    A partial Fisher-Yates shuffle of the other ids in increasing order; each swap index is a
    little-endian u32 word, rejected when it falls in the incomplete last block so that every
    index is exactly uniform.
    """
    others = [i for i in range(num_clients) if i != client_id]
    for i in range(count):
        bound = len(others) - i
        limit = _WORD - _WORD % bound
        while True:
            word = int.from_bytes(_take(rng, 4), "little")
            if word < limit:
                break
        j = i + word % bound
        others[i], others[j] = others[j], others[i]
    return np.array(sorted(others[:count]), dtype=np.int64)


def _take(rng: RandomSource, n: int) -> bytes:
    data = rng.random_bytes(n)
    if not isinstance(data, (bytes, bytearray)) or len(data) != n:
        raise ParameterError(f"the random source returned {len(data) if hasattr(data, '__len__') else data!r} "
                             f"bytes, {n} were asked for")
    return bytes(data)


class HolderGraph:
    """The holder relation of one session, as the server knows it from the advertised draws.

    ``draws`` maps each client to its sorted holders (SecAgg+), or is None (complete graph over
    ``members``: everyone holds for everyone else).
    """

    def __init__(self, members: np.ndarray, draws: Mapping[int, np.ndarray] | None) -> None:
        self.members = np.asarray(members, dtype=np.int64)
        self.complete = draws is None
        if draws is None:
            self._holders = self._owners = None
            return
        self._holders = {int(u): np.asarray(draws[int(u)], dtype=np.int64) for u in self.members.tolist()}
        member_set = set(self._holders)
        owners: dict[int, list[int]] = {u: [] for u in member_set}
        for u, held in self._holders.items():
            for v in held.tolist():
                if v in member_set:
                    owners[v].append(u)
        self._owners = {v: np.array(sorted(us), dtype=np.int64) for v, us in owners.items()}

    def holders(self, owner: int) -> np.ndarray:
        """Sorted ids of the clients ``owner`` drew (all other members in the complete graph)."""
        if self._holders is None:
            others: np.ndarray = self.members[self.members != owner]
            return others
        return self._holders[owner]

    def owners(self, holder: int) -> np.ndarray:
        """Sorted ids of the members that drew ``holder``."""
        if self._owners is None:
            others: np.ndarray = self.members[self.members != holder]
            return others
        return self._owners[holder]

    def partners(self, client: int) -> np.ndarray:
        """Sorted ids ``client`` masks with: those it drew and those that drew it."""
        if self._holders is None or self._owners is None:
            others: np.ndarray = self.members[self.members != client]
            return others
        return np.union1d(self._holders[client], self._owners[client])

    def prune(self, alive: set[int], threshold: int,
              counts_as_holder: Callable[[int, int], bool] | None = None) -> set[int]:
        """Remove, until none is left to remove, every client with fewer than ``threshold`` holders
        alive. Linear in the number of holder relations: each removal only decrements the counts of
        the owners it held for (the SecAgg+ dropout cascade of version 1 was quadratic).

        ``counts_as_holder(owner, holder)`` may exclude some relations (e.g. a holder that
        reported the owner's bundle as invalid holds nothing for it).
        """
        alive = set(alive)
        if self._holders is None and counts_as_holder is None:
            return alive if len(alive) - 1 >= threshold else set()
        valid = (lambda owner, holder: True) if counts_as_holder is None else counts_as_holder
        count = {u: sum(1 for v in self.holders(u).tolist() if v in alive and valid(u, v)) for u in alive}
        queue = [u for u, c in count.items() if c < threshold]
        removed: set[int] = set()
        while queue:
            u = queue.pop()
            if u in removed:
                continue
            removed.add(u)
            for owner in self.owners(u).tolist():
                if owner in alive and owner not in removed and valid(owner, u):
                    count[owner] -= 1
                    if count[owner] == threshold - 1:
                        queue.append(owner)
        return alive - removed


@dataclass(frozen=True)
class GraphParameters:
    """A (holders, threshold) choice and the failure bounds it was chosen for.

    ``neighbors`` is None when the complete graph is needed. The log2 bounds are union bounds
    over all clients of one session (see :mod:`secagg.protocol.bounds`).
    """

    num_clients: int
    neighbors: int | None
    threshold: int
    privacy_failure_log2: float
    correctness_failure_log2: float


def _log2_tail_table(log2_pmf: np.ndarray) -> np.ndarray:
    """table[x] = log2 P[X >= x] for x = 0..len(pmf) (the last entry is -inf)."""
    tail = np.logaddexp2.accumulate(log2_pmf[::-1])[::-1]
    return np.append(np.minimum(tail, 0.0), -np.inf)


def choose_graph_parameters(
    num_clients: int,
    dropout_fraction: float,
    corrupt_fraction: float,
    *,
    malicious: bool = False,
    security_bits: float = 40.0,
    correctness_bits: float = 20.0,
) -> GraphParameters:
    """Pick the smallest number of holders K and a threshold t for n clients.

    The adversary corrupts ``ceil(corrupt_fraction * n)`` clients, and a ``dropout_fraction`` of
    clients drop out independently. With C the number of corrupt holders among a client's K
    draws (hypergeometric) and S the number of its holders that stay online:

    * privacy fails if some honest client has C >= t (honest-but-curious server) or C >= 2t - K
      (malicious server, which could split the honest holders between the two kinds of share),
      or (honest-but-curious) the honest survivors' mask graph is disconnected; the union bound
      must stay below ``2^-security_bits``;
    * correctness fails if some client has S < t, S ~ Bin(K, 1 - dropout) (corrupt clients also
      count as silent in malicious mode); below ``2^-correctness_bits``.

    Among feasible thresholds for the smallest feasible K, t balances the two margins. If no
    K < n - 1 works, the complete graph is returned (``neighbors=None``) with a threshold between
    the exact bounds of :mod:`secagg.protocol.bounds`.
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
    corrupt = math.ceil(gamma * n - 1e-9)
    silent = min(1.0, delta + (corrupt / n if malicious else 0.0))
    log2_honest = math.log2(max(1, n - corrupt))
    survivors = n - corrupt - math.floor(delta * n)
    for k in range(1, min(n - 1, _MAX_SPARSE_HOLDERS + 1)):
        x = np.arange(k + 1)
        feasible_draws = (k - x <= n - 1 - corrupt) & (x <= corrupt)
        pmf = np.where(feasible_draws, bounds._log2_comb(corrupt, np.minimum(x, corrupt))
                       + bounds._log2_comb(n - 1 - corrupt, np.clip(k - x, 0, n - 1 - corrupt))
                       - bounds._log2_comb(n - 1, k), -np.inf)
        upper = _log2_tail_table(pmf)  # upper[x] = log2 P[C >= x]
        t = np.arange(1, k + 1)
        at_least = np.clip(2 * t - k if malicious else t, 0, k + 1)
        privacy = log2_honest + upper[at_least] if corrupt else np.where(at_least > 0, -np.inf, 0.0)
        correctness = np.array([math.log2(n) + bounds.log2_binomial_below(k, 1.0 - silent, int(ti)) for ti in t])
        slack = np.minimum(-security_bits - privacy, -correctness_bits - correctness)
        if slack.max() < 0:
            continue
        i = int(np.argmax(slack))
        total_privacy = float(privacy[i])
        if not malicious:
            total_privacy = float(np.logaddexp2(total_privacy, bounds.log2_disconnection(n, k, survivors)))
            if total_privacy > -security_bits:
                continue
        return GraphParameters(n, k, int(t[i]), total_privacy, float(correctness[i]))
    return GraphParameters(n, None, complete_graph_threshold(n, delta, corrupt, malicious=malicious),
                           -math.inf, -math.inf)


def complete_graph_threshold(num_clients: int, dropout_fraction: float, corrupt_clients: int, *,
                             malicious: bool = False) -> int:
    """A complete-graph threshold halfway between the exact bounds: above the privacy bound for
    ``corrupt_clients`` (t > c, or 2t > n - 1 + c) and reachable with ``floor(dropout * n)``
    dropouts (t <= n - 1 - d, minus c silent corrupt clients in malicious mode)."""
    n, c = num_clients, corrupt_clients
    d = math.floor(dropout_fraction * n)
    if malicious:
        low, high = (n - 1 + c) // 2 + 1, n - 1 - d - c
    else:
        low, high = c + 1, n - 1 - d
    if low > high or high < 1:
        raise ParameterError(f"no threshold tolerates {dropout_fraction:.0%} dropout with {c} corrupt clients "
                             f"among {n}" + (" against a malicious server" if malicious else ""))
    return max(1, (low + high) // 2)
