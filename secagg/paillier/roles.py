"""The two roles of the Paillier path as sans-IO state machines: a bank and the coordinator.

A round, for session ``sid`` and round number ``r``:

1. the coordinator sends every bank a :class:`RoundRequest` (``r``, the key fingerprint, the
   number of ciphertexts, the fewest contributions it will have decrypted, and the ``encoding``:
   the digest of what the integers mean, :func:`encoding_digest`);
2. each bank checks the encoding against the one it computed itself from the parameters it
   accepted, encrypts its packed update and sends a :class:`Contribution`, signed with its
   Ed25519 identity over ``(sid, r, fingerprint, encoding, its id, the ciphertexts, the proof)``;
3. the coordinator forwards every valid contribution in a :class:`DecryptionRequest`;
4. each bank checks every signature (over the encoding it contributed under, so every contributor
   was told the same packing), that there are at least its ``min_contributors`` distinct
   contributions of round ``r``, and that it has not decrypted anything in round ``r`` yet;
   recomputes the product itself; partially decrypts it and proves it
   (:mod:`secagg.paillier.proofs`);
5. the coordinator verifies each proof, names any bank whose proof fails, and combines the first
   ``t`` valid partial decryptions into the plaintext sums.

The coordinator holds no key share. What keeps one bank's update private (docs/paillier.md):
``t > c`` (c corrupt banks cannot decrypt alone); every decrypted aggregate holds at least
``min_contributors >= c + 2`` signed contributions of the round, so at least two honest ones, and
the coordinator cannot add its own (it holds no bank's signing key); and each honest bank decrypts
at most one aggregate per round, so with ``2t > n + c`` any two decrypting quorums share an honest
bank: no second aggregate of the same round (the difference would be one bank's update).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import AbortError, CryptoError, MalformedMessage, ParameterError, ProtocolViolation, SessionStateError
from secagg.paillier import _gmpy2
from secagg.paillier.messages import (
    Contribution,
    DecryptionRequest,
    KnowledgeProof,
    PaillierAbort,
    PartialDecryptions,
    RoundRequest,
    decode_paillier_message,
)
from secagg.paillier.proofs import (
    DecryptionProof,
    PlaintextProof,
    prove_partial_decryptions,
    prove_plaintext_knowledge,
    verify_partial_decryptions,
    verify_plaintext_knowledge,
)
from secagg.paillier.threshold import KeyShare, PartialDecryption, ThresholdPublicKey, _combine
from secagg.paillier.vector import encrypt_packed_with_exponents, powmod_many

__all__ = ["PaillierThreatModel", "paillier_threat_model", "default_min_contributors", "BankSession",
           "PaillierCoordinator",
           "PaillierRoundState", "PaillierRoundResult", "contribution_payload", "partials_payload",
           "contributions_digest", "check_contribution", "element_width", "encoding_digest"]

_SERVER = "server"


def element_width(key: ThresholdPublicKey) -> int:
    """Bytes of one ciphertext on the wire: the byte length of N^2."""
    return (key.nsquare.bit_length() + 7) // 8


def encoding_digest(fields: Mapping[str, object]) -> bytes:
    """The 32-byte digest of what a round's integers mean, from JSON-typed ``fields`` (the
    packing, the fixed-point codec, the announcement a bank accepted): canonical JSON (sorted
    keys, no spaces, floats by their shortest repr), so two parties with the same parameters agree
    byte for byte. A bank signs its contribution over it and decrypts only aggregates of
    contributions signed over the same digest as its own."""
    if not isinstance(fields, Mapping):
        raise ParameterError("encoding fields must be a mapping")
    try:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"encoding fields must be plain JSON values: {exc}") from None
    return hashlib.sha256(b"secagg/paillier/v3/encoding\x00" + canonical.encode()).digest()


def contribution_payload(session_id: bytes, round_: int, fingerprint: bytes, sender: int,
                         ciphertexts: Sequence[int], width: int, proof: KnowledgeProof, encoding: bytes) -> bytes:
    """What a bank signs: its contribution and its proof, bound to the session, the round, the key
    and the encoding."""
    digest = hashlib.sha256(b"".join(int(c).to_bytes(width, "big") for c in ciphertexts)
                            + proof.encode(width)).digest()
    return (b"secagg/paillier/v3/contribution\x00" + session_id + struct.pack("<I", round_) + fingerprint
            + encoding + struct.pack("<II", sender, len(ciphertexts)) + digest)


def partials_payload(message: PartialDecryptions) -> bytes:
    """What a bank signs with its partial decryptions: all of them, the proof and the digest of the
    contributions they decrypt, so that anyone holding the signed contributions can check blame."""
    return (b"secagg/paillier/v3/partials\x00" + message.session_id + struct.pack("<I", message.party)
            + message.unsigned_body())


def contributions_digest(request: DecryptionRequest) -> bytes:
    return hashlib.sha256(b"secagg/paillier/v3/contributions\x00" + request.encoding
                          + request.contributions_bytes()).digest()


def _proof_context(session_id: bytes, round_: int) -> bytes:
    return session_id + struct.pack("<I", round_)


def _knowledge_context(session_id: bytes, round_: int, fingerprint: bytes, sender: int) -> bytes:
    return b"contribution\x00" + session_id + struct.pack("<I", round_) + fingerprint + struct.pack("<I", sender)


def check_contribution(public: ThresholdPublicKey, verify_key: bytes, session_id: bytes, round_: int,
                       sender: int, ciphertexts: Sequence[int], proof: KnowledgeProof, signature: bytes,
                       encoding: bytes) -> None:
    """:class:`CryptoError` unless the contribution is ``sender``'s, signed for this round and
    ``encoding``, every ciphertext valid, and its sender knows every plaintext (the proof)."""
    width = element_width(public)
    for value in ciphertexts:
        public.check_ciphertext(value)
    verify_signature(verify_key, signature, contribution_payload(session_id, round_, public.fingerprint, sender,
                                                                 ciphertexts, width, proof, encoding))
    verify_plaintext_knowledge(public, ciphertexts, PlaintextProof(proof.commitment, proof.z_message,
                                                                   proof.z_exponent),
                               _knowledge_context(session_id, round_, public.fingerprint, sender))


def _check_contribution_task(args) -> str | None:
    """Process-pool task: None if the contribution checks out, else the reason."""
    try:
        check_contribution(*args)
    except CryptoError as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------- threat model

@dataclass(frozen=True)
class PaillierThreatModel:
    """The bounds a key and a contribution floor are checked against (see the module docstring)."""

    parties: int
    threshold: int
    min_contributors: int
    corrupt_banks: int  # the number checked
    tolerated_corrupt: int  # the most these parameters tolerate


def _violations(n: int, t: int, floor: int, c: int) -> list[str]:
    out = []
    if not t > c:
        out.append(f"t > c fails for t={t}, c={c} (c corrupt banks could decrypt on their own)")
    if not 2 * t > n + c:
        out.append(f"2t > n + c fails for n={n}, t={t}, c={c} (two quorums could decrypt two aggregates of "
                   "one round, whose difference is one bank's update)")
    if not floor >= c + 2:
        out.append(f"min_contributors >= c + 2 fails for min_contributors={floor}, c={c} (an aggregate could hold "
                   "a single honest contribution)")
    return out


def paillier_threat_model(parties: int, threshold: int, min_contributors: int,
                          corrupt_banks: int | None = None) -> PaillierThreatModel:
    """:class:`ParameterError` naming the bound unless the parameters withstand ``corrupt_banks``
    (None: at least none; the largest tolerated number is reported)."""
    n, t, floor = parties, threshold, min_contributors
    if isinstance(floor, bool) or not isinstance(floor, int) or not 1 <= floor <= n:
        raise ParameterError(f"min_contributors must be in 1..{n}, got {floor!r}")
    if corrupt_banks is not None and (isinstance(corrupt_banks, bool) or not isinstance(corrupt_banks, int)
                                      or not 0 <= corrupt_banks < n):
        raise ParameterError(f"corrupt_banks must be in 0..{n - 1} or None, got {corrupt_banks!r}")
    checked = 0 if corrupt_banks is None else corrupt_banks
    problems = _violations(n, t, floor, checked)
    if problems:
        raise ParameterError("; ".join(problems))
    tolerated = checked
    while tolerated + 1 < n and not _violations(n, t, floor, tolerated + 1):
        tolerated += 1
    return PaillierThreatModel(n, t, floor, tolerated if corrupt_banks is None else checked, tolerated)


def default_min_contributors(parties: int, threshold: int, corrupt_banks: int | None = None) -> int:
    """The banks' default floor, ``c + 2``, for ``corrupt_banks`` (None: the most ``t`` tolerates,
    from ``t > c`` and ``2t > n + c``)."""
    n, t = parties, threshold
    c = corrupt_banks if corrupt_banks is not None else max(0, min(t - 1, 2 * t - n - 1))
    return min(n, c + 2)


def _check_identities(public: ThresholdPublicKey, verify_keys: Mapping[int, bytes]) -> dict[int, bytes]:
    keys = {int(i): bytes(k) for i, k in dict(verify_keys).items()}
    if set(keys) != set(range(public.parties)) or any(len(k) != 32 for k in keys.values()):
        raise ParameterError(f"verify_keys must map every bank 0..{public.parties - 1} to a 32-byte Ed25519 key")
    return keys


# ----------------------------------------------------------------------------- bank

class BankSession:
    """One bank's part in a session of Paillier rounds (its key share never leaves it).

    ``share`` is this bank's key share (bank id ``share.index - 1``), ``identity`` its Ed25519 key,
    ``verify_keys`` every bank's public key (obtained out of band). ``min_contributors`` is the
    fewest contributions this bank will ever help decrypt; DP sets it to the calibrated
    ``min_shares``. The session remembers the rounds it contributed to and decrypted
    (:attr:`contributed`, :attr:`decrypted`): a driver that rebuilds the session between messages
    must restore them (the Flower bank mod keeps them in the node's Context; the network bank
    keeps one session object per session id in memory).
    """

    def __init__(self, share: KeyShare, session_id: bytes, identity: IdentityKey, verify_keys: Mapping[int, bytes],
                 *, min_contributors: int, corrupt_banks: int | None = None) -> None:
        if not isinstance(share, KeyShare):
            raise ParameterError("share must be a KeyShare")
        public = share.public_key
        if not public.verifiable:
            raise ParameterError("the key has no verification keys: this bank could not prove its decryptions")
        share.check()
        if not isinstance(session_id, (bytes, bytearray)) or len(session_id) != 16:
            raise ParameterError("session_id must be 16 bytes")
        if not isinstance(identity, IdentityKey):
            raise ParameterError("identity must be an IdentityKey")
        self.public, self.share, self.session_id = public, share, bytes(session_id)
        self.bank = share.index - 1
        self.verify_keys = _check_identities(public, verify_keys)
        if identity.public_bytes != self.verify_keys[self.bank]:
            raise ParameterError("identity does not match this bank's entry in verify_keys")
        self.identity = identity
        self.threat_model = paillier_threat_model(public.parties, public.threshold, min_contributors, corrupt_banks)
        self.min_contributors = min_contributors
        self.width = element_width(public)
        self.fingerprint = public.fingerprint
        self.contributed: set[int] = set()
        self.encodings: dict[int, bytes] = {}  # round -> the encoding this bank contributed under
        self.decrypted: set[int] = set()
        self.aborted: dict[int, str] = {}

    def require_at_least(self, contributions: int) -> None:
        """Raise this bank's floor (never lowers it): e.g. to DP's calibrated ``min_shares``."""
        if isinstance(contributions, bool) or not isinstance(contributions, int) or \
                not 1 <= contributions <= self.public.parties:
            raise ParameterError(f"contributions must be in 1..{self.public.parties}, got {contributions!r}")
        self.min_contributors = max(self.min_contributors, contributions)

    def _violation(self, text: str) -> ProtocolViolation:
        return ProtocolViolation(text, party=_SERVER)

    def _decode(self, data: bytes):
        try:
            message = decode_paillier_message(data)
        except MalformedMessage as exc:
            exc.party = _SERVER
            raise
        if not isinstance(message, (RoundRequest, DecryptionRequest, PaillierAbort)):
            raise self._violation(f"{type(message).__name__} is a bank-to-coordinator message")
        if message.session_id != self.session_id:
            raise self._violation("message belongs to another session (replayed or misrouted)")
        if message.party != self.bank:
            raise self._violation(f"message addressed to bank {message.party}, not {self.bank}")
        if isinstance(message, PaillierAbort):
            return message
        if message.fingerprint != self.fingerprint:
            raise self._violation("message is for another key (fingerprint mismatch)")
        return message

    def read_request(self, data: bytes) -> RoundRequest:
        """Check a RoundRequest; the caller then encrypts its update and calls :meth:`contribute`."""
        message = self._decode(data)
        if isinstance(message, PaillierAbort):
            raise AbortError(f"coordinator aborted: {message.reason}")
        if not isinstance(message, RoundRequest):
            raise self._violation(f"expected a RoundRequest, got {type(message).__name__}")
        if message.round in self.contributed:
            raise self._violation(f"round {message.round} was already contributed to: a bank contributes once per "
                                  "round")
        return message

    def contribute(self, request: RoundRequest, plaintexts: Sequence[int], *, encoding: bytes) -> bytes:
        """This bank's signed contribution to ``request``'s round: it encrypts ``plaintexts`` (packed
        integers in ``[0, N)``) itself and proves it knows them. ``encoding`` is the digest this
        bank computed itself (:func:`encoding_digest`) of what the integers mean; a request that
        announces another one is refused (ProtocolViolation) before anything is encrypted."""
        if not isinstance(request, RoundRequest) or request.session_id != self.session_id:
            raise ParameterError("request must be a RoundRequest of this session (from read_request)")
        if not isinstance(encoding, bytes) or len(encoding) != 32:
            raise ParameterError("encoding must be the 32-byte digest of encoding_digest()")
        if request.round in self.contributed:
            raise SessionStateError(f"round {request.round} was already contributed to")
        if request.encoding != encoding:
            raise self._violation(f"round {request.round} announces another encoding than the one this bank "
                                  "accepted (packing or codec parameters differ)")
        values = [int(m) for m in plaintexts]
        if len(values) != request.ciphertexts:
            raise ParameterError(f"round {request.round} takes {request.ciphertexts} ciphertexts, got {len(values)}")
        ciphertexts, exponents = encrypt_packed_with_exponents(self.public, values)
        proof = prove_plaintext_knowledge(self.public, ciphertexts, values, exponents,
                                          _knowledge_context(self.session_id, request.round, self.fingerprint,
                                                             self.bank))
        wire_proof = KnowledgeProof(proof.commitment, proof.z_message, proof.z_exponent)
        signature = self.identity.sign(contribution_payload(self.session_id, request.round, self.fingerprint,
                                                            self.bank, ciphertexts, self.width, wire_proof, encoding))
        message = Contribution(self.session_id, self.bank, request.round, self.fingerprint, self.width,
                               tuple(ciphertexts), wire_proof, signature)
        self.contributed.add(request.round)
        self.encodings[request.round] = encoding
        return message.encode()

    def handle(self, data: bytes, *, mapper=None) -> bytes:
        """A DecryptionRequest -> this bank's proven partial decryptions of the aggregate it
        recomputed itself. Refusals (ProtocolViolation, ``party="server"``) change nothing;
        a PaillierAbort raises :class:`AbortError`. ``mapper`` (e.g. a process pool's ``map`` on
        this bank's own machine) spreads the exponentiations over its cores."""
        message = self._decode(data)
        if isinstance(message, PaillierAbort):
            self.aborted[-1] = message.reason
            raise AbortError(f"coordinator aborted: {message.reason}")
        if not isinstance(message, DecryptionRequest):
            raise self._violation(f"expected a DecryptionRequest, got {type(message).__name__}")
        round_ = message.round
        if round_ in self.decrypted:
            raise self._violation(f"a second decryption in round {round_}: this bank decrypts one aggregate per round")
        if message.width != self.width:
            raise self._violation(f"ciphertexts of {message.width} bytes, the key's are {self.width}")
        if round_ in self.encodings and message.encoding != self.encodings[round_]:
            raise self._violation(f"round {round_} is decrypted under another encoding than this bank contributed "
                                  "under")
        if len(message.contributions) < self.min_contributors:
            raise self._violation(f"{len(message.contributions)} contributions, this bank decrypts no aggregate of "
                                  f"fewer than {self.min_contributors}")
        for c in message.contributions:
            if c.sender >= self.public.parties:
                raise self._violation(f"contribution from unknown bank {c.sender}")
        tasks = [(self.public, self.verify_keys[c.sender], self.session_id, round_, c.sender, c.ciphertexts, c.proof,
                  c.signature, message.encoding) for c in message.contributions]
        for c, failure in zip(message.contributions, (mapper or map)(_check_contribution_task, tasks)):
            if failure is not None:
                raise self._violation(f"the contribution of bank {c.sender} is not its own signed contribution to "
                                      f"round {round_} under this encoding: {failure}")
        aggregate = _product(self.public, [c.ciphertexts for c in message.contributions])
        partials = powmod_many(aggregate, 2 * self.public.delta * self.share.share, self.public.nsquare,
                               mapper=mapper)
        proof = prove_partial_decryptions(self.share, aggregate, partials, _proof_context(self.session_id, round_),
                                          mapper=mapper)
        unsigned = PartialDecryptions(self.session_id, self.bank, round_, self.fingerprint, self.width,
                                      tuple(partials), proof.challenge, proof.response, contributions_digest(message),
                                      bytes(64))
        reply = PartialDecryptions(self.session_id, self.bank, round_, self.fingerprint, self.width,
                                   tuple(partials), proof.challenge, proof.response, unsigned.request_digest,
                                   self.identity.sign(partials_payload(unsigned)))
        self.decrypted.add(round_)
        return reply.encode()


def _product(key: ThresholdPublicKey, vectors: Sequence[Sequence[int]]) -> list[int]:
    gmpy2 = _gmpy2()
    nsquare = gmpy2.mpz(key.nsquare)
    total = [gmpy2.mpz(c) for c in vectors[0]]
    for vector in vectors[1:]:
        for i, c in enumerate(vector):
            total[i] = total[i] * c % nsquare
    return [int(x) for x in total]


# ----------------------------------------------------------------------------- coordinator

class PaillierRoundState(str, Enum):
    CONTRIBUTION = "contribution"
    DECRYPTION = "decryption"
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class PaillierRoundResult:
    """The plaintext sums (one integer per ciphertext position), who contributed, who decrypted,
    and the banks whose messages were refused (bad signature, bad proof), with the reason."""

    plaintexts: list[int]
    contributors: tuple[int, ...]
    decryptors: tuple[int, ...]
    misbehaving: dict[int, str] = field(default_factory=dict)


class PaillierCoordinator:
    """The coordinator of one Paillier round (it holds no key share).

    ``banks``: the bank ids taking part (default all). Each round closes by itself when every
    bank asked has answered or been refused, or at the driver's :meth:`close_round` (its deadline,
    or every silent bank disconnected). The decryption round waits for every bank asked rather
    than stopping at the first ``t`` valid partials: every wrong partial is then checked and its
    sender named, whatever order the answers arrive in; a silent bank costs the deadline, as it
    does in the contribution round.
    """

    def __init__(self, public: ThresholdPublicKey, session_id: bytes, verify_keys: Mapping[int, bytes], *,
                 round: int, ciphertexts: int, min_contributors: int, encoding: bytes,  # noqa: A002
                 banks: Sequence[int] | None = None, corrupt_banks: int | None = None, mapper=None) -> None:
        if not isinstance(public, ThresholdPublicKey) or not public.verifiable:
            raise ParameterError("public must be a ThresholdPublicKey with verification keys")
        if not isinstance(session_id, (bytes, bytearray)) or len(session_id) != 16:
            raise ParameterError("session_id must be 16 bytes")
        self.public, self.session_id = public, bytes(session_id)
        self.verify_keys = _check_identities(public, verify_keys)
        self.threat_model = paillier_threat_model(public.parties, public.threshold, min_contributors, corrupt_banks)
        self.request = RoundRequest(self.session_id, 0, round, public.fingerprint, ciphertexts, min_contributors,
                                    encoding)
        ids = sorted(set(range(public.parties) if banks is None else (int(b) for b in banks)))
        if not ids or ids[0] < 0 or ids[-1] >= public.parties:
            raise ParameterError(f"banks must be ids in 0..{public.parties - 1}")
        self.banks = frozenset(ids)
        self.width = element_width(public)
        self.mapper = mapper  # spreads proof verification over the coordinator's cores
        self.state = PaillierRoundState.CONTRIBUTION
        self.contributions: dict[int, Contribution] = {}
        self.partials: dict[int, PartialDecryptions] = {}
        self.misbehaving: dict[int, str] = {}
        self.asked: frozenset[int] = frozenset()
        self.aggregate: list[int] = []
        self.request_digest = b""  # of the contributions every bank is asked to decrypt
        self.result: PaillierRoundResult | None = None
        self.abort_reason: str | None = None
        self.dropped: dict[str, list[int]] = {}

    # -------------------------------------------------------------- interface of a session

    @property
    def expected_clients(self) -> frozenset[int]:
        return {PaillierRoundState.CONTRIBUTION: self.banks,
                PaillierRoundState.DECRYPTION: self.asked}.get(self.state, frozenset())

    @property
    def pending_clients(self) -> frozenset[int]:
        if self.state is PaillierRoundState.CONTRIBUTION:
            return self.banks - self.contributions.keys() - self.misbehaving.keys()
        if self.state is PaillierRoundState.DECRYPTION:
            return self.asked - self.partials.keys() - self.misbehaving.keys()
        return frozenset()

    def start(self) -> dict[int, bytes]:
        """The RoundRequest for every bank."""
        if self.state is not PaillierRoundState.CONTRIBUTION or self.contributions:
            raise SessionStateError("start() is the first call of a round")
        return {b: RoundRequest(self.session_id, b, self.request.round, self.request.fingerprint,
                                self.request.ciphertexts, self.request.min_contributors,
                                self.request.encoding).encode()
                for b in sorted(self.banks)}

    def receive(self, bank: int, data: bytes) -> dict[int, bytes]:
        """One bank's message (as authenticated by the transport). Refusals raise
        ProtocolViolation naming the bank; a refused contribution or proof is also recorded in
        :attr:`misbehaving` (the bank is named in the result), nothing else changes."""
        if self.state not in (PaillierRoundState.CONTRIBUTION, PaillierRoundState.DECRYPTION):
            raise SessionStateError(f"receive() called on a {self.state.value} round")
        try:
            message = decode_paillier_message(data)
        except MalformedMessage as exc:
            exc.party = bank
            raise
        if not isinstance(message, (Contribution, PartialDecryptions)) or message.party != bank or \
                message.session_id != self.session_id:
            raise ProtocolViolation(f"bank {bank}: not its message for this session", party=bank)
        if bank not in self.banks or bank in self.misbehaving:
            raise ProtocolViolation(f"bank {bank} is not part of this round", party=bank)
        if message.round != self.request.round or message.fingerprint != self.public.fingerprint or \
                message.width != self.width:
            raise ProtocolViolation(f"bank {bank}: message for another round or key", party=bank)
        if self.state is PaillierRoundState.CONTRIBUTION:
            return self._on_contribution(bank, message)
        return self._on_partials(bank, message)

    def _on_contribution(self, bank: int, message) -> dict[int, bytes]:
        if not isinstance(message, Contribution):
            raise ProtocolViolation(f"bank {bank} sent {type(message).__name__} during the contribution round",
                                    party=bank)
        if bank in self.contributions:
            raise ProtocolViolation(f"bank {bank} contributed twice", party=bank)
        if len(message.ciphertexts) != self.request.ciphertexts:
            raise ProtocolViolation(f"bank {bank} sent {len(message.ciphertexts)} ciphertexts, the round takes "
                                    f"{self.request.ciphertexts}", party=bank)
        try:
            check_contribution(self.public, self.verify_keys[bank], self.session_id, message.round, bank,
                               message.ciphertexts, message.proof, message.signature, self.request.encoding)
        except CryptoError as exc:
            self.misbehaving[bank] = f"invalid contribution: {exc}"
            raise ProtocolViolation(f"bank {bank}: invalid contribution ({exc})", party=bank) from None
        self.contributions[bank] = message
        if not self.pending_clients:
            return self._close()
        return {}

    def _on_partials(self, bank: int, message) -> dict[int, bytes]:
        if not isinstance(message, PartialDecryptions):
            raise ProtocolViolation(f"bank {bank} sent {type(message).__name__} during the decryption round",
                                    party=bank)
        if bank not in self.asked or bank in self.partials:
            raise ProtocolViolation(f"bank {bank} was not asked to decrypt, or already answered", party=bank)
        if len(message.values) != len(self.aggregate):
            raise ProtocolViolation(f"bank {bank}: {len(message.values)} partial decryptions for "
                                    f"{len(self.aggregate)} ciphertexts", party=bank)
        if message.request_digest != self.request_digest:
            self.misbehaving[bank] = "partial decryptions of other contributions than the round's"
            raise ProtocolViolation(f"bank {bank}: partial decryptions of other contributions", party=bank)
        try:
            verify_signature(self.verify_keys[bank], message.signature, partials_payload(message))
        except CryptoError:
            self.misbehaving[bank] = "partial decryptions without its valid signature"
            raise ProtocolViolation(f"bank {bank}: partial decryptions without its valid signature", party=bank) \
                from None
        try:
            verify_partial_decryptions(self.public, bank + 1, self.aggregate, message.values,
                                       DecryptionProof(message.challenge, message.response),
                                       _proof_context(self.session_id, self.request.round), mapper=self.mapper)
        except CryptoError as exc:
            self.misbehaving[bank] = f"wrong partial decryption: {exc}"
            raise ProtocolViolation(f"bank {bank}: {exc}", party=bank) from None
        self.partials[bank] = message
        if not self.pending_clients:
            return self._close()
        return {}

    def close_round(self) -> dict[int, bytes]:
        """Close the current round now (its deadline passed); AbortError if it cannot go on."""
        if self.state not in (PaillierRoundState.CONTRIBUTION, PaillierRoundState.DECRYPTION):
            raise SessionStateError(f"close_round() called on a {self.state.value} round")
        return self._close()

    def abort(self, reason: str) -> dict[int, bytes]:
        if self.state not in (PaillierRoundState.CONTRIBUTION, PaillierRoundState.DECRYPTION):
            raise SessionStateError(f"abort() called on a {self.state.value} round")
        targets = self.expected_clients
        self._abort(reason)
        return {b: PaillierAbort(self.session_id, b, reason[:200]).encode() for b in sorted(targets)}

    def _abort(self, reason: str) -> AbortError:
        round_name = self.state.value
        self.state, self.abort_reason = PaillierRoundState.ABORTED, reason
        return AbortError(reason, round=round_name)

    def _close(self) -> dict[int, bytes]:
        if self.state is PaillierRoundState.CONTRIBUTION:
            self.dropped["contribution"] = sorted(self.banks - self.contributions.keys())
            floor = self.request.min_contributors
            if len(self.contributions) < floor:
                raise self._abort(f"contribution: {len(self.contributions)} contributions, fewer than {floor}")
            signed = tuple(self.contributions[b].signed() for b in sorted(self.contributions))
            self.aggregate = _product(self.public, [c.ciphertexts for c in signed])
            self.asked = self.banks - self.misbehaving.keys()
            self.state = PaillierRoundState.DECRYPTION
            requests = {b: DecryptionRequest(self.session_id, b, self.request.round, self.public.fingerprint,
                                             self.width, signed, self.request.encoding) for b in sorted(self.asked)}
            self.request_digest = contributions_digest(next(iter(requests.values()))) if requests else b""
            return {b: r.encode() for b, r in requests.items()}
        self.dropped["decryption"] = sorted(self.asked - self.partials.keys() - self.misbehaving.keys())
        if len(self.partials) < self.public.threshold:
            blame = f"; refused: {self.misbehaving}" if self.misbehaving else ""
            raise self._abort(f"decryption: {len(self.partials)} valid partial decryptions, the threshold is "
                              f"{self.public.threshold}{blame}")
        chosen = sorted(self.partials)[: self.public.threshold]
        by_party = {b + 1: [PartialDecryption(b + 1, v) for v in self.partials[b].values] for b in chosen}
        plaintexts = _combine(self.public, by_party, len(self.aggregate))
        self.result = PaillierRoundResult(plaintexts, tuple(sorted(self.contributions)), tuple(chosen),
                                          dict(self.misbehaving))
        self.state = PaillierRoundState.COMPLETED
        return {}
