"""One bank's side of the dealerless key ceremony, as a sans-IO state machine.

``DkgBank.start()`` gives the bank's hello; ``DkgBank.handle(bundle)`` takes the coordinator's
bundle of a round and gives the bank's next message, until the ceremony is over
(``handle`` returns None and :attr:`DkgBank.key_share` holds the bank's share). Every refusal is a
typed error raised before the bank's state changes: :class:`MalformedMessage` /
:class:`ProtocolViolation` naming the bank at fault (or ``"server"`` for the coordinator),
:class:`AbortError` when the ceremony cannot finish.

The rounds (n banks with ids 0..n-1 and Shamir points 1..n; c corrupt; ``[x]`` a Shamir sharing
of degree c, ``[x]_2c`` of degree 2c; "send" means sealed for each other bank, "publish" means
broadcast through the coordinator):

1. **SIEVE**: for each of B candidates, each sieve prime l and each of its attempts, each bank
   draws residues ``a_i, b_i`` mod l and sends ``[a_i], [b_i]`` and a zero-sharing ``[0]_2c``
   over F_l (l > n, so the points 1..n are distinct).
2. **SIEVE_REVEAL**: each bank publishes its share of ``(o_p + sum a)(o_q + sum b) + 0`` mod l
   (``o_p, o_q`` the public offsets). Everyone reconstructs ``N mod l`` of each attempt; the first
   attempt whose value is nonzero fixes ``p mod l`` and ``q mod l`` (nonzero, otherwise uniform and
   secret); a candidate without one is dropped.
3. **MODULUS**: each bank turns its residues into its integer share (CRT: ``P_i = sum a_i,l e_l mod
   M``) plus a random multiple of M, ``p_i = P_i + M r_i`` (bank 0 adds the offset, which fixes the
   top two bits, p = 3 mod 4 and the public residues mod the primes <= n), and sends ``[p_i]``,
   ``[q_i]``, ``[0]_2c`` over F_P1 (P1 > 2^k).
4. **MODULUS_REVEAL**: each bank publishes its share of ``pq + 0``; everyone reconstructs N,
   checks its size, and divides it by every prime below 2^16.
5. **BIPRIME**: for each surviving N, with a public base g of Jacobi symbol 1, each bank publishes
   ``g^(x_i)`` with ``x_0 = (N + 1 - p_0 - q_0) / 4`` and ``x_i = -(p_i + q_i) / 4``: the product is
   ``g^(phi/4)``, which is +-1 when N is a product of two primes (Boneh-Franklin).
6. **CONFIRM**: the first N that passed is tested with ``confirm_bases`` more bases. If no N of the
   batch passes, the next batch starts (step 1).
7. **KEY**: over F_P2 (P2 > 2^(2k + 80 + ...)) each bank sends ``[phi_i], [R_i]`` (``phi_0 = N + 1 -
   p_0 - q_0``, ``phi_i = -(p_i + q_i)``, R_i uniform mod N) and ``[S_i]_2c``, ``[0]_2c``.
8. **KEY_REVEAL**: with ``h = phi R + 0`` (degree 2c), each bank publishes ``W(j) = h(j) + N S(j)``
   and, if it is one of the first 2c + 1 banks, the top ``wrap_bits`` bits of its additive share
   ``z_j = L_j h(j)`` (bank 0: ``+ P2/2``). Everyone reconstructs ``W = phi R + N S`` and so
   ``gamma = W mod N = phi R mod N`` (uniform, and prime to N exactly when gcd(N, p + q - 1) = 1,
   Boneh-Franklin's second test), and from the top bits the number of wraps w of ``sum z_j``.
9. **RESHARE**: the first 2c + 1 banks now hold integers x_j with ``sum x_j = phi R`` (bank 0
   subtracts ``P2/2 + w P2``); each shares its x_j with an integer polynomial of degree t - 1
   (coefficients ``2^80 Delta`` times larger than any x_j) and sends bank i the value at i.
10. **VERIFY**: bank i sums what it received into its key share ``s_i`` (``sum lambda_i s_i = Delta
    phi R``) and publishes Shoup's verification key ``v^(Delta s_i)`` for the public square v.
11. **TEST**: everyone assembles the public key (N, the public bases, the verification keys,
    ``decryption_scale = gamma``); each bank publishes its proven partial decryption of a public
    test ciphertext and its signature over the key's fingerprint.
12. **FINISH**: each bank checks every proof and the combined plaintext, then publishes its
    signature again with the key; once every bank has signed the same key, the ceremony is over.

No bank ever holds p, q, phi(N) or the decryption exponent phi R: each holds additive shares and
Shamir shares of them, and everything published is masked (docs/paillier.md, "Key ceremony
without a dealer", gives the argument).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from secagg.crypto.aead import open_sealed, seal
from secagg.crypto.keys import AgreementKey, hkdf
from secagg.crypto.randomness import system_randomness
from secagg.crypto.signatures import IdentityKey, verify_signature
from secagg.errors import AbortError, CryptoError, MalformedMessage, ParameterError, ProtocolViolation, \
    SessionStateError
from secagg.paillier import _gmpy2
from secagg.paillier.dkg.arithmetic import integer_shares, lagrange_at_zero, public_element, public_integer, \
    reconstruct_big, reconstruct_small, share_big, share_small, uniform_mod
from secagg.paillier.dkg.config import STATISTICAL_BITS, DkgConfig
from secagg.paillier.dkg.messages import CEREMONY_ID_BYTES, Bundle, DkgAbort, Hello, RoundKind, RoundMessage, \
    decode_dkg_message

__all__ = ["DkgBank", "BankState", "CeremonyStats", "hello_statement", "key_statement", "test_ciphertext"]

_U32 = struct.Struct("<I")


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


def hello_statement(ceremony_id: bytes, party: int, config: DkgConfig, agreement_key: bytes) -> bytes:
    """What a bank signs in its hello: this ceremony, its id, the parameters and its channel key."""
    return (b"secagg/paillier/dkg/v1/hello\x00" + ceremony_id + _U32.pack(party) + config.digest()
            + agreement_key)


def key_statement(ceremony_id: bytes, fingerprint: bytes, transcript: bytes) -> bytes:
    """What a bank signs at the end: this ceremony produced the key with this fingerprint."""
    return b"secagg/paillier/dkg/v1/key\x00" + ceremony_id + fingerprint + transcript


def test_ciphertext(public, ceremony_id: bytes, transcript: bytes) -> tuple[int, int]:
    """The public test plaintext and its encryption (public randomness): every bank decrypts it."""
    n = public.n
    context = ceremony_id + transcript
    message = public_integer(b"test-message", context, n.bit_length() - 2)
    rho = public_element(b"test-randomness", context, n)
    gmpy2 = _gmpy2()
    nsquare = gmpy2.mpz(n) * n
    return message, int((1 + gmpy2.mpz(n) * message) * gmpy2.powmod(rho, n, nsquare) % nsquare)


def _int_bytes(value: int, width: int) -> bytes:
    return int(value).to_bytes(width, "big")


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


def _small_from(data: bytes, shape: tuple[int, ...], moduli: np.ndarray, what: str, party: int) -> np.ndarray:
    expected = 2 * int(np.prod(shape))
    if len(data) != expected:
        raise ProtocolViolation(f"bank {party} sent {len(data)} bytes of {what}, expected {expected}", party=party)
    values = np.frombuffer(data, dtype="<u2").astype(np.int64).reshape(shape)
    if np.any(values >= moduli):
        raise ProtocolViolation(f"bank {party} sent {what} outside their fields", party=party)
    return values


def _varint_pack(value: int) -> bytes:
    raw = int(value).to_bytes((int(value).bit_length() + 7) // 8 or 1, "big")
    return _U32.pack(len(raw)) + raw


@dataclass
class _Batch:
    index: int
    size: int
    offsets_p: list = field(default_factory=list)  # public offsets (Python ints)
    offsets_q: list = field(default_factory=list)
    own_p: np.ndarray | None = None  # this bank's residues a_i per (candidate, column)
    own_q: np.ndarray | None = None
    shares: dict = field(default_factory=dict)  # sender -> (p, q, zero) share arrays for this bank
    kept: list = field(default_factory=list)  # candidates whose residues were all drawn
    p_shares: list = field(default_factory=list)  # this bank's integer share p_i per kept candidate
    q_shares: list = field(default_factory=list)
    moduli: list = field(default_factory=list)  # N per kept candidate (public)
    survivors: list = field(default_factory=list)  # kept positions that passed trial division


class DkgBank:
    """Bank ``party`` (0-based; Shamir point ``party + 1``) of the ceremony ``ceremony_id``.

    ``identity`` is the bank's Ed25519 key; ``verify_keys`` every bank's public key (ids 0..n-1):
    hellos are signed, so the coordinator cannot sit in the middle of the pairwise channels.
    """

    def __init__(self, config: DkgConfig, party: int, ceremony_id: bytes, identity: IdentityKey,
                 verify_keys: Mapping[int, bytes]) -> None:
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
        self.state = BankState.START
        self.stats = CeremonyStats()
        self.round = 0
        self.expected: RoundKind = RoundKind.HELLO
        self.transcript = hashlib.sha256(b"secagg/paillier/dkg/v1/transcript\x00" + self.ceremony_id
                                         + config.digest()).digest()
        self._agreement = AgreementKey.generate(system_randomness())
        self._channels: dict[int, bytes] = {}
        self._cache: dict = {}
        self._batch: _Batch | None = None
        self._candidate: dict = {}
        self.key_share = None
        self.public_key = None
        self.abort_reason: str | None = None
        self._sent_public = b""

    # ------------------------------------------------------------------ I/O

    def start(self) -> bytes:
        if self.state is not BankState.START:
            raise SessionStateError("start() once, before anything else")
        statement = hello_statement(self.ceremony_id, self.party, self.config, self._agreement.public_bytes)
        self.state = BankState.RUNNING
        return self._count(Hello(self.ceremony_id, self.party, self._agreement.public_bytes,
                                 self.identity.sign(statement)).encode())

    def handle(self, data: bytes) -> bytes | None:
        """The bank's next message for the coordinator's bundle ``data`` (None: nothing more to say)."""
        if self.state is not BankState.RUNNING:
            raise SessionStateError(f"the bank's ceremony is {self.state.value}")
        try:
            message = decode_dkg_message(data)
        except MalformedMessage as exc:
            exc.party = "server"
            raise
        self.stats.bytes_received += len(data)
        if message.ceremony_id != self.ceremony_id:
            raise ProtocolViolation("a message of another ceremony", party="server")
        if isinstance(message, DkgAbort):
            self.state, self.abort_reason = BankState.ABORTED, message.reason
            raise AbortError(f"the coordinator aborted the ceremony: {message.reason}", round="dkg")
        if not isinstance(message, Bundle) or message.party != self.party:
            raise ProtocolViolation("expected this bank's bundle", party="server")
        if message.round != self.round:
            raise ProtocolViolation(f"a bundle of round {message.round}, this bank is in round {self.round}",
                                    party="server")
        entries = message.entries
        if [e.sender for e in entries] != list(range(self.config.banks)):
            raise ProtocolViolation("a bundle must carry every bank's message of the round", party="server")
        for e in entries:
            if e.kind is not self.expected:
                raise ProtocolViolation(f"bank {e.sender} sent a {e.kind.name} round, the ceremony is at "
                                        f"{self.expected.name}", party=e.sender)
        if self.expected is RoundKind.HELLO:
            return self._after_hellos(entries)
        if entries[self.party].public != self._sent_public:
            raise ProtocolViolation("the coordinator altered this bank's own broadcast", party="server")
        for e in entries:
            if e.transcript != self.transcript:
                raise ProtocolViolation(f"bank {e.sender} saw another transcript: the coordinator relayed different "
                                        "broadcasts to different banks (or that bank misreports)", party=e.sender)
        private = {}
        for e in entries:
            if e.sender == self.party:
                continue
            if not e.sealed:
                private[e.sender] = None
                continue
            try:
                private[e.sender] = open_sealed(self._message_key(e.sender, self.party, self.round), e.sealed,
                                                self._associated(e.sender, self.party, self.round, e.kind))
            except CryptoError:
                raise ProtocolViolation(f"the sealed part from bank {e.sender} fails authentication (altered or "
                                        "misdirected)", party=e.sender) from None
        publics = {e.sender: e.public for e in entries}
        handler = getattr(self, f"_after_{self.expected.name.lower()}")
        reply = handler(publics, private)  # raises before any state below changes
        digest = hashlib.sha256(self.transcript + _U32.pack(self.round))
        for e in entries:
            digest.update(_U32.pack(e.sender) + bytes([int(e.kind)]) + _U32.pack(len(e.public)) + e.public)
        self.transcript = digest.digest()
        return self._emit(reply)

    def _count(self, data: bytes) -> bytes:
        self.stats.bytes_sent += len(data)
        return data

    # ------------------------------------------------------------------ channels

    def _message_key(self, sender: int, receiver: int, round_: int) -> bytes:
        return hkdf(self._channels[sender if sender != self.party else receiver], b"paillier-dkg-channel",
                    self.ceremony_id + _U32.pack(round_) + _U32.pack(sender) + _U32.pack(receiver))

    def _associated(self, sender: int, receiver: int, round_: int, kind: RoundKind) -> bytes:
        return (b"secagg/paillier/dkg/v1/sealed\x00" + self.ceremony_id + _U32.pack(round_) + _U32.pack(sender)
                + _U32.pack(receiver) + bytes([int(kind)]))

    def _after_hellos(self, entries) -> bytes:
        channels = {}
        for e in entries:
            if len(e.public) != 96:
                raise ProtocolViolation(f"bank {e.sender}'s hello is malformed", party=e.sender)
            key, signature = e.public[:32], e.public[32:]
            try:
                verify_signature(self.verify_keys[e.sender], signature,
                                 hello_statement(self.ceremony_id, e.sender, self.config, key))
            except CryptoError:
                raise ProtocolViolation(f"bank {e.sender}'s hello is not signed by bank {e.sender}",
                                        party=e.sender) from None
            if e.sender == self.party:
                if key != self._agreement.public_bytes:
                    raise ProtocolViolation("the coordinator replaced this bank's own hello", party="server")
                continue
            try:
                secret = self._agreement.exchange(key)
            except CryptoError as exc:
                raise ProtocolViolation(f"bank {e.sender}'s channel key is unusable: {exc}", party=e.sender) from None
            channels[e.sender] = hkdf(secret, b"paillier-dkg-pair", self.ceremony_id
                                      + _U32.pack(min(self.party, e.sender)) + _U32.pack(max(self.party, e.sender)))
        self._channels = channels
        digest = hashlib.sha256(self.transcript)
        for e in entries:
            digest.update(_U32.pack(e.sender) + e.public)
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
        sealed = tuple((j, seal(self._message_key(self.party, j, self.round), private[j],
                                self._associated(self.party, j, self.round, kind)))
                       for j in sorted(private))
        return self._count(RoundMessage(self.ceremony_id, self.party, self.round, kind, self.transcript, public,
                                        sealed).encode())

    def _others(self) -> list[int]:
        return [j for j in range(self.config.banks) if j != self.party]

    def _require_private(self, private: dict, senders, what: str) -> None:
        for j in senders:
            if j != self.party and private.get(j) is None:
                raise ProtocolViolation(f"bank {j} sent no {what} for this bank", party=j)

    # ------------------------------------------------------------------ 1-2: sieve

    def _public_offsets(self, batch: int, size: int) -> tuple[list[int], list[int]]:
        """Offsets o_p, o_q of each candidate: 3 * 2^(k/2-2) plus the residue that makes p = 3 mod 4
        and p = a public random nonzero residue mod each prime <= n."""
        config = self.config
        tiny, modulus, base = config.tiny_primes, config.tiny_modulus, config.offset_base
        stream = hashlib.shake_256(b"secagg/paillier/dkg/v1/offsets\x00" + self.ceremony_id
                                   + _U32.pack(batch)).digest(16 * size * max(1, len(tiny)) * 2)
        draws = iter(int.from_bytes(stream[k:k + 8], "little") for k in range(0, len(stream), 8))
        out = ([], [])
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
            raise AbortError(f"no biprime after {index} batches of {config.batch} candidates", round="dkg")
        self.stats.batches += 1
        size = config.batch
        batch = _Batch(index, size)
        batch.offsets_p, batch.offsets_q = self._public_offsets(index, size)
        moduli = config.column_primes
        shape = (size, moduli.size)
        batch.own_p, batch.own_q = uniform_mod(moduli, shape), uniform_mod(moduli, shape)
        n, c = config.banks, config.corrupt
        share_p = share_small(batch.own_p, c, n, moduli)
        share_q = share_small(batch.own_q, c, n, moduli)
        share_z = share_small(np.zeros(shape, dtype=np.int64), 2 * c, n, moduli)
        batch.shares[self.party] = (share_p[self.party], share_q[self.party], share_z[self.party])
        private = {j: np.stack([share_p[j], share_q[j], share_z[j]]).astype("<u2").tobytes() for j in self._others()}
        self._batch = batch
        self.stats.sieved += size
        return RoundKind.SIEVE, b"", private

    def _offset_residues(self, offsets: list[int]) -> np.ndarray:
        config = self.config
        primes = config.sieve_primes
        base = np.array([config.offset_base % p for p in primes], dtype=np.int64)
        extra = np.array([o - config.offset_base for o in offsets], dtype=np.int64)  # < 4 prod(tiny) < 2^62
        small = np.array(primes, dtype=np.int64)
        return ((base[None, :] + extra[:, None] % small[None, :]) % small[None, :])[:, config.column_prime_index]

    def _after_sieve(self, publics, private):
        config, batch = self.config, self._batch
        moduli = config.column_primes
        shape = (batch.size, moduli.size)
        self._require_private(private, self._others(), "sieve shares")
        received = {}
        for j, data in private.items():
            values = _small_from(data, (3, *shape), moduli, "sieve shares", j)
            received[j] = (values[0], values[1], values[2])
        received[self.party] = batch.shares[self.party]
        sum_p = sum(v[0] for v in received.values()) % moduli
        sum_q = sum(v[1] for v in received.values()) % moduli
        sum_z = sum(v[2] for v in received.values()) % moduli
        op, oq = self._offset_residues(batch.offsets_p), self._offset_residues(batch.offsets_q)
        product = ((sum_p + op) % moduli * ((sum_q + oq) % moduli) + sum_z) % moduli
        batch.shares = {}
        return RoundKind.SIEVE_REVEAL, product.astype("<u2").tobytes(), {}

    # ------------------------------------------------------------------ 3-4: the modulus

    def _after_sieve_reveal(self, publics, private):
        config, batch = self.config, self._batch
        moduli = config.column_primes
        shape = (batch.size, moduli.size)
        shares = np.stack([_small_from(publics[j], shape, moduli, "sieve products", j)
                           for j in range(config.banks)])
        revealed = reconstruct_small(shares, 2 * config.corrupt, moduli, cache=self._cache, what="sieve products")
        good = revealed != 0
        # first good attempt of each prime, per candidate
        index = config.column_prime_index
        starts = np.concatenate([[0], np.cumsum(config.attempts)[:-1]])
        chosen = np.full((batch.size, len(config.sieve_primes)), -1, dtype=np.int64)
        for k in range(moduli.size - 1, -1, -1):  # last write wins: the first good attempt
            column_good = good[:, k]
            chosen[column_good, index[k]] = k
        kept = np.flatnonzero((chosen >= 0).all(axis=1))
        basis = config.crt_basis
        m = config.crt_modulus
        gmpy2 = _gmpy2()
        p_shares, q_shares = [], []
        bound = config.random_multiple_bound
        for candidate in kept.tolist():
            columns = chosen[candidate]
            residues_p = batch.own_p[candidate, columns].tolist()
            residues_q = batch.own_q[candidate, columns].tolist()
            share_p = sum(a * e for a, e in zip(residues_p, basis)) % m + m * secrets.randbelow(bound)
            share_q = sum(a * e for a, e in zip(residues_q, basis)) % m + m * secrets.randbelow(bound)
            if self.party == 0:
                share_p += batch.offsets_p[candidate]
                share_q += batch.offsets_q[candidate]
            p_shares.append(gmpy2.mpz(share_p))
            q_shares.append(gmpy2.mpz(share_q))
        del starts
        batch.kept, batch.p_shares, batch.q_shares = kept.tolist(), p_shares, q_shares
        batch.own_p = batch.own_q = None
        self.stats.moduli += len(kept)
        if not batch.kept:
            return self._sieve_round()
        n, c, prime = config.banks, config.corrupt, config.modulus_field
        width = (prime.bit_length() + 7) // 8
        outgoing = {j: [] for j in range(n)}
        for share_p, share_q in zip(p_shares, q_shares):
            sp, sq, sz = share_big(share_p, c, n, prime), share_big(share_q, c, n, prime), share_big(0, 2 * c, n, prime)
            for j in range(n):
                outgoing[j].append((sp[j], sq[j], sz[j]))
        batch.shares = {self.party: outgoing[self.party]}
        private = {j: b"".join(_int_bytes(v, width) for triple in outgoing[j] for v in triple) for j in self._others()}
        return RoundKind.MODULUS, b"", private

    def _after_modulus(self, publics, private):
        config, batch = self.config, self._batch
        prime = config.modulus_field
        width = (prime.bit_length() + 7) // 8
        count = len(batch.kept)
        self._require_private(private, self._others(), "modulus shares")
        received = {self.party: batch.shares[self.party]}
        for j, data in private.items():
            values = _ints_from(data, width, 3 * count, prime, "modulus share", j)
            received[j] = [tuple(values[3 * k:3 * k + 3]) for k in range(count)]
        out = []
        for k in range(count):
            sp = sum(received[j][k][0] for j in received) % prime
            sq = sum(received[j][k][1] for j in received) % prime
            sz = sum(received[j][k][2] for j in received) % prime
            out.append(_int_bytes((sp * sq + sz) % prime, width))
        batch.shares = {}
        return RoundKind.MODULUS_REVEAL, b"".join(out), {}

    # ------------------------------------------------------------------ 5-6: biprimality

    def _exponent(self, position: int, modulus: int) -> int:
        batch = self._batch
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
        config, batch = self.config, self._batch
        gmpy2 = _gmpy2()
        prime = config.modulus_field
        width = (prime.bit_length() + 7) // 8
        count = len(batch.kept)
        per_bank = [_ints_from(publics[j], width, count, prime, "modulus product", j) for j in range(config.banks)]
        moduli = []
        for k in range(count):
            modulus = reconstruct_big([per_bank[j][k] for j in range(config.banks)], 2 * config.corrupt, prime,
                                      what="modulus product")
            if modulus.bit_length() != config.key_bits or modulus % 4 != 1:
                raise AbortError("a reconstructed modulus has the wrong size or form (a bank deviated)", round="dkg")
            moduli.append(modulus)
        trial = config.trial_division_product
        survivors = [k for k, modulus in enumerate(moduli)
                     if gmpy2.gcd(trial % modulus, modulus) == 1 and not gmpy2.is_power(modulus)]
        batch.moduli, batch.survivors = moduli, survivors
        self.stats.biprimality_tests += len(survivors)
        if not survivors:
            return self._sieve_round()
        width_n = config.key_bits // 8
        public = b"".join(_int_bytes(self._power(self._base(moduli[k], 0), self._exponent(k, moduli[k]), moduli[k]),
                                     width_n) for k in survivors)
        return RoundKind.BIPRIME, public, {}

    def _after_biprime(self, publics, private):
        config, batch = self.config, self._batch
        width_n = config.key_bits // 8
        count = len(batch.survivors)
        values = {j: _ints_from(publics[j], width_n, count, 1 << config.key_bits, "biprimality value", j)
                  for j in range(config.banks)}
        passed = None
        for position, k in enumerate(batch.survivors):
            modulus = batch.moduli[k]
            product = 1
            for j in range(config.banks):
                product = product * values[j][position] % modulus
            if product in (1, modulus - 1):
                passed = k
                break
        if passed is None:
            return self._sieve_round()
        batch.survivors = [passed]
        modulus = batch.moduli[passed]
        public = b"".join(_int_bytes(self._power(self._base(modulus, i), self._exponent(passed, modulus), modulus),
                                     width_n) for i in range(1, config.confirm_bases + 1))
        return RoundKind.CONFIRM, public, {}

    # ------------------------------------------------------------------ 7-9: the decryption exponent

    def _after_confirm(self, publics, private):
        config, batch = self.config, self._batch
        width_n = config.key_bits // 8
        k = batch.survivors[0]
        modulus = batch.moduli[k]
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
        self._candidate = {"modulus": modulus, "phi_share": gmpy2.mpz(phi_share)}
        self._batch = None  # every other candidate's shares go
        n, c, prime = config.banks, config.corrupt, config.key_field
        mask_bits = config.key_bits + math.ceil(math.log2(n + 1)) + STATISTICAL_BITS
        sharings = [share_big(phi_share, c, n, prime), share_big(secrets.randbelow(modulus), c, n, prime),
                    share_big(secrets.randbits(mask_bits), 2 * c, n, prime), share_big(0, 2 * c, n, prime)]
        width = (prime.bit_length() + 7) // 8
        self._candidate["own"] = tuple(s[self.party] for s in sharings)
        private = {j: b"".join(_int_bytes(s[j], width) for s in sharings) for j in self._others()}
        return RoundKind.KEY, b"", private

    def _summing(self) -> list[int]:
        return list(range(self.config.product_points))

    def _after_key(self, publics, private):
        config, candidate = self.config, self._candidate
        prime = config.key_field
        width = (prime.bit_length() + 7) // 8
        self._require_private(private, self._others(), "key shares")
        received = [candidate["own"]]
        for j, data in private.items():
            received.append(tuple(_ints_from(data, width, 4, prime, "key share", j)))
        phi, r, s, z = (sum(v[i] for v in received) % prime for i in range(4))
        h = (phi * r + z) % prime
        w = (h + candidate["modulus"] * s) % prime
        top = 0
        summing = self._summing()
        if self.party in summing:
            coefficient = lagrange_at_zero([j + 1 for j in summing], prime)[summing.index(self.party)]
            additive = coefficient * h % prime
            if self.party == summing[0]:
                additive = (additive + prime // 2) % prime
            candidate["additive"] = additive
            top = int(additive * (1 << config.wrap_bits) // prime)
        candidate.pop("own")
        return RoundKind.KEY_REVEAL, _int_bytes(w, width) + _U32.pack(top), {}

    def _after_key_reveal(self, publics, private):
        config, candidate = self.config, self._candidate
        gmpy2 = _gmpy2()
        prime = config.key_field
        width = (prime.bit_length() + 7) // 8
        modulus = candidate["modulus"]
        masked, tops = [], []
        for j in range(config.banks):
            data = publics[j]
            if len(data) != width + 4:
                raise ProtocolViolation(f"bank {j}'s key reveal has {len(data)} bytes", party=j)
            masked.append(_ints_from(data[:width], width, 1, prime, "masked exponent", j)[0])
            tops.append(_U32.unpack(data[width:])[0])
            if tops[-1] >> config.wrap_bits or (tops[-1] and j not in self._summing()):
                raise ProtocolViolation(f"bank {j} published top bits out of range", party=j)
        revealed = reconstruct_big(masked, 2 * config.corrupt, prime, what="masked exponent")
        gamma = revealed % modulus
        if gmpy2.gcd(gamma, modulus) != 1:
            # gcd(phi, N) = gcd(p + q - 1, N) != 1: not a usable biprime (Boneh-Franklin's second test)
            self._candidate = {}
            return self._sieve_round()
        wraps = sum(tops[j] for j in self._summing()) >> config.wrap_bits
        candidate["gamma"] = int(gamma)
        candidate["wraps"] = wraps
        if self.party not in self._summing():
            return RoundKind.RESHARE, b"", {}
        additive = int(candidate.pop("additive"))
        if self.party == self._summing()[0]:
            additive -= prime // 2 + wraps * prime
        bound = (config.product_points + 1) * prime
        low = bound * config.delta << STATISTICAL_BITS
        shares = integer_shares(additive, config.threshold - 1, config.banks, low)
        candidate["own_share"] = shares[self.party]
        return RoundKind.RESHARE, b"", {j: _varint_pack(shares[j]) for j in self._others()}

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
        self._require_private(private, [j for j in summing if j != self.party], "exponent share")
        total = candidate.get("own_share", 0)
        limit = config.key_field << (STATISTICAL_BITS + 64 + config.delta.bit_length()
                                     + (config.threshold - 1) * config.banks.bit_length())
        for j in summing:
            if j == self.party:
                continue
            data = private[j]
            if len(data) < 4 or _U32.unpack(data[:4])[0] != len(data) - 4 or len(data) - 4 > limit.bit_length() // 8 + 1:
                raise ProtocolViolation(f"bank {j}'s exponent share is malformed", party=j)
            value = int.from_bytes(data[4:], "big")
            if not 0 < value < limit:
                raise ProtocolViolation(f"bank {j}'s exponent share is out of range", party=j)
            total += value
        for j in self._others():
            if j not in summing and private.get(j):
                raise ProtocolViolation(f"bank {j} sent an exponent share it does not hold", party=j)
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
        keys = tuple(int(_ints_from(publics[j], width, 1, modulus * modulus, "verification key", j)[0])
                     for j in range(config.banks))
        try:
            public = ThresholdPublicKey(int(modulus), config.threshold, config.banks, config.delta,
                                        candidate["obfuscation"], int(candidate["verification"]), keys,
                                        decryption_scale=candidate["gamma"])
        except ParameterError as exc:
            raise AbortError(f"the ceremony's public key is invalid: {exc}", round="dkg") from None
        share = KeyShare(self.point, int(candidate["share"]), public)
        share.check()
        _, ciphertext = test_ciphertext(public, self.ceremony_id, self.transcript)
        partial = partial_decrypt(share, [ciphertext])[0].value
        proof = prove_partial_decryptions(share, [ciphertext], [partial], self._test_context())
        signature = self.identity.sign(key_statement(self.ceremony_id, public.fingerprint, self.transcript))
        candidate.update(public=public, key_share=share, test_transcript=self.transcript)
        del candidate["share"]
        payload = (_int_bytes(partial, width) + _int_bytes(proof.challenge, 32) + _varint_pack(proof.response)
                   + signature)
        return RoundKind.TEST, payload, {}

    def _test_context(self) -> bytes:
        return b"secagg/paillier/dkg/v1/test\x00" + self.ceremony_id

    def _after_test(self, publics, private):
        from secagg.paillier.proofs import DecryptionProof, verify_partial_decryptions
        from secagg.paillier.threshold import PartialDecryption, combine_partial_decryptions

        config, candidate = self.config, self._candidate
        public = candidate["public"]
        width = 2 * config.key_bits // 8
        message, ciphertext = test_ciphertext(public, self.ceremony_id, candidate["test_transcript"])
        partials = []
        for j in range(config.banks):
            data = publics[j]
            try:
                partial = int.from_bytes(data[:width], "big")
                challenge = int.from_bytes(data[width:width + 32], "big")
                length = _U32.unpack(data[width + 32:width + 36])[0]
                response = int.from_bytes(data[width + 36:width + 36 + length], "big")
                signature = data[width + 36 + length:]
                if len(signature) != 64:
                    raise ValueError("signature length")
            except (ValueError, struct.error):
                raise ProtocolViolation(f"bank {j}'s test decryption is malformed", party=j) from None
            try:
                public.check_ciphertext(partial)
                verify_partial_decryptions(public, j + 1, [ciphertext], [partial],
                                           DecryptionProof(challenge, response), self._test_context())
            except CryptoError as exc:
                raise ProtocolViolation(f"bank {j}'s partial decryption of the test ciphertext is wrong: {exc}",
                                        party=j) from None
            try:
                verify_signature(self.verify_keys[j], signature,
                                 key_statement(self.ceremony_id, public.fingerprint, candidate["test_transcript"]))
            except CryptoError:
                raise ProtocolViolation(f"bank {j} did not sign this key", party=j) from None
            partials.append([PartialDecryption(j + 1, partial)])
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
        mine = publics[self.party]
        for j in range(self.config.banks):
            if publics[j][64:] != mine[64:]:
                raise ProtocolViolation(f"bank {j} finished with another key", party=j)
        self.key_share, self.public_key = candidate["key_share"], candidate["public"]
        self._candidate = {}
        self.state = BankState.DONE
        return None

    def abort_message(self, reason: str) -> bytes:
        """An ABORT to send when this bank refuses to go on (after a typed error)."""
        self.state = BankState.ABORTED
        self.abort_reason = reason
        return DkgAbort(self.ceremony_id, self.party, reason).encode()


def new_ceremony_id() -> bytes:
    return os.urandom(CEREMONY_ID_BYTES)
