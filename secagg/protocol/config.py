"""Parameters of one secure-aggregation deployment, validated once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from secagg.errors import ParameterError
from secagg.protocol import bounds
from secagg.ring import Ring

__all__ = ["SecAggConfig", "MAX_CLIENTS", "MAX_VECTOR_LENGTH"]

MAX_CLIENTS = 1 << 20
MAX_VECTOR_LENGTH = (1 << 32) - 1


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SecAggConfig:
    """Public parameters every party of a secure-aggregation session agrees on, checked against
    the threat model they must withstand.

    * ``num_clients`` (n): clients are numbered ``0 .. n-1``.
    * ``threshold`` (t): shares needed to reconstruct a client's secrets. A client's *holders* are
      the clients that receive its shares: all n - 1 others with the complete graph
      (``neighbors=None``), or the K clients it draws itself with SecAgg+ (``neighbors=K``). A
      client never holds its own shares, so t counts other clients only: 1 <= t <= holders.
    * ``vector_length`` (m) and ``modulus_bits`` (k): inputs are vectors of Z_(2^k)^m.
    * ``malicious``: clients sign their keys and the survivor list (consistency check), which
      protects privacy against a coordinator that deviates from the protocol.
    * ``corrupt_clients`` (c): how many corrupt clients colluding with the coordinator the
      deployment must tolerate. None checks that the parameters tolerate at least none and reports
      the largest number they do tolerate (:attr:`threat_model`); say how many you need.
    * ``dropout_fraction``: the fraction of clients that may drop out; t must stay reachable.
    * ``security_bits`` / ``correctness_bits``: SecAgg+ failure bounds (2^-40 and 2^-20).

    Construction raises :class:`ParameterError` naming the bound whenever the parameters are
    unsafe for c corrupt clients (honest-but-curious: t > c; malicious: 2t > holders + c; SecAgg+:
    the hypergeometric bounds of :mod:`secagg.protocol.bounds`). ``unsafe_skip_bounds=True`` turns
    the check off, for research on attacks only: such a session protects nothing it claims to.
    """

    num_clients: int
    threshold: int
    vector_length: int
    modulus_bits: int = 32
    neighbors: int | None = None
    malicious: bool = False
    corrupt_clients: int | None = None
    dropout_fraction: float = 0.0
    security_bits: float = 40.0
    correctness_bits: float = 20.0
    unsafe_skip_bounds: bool = False

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
        for name in ("malicious", "unsafe_skip_bounds"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.neighbors is None:
            holders = n - 1
        else:
            k = _int("neighbors", self.neighbors)
            if not 1 <= k <= n - 2:
                raise ParameterError(f"neighbors must be in 1..{n - 2} for {n} clients, got {k} "
                                     f"(use neighbors=None for the complete graph: every client holds for all others)")
            object.__setattr__(self, "neighbors", k)
            holders = k
        if not 1 <= t <= holders:
            what = "num_clients - 1" if self.neighbors is None else "neighbors"
            raise ParameterError(f"threshold must be in 1..{holders} ({what}: a client never holds its own "
                                 f"shares), got {t}")
        object.__setattr__(self, "num_clients", n)
        object.__setattr__(self, "threshold", t)
        object.__setattr__(self, "vector_length", m)
        object.__setattr__(self, "modulus_bits", int(self.modulus_bits))
        if self.unsafe_skip_bounds:
            warnings.warn("SecAggConfig(unsafe_skip_bounds=True): the threat-model bounds are not checked; this "
                          "session protects no input it claims to (research on attacks only)", stacklevel=3)
            model = None
        else:
            model = bounds.evaluate(n, t, self.neighbors, self.malicious, corrupt_clients=self.corrupt_clients,
                                    dropout_fraction=self.dropout_fraction, security_bits=self.security_bits,
                                    correctness_bits=self.correctness_bits)
        object.__setattr__(self, "_threat_model", model)

    @property
    def threat_model(self) -> bounds.ThreatModel | None:
        """What these parameters guarantee (None with ``unsafe_skip_bounds``)."""
        model: bounds.ThreatModel | None = self.__dict__["_threat_model"]
        return model

    @property
    def ring(self) -> Ring:
        return Ring(self.modulus_bits)

    @property
    def is_sparse(self) -> bool:
        """True for SecAgg+ (each client draws K holders), False for the complete graph."""
        return self.neighbors is not None

    @property
    def holders_per_client(self) -> int:
        """How many clients hold shares of one client's secrets: n - 1 (complete) or K (SecAgg+)."""
        return self.num_clients - 1 if self.neighbors is None else self.neighbors
