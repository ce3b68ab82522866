"""The client side of the masking protocol as a sans-IO state machine.

``ClientSession.start()`` returns the first message; ``handle(data)`` takes each server message
and returns the reply. The session never touches a socket or a clock. Every check a client makes
on the server's messages is here, and every refusal is raised before any state changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import numpy as np

from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey
from secagg.crypto.prg import SEED_BYTES, apply_masks
from secagg.crypto.randomness import RandomSource, system_randomness
from secagg.crypto.shamir import LIMBS_PER_SECRET, secrets_to_limbs, share
from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import (
    AbortError,
    CryptoError,
    ParameterError,
    ProtocolViolation,
    SessionStateError,
)
from secagg.protocol import derivation as d
from secagg.protocol.config import SecAggConfig
from secagg.protocol.graph import NeighbourGraph
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
    keys = {int(i): bytes(k) for i, k in verify_keys.items()}
    missing = set(range(config.num_clients)) - keys.keys()
    if missing or len(keys) != config.num_clients or any(len(k) != 32 for k in keys.values()):
        raise ParameterError("verify_keys must map every client id 0..n-1 to a 32-byte Ed25519 public key")
    return keys


class ClientSession:
    """One client's part in one secure-aggregation session.

    ``input_vector`` holds m integers in [0, 2**modulus_bits). In malicious mode the client
    needs its long-term ``identity`` key and every client's public ``verify_keys``. ``rng`` is
    the source of all key material and seeds (the OS CSPRNG unless a test passes its own).
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
    ) -> None:
        if not isinstance(config, SecAggConfig):
            raise ParameterError("config must be a SecAggConfig")
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
        if config.malicious and identity.public_bytes != self._verify_keys[self.client_id]:  # type: ignore[union-attr]
            raise ParameterError("identity does not match this client's entry in verify_keys")
        self._identity = identity if config.malicious else None
        self._rng = rng if rng is not None else system_randomness()
        self._graph = NeighbourGraph.for_config(config, self.session_id)
        self._holders = self._graph.holders(self.client_id)  # who holds this client's shares
        self._holder_set = frozenset(self._holders.tolist())
        self.state = ClientState.READY
        self.abort_reason: str | None = None
        # carried between rounds; each is set by the round that produces it
        self._cipher_key: AgreementKey | None = None
        self._mask_key: AgreementKey | None = None
        self._advertised: AdvertiseKeys | None = None
        self._peer_keys: dict[int, tuple[bytes, bytes]] = {}
        self._incoming_keys: dict[int, bytes] = {}
        self._self_mask_seed: bytes | None = None
        self._own_shares: np.ndarray | None = None
        self._held_owners: np.ndarray | None = None  # sorted ids whose shares this client holds
        self._held_shares: np.ndarray | None = None  # (owners, 2, 9): self-mask and mask-key shares
        self._mask_peers: np.ndarray | None = None
        self._signed_survivors: np.ndarray | None = None
        self.revealed: dict[int, str] = {}

    # ------------------------------------------------------------------ public interface

    def start(self) -> bytes:
        """Round 0: generate fresh keys and return the AdvertiseKeys message."""
        if self.state is not ClientState.READY:
            raise SessionStateError(f"start() called in state {self.state.value}")
        cipher_key = AgreementKey.generate(self._rng)
        mask_key = AgreementKey.generate(self._rng)
        signature = None
        if self._identity is not None:
            signature = self._identity.sign(d.advertise_payload(
                self.session_id, self.client_id, cipher_key.public_bytes, mask_key.public_bytes))
        message = AdvertiseKeys(self.session_id, self.client_id, cipher_key.public_bytes,
                                mask_key.public_bytes, signature)
        self._cipher_key, self._mask_key, self._advertised = cipher_key, mask_key, message
        self.state = ClientState.AWAIT_KEY_DIRECTORY
        return message.encode()

    def handle(self, data: bytes) -> bytes | None:
        """Process one message from the server and return the reply (None when there is none).

        Raises :class:`MalformedMessage` / :class:`ProtocolViolation` (``party="server"``) for a
        message the client refuses, leaving the session unchanged; :class:`AbortError` when the
        server announces an abort.
        """
        try:
            message = decode_message(data)
        except ProtocolViolation as exc:
            exc.party = _SERVER
            raise
        self._check_addressing(message)
        if isinstance(message, AbortNotice):
            if self.state in (ClientState.DONE, ClientState.ABORTED):
                raise _violation(f"abort notice in state {self.state.value}")
            self.state = ClientState.ABORTED
            self.abort_reason = message.reason
            raise AbortError(f"server aborted the session: {message.reason}")
        handler = self._handlers.get((self.state, type(message)))
        if handler is None:
            raise _violation(f"unexpected {type(message).__name__} in client state {self.state.value}")
        return handler(self, message)

    # ------------------------------------------------------------------ checks

    def _check_addressing(self, message: Message) -> None:
        if message.FROM_CLIENT:
            raise _violation(f"{type(message).__name__} is a client-to-server message")
        if message.session_id != self.session_id:
            raise _violation("message belongs to another session (replayed or misrouted)")
        if message.party != self.client_id:
            raise _violation(f"message addressed to client {message.party}, not {self.client_id}")

    def _check_survivors(self, survivors: np.ndarray) -> None:
        """The survivor list the server claims: plausible, consistent with what we saw, and big
        enough that revealing shares cannot expose anyone (>= t of our share holders survive)."""
        if survivors.size and int(survivors[-1]) >= self.config.num_clients:
            raise _violation(f"survivor list names unknown client {int(survivors[-1])}")
        if not np.any(survivors == self.client_id):
            raise _violation("survivor list does not contain this client, which sent its masked input")
        relevant = survivors[np.isin(survivors, self._holders)]
        allowed = np.append(self._mask_peers, self.client_id)
        if not np.all(np.isin(relevant, allowed)):
            bad = int(relevant[~np.isin(relevant, allowed)][0])
            raise _violation(f"survivor list names client {bad}, which never sent this client its shares")
        if relevant.size < self.config.threshold:
            raise _violation(f"survivor list leaves {relevant.size} of this client's share holders, "
                             f"fewer than the threshold {self.config.threshold}")

    # ------------------------------------------------------------------ round 1: share keys

    def _on_key_directory(self, message: KeyDirectory) -> bytes:
        n, me = self.config.num_clients, self.client_id
        entries = {e.client_id: e for e in message.entries}
        own, sent = entries.get(me), self._advertised
        if own is None or (own.cipher_public_key, own.mask_public_key) != \
                (sent.cipher_public_key, sent.mask_public_key):  # type: ignore[union-attr]
            raise _violation("key directory misstates this client's own keys (substituted or missing)")
        for client_id in entries:
            if client_id >= n:
                raise _violation(f"key directory names unknown client {client_id}")
            if client_id != me and client_id not in self._holder_set:
                raise _violation(f"key directory names client {client_id}, which is not a neighbour")
        seen: set[bytes] = set()
        for e in message.entries:
            for key in (e.cipher_public_key, e.mask_public_key):
                if key in seen:
                    raise _violation(f"public key of client {e.client_id} appears twice in the key directory")
                seen.add(key)
        if self._verify_keys is not None:
            for e in message.entries:
                if e.signature is None:
                    raise _violation(f"key directory entry of client {e.client_id} is unsigned")
                try:
                    verify_signature(self._verify_keys[e.client_id], e.signature, d.advertise_payload(
                        self.session_id, e.client_id, e.cipher_public_key, e.mask_public_key))
                except CryptoError:
                    raise _violation(f"bad signature on the keys of client {e.client_id}") from None
        elif message.signed:
            raise _violation("signed key directory in honest-but-curious mode")
        holders = np.array(sorted(i for i in entries if i in self._holder_set), dtype=np.int64)
        if holders.size < self.config.threshold:
            raise _violation(f"only {holders.size} share holders advertised keys, fewer than the "
                             f"threshold {self.config.threshold}")
        # Agree on every bundle key first: a bad peer key is refused before any randomness is drawn.
        bundle_keys: dict[int, tuple[bytes, bytes]] = {}
        for holder in holders.tolist():
            if holder == me:
                continue
            try:
                secret = self._cipher_key.exchange(entries[holder].cipher_public_key)  # type: ignore[union-attr]
            except CryptoError as exc:
                raise _violation(f"unusable cipher key of client {holder}: {exc}") from None
            bundle_keys[holder] = d.share_bundle_keys(secret, self.session_id, me, holder)
        # Deal shares of the self-mask seed and of the mask private key among the holders.
        self_mask_seed = self._rng.random_bytes(SEED_BYTES)
        limbs = secrets_to_limbs([self_mask_seed, self._mask_key.private_bytes()]).ravel()  # type: ignore[union-attr]
        shares = share(limbs, self.config.threshold, holders + 1, self._rng)
        incoming_keys: dict[int, bytes] = {}  # key of the bundle each holder will seal to us
        recipients, sealed = [], []
        own_shares = None
        for holder, holder_shares in zip(holders.tolist(), shares):
            if holder == me:
                own_shares = holder_shares.reshape(2, LIMBS_PER_SECRET)
                continue
            outgoing, incoming = bundle_keys[holder]
            ad = d.share_bundle_associated_data(self.session_id, me, holder)
            recipients.append(holder)
            sealed.append(seal(outgoing, d.share_plaintext(me, holder, holder_shares), ad))
            incoming_keys[holder] = incoming
        ciphertexts = np.frombuffer(b"".join(sealed), dtype=np.uint8).reshape(len(sealed), SEALED_SHARES_BYTES)
        reply = ShareKeys(self.session_id, me, d.self_mask_commitment(self.session_id, me, self_mask_seed),
                          np.array(recipients, dtype=np.int64), ciphertexts)
        # commit
        self._peer_keys = {i: (e.cipher_public_key, e.mask_public_key) for i, e in entries.items() if i != me}
        self._incoming_keys = incoming_keys
        self._self_mask_seed = self_mask_seed
        self._own_shares = own_shares
        self.state = ClientState.AWAIT_SHARE_BUNDLES
        return reply.encode()

    # ------------------------------------------------------------------ round 2: masked input

    def _on_share_bundles(self, message: ShareBundles) -> bytes:
        session_id, client_id = self.session_id, self.client_id
        received = []
        for sender, ciphertext in zip(message.peers.tolist(), message.ciphertexts):
            key = self._incoming_keys.get(sender)
            if key is None:
                raise _violation(f"share bundle from client {sender}, to whom this client sent no shares")
            try:
                plaintext = open_sealed(key, ciphertext.tobytes(),
                                        d.share_bundle_associated_data(session_id, sender, client_id))
                claimed_sender, claimed_recipient, limbs = d.parse_share_plaintext(plaintext)
            except (CryptoError, ParameterError) as exc:
                raise _violation(f"share bundle from client {sender} does not open: {exc}") from None
            if (claimed_sender, claimed_recipient) != (sender, client_id):
                raise _violation(f"share bundle from client {sender} names {claimed_sender}->{claimed_recipient}")
            received.append((sender, limbs))
        senders = np.array([s for s, _ in received], dtype=np.int64)
        alive_holders = senders.size + (self._own_shares is not None)  # self holds in the complete graph
        if alive_holders < self.config.threshold:
            raise _violation(f"only {alive_holders} share holders are left, fewer than the threshold "
                             f"{self.config.threshold}")
        # Pairwise mask seeds with every peer that sent shares.
        add_seeds, subtract_seeds = [self._self_mask_seed], []
        for sender in senders.tolist():
            try:
                secret = self._mask_key.exchange(self._peer_keys[sender][1])  # type: ignore[union-attr]
            except CryptoError as exc:
                raise _violation(f"unusable mask key of client {sender}: {exc}") from None
            seed = d.pairwise_mask_seed(secret, session_id, client_id, sender)
            (add_seeds if client_id < sender else subtract_seeds).append(seed)
        masked = self._input.copy()  # type: ignore[union-attr]
        apply_masks(masked, add_seeds, subtract_seeds, self._ring)
        reply = MaskedInput(session_id, client_id, self.config.modulus_bits, masked).encode()
        del masked
        # commit: keep only the shares held for others; forget the input and the secrets
        owners = [s for s, _ in received]
        tables = [limbs for _, limbs in received]
        if self._own_shares is not None:
            owners.append(client_id)
            tables.append(self._own_shares)
        order = np.argsort(owners)
        self._held_owners = np.asarray(owners, dtype=np.int64)[order]
        self._held_shares = np.stack(tables)[order] if tables else np.zeros((0, 2, LIMBS_PER_SECRET), np.uint32)
        self._mask_peers = senders
        self._input = None
        self._self_mask_seed = None
        self._mask_key = self._cipher_key = None
        self._incoming_keys = {}
        self.state = (ClientState.AWAIT_CONSISTENCY_REQUEST if self.config.malicious
                      else ClientState.AWAIT_UNMASK_REQUEST)
        return reply

    # ------------------------------------------------------------------ round 3: consistency check

    def _on_consistency_request(self, message: ConsistencyRequest) -> bytes:
        self._check_survivors(message.survivors)
        signature = self._identity.sign(d.consistency_payload(self.session_id, message.survivors))  # type: ignore[union-attr]
        reply = ConsistencySignature(self.session_id, self.client_id, signature).encode()
        self._signed_survivors = message.survivors
        self.state = ClientState.AWAIT_UNMASK_REQUEST
        return reply

    # ------------------------------------------------------------------ round 4: unmasking

    def _on_unmask_request(self, message: UnmaskRequest) -> bytes:
        survivors = message.survivors
        if self.config.malicious:
            if not np.array_equal(survivors, self._signed_survivors):
                raise _violation("unmask request names a survivor list other than the one this client signed")
            payload = d.consistency_payload(self.session_id, survivors)
            valid_from_holders = 0
            for signer, signature in message.signatures:
                if signer >= self.config.num_clients or not np.any(survivors == signer):
                    raise _violation(f"consistency signature from client {signer}, who is not a survivor")
                try:
                    verify_signature(self._verify_keys[signer], signature, payload)  # type: ignore[index]
                except CryptoError:
                    raise _violation(f"bad consistency signature from client {signer}") from None
                valid_from_holders += signer in self._holder_set
            if valid_from_holders < self.config.threshold:
                raise _violation(f"only {valid_from_holders} share holders signed the survivor list, "
                                 f"fewer than the threshold {self.config.threshold}")
        else:
            if message.signatures:
                raise _violation("consistency signatures in honest-but-curious mode")
            self._check_survivors(survivors)
        # Reveal exactly one kind of share per owner: the self-mask share of a survivor, the
        # mask-key share of a client that dropped before sending its masked input.
        alive = np.isin(self._held_owners, survivors)
        reply = UnmaskingShares(
            self.session_id, self.client_id,
            self._held_owners[alive], self._held_shares[alive, 0],
            self._held_owners[~alive], self._held_shares[~alive, 1],
        ).encode()
        self.revealed = {int(o): ("self_mask" if a else "mask_key") for o, a in zip(self._held_owners, alive)}
        self._held_shares = None
        self.state = ClientState.DONE
        return reply

    _handlers = {
        (ClientState.AWAIT_KEY_DIRECTORY, KeyDirectory): _on_key_directory,
        (ClientState.AWAIT_SHARE_BUNDLES, ShareBundles): _on_share_bundles,
        (ClientState.AWAIT_CONSISTENCY_REQUEST, ConsistencyRequest): _on_consistency_request,
        (ClientState.AWAIT_UNMASK_REQUEST, UnmaskRequest): _on_unmask_request,
    }
