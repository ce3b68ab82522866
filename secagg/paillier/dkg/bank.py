"""One bank's side of the dealerless key ceremony, as a sans-IO state machine.

``DkgBank.start()`` gives the bank's hello; ``DkgBank.handle(message)`` takes the coordinator's
answer (the other banks' keys, then one bundle per round) and gives the bank's next message, until
the ceremony is over (``handle`` returns None and :attr:`DkgBank.key_share` holds the bank's
share). Every refusal is a typed error raised before the bank's state changes (its random source
included): :class:`MalformedMessage` / :class:`ProtocolViolation` naming the bank at fault (or
``"server"`` for the coordinator), :class:`AbortError` when the ceremony cannot finish or the fault
cannot be pinned on one party.

protocols/dkg-v1.md is the normative description: the messages, the rounds, every check (rule ids
in the error messages' docstrings below refer to it) and the order in which a bank consumes its
random bytes. In short (n banks with ids 0..n-1 and Shamir points 1..n; c corrupt; ``[x]`` a
Shamir sharing of degree c, ``[x]_2c`` of degree 2c, whose first shares each receiver derives from
the stream of the pair's key and the rest of which travel sealed):

1. **SIEVE**: for B candidates x every sieve prime's attempts, each bank draws residues ``a_i, b_i``
   mod l and deals ``[a_i], [b_i], [0]_2c`` over F_l.
2. **SIEVE_REVEAL**: each bank publishes its share of ``(o_p + sum a)(o_q + sum b) + 0`` mod l;
   everyone reconstructs ``N mod l``; the first attempt that is nonzero fixes ``p, q mod l``.
3. **MODULUS**: integer shares ``p_i = CRT(a_i) + M r_i`` (bank 0 adds the public offset), dealt
   as ``[p_i], [q_i], [0]_2c`` over F_P1.
4. **MODULUS_REVEAL**: shares of ``pq + 0``; everyone reconstructs N, checks its form, and divides
   it by every prime below 2^16.
5. **BIPRIME** / 6. **CONFIRM**: Boneh-Franklin's test, one base per candidate, then 40 more.
7. **KEY**: ``[phi_i], [R_i]`` and ``[S_i]_2c, [0]_2c`` over F_P2.
8. **KEY_REVEAL**: ``W = phi R + N S`` and the top bits of the 2c + 1 additive shares of ``phi R``.
9. **RESHARE**: the 2c + 1 banks share ``Delta x_j`` (``sum x_j = phi R``) over the integers.
10. **VERIFY**: Shoup's verification keys ``v^(Delta s_i)``, checked to lie on one polynomial.
11. **TEST**: a proven partial decryption of a public test ciphertext and a signature on the key.
12. **FINISH**: every bank signs the same key.

No bank ever holds p, q, phi(N) or the decryption exponent phi R (docs/paillier.md, "Key ceremony
without a dealer", gives the argument; tests/paillier/test_dkg.py inspects every state).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey, hkdf
from secagg.crypto.prg import keystream
from secagg.crypto.randomness import CheckedRandomness, RandomSource, system_randomness
from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import AbortError, CryptoError, MalformedMessage, ParameterError, ProtocolViolation, \
    SessionStateError
from secagg.paillier import _gmpy2
from secagg.paillier.dkg.arithmetic import big_from_stream, big_value_bytes, deal_big, \
    deal_small, derived_set, draw_below, draw_bits, draw_residues, explicit_set, integer_shares, lagrange_at, \
    pack_residues, public_element, public_integer, reconstruct_big, reconstruct_small, residues_from_stream, \
    unpack_residues
from secagg.paillier.dkg.config import STATISTICAL_BITS, DkgConfig
from secagg.paillier.dkg.messages import CEREMONY_ID_BYTES, Bundle, DkgAbort, Hello, Keys, Letter, RoundKind, \
    RoundMessage, decode_dkg_message

if TYPE_CHECKING:
    from secagg.paillier.threshold import KeyShare, ThresholdPublicKey

__all__ = ["DkgBank", "BankState", "CeremonyStats", "hello_statement", "letter_statement", "key_statement",
           "initial_transcript", "test_ciphertext", "new_ceremony_id", "verification_keys_consistent"]

_U32 = struct.Struct("<I")
_DOMAIN = b"secagg/paillier/dkg/v1/"


class BankState(Enum):
    START = "start"
    RUNNING = "running"
    DONE = "done"
    ABORTED = "aborted"


@dataclass
class CeremonyStats:
    """What one bank's ceremony cost (counts are of candidate pairs)."""

    batches: int = 0
    sieved: int = 0  # candidates whose residues were drawn
    moduli: int = 0  # candidates whose N was computed
    biprimality_tests: int = 0  # candidates that survived trial division
    rounds: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hello_statement(ceremony_id: bytes, party: int, config: DkgConfig, agreement_key: bytes) -> bytes:
    """What a bank signs in its hello: this ceremony, its id, the parameters and its channel key."""
    return _DOMAIN + b"hello\x00" + ceremony_id + _U32.pack(party) + config.digest() + agreement_key


def letter_statement(ceremony_id: bytes, sender: int, recipient: int, round_: int, kind: int, transcript: bytes,
                     public_digest: bytes, sealed: bytes) -> bytes:
    """What a bank signs for each other bank in a round: its broadcast (by digest), the part sealed
    for that bank (by digest), the round and the transcript it has seen. The signature makes a
    broadcast or a sealed part evidence against its sender, so the relay can neither alter one nor
    get an honest bank blamed for what it altered."""
    return (_DOMAIN + b"letter\x00" + ceremony_id + _U32.pack(sender) + _U32.pack(recipient) + _U32.pack(round_)
            + bytes([int(kind)]) + transcript + public_digest + _sha256(sealed))


def key_statement(ceremony_id: bytes, fingerprint: bytes, transcript: bytes) -> bytes:
    """What a bank signs at the end: this ceremony produced the key with this fingerprint."""
    return _DOMAIN + b"key\x00" + ceremony_id + fingerprint + transcript


def initial_transcript(ceremony_id: bytes, config: DkgConfig) -> bytes:
    return _sha256(_DOMAIN + b"transcript\x00" + ceremony_id + config.digest())


def test_ciphertext(public, ceremony_id: bytes, transcript: bytes) -> tuple[int, int]:
    """The public test plaintext and its encryption (public randomness): every bank decrypts it."""
    n = public.n
    context = ceremony_id + transcript
    message = public_integer(b"test-message", context, n.bit_length() - 2)
    rho = public_element(b"test-randomness", context, n)
    gmpy2 = _gmpy2()
    nsquare = gmpy2.mpz(n) * n
    return message, int((1 + gmpy2.mpz(n) * message) * gmpy2.powmod(rho, n, nsquare) % nsquare)


def verification_keys_consistent(public) -> bool:
    """Whether Shoup's verification keys ``v_i = v^(Delta s_i)`` come from one polynomial of degree
    t - 1: ``v_k^Delta = prod_{i <= t} v_i^(lambda_ik)`` for every point k > t, with the integer
    coefficients ``lambda_ik = Delta prod_{j != i} (k - j) / (i - j)``. A bank that dealt one bank an
    inconsistent share of the exponent makes this fail, whichever t banks later decrypt."""
    gmpy2 = _gmpy2()
    nsquare = gmpy2.mpz(public.n) ** 2
    base = list(range(1, public.threshold + 1))
    keys = [gmpy2.mpz(v) for v in public.verification_keys]
    for k in range(public.threshold + 1, public.parties + 1):
        product = gmpy2.mpz(1)
        for i in base:
            numerator, denominator = public.delta, 1
            for j in base:
                if j != i:
                    numerator *= k - j
                    denominator *= i - j
            coefficient = numerator // denominator
            value = keys[i - 1] if coefficient >= 0 else gmpy2.invert(keys[i - 1], nsquare)
            product = product * gmpy2.powmod(value, abs(coefficient), nsquare) % nsquare
        if gmpy2.powmod(keys[k - 1], public.delta, nsquare) != product:
            return False
    return True


def _int_bytes(value: int, width: int) -> bytes:
    return int(value).to_bytes(width, "big")


def _minimal_bytes(value: int) -> bytes:
    return int(value).to_bytes((int(value).bit_length() + 7) // 8, "big")


def _ints_from(data: bytes, width: int, count: int, bound: int, what: str, party: int) -> list:
    gmpy2 = _gmpy2()
    if len(data) != width * count:
        raise ProtocolViolation(f"bank {party} sent {len(data)} bytes of {what}, expected {width * count}",
                                party=party)
    out = []
    for k in range(count):
        value = gmpy2.mpz(int.from_bytes(data[k * width:(k + 1) * width], "big"))
        if value >= bound:
            raise ProtocolViolation(f"bank {party} sent a {what} out of range", party=party)
        out.append(value)
    return out


def _field_width(prime: int) -> int:
    return (int(prime).bit_length() + 7) // 8


@dataclass
class _Batch:
    index: int
    size: int
    offsets_p: list = field(default_factory=list)  # public offsets (Python ints)
    offsets_q: list = field(default_factory=list)
    own_p: np.ndarray | None = None  # this bank's residues a_i per (candidate, column)
    own_q: np.ndarray | None = None
    mine: tuple = ()  # this bank's shares of its own sharings of the round in flight
    kept: list = field(default_factory=list)  # candidates whose residues were all drawn
    p_shares: list = field(default_factory=list)  # this bank's integer share p_i per kept candidate
    q_shares: list = field(default_factory=list)
    moduli: list = field(default_factory=list)  # N per kept candidate (public)
    survivors: list = field(default_factory=list)  # kept positions that passed trial division


class DkgBank:
    """Bank ``party`` (0-based; Shamir point ``party + 1``) of the ceremony ``ceremony_id``.

    ``identity`` is the bank's Ed25519 key; ``verify_keys`` every bank's public key (ids 0..n-1):
    hellos and letters are signed, so the coordinator can neither sit in the middle of the pairwise
    channels nor alter what it relays. ``rng`` is the source of every secret the bank draws (the
    OS CSPRNG unless a test or the vector generator passes a test-only seeded one).
    """

    def __init__(self, config: DkgConfig, party: int, ceremony_id: bytes, identity: IdentityKey,
                 verify_keys: Mapping[int, bytes], *, rng: RandomSource | None = None) -> None:
        if not isinstance(config, DkgConfig):
            raise ParameterError("a DkgBank needs a DkgConfig")
        if isinstance(party, bool) or not isinstance(party, int) or not 0 <= party < config.banks:
            raise ParameterError(f"party must be in 0..{config.banks - 1}, got {party!r}")
        if len(bytes(ceremony_id)) != CEREMONY_ID_BYTES:
            raise ParameterError(f"a ceremony id has {CEREMONY_ID_BYTES} bytes")
        keys = {int(i): bytes(k) for i, k in dict(verify_keys).items()}
        if set(keys) != set(range(config.banks)) or any(len(k) != 32 for k in keys.values()):
            raise ParameterError("verify_keys must hold one 32-byte Ed25519 key per bank id 0..n-1")
        if identity is None or identity.public_bytes != keys[party]:
            raise ParameterError(f"the identity key is not bank {party}'s")
        self.config, self.party, self.ceremony_id = config, party, bytes(ceremony_id)
        self.point = party + 1
        self.identity, self.verify_keys = identity, keys
        self._rng: RandomSource = CheckedRandomness(rng) if rng is not None else system_randomness()
        self.state = BankState.START
        self.stats = CeremonyStats()
        self.round = 0
        self.expected: RoundKind | None = None  # None: waiting for the other banks' keys
        self.transcript = initial_transcript(self.ceremony_id, config)
        self._agreement: AgreementKey | None = None
        self._hello_signature = b""
        self._pair_keys: dict[int, bytes] = {}
        self._cache: dict = {}
        self._batch: _Batch | None = None
        self._candidate: dict = {}
        self.key_share: KeyShare | None = None
        self.public_key: ThresholdPublicKey | None = None
        self.abort_reason: str | None = None
        self._sent_public = b""

    # ------------------------------------------------------------------ I/O

    def start(self) -> bytes:
        """Draw this ceremony's X25519 key (32 bytes, rule G1) and say hello."""
        if self.state is not BankState.START:
            raise SessionStateError("start() once, before anything else")
        self._agreement = AgreementKey.generate(self._rng)
        statement = hello_statement(self.ceremony_id, self.party, self.config, self._agreement.public_bytes)
        self._hello_signature = self.identity.sign(statement)
        self.state = BankState.RUNNING
        return self._count(Hello(self.ceremony_id, self.party, self._agreement.public_bytes,
                                 self._hello_signature).encode())

    def handle(self, data: bytes) -> bytes | None:
        """The bank's next message for the coordinator's message ``data`` (None: nothing more to say)."""
        if self.state is not BankState.RUNNING:
            raise SessionStateError(f"the bank's ceremony is {self.state.value}")
        try:
            message = decode_dkg_message(data)
        except MalformedMessage as exc:
            exc.party = "server"
            raise
        if message.ceremony_id != self.ceremony_id:
            raise ProtocolViolation("a message of another ceremony", party="server")
        if isinstance(message, DkgAbort):
            self.state, self.abort_reason = BankState.ABORTED, message.reason
            raise AbortError(f"the coordinator aborted the ceremony: {message.reason}", round="dkg")
        if message.party != self.party:
            raise ProtocolViolation(f"a message addressed to bank {message.party}", party="server")
        if self.expected is None:
            if not isinstance(message, Keys):
                raise ProtocolViolation("expected the other banks' keys", party="server")
            reply = self._after_keys(message)
        else:
            if not isinstance(message, Bundle):
                raise ProtocolViolation("expected a bundle", party="server")
            reply = self._after_bundle(message, self.expected)
        self.stats.bytes_received += len(data)
        return reply

    def _after_bundle(self, message: Bundle, expected: RoundKind) -> bytes | None:
        config, round_ = self.config, self.round
        if message.round != round_:
            raise ProtocolViolation(f"a bundle of round {message.round}, this bank is in round {round_}",
                                    party="server")
        entries = message.entries
        if [e.sender for e in entries] != self._others():
            raise ProtocolViolation("a bundle must carry every other bank's letter", party="server")
        digests = {self.party: _sha256(self._sent_public)}
        for e in entries:
            digest = _sha256(e.public)
            try:
                verify_signature(self.verify_keys[e.sender], e.signature, letter_statement(
                    self.ceremony_id, e.sender, self.party, round_, e.kind, e.transcript, digest, e.sealed))
            except CryptoError:
                raise ProtocolViolation(f"the letter from bank {e.sender} is not signed by it: the coordinator "
                                        "altered or forged it", party="server") from None
            digests[e.sender] = digest
        for e in entries:
            if e.kind is not expected:
                raise ProtocolViolation(f"bank {e.sender} sent a {e.kind.name} round, the ceremony is at "
                                        f"{expected.name}", party=e.sender)
        for e in entries:
            if e.transcript != self.transcript:
                raise AbortError(f"bank {e.sender} signed another transcript than this bank's: the banks saw "
                                 "different broadcasts (a bank signed two, or that bank deviates)", round="dkg")
        private = {}
        for e in entries:
            if not e.sealed:
                private[e.sender] = b""
                continue
            try:
                plaintext = open_sealed(self._message_key(e.sender, self.party, round_), e.sealed,
                                        self._associated(e.sender, self.party, round_, e.kind))
            except CryptoError:
                raise ProtocolViolation(f"bank {e.sender} signed a sealed part that does not open",
                                        party=e.sender) from None
            if not plaintext:
                raise ProtocolViolation(f"bank {e.sender} sealed an empty part (it must send none)", party=e.sender)
            private[e.sender] = plaintext
        publics = {e.sender: e.public for e in entries}
        publics[self.party] = self._sent_public
        handler = getattr(self, f"_after_{expected.name.lower()}")
        reply = handler(publics, private)  # raises before any state below changes
        transcript = hashlib.sha256(self.transcript + _U32.pack(round_))
        for i in range(config.banks):
            transcript.update(_U32.pack(i) + bytes([int(expected)]) + digests[i])
        self.transcript = transcript.digest()
        return self._emit(reply)

    def _count(self, data: bytes) -> bytes:
        self.stats.bytes_sent += len(data)
        return data

    # ------------------------------------------------------------------ channels

    def _message_key(self, sender: int, receiver: int, round_: int) -> bytes:
        return hkdf(self._pair_keys[sender if sender != self.party else receiver], b"paillier-dkg-channel",
                    self.ceremony_id + _U32.pack(round_) + _U32.pack(sender) + _U32.pack(receiver))

    def _associated(self, sender: int, receiver: int, round_: int, kind: RoundKind) -> bytes:
        return (_DOMAIN + b"sealed\x00" + self.ceremony_id + _U32.pack(round_) + _U32.pack(sender)
                + _U32.pack(receiver) + bytes([int(kind)]))

    def _share_stream(self, round_: int, dealer: int, receiver: int, nbytes: int) -> bytes:
        """The stream from which ``receiver`` derives its shares of ``dealer``'s sharings of a round."""
        seed = hkdf(self._pair_keys[receiver if dealer == self.party else dealer], b"paillier-dkg-shares",
                    self.ceremony_id + _U32.pack(round_) + _U32.pack(dealer) + _U32.pack(receiver))
        return keystream(seed, nbytes)

    def _after_keys(self, message: Keys) -> bytes | None:
        agreement = self._agreement
        if agreement is None:
            raise SessionStateError("the other banks' keys before start()")
        if [sender for sender, _, _ in message.entries] != self._others():
            raise ProtocolViolation("the keys message must carry every other bank's hello", party="server")
        pair_keys = {}
        for sender, key, signature in message.entries:
            try:
                verify_signature(self.verify_keys[sender], signature,
                                 hello_statement(self.ceremony_id, sender, self.config, key))
            except CryptoError:
                raise ProtocolViolation(f"bank {sender}'s hello is not signed by bank {sender}: the coordinator "
                                        "altered or forged it", party="server") from None
            try:
                secret = agreement.exchange(key)
            except CryptoError as exc:
                raise ProtocolViolation(f"bank {sender} signed an unusable channel key: {exc}", party=sender) from None
            low, high = min(self.party, sender), max(self.party, sender)
            pair_keys[sender] = hkdf(secret, b"paillier-dkg-pair", self.ceremony_id + _U32.pack(low) + _U32.pack(high))
        hellos = {sender: key + signature for sender, key, signature in message.entries}
        hellos[self.party] = agreement.public_bytes + self._hello_signature
        self._pair_keys = pair_keys  # every check passed; the first batch cannot run out of batches
        digest = hashlib.sha256(self.transcript)
        for i in range(self.config.banks):
            digest.update(_U32.pack(i) + hellos[i])
        self.transcript = digest.digest()
        return self._emit(self._sieve_round())

    def _emit(self, reply) -> bytes | None:
        if reply is None:
            return None
        kind, public, private = reply
        self.round += 1
        self.stats.rounds += 1
        self.expected = kind
        self._sent_public = public
        digest = _sha256(public)
        letters = []
        for j in self._others():
            plaintext = private.get(j, b"")
            sealed = seal(self._message_key(self.party, j, self.round), plaintext,
                          self._associated(self.party, j, self.round, kind)) if plaintext else b""
            signature = self.identity.sign(letter_statement(self.ceremony_id, self.party, j, self.round, kind,
                                                            self.transcript, digest, sealed))
            letters.append(Letter(j, sealed, signature))
        return self._count(RoundMessage(self.ceremony_id, self.party, self.round, kind, self.transcript, public,
                                        tuple(letters)).encode())

    def _in_flight(self) -> _Batch:
        """The candidate batch the ceremony is sieving and testing now."""
        if self._batch is None:
            raise SessionStateError("no candidate batch in flight")
        return self._batch

    def _others(self) -> list[int]:
        return [j for j in range(self.config.banks) if j != self.party]

    def _no_public(self, publics: dict, what: str) -> None:
        for j, public in publics.items():
            if public:
                raise ProtocolViolation(f"bank {j} published something in a round of {what} (nothing is public)",
                                        party=j)

    def _no_private(self, private: dict, senders, what: str) -> None:
        for j in senders:
            if private.get(j):
                raise ProtocolViolation(f"bank {j} sealed a part in a round where it has none to send ({what})",
                                        party=j)

    def _split(self, data: bytes, sizes: list[int], what: str, party: int) -> list[bytes]:
        if len(data) != sum(sizes):
            raise ProtocolViolation(f"bank {party} sent {len(data)} bytes of {what}, expected {sum(sizes)}",
                                    party=party)
        out, offset = [], 0
        for size in sizes:
            out.append(data[offset:offset + size])
            offset += size
        return out

    # ------------------------------------------------------------------ dealing

    def _derived_streams(self, round_: int, dealer: int, receiver: int, unit: int, low_values: int,
                         high_values: int) -> tuple[bytes, bytes]:
        """``receiver``'s stream for ``dealer``'s sharings of a round, split into the part for the
        degree-c sharings (``low_values`` units, only if it derives them) and for the degree-2c ones."""
        c, n = self.config.corrupt_banks, self.config.banks
        low = low_values if receiver in derived_set(dealer, c, n) else 0
        high = high_values if receiver in derived_set(dealer, 2 * c, n) else 0
        if not low + high:
            return b"", b""
        stream = self._share_stream(round_, dealer, receiver, unit * (low + high))
        return stream[:unit * low], stream[unit * low:]

    # ------------------------------------------------------------------ 1-2: sieve

    def _public_offsets(self, batch: int, size: int) -> tuple[list[int], list[int]]:
        """Offsets o_p, o_q of each candidate: 3 * 2^(k/2-2) plus the residue that makes p = 3 mod 4
        and p = a public random nonzero residue mod each prime <= n (spec 6.1)."""
        config = self.config
        tiny, modulus, base = config.tiny_primes, config.tiny_modulus, config.offset_base
        stream = hashlib.shake_256(_DOMAIN + b"offsets\x00" + self.ceremony_id
                                   + _U32.pack(batch)).digest(16 * size * max(1, len(tiny)) * 2)
        draws = iter(int.from_bytes(stream[k:k + 8], "little") for k in range(0, len(stream), 8))
        out: tuple[list[int], list[int]] = ([], [])
        for _ in range(size):
            for target in out:
                residue, step = 3, 4  # CRT: 3 mod 4, then a nonzero residue mod each tiny prime
                for p in tiny:
                    wanted = 1 + next(draws) % (p - 1)
                    residue += step * ((wanted - residue) * pow(step, -1, p) % p)
                    step *= p
                target.append(base + (residue - base) % modulus)
        return out

    def _sieve_round(self):
        config = self.config
        index = self.stats.batches
        if index >= config.max_batches:
            raise AbortError(f"no biprime after {index} batches of {config.batch_size} candidates", round="dkg")
        size, moduli = config.batch_size, config.column_primes
        n, c, round_ = config.banks, config.corrupt_banks, self.round + 1
        own_p = draw_residues(self._rng, moduli, size)
        own_q = draw_residues(self._rng, moduli, size)
        unit = 8 * size * moduli.size
        derived_p, derived_q, derived_z = {}, {}, {}
        for j in derived_set(self.party, 2 * c, n):
            low, high = self._derived_streams(round_, self.party, j, unit, 2, 1)
            if low:
                derived_p[j] = residues_from_stream(low[:unit], moduli, size)
                derived_q[j] = residues_from_stream(low[unit:], moduli, size)
            derived_z[j] = residues_from_stream(high, moduli, size)
        shares_p = deal_small(own_p, c, self.party, n, derived_p, moduli)
        shares_q = deal_small(own_q, c, self.party, n, derived_q, moduli)
        shares_z = deal_small(np.zeros_like(own_p), 2 * c, self.party, n, derived_z, moduli)
        zero_explicit = set(explicit_set(self.party, 2 * c, n))
        private = {}
        for j in explicit_set(self.party, c, n):
            body = pack_residues(shares_p[j], moduli) + pack_residues(shares_q[j], moduli)
            private[j] = body + (pack_residues(shares_z[j], moduli) if j in zero_explicit else b"")
        batch = _Batch(index, size)
        batch.offsets_p, batch.offsets_q = self._public_offsets(index, size)
        batch.own_p, batch.own_q = own_p, own_q
        batch.mine = (shares_p[self.party], shares_q[self.party], shares_z[self.party])
        self._batch = batch
        self.stats.batches += 1
        self.stats.sieved += size
        return RoundKind.SIEVE, b"", private

    def _offset_residues(self, offsets: list[int]) -> np.ndarray:
        config = self.config
        primes = config.sieve_primes
        base = np.array([config.offset_base % p for p in primes], dtype=np.int64)
        extra = np.array([o - config.offset_base for o in offsets], dtype=np.int64)  # < 4 prod(tiny) < 2^62
        small = np.array(primes, dtype=np.int64)
        return ((base[None, :] + extra[:, None] % small[None, :]) % small[None, :])[:, config.column_prime_index]

    def _received_small(self, private: dict, count_low: int, count_high: int, what: str) -> dict:
        """Every dealer's shares for this bank of the round's small-field sharings (count_low of
        degree c, count_high of degree 2c): parsed from the sealed parts (refusing any malformed
        one) or derived from the pair's stream."""
        config, batch = self.config, self._in_flight()
        moduli, size, n, c = config.column_primes, batch.size, config.banks, config.corrupt_banks
        packed = (size * int(sum(int(p - 1).bit_length() for p in moduli)) + 7) // 8
        explicit = {}
        for d in self._others():
            low = 0 if self.party in derived_set(d, c, n) else count_low
            high = 0 if self.party in derived_set(d, 2 * c, n) else count_high
            parts = self._split(private[d], [packed] * (low + high), what, d)
            explicit[d] = [unpack_residues(part, size, moduli, what, d) for part in parts]
        out = {}
        unit = 8 * size * moduli.size
        for d in self._others():
            low_stream, high_stream = self._derived_streams(self.round, d, self.party, unit, count_low, count_high)
            values = explicit[d]
            if low_stream:
                values = [residues_from_stream(low_stream[k * unit:(k + 1) * unit], moduli, size)
                          for k in range(count_low)] + values
            if len(values) < count_low + count_high:
                values = values + [residues_from_stream(high_stream[k * unit:(k + 1) * unit], moduli, size)
                                   for k in range(count_high)]
            out[d] = values
        return out

    def _after_sieve(self, publics, private):
        config, batch = self.config, self._in_flight()
        moduli = config.column_primes
        self._no_public(publics, "sieve shares")
        received = self._received_small(private, 2, 1, "sieve shares")
        received[self.party] = list(batch.mine)
        sum_p = sum(v[0] for v in received.values()) % moduli
        sum_q = sum(v[1] for v in received.values()) % moduli
        sum_z = sum(v[2] for v in received.values()) % moduli
        op, oq = self._offset_residues(batch.offsets_p), self._offset_residues(batch.offsets_q)
        product = ((sum_p + op) % moduli * ((sum_q + oq) % moduli) + sum_z) % moduli
        batch.mine = ()
        return RoundKind.SIEVE_REVEAL, pack_residues(product, moduli), {}

    # ------------------------------------------------------------------ 3-4: the modulus

    def _after_sieve_reveal(self, publics, private):
        config, batch = self.config, self._in_flight()
        moduli = config.column_primes
        self._no_private(private, self._others(), "the sieve's reveal")
        shares = np.stack([unpack_residues(publics[j], batch.size, moduli, "sieve products", j)
                           for j in range(config.banks)])
        revealed = reconstruct_small(shares, 2 * config.corrupt_banks, moduli, cache=self._cache, what="sieve products")
        good = revealed != 0
        index = config.column_prime_index
        chosen = np.full((batch.size, len(config.sieve_primes)), -1, dtype=np.int64)
        for k in range(moduli.size - 1, -1, -1):  # last write wins: the first good attempt
            chosen[good[:, k], index[k]] = k
        kept = np.flatnonzero((chosen >= 0).all(axis=1)).tolist()
        self.stats.moduli += len(kept)
        if not kept:
            return self._sieve_round()
        basis, m, bound = config.crt_basis, config.crt_modulus, config.random_multiple_bound
        gmpy2 = _gmpy2()
        p_shares, q_shares = [], []
        for candidate in kept:
            columns = chosen[candidate]
            residues_p = batch.own_p[candidate, columns].tolist()
            residues_q = batch.own_q[candidate, columns].tolist()
            share_p = sum(a * e for a, e in zip(residues_p, basis)) % m + m * draw_below(self._rng, bound)
            share_q = sum(a * e for a, e in zip(residues_q, basis)) % m + m * draw_below(self._rng, bound)
            if self.party == 0:
                share_p += batch.offsets_p[candidate]
                share_q += batch.offsets_q[candidate]
            p_shares.append(gmpy2.mpz(share_p))
            q_shares.append(gmpy2.mpz(share_q))
        batch.kept, batch.p_shares, batch.q_shares = kept, p_shares, q_shares
        batch.own_p = batch.own_q = None
        n, c, prime, round_ = config.banks, config.corrupt_banks, config.modulus_field, self.round + 1
        count, unit = len(kept), big_value_bytes(prime)
        derived_p, derived_q, derived_z = {}, {}, {}
        for j in derived_set(self.party, 2 * c, n):
            low, high = self._derived_streams(round_, self.party, j, unit * count, 2, 1)
            if low:
                derived_p[j] = big_from_stream(low[:unit * count], prime, count)
                derived_q[j] = big_from_stream(low[unit * count:], prime, count)
            derived_z[j] = big_from_stream(high, prime, count)
        shares_p = deal_big(p_shares, c, self.party, n, derived_p, prime)
        shares_q = deal_big(q_shares, c, self.party, n, derived_q, prime)
        shares_z = deal_big([0] * count, 2 * c, self.party, n, derived_z, prime)
        width = _field_width(prime)
        zero_explicit = set(explicit_set(self.party, 2 * c, n))
        private = {}
        for j in explicit_set(self.party, c, n):
            values = shares_p[j] + shares_q[j] + (shares_z[j] if j in zero_explicit else [])
            private[j] = b"".join(_int_bytes(v, width) for v in values)
        batch.mine = (shares_p[self.party], shares_q[self.party], shares_z[self.party])
        return RoundKind.MODULUS, b"", private

    def _received_big(self, private: dict, prime: int, count: int, count_low: int, count_high: int,
                      what: str) -> dict:
        """As :meth:`_received_small`, over F_prime: every dealer's ``count_low + count_high`` lists of
        ``count`` shares for this bank."""
        config = self.config
        n, c, width, unit = config.banks, config.corrupt_banks, _field_width(prime), big_value_bytes(prime)
        explicit = {}
        for d in self._others():
            low = 0 if self.party in derived_set(d, c, n) else count_low
            high = 0 if self.party in derived_set(d, 2 * c, n) else count_high
            values = _ints_from(private[d], width, count * (low + high), prime, what, d)
            explicit[d] = [values[k * count:(k + 1) * count] for k in range(low + high)]
        out = {}
        for d in self._others():
            low_stream, high_stream = self._derived_streams(self.round, d, self.party, unit * count, count_low,
                                                            count_high)
            values = explicit[d]
            if low_stream:
                values = [big_from_stream(low_stream[k * unit * count:(k + 1) * unit * count], prime, count)
                          for k in range(count_low)] + values
            if len(values) < count_low + count_high:
                values = values + [big_from_stream(high_stream[k * unit * count:(k + 1) * unit * count], prime,
                                                   count) for k in range(count_high)]
            out[d] = values
        return out

    def _after_modulus(self, publics, private):
        config, batch = self.config, self._in_flight()
        prime = config.modulus_field
        width, count = _field_width(prime), len(batch.kept)
        self._no_public(publics, "modulus shares")
        received = self._received_big(private, prime, count, 2, 1, "modulus shares")
        received[self.party] = list(batch.mine)
        out = []
        for k in range(count):
            sp = sum(received[j][0][k] for j in received) % prime
            sq = sum(received[j][1][k] for j in received) % prime
            sz = sum(received[j][2][k] for j in received) % prime
            out.append(_int_bytes((sp * sq + sz) % prime, width))
        batch.mine = ()
        return RoundKind.MODULUS_REVEAL, b"".join(out), {}

    # ------------------------------------------------------------------ 5-6: biprimality

    def _exponent(self, position: int, modulus: int) -> int:
        batch = self._in_flight()
        total = batch.p_shares[position] + batch.q_shares[position]
        if self.party == 0:
            return (modulus + 1 - total) // 4
        return -(total // 4)

    def _base(self, modulus: int, index: int) -> int:
        gmpy2 = _gmpy2()
        counter = 0
        while True:
            g = public_element(b"biprimality-base", self.ceremony_id + modulus.to_bytes(
                (modulus.bit_length() + 7) // 8, "big") + _U32.pack(index) + _U32.pack(counter), modulus)
            if gmpy2.jacobi(g, modulus) == 1:
                return g
            counter += 1

    def _power(self, base: int, exponent: int, modulus: int) -> int:
        gmpy2 = _gmpy2()
        value = gmpy2.powmod(base, abs(exponent), modulus)
        return int(gmpy2.invert(value, modulus)) if exponent < 0 else int(value)

    def _after_modulus_reveal(self, publics, private):
        config, batch = self.config, self._in_flight()
        gmpy2 = _gmpy2()
        prime = config.modulus_field
        width = _field_width(prime)
        count = len(batch.kept)
        self._no_private(private, self._others(), "the modulus reveal")
        per_bank = [_ints_from(publics[j], width, count, prime, "modulus product", j) for j in range(config.banks)]
        moduli = []
        for k in range(count):
            modulus = reconstruct_big([per_bank[j][k] for j in range(config.banks)], 2 * config.corrupt_banks, prime,
                                      what="modulus product")
            if modulus.bit_length() != config.key_bits or modulus % 4 != 1:
                raise AbortError("a reconstructed modulus has the wrong size or form (a bank deviated)", round="dkg")
            moduli.append(modulus)
        trial = config.trial_division_product
        survivors = [k for k, modulus in enumerate(moduli)
                     if gmpy2.gcd(trial % modulus, modulus) == 1 and not gmpy2.is_power(modulus)]
        if not survivors:
            return self._sieve_round()
        batch.moduli, batch.survivors = moduli, survivors
        self.stats.biprimality_tests += len(survivors)
        width_n = config.key_bits // 8
        public = b"".join(_int_bytes(self._power(self._base(moduli[k], 0), self._exponent(k, moduli[k]), moduli[k]),
                                     width_n) for k in survivors)
        return RoundKind.BIPRIME, public, {}

    def _after_biprime(self, publics, private):
        config, batch = self.config, self._in_flight()
        width_n = config.key_bits // 8
        count = len(batch.survivors)
        self._no_private(private, self._others(), "the biprimality test")
        values = {j: _ints_from(publics[j], width_n, count, 1 << config.key_bits, "biprimality value", j)
                  for j in range(config.banks)}
        for j in range(config.banks):
            if any(value >= batch.moduli[k] for value, k in zip(values[j], batch.survivors)):
                raise ProtocolViolation(f"bank {j} sent a biprimality value not below its modulus", party=j)
        passed = None
        for position, k in enumerate(batch.survivors):
            modulus = batch.moduli[k]
            product = 1
            for j in range(config.banks):
                product = product * values[j][position] % modulus
            if passed is None and product in (1, modulus - 1):
                passed = k
        if passed is None:
            return self._sieve_round()
        batch.survivors = [passed]
        modulus = batch.moduli[passed]
        public = b"".join(_int_bytes(self._power(self._base(modulus, i), self._exponent(passed, modulus), modulus),
                                     width_n) for i in range(1, config.confirm_bases + 1))
        return RoundKind.CONFIRM, public, {}

    # ------------------------------------------------------------------ 7-9: the decryption exponent

    def _after_confirm(self, publics, private):
        config, batch = self.config, self._in_flight()
        width_n = config.key_bits // 8
        k = batch.survivors[0]
        modulus = batch.moduli[k]
        self._no_private(private, self._others(), "the biprimality confirmation")
        values = {j: _ints_from(publics[j], width_n, config.confirm_bases, modulus, "biprimality value", j)
                  for j in range(config.banks)}
        for i in range(config.confirm_bases):
            product = 1
            for j in range(config.banks):
                product = product * values[j][i] % modulus
            if product not in (1, modulus - 1):
                return self._sieve_round()
        gmpy2 = _gmpy2()
        phi_share = (modulus + 1 - batch.p_shares[k] - batch.q_shares[k]) if self.party == 0 else \
            -(batch.p_shares[k] + batch.q_shares[k])
        n, c, prime, round_ = config.banks, config.corrupt_banks, config.key_field, self.round + 1
        mask_bits = config.key_bits + math.ceil(math.log2(n + 1)) + STATISTICAL_BITS
        r_share = draw_below(self._rng, modulus)
        s_share = draw_bits(self._rng, mask_bits)
        unit = big_value_bytes(prime)
        derived_low, derived_high = {}, {}
        for j in derived_set(self.party, 2 * c, n):
            low, high = self._derived_streams(round_, self.party, j, unit, 2, 2)
            if low:
                derived_low[j] = big_from_stream(low, prime, 2)
            derived_high[j] = big_from_stream(high, prime, 2)
        shares_low = deal_big([phi_share, r_share], c, self.party, n, derived_low, prime)
        shares_high = deal_big([s_share, 0], 2 * c, self.party, n, derived_high, prime)
        width = _field_width(prime)
        zero_explicit = set(explicit_set(self.party, 2 * c, n))
        private = {}
        for j in explicit_set(self.party, c, n):
            values = shares_low[j] + (shares_high[j] if j in zero_explicit else [])
            private[j] = b"".join(_int_bytes(v, width) for v in values)
        self._candidate = {"modulus": modulus, "phi_share": gmpy2.mpz(phi_share),
                           "own": tuple(shares_low[self.party] + shares_high[self.party])}
        self._batch = None  # every other candidate's shares go
        return RoundKind.KEY, b"", private

    def _summing(self) -> list[int]:
        return list(range(self.config.product_points))

    def _after_key(self, publics, private):
        config, candidate = self.config, self._candidate
        prime = config.key_field
        width = _field_width(prime)
        self._no_public(publics, "exponent shares")
        received = self._received_big(private, prime, 2, 1, 1, "key share")
        sums = []
        for position, index in ((0, 0), (0, 1), (1, 0), (1, 1)):
            total = candidate["own"][2 * position + index]
            for d in self._others():
                total += received[d][position][index]
            sums.append(total % prime)
        phi, r, s, z = sums
        h = (phi * r + z) % prime
        w = (h + candidate["modulus"] * s) % prime
        top = 0
        summing = self._summing()
        if self.party in summing:
            coefficient = lagrange_at([j + 1 for j in summing], prime)[summing.index(self.party)]
            additive = coefficient * h % prime
            if self.party == summing[0]:
                additive = (additive + prime // 2) % prime
            candidate["additive"] = additive
            top = int(additive * (1 << config.wrap_bits) // prime)
        candidate.pop("own")
        return RoundKind.KEY_REVEAL, _int_bytes(w, width) + _U32.pack(top), {}

    def share_limit(self) -> int:
        """Every exponent share a bank receives in RESHARE is positive and below this (spec 6.9)."""
        config = self.config
        return config.key_field << (STATISTICAL_BITS + 64 + config.delta.bit_length()
                                    + (config.threshold - 1) * config.banks.bit_length())

    def _after_key_reveal(self, publics, private):
        config, candidate = self.config, self._candidate
        gmpy2 = _gmpy2()
        prime = config.key_field
        width = _field_width(prime)
        modulus = candidate["modulus"]
        self._no_private(private, self._others(), "the key reveal")
        masked, tops = [], []
        for j in range(config.banks):
            data = publics[j]
            if len(data) != width + 4:
                raise ProtocolViolation(f"bank {j}'s key reveal has {len(data)} bytes", party=j)
            masked.append(_ints_from(data[:width], width, 1, prime, "masked exponent", j)[0])
            tops.append(_U32.unpack(data[width:])[0])
            if tops[-1] >> config.wrap_bits or (tops[-1] and j not in self._summing()):
                raise ProtocolViolation(f"bank {j} published top bits out of range", party=j)
        revealed = reconstruct_big(masked, 2 * config.corrupt_banks, prime, what="masked exponent")
        gamma = revealed % modulus
        if gmpy2.gcd(gamma, modulus) != 1:
            # gcd(phi, N) = gcd(p + q - 1, N) != 1: not a usable biprime (Boneh-Franklin's second test)
            reply = self._sieve_round()
            self._candidate = {}
            return reply
        wraps = sum(tops[j] for j in self._summing()) >> config.wrap_bits
        if self.party not in self._summing():
            candidate.update(gamma=int(gamma), wraps=wraps)
            return RoundKind.RESHARE, b"", {}
        additive = int(candidate["additive"])
        if self.party == self._summing()[0]:
            additive -= prime // 2 + wraps * prime
        bound = (config.product_points + 1) * prime  # |additive| < bound
        low = (bound * config.delta) << (STATISTICAL_BITS + config.corrupt_banks + 1)
        shares = integer_shares(config.delta * additive, config.threshold - 1, config.banks, low, self._rng)
        del candidate["additive"]
        candidate.update(gamma=int(gamma), wraps=wraps, own_share=shares[self.party])
        return RoundKind.RESHARE, b"", {j: _minimal_bytes(shares[j]) for j in self._others()}

    # ------------------------------------------------------------------ 10-12: verification keys, test, finish

    def _public_bases(self, modulus: int) -> tuple[int, int]:
        """The short-exponent base h^N (h = -x^2) and Shoup's verification base v = y^2 mod N^2,
        both derived from N and the ceremony id: nobody chose them, everyone can recompute them."""
        gmpy2 = _gmpy2()
        nsquare = modulus * modulus
        context = self.ceremony_id + modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")
        x = public_element(b"obfuscation-base", context, modulus)
        obfuscation = int(gmpy2.powmod((-x * x) % modulus, modulus, nsquare))
        y = public_element(b"verification-base", context, nsquare)
        return obfuscation, y * y % nsquare

    def _after_reshare(self, publics, private):
        config, candidate = self.config, self._candidate
        summing = self._summing()
        self._no_public(publics, "exponent resharing")
        limit = self.share_limit()
        total = candidate.get("own_share", 0)
        for j in self._others():
            data = private[j]
            if j not in summing:
                if data:
                    raise ProtocolViolation(f"bank {j} sent an exponent share it does not hold", party=j)
                continue
            if not data or data[0] == 0:
                raise ProtocolViolation(f"bank {j}'s exponent share is missing or not minimally encoded", party=j)
            value = int.from_bytes(data, "big")
            if not 0 < value < limit:
                raise ProtocolViolation(f"bank {j}'s exponent share is out of range", party=j)
            total += value
        modulus = candidate["modulus"]
        obfuscation, verification = self._public_bases(modulus)
        gmpy2 = _gmpy2()
        key = int(gmpy2.powmod(verification, config.delta * total, modulus * modulus))
        candidate.pop("own_share", None)
        candidate.update(share=total, obfuscation=obfuscation, verification=verification)
        return RoundKind.VERIFY, _int_bytes(key, 2 * config.key_bits // 8), {}

    def _after_verify(self, publics, private):
        from secagg.paillier.proofs import prove_partial_decryptions
        from secagg.paillier.threshold import KeyShare, ThresholdPublicKey, partial_decrypt

        config, candidate = self.config, self._candidate
        modulus = candidate["modulus"]
        width = 2 * config.key_bits // 8
        self._no_private(private, self._others(), "the verification keys")
        keys = tuple(int(_ints_from(publics[j], width, 1, modulus * modulus, "verification key", j)[0])
                     for j in range(config.banks))
        scale = config.delta * candidate["gamma"] % modulus  # the exponent shared is Delta^2 phi R (spec 6.9)
        try:
            public = ThresholdPublicKey(int(modulus), config.threshold, config.banks, config.delta,
                                        candidate["obfuscation"], int(candidate["verification"]), keys,
                                        decryption_scale=scale)
        except ParameterError as exc:
            raise AbortError(f"the ceremony's public key is invalid: {exc}", round="dkg") from None
        share = KeyShare(self.point, int(candidate["share"]), public)
        share.check()
        _, ciphertext = test_ciphertext(public, self.ceremony_id, self.transcript)
        partial = partial_decrypt(share, [ciphertext])[0].value
        proof = prove_partial_decryptions(share, [ciphertext], [partial], self._test_context(), rng=self._rng)
        signature = self.identity.sign(key_statement(self.ceremony_id, public.fingerprint, self.transcript))
        candidate.update(public=public, key_share=share, test_transcript=self.transcript)
        del candidate["share"]
        response = _minimal_bytes(proof.response)
        payload = (_int_bytes(partial, width) + _int_bytes(proof.challenge, 32) + _U32.pack(len(response)) + response
                   + signature)
        return RoundKind.TEST, payload, {}

    def _test_context(self) -> bytes:
        return _DOMAIN + b"test\x00" + self.ceremony_id

    def _after_test(self, publics, private):
        from secagg.paillier.proofs import DecryptionProof, verify_partial_decryptions
        from secagg.paillier.threshold import PartialDecryption, combine_partial_decryptions

        config, candidate = self.config, self._candidate
        public = candidate["public"]
        width = 2 * config.key_bits // 8
        self._no_private(private, self._others(), "the test decryption")
        message, ciphertext = test_ciphertext(public, self.ceremony_id, candidate["test_transcript"])
        partials = []
        for j in range(config.banks):
            data = publics[j]
            try:
                partial = int.from_bytes(data[:width], "big")
                challenge = int.from_bytes(data[width:width + 32], "big")
                length = _U32.unpack(data[width + 32:width + 36])[0]
                raw = data[width + 36:width + 36 + length]
                signature = data[width + 36 + length:]
                if len(data) < width + 36 or len(raw) != length or (raw and raw[0] == 0) or len(signature) != 64:
                    raise ValueError("layout")
            except (ValueError, struct.error):
                raise ProtocolViolation(f"bank {j}'s test decryption is malformed", party=j) from None
            try:
                public.check_ciphertext(partial)
                verify_partial_decryptions(public, j + 1, [ciphertext], [partial],
                                           DecryptionProof(challenge, int.from_bytes(raw, "big")),
                                           self._test_context())
            except CryptoError as exc:
                raise ProtocolViolation(f"bank {j}'s partial decryption of the test ciphertext is wrong: {exc}",
                                        party=j) from None
            try:
                verify_signature(self.verify_keys[j], signature,
                                 key_statement(self.ceremony_id, public.fingerprint, candidate["test_transcript"]))
            except CryptoError:
                raise ProtocolViolation(f"bank {j} did not sign this key", party=j) from None
            partials.append([PartialDecryption(j + 1, partial)])
        if not verification_keys_consistent(public):  # every key matches its bank's share (the proofs above)
            raise AbortError("the verification keys do not lie on one polynomial: a bank dealt inconsistent "
                             "exponent shares", round="dkg")
        try:
            decrypted = combine_partial_decryptions(public, partials)
        except CryptoError as exc:
            raise AbortError(f"the test ciphertext does not decrypt under the new key: {exc}", round="dkg") from None
        if decrypted != [message]:
            raise AbortError("the test ciphertext decrypts to the wrong plaintext under the new key", round="dkg")
        signature = self.identity.sign(key_statement(self.ceremony_id, public.fingerprint,
                                                     candidate["test_transcript"]))
        document = json.dumps(public.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return RoundKind.FINISH, signature + candidate["test_transcript"] + document, {}

    def _after_finish(self, publics, private):
        candidate = self._candidate
        self._no_private(private, self._others(), "the finish")
        mine = publics[self.party]
        for j in range(self.config.banks):
            if publics[j][64:] != mine[64:]:
                raise ProtocolViolation(f"bank {j} finished with another key", party=j)
        for j in self._others():
            try:
                verify_signature(self.verify_keys[j], publics[j][:64], key_statement(
                    self.ceremony_id, candidate["public"].fingerprint, candidate["test_transcript"]))
            except CryptoError:
                raise ProtocolViolation(f"bank {j} did not sign this key", party=j) from None
        self.key_share, self.public_key = candidate["key_share"], candidate["public"]
        self._candidate = {}
        self.state = BankState.DONE
        return None

    def abort_message(self, reason: str) -> bytes:
        """An ABORT to send when this bank refuses to go on (after a typed error)."""
        self.state = BankState.ABORTED
        self.abort_reason = reason
        return DkgAbort(self.ceremony_id, self.party, reason).encode()


def new_ceremony_id(rng: RandomSource | None = None) -> bytes:
    """A fresh ceremony id: 16 bytes from ``rng`` (the OS CSPRNG unless given)."""
    return (rng if rng is not None else system_randomness()).random_bytes(CEREMONY_ID_BYTES)
