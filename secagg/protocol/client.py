"""The client side of the masking protocol as a sans-IO state machine.

``ClientSession.start()`` returns the first message; ``handle(data)`` takes each server message
and returns the reply. The session never touches a socket or a clock. Every check a client makes
on the server's messages is here, and every refusal is raised before any state changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey
from secagg.crypto.prg import SEED_BYTES, apply_masks
from secagg.crypto.randomness import CheckedRandomness, RandomSource, system_randomness
from secagg.crypto.shamir import LIMBS_PER_SECRET, secrets_to_limbs, share
from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import (
    AbortError,
    CryptoError,
    ParameterError,
    ProtocolViolation,
    SessionStateError,
)
from secagg.protocol import bounds
from secagg.protocol import derivation as d
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import draw_holders
from secagg.protocol.messages import (
    SEALED_SHARES_BYTES,
    SESSION_ID_BYTES,
    AbortNotice,
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyDirectory,
    MaskedInput,
    Message,
    ShareBundles,
    ShareKeys,
    UnmaskingShares,
    UnmaskRequest,
    decode_message,
)

__all__ = ["ClientState", "ClientSession"]

_SERVER = "server"


class ClientState(str, Enum):
    READY = "ready"
    AWAIT_KEY_DIRECTORY = "await_key_directory"
    AWAIT_SHARE_BUNDLES = "await_share_bundles"
    AWAIT_CONSISTENCY_REQUEST = "await_consistency_request"
    AWAIT_UNMASK_REQUEST = "await_unmask_request"
    DONE = "done"
    ABORTED = "aborted"


def _violation(message: str) -> ProtocolViolation:
    return ProtocolViolation(message, party=_SERVER)


def check_session_id(session_id: object) -> bytes:
    if not isinstance(session_id, (bytes, bytearray)) or len(session_id) != SESSION_ID_BYTES:
        raise ParameterError(f"session_id must be {SESSION_ID_BYTES} bytes")
    return bytes(session_id)


def check_verify_keys(config: SecAggConfig, verify_keys: Mapping[int, bytes] | None) -> dict[int, bytes] | None:
    """Validate the public identity keys every party needs in malicious mode."""
    if not config.malicious:
        return None
    if verify_keys is None:
        raise ParameterError("malicious mode needs verify_keys: every client's Ed25519 public key")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    problem = "verify_keys must map every client id 0..n-1 to a 32-byte Ed25519 public key"
    if not isinstance(verify_keys, Mapping):
        raise ParameterError(problem)
    keys: dict[int, bytes] = {}
    for i, k in verify_keys.items():
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not isinstance(k, (bytes, bytearray)) \
                or len(k) != 32:
            raise ParameterError(problem)
        try:
            Ed25519PublicKey.from_public_bytes(bytes(k))
        except ValueError:
            raise ParameterError(f"verify_keys[{i}] is not an Ed25519 public key") from None
        keys[int(i)] = bytes(k)
    if set(keys) != set(range(config.num_clients)):
        raise ParameterError(problem)
    return keys


class ClientSession:
    """One client's part in one secure-aggregation session.

    ``input_vector`` holds m integers in [0, 2**modulus_bits). In malicious mode the client
    needs its long-term ``identity`` key and every client's public ``verify_keys``. ``rng`` is
    the source of all key material, seeds and holder draws (the OS CSPRNG unless a test passes
    its own).
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        session_id: bytes,
        input_vector: object,
        *,
        rng: RandomSource | None = None,
        identity: IdentityKey | None = None,
        verify_keys: Mapping[int, bytes] | None = None,
        min_survivors: int = 1,
    ) -> None:
        if not isinstance(config, SecAggConfig):
            raise ParameterError("config must be a SecAggConfig")
        if isinstance(min_survivors, bool) or not isinstance(min_survivors, (int, np.integer)) \
                or not 1 <= min_survivors <= config.num_clients:
            raise ParameterError(f"min_survivors must be in 1..{config.num_clients}, got {min_survivors!r}")
        self.min_survivors = int(min_survivors)
        model = config.threat_model
        if config.malicious and model is not None and self.min_survivors > 1:
            # the coordinator decides who masks with whom, so it can sum any set whose members each keep
            # t holders inside it (review 14): refuse parameters under which one smaller than this is likely
            failure = bounds.log2_smaller_sum(config.num_clients, config.neighbors if config.is_sparse else None,
                                              config.threshold, self.min_survivors, model.corrupt_clients)
            if failure > -config.security_bits:
                raise ParameterError(
                    f"min_survivors {self.min_survivors} cannot be guaranteed with n={config.num_clients}, "
                    f"K={config.holders_per_client}, t={config.threshold}, c={model.corrupt_clients}: a coordinator "
                    f"could unmask a smaller set each of whose members keeps t holders inside it (2^{failure:.1f} > "
                    f"2^-{config.security_bits:g}); raise the threshold to {self.min_survivors - 1}")
        if isinstance(client_id, bool) or not isinstance(client_id, (int, np.integer)) \
                or not 0 <= client_id < config.num_clients:
            raise ParameterError(f"client_id must be in 0..{config.num_clients - 1}, got {client_id!r}")
        self.config = config
        self.client_id = int(client_id)
        self.session_id = check_session_id(session_id)
        self._ring = config.ring
        self._input: np.ndarray | None = self._ring.element(input_vector, length=config.vector_length)
        self._verify_keys = check_verify_keys(config, verify_keys)
        if config.malicious and not isinstance(identity, IdentityKey):
            raise ParameterError("malicious mode needs this client's identity (an IdentityKey)")
        if config.malicious and identity.public_bytes != self._verify_keys[self.client_id]:  # type: ignore[union-attr,index]
            raise ParameterError("identity does not match this client's entry in verify_keys")
        self._identity = identity if config.malicious else None
        self._rng = CheckedRandomness(rng) if rng is not None else system_randomness()
        self.state = ClientState.READY
        self.abort_reason: str | None = None
        # carried between rounds; each is set by the round that produces it
        self._cipher_key: AgreementKey | None = None
        self._mask_key: AgreementKey | None = None
        self._advertised: AdvertiseKeys | None = None
        self._drawn: np.ndarray | None = None  # SecAgg+: the holders this client drew (None: all others)
        self._transcript_root: bytes | None = None
        self._mask_secrets: dict[int, bytes] = {}  # X25519 agreements of the mask keys, round 1 -> 2
        self._mask_owners: np.ndarray | None = None  # clients whose bundles arrived in round 2
        self._holders: np.ndarray | None = None  # holders its shares were sealed to
        self._owners: np.ndarray | None = None  # clients that drew this one (the directory says)
        self._incoming_keys: dict[int, bytes] = {}
        self._self_mask_seed: bytes | None = None
        self._held_owners: np.ndarray | None = None  # sorted ids whose shares this client holds
        self._held_shares: np.ndarray | None = None  # (owners, 2, 9): self-mask and mask-key shares
        self._live_holders: np.ndarray | None = None  # its holders still in the session at round 2
        self._signed_survivors: np.ndarray | None = None
        self.rejected: list[int] = []  # senders whose share bundle did not open (reported)
        self.revealed: dict[int, str] = {}

    # ------------------------------------------------------------------ public interface

    @property
    def drawn_holders(self) -> np.ndarray | None:
        """SecAgg+: the holders this client drew in :meth:`start` (public: they are in its
        AdvertiseKeys); None in the complete graph or before start."""
        return self._drawn

    def start(self) -> bytes:
        """Round 0: generate fresh keys (and, in SecAgg+, draw holders); return AdvertiseKeys."""
        if self.state is not ClientState.READY:
            raise SessionStateError(f"start() called in state {self.state.value}")
        cipher_key = AgreementKey.generate(self._rng)
        mask_key = AgreementKey.generate(self._rng)
        drawn = None
        if self.config.neighbors is not None:  # SecAgg+
            drawn = draw_holders(self.client_id, self.config.num_clients, self.config.neighbors, self._rng)
        holders = drawn if drawn is not None else np.zeros(0, np.int64)
        signature = None
        if self._identity is not None:
            signature = self._identity.sign(d.advertise_payload(
                self.session_id, self.client_id, cipher_key.public_bytes, mask_key.public_bytes, holders))
        message = AdvertiseKeys(self.session_id, self.client_id, cipher_key.public_bytes,
                                mask_key.public_bytes, holders, signature)
        if self._identity is not None:
            self._identity.enter_session(self.session_id, message.encode())
        self._cipher_key, self._mask_key, self._advertised, self._drawn = cipher_key, mask_key, message, drawn
        self.state = ClientState.AWAIT_KEY_DIRECTORY
        return message.encode()

    def handle(self, data: bytes) -> bytes | None:
        """Process one message from the server and return the reply (None when there is none).

        Raises :class:`MalformedMessage` / :class:`ProtocolViolation` (``party="server"``) for a
        message the client refuses, leaving the session unchanged; :class:`AbortError` when the
        server announces an abort; :class:`SessionStateError` before :meth:`start`.
        """
        if self.state is ClientState.READY:
            raise SessionStateError("handle() called before start()")
        try:
            message = decode_message(data)
        except ProtocolViolation as exc:
            exc.party = _SERVER
            raise
        self._check_addressing(message)
        if isinstance(message, AbortNotice):  # also after the unmasking answer: the sum may still fail
            if self.state is ClientState.ABORTED:
                raise _violation("abort notice for a session this client already left")
            self.state = ClientState.ABORTED
            self.abort_reason = message.reason
            self._forget_secrets()
            raise AbortError(f"server aborted the session: {message.reason}")
        handler = self._handlers.get((self.state, type(message)))
        if handler is None:
            raise _violation(f"unexpected {type(message).__name__} in client state {self.state.value}")
        return handler(self, message)

    def _forget_secrets(self) -> None:
        """Drop the input, the keys, the agreements and the shares held for others."""
        self._input = self._self_mask_seed = self._mask_key = self._cipher_key = None
        self._incoming_keys, self._mask_secrets = {}, {}
        self._held_shares = None

    # ------------------------------------------------------------------ checks

    def _check_addressing(self, message: Message) -> None:
        if message.FROM_CLIENT:
            raise _violation(f"{type(message).__name__} is a client-to-server message")
        if message.session_id != self.session_id:
            raise _violation("message belongs to another session (replayed or misrouted)")
        if message.party != self.client_id:
            raise _violation(f"message addressed to client {message.party}, not {self.client_id}")

    def _check_survivors(self, survivors: np.ndarray) -> None:
        """The survivor list the server claims: plausible, consistent with what we saw, and leaving
        at least t of our holders (others: this client never holds its own shares)."""
        if survivors.size and int(survivors[-1]) >= self.config.num_clients:
            raise _violation(f"survivor list names unknown client {int(survivors[-1])}")
        if not np.any(survivors == self.client_id):
            raise _violation("survivor list does not contain this client, which sent its masked input")
        if survivors.size < self.min_survivors:
            # a local policy (e.g. DP: the sum must carry at least min_shares noise shares), not a
            # protocol parameter: the server cannot lower it
            raise _violation(f"survivor list has {survivors.size} clients; this client helps unmask no sum of "
                             f"fewer than {self.min_survivors} inputs")
        partners = np.union1d(self._holders, self._owners)  # type: ignore[arg-type]
        named = survivors[np.isin(survivors, partners)]
        live = np.union1d(self._live_holders, self._mask_owners)  # type: ignore[arg-type]
        if not np.all(np.isin(named, live)):
            bad = int(named[~np.isin(named, live)][0])
            raise _violation(f"survivor list names client {bad}, which left the session before the masked inputs")
        kept = int(np.isin(self._live_holders, survivors).sum())  # type: ignore[arg-type]
        if kept < self.config.threshold:
            raise _violation(f"survivor list leaves {kept} of this client's holders, fewer than the threshold "
                             f"{self.config.threshold}")

    # ------------------------------------------------------------------ round 1: share keys

    def _on_key_directory(self, message: KeyDirectory) -> bytes:
        n, me, t = self.config.num_clients, self.client_id, self.config.threshold
        entries = {e.client_id: e for e in message.entries}
        own, sent = entries.get(me), self._advertised
        if own is None or sent is None or own != sent.entry:
            raise _violation("key directory misstates this client's own entry (keys, holders or signature)")
        if d.transcript_root_from_path(d.transcript_leaf(sent.encode()), message.transcript) != \
                message.transcript.root:
            raise _violation("the transcript root does not contain this client's AdvertiseKeys")
        drawn = self._drawn
        owners = []
        for client_id, entry in entries.items():
            if client_id >= n:
                raise _violation(f"key directory names unknown client {client_id}")
            if client_id == me:
                continue
            if drawn is None:
                if entry.holders.size:
                    raise _violation(f"key directory entry of client {client_id} lists holders in the complete graph")
                owners.append(client_id)
                continue
            if entry.holders.size != self.config.neighbors:
                raise _violation(f"key directory entry of client {client_id} lists {entry.holders.size} holders, "
                                 f"expected {self.config.neighbors}")
            if int(entry.holders.max()) >= n:
                raise _violation(f"client {client_id} drew an unknown holder {int(entry.holders.max())}")
            drew_me = bool(np.any(entry.holders == me))
            if drew_me:
                owners.append(client_id)
            elif not np.any(drawn == client_id):
                raise _violation(f"key directory names client {client_id}, which neither holds for this client "
                                 "nor drew it")
        seen: set[bytes] = set()
        for e in message.entries:
            for key in (e.cipher_public_key, e.mask_public_key):
                # Compared by the secret they agree on with this client's cipher key: X25519
                # clamps scalars to multiples of 8, so a key and the same point plus a small-order
                # point (another encoding, e.g. u and 1/u) agree alike and are one key.
                try:
                    fingerprint = self._cipher_key.exchange(key)  # type: ignore[union-attr]
                except CryptoError as exc:
                    raise _violation(f"unusable public key of client {e.client_id}: {exc}") from None
                if fingerprint in seen:
                    raise _violation(f"public key of client {e.client_id} appears twice in the key directory")
                seen.add(fingerprint)
        if self._verify_keys is not None:
            for e in message.entries:
                if e.signature is None:
                    raise _violation(f"key directory entry of client {e.client_id} is unsigned")
                try:
                    verify_signature(self._verify_keys[e.client_id], e.signature, d.advertise_payload(
                        self.session_id, e.client_id, e.cipher_public_key, e.mask_public_key, e.holders))
                except CryptoError:
                    raise _violation(f"bad signature on the keys of client {e.client_id}") from None
        elif message.signed:
            raise _violation("signed key directory in honest-but-curious mode")
        others = np.array(sorted(i for i in entries if i != me), dtype=np.int64)
        holders = others if drawn is None else others[np.isin(others, drawn)]
        if holders.size < t:
            raise _violation(f"only {holders.size} of this client's holders advertised keys, fewer than the "
                             f"threshold {t} (a client never counts itself)")
        # Agree with every peer key first (both kinds): a low-order key is refused before any
        # randomness is drawn, and the mask agreements are kept for round 2.
        bundle_keys: dict[int, tuple[bytes, bytes]] = {}
        mask_secrets: dict[int, bytes] = {}
        for peer in others.tolist():
            try:
                cipher_secret = self._cipher_key.exchange(entries[peer].cipher_public_key)  # type: ignore[union-attr]
                mask_secrets[peer] = self._mask_key.exchange(entries[peer].mask_public_key)  # type: ignore[union-attr]
            except CryptoError as exc:
                raise _violation(f"unusable public key of client {peer}: {exc}") from None
            bundle_keys[peer] = d.share_bundle_keys(cipher_secret, self.session_id, me, peer)
        # Deal shares of the self-mask seed and of the mask private key among the holders.
        self_mask_seed = self._rng.random_bytes(SEED_BYTES)
        limbs = secrets_to_limbs([self_mask_seed, self._mask_key.private_bytes()]).ravel()  # type: ignore[union-attr]
        shares = share(limbs, t, holders + 1, self._rng)
        sealed = []
        for holder, holder_shares in zip(holders.tolist(), shares):
            outgoing = bundle_keys[holder][0]
            ad = d.share_bundle_associated_data(self.session_id, me, holder)
            sealed.append(seal(outgoing, d.share_plaintext(me, holder, holder_shares), ad))
        ciphertexts = np.frombuffer(b"".join(sealed), dtype=np.uint8).reshape(len(sealed), SEALED_SHARES_BYTES)
        reply = ShareKeys(self.session_id, me, d.self_mask_commitment(self.session_id, me, self_mask_seed),
                          holders, ciphertexts)
        # commit
        self._mask_secrets = mask_secrets
        self._incoming_keys = {o: bundle_keys[o][1] for o in owners}
        self._holders = holders
        self._owners = np.array(sorted(owners), dtype=np.int64)
        self._transcript_root = message.transcript.root
        self._self_mask_seed = self_mask_seed
        self.state = ClientState.AWAIT_SHARE_BUNDLES
        return reply.encode()

    # ------------------------------------------------------------------ round 2: masked input

    def _on_share_bundles(self, message: ShareBundles) -> bytes:
        session_id, client_id, t = self.session_id, self.client_id, self.config.threshold
        live_holders = message.holders.astype(np.int64)
        if not np.all(np.isin(live_holders, self._holders)):  # type: ignore[arg-type]
            bad = int(live_holders[~np.isin(live_holders, self._holders)][0])  # type: ignore[arg-type]
            raise _violation(f"share bundles name client {bad} as a holder of this client, which it did not seal "
                             "shares to")
        if live_holders.size < t:
            raise _violation(f"only {live_holders.size} of this client's holders are left, fewer than the "
                             f"threshold {t}")
        received, rejected = [], []
        for sender, ciphertext in zip(message.peers.tolist(), message.ciphertexts):
            key = self._incoming_keys.get(sender)
            if key is None:
                raise _violation(f"share bundle from client {sender}, which did not draw this client")
            try:
                plaintext = open_sealed(key, ciphertext.tobytes(),
                                        d.share_bundle_associated_data(session_id, sender, client_id))
                claimed_sender, claimed_recipient, limbs = d.parse_share_plaintext(plaintext)
                if (claimed_sender, claimed_recipient) != (sender, client_id):
                    raise ParameterError(f"the plaintext names {claimed_sender}->{claimed_recipient}")
            except (CryptoError, ParameterError):
                # A bad bundle costs only its sender's shares: this client holds nothing for it,
                # still masks with it (the sender does too) and reports it to the server.
                rejected.append(sender)
                continue
            received.append((sender, limbs))
        senders = message.peers.astype(np.int64)
        partners = np.union1d(live_holders, senders)
        add_seeds: list[bytes] = [self._self_mask_seed]  # type: ignore[list-item]
        subtract_seeds: list[bytes] = []
        for peer in partners.tolist():
            seed = d.pairwise_mask_seed(self._mask_secrets[peer], session_id, client_id, peer)
            (add_seeds if client_id < peer else subtract_seeds).append(seed)
        masked = self._input.copy()  # type: ignore[union-attr]
        apply_masks(masked, add_seeds, subtract_seeds, self._ring)
        reply = MaskedInput(session_id, client_id, self.config.modulus_bits, masked,
                            np.array(rejected, dtype=np.int64)).encode()
        del masked
        # commit: keep only the shares held for others; forget the input and the secrets
        owners = np.array([s for s, _ in received], dtype=np.int64)
        order = np.argsort(owners)
        self._held_owners = owners[order]
        self._held_shares = (np.stack([limbs for _, limbs in received])[order] if received
                             else np.zeros((0, 2, LIMBS_PER_SECRET), np.uint32))
        self._live_holders = live_holders
        self._mask_owners = senders
        self.rejected = rejected
        self._input = None
        self._self_mask_seed = None
        self._mask_key = self._cipher_key = None
        self._incoming_keys, self._mask_secrets = {}, {}
        self.state = (ClientState.AWAIT_CONSISTENCY_REQUEST if self.config.malicious
                      else ClientState.AWAIT_UNMASK_REQUEST)
        return reply

    # ------------------------------------------------------------------ round 3: consistency check

    def _on_consistency_request(self, message: ConsistencyRequest) -> bytes:
        self._check_survivors(message.survivors)
        signature = self._identity.sign(d.consistency_payload(  # type: ignore[union-attr]
            self.session_id, self._transcript_root, message.survivors))  # type: ignore[arg-type]
        reply = ConsistencySignature(self.session_id, self.client_id, signature).encode()
        self._signed_survivors = message.survivors
        self.state = ClientState.AWAIT_UNMASK_REQUEST
        return reply

    # ------------------------------------------------------------------ round 4: unmasking

    def _on_unmask_request(self, message: UnmaskRequest) -> bytes:
        survivors = message.survivors
        if self.config.malicious:
            if self._signed_survivors is None or not np.array_equal(survivors, self._signed_survivors):
                raise _violation("unmask request names a survivor list other than the one this client signed")
            payload = d.consistency_payload(self.session_id, self._transcript_root, survivors)  # type: ignore[arg-type]
            valid_from_holders = 0
            for signer, signature in message.signatures:
                if signer >= self.config.num_clients or not np.any(survivors == signer):
                    raise _violation(f"consistency signature from client {signer}, who is not a survivor")
                try:
                    verify_signature(self._verify_keys[signer], signature, payload)  # type: ignore[index]
                except CryptoError:
                    raise _violation(f"bad consistency signature from client {signer}") from None
                valid_from_holders += bool(np.any(self._live_holders == signer))
            if valid_from_holders < self.config.threshold:
                raise _violation(f"only {valid_from_holders} of this client's holders signed the survivor list, "
                                 f"fewer than the threshold {self.config.threshold}")
        else:
            if message.signatures:
                raise _violation("consistency signatures in honest-but-curious mode")
            self._check_survivors(survivors)
        # Reveal exactly one kind of share per owner: the self-mask share of a survivor, the
        # mask-key share of a client that dropped before sending its masked input.
        held_owners, held_shares = self._held_owners, self._held_shares
        if held_owners is None or held_shares is None:
            raise SessionStateError("this client holds no shares to reveal")
        alive = np.isin(held_owners, survivors)
        reply = UnmaskingShares(
            self.session_id, self.client_id,
            held_owners[alive], held_shares[alive, 0],
            held_owners[~alive], held_shares[~alive, 1],
        ).encode()
        self.revealed = {int(o): ("self_mask" if a else "mask_key") for o, a in zip(held_owners, alive)}
        self._held_shares = None
        self.state = ClientState.DONE
        return reply

    _handlers: ClassVar[dict[tuple[ClientState, type[Message]], Callable[[Any, Any], bytes | None]]] = {
        (ClientState.AWAIT_KEY_DIRECTORY, KeyDirectory): _on_key_directory,
        (ClientState.AWAIT_SHARE_BUNDLES, ShareBundles): _on_share_bundles,
        (ClientState.AWAIT_CONSISTENCY_REQUEST, ConsistencyRequest): _on_consistency_request,
        (ClientState.AWAIT_UNMASK_REQUEST, UnmaskRequest): _on_unmask_request,
    }
