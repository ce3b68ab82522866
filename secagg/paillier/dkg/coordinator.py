"""The coordinator's side of the dealerless key ceremony: a relay that holds nothing secret.

Each round, every bank sends one message: its broadcast and one signed *letter* per other bank
(the part sealed for it with AES-GCM, possibly empty); once all have arrived, the coordinator sends
each bank one bundle: every other bank's letter to it, with the sender's broadcast. It checks every
hello and letter signature on receipt (a bad one is refused naming its bank, before anything
changes), cannot read a sealed part, and cannot alter anything it relays (the banks check the
signatures again, and name the coordinator). At the end it checks that every bank signed the same
public key and hands that key out (:attr:`DkgCoordinator.public_key`). protocols/dkg-v1.md,
section 7, states its rules (R1 to R8).

A bank that does not answer before the driver closes the round (:meth:`close_round`) aborts the
ceremony (:class:`AbortError` naming it, state ``ABORTED``): the driver starts a fresh ceremony, with a new id and new
randomness, once the bank is back (:mod:`secagg.paillier.dkg.ceremony`,
:mod:`secagg.transport.dkg_session`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from secagg.crypto.signatures import verify_signature
from secagg.errors import AbortError, CryptoError, MalformedMessage, ParameterError, ProtocolViolation
from secagg.paillier.dkg.bank import hello_statement, key_statement, letter_statement
from secagg.paillier.dkg.config import DkgConfig
from secagg.paillier.dkg.messages import CEREMONY_ID_BYTES, Bundle, BundleEntry, DkgAbort, Hello, Keys, RoundKind, \
    RoundMessage, decode_dkg_message

if TYPE_CHECKING:
    from secagg.paillier.threshold import ThresholdPublicKey

__all__ = ["DkgCoordinator", "CoordinatorState", "RelayStats"]



class CoordinatorState(Enum):
    COLLECTING = "collecting"
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass
class RelayStats:
    rounds: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    kinds: dict = field(default_factory=dict)  # round kind name -> rounds of that kind


class DkgCoordinator:
    """Relays ceremony ``ceremony_id`` among ``config.banks`` banks (ids 0..n-1)."""

    def __init__(self, config: DkgConfig, ceremony_id: bytes, verify_keys: Mapping[int, bytes]) -> None:
        if len(bytes(ceremony_id)) != CEREMONY_ID_BYTES:
            raise ParameterError(f"a ceremony id has {CEREMONY_ID_BYTES} bytes")
        keys = {int(i): bytes(k) for i, k in dict(verify_keys).items()}
        if set(keys) != set(range(config.banks)):
            raise ParameterError("verify_keys must hold one key per bank id 0..n-1")
        self.config, self.ceremony_id, self.verify_keys = config, bytes(ceremony_id), keys
        self.state = CoordinatorState.COLLECTING
        self.round = 0
        self._inbox: dict[int, Hello | RoundMessage] = {}
        self.stats = RelayStats()
        self.public_key: ThresholdPublicKey | None = None
        self.signatures: dict[int, bytes] = {}
        self.abort_reason: str | None = None
        self.missing: set[int] = set()  # banks that did not answer when the ceremony aborted
        self.misbehaving: dict[int, str] = {}

    @property
    def expected_clients(self) -> set[int]:
        return set(range(self.config.banks))

    @property
    def pending_clients(self) -> set[int]:
        return set() if self.state is not CoordinatorState.COLLECTING else self.expected_clients - set(self._inbox)

    @property
    def finished(self) -> bool:
        return self.state is not CoordinatorState.COLLECTING

    def receive(self, bank: int, data: bytes) -> dict[int, bytes]:
        """Take bank ``bank``'s message; the bundles to send (one per bank) once the round is complete."""
        if self.state is not CoordinatorState.COLLECTING:
            raise ProtocolViolation(f"bank {bank} spoke after the ceremony ended", party=bank)
        try:
            message = decode_dkg_message(data)
        except MalformedMessage as exc:
            exc.party = bank
            raise
        if message.ceremony_id != self.ceremony_id or message.party != bank:
            raise ProtocolViolation(f"bank {bank} sent a message of another ceremony or bank", party=bank)
        if isinstance(message, DkgAbort):
            return self.abort(f"bank {bank} aborted the ceremony: {message.reason}", missing={bank})
        if bank in self._inbox:
            raise ProtocolViolation(f"bank {bank} spoke twice in round {self.round}", party=bank)
        if self.round == 0:
            if not isinstance(message, Hello):
                raise ProtocolViolation(f"bank {bank} must say hello first", party=bank)
            try:
                verify_signature(self.verify_keys[bank], message.signature,
                                 hello_statement(self.ceremony_id, bank, self.config, message.agreement_key))
            except CryptoError:
                raise ProtocolViolation(f"bank {bank}'s hello is not signed by bank {bank}", party=bank) from None
        else:
            if not isinstance(message, RoundMessage) or message.round != self.round:
                raise ProtocolViolation(f"bank {bank} sent a message for another round (this is round {self.round})",
                                        party=bank)
            others = [j for j in range(self.config.banks) if j != bank]
            if [letter.recipient for letter in message.letters] != others:
                raise ProtocolViolation(f"bank {bank} must send one letter to every other bank", party=bank)
            digest = hashlib.sha256(message.public).digest()
            for letter in message.letters:
                try:
                    verify_signature(self.verify_keys[bank], letter.signature, letter_statement(
                        self.ceremony_id, bank, letter.recipient, self.round, message.kind, message.transcript, digest,
                        letter.sealed))
                except CryptoError:
                    raise ProtocolViolation(f"bank {bank}'s letter to bank {letter.recipient} is not signed by "
                                            f"bank {bank}", party=bank) from None
        self.stats.bytes_in += len(data)
        self._inbox[bank] = message
        if len(self._inbox) < self.config.banks:
            return {}
        return self._relay()

    def _relay(self) -> dict[int, bytes]:
        inbox, self._inbox = self._inbox, {}
        # receive() took only hellos in round 0 and only this round's messages after it
        hellos = {b: m for b, m in inbox.items() if isinstance(m, Hello)}
        messages = {b: m for b, m in inbox.items() if isinstance(m, RoundMessage)}
        if self.round > 0:
            kinds = {m.kind for m in messages.values()}
            if len(kinds) != 1:
                counts = {k: sum(m.kind is k for m in messages.values()) for k in kinds}
                majority = max(counts, key=counts.__getitem__)
                odd = sorted(b for b, m in messages.items() if m.kind is not majority)
                self.misbehaving.update({b: "left the ceremony's round sequence" for b in odd})
                return self.abort(f"banks {odd} left the ceremony's round sequence")
            kind = kinds.pop()
            self.stats.kinds[kind.name] = self.stats.kinds.get(kind.name, 0) + 1
            if kind is RoundKind.FINISH:
                outcome = self._finish(messages)
                if self.state is CoordinatorState.ABORTED:
                    return outcome
        outbox: dict[int, bytes] = {}
        for recipient in range(self.config.banks):
            senders = [s for s in range(self.config.banks) if s != recipient]
            if self.round == 0:
                data = Keys(self.ceremony_id, recipient, tuple(
                    (s, hellos[s].agreement_key, hellos[s].signature) for s in senders)).encode()
            else:
                entries = []
                for sender in senders:
                    message = messages[sender]
                    letter = next(x for x in message.letters if x.recipient == recipient)
                    entries.append(BundleEntry(sender, message.kind, message.transcript, message.public,
                                               letter.sealed, letter.signature))
                data = Bundle(self.ceremony_id, recipient, self.round, tuple(entries)).encode()
            self.stats.bytes_out += len(data)
            outbox[recipient] = data
        self.round += 1
        self.stats.rounds += 1
        return outbox

    def _finish(self, inbox: dict[int, RoundMessage]) -> dict[int, bytes]:
        from secagg.paillier.threshold import ThresholdPublicKey

        documents = {b: m.public[96:] for b, m in inbox.items()}
        first = documents[0]
        disagree = sorted(b for b, d in documents.items() if d != first or inbox[b].public[64:96] != inbox[0].public[64:96])
        if disagree:
            return self.abort(f"banks {disagree} finished with another key than bank 0")
        try:
            public = ThresholdPublicKey.from_json(json.loads(first), min_key_bits=self.config.key_bits)
        except (ParameterError, ValueError) as exc:
            return self.abort(f"the banks agreed on an invalid key: {exc}")
        transcript = inbox[0].public[64:96]
        for b, message in inbox.items():
            try:
                verify_signature(self.verify_keys[b], message.public[:64],
                                 key_statement(self.ceremony_id, public.fingerprint, transcript))
            except CryptoError:
                self.misbehaving[b] = "did not sign the key it reported"
                return self.abort(f"bank {b} did not sign the key it reported")
        self.public_key = public
        self.signatures = {b: m.public[:64] for b, m in inbox.items()}
        self.state = CoordinatorState.COMPLETED
        return {}

    def close_round(self) -> dict[int, bytes]:
        """The round's deadline passed: the ceremony aborts, naming the banks that did not answer."""
        if self.state is not CoordinatorState.COLLECTING:
            return {}
        missing = self.pending_clients
        return self.abort(f"banks {sorted(missing)} did not answer in round {self.round}", missing=missing)

    def abort(self, reason: str, *, missing: set[int] | None = None) -> dict[int, bytes]:
        """End the ceremony; an ABORT for every bank."""
        if self.state is CoordinatorState.ABORTED:
            return {}
        self.state, self.abort_reason = CoordinatorState.ABORTED, reason
        self.missing = set(missing or ())
        return {b: DkgAbort(self.ceremony_id, b, reason).encode() for b in range(self.config.banks)}

    def result(self):
        """The public key once the ceremony completed; :class:`AbortError` otherwise."""
        if self.state is CoordinatorState.COMPLETED:
            return self.public_key
        raise AbortError(f"the key ceremony did not complete: {self.abort_reason or 'still running'}", round="dkg")
