"""The server side of the masking protocol: a sans-IO sequence of round states.

``receive(client_id, data)`` takes one client's message; when the last expected message of a round
arrives the round closes by itself, and the driver calls ``close_round()`` when the round's time
is up. Both return the messages to send next, as ``{client_id: bytes}``. Each round state knows only
what its round needs and hands the next one exactly what it carries forward (after the model of
Google's fcp/secagg server). Time never enters except through ``close_round()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from secagg.crypto.keys import AgreementKey
from secagg.crypto.prg import apply_masks
from secagg.crypto.randomness import system_randomness
from secagg.crypto.shamir import LIMBS_PER_SECRET, limbs_to_secrets, reconstruct
from secagg.crypto.signatures import verify_signature
from secagg.errors import (
    AbortError,
    CryptoError,
    MalformedMessage,
    ParameterError,
    ProtocolViolation,
    SessionStateError,
)
from secagg.protocol import derivation as d
from secagg.protocol.client import check_session_id, check_verify_keys
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.graph import NeighbourGraph
from secagg.protocol.messages import (
    AbortNotice,
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyDirectory,
    KeyEntry,
    MaskedInput,
    Message,
    ShareBundles,
    ShareKeys,
    UnmaskingShares,
    UnmaskRequest,
    decode_message,
    encode_broadcast,
)

__all__ = ["ServerState", "AggregationResult", "ServerSession"]


class ServerState(str, Enum):
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class AggregationResult:
    """What the server learns: the sum over ``survivors`` (sorted ids) modulo 2**modulus_bits."""

    aggregate: np.ndarray
    survivors: list[int]
    dropped: dict[str, list[int]] = field(default_factory=dict)


Outbox = dict[int, bytes]


@dataclass
class _Context:
    config: SecAggConfig
    session_id: bytes
    graph: NeighbourGraph
    verify_keys: dict[int, bytes] | None
    dropped: dict[str, list[int]]

    def abort(self, round_name: Round, reason: str) -> AbortError:
        return AbortError(f"{round_name.value}: {reason}", round=round_name.value)

    def alive_with_enough_holders(self, candidates: set[int]) -> set[int]:
        """Drop, until none is left to drop, every client with fewer than t share holders alive.

        In the complete graph this is all-or-nothing (every client's holders are all clients).
        """
        t = self.config.threshold
        if self.graph.is_complete:
            return candidates if len(candidates) >= t else set()
        alive = set(candidates)
        while True:
            short = {u for u in alive if sum(v in alive for v in self.graph.holders(u).tolist()) < t}
            if not short:
                return alive
            alive -= short


class _RoundState:
    name: Round
    message_type: type[Message]

    def __init__(self, ctx: _Context, expected: set[int]) -> None:
        self.ctx = ctx
        self.expected = frozenset(expected)
        self.received: dict[int, Message] = {}

    def validate(self, sender: int, message: Message) -> None:
        """Raise ProtocolViolation if ``message`` must be refused; change nothing."""

    def accept(self, sender: int, message: Message) -> None:
        self.received[sender] = message

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        raise NotImplementedError

    def log_dropped(self) -> None:
        self.ctx.dropped[self.name.value] = sorted(self.expected - self.received.keys())


def _violation(sender: int, text: str) -> ProtocolViolation:
    return ProtocolViolation(f"client {sender}: {text}", party=sender)


# ---------------------------------------------------------------------------- round 0

class _AdvertiseKeysRound(_RoundState):
    name = Round.ADVERTISE_KEYS
    message_type = AdvertiseKeys

    def __init__(self, ctx: _Context) -> None:
        super().__init__(ctx, set(range(ctx.config.num_clients)))
        self.key_owner: dict[bytes, int] = {}
        # Agreeing with each advertised key once refuses low-order points, whose shared secret is
        # all zeros: such a key would make every honest peer's agreement fail later.
        self.probe = AgreementKey.generate(system_randomness())

    def validate(self, sender: int, message: AdvertiseKeys) -> None:  # type: ignore[override]
        if message.cipher_public_key == message.mask_public_key:
            raise _violation(sender, "advertised the same key twice")
        for key in (message.cipher_public_key, message.mask_public_key):
            try:
                self.probe.exchange(key)
            except CryptoError:
                raise _violation(sender, "advertised an unusable X25519 key (low-order point)") from None
        for key in (message.cipher_public_key, message.mask_public_key):
            if key in self.key_owner:
                raise _violation(sender, f"advertised a public key already used by client {self.key_owner[key]}")
        if self.ctx.verify_keys is None:
            if message.signature is not None:
                raise _violation(sender, "signed its keys in honest-but-curious mode")
            return
        if message.signature is None:
            raise _violation(sender, "unsigned keys in malicious mode")
        try:
            verify_signature(self.ctx.verify_keys[sender], message.signature, d.advertise_payload(
                self.ctx.session_id, sender, message.cipher_public_key, message.mask_public_key))
        except CryptoError:
            raise _violation(sender, "bad signature on its advertised keys") from None

    def accept(self, sender: int, message: AdvertiseKeys) -> None:  # type: ignore[override]
        super().accept(sender, message)
        self.key_owner[message.cipher_public_key] = sender
        self.key_owner[message.mask_public_key] = sender

    def close(self):
        ctx = self.ctx
        self.log_dropped()
        alive = ctx.alive_with_enough_holders(set(self.received))
        if len(alive) < ctx.config.threshold:
            raise ctx.abort(self.name, f"{len(alive)} clients can go on, fewer than the threshold "
                                       f"{ctx.config.threshold}")
        entries = {u: self.received[u].entry for u in sorted(alive)}  # type: ignore[attr-defined]
        peers: dict[int, np.ndarray] = {}
        if ctx.graph.is_complete:
            everyone = np.array(sorted(alive), dtype=np.int64)
            for u in everyone.tolist():
                peers[u] = everyone[everyone != u]
            outbox = encode_broadcast(KeyDirectory(ctx.session_id, 0, tuple(entries.values())), everyone.tolist())
        else:
            outbox = {}
            for u in sorted(alive):
                neighbours = [v for v in ctx.graph.neighbours(u).tolist() if v in alive]
                peers[u] = np.array(neighbours, dtype=np.int64)
                listed = sorted(neighbours + [u])
                outbox[u] = KeyDirectory(ctx.session_id, u, tuple(entries[v] for v in listed)).encode()
        return _ShareKeysRound(ctx, entries, peers), outbox


# ---------------------------------------------------------------------------- round 1

class _ShareKeysRound(_RoundState):
    name = Round.SHARE_KEYS
    message_type = ShareKeys

    def __init__(self, ctx: _Context, keys: dict[int, KeyEntry], peers: dict[int, np.ndarray]) -> None:
        super().__init__(ctx, set(keys))
        self.keys = keys
        self.peers = peers  # the holders each client must seal shares to

    def validate(self, sender: int, message: ShareKeys) -> None:  # type: ignore[override]
        if not np.array_equal(message.peers, self.peers[sender]):
            raise _violation(sender, "sealed shares for a set of clients other than its share holders")

    def close(self):
        ctx = self.ctx
        self.log_dropped()
        alive = ctx.alive_with_enough_holders(set(self.received))
        if len(alive) < ctx.config.threshold:
            raise ctx.abort(self.name, f"{len(alive)} clients can go on, fewer than the threshold "
                                       f"{ctx.config.threshold}")
        # Route every bundle between two live clients, as whole arrays: sort all (recipient,
        # sender) pairs once and cut the table into one ShareBundles message per recipient.
        live = np.array(sorted(alive), dtype=np.int64)
        recipients, senders, ciphertexts = [], [], []
        for sender in live.tolist():
            message = self.received[sender]
            keep = np.isin(message.peers, live)  # type: ignore[attr-defined]
            recipients.append(message.peers[keep])  # type: ignore[attr-defined]
            senders.append(np.full(int(keep.sum()), sender, dtype=np.int64))
            ciphertexts.append(message.ciphertexts[keep])  # type: ignore[attr-defined]
        recipient_col = np.concatenate(recipients).astype(np.int64)
        sender_col = np.concatenate(senders)
        order = np.lexsort((sender_col, recipient_col))
        recipient_col, sender_col = recipient_col[order], sender_col[order]
        table = np.concatenate(ciphertexts)[order]
        starts = np.searchsorted(recipient_col, live, side="left")
        stops = np.searchsorted(recipient_col, live, side="right")
        mask_peers = {u: sender_col[a:b] for u, a, b in zip(live.tolist(), starts, stops)}
        outbox = {u: ShareBundles(ctx.session_id, u, sender_col[a:b], table[a:b]).encode()
                  for u, a, b in zip(live.tolist(), starts, stops)}
        commitments = {u: self.received[u].self_mask_commitment for u in alive}  # type: ignore[attr-defined]
        keys = {u: self.keys[u] for u in alive}
        return _MaskedInputRound(ctx, keys, commitments, mask_peers), outbox


# ---------------------------------------------------------------------------- round 2

class _MaskedInputRound(_RoundState):
    name = Round.MASKED_INPUT
    message_type = MaskedInput

    def __init__(self, ctx: _Context, keys: dict[int, KeyEntry], commitments: dict[int, bytes],
                 mask_peers: dict[int, np.ndarray]) -> None:
        super().__init__(ctx, set(mask_peers))
        self.keys = keys
        self.commitments = commitments
        self.mask_peers = mask_peers
        self.sum = ctx.config.ring.zeros(ctx.config.vector_length)

    def validate(self, sender: int, message: MaskedInput) -> None:  # type: ignore[override]
        cfg = self.ctx.config
        if message.modulus_bits != cfg.modulus_bits:
            raise _violation(sender, f"masked input in Z_2^{message.modulus_bits}, expected Z_2^{cfg.modulus_bits}")
        if message.values.size != cfg.vector_length:
            raise _violation(sender, f"masked input of length {message.values.size}, expected {cfg.vector_length}")

    def accept(self, sender: int, message: MaskedInput) -> None:  # type: ignore[override]
        np.add(self.sum, message.values, out=self.sum)
        self.received[sender] = None  # type: ignore[assignment]  # y_u is in the sum; keep no reference

    def close(self):
        ctx = self.ctx
        self.log_dropped()
        survivors = np.array(sorted(self.received), dtype=np.int64)
        if survivors.size < ctx.config.threshold:
            raise ctx.abort(self.name, f"{survivors.size} masked inputs, fewer than the threshold "
                                       f"{ctx.config.threshold}")
        held_by = {u: _held_by(ctx, u, peers) for u, peers in self.mask_peers.items()}
        holders_alive = np.bincount(np.concatenate([held_by[u] for u in survivors.tolist()]),
                                    minlength=ctx.config.num_clients)
        dropped_partners = np.setdiff1d(np.concatenate([self.mask_peers[u] for u in survivors.tolist()]), survivors)
        needed = np.concatenate([survivors, dropped_partners])
        short = needed[holders_alive[needed] < ctx.config.threshold]
        if short.size:
            u = int(short[0])
            raise ctx.abort(self.name, f"client {u} has {int(holders_alive[u])} share holders left, fewer than "
                                       f"the threshold {ctx.config.threshold}; its mask cannot be removed")
        carry = _Unmasking(self.keys, self.commitments, self.mask_peers, held_by, survivors, self.sum)
        if ctx.config.malicious:
            outbox = encode_broadcast(ConsistencyRequest(ctx.session_id, 0, survivors), survivors.tolist())
            return _ConsistencyRound(ctx, carry), outbox
        outbox = encode_broadcast(UnmaskRequest(ctx.session_id, 0, survivors), survivors.tolist())
        return _UnmaskingRound(ctx, carry, set(survivors.tolist())), outbox


def _held_by(ctx: _Context, client: int, mask_peers: np.ndarray) -> np.ndarray:
    """Sorted ids whose shares ``client`` holds: its mask peers, and itself in the complete graph."""
    if ctx.graph.is_complete:
        return np.sort(np.append(mask_peers, client))
    return mask_peers


@dataclass
class _Unmasking:
    """What the unmasking needs from the earlier rounds."""

    keys: dict[int, KeyEntry]
    commitments: dict[int, bytes]
    mask_peers: dict[int, np.ndarray]
    held_by: dict[int, np.ndarray]
    survivors: np.ndarray
    sum: np.ndarray


# ---------------------------------------------------------------------------- round 3 (malicious)

class _ConsistencyRound(_RoundState):
    name = Round.CONSISTENCY_CHECK
    message_type = ConsistencySignature

    def __init__(self, ctx: _Context, carry: _Unmasking) -> None:
        super().__init__(ctx, set(carry.survivors.tolist()))
        self.carry = carry
        self.payload = d.consistency_payload(ctx.session_id, carry.survivors)

    def validate(self, sender: int, message: ConsistencySignature) -> None:  # type: ignore[override]
        try:
            verify_signature(self.ctx.verify_keys[sender], message.signature, self.payload)  # type: ignore[index]
        except CryptoError:
            raise _violation(sender, "bad signature on the survivor list") from None

    def close(self):
        ctx = self.ctx
        self.log_dropped()
        signers = set(self.received)
        if len(signers) < ctx.config.threshold:
            raise ctx.abort(self.name, f"{len(signers)} clients signed the survivor list, fewer than the "
                                       f"threshold {ctx.config.threshold}")
        signatures = tuple((u, self.received[u].signature) for u in sorted(signers))  # type: ignore[attr-defined]
        # Ask only the signers that will see t signatures from their own share holders.
        recipients = [u for u in sorted(signers)
                      if ctx.graph.is_complete or
                      sum(v in signers for v in ctx.graph.holders(u).tolist()) >= ctx.config.threshold]
        outbox = encode_broadcast(UnmaskRequest(ctx.session_id, 0, self.carry.survivors, signatures), recipients)
        return _UnmaskingRound(ctx, self.carry, set(recipients)), outbox


# ---------------------------------------------------------------------------- round 4

class _UnmaskingRound(_RoundState):
    name = Round.UNMASKING
    message_type = UnmaskingShares

    def __init__(self, ctx: _Context, carry: _Unmasking, asked: set[int]) -> None:
        super().__init__(ctx, asked)
        self.carry = carry

    def validate(self, sender: int, message: UnmaskingShares) -> None:  # type: ignore[override]
        held = self.carry.held_by[sender]
        alive = np.isin(held, self.carry.survivors)
        if not np.array_equal(message.self_mask_owners, held[alive]):
            raise _violation(sender, "revealed self-mask shares for other clients than the survivors it holds for")
        if not np.array_equal(message.mask_key_owners, held[~alive]):
            raise _violation(sender, "revealed mask-key shares for other clients than the dropped ones it holds for")

    def close(self):
        ctx = self.ctx
        self.log_dropped()
        carry = self.carry
        survivors = carry.survivors
        responders = sorted(self.received)
        self_masks = self._reconstruct(responders, survivors, "self_mask")
        dropped = np.setdiff1d(np.concatenate([carry.mask_peers[u] for u in survivors.tolist()]), survivors)
        mask_keys = self._reconstruct(responders, dropped, "mask_key")
        add_seeds: list[bytes] = []
        subtract_seeds: list[bytes] = []
        for owner, seed in zip(survivors.tolist(), self_masks):
            if d.self_mask_commitment(ctx.session_id, owner, seed) != carry.commitments[owner]:
                raise ctx.abort(self.name, f"the self-mask shares of client {owner} are inconsistent "
                                           "(a share holder sent a wrong share)")
            subtract_seeds.append(seed)
        survivor_set = set(survivors.tolist())
        for owner, private in zip(dropped.tolist(), mask_keys):
            key = AgreementKey.from_private_bytes(private)
            if key.public_bytes != carry.keys[owner].mask_public_key:
                raise ctx.abort(self.name, f"the mask-key shares of client {owner} are inconsistent "
                                           "(a share holder sent a wrong share)")
            for peer in carry.mask_peers[owner].tolist():
                if peer not in survivor_set:
                    continue
                seed = d.pairwise_mask_seed(key.exchange(carry.keys[peer].mask_public_key),
                                            ctx.session_id, owner, peer)
                # the survivor added +PRG when its id is below the dropped client's, -PRG above
                (subtract_seeds if peer < owner else add_seeds).append(seed)
        aggregate = carry.sum
        apply_masks(aggregate, add_seeds, subtract_seeds, ctx.config.ring)
        return AggregationResult(aggregate, survivors.tolist(), dict(ctx.dropped)), {}

    def _reconstruct(self, responders: list[int], owners: np.ndarray, kind: str) -> list[bytes]:
        """Reconstruct one secret per owner from the first t responding holders (batched)."""
        t = self.ctx.config.threshold
        if owners.size == 0:
            return []
        owner_col, holder_col, share_rows = [], [], []
        for w in responders:
            message = self.received[w]
            ids = getattr(message, f"{kind}_owners")
            owner_col.append(ids.astype(np.int64))
            holder_col.append(np.full(ids.size, w, dtype=np.int64))
            share_rows.append(getattr(message, f"{kind}_shares"))
        owner_all = np.concatenate(owner_col) if owner_col else np.zeros(0, np.int64)
        holder_all = np.concatenate(holder_col) if holder_col else np.zeros(0, np.int64)
        shares_all = np.concatenate(share_rows) if share_rows else np.zeros((0, LIMBS_PER_SECRET), np.uint32)
        keep = np.isin(owner_all, owners)
        owner_all, holder_all, shares_all = owner_all[keep], holder_all[keep], shares_all[keep]
        order = np.lexsort((holder_all, owner_all))
        owner_all, holder_all, shares_all = owner_all[order], holder_all[order], shares_all[order]
        present, starts, counts = np.unique(owner_all, return_index=True, return_counts=True)
        available = np.zeros(owners.size, dtype=np.int64)
        available[np.searchsorted(owners, present)] = counts
        if np.any(available < t):
            i = int(np.argmax(available < t))
            u = int(owners[i])
            raise self.ctx.abort(self.name, f"{int(available[i])} {kind.replace('_', '-')} shares of client "
                                            f"{u} arrived, fewer than the threshold {t}")
        rows = starts[:, None] + np.arange(t)[None, :]
        limbs = reconstruct(holder_all[rows] + 1, shares_all[rows])
        try:
            return limbs_to_secrets(limbs)
        except CryptoError:
            raise self.ctx.abort(self.name, f"{kind.replace('_', '-')} shares are inconsistent "
                                            "(a share holder sent a wrong share)") from None


# ---------------------------------------------------------------------------- the session

class ServerSession:
    """The server's part in one secure-aggregation session.

    In malicious mode the server needs every client's public ``verify_keys`` (Ed25519).
    """

    def __init__(self, config: SecAggConfig, session_id: bytes, *,
                 verify_keys: Mapping[int, bytes] | None = None) -> None:
        if not isinstance(config, SecAggConfig):
            raise ParameterError("config must be a SecAggConfig")
        session_id = check_session_id(session_id)
        self.config = config
        self.session_id = session_id
        self._ctx = _Context(config, session_id, NeighbourGraph.for_config(config, session_id),
                             check_verify_keys(config, verify_keys), {})
        self._round: _RoundState | None = _AdvertiseKeysRound(self._ctx)
        self.state = ServerState.ADVERTISE_KEYS
        self.result: AggregationResult | None = None
        self.abort_reason: str | None = None

    @property
    def expected_clients(self) -> frozenset[int]:
        """Clients whose message the current round waits for."""
        return self._round.expected if self._round is not None else frozenset()

    @property
    def pending_clients(self) -> frozenset[int]:
        """Expected clients whose message has not arrived yet."""
        if self._round is None:
            return frozenset()
        return self._round.expected - self._round.received.keys()

    @property
    def dropped(self) -> dict[str, list[int]]:
        """Per closed round, the expected clients whose message never arrived."""
        return dict(self._ctx.dropped)

    def receive(self, client_id: int, data: bytes) -> Outbox:
        """Take one message from ``client_id`` (as authenticated by the transport).

        Returns the next round's messages if this message completed the round, else ``{}``.
        Refusals (:class:`MalformedMessage`, :class:`ProtocolViolation`) leave the session unchanged.
        """
        round_state = self._require_open("receive")
        try:
            message = decode_message(data)
        except MalformedMessage as exc:
            exc.party = client_id
            raise
        sender = message.party
        if not message.FROM_CLIENT:
            raise _violation(client_id, f"sent a server-to-client {type(message).__name__}")
        if sender != client_id:
            raise _violation(client_id, f"message claims to come from client {sender}")
        if message.session_id != self.session_id:
            raise _violation(client_id, "message belongs to another session (replayed or misrouted)")
        if not 0 <= sender < self.config.num_clients:
            raise ProtocolViolation(f"unknown client {sender}", party=client_id)
        if not isinstance(message, round_state.message_type):
            raise _violation(sender, f"sent {type(message).__name__} during round {round_state.name.value}")
        if sender not in round_state.expected:
            raise _violation(sender, f"is not part of round {round_state.name.value} (dropped earlier)")
        if sender in round_state.received:
            raise _violation(sender, f"sent a second message in round {round_state.name.value}")
        round_state.validate(sender, message)
        round_state.accept(sender, message)
        if round_state.received.keys() >= round_state.expected:
            return self._close()
        return {}

    def close_round(self) -> Outbox:
        """Close the current round now (its deadline passed): missing clients count as dropped.

        Raises :class:`AbortError` if too few clients remain.
        """
        self._require_open("close_round")
        return self._close()

    def abort(self, reason: str) -> Outbox:
        """Abort the session (e.g. the driver gives up) and return abort notices for the clients
        still taking part."""
        round_state = self._require_open("abort")
        self._mark_aborted(reason)
        notice = AbortNotice(self.session_id, 0, reason[:200])
        return encode_broadcast(notice, sorted(round_state.expected))

    def _close(self) -> Outbox:
        round_name = self._round.name  # type: ignore[union-attr]
        try:
            nxt, outbox = self._round.close()  # type: ignore[union-attr]
        except AbortError as exc:
            self._mark_aborted(str(exc))
            raise
        except CryptoError as exc:  # defensive: keys were checked in round 0
            self._mark_aborted(f"{round_name.value}: {exc}")
            raise AbortError(f"{round_name.value}: {exc}", round=round_name.value) from None
        if isinstance(nxt, AggregationResult):
            self.result = nxt
            self._round = None
            self.state = ServerState.COMPLETED
        else:
            self._round = nxt
            self.state = ServerState(nxt.name.value)
        return outbox

    def _mark_aborted(self, reason: str) -> None:
        self._round = None
        self.state = ServerState.ABORTED
        self.abort_reason = reason

    def _require_open(self, what: str) -> _RoundState:
        if self._round is None:
            raise SessionStateError(f"{what}() called on a {self.state.value} session")
        return self._round
