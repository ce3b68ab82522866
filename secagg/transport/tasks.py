"""The network mode's own task: one sum of integer vectors, by masking or by Paillier.

Each task has a coordinator half (plans sessions, consumes their sums) and a client half (turns a
session announcement into this client's input). FedAvg's halves live in :mod:`secagg.fedavg.network`
(this layer knows messages, never models).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from secagg.errors import CryptoError, ParameterError, ProtocolViolation
from secagg.protocol.config import SecAggConfig
from secagg.transport.network import SessionPlan
from secagg.transport.sessions import MaskingSpec, PaillierSpec

__all__ = ["SumTask", "SumClient", "atomic_json"]


# ----------------------------------------------------------------------------- one sum

def atomic_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename: a kill mid-write leaves the old file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` so that a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(payload, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())  # a record a guard relies on (ids taken, updates sent) must survive a crash
    os.replace(tmp, path)


class SumTask:
    """Coordinator: ``sessions`` sessions (default one) summing every client's integer vector.

    ``spec`` is a :class:`SecAggConfig` (masking: vectors of Z_(2^k)^m, the sum mod 2^k) or a
    :class:`PaillierSpec` (Paillier: ``values`` signed integers of magnitude up to ``value_bound``
    per bank, the exact integer sum). The last session's result (``aggregate``, ``survivors``,
    ``dropped``, ``aborted``, ``misbehaving``) is kept on the object, every session's in
    :attr:`results`; with ``output``, written as ``<output>.npy`` plus ``<output>.json`` (and
    ``<output>-<k>.npy`` per session when there are several). Repeated sessions are for
    measurements: the clients contribute the same vectors each time.
    """

    name = "sum"

    def __init__(self, spec: SecAggConfig | PaillierSpec, output: str | os.PathLike | None = None, *,
                 sessions: int = 1) -> None:
        task_spec = MaskingSpec(spec) if isinstance(spec, SecAggConfig) else spec
        if not isinstance(task_spec, (MaskingSpec, PaillierSpec)):
            raise ParameterError("spec must be a SecAggConfig or a PaillierSpec")
        if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 1:
            raise ParameterError(f"sessions must be a positive int, got {sessions!r}")
        self.spec, self.output, self.sessions = task_spec, output, sessions
        self.results: list[dict] = []
        self.aggregate: np.ndarray | None = None
        self.survivors: list[int] = []
        self.dropped: dict[str, list[int]] = {}
        self.aborted: str | None = None
        self.misbehaving: dict[int, str] = {}
        self.refused: dict[int, str] = {}
        self.seconds = 0.0

    @property
    def config(self) -> SecAggConfig | None:
        """The masking configuration (None on the Paillier path)."""
        return self.spec.config if isinstance(self.spec, MaskingSpec) else None

    def describe(self) -> dict:
        if isinstance(self.spec, MaskingSpec):
            c = self.spec.config
            return {"protocol": "masking", "num_clients": c.num_clients, "threshold": c.threshold,
                    "vector_length": c.vector_length, "modulus_bits": c.modulus_bits, "neighbors": c.neighbors}
        s = self.spec
        return {"protocol": "paillier", "num_clients": s.public.parties, "threshold": s.public.threshold,
                "values": s.values, "value_bound": s.value_bound, "min_contributors": s.min_contributors,
                "key_bits": s.public.key_bits}

    def next_session(self) -> SessionPlan | None:
        if len(self.results) >= self.sessions:
            return None
        return SessionPlan(self.spec, {"task": self.name, "session": len(self.results)})

    def finish_session(self, plan, aggregate, survivors, dropped, aborted, seconds, *, misbehaving=None,
                       refused=None) -> bool:
        if aggregate is not None and isinstance(self.spec, PaillierSpec):
            try:
                aggregate = self.spec.scheme.unpack(list(aggregate), self.spec.values, len(survivors))
            except CryptoError as exc:  # a bank packed values outside their slots: the session is lost
                aggregate, aborted = None, f"the decrypted sum is not a sum of valid contributions: {exc}"
        self.aggregate, self.survivors, self.dropped = aggregate, list(survivors), dict(dropped)
        self.aborted, self.seconds = aborted, seconds
        self.misbehaving = {int(k): str(v) for k, v in (misbehaving or {}).items()}
        self.refused = {int(k): str(v) for k, v in (refused or {}).items()}
        self.results.append({"survivors": self.survivors, "dropped": self.dropped, "aborted": aborted,
                             "seconds": seconds, "misbehaving": self.misbehaving, "refused": self.refused})
        if self.output is not None:
            base = Path(self.output)
            if aggregate is not None:
                atomic_npy(base.with_suffix(".npy"), aggregate)
                if self.sessions > 1:
                    atomic_npy(base.with_name(f"{base.name}-{len(self.results) - 1}.npy"), aggregate)
            atomic_json(base.with_suffix(".json"), {
                "survivors": self.survivors, "dropped": self.dropped, "aborted": aborted, "seconds": seconds,
                "misbehaving": self.misbehaving, "refused": self.refused, "sessions": self.results,
                "config": self.describe()})
        return len(self.results) >= self.sessions


class SumClient:
    """Client: contributes one integer vector, to one sum only.

    Masking: integers in [0, 2**modulus_bits); Paillier: signed integers of magnitude up to the
    announced ``value_bound``. Once its input has gone out, it sits later sessions out: two sums
    over different client sets that both contain the same vector would let the coordinator
    subtract them. ``repeat=True`` lifts this for measurements on synthetic data
    (``secagg join --repeat``), never for real data.
    """

    name = "sum"

    def __init__(self, vector: np.ndarray, *, repeat: bool = False) -> None:
        self.vector = np.asarray(vector)
        if self.vector.ndim != 1 or not np.issubdtype(self.vector.dtype, np.integer):
            raise ParameterError("the client's vector must be a 1-D integer array")
        self.repeat = bool(repeat)
        self.spent = False

    def prepare(self, spec, header, blob):
        if self.spent and not self.repeat:
            return None
        if isinstance(spec, PaillierSpec):
            if self.vector.size != spec.values:
                raise ProtocolViolation(f"the coordinator sums {spec.values} values, this bank holds "
                                        f"{self.vector.size}", party="server")
            # compared in the vector's own dtype: a cast to int64 first would wrap 2^64 - 1 to -1
            if self.vector.size and (int(self.vector.max()) > spec.value_bound
                                     or int(self.vector.min()) < -spec.value_bound):
                raise ParameterError(f"this bank's vector exceeds the announced bound {spec.value_bound}")
            return self.vector.astype(np.int64)
        config = spec.config
        if self.vector.size != config.vector_length:
            raise ProtocolViolation(f"the coordinator sums vectors of length {config.vector_length}, this client "
                                    f"holds {self.vector.size}", party="server")
        return config.ring.element(self.vector, length=config.vector_length, name="vector")

    def contributed(self, header):
        self.spent = True

    def session_ended(self, header):
        pass
