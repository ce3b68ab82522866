"""The ceremony in one process: every bank's state machine beside the coordinator's.

:func:`generate_threshold_keypair_without_dealer` is the dealerless counterpart of
:func:`secagg.paillier.threshold.generate_threshold_keypair` (same return value), for tests,
benchmarks and simulations; deployments run one process per bank over the network
(``secagg paillier-keygen --no-dealer``, :mod:`secagg.transport.dkg_session`). Either way a
ceremony that loses a bank aborts and is restarted from scratch with a new ceremony id: nothing
of the aborted attempt is reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from secagg.crypto.randomness import RandomSource, system_randomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import AbortError, ParameterError
from secagg.paillier.dkg.bank import CeremonyStats, DkgBank, new_ceremony_id
from secagg.paillier.dkg.config import DkgConfig
from secagg.paillier.dkg.coordinator import CoordinatorState, DkgCoordinator
from secagg.paillier.threshold import KeyShare, ThresholdPublicKey

__all__ = ["CeremonyReport", "run_ceremony", "generate_threshold_keypair_without_dealer"]


@dataclass
class CeremonyReport:
    """What an in-process ceremony cost and how it went."""

    attempts: int = 0
    aborted: list[str] = field(default_factory=list)  # reason of each aborted attempt
    seconds: float = 0.0
    bank_seconds: dict[int, float] = field(default_factory=dict)  # CPU-side time per bank, last attempt
    bank_stats: dict[int, CeremonyStats] = field(default_factory=dict)
    rounds: int = 0
    bytes_relayed: int = 0  # coordinator in + out, last attempt


def run_ceremony(config: DkgConfig, identities: Mapping[int, IdentityKey], *, attempts: int = 3,
                 silent: Callable[[int, int, int], bool] | None = None,
                 observer: Callable[[str, object], None] | None = None,
                 randomness: Callable[[int, int], RandomSource] | None = None
                 ) -> tuple[ThresholdPublicKey, dict[int, KeyShare], CeremonyReport]:
    """Run the ceremony among ``identities`` (bank id -> Ed25519 key) until one attempt completes.

    ``silent(attempt, round, bank)`` (tests: a bank that drops) makes a bank say nothing in that
    round; the round then closes as at a deadline and the attempt aborts. ``observer(who, party)``
    is called after every step of every party (tests inspect their state). ``randomness(attempt,
    bank)`` gives a bank its random source (tests: a test-only seeded one; default the OS CSPRNG).
    Returns the public key,
    every bank's KeyShare by bank id, and a report; :class:`AbortError` after ``attempts`` aborts.
    """
    if set(identities) != set(range(config.banks)):
        raise ParameterError("one identity per bank id 0..n-1")
    verify_keys = {i: k.public_bytes for i, k in identities.items()}
    report = CeremonyReport()
    started = time.perf_counter()
    for attempt in range(attempts):
        report.attempts += 1
        ceremony_id = new_ceremony_id()
        coordinator = DkgCoordinator(config, ceremony_id, verify_keys)
        banks = {i: DkgBank(config, i, ceremony_id, identities[i], verify_keys,
                            rng=randomness(attempt, i) if randomness is not None else None)
                 for i in range(config.banks)}
        clock = {i: 0.0 for i in banks}
        pending: dict[int, bytes | None] = {}
        for i, bank in banks.items():
            tick = time.perf_counter()
            pending[i] = bank.start()
            clock[i] += time.perf_counter() - tick
            if observer:
                observer(f"bank {i}", bank)
        while coordinator.state is CoordinatorState.COLLECTING:
            outbox: dict[int, bytes] = {}
            for i in sorted(pending):
                message = pending[i]
                if message is None or (silent and silent(attempt, coordinator.round, i)):
                    continue
                outbox = coordinator.receive(i, message) or outbox
            if observer:
                observer("coordinator", coordinator)
            if not outbox:
                outbox = coordinator.close_round()
            if coordinator.state is CoordinatorState.ABORTED:
                break
            pending = {}
            for i, data in outbox.items():
                tick = time.perf_counter()
                pending[i] = banks[i].handle(data)
                clock[i] += time.perf_counter() - tick
                if observer:
                    observer(f"bank {i}", banks[i])
        if coordinator.state is CoordinatorState.COMPLETED:
            for i, data in outbox.items():  # the FINISH bundle: every bank sees every signature
                if banks[i].key_share is None:
                    banks[i].handle(data)
            report.seconds = time.perf_counter() - started
            report.bank_seconds = clock
            report.bank_stats = {i: b.stats for i, b in banks.items()}
            report.rounds = coordinator.stats.rounds
            report.bytes_relayed = coordinator.stats.bytes_in + coordinator.stats.bytes_out
            shares = {i: b.key_share for i, b in banks.items() if b.key_share is not None}
            if coordinator.public_key is None or len(shares) != len(banks):
                raise AbortError("the ceremony completed without a key for every bank", round="dkg")
            return coordinator.public_key, shares, report
        report.aborted.append(coordinator.abort_reason or "aborted")
    raise AbortError(f"the key ceremony aborted {attempts} times; last: {report.aborted[-1]}", round="dkg")


def generate_threshold_keypair_without_dealer(parties: int, threshold: int, key_bits: int = 2048, *,
                                              corrupt: int | None = None, insecure: bool = False,
                                              batch: int | None = None):
    """(public key, shares in index order) like the dealer's
    :func:`~secagg.paillier.threshold.generate_threshold_keypair`, but generated by ``parties``
    simulated banks among themselves: no step ever holds p, q, phi(N) or the decryption exponent."""
    config = DkgConfig(parties, threshold, key_bits, corrupt=corrupt, insecure=insecure, batch=batch)
    identities = {i: IdentityKey.generate(system_randomness()) for i in range(parties)}
    public, shares, _ = run_ceremony(config, identities)
    return public, [shares[i] for i in range(parties)]
