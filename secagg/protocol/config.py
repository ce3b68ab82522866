"""Parameters of one secure-aggregation deployment, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from secagg.errors import ParameterError
from secagg.ring import Ring

__all__ = ["SecAggConfig", "MAX_CLIENTS", "MAX_VECTOR_LENGTH"]

MAX_CLIENTS = 1 << 20
MAX_VECTOR_LENGTH = (1 << 32) - 1


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


@dataclass(frozen=True)
class SecAggConfig:
    """Public parameters every party of a secure-aggregation session agrees on.

    * ``num_clients`` (n): clients are numbered ``0 .. n-1``.
    * ``threshold`` (t): shares needed to reconstruct a client's secrets. With the complete graph
      (``neighbors=None``) every client shares among all n clients (itself included) and the
      server needs t survivors in every round. With SecAgg+ (``neighbors=k``) each client shares
      among its k graph neighbours and t counts shares out of k. A coalition of the server and
      fewer than t of a client's share holders learns nothing about its input; t is also the
      number of holders that must stay online to finish. See docs/security.md.
    * ``vector_length`` (m) and ``modulus_bits`` (k): inputs are vectors of Z_(2^k)^m.
    * ``malicious``: clients sign their keys and the survivor list (consistency check), which
      protects privacy against a server that lies about who dropped out.
    """

    num_clients: int
    threshold: int
    vector_length: int
    modulus_bits: int = 32
    neighbors: int | None = None
    malicious: bool = False

    def __post_init__(self) -> None:
        n = _int("num_clients", self.num_clients)
        t = _int("threshold", self.threshold)
        m = _int("vector_length", self.vector_length)
        if not 2 <= n <= MAX_CLIENTS:
            raise ParameterError(f"num_clients must be in 2..{MAX_CLIENTS}, got {n} "
                                 "(the sum of a single input is that input)")
        if not 1 <= m <= MAX_VECTOR_LENGTH:
            raise ParameterError(f"vector_length must be in 1..{MAX_VECTOR_LENGTH}, got {m}")
        Ring(self.modulus_bits)  # validates 1..64
        if not isinstance(self.malicious, bool):
            raise ParameterError(f"malicious must be a bool, got {self.malicious!r}")
        if self.neighbors is None:
            holders = n
        else:
            k = _int("neighbors", self.neighbors)
            if not 1 <= k <= n - 1:
                raise ParameterError(f"neighbors must be in 1..{n - 1} for {n} clients, got {k}")
            if (k * n) % 2:
                raise ParameterError(f"no {k}-regular graph on {n} clients exists (k*n must be even); "
                                     "choose an even number of neighbours")
            object.__setattr__(self, "neighbors", k)
            holders = k
        if not 1 <= t <= holders:
            what = "num_clients" if self.neighbors is None else "neighbors"
            raise ParameterError(f"threshold must be in 1..{holders} ({what}), got {t}")
        object.__setattr__(self, "num_clients", n)
        object.__setattr__(self, "threshold", t)
        object.__setattr__(self, "vector_length", m)
        object.__setattr__(self, "modulus_bits", int(self.modulus_bits))

    @property
    def ring(self) -> Ring:
        return Ring(self.modulus_bits)

    @property
    def is_sparse(self) -> bool:
        """True for SecAgg+ (a k-regular neighbour graph), False for the complete graph."""
        return self.neighbors is not None

    @property
    def holders_per_client(self) -> int:
        """How many parties hold shares of one client's secrets: n (complete) or k (SecAgg+)."""
        return self.num_clients if self.neighbors is None else self.neighbors
