"""What secagg puts inside Flower messages: one ConfigRecord per message, validated on arrival.

Server to client, under :data:`RECORD_KEY`:

* ``round``: the protocol round the message opens (``advertise_keys``, ``share_keys``,
  ``masked_input``, ``consistency_check``, ``unmasking``);
* in ``advertise_keys``: the session parameters of :class:`SessionSetup` (no protocol message yet);
* in every later round: ``message``, the server's protocol message as its canonical bytes.

Client to server, under the same key: ``round`` and ``message`` (the client's reply, canonical
bytes). In ``masked_input`` the client's own fit metrics may ride along under
:data:`METRICS_KEY`; parameters and sample counts never do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from secagg.encoding import FixedPointEncoder
from secagg.errors import ParameterError, ProtocolViolation
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.messages import SESSION_ID_BYTES

__all__ = ["RECORD_KEY", "METRICS_KEY", "STATE_KEY", "FORMAT_VERSION", "SessionSetup", "flatten", "unflatten",
           "message_bytes"]

RECORD_KEY = "secagg.masking"
METRICS_KEY = "secagg.masking.metrics"
STATE_KEY = "secagg.masking.state"  # the client's session state, in its Flower Context
FORMAT_VERSION = 1
ROUND_NAMES = tuple(r.value for r in Round)

_SETUP_FIELDS: dict[str, type] = {
    "version": int,
    "session_id": bytes,
    "client_id": int,
    "node_ids": list,
    "threshold": int,
    "neighbors": int,  # 0: complete graph
    "vector_length": int,
    "modulus_bits": int,
    "malicious": bool,
    "fractional_bits": int,
    "clip": float,
    "max_weight": float,
}


def _server_violation(text: str) -> ProtocolViolation:
    return ProtocolViolation(text, party="server")


@dataclass(frozen=True)
class SessionSetup:
    """The public parameters of one aggregation session, as the workflow announces them.

    ``node_ids[i]`` is the Flower node that plays secagg client ``i``; the list is sorted, so the
    numbering follows from the participants alone. ``config`` and ``encoder`` agree on n and on
    the ring, and the ring is big enough that the sum of n encoded updates cannot wrap.
    """

    session_id: bytes
    node_ids: tuple[int, ...]
    config: SecAggConfig
    encoder: FixedPointEncoder

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise ParameterError(f"session_id must be {SESSION_ID_BYTES} bytes")
        ids = tuple(int(i) for i in self.node_ids)
        if list(ids) != sorted(set(ids)):
            raise ParameterError("node_ids must be strictly increasing")
        if len(ids) != self.config.num_clients:
            raise ParameterError(f"{len(ids)} node ids for {self.config.num_clients} clients")
        if self.encoder.num_clients != self.config.num_clients:
            raise ParameterError("encoder and config disagree on the number of clients")
        if self.encoder.modulus_bits != self.config.modulus_bits:
            raise ParameterError(f"encoder needs a {self.encoder.modulus_bits}-bit ring, config has "
                                 f"{self.config.modulus_bits}")
        if self.config.vector_length < 2:
            raise ParameterError("vector_length must be at least 2 (one parameter and the weight)")
        object.__setattr__(self, "node_ids", ids)

    @property
    def dimension(self) -> int:
        """Model parameters per client (the encoded vector carries the weight as one more element)."""
        return self.config.vector_length - 1

    def client_id(self, node_id: int) -> int:
        return self.node_ids.index(int(node_id))

    def to_record(self, client_id: int) -> dict[str, object]:
        """The ``advertise_keys`` record for secagg client ``client_id``."""
        config, encoder = self.config, self.encoder
        return {
            "round": Round.ADVERTISE_KEYS.value,
            "version": FORMAT_VERSION,
            "session_id": self.session_id,
            "client_id": int(client_id),
            "node_ids": list(self.node_ids),
            "threshold": config.threshold,
            "neighbors": config.neighbors or 0,
            "vector_length": config.vector_length,
            "modulus_bits": config.modulus_bits,
            "malicious": config.malicious,
            "fractional_bits": encoder.fractional_bits,
            "clip": float(encoder.clip),
            "max_weight": float(encoder.max_weight),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object], node_id: int) -> tuple[SessionSetup, int]:
        """Validate the setup a server sent to node ``node_id``; returns it and this node's client id.

        Every inconsistency is the server's fault: :class:`ProtocolViolation` (``party="server"``).
        """
        for key, kind in _SETUP_FIELDS.items():
            value = record.get(key)
            if value is None or type(value) is not kind:  # bool is not int here, and int is not bool
                raise _server_violation(f"setup field {key!r} missing or not a {kind.__name__}")
        if record["version"] != FORMAT_VERSION:
            raise _server_violation(f"setup format version {record['version']}, this client speaks {FORMAT_VERSION}")
        fields: dict = dict(record)
        node_ids = fields["node_ids"]
        if not all(type(i) is int for i in node_ids):
            raise _server_violation("setup field 'node_ids' must list integers")
        try:
            config = SecAggConfig(num_clients=len(node_ids), threshold=fields["threshold"],
                                  vector_length=fields["vector_length"], modulus_bits=fields["modulus_bits"],
                                  neighbors=fields["neighbors"] or None, malicious=fields["malicious"])
            # The encoder refuses a ring too small for the sum: a server cannot make the sum wrap.
            encoder = FixedPointEncoder(num_clients=config.num_clients, max_weight=fields["max_weight"],
                                        clip=fields["clip"], fractional_bits=fields["fractional_bits"],
                                        modulus_bits=config.modulus_bits)
            setup = cls(fields["session_id"], tuple(node_ids), config, encoder)
        except ParameterError as exc:
            raise _server_violation(f"invalid session setup: {exc}") from None
        client_id = fields["client_id"]
        if not 0 <= client_id < config.num_clients or setup.node_ids[client_id] != int(node_id):
            raise _server_violation(f"setup assigns client id {client_id} to node {node_id}, which is not "
                                    "that node's place in node_ids")
        return setup, int(client_id)


def message_bytes(record: Mapping[str, object] | None, expected_round: str, sender: str | int) -> bytes:
    """The protocol message of a secagg record, after checking it belongs to ``expected_round``."""
    def refuse(text: str) -> ProtocolViolation:
        return ProtocolViolation(text, party=sender)

    if record is None:
        raise refuse(f"no {RECORD_KEY!r} record in the message")
    if record.get("round") != expected_round:
        raise refuse(f"record for round {record.get('round')!r}, expected {expected_round!r}")
    data = record.get("message")
    if type(data) is not bytes:
        raise refuse("record carries no protocol message bytes")
    return data


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """All parameters as one float64 vector, in order."""
    if not arrays:
        raise ParameterError("the model has no parameters")
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cut ``vector`` into arrays shaped (and typed) like ``like``."""
    sizes = [int(np.asarray(a).size) for a in like]
    if vector.size != sum(sizes):
        raise ParameterError(f"vector of {vector.size} values for parameters of {sum(sizes)}")
    out, start = [], 0
    for array, size in zip(like, sizes):
        array = np.asarray(array)
        out.append(vector[start:start + size].reshape(array.shape).astype(array.dtype, copy=False))
        start += size
    return out


def check_finite_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
