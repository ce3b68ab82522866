"""Aggregation under additively homomorphic Paillier encryption with threshold decryption.

For a consortium of a few institutions with stable links: every party encrypts its packed,
fixed-point update under one public key whose decryption key is split t-of-n among the parties
(trusted-dealer setup, :func:`secagg.paillier.generate_threshold_keypair`). The coordinator only
multiplies ciphertexts; ``t`` parties then partially decrypt the *aggregate* — never an individual
update — and the coordinator combines the partial decryptions into the sums.

Dropouts, in the protocol-round vocabulary shared by every aggregator: a party that vanishes before
``masked_input`` (i.e. before sending its ciphertexts) is not in the sum; one that vanishes later
(``consistency_check``/``unmasking``: before decrypting) is in the sum but does not help decrypt,
which is tolerated while ``t`` parties remain.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.aggregation.base import DROP_BEFORE_INPUT, AggregateResult, AggregationRound, Aggregator
from secagg.encoding import FixedPointEncoder
from secagg.errors import CryptoError, ParameterError, ProtocolViolation

__all__ = ["PaillierAggregator", "EncryptedUpdate"]


@dataclass(frozen=True)
class EncryptedUpdate:
    """One party's contribution: the packed ciphertexts and the fingerprint of the key used."""

    key_fingerprint: bytes
    ciphertexts: tuple[int, ...]


def key_fingerprint(n: int) -> bytes:
    return hashlib.sha256(b"secagg/v1/paillier-key\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big")).digest()[:16]


class _PaillierRound(AggregationRound):
    def __init__(self, aggregator: PaillierAggregator, participants: Sequence[int], dimension: int,
                 max_weight: float, clip: float, rng: np.random.Generator) -> None:
        super().__init__(participants, dimension, max_weight)
        from secagg.paillier import PackingScheme

        self.aggregator = aggregator
        self.key = aggregator.public_key
        unknown = [p for p in self.participants if p >= self.key.parties]
        if unknown:
            raise ParameterError(f"clients {unknown} hold no key share (the key was set up for {self.key.parties})")
        self.encoder = FixedPointEncoder(num_clients=len(self.participants), max_weight=max_weight, clip=clip,
                                         fractional_bits=aggregator.fractional_bits)
        self.scheme = PackingScheme(self.key.key_bits, max(self.encoder.value_bound, math.ceil(max_weight)),
                                    len(self.participants))
        self.ciphertext_count = self.scheme.plaintexts_for(dimension + 1)
        self._fingerprint = key_fingerprint(self.key.n)
        self._received: dict[int, tuple[int, ...]] = {}
        self._rng = rng
        self.client_seconds: dict[int, float] = {}

    # client side ---------------------------------------------------------------------------
    def encrypt(self, weighted_update: np.ndarray, weight: float) -> EncryptedUpdate:
        """What a party computes: quantise, pack with the weight as the last value, encrypt."""
        from secagg.paillier import encrypt_packed

        client_rng = np.random.default_rng(self._rng.integers(2**63))
        values = np.append(self.encoder.quantize(weighted_update, weight, client_rng), int(weight))
        return EncryptedUpdate(self._fingerprint, tuple(encrypt_packed(self.key, self.scheme.pack(values))))

    def _accept(self, client_id, weighted_update, weight):
        start = time.perf_counter()
        update = self.encrypt(weighted_update, weight)
        self.client_seconds[client_id] = time.perf_counter() - start
        self.receive(client_id, update)

    # server side ---------------------------------------------------------------------------
    def receive(self, client_id: int, update: EncryptedUpdate) -> None:
        """Check a party's ciphertexts (key, count, range) before keeping them."""
        if not isinstance(update, EncryptedUpdate):
            raise ProtocolViolation(f"client {client_id} sent {type(update).__name__}", party=client_id)
        if update.key_fingerprint != self._fingerprint:
            raise ProtocolViolation(f"client {client_id} encrypted under another key", party=client_id)
        if len(update.ciphertexts) != self.ciphertext_count:
            raise ProtocolViolation(f"client {client_id} sent {len(update.ciphertexts)} ciphertexts, expected "
                                    f"{self.ciphertext_count}", party=client_id)
        try:
            checked = tuple(self.key.check_ciphertext(c) for c in update.ciphertexts)
        except CryptoError as exc:
            raise ProtocolViolation(f"client {client_id}: {exc}", party=client_id) from None
        self._received[client_id] = checked

    def _finish(self, drop):
        from secagg.paillier import add_ciphertexts, combine_partial_decryptions, partial_decrypt

        start = time.perf_counter()
        gone_before_input = set().union(*(drop[name] for name in DROP_BEFORE_INPUT))
        in_sum = sorted(set(self._received) - gone_before_input)
        gone = set().union(*drop.values())
        decryptors = sorted(set(self.participants) - gone)
        dropped = tuple(sorted(set(self.participants) - set(in_sum)))
        cipher_bytes = 2 * ((self.key.key_bits + 7) // 8)
        sent = {c: cipher_bytes * self.ciphertext_count for c in in_sum}

        def aborted(reason):
            return AggregateResult(None, 0.0, (), self.participants, time.perf_counter() - start, sent, aborted=reason)

        if not in_sum:
            return aborted("no encrypted update arrived")
        if len(decryptors) < self.key.threshold:
            return aborted(f"{len(decryptors)} parties can decrypt, the threshold is {self.key.threshold}")
        aggregate = add_ciphertexts(self.key, [self._received[c] for c in in_sum])
        self._received.clear()
        # The coordinator asks t parties, or t + 1 when available so that two threshold subsets can
        # be cross-checked, for partial decryptions of the aggregate (each on its own machine in a
        # deployment; here one after another).
        asked = decryptors[: self.key.threshold + (1 if self.aggregator.cross_check else 0)]
        partials = []
        for party in asked:
            partials.append(partial_decrypt(self.aggregator.key_shares[party], aggregate))
            sent[party] = sent.get(party, 0) + cipher_bytes * len(aggregate)
        try:
            plaintexts = combine_partial_decryptions(self.key, partials)
            sums = self.scheme.unpack(plaintexts, self.dimension + 1, len(in_sum))
        except CryptoError as exc:
            return aborted(f"decryption failed: {exc}")
        return AggregateResult(sums[:-1].astype(np.float64) / self.encoder.scale, float(sums[-1]), tuple(in_sum),
                               dropped, time.perf_counter() - start, sent,
                               error_bound=self.encoder.error_bound(len(in_sum)))


class PaillierAggregator(Aggregator):
    """Paillier encryption of packed updates, decryption key split t-of-n among the parties.

    * ``key_bits``: 2048 (default) or 3072; generating safe primes takes seconds to a minute.
    * ``threshold``: partial decryptions needed; an int, a fraction of the parties (ceil), or None
      for 2/3.
    * ``fractional_bits``: fixed-point precision, as for the masking path.
    * ``keys``: an existing ``(ThresholdPublicKey, [KeyShare, ...])`` setup to reuse.
    * ``cross_check``: ask one party more than the threshold when one is available and require two
      threshold subsets to decrypt alike, so a single party sending a wrong partial decryption makes
      the round abort instead of shifting the sum.
    """

    name = "paillier"

    def __init__(self, *, key_bits: int = 2048, threshold: int | float | None = None, fractional_bits: int = 16,
                 keys=None, cross_check: bool = True) -> None:
        from secagg.paillier import _gmpy2, _phe

        _phe(), _gmpy2()  # fail now, with the extra's name, rather than mid-training
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or threshold <= 0 or (isinstance(threshold, float) and threshold > 1)):
            raise ParameterError(f"threshold must be a positive int, a fraction in (0, 1], or None; got {threshold!r}")
        self.key_bits = key_bits
        self.threshold = threshold
        self.fractional_bits = fractional_bits
        self.cross_check = bool(cross_check)
        self.public_key = None
        self.key_shares: dict[int, object] = {}
        self.setup_seconds = 0.0
        if keys is not None:
            public, shares = keys
            self.public_key = public
            self.key_shares = {share.index - 1: share for share in shares}

    def setup(self, num_clients: int) -> None:
        """Trusted-dealer key generation for clients ``0..num_clients-1`` (once)."""
        from secagg.paillier import generate_threshold_keypair

        if self.public_key is not None:
            if num_clients > self.public_key.parties:
                raise ParameterError(f"the key was set up for {self.public_key.parties} parties, not {num_clients}")
            return
        if isinstance(self.threshold, int):
            t = self.threshold
        else:
            t = math.ceil((2 / 3 if self.threshold is None else self.threshold) * num_clients - 1e-9)
        t = max(1, min(num_clients, t))
        start = time.perf_counter()
        self.public_key, shares = generate_threshold_keypair(num_clients, t, self.key_bits)
        self.key_shares = {share.index - 1: share for share in shares}
        self.setup_seconds = time.perf_counter() - start

    def open_round(self, participants, dimension, *, max_weight, clip=1.0, rng):
        if self.public_key is None:
            self.setup(max(participants) + 1)
        return _PaillierRound(self, participants, dimension, max_weight, clip, rng)
