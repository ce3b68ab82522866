"""The dealerless key ceremony (issue 18): keys that work like the dealer's, no party ever holding
the factorisation, restarts after a dropped bank, and typed errors for banks and coordinators
that deviate. Keys here are 512 bits: INSECURE, for speed only (DkgConfig(insecure=True))."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("gmpy2")

import gmpy2  # noqa: E402

from secagg.crypto.randomness import TestOnlySeededRandomness  # noqa: E402
from secagg.crypto.signatures import IdentityKey  # noqa: E402
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation  # noqa: E402
from secagg.paillier import combine_partial_decryptions, encrypt_packed, partial_decrypt  # noqa: E402
from secagg.paillier.dkg import DkgBank, DkgConfig, DkgCoordinator, new_ceremony_id, run_ceremony  # noqa: E402
from secagg.paillier.dkg.arithmetic import integer_shares, reconstruct_big, reconstruct_small, share_big, \
    share_small  # noqa: E402
from secagg.paillier.dkg.messages import Bundle, RoundKind, RoundMessage, decode_dkg_message  # noqa: E402
from secagg.paillier.proofs import prove_partial_decryptions, verify_partial_decryptions  # noqa: E402
from secagg.paillier.threshold import ThresholdPublicKey, generate_threshold_keypair  # noqa: E402


def identities(n):
    return {i: IdentityKey.generate(TestOnlySeededRandomness(i, b"dkg-bank")) for i in range(n)}


def drive(config, ids, *, tamper=None, tamper_bundle=None, observer=None, classes=None):
    """One attempt, step by step: ``tamper(round, kind, bank, data)`` may change what a bank sends
    (as a man in the middle would), ``tamper_bundle(round, bank, data)`` what the coordinator
    delivers; ``classes`` replaces some banks by cheating subclasses."""
    verify = {i: k.public_bytes for i, k in ids.items()}
    ceremony = new_ceremony_id()
    coordinator = DkgCoordinator(config, ceremony, verify)
    banks = {i: (classes or {}).get(i, DkgBank)(config, i, ceremony, ids[i], verify) for i in ids}
    pending = {i: b.start() for i, b in banks.items()}
    while not coordinator.finished:
        outbox = {}
        for i in sorted(pending):
            data = pending[i]
            if tamper is not None:
                message = decode_dkg_message(data)
                data = tamper(coordinator.round, getattr(message, "kind", RoundKind.HELLO), i, data)
            outbox = coordinator.receive(i, data) or outbox
        if observer:
            observer("coordinator", coordinator)
        pending = {}
        for i, data in outbox.items():
            if tamper_bundle is not None:
                data = tamper_bundle(coordinator.round - 1, i, data)
            if banks[i].key_share is not None:
                continue
            pending[i] = banks[i].handle(data)
            if observer:
                observer(f"bank {i}", banks[i])
        pending = {i: d for i, d in pending.items() if d is not None}
    return coordinator, banks


# ----------------------------------------------------------------------------- the key works


def test_a_ceremony_key_decrypts_proves_and_aggregates_like_a_dealer_key():
    config = DkgConfig(4, 3, 512, insecure=True)
    public, shares, report = run_ceremony(config, identities(4))
    assert public.key_bits == 512 and public.decryption_scale != 1 and report.attempts == 1
    assert gmpy2.is_prime(public.n) is False and not gmpy2.is_square(public.n)
    values = [[5, 7, 11], [1, 2, 3], [100, 0, 42]]
    ciphertexts = None
    for v in values:
        c = encrypt_packed(public, v)
        ciphertexts = c if ciphertexts is None else [a * b % public.nsquare for a, b in zip(ciphertexts, c)]
    context = b"test"
    partials = []
    for i in (0, 2, 3):  # any t banks
        share = shares[i]
        part = partial_decrypt(share, ciphertexts)
        proof = prove_partial_decryptions(share, ciphertexts, [p.value for p in part], context)
        verify_partial_decryptions(public, share.index, ciphertexts, [p.value for p in part], proof, context)
        partials.append(part)
    assert combine_partial_decryptions(public, partials) == [106, 9, 56]
    # the key survives its own file format (public.json) unchanged
    assert ThresholdPublicKey.from_json(public.to_json(), min_key_bits=512) == public


def test_a_wrong_partial_under_a_ceremony_key_fails_its_proof():
    config = DkgConfig(3, 2, 512, insecure=True)
    public, shares, _ = run_ceremony(config, identities(3))
    c = encrypt_packed(public, [9])
    part = partial_decrypt(shares[0], c)
    shifted = [part[0].value * (1 + public.n) % public.nsquare]
    proof = prove_partial_decryptions(shares[0], c, [part[0].value], b"ctx")
    from secagg.errors import CryptoError

    with pytest.raises(CryptoError):
        verify_partial_decryptions(public, 1, c, shifted, proof, b"ctx")


def test_dealer_key_fingerprints_are_unchanged_by_the_decryption_scale():
    from secagg.paillier.threshold import safe_prime

    p, q = safe_prime(128), safe_prime(128)
    while q == p:
        q = safe_prime(128)
    public, _ = generate_threshold_keypair(3, 2, primes=(p, q))
    assert "decryption_scale" not in public.to_json()
    scaled = dataclasses.replace(public, decryption_scale=3)
    assert scaled.fingerprint != public.fingerprint
    with pytest.raises(ParameterError, match="decryption_scale"):
        dataclasses.replace(public, decryption_scale=public.n)


# ----------------------------------------------------------------------------- nobody holds the factorisation


def _integers(obj, seen, out, depth=0):
    """Every integer reachable from ``obj``'s attributes (ints, gmpy2 mpz, object arrays, containers)."""
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, bytes, float, DkgConfig)):
        return
    if isinstance(obj, int) or type(obj).__name__ == "mpz":
        out.append(int(obj))
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for value in obj.ravel():
                _integers(value, seen, out, depth + 1)
        return  # int64 arrays hold residues below 2^16 only
    if isinstance(obj, dict):
        for key, value in obj.items():
            _integers(key, seen, out, depth + 1)
            _integers(value, seen, out, depth + 1)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _integers(value, seen, out, depth + 1)
        return
    if dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        fields = dict(getattr(obj, "__dict__", {}))
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                fields[name] = getattr(obj, name)
        for value in fields.values():
            _integers(value, seen, out, depth + 1)


def _leaks(values, n, p, q, exponent):
    phi = (p - 1) * (q - 1)
    lam = phi // math.gcd(p - 1, q - 1)
    found = []
    for v in values:
        v = abs(v)
        if v == 0:
            continue
        if v % lam == 0:
            found.append("a multiple of lambda(N) (phi, the decryption exponent, ...)")
        g = math.gcd(v, n)
        if g in (p, q):
            found.append("a multiple of p or q")
        if v in (p + q, p + q - 1, exponent, phi // 4):
            found.append("p + q, phi/4 or the exponent")
    return found


def test_no_party_ever_holds_p_q_phi_or_the_decryption_exponent():
    """Every party's whole state (every integer reachable from its attributes) after every step of
    a ceremony is checked against p, q, p + q, phi, lambda, the exponent phi R and their multiples."""
    config = DkgConfig(5, 3, 512, insecure=True)
    ids = identities(5)
    snapshots = []  # (step, party, integers)
    additive = {}  # test privilege: the banks' additive shares of p and q, to learn p and q afterwards

    def observer(who, party):
        values = []
        _integers(party, set(), values)
        snapshots.append((len(snapshots), who, values))
        batch = getattr(party, "_batch", None)
        if batch is not None and batch.p_shares:
            additive[(batch.index, party.party)] = (list(batch.p_shares), list(batch.q_shares), list(batch.kept))

    coordinator, banks = drive(config, ids, observer=observer)
    public = coordinator.public_key
    n = public.n
    # p and q: the additive shares of the candidate whose product is N (known only to this test)
    p = q = None
    for batch in {b for b, _ in additive}:
        count = len(additive[(batch, 0)][0])
        for k in range(count):
            cp = sum(int(additive[(batch, i)][0][k]) for i in range(config.banks))
            cq = sum(int(additive[(batch, i)][1][k]) for i in range(config.banks))
            if cp * cq == n:
                p, q = cp, cq
    assert p is not None and gmpy2.is_prime(p) and gmpy2.is_prime(q)
    shares = [b.key_share for b in banks.values()]
    lagrange = [config.delta * math.prod(j for j in range(1, 4) if j != i)
                // math.prod(j - i for j in range(1, 4) if j != i) for i in range(1, 4)]
    exponent = sum(lam * s.share for lam, s in zip(lagrange, shares[:3])) // config.delta
    assert exponent % ((p - 1) * (q - 1)) == 0 and exponent % n == public.decryption_scale
    # the check would catch a leak: plant p (and a multiple of phi) in a copy of a state
    planted = []
    _integers({"hidden": [gmpy2.mpz(p) * 7], "d": exponent * 3}, set(), planted)
    assert len(_leaks(planted, n, p, q, exponent)) >= 2
    assert len(snapshots) > 5 * 12
    for step, who, values in snapshots:
        leaks = _leaks(values, n, p, q, exponent)
        assert not leaks, f"{who} held {leaks[0]} at step {step}"


# ----------------------------------------------------------------------------- drops and deviations


def test_a_bank_that_drops_aborts_the_attempt_and_a_fresh_ceremony_completes():
    config = DkgConfig(3, 2, 512, insecure=True)
    dropped = []

    def silent(attempt, round_, bank):
        if attempt == 0 and round_ == 3 and bank == 1:
            dropped.append(round_)
            return True
        return False

    public, shares, report = run_ceremony(config, identities(3), silent=silent)
    assert dropped and report.attempts == 2
    assert "banks [1] did not answer in round 3" in report.aborted[0]
    c = encrypt_packed(public, [77])
    assert combine_partial_decryptions(public, [partial_decrypt(s, c) for s in shares.values()][:2]) == [77]


def test_a_bank_that_keeps_dropping_ends_in_a_typed_abort():
    config = DkgConfig(3, 2, 512, insecure=True)
    with pytest.raises(AbortError, match="aborted 2 times"):
        run_ceremony(config, identities(3), attempts=2, silent=lambda a, r, b: b == 2 and r == 1)


def test_a_bank_that_aborts_tells_everyone_why():
    config = DkgConfig(3, 2, 512, insecure=True)
    ids = identities(3)
    verify = {i: k.public_bytes for i, k in ids.items()}
    ceremony = new_ceremony_id()
    coordinator = DkgCoordinator(config, ceremony, verify)
    bank = DkgBank(config, 0, ceremony, ids[0], verify)
    bank.start()
    outbox = coordinator.receive(0, bank.abort_message("the officer said no"))
    assert coordinator.finished and coordinator.missing == {0}
    with pytest.raises(AbortError, match="officer said no"):
        DkgBank(config, 1, ceremony, ids[1], verify).start() and DkgBank(config, 1, ceremony, ids[1], verify)
        other = DkgBank(config, 1, ceremony, ids[1], verify)
        other.start()
        other.handle(outbox[1])


def _cheater(handler: str, position: int, modulus: int | None = None):
    """A bank class that changes one byte (or, with ``modulus``, one 16-bit sieve value, by one)
    of what it publishes in the round produced by ``handler``, and otherwise follows the protocol."""

    class Cheater(DkgBank):
        def _wrong(self, publics, private):
            kind, public, sealed = getattr(DkgBank, handler)(self, publics, private)
            self._true_public = public
            public = bytearray(public)
            if modulus is not None:
                public[position:position + 2] = ((int.from_bytes(public[position:position + 2], "little") + 1)
                                                 % modulus).to_bytes(2, "little")
            else:
                public[position] ^= 1
            return kind, bytes(public), sealed

        def _after_verify(self, publics, private):
            # it goes on with its own verification key as it really computed it
            if handler == "_after_reshare":
                publics = {**publics, self.party: self._true_public}
            return DkgBank._after_verify(self, publics, private)

    setattr(Cheater, handler, Cheater._wrong)
    return Cheater


def test_a_bank_publishing_a_wrong_sieve_product_is_named_when_the_redundancy_allows_it():
    config = DkgConfig(5, 2, 512, insecure=True)  # c = 1: 5 >= 2c + 3 shares name a single liar
    cheater = _cheater("_after_sieve", 0, int(config.column_primes[0]))
    with pytest.raises(ProtocolViolation, match="bank 3 published sieve products") as err:
        drive(config, identities(5), classes={3: cheater})
    assert err.value.party == 3


def test_a_wrong_share_without_redundancy_is_caught_by_the_test_decryption():
    config = DkgConfig(3, 2, 512, insecure=True)  # n = 2c + 1: no spare share to check against
    width = (config.key_field.bit_length() + 7) // 8
    with pytest.raises(AbortError, match="test ciphertext"):  # a wrong masked exponent: a wrong gamma
        drive(config, identities(3), classes={1: _cheater("_after_key", width - 1)})


def test_a_wrong_verification_key_is_caught_by_the_test_decryption_and_named():
    config = DkgConfig(3, 2, 512, insecure=True)
    with pytest.raises(ProtocolViolation, match="bank 2") as err:
        drive(config, identities(3), classes={2: _cheater("_after_reshare", 5)})
    assert err.value.party == 2


def test_a_coordinator_altering_a_sealed_part_is_refused_naming_the_sender():
    config = DkgConfig(3, 2, 512, insecure=True)

    def tamper_bundle(round_, bank, data):
        bundle = decode_dkg_message(data)
        if round_ != 1 or bank != 0:
            return data
        entries = list(bundle.entries)
        sealed = bytearray(entries[1].sealed)
        sealed[0] ^= 1
        entries[1] = dataclasses.replace(entries[1], sealed=bytes(sealed))
        return dataclasses.replace(bundle, entries=tuple(entries)).encode()

    with pytest.raises(ProtocolViolation, match="fails authentication") as err:
        drive(config, identities(3), tamper_bundle=tamper_bundle)
    assert err.value.party == 1


def test_a_coordinator_showing_banks_different_broadcasts_is_caught_by_the_transcripts():
    config = DkgConfig(3, 2, 512, insecure=True)

    def tamper_bundle(round_, bank, data):
        bundle = decode_dkg_message(data)
        if round_ != 2 or bank != 0:
            return data
        entries = list(bundle.entries)
        public = bytearray(entries[2].public)
        public[0] ^= 1
        entries[2] = dataclasses.replace(entries[2], public=bytes(public))
        return dataclasses.replace(bundle, entries=tuple(entries)).encode()

    # caught either way: by the transcripts, or, when the flipped bit leaves the field, by the range check
    with pytest.raises((ProtocolViolation, AbortError), match="transcript|inconsistent|wrong size|outside their fields"):
        drive(config, identities(3), tamper_bundle=tamper_bundle)


def test_a_hello_signed_by_someone_else_is_refused():
    config = DkgConfig(3, 2, 512, insecure=True)
    ids = identities(3)
    impostor = IdentityKey.generate(TestOnlySeededRandomness(99, b"impostor"))

    def tamper(round_, kind, bank, data):
        if kind is RoundKind.HELLO and bank == 1:
            from secagg.paillier.dkg.bank import hello_statement

            message = decode_dkg_message(data)
            statement = hello_statement(message.ceremony_id, 1, config, message.agreement_key)
            return dataclasses.replace(message, signature=impostor.sign(statement)).encode()
        return data

    with pytest.raises(ProtocolViolation, match="not signed by bank 1") as err:
        drive(config, ids, tamper=tamper)
    assert err.value.party == 1


def test_malformed_and_misplaced_messages_are_typed():
    config = DkgConfig(3, 2, 512, insecure=True)
    ids = identities(3)
    verify = {i: k.public_bytes for i, k in ids.items()}
    ceremony = new_ceremony_id()
    coordinator = DkgCoordinator(config, ceremony, verify)
    bank = DkgBank(config, 0, ceremony, ids[0], verify)
    hello = bank.start()
    for bad in (b"", hello[:-1], hello + b"\x00", b"SAGK\x02" + hello[5:]):
        with pytest.raises(MalformedMessage):
            coordinator.receive(0, bad)
    with pytest.raises(ProtocolViolation, match="another ceremony or bank"):
        coordinator.receive(1, hello)
    coordinator.receive(0, hello)
    with pytest.raises(ProtocolViolation, match="twice"):
        coordinator.receive(0, hello)
    with pytest.raises(MalformedMessage) as err:
        bank.handle(b"SAGK")
    assert err.value.party == "server"


@pytest.mark.parametrize("kwargs,match", [
    ({"banks": 4, "threshold": 3, "corrupt": 2}, "honest majority"),
    ({"banks": 3, "threshold": 1}, "at least one corrupt"),
    ({"banks": 5, "threshold": 2, "corrupt": 2}, "must not decrypt alone"),
    ({"banks": 3, "threshold": 2, "key_bits": 1024}, "for tests only"),
    ({"banks": 3, "threshold": 2, "key_bits": 256, "insecure": True}, "key_bits >= 512"),
    ({"banks": 2, "threshold": 2}, "3 to 64 banks"),
])
def test_unsafe_ceremony_parameters_are_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        DkgConfig(**kwargs)


# ----------------------------------------------------------------------------- arithmetic known answers


def test_small_field_sharings_reconstruct_and_name_a_single_liar():
    moduli = np.array([11, 13, 17, 101], dtype=np.int64)
    secret = np.array([[3, 12, 0, 100], [10, 1, 16, 55]], dtype=np.int64)
    shares = share_small(secret, 2, 7, moduli)
    assert np.array_equal(reconstruct_small(shares, 2, moduli), secret)
    shares[4, 1, 2] = (shares[4, 1, 2] + 1) % 17
    with pytest.raises(ProtocolViolation) as err:
        reconstruct_small(shares, 2, moduli)
    assert err.value.party == 4


def test_big_field_and_integer_sharings_known_answers():
    prime = int(gmpy2.next_prime(1 << 300))
    shares = share_big(123456789, 2, 5, prime)
    assert reconstruct_big(shares, 2, prime) == 123456789
    # a product of two degree-1 sharings is a degree-2 sharing of the product
    a, b = share_big(1000, 1, 5, prime), share_big(-7, 1, 5, prime)
    assert reconstruct_big([x * y % prime for x, y in zip(a, b)], 2, prime) == prime - 7000
    # integer Shamir: Delta-scaled Lagrange over any t points gives Delta * secret, shares positive
    values = integer_shares(-5000, 2, 5, 10**6)
    assert all(v > 0 for v in values)
    delta = math.factorial(5)
    for chosen in ((1, 2, 3), (2, 4, 5)):
        lam = [delta * math.prod(j for j in chosen if j != i) // math.prod(j - i for j in chosen if j != i)
               for i in chosen]
        assert sum(coef * values[i - 1] for coef, i in zip(lam, chosen)) == delta * -5000


def test_the_sieve_draws_nonzero_residues_and_pins_the_top_bits():
    """Every candidate the sieve keeps is coprime to every sieve prime, 3 mod 4, in [3 2^(k/2-2), 2^(k/2))."""
    config = DkgConfig(3, 2, 512, insecure=True)
    ids = identities(3)
    seen = {}

    def observer(who, party):
        batch = getattr(party, "_batch", None)
        if batch is not None and batch.p_shares and who.startswith("bank"):
            seen[party.party] = (list(batch.p_shares), list(batch.q_shares))

    drive(config, ids, observer=observer)
    count = len(seen[0][0])
    assert count > 0.5 * config.batch  # the 2^-8 failure bound per prime keeps most candidates
    half = config.half_bits
    for k in range(count):
        for which in (0, 1):
            value = sum(int(seen[i][which][k]) for i in range(3))
            assert value % 4 == 3 and 3 << (half - 2) <= value < 1 << half
            assert all(value % prime for prime in config.sieve_primes + config.tiny_primes)
