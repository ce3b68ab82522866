"""The session adapters of the network mode: what a bank's side of a Paillier session accepts."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gmpy2")

from secagg.crypto.randomness import TestOnlySeededRandomness  # noqa: E402
from secagg.crypto.signatures import IdentityKey  # noqa: E402
from secagg.errors import ProtocolViolation  # noqa: E402
from secagg.paillier import generate_threshold_keypair  # noqa: E402
from secagg.paillier.roles import PaillierCoordinator  # noqa: E402
from secagg.paillier.threshold import safe_prime  # noqa: E402
from secagg.transport.sessions import PaillierSpec, client_run, client_spec  # noqa: E402

SID = bytes(range(16))


@pytest.fixture(scope="module")
def key():
    p, q = safe_prime(256), safe_prime(256)
    while q == p:
        q = safe_prime(256)
    public, shares = generate_threshold_keypair(4, 3, primes=(p, q))
    identities = [IdentityKey.generate(TestOnlySeededRandomness(i, b"sessions")) for i in range(4)]
    return public, shares, identities, {i: k.public_bytes for i, k in enumerate(identities)}


def _header(spec, training):
    return {"task": "fedavg", "session_id": SID.hex(), "training": training, **spec.header()}


def _request(spec, round_):
    coordinator = PaillierCoordinator(spec.public, SID, spec.verify_keys, round=round_,
                                      ciphertexts=spec.scheme.plaintexts_for(spec.values),
                                      min_contributors=spec.min_contributors, encoding=spec.encoding)
    return coordinator.start()[0]


def test_a_network_bank_puts_its_input_into_the_announced_round_only(key):
    # the second review: the same prepared input was contributed to rounds 1, 2, 3 of one session
    # when the coordinator sent several RoundRequests (different contributor sets each time: the
    # differences are single banks' updates)
    public, shares, identities, verify = key
    announced = PaillierSpec(public, verify, values=3, value_bound=100, max_summands=4, min_contributors=2, round=1)
    spec = client_spec(_header(announced, {"clip": 1.0}), paillier=(public, shares[0], 2), verify_keys=verify)
    run = client_run(spec, 0, SID, np.array([1, 2, 3]), identity=identities[0], paillier=(public, shares[0], 2))
    with pytest.raises(ProtocolViolation, match="one round only") as caught:
        run.handle(_request(spec, 2))
    assert caught.value.party == "server" and not run.contributed
    assert run.handle(_request(spec, 1)) is not None and run.contributed
    for round_ in (1, 2, 3):
        with pytest.raises(ProtocolViolation, match="already contributed|one round only"):
            run.handle(_request(spec, round_))


def test_a_network_bank_decrypts_only_its_announced_round(key):
    # the third review: a network bank decrypted rounds of its session it was never announced
    # (harmless alone, each aggregate still needs the floor; refused now all the same)
    public, shares, identities, verify = key
    announced = PaillierSpec(public, verify, values=3, value_bound=100, max_summands=4, min_contributors=2, round=1)
    paillier = (public, shares[0], 2)
    spec = client_spec(_header(announced, {"clip": 1.0}), paillier=paillier, verify_keys=verify)
    runs = [client_run(spec, b, SID, np.array([b, 1, 2]), identity=identities[b], paillier=(public, shares[b], 2))
            for b in range(2)]
    other = PaillierCoordinator(public, SID, verify, round=5, ciphertexts=1, min_contributors=2,
                                encoding=spec.encoding, banks=[0, 1])
    from secagg.paillier.roles import BankSession

    requests = other.start()
    outbox = {}
    for b in range(2):  # two banks' sessions contribute to round 5 directly (not through the adapter)
        bank = BankSession(shares[b], SID, identities[b], verify, min_contributors=2)
        outbox = other.receive(b, bank.contribute(bank.read_request(requests[b]), [b + 1], encoding=spec.encoding)) \
            or outbox
    with pytest.raises(ProtocolViolation, match="announced round 1 only"):
        runs[0].handle(outbox[0])


def test_a_network_banks_encoding_covers_the_whole_announcement(key):
    public, shares, _, verify = key
    announced = PaillierSpec(public, verify, values=3, value_bound=100, max_summands=4, min_contributors=2)
    paillier = (public, shares[0], 2)
    encodings = {client_spec(_header(announced, training), paillier=paillier, verify_keys=verify, blob=blob).encoding
                 for training, blob in (({"clip": 1.0}, b"model"), ({"clip": 2.0}, b"model"),
                                        ({"clip": 1.0}, b"other model"))}
    assert len(encodings) == 3
    same = client_spec(_header(announced, {"clip": 1.0}), paillier=paillier, verify_keys=verify, blob=b"model")
    assert same.encoding in encodings
