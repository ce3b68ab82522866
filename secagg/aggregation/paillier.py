"""Aggregation under additively homomorphic Paillier encryption with verifiable threshold decryption.

For a consortium of a few institutions with stable links: every bank encrypts its packed,
fixed-point update under one public key whose decryption key is split t-of-n among the banks
(:func:`secagg.paillier.generate_threshold_keypair`, a dealer's ceremony). Each round runs the two
sans-IO roles of :mod:`secagg.paillier.roles` in this process: a :class:`PaillierCoordinator` that
holds no key share, and one :class:`BankSession` per bank that signs its contribution, recomputes
the aggregate from the signed contributions itself and proves its partial decryption. In a
deployment every bank runs its own process (``secagg join --aggregator paillier``); here the banks'
objects live side by side, which is a simulation of that, not a trust model.

Dropouts, in the protocol-round vocabulary shared by every aggregator: a bank that vanishes before
``masked_input`` (before sending its contribution) is not in the sum; one that vanishes later
(``consistency_check``/``unmasking``: before decrypting) is in the sum but does not help decrypt,
which is tolerated while ``t`` banks remain.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from secagg.aggregation.base import DROP_BEFORE_INPUT, AggregateResult, AggregationRound, Aggregator
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, ParameterError, ProtocolViolation

if TYPE_CHECKING:
    from secagg.paillier.roles import BankSession
    from secagg.paillier.threshold import KeyShare, ThresholdPublicKey

__all__ = ["PaillierAggregator", "EncryptedUpdate"]


@dataclass(frozen=True)
class EncryptedUpdate:
    """One bank's contribution as its signed message bytes (see :class:`secagg.paillier.messages.Contribution`)."""

    bank: int
    message: bytes


class _PaillierRound(AggregationRound):
    def __init__(self, aggregator: PaillierAggregator, participants: Sequence[int], dimension: int,
                 max_weight: float, clip: float, rng: np.random.Generator, min_contributions: int) -> None:
        super().__init__(participants, dimension, max_weight, rng)
        from secagg.aggregation.codec import UpdateCodec
        from secagg.paillier.roles import PaillierCoordinator
        from secagg.transport.sessions import PaillierSpec

        self.aggregator = aggregator
        self.key = aggregator.key()
        unknown = [p for p in self.participants if not 0 <= p < self.key.parties]
        if unknown:
            raise ParameterError(f"clients {unknown} hold no key share (the key was set up for {self.key.parties})")
        floor = max(aggregator.min_contributors_for(len(self.participants)), int(min_contributions))
        if floor > len(self.participants):
            raise ParameterError(f"a round of {len(self.participants)} banks cannot reach {floor} contributions")
        for bank in self.participants:  # a bank's own floor only ever rises (e.g. DP's min_shares)
            aggregator.banks[bank].require_at_least(floor)
        aggregator.round_number += 1
        encoder = FixedPointEncoder(num_clients=len(self.participants), max_weight=max_weight, clip=clip,
                                    fractional_bits=aggregator.fractional_bits)
        spec = PaillierSpec(self.key, aggregator.verify_keys, **UpdateCodec.spec_values(encoder, dimension),
                            min_contributors=floor, round=aggregator.round_number,
                            meaning={"codec": {"clip": float(clip), "max_weight": float(max_weight),
                                               "fractional_bits": int(aggregator.fractional_bits)}})
        self.codec = UpdateCodec(spec, dimension, max_weight=max_weight, clip=clip,
                                 fractional_bits=aggregator.fractional_bits)
        self.scheme, self.encoding = spec.scheme, spec.encoding
        self.ciphertext_count = self.scheme.plaintexts_for(spec.values)
        self.coordinator = PaillierCoordinator(self.key, aggregator.session_id, aggregator.verify_keys,
                                               round=aggregator.round_number, ciphertexts=self.ciphertext_count,
                                               min_contributors=floor, encoding=self.encoding,
                                               banks=self.participants,
                                               corrupt_banks=aggregator.corrupt_banks)
        self._requests = self.coordinator.start()
        self._contributions: dict[int, bytes] = {}
        self.client_seconds: dict[int, float] = {}

    # bank side -----------------------------------------------------------------------------
    def encrypt(self, client_id: int, weighted_update: np.ndarray, weight: float,
                rng: np.random.Generator) -> EncryptedUpdate:
        """What bank ``client_id`` computes: quantise (stochastic rounding driven by ``rng``), pack
        with the weight last, encrypt, prove, sign."""
        bank = self.aggregator.banks[client_id]
        request = bank.read_request(self._requests[client_id])
        values = self.codec.encode(weighted_update, weight, rng)
        return EncryptedUpdate(client_id, bank.contribute(request, self.scheme.pack(values), encoding=self.encoding))

    def _accept(self, client_id: int, weighted_update: np.ndarray, weight: float,
                rng: np.random.Generator) -> None:
        start = time.perf_counter()
        update = self.encrypt(client_id, weighted_update, weight, rng)
        self.client_seconds[client_id] = time.perf_counter() - start
        self._contributions[client_id] = update.message

    # coordinator side ----------------------------------------------------------------------
    def receive(self, client_id: int, update: EncryptedUpdate) -> None:
        """Hand one bank's contribution to the coordinator (ProtocolViolation if it is refused)."""
        if not isinstance(update, EncryptedUpdate):
            raise ProtocolViolation(f"client {client_id} sent {type(update).__name__}", party=client_id)
        self.coordinator.receive(client_id, update.message)

    def _finish(self, drop: dict[str, set[int]]) -> AggregateResult:
        from secagg.paillier.roles import PaillierRoundState

        start = time.perf_counter()
        coordinator = self.coordinator
        gone_before_input = set().union(*(drop[name] for name in DROP_BEFORE_INPUT))
        gone = set().union(*drop.values())
        cipher_bytes = 2 * ((self.key.key_bits + 7) // 8)
        sent: dict[int, int] = {}
        failures: list[str] = []

        def aborted(reason: str) -> AggregateResult:
            return AggregateResult(None, 0.0, (), self.participants, time.perf_counter() - start, sent, aborted=reason)

        try:
            requests: dict[int, bytes] = {}
            for bank in sorted(self._contributions):
                if bank in gone_before_input:
                    continue
                sent[bank] = cipher_bytes * self.ciphertext_count
                try:
                    requests = coordinator.receive(bank, self._contributions[bank]) or requests
                except ProtocolViolation as exc:
                    failures.append(str(exc))
            self._contributions.clear()
            if coordinator.state is PaillierRoundState.CONTRIBUTION:
                requests = coordinator.close_round()
            for bank in sorted(requests):
                if bank in gone or coordinator.state is not PaillierRoundState.DECRYPTION:
                    continue
                if len(coordinator.partials) >= self.key.threshold:
                    break  # in one process the rest would only repeat the work: close the round now
                reply = self.aggregator.banks[bank].handle(requests[bank])
                sent[bank] = sent.get(bank, 0) + cipher_bytes * self.ciphertext_count
                try:
                    coordinator.receive(bank, reply)
                except ProtocolViolation as exc:
                    failures.append(str(exc))
            if coordinator.state is PaillierRoundState.DECRYPTION:
                coordinator.close_round()
        except AbortError as exc:
            return aborted(str(exc))
        result = coordinator.result
        if result is None:  # the coordinator raises AbortError rather than stop short: typed anyway
            return aborted(f"the round stopped {coordinator.state.value} without a result")
        included = result.contributors
        try:
            weighted_sum, total_weight = self.codec.decode(result.plaintexts, len(included))
        except AbortError as exc:  # a contributor packed values outside their slots
            return aborted(str(exc))
        dropped = tuple(sorted(set(self.participants) - set(included)))
        return AggregateResult(weighted_sum, total_weight, tuple(included), dropped, time.perf_counter() - start,
                               sent, error_bound=self.codec.error_bound(len(included)))


class PaillierAggregator(Aggregator):
    """Paillier encryption of packed updates, decryption key split t-of-n among the banks.

    * ``key_bits``: 2048 (default) or 3072; generating safe primes takes seconds to a minute.
    * ``threshold``: partial decryptions needed; an int, a fraction of the banks (ceil), or None
      for 2/3.
    * ``corrupt_banks``: how many banks may collude with the coordinator; None: the most that
      ``t`` tolerates (``t > c`` and ``2t > n + c``). Checked: ParameterError naming the bound.
    * ``min_contributors``: no bank helps decrypt an aggregate of fewer contributions; None means
      ``c + 2`` (two honest ones at least). DP raises it to its ``min_shares``.
    * ``fractional_bits``: fixed-point precision, as for the masking path.
    * ``keys``: an existing ``(ThresholdPublicKey, [KeyShare, ...])`` setup to reuse (with
      verification keys: :func:`secagg.paillier.generate_threshold_keypair` publishes them).
    * ``verify_keys``: the network coordinator's form, ``keys=(public, None)`` with every bank's
      Ed25519 key: it holds no share, runs no bank and only announces rounds
      (:meth:`session_spec`); the banks are their own processes.
    """

    name = "paillier"

    def __init__(self, *, key_bits: int = 2048, threshold: int | float | None = None, fractional_bits: int = 16,
                 keys=None, corrupt_banks: int | None = None, min_contributors: int | None = None,
                 verify_keys=None) -> None:
        from secagg.paillier import _gmpy2, _phe

        _phe(), _gmpy2()  # fail now, with the extra's name, rather than mid-training
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or threshold <= 0 or (isinstance(threshold, float) and threshold > 1)):
            raise ParameterError(f"threshold must be a positive int, a fraction in (0, 1], or None; got {threshold!r}")
        self.key_bits = key_bits
        self.threshold = threshold
        self.fractional_bits = fractional_bits
        self.corrupt_banks = corrupt_banks
        self.min_contributors = min_contributors
        self.public_key: ThresholdPublicKey | None = None
        self.banks: dict[int, BankSession] = {}  # bank id -> its session (each would be its own process)
        self.verify_keys: dict[int, bytes] = {}
        self.session_id = b""
        self.round_number = 0
        self.setup_seconds = 0.0
        self._shares: list[KeyShare] | None = None
        if keys is not None:
            public, shares = keys
            if not public.verifiable:
                raise ParameterError("the key has no verification keys: partial decryptions could not be proven")
            self.public_key, self._shares = public, None if shares is None else list(shares)
        if verify_keys is not None:
            from secagg.paillier.roles import _check_identities

            if self.public_key is None or self._shares is not None:
                raise ParameterError("verify_keys is for the network coordinator: keys=(public, None)")
            self.verify_keys = _check_identities(self.public_key, verify_keys)
        if self.public_key is not None:
            from secagg.paillier.roles import paillier_threat_model

            key = self.public_key
            paillier_threat_model(key.parties, key.threshold, self.min_contributors_for(key.parties),
                                  self.corrupt_banks)  # ParameterError naming the bound, now

    def key(self) -> ThresholdPublicKey:
        """The public key (ParameterError before :meth:`setup` has dealt one)."""
        if self.public_key is None:
            raise ParameterError("the aggregator has no key yet: setup() deals one, or pass keys=")
        return self.public_key

    def min_contributors_for(self, round_size: int) -> int:
        """The banks' floor: ``min_contributors``, or ``c + 2`` for the corrupt banks tolerated."""
        if self.min_contributors is not None:
            return self.min_contributors
        from secagg.paillier.roles import default_min_contributors

        key = self.key()
        return default_min_contributors(key.parties, key.threshold, self.corrupt_banks)

    def session_spec(self, num_clients, encoder, dimension, *, min_contributions=1):
        """Network mode: the Paillier round a coordinator announces (it needs ``verify_keys``)."""
        from secagg.aggregation.codec import UpdateCodec
        from secagg.transport.sessions import PaillierSpec

        if self.public_key is None or not self.verify_keys:
            raise ParameterError("the Paillier coordinator needs keys=(public, None) and every bank's verify_keys")
        if num_clients != self.public_key.parties:
            raise ParameterError(f"the key was set up for {self.public_key.parties} banks, not {num_clients}")
        floor = max(self.min_contributors_for(num_clients), int(min_contributions))
        return PaillierSpec(self.public_key, self.verify_keys, **UpdateCodec.spec_values(encoder, dimension),
                            min_contributors=floor)

    def setup_step(self, num_clients: int) -> str | None:
        """Dealing the key is the long step (safe primes: seconds to a minute); the rest is quick."""
        if self.public_key is not None:
            return None
        return (f"dealing a {self.key_bits}-bit threshold Paillier key to {num_clients} banks "
                "(safe primes: seconds to a minute)")

    def setup(self, num_clients: int) -> None:
        """The dealer's key generation for banks ``0..num_clients-1`` (once), then one bank session
        (key share, Ed25519 identity) per bank, and a fresh session id."""
        from secagg.crypto.randomness import system_randomness
        from secagg.crypto.signatures import IdentityKey
        from secagg.paillier import generate_threshold_keypair
        from secagg.paillier.roles import BankSession

        if self.public_key is not None and self.banks:
            if num_clients > self.public_key.parties:
                raise ParameterError(f"the key was set up for {self.public_key.parties} banks, not {num_clients}")
            return
        if self.public_key is None:
            if isinstance(self.threshold, int):
                t = self.threshold
            else:
                t = math.ceil((2 / 3 if self.threshold is None else self.threshold) * num_clients - 1e-9)
            t = max(1, min(num_clients, t))
            start = time.perf_counter()
            self.public_key, self._shares = generate_threshold_keypair(num_clients, t, self.key_bits)
            self.setup_seconds = time.perf_counter() - start
        elif self._shares is None:
            raise ParameterError("this aggregator holds no key shares (the network coordinator's form): "
                                 "the banks run their own processes")
        key, shares = self.public_key, self._shares
        if num_clients > key.parties:
            raise ParameterError(f"the key was set up for {key.parties} banks, not {num_clients}")
        identities = {i: IdentityKey.generate(system_randomness()) for i in range(key.parties)}
        self.verify_keys = {i: k.public_bytes for i, k in identities.items()}
        self.session_id = os.urandom(16)
        floor = self.min_contributors_for(key.parties)
        self.banks = {share.index - 1: BankSession(share, self.session_id, identities[share.index - 1],
                                                   self.verify_keys, min_contributors=floor,
                                                   corrupt_banks=self.corrupt_banks)
                      for share in shares}
        self._shares = None  # the coordinator side keeps no share; only the bank sessions do

    def open_round(self, participants, dimension, *, max_weight, clip=1.0, rng, min_contributions=1):
        if not self.banks and self.public_key is not None and self._shares is None:
            raise ParameterError("this aggregator holds no key shares (the network coordinator's form): "
                                 "it cannot run a round in this process")
        if not self.banks:
            self.setup(max(participants) + 1)
        return _PaillierRound(self, participants, dimension, max_weight, clip, rng, min_contributions)
