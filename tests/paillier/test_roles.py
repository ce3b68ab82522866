"""The Paillier path's bank and coordinator roles, attacked by a coordinator and by cheating banks.

Issue 14: on the previous code the coordinator alone got any bank's update decrypted (it handed
that bank's ciphertexts to ``partial_decrypt`` of the other banks, optionally "disguised" as a
sum by multiplying in its own encryptions of zero), a bank could shift a coordinate of the sum
undetected with exactly t decryptors, a cheater among t + 1 aborted the round anonymously, and a
base of 1 made every ciphertext readable without a key. Each of those attacks fails here.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("gmpy2")

from secagg.crypto.randomness import TestOnlySeededRandomness  # noqa: E402
from secagg.crypto.signatures import IdentityKey  # noqa: E402
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation  # noqa: E402
from secagg.paillier import encrypt_packed, generate_threshold_keypair  # noqa: E402
from secagg.paillier.messages import (  # noqa: E402
    Contribution,
    DecryptionRequest,
    PartialDecryptions,
    SignedContribution,
    decode_paillier_message,
)
from secagg.paillier.messages import KnowledgeProof, PaillierAbort  # noqa: E402
from secagg.paillier.roles import (  # noqa: E402
    BankSession,
    PaillierCoordinator,
    contribution_payload,
    contributions_digest,
    element_width,
    encoding_digest,
    paillier_threat_model,
    partials_payload,
)
from secagg.paillier.threshold import (  # noqa: E402
    ThresholdPublicKey,
    load_key_share,
    load_public_key,
    safe_prime,
    save_key_material,
)

SID = bytes(range(16))
ENC = encoding_digest({"test": "roles", "values": 2})
N_BANKS, T = 6, 4


@pytest.fixture(scope="module", params=["dealer", "ceremony"])
def setup(request):
    """Every attack below runs against a dealer's key and against a key the banks generated
    among themselves (issue 18; 512 bits, insecure, for speed): the roles cannot tell them apart."""
    if request.param == "ceremony":
        from secagg.paillier.dkg import generate_threshold_keypair_without_dealer

        public, shares = generate_threshold_keypair_without_dealer(N_BANKS, T, 512, insecure=True)
        p = q = None  # nobody knows them
    else:
        p, q = safe_prime(256), safe_prime(256)
        while q == p:
            q = safe_prime(256)
        public, shares = generate_threshold_keypair(N_BANKS, T, primes=(p, q))
    identities = {i: IdentityKey.generate(TestOnlySeededRandomness(i, b"bank")) for i in range(N_BANKS)}
    verify = {i: k.public_bytes for i, k in identities.items()}
    return public, shares, identities, verify, (p, q)


def banks(setup, floor=2, corrupt=None):
    public, shares, identities, verify, _ = setup
    return {s.index - 1: BankSession(s, SID, identities[s.index - 1], verify, min_contributors=floor,
                                     corrupt_banks=corrupt) for s in shares}


def coordinator(setup, round_=1, count=2, floor=2):
    public, _, _, verify, _ = setup
    return PaillierCoordinator(public, SID, verify, round=round_, ciphertexts=count, min_contributors=floor,
                               encoding=ENC)


def contributions(setup, sessions, coord, values):
    """Every bank's signed contribution of ``values[bank]`` (plaintext integers) to coord's round."""
    requests = coord.start()
    out = {}
    for b, plaintexts in values.items():
        request = sessions[b].read_request(requests[b])
        out[b] = sessions[b].contribute(request, plaintexts, encoding=ENC)
    return out


def run_round(setup, sessions, coord, values, tamper=None):
    messages = contributions(setup, sessions, coord, values)
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    refused = {}
    for b in sorted(requests):
        reply = sessions[b].handle(requests[b])
        if tamper is not None:
            reply = tamper(b, reply)
        try:
            coord.receive(b, reply)
        except ProtocolViolation as exc:
            refused[b] = str(exc)
        if coord.result is not None:
            break
    return refused


def test_an_honest_round_decrypts_the_sum_of_the_signed_contributions(setup):
    sessions, coord = banks(setup), coordinator(setup)
    values = {b: [10 * b, 7] for b in range(N_BANKS)}
    assert run_round(setup, sessions, coord, values) == {}
    assert coord.result.plaintexts == [sum(10 * b for b in range(N_BANKS)), 7 * N_BANKS]
    assert coord.result.contributors == tuple(range(N_BANKS)) and len(coord.result.decryptors) == T


# ---------------------------------------------------------------- 1. the decryption oracle

def _forged_request(setup, bank, round_, chosen):
    public = setup[0]
    return DecryptionRequest(SID, bank, round_, public.fingerprint, element_width(public), tuple(chosen),
                             ENC).encode()


def test_a_bank_will_not_decrypt_one_banks_contribution_alone(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    victim = decode_paillier_message(messages[0]).signed()
    for bank in range(1, N_BANKS):
        with pytest.raises(ProtocolViolation, match="fewer than 2"):
            sessions[bank].handle(_forged_request(setup, bank, 1, [victim]))


def test_the_disguised_oracle_with_the_coordinators_own_zero_encryptions_is_refused(setup):
    # the coordinator pads the victim's contribution with "contributions" it encrypted itself
    public = setup[0]
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    victim = decode_paillier_message(messages[0]).signed()
    zeros = [SignedContribution(b, tuple(encrypt_packed(public, [0, 0])), victim.proof, victim.signature)
             for b in (2, 3, 4)]
    with pytest.raises(ProtocolViolation, match="not its own signed contribution"):
        sessions[1].handle(_forged_request(setup, 1, 1, [victim, *zeros]))


def test_colluding_banks_zero_contributions_cannot_make_a_sum_of_one(setup):
    # with c corrupt banks signing encryptions of zero, a floor of c + 2 contributions still needs
    # two honest ones; a floor below that is refused by the threat model
    with pytest.raises(ParameterError, match=r"min_contributors >= c \+ 2"):
        banks(setup, floor=2, corrupt=1)
    sessions = banks(setup, floor=3, corrupt=1)
    coord = coordinator(setup, floor=3)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    victim, corrupt_zero = decode_paillier_message(messages[0]).signed(), decode_paillier_message(messages[5]).signed()
    with pytest.raises(ProtocolViolation, match="fewer than 3"):
        sessions[1].handle(_forged_request(setup, 1, 1, [victim, corrupt_zero]))


def test_each_bank_decrypts_one_aggregate_per_round_and_two_quorums_always_share_one(setup):
    # Two aggregates of one round, with and without the victim, differ by its update. A bank
    # refuses a second decryption in a round; 2t > n + c makes every two quorums overlap in an
    # honest bank, and a key without that property is refused.
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    signed = [decode_paillier_message(messages[b]).signed() for b in range(N_BANKS)]
    sessions[1].handle(_forged_request(setup, 1, 1, signed))
    with pytest.raises(ProtocolViolation, match="second decryption in round 1"):
        sessions[1].handle(_forged_request(setup, 1, 1, signed[1:]))
    with pytest.raises(ParameterError, match=r"2t > n \+ c"):
        paillier_threat_model(parties=6, threshold=3, min_contributors=2)  # two disjoint quorums of 3


def test_contributions_are_bound_to_their_round_and_session(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    signed = [decode_paillier_message(messages[b]).signed() for b in range(N_BANKS)]
    with pytest.raises(ProtocolViolation, match="not its own signed contribution to round 2"):
        sessions[2].handle(_forged_request(setup, 2, 2, signed))  # round 1's contributions as round 2's
    other = BankSession(setup[1][2], bytes(16), setup[2][2], setup[3], min_contributors=2)
    with pytest.raises(ProtocolViolation, match="another session"):
        other.handle(_forged_request(setup, 2, 1, signed))
    with pytest.raises(ProtocolViolation, match="already contributed"):
        sessions[0].read_request(coord.start()[0])


# ---------------------------------------------------------------- 1a. one packing for every contributor

def test_a_bank_refuses_a_round_that_announces_another_encoding_before_encrypting(setup):
    # the second review: the coordinator told each bank its own packing parameters (e.g. another
    # value_bound, so the victim's values land in slots the others leave zero); each bank now
    # compares the round's encoding digest with the one it computed from what it accepted
    sessions = banks(setup)
    other = encoding_digest({"test": "roles", "values": 2, "value_bound": 1})
    coord = PaillierCoordinator(setup[0], SID, setup[3], round=1, ciphertexts=2, min_contributors=2, encoding=other)
    request = sessions[0].read_request(coord.start()[0])
    with pytest.raises(ProtocolViolation, match="another encoding") as caught:
        sessions[0].contribute(request, [1, 2], encoding=ENC)
    assert caught.value.party == "server" and not sessions[0].contributed  # nothing was encrypted or sent


def test_contributions_signed_under_two_encodings_are_never_decrypted_together(setup):
    # the victim (bank 0) was told encoding A, everyone else encoding B: whichever encoding the
    # coordinator names in the decryption request, some signature fails and every bank refuses
    public, _, _, verify, _ = setup
    sessions = banks(setup)
    enc_a = encoding_digest({"test": "roles", "values": 2, "value_bound": 1})
    coord_a = PaillierCoordinator(public, SID, verify, round=1, ciphertexts=2, min_contributors=2, encoding=enc_a)
    victim = sessions[0].contribute(sessions[0].read_request(coord_a.start()[0]), [5, 1], encoding=enc_a)
    coord_b = coordinator(setup)
    others = {b: sessions[b].contribute(sessions[b].read_request(coord_b.start()[b]), [0, 1], encoding=ENC)
              for b in range(1, N_BANKS)}
    with pytest.raises(ProtocolViolation, match="bank 0"):
        coord_b.receive(0, victim)  # an honest coordinator would name it, too
    signed = sorted([decode_paillier_message(m).signed() for m in [victim, *others.values()]], key=lambda c: c.sender)
    for encoding, bank, expected in ((ENC, 1, "bank 0.*under this encoding"), (enc_a, 2, "another encoding"),
                                     (enc_a, 0, "bank 1.*under this encoding")):
        request = DecryptionRequest(SID, bank, 1, public.fingerprint, element_width(public), tuple(signed), encoding)
        with pytest.raises(ProtocolViolation, match=expected):
            sessions[bank].handle(request.encode())
    assert not any(s.decrypted for s in sessions.values())


# ---------------------------------------------------------------- 1b. corrupt banks cancelling honest ones

def _inverse(public, ciphertexts):
    return [pow(int(c), -1, public.nsquare) for c in ciphertexts]


def _corrupt_contribution(setup, bank, round_, ciphertexts, proof):
    """What a corrupt bank can send: any ciphertexts, any proof, signed with its own key."""
    public, identities = setup[0], setup[2]
    width = element_width(public)
    signature = identities[bank].sign(contribution_payload(SID, round_, public.fingerprint, bank, ciphertexts, width,
                                                           proof, ENC))
    return Contribution(SID, bank, round_, public.fingerprint, width, tuple(ciphertexts), proof, signature).encode()


def _proofs_a_corrupt_bank_could_attach(setup, sessions, coord_round, honest_message):
    """Its own valid proof (of an encryption of zeros), the honest bank's proof copied, a random one."""
    public = setup[0]
    own = decode_paillier_message(sessions[5].contribute(
        sessions[5].read_request(PaillierCoordinator(public, SID, setup[3], round=coord_round + 100, ciphertexts=2,
                                                     min_contributors=3, encoding=ENC).start()[5]), [0, 0],
        encoding=ENC)).proof
    copied = decode_paillier_message(honest_message).proof
    forged = KnowledgeProof(encrypt_packed(public, [1])[0], 12345, 2**1000 + 7)
    return {"own": own, "copied": copied, "forged": forged}


def test_a_corrupt_bank_cannot_cancel_an_honest_contribution_out_of_the_aggregate(setup):
    # Found by an adversarial review of the first version: corrupt bank 5 signed the inverse of
    # honest bank 1's ciphertexts (re-randomised) as its own contribution; the aggregate of
    # {victim 0, bank 1, bank 5} then decrypted to the victim's update alone, with 3 >= c + 2
    # distinct signed contributions (n = 6, t = 4, c = 1). Each contribution now proves that its
    # sender knows its plaintexts: the coordinator refuses the cancelling one, and so does every
    # bank when a colluding coordinator forwards it anyway.
    public = setup[0]
    sessions, coord = banks(setup, floor=3, corrupt=1), coordinator(setup, floor=3)
    messages = contributions(setup, sessions, coord, {b: [b + 1, 7] for b in range(5)})
    cancelling = [c * z % public.nsquare for c, z in zip(_inverse(public, decode_paillier_message(messages[1])
                                                                  .ciphertexts), encrypt_packed(public, [0, 0]))]
    proofs = _proofs_a_corrupt_bank_could_attach(setup, banks(setup, floor=3, corrupt=1), 1, messages[1])
    for name, proof in proofs.items():
        forged = _corrupt_contribution(setup, 5, 1, cancelling, proof)
        with pytest.raises(ProtocolViolation, match="bank 5"):
            _fresh_receive(setup, messages, forged)
        request = _forged_request_with(setup, 2, 1, [messages[0], messages[1], forged])
        with pytest.raises(ProtocolViolation, match="plaintext.knowledge"):
            sessions[2].handle(request)
    assert not sessions[2].decrypted  # refusing changed nothing: bank 2 can still decrypt round 1


def _fresh_receive(setup, messages, forged):
    coord = coordinator(setup, floor=3)
    coord.start()
    for b in (0, 1):
        coord.receive(b, messages[b])
    coord.receive(5, forged)


def _forged_request_with(setup, bank, round_, raw_contributions):
    public = setup[0]
    signed = sorted((decode_paillier_message(m).signed() for m in raw_contributions), key=lambda c: c.sender)
    return DecryptionRequest(SID, bank, round_, public.fingerprint, element_width(public), tuple(signed),
                             ENC).encode()


def test_an_old_ciphertext_cannot_be_decrypted_by_burying_it_in_a_new_round(setup):
    # the review's decryption oracle: the victim's ciphertexts of an aborted round 1, times the
    # inverses of two honest round-2 contributions, signed by a corrupt bank in round 2
    public = setup[0]
    sessions = banks(setup, floor=3, corrupt=1)
    first = contributions(setup, sessions, coordinator(setup, floor=3), {0: [41, 42]})
    second_coord = coordinator(setup, round_=2, floor=3)
    second = contributions(setup, sessions, second_coord, {1: [1, 1], 2: [2, 2]})
    buried = [int(x) for x in decode_paillier_message(first[0]).ciphertexts]
    for b in (1, 2):
        buried = [x * y % public.nsquare for x, y in zip(buried, _inverse(public, decode_paillier_message(second[b])
                                                                          .ciphertexts))]
    for proof in _proofs_a_corrupt_bank_could_attach(setup, banks(setup, floor=3, corrupt=1), 2, second[1]).values():
        forged = _corrupt_contribution(setup, 5, 2, buried, proof)
        with pytest.raises(ProtocolViolation, match="plaintext.knowledge"):
            sessions[3].handle(_forged_request_with(setup, 3, 2, [second[1], second[2], forged]))


def test_partial_decryptions_are_signed_over_what_they_decrypt_so_blame_is_checkable(setup):
    # a coordinator that sends one bank another (valid) request cannot present that bank's honest
    # answer as a wrong partial of the round: the bank signed the digest of what it decrypted
    from secagg.crypto.signatures import verify_signature

    public, verify = setup[0], setup[3]
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)})
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    subset = _forged_request_with(setup, 3, 1, [messages[b] for b in (0, 1, 2)])
    reply = decode_paillier_message(sessions[3].handle(subset))
    verify_signature(verify[3], reply.signature, partials_payload(reply))  # the bank's own, valid
    assert reply.request_digest == contributions_digest(decode_paillier_message(subset))
    assert reply.request_digest != coord.request_digest
    with pytest.raises(ProtocolViolation, match="other contributions"):
        coord.receive(3, reply.encode())
    # the coordinator's report names bank 3, but anyone holding the signed request can check that
    # bank 3 answered it correctly: its proof verifies against the aggregate it signed for
    from secagg.paillier.proofs import DecryptionProof, verify_partial_decryptions
    from secagg.paillier.roles import _product, _proof_context

    asked = decode_paillier_message(subset)
    aggregate = _product(public, [c.ciphertexts for c in asked.contributions])
    verify_partial_decryptions(public, 4, aggregate, reply.values, DecryptionProof(reply.challenge, reply.response),
                               _proof_context(SID, 1))


# ---------------------------------------------------------------- 2. unverifiable partial decryptions

def _shift(setup, bank_to_cheat, amount=7):
    """A cheating bank shifts its first partial and signs the result with its own key (so the
    signature is valid and only the proof can catch it)."""
    public, identities = setup[0], setup[2]

    def tamper(bank, reply):
        if bank not in bank_to_cheat:
            return reply
        message = decode_paillier_message(reply)
        values = list(message.values)
        values[0] = values[0] * pow(1 + public.n, amount, public.nsquare) % public.nsquare
        shifted = dataclasses.replace(message, values=tuple(values))
        return dataclasses.replace(shifted, signature=identities[bank].sign(partials_payload(shifted))).encode()
    return tamper


def test_a_shifted_partial_decryption_is_rejected_and_its_sender_named(setup):
    sessions, coord = banks(setup), coordinator(setup)
    values = {b: [b, 1] for b in range(N_BANKS)}
    refused = run_round(setup, sessions, coord, values, tamper=_shift(setup, {0}))
    assert set(refused) == {0} and "proof" in refused[0]
    assert coord.result.plaintexts == [sum(range(N_BANKS)), N_BANKS]  # the others decrypt exactly
    assert 0 in coord.result.misbehaving and 0 not in coord.result.decryptors


def test_a_cheater_answering_after_t_honest_banks_is_still_checked_and_named(setup):
    # the decryption round waits for every bank asked: the order of the answers does not decide
    # whether a wrong partial is seen
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)})
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    for b in range(N_BANKS - 1):  # banks 0..4 honest: more than t valid partials, the round stays open
        coord.receive(b, sessions[b].handle(requests[b]))
    assert coord.result is None and coord.pending_clients == {N_BANKS - 1}
    cheat = _shift(setup, {N_BANKS - 1})(N_BANKS - 1, sessions[N_BANKS - 1].handle(requests[N_BANKS - 1]))
    with pytest.raises(ProtocolViolation, match=f"bank {N_BANKS - 1}"):
        coord.receive(N_BANKS - 1, cheat)
    assert not coord.pending_clients  # a refusal changes nothing else: the driver closes the round
    coord.close_round()
    assert coord.result.plaintexts == [sum(range(N_BANKS)), N_BANKS]
    assert set(coord.result.misbehaving) == {N_BANKS - 1}


def test_two_colluding_banks_cannot_shift_the_sum_consistently(setup):
    sessions, coord = banks(setup), coordinator(setup)
    refused = run_round(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)}, tamper=_shift(setup, {1, 2}))
    assert set(refused) == {1, 2}
    assert coord.result.plaintexts == [sum(range(N_BANKS)), N_BANKS]


def test_with_exactly_t_banks_a_cheater_aborts_the_round_and_is_named(setup):
    # only t banks answer, one cheats: the round cannot finish, and the abort says who
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)})
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    for b in range(T):
        reply = _shift(setup, {3})(b, sessions[b].handle(requests[b]))
        if b == 3:
            with pytest.raises(ProtocolViolation, match="bank 3"):
                coord.receive(b, reply)
        else:
            coord.receive(b, reply)
    with pytest.raises(AbortError, match="refused: {3:"):
        coord.close_round()


def test_a_proof_from_another_bank_or_round_does_not_transfer(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)})
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    genuine = decode_paillier_message(sessions[0].handle(requests[0]))
    stolen = dataclasses.replace(genuine, party=1)  # bank 1 replays bank 0's partials and proof
    with pytest.raises(ProtocolViolation, match="bank 1"):
        coord.receive(1, stolen.encode())


# ---------------------------------------------------------------- 4. published values are validated

@pytest.mark.parametrize("field, value", [("obfuscation_base", 1), ("obfuscation_base", -1),
                                          ("verification_base", 1), ("verification_base", -1)])
def test_a_base_that_hides_nothing_is_refused(setup, field, value):
    public = setup[0]
    bad = value % public.nsquare
    with pytest.raises(ParameterError, match="other than 1 and N\\^2 - 1|tiny order"):
        dataclasses.replace(public, **{field: bad})


def test_a_base_of_tiny_order_other_than_minus_one_is_refused(setup):
    # x = 1 mod p^2 and x = -1 mod q^2: a square root of 1 that is neither 1 nor -1
    public, (p, q) = setup[0], setup[4]
    if p is None:
        pytest.skip("the ceremony's factors are known to nobody, this test included")
    x = (1 * q * q * pow(q * q, -1, p * p) - 1 * p * p * pow(p * p, -1, q * q)) % public.nsquare
    assert pow(x, 2, public.nsquare) == 1 and x not in (1, public.nsquare - 1)
    for field in ("obfuscation_base", "verification_base"):
        with pytest.raises(ParameterError, match="tiny order"):
            dataclasses.replace(public, **{field: x})


def test_key_files_round_trip_and_tampering_is_refused(setup, tmp_path):
    public, shares = setup[0], setup[1]
    save_key_material(tmp_path, public, shares)
    loaded = load_public_key(tmp_path / "public.json", min_key_bits=256)
    assert loaded == public
    share = load_key_share(tmp_path / "share-3.json", loaded)
    assert share.index == 3 and share.share == shares[2].share
    assert oct((tmp_path / "share-3.json").stat().st_mode)[-3:] == "600"
    with pytest.raises(ParameterError, match="below the 2048 bits"):
        load_public_key(tmp_path / "public.json")
    import json

    document = json.loads((tmp_path / "public.json").read_text())
    document["obfuscation_base"] = hex(1)
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ParameterError, match="obfuscation_base"):
        load_public_key(tmp_path / "bad.json", min_key_bits=256)
    document = json.loads((tmp_path / "public.json").read_text())
    document["verification_keys"][0] = document["verification_keys"][1]
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ParameterError, match="fingerprint"):
        load_public_key(tmp_path / "bad.json", min_key_bits=256)
    wrong = json.loads((tmp_path / "share-3.json").read_text())
    wrong["share"] = hex(shares[3].share)
    (tmp_path / "share-x.json").write_text(json.dumps(wrong))
    with pytest.raises(ParameterError, match="does not match its verification key"):
        load_key_share(tmp_path / "share-x.json", loaded)


def test_a_key_without_verification_keys_cannot_be_used_by_a_bank(setup):
    public, shares, identities, verify, _ = setup
    bare = ThresholdPublicKey(public.n, public.threshold, public.parties, public.delta, public.obfuscation_base)
    share = dataclasses.replace(shares[0], public_key=bare)
    with pytest.raises(ParameterError, match="verification keys"):
        BankSession(share, SID, identities[0], verify, min_contributors=2)


# ---------------------------------------------------------------- 5. DP: no decryption below min_shares

def test_a_banks_floor_refuses_an_under_noised_sum(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(N_BANKS)})
    signed = [decode_paillier_message(messages[b]).signed() for b in range(N_BANKS)]
    sessions[4].require_at_least(6)  # DP calibrated for 6 noise shares
    with pytest.raises(ProtocolViolation, match="fewer than 6"):
        sessions[4].handle(_forged_request(setup, 4, 1, signed[:5]))
    sessions[4].require_at_least(2)  # a floor never goes down
    assert sessions[4].min_contributors == 6


# ---------------------------------------------------------------- codec and construction

def test_paillier_messages_are_canonical_and_malformed_bytes_typed(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {0: [1, 2]})
    raw = messages[0]
    assert decode_paillier_message(raw).encode() == raw
    for bad in (raw[:-1], raw + b"\x00", b"SAGX" + raw[4:], raw[:4] + b"\x01" + raw[5:], b"", raw[:30]):
        with pytest.raises(MalformedMessage):
            decode_paillier_message(bad)
    message = PartialDecryptions(SID, 0, 1, bytes(32), 4, (1,), 0, 5, bytes(32), bytes(64)).encode()
    assert message[-99:-96] == b"\x01\x00\x05"  # the response: u16 length, then its bytes
    with pytest.raises(MalformedMessage, match="leading zero"):
        decode_paillier_message(message[:-99] + b"\x02\x00\x00\x05" + message[-96:])


def test_a_bank_refuses_messages_not_for_it(setup):
    sessions, coord = banks(setup), coordinator(setup)
    requests = coord.start()
    with pytest.raises(ProtocolViolation, match="addressed to bank 1"):
        sessions[0].read_request(requests[1])
    contribution = contributions(setup, banks(setup), coordinator(setup), {0: [1, 2]})[0]
    with pytest.raises(ProtocolViolation, match="bank-to-coordinator"):
        sessions[0].handle(contribution)
    assert isinstance(decode_paillier_message(contribution), Contribution)
    with pytest.raises(ParameterError, match="verify_keys"):
        BankSession(setup[1][0], SID, setup[2][0], {0: setup[3][0]}, min_contributors=2)
    with pytest.raises(ParameterError, match="identity does not match"):
        BankSession(setup[1][0], SID, setup[2][1], setup[3], min_contributors=2)


def test_contributions_with_another_count_or_a_bad_signature_are_refused_and_named(setup):
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, b] for b in range(3)})
    forged = dataclasses.replace(decode_paillier_message(messages[1]), signature=bytes(64))
    with pytest.raises(ProtocolViolation, match="invalid contribution"):
        coord.receive(1, forged.encode())
    assert 1 in coord.misbehaving
    with pytest.raises(ProtocolViolation, match="not its message"):
        coord.receive(2, messages[0])  # bank 2's stream carrying bank 0's message


def test_every_single_byte_mutation_of_each_message_type_is_typed_or_canonical(setup):
    # each message kind of a whole round; every byte flipped, and every truncation: either
    # MalformedMessage, or a message whose encoding is exactly the mutated bytes (one encoding each)
    public = setup[0]
    sessions, coord = banks(setup), coordinator(setup)
    messages = contributions(setup, sessions, coord, {b: [b, 1] for b in range(N_BANKS)})
    requests = {}
    for b, data in messages.items():
        requests = coord.receive(b, data) or requests
    round_request = PaillierCoordinator(public, SID, setup[3], round=9, ciphertexts=2, min_contributors=2,
                                        encoding=ENC).start()[0]
    samples = [round_request, messages[0], requests[0], sessions[0].handle(requests[0]),
               PaillierAbort(SID, 1, "deadline").encode()]
    for raw in samples:
        for i in range(len(raw)):
            for flipped in (raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:], raw[:i]):
                try:
                    decoded = decode_paillier_message(flipped)
                except MalformedMessage:
                    continue
                assert decoded.encode() == flipped
