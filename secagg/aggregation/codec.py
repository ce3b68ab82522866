"""How a FedAvg contribution ``(w * u, w)`` becomes a session's input, and a session's aggregate
becomes the two sums: one definition for every runtime (in-process, network, Flower).

* masking session: the fixed-point ring vector ``[round(w u 2^f) mod 2^k ..., w]``
  (:meth:`secagg.encoding.FixedPointEncoder.encode`);
* Paillier round: the same rounded integers, signed, with the weight last; the bank packs and
  encrypts them, the coordinator unpacks the decrypted plaintext sums.

A client builds the codec from the session the coordinator announced and its own training
settings; a mismatch between the two is refused (:class:`ParameterError`) before any work.
"""

from __future__ import annotations

import math

import numpy as np

from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, CryptoError, ParameterError
from secagg.transport.sessions import MaskingSpec, PaillierSpec

__all__ = ["UpdateCodec", "paillier_value_bound"]


def paillier_value_bound(encoder: FixedPointEncoder) -> int:
    """The packing bound of a Paillier contribution: rounded values and the (whole) weight."""
    return max(encoder.value_bound, math.ceil(encoder.max_weight))


class UpdateCodec:
    """The encoding of one session's contributions (see the module docstring)."""

    def __init__(self, spec: MaskingSpec | PaillierSpec, dimension: int, *, max_weight: float, clip: float,
                 fractional_bits: int) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ParameterError(f"dimension must be a positive int, got {dimension!r}")
        self.spec, self.dimension = spec, dimension
        if isinstance(spec, MaskingSpec):
            config = spec.config
            self.encoder = FixedPointEncoder(num_clients=config.num_clients, max_weight=max_weight, clip=clip,
                                             fractional_bits=fractional_bits)
            if config.vector_length != self.encoder.vector_length(dimension):
                raise ParameterError(f"the session sums vectors of length {config.vector_length}, a model of "
                                     f"{dimension} weights needs {self.encoder.vector_length(dimension)}")
            if config.modulus_bits != self.encoder.modulus_bits:
                raise ParameterError(f"ring Z_2^{config.modulus_bits} does not match the encoding (it needs "
                                     f"{self.encoder.modulus_bits} bits)")
        elif isinstance(spec, PaillierSpec):
            self.encoder = FixedPointEncoder(num_clients=spec.max_summands, max_weight=max_weight, clip=clip,
                                             fractional_bits=fractional_bits)
            if spec.values != dimension + 1:
                raise ParameterError(f"the round takes {spec.values} values, a model of {dimension} weights "
                                     f"needs {dimension + 1}")
            if spec.value_bound != paillier_value_bound(self.encoder):
                raise ParameterError(f"the round packs values up to {spec.value_bound}, the encoding needs "
                                     f"{paillier_value_bound(self.encoder)}")
        else:
            raise ParameterError(f"unknown session spec {type(spec).__name__}")

    @classmethod
    def spec_values(cls, encoder: FixedPointEncoder, dimension: int) -> dict:
        """The packing fields of a Paillier round for ``encoder`` (coordinator side)."""
        return {"values": dimension + 1, "value_bound": paillier_value_bound(encoder),
                "max_summands": encoder.num_clients}

    def encode(self, weighted_update: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        """This client's input: a ring vector (masking) or signed integers (Paillier)."""
        if isinstance(self.spec, MaskingSpec):
            return self.encoder.encode(weighted_update, weight, rng)
        return np.append(self.encoder.quantize(weighted_update, weight, rng), np.int64(int(weight)))

    def decode(self, aggregate, summands: int) -> tuple[np.ndarray, float]:
        """``(sum of w * u, sum of w)`` from a session's aggregate of ``summands`` contributions."""
        if isinstance(self.spec, MaskingSpec):
            weighted_sum, total_weight = self.encoder.decode_sum(aggregate)
            return weighted_sum, float(total_weight)
        try:
            sums = self.spec.scheme.unpack(list(aggregate), self.dimension + 1, summands)
        except CryptoError as exc:
            # proven decryptions of signed, proven contributions: only a contributor that packed a
            # plaintext outside its slots gets here (no range proofs; docs/paillier.md). The round
            # is lost, not the job, and nobody can be named.
            raise AbortError(f"the decrypted aggregate is not a sum of {summands} valid contributions (a "
                             f"contributor packed values outside their slots): {exc}", round="decryption") from None
        return sums[:-1].astype(np.float64) / self.encoder.scale, float(sums[-1])

    def error_bound(self, summands: int) -> float:
        return self.encoder.error_bound(summands)
