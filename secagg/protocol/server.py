"""The server side of the masking protocol: a sans-IO sequence of round states.

``receive(client_id, data)`` takes one client's message; when the last expected message of a round
arrives the round closes by itself, and the driver calls ``close_round()`` when the round's time
is up. Both return the messages to send next, as ``{client_id: bytes}``. Each round state knows only
what its round needs and hands the next one exactly what it carries forward (after the model of
Google's fcp/secagg server). Time never enters except through ``close_round()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from secagg.crypto.keys import AgreementKey
from secagg.crypto.prg import apply_masks
from secagg.crypto.randomness import system_randomness
from secagg.crypto.shamir import LIMBS_PER_SECRET, decode_with_errors, limbs_to_secrets, reconstruct
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
from secagg.protocol.graph import HolderGraph
from secagg.protocol.messages import (
    AbortNotice,
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyEntry,
    MaskedInput,
    Message,
    ShareBundles,
    ShareKeys,
    UnmaskingShares,
    UnmaskRequest,
    decode_message,
    encode_broadcast,
    encode_key_directories,
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
    """What the server learns: the sum over ``survivors`` (sorted ids) modulo 2**modulus_bits.

    ``reports``: (reporter, sender) pairs, a client that could not open the share bundle of a
    sender (it held nothing for that sender). ``misbehaving``: holder id -> why its revealed
    shares were refused (they lie off the owner's sharing polynomial: the holder lied, or the
    owner dealt inconsistent shares). Neither stopped the session.
    """

    aggregate: np.ndarray
    survivors: list[int]
    dropped: dict[str, list[int]] = field(default_factory=dict)
    reports: list[tuple[int, int]] = field(default_factory=list)
    misbehaving: dict[int, str] = field(default_factory=dict)


Outbox = dict[int, bytes]


@dataclass
class _Context:
    config: SecAggConfig
    session_id: bytes
    verify_keys: dict[int, bytes] | None
    dropped: dict[str, list[int]]
    reports: list[tuple[int, int]] = field(default_factory=list)
    misbehaving: dict[int, str] = field(default_factory=dict)

    def abort(self, round_name: Round, reason: str) -> AbortError:
        return AbortError(f"{round_name.value}: {reason}", round=round_name.value)


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


def _ids(values: Iterable[int]) -> np.ndarray:
    return np.array(sorted(values), dtype=np.int64)


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

    def _fingerprints(self, sender: int, message: AdvertiseKeys) -> tuple[bytes, bytes]:
        """Each key's agreement with the probe: equal for the same point up to a small-order point
        (X25519 clamps scalars to multiples of 8), so two encodings of one key are caught."""
        out = []
        for key in (message.cipher_public_key, message.mask_public_key):
            try:
                out.append(self.probe.exchange(key))
            except CryptoError:
                raise _violation(sender, "advertised an unusable X25519 key (low-order point)") from None
        return out[0], out[1]

    def validate(self, sender: int, message: AdvertiseKeys) -> None:  # type: ignore[override]
        cfg = self.ctx.config
        cipher, mask = self._fingerprints(sender, message)
        if cipher == mask:
            raise _violation(sender, "advertised the same key twice")
        for fingerprint in (cipher, mask):
            if fingerprint in self.key_owner:
                raise _violation(sender, f"advertised a public key already used by client "
                                         f"{self.key_owner[fingerprint]}")
        holders = message.holders
        if not cfg.is_sparse and holders.size:
            raise _violation(sender, "drew holders in the complete graph")
        if cfg.is_sparse and (holders.size != cfg.neighbors or int(holders[-1]) >= cfg.num_clients):
            raise _violation(sender, f"drew {holders.size} holders (ids < {cfg.num_clients}), expected {cfg.neighbors}")
        if self.ctx.verify_keys is None:
            if message.signature is not None:
                raise _violation(sender, "signed its keys in honest-but-curious mode")
            return
        if message.signature is None:
            raise _violation(sender, "unsigned keys in malicious mode")
        try:
            verify_signature(self.ctx.verify_keys[sender], message.signature, d.advertise_payload(
                self.ctx.session_id, sender, message.cipher_public_key, message.mask_public_key, holders))
        except CryptoError:
            raise _violation(sender, "bad signature on its advertised keys") from None

    def accept(self, sender: int, message: AdvertiseKeys) -> None:  # type: ignore[override]
        super().accept(sender, message)
        for fingerprint in self._fingerprints(sender, message):
            self.key_owner[fingerprint] = sender

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        ctx, cfg = self.ctx, self.ctx.config
        self.log_dropped()
        members = _ids(self.received)
        draws = None
        if cfg.is_sparse:  # every message of this round is an AdvertiseKeys
            draws = {u: m.holders.astype(np.int64) for u, m in self.received.items()}  # type: ignore[attr-defined]
        graph = HolderGraph(members, draws)
        alive = graph.prune(set(self.received), cfg.threshold)
        if not alive:
            raise ctx.abort(self.name, f"{len(self.received)} clients advertised keys; none keeps "
                                       f"{cfg.threshold} holders (the threshold)")
        live = _ids(alive)
        graph = HolderGraph(live, draws)
        tree = d.TranscriptTree([d.transcript_leaf(self.received[u].encode()) for u in live.tolist()])
        entries = {u: self.received[u].entry for u in live.tolist()}  # type: ignore[attr-defined]
        transcripts = {u: tree.transcript(i) for i, u in enumerate(live.tolist())}
        listed = None
        if not graph.complete:  # the recipient, its live holders and the clients that drew it
            listed = {u: sorted({u, *(h for h in graph.holders(u).tolist() if h in alive), *graph.owners(u).tolist()})
                      for u in live.tolist()}
        outbox = encode_key_directories(ctx.session_id, entries, transcripts, listed)
        return _ShareKeysRound(ctx, entries, graph, tree.root), outbox


# ---------------------------------------------------------------------------- round 1

class _ShareKeysRound(_RoundState):
    name = Round.SHARE_KEYS
    message_type = ShareKeys

    def __init__(self, ctx: _Context, keys: dict[int, KeyEntry], graph: HolderGraph, root: bytes) -> None:
        super().__init__(ctx, set(keys))
        self.keys, self.graph, self.root = keys, graph, root

    def validate(self, sender: int, message: ShareKeys) -> None:  # type: ignore[override]
        holders = self.graph.holders(sender)
        if not np.array_equal(message.peers, holders[np.isin(holders, self.graph.members)]):
            raise _violation(sender, "sealed shares for a set of clients other than its holders")

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        ctx, cfg = self.ctx, self.ctx.config
        self.log_dropped()
        alive = self.graph.prune(set(self.received), cfg.threshold)
        if not alive:
            raise ctx.abort(self.name, f"{len(self.received)} clients shared keys; none keeps {cfg.threshold} "
                                       "holders (the threshold)")
        # Route every bundle between two live clients, as whole arrays: sort all (recipient,
        # sender) pairs once and cut the table into one ShareBundles message per recipient.
        live = _ids(alive)
        recipients, senders, ciphertexts = [], [], []
        live_holders: dict[int, np.ndarray] = {}
        for sender in live.tolist():
            message = self.received[sender]
            keep = np.isin(message.peers, live)  # type: ignore[attr-defined]
            live_holders[sender] = message.peers[keep].astype(np.int64)  # type: ignore[attr-defined]
            recipients.append(live_holders[sender])
            senders.append(np.full(int(keep.sum()), sender, dtype=np.int64))
            ciphertexts.append(message.ciphertexts[keep])  # type: ignore[attr-defined]
        recipient_col = np.concatenate(recipients).astype(np.int64)
        sender_col = np.concatenate(senders)
        order = np.lexsort((sender_col, recipient_col))
        recipient_col, sender_col = recipient_col[order], sender_col[order]
        table = np.concatenate(ciphertexts)[order]
        starts = np.searchsorted(recipient_col, live, side="left")
        stops = np.searchsorted(recipient_col, live, side="right")
        held = {u: sender_col[a:b] for u, a, b in zip(live.tolist(), starts, stops)}  # owners u holds for
        outbox = {u: ShareBundles(ctx.session_id, u, sender_col[a:b], table[a:b], live_holders[u]).encode()
                  for u, a, b in zip(live.tolist(), starts, stops)}
        commitments = {u: self.received[u].self_mask_commitment for u in alive}  # type: ignore[attr-defined]
        keys = {u: self.keys[u] for u in alive}
        partners = {u: np.union1d(live_holders[u], held[u]) for u in live.tolist()}
        return _MaskedInputRound(ctx, keys, commitments, live_holders, held, partners, self.root), outbox


# ---------------------------------------------------------------------------- round 2

class _MaskedInputRound(_RoundState):
    name = Round.MASKED_INPUT
    message_type = MaskedInput

    def __init__(self, ctx: _Context, keys: dict[int, KeyEntry], commitments: dict[int, bytes],
                 holders: dict[int, np.ndarray], held: dict[int, np.ndarray], partners: dict[int, np.ndarray],
                 root: bytes) -> None:
        super().__init__(ctx, set(partners))
        self.keys, self.commitments, self.root = keys, commitments, root
        self.holders = holders  # owner -> live holders its bundle went to
        self.held = held  # holder -> owners whose bundle it received
        self.partners = partners
        self.sum = ctx.config.ring.zeros(ctx.config.vector_length)
        self.rejected: dict[int, np.ndarray] = {}

    def validate(self, sender: int, message: MaskedInput) -> None:  # type: ignore[override]
        cfg = self.ctx.config
        if message.modulus_bits != cfg.modulus_bits:
            raise _violation(sender, f"masked input in Z_2^{message.modulus_bits}, expected Z_2^{cfg.modulus_bits}")
        if message.values.size != cfg.vector_length:
            raise _violation(sender, f"masked input of length {message.values.size}, expected {cfg.vector_length}")
        if not np.all(np.isin(message.rejected, self.held[sender])):
            raise _violation(sender, "reported bundles from clients that sent it none")

    def accept(self, sender: int, message: MaskedInput) -> None:  # type: ignore[override]
        np.add(self.sum, message.values, out=self.sum)
        self.received[sender] = None  # type: ignore[assignment]  # y_u is in the sum; keep no reference
        rejected = message.rejected.astype(np.int64)
        self.rejected[sender] = rejected
        self.ctx.reports.extend((sender, int(o)) for o in rejected.tolist())

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        ctx, cfg = self.ctx, self.ctx.config
        self.log_dropped()
        survivors = _ids(self.received)
        survivor_set = set(survivors.tolist())
        # A holder holds valid shares of an owner when it received the owner's bundle and did not
        # report it, and answers at the end only if it is a survivor.
        valid_held = {v: np.setdiff1d(self.held[v], self.rejected[v]) for v in survivors.tolist()}
        count = np.zeros(cfg.num_clients, dtype=np.int64)
        for v in survivors.tolist():
            np.add.at(count, valid_held[v], 1)
        dropped = np.setdiff1d(np.concatenate([self.partners[u] for u in survivors.tolist()]) if survivors.size
                               else np.zeros(0, np.int64), survivors)
        needed = np.concatenate([survivors, dropped])
        short = needed[count[needed] < cfg.threshold]
        if not survivors.size:
            raise ctx.abort(self.name, "no masked input arrived")
        if short.size:
            u = int(short[0])
            reporters = sorted(r for r, sender in ctx.reports if sender == u)
            blame = (f" ({len(reporters)} holders reported its share bundles as invalid: {reporters})"
                     if reporters else "")
            raise ctx.abort(self.name, f"client {u} has {int(count[u])} share holders left, fewer than the "
                                       f"threshold {cfg.threshold}; its mask cannot be removed{blame}")
        carry = _Unmasking(self.keys, self.commitments, self.holders, valid_held, self.partners, survivors,
                           dropped, self.sum, self.root, survivor_set)
        if cfg.malicious:
            outbox = encode_broadcast(ConsistencyRequest(ctx.session_id, 0, survivors), survivors.tolist())
            return _ConsistencyRound(ctx, carry), outbox
        outbox = encode_broadcast(UnmaskRequest(ctx.session_id, 0, survivors), survivors.tolist())
        return _UnmaskingRound(ctx, carry, survivor_set), outbox


@dataclass
class _Unmasking:
    """What the unmasking needs from the earlier rounds."""

    keys: dict[int, KeyEntry]
    commitments: dict[int, bytes]
    holders: dict[int, np.ndarray]
    valid_held: dict[int, np.ndarray]  # survivor -> owners whose valid shares it holds
    partners: dict[int, np.ndarray]
    survivors: np.ndarray
    dropped: np.ndarray  # clients that shared keys, masked with a survivor, sent no masked input
    sum: np.ndarray
    root: bytes
    survivor_set: set[int]


# ---------------------------------------------------------------------------- round 3 (malicious)

class _ConsistencyRound(_RoundState):
    name = Round.CONSISTENCY_CHECK
    message_type = ConsistencySignature

    def __init__(self, ctx: _Context, carry: _Unmasking) -> None:
        super().__init__(ctx, set(carry.survivors.tolist()))
        self.carry = carry
        self.payload = d.consistency_payload(ctx.session_id, carry.root, carry.survivors)

    def validate(self, sender: int, message: ConsistencySignature) -> None:  # type: ignore[override]
        try:
            verify_signature(self.ctx.verify_keys[sender], message.signature, self.payload)  # type: ignore[index]
        except CryptoError:
            raise _violation(sender, "bad signature on the survivor list") from None

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        ctx, carry = self.ctx, self.carry
        self.log_dropped()
        signers = set(self.received)
        signatures = tuple((u, self.received[u].signature) for u in sorted(signers))  # type: ignore[attr-defined]
        # Ask only the signers that will see t signatures from their own live holders.
        recipients = [u for u in sorted(signers)
                      if int(np.isin(carry.holders[u], list(signers)).sum()) >= ctx.config.threshold]
        if not recipients:
            raise ctx.abort(self.name, f"{len(signers)} clients signed the survivor list; none has "
                                       f"{ctx.config.threshold} signing holders (the threshold)")
        outbox = encode_broadcast(UnmaskRequest(ctx.session_id, 0, carry.survivors, signatures), recipients)
        return _UnmaskingRound(ctx, carry, set(recipients)), outbox


# ---------------------------------------------------------------------------- round 4

class _UnmaskingRound(_RoundState):
    name = Round.UNMASKING
    message_type = UnmaskingShares

    def __init__(self, ctx: _Context, carry: _Unmasking, asked: set[int]) -> None:
        super().__init__(ctx, asked)
        self.carry = carry

    def validate(self, sender: int, message: UnmaskingShares) -> None:  # type: ignore[override]
        held = self.carry.valid_held[sender]
        alive = np.isin(held, self.carry.survivors)
        if not np.array_equal(message.self_mask_owners, held[alive]):
            raise _violation(sender, "revealed self-mask shares for other clients than the survivors it holds for")
        if not np.array_equal(message.mask_key_owners, held[~alive]):
            raise _violation(sender, "revealed mask-key shares for other clients than the dropped ones it holds for")

    def close(self) -> tuple[_RoundState | AggregationResult, Outbox]:
        ctx = self.ctx
        self.log_dropped()
        carry = self.carry
        survivors, dropped = carry.survivors, carry.dropped
        self_masks = self._reconstruct(survivors, "self_mask", lambda owner, secret: d.self_mask_commitment(
            ctx.session_id, owner, secret) == carry.commitments[owner])
        mask_keys = self._reconstruct(dropped, "mask_key", lambda owner, secret: AgreementKey.from_private_bytes(
            secret).public_bytes == carry.keys[owner].mask_public_key)
        add_seeds: list[bytes] = []
        subtract_seeds: list[bytes] = list(self_masks)
        for owner, private in zip(dropped.tolist(), mask_keys):
            key = AgreementKey.from_private_bytes(private)
            for peer in carry.partners[owner].tolist():
                if peer not in carry.survivor_set:
                    continue
                seed = d.pairwise_mask_seed(key.exchange(carry.keys[peer].mask_public_key),
                                            ctx.session_id, owner, peer)
                # the survivor added +PRG when its id is below the dropped client's, -PRG above
                (subtract_seeds if peer < owner else add_seeds).append(seed)
        aggregate = carry.sum
        apply_masks(aggregate, add_seeds, subtract_seeds, ctx.config.ring)
        return AggregationResult(aggregate, survivors.tolist(), dict(ctx.dropped), list(ctx.reports),
                                 dict(ctx.misbehaving)), {}

    def _table(self, owners: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every revealed share of ``owners``: (owner, holder, limbs) columns, sorted by (owner, holder)."""
        owner_col, holder_col, share_rows = [], [], []
        for w in sorted(self.received):
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
        return owner_all[order], holder_all[order], shares_all[order]

    def _reconstruct(self, owners: np.ndarray, kind: str, check: Callable[[int, bytes], bool]) -> list[bytes]:
        """One secret per owner, checked against its commitment (self-mask) or public key (mask key).

        Fast path: the t lowest responding holders of every owner, batched. An owner whose secret
        fails its check is decoded from all its shares with error correction (Berlekamp-Welch);
        holders whose shares lie off the decoded polynomial are recorded in ``misbehaving`` and
        left out of every later reconstruction. Aborts only when an owner has fewer than t
        consistent shares.
        """
        t = self.ctx.config.threshold
        if owners.size == 0:
            return []
        owner_all, holder_all, shares_all = self._table(owners, kind)
        label = kind.replace("_", "-")
        secrets: dict[int, bytes] = {}
        pending = owners
        while pending.size:
            usable = ~np.isin(holder_all, list(self.ctx.misbehaving)) & np.isin(owner_all, pending)
            o_col, h_col, s_col = owner_all[usable], holder_all[usable], shares_all[usable]
            present, starts, counts = np.unique(o_col, return_index=True, return_counts=True)
            available = np.zeros(pending.size, dtype=np.int64)
            available[np.searchsorted(pending, present)] = counts
            if np.any(available < t):
                i = int(np.argmax(available < t))
                raise self.ctx.abort(self.name, f"{int(available[i])} consistent {label} shares of client "
                                                f"{int(pending[i])} arrived, fewer than the threshold {t}")
            rows = starts[:, None] + np.arange(t)[None, :]
            limbs = reconstruct(h_col[rows] + 1, s_col[rows])
            failed = []
            for owner, row in zip(pending.tolist(), limbs):
                secret = _secret(row)
                if secret is not None and check(owner, secret):
                    secrets[owner] = secret
                else:
                    failed.append(owner)
            if not failed:
                break
            owner = failed[0]  # decode one, learn who lied, retry the rest without them
            mine = o_col == owner

            def passes(limbs: np.ndarray, owner: int = owner) -> bool:
                secret = _secret(limbs)
                return secret is not None and check(owner, secret)

            decoded = decode_with_errors(h_col[mine] + 1, s_col[mine], t, check=passes)
            if decoded is None:
                raise self.ctx.abort(self.name, f"the {label} shares of client {owner} are inconsistent beyond "
                                                "correction (too many wrong shares)")
            for holder in h_col[mine][decoded[1]].tolist():
                self.ctx.misbehaving[int(holder)] = f"revealed a wrong {label} share of client {owner}"
            secrets[owner] = _secret(decoded[0])  # type: ignore[assignment]
            pending = np.array(failed[1:], dtype=np.int64)
        return [secrets[o] for o in owners.tolist()]


def _secret(limbs: np.ndarray) -> bytes | None:
    try:
        return limbs_to_secrets(np.asarray(limbs, dtype=np.uint32)[None, :])[0]
    except CryptoError:
        return None


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
        self._ctx = _Context(config, session_id, check_verify_keys(config, verify_keys), {})
        self._round: _RoundState | None = _AdvertiseKeysRound(self._ctx)
        self.state = ServerState.ADVERTISE_KEYS
        self.result: AggregationResult | None = None
        self.abort_reason: str | None = None
        # After an abort: an AbortNotice for every client the aborted round expected (for the driver to send)
        self.abort_notices: Outbox = {}

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

    @property
    def reports(self) -> list[tuple[int, int]]:
        """(reporter, sender): share bundles that did not open, as reported by their recipients."""
        return list(self._ctx.reports)

    @property
    def misbehaving(self) -> dict[int, str]:
        """Holders whose revealed shares were wrong (detected and corrected at unmasking)."""
        return dict(self._ctx.misbehaving)

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

        Raises :class:`AbortError` if too few clients remain; :attr:`abort_notices` then holds the
        AbortNotice for every client the round expected.
        """
        self._require_open("close_round")
        return self._close()

    def abort(self, reason: str) -> Outbox:
        """Abort the session (e.g. the driver gives up) and return an AbortNotice for every client
        the current round expects (spec section 9)."""
        self._require_open("abort")
        self._mark_aborted(reason)
        return dict(self.abort_notices)

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
        notice = AbortNotice(self.session_id, 0, reason[:200])
        self.abort_notices = encode_broadcast(notice, sorted(self._round.expected))  # type: ignore[union-attr]
        self._round = None
        self.state = ServerState.ABORTED
        self.abort_reason = reason

    def _require_open(self, what: str) -> _RoundState:
        if self._round is None:
            raise SessionStateError(f"{what}() called on a {self.state.value} session")
        return self._round
