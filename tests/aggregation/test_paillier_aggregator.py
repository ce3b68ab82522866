import numpy as np
import pytest

pytest.importorskip("phe")
pytest.importorskip("gmpy2")

from secagg.aggregation import make_aggregator  # noqa: E402
from secagg.aggregation.paillier import EncryptedUpdate  # noqa: E402
from secagg.errors import ParameterError, ProtocolViolation  # noqa: E402
from secagg.fedavg import FedAvg, NumpyLogisticRegression  # noqa: E402


@pytest.fixture(scope="module", params=["dealer", "ceremony"])
def aggregator(request):
    """The same aggregates under a dealer's key and under one the five banks generated among
    themselves (issue 18; 512 bits, insecure, for speed)."""
    if request.param == "ceremony":
        from secagg.paillier.dkg import generate_threshold_keypair_without_dealer

        agg = make_aggregator("paillier", keys=generate_threshold_keypair_without_dealer(5, 3, 512, insecure=True))
        agg.setup(5)
        return agg
    agg = make_aggregator("paillier", key_bits=512, threshold=3)
    agg.setup(5)
    return agg


def submit_all(round_, rng, participants, dim):
    updates = {c: rng.uniform(-1, 1, dim) for c in participants}
    weights = {c: int(rng.integers(1, 51)) for c in participants}
    for c in participants:
        round_.submit(c, weights[c] * updates[c], weights[c])
    return updates, weights


@pytest.mark.parametrize("drop,included", [
    ({}, (0, 1, 2, 3, 4)),
    ({"masked_input": [1]}, (0, 2, 3, 4)),
    ({"share_keys": [0], "unmasking": [4]}, (1, 2, 3, 4)),  # 4 is summed but does not decrypt
    ({"unmasking": [0, 1]}, (0, 1, 2, 3, 4)),  # three decryptors left: enough
])
def test_sums_over_included_parties(aggregator, drop, included):
    rng = np.random.default_rng(len(drop))
    round_ = aggregator.open_round(list(range(5)), 300, max_weight=50, clip=1.0, rng=rng)
    assert round_.ciphertext_count < 300  # packed
    updates, weights = submit_all(round_, rng, range(5), 300)
    result = round_.finish(drop)
    assert result.ok and result.included == included
    expected = sum(weights[c] * updates[c] for c in included)
    assert result.total_weight == sum(weights[c] for c in included)
    assert np.max(np.abs(result.weighted_sum - expected)) <= result.error_bound


def test_too_few_decryptors_abort(aggregator):
    rng = np.random.default_rng(0)
    round_ = aggregator.open_round(list(range(5)), 10, max_weight=50, clip=1.0, rng=rng)
    submit_all(round_, rng, range(5), 10)
    result = round_.finish({"unmasking": [0, 1, 2]})
    assert not result.ok and "threshold is 3" in result.aborted


def test_bad_contributions_are_refused_and_named(aggregator):
    import dataclasses

    from secagg.paillier.messages import decode_paillier_message

    rng = np.random.default_rng(1)
    round_ = aggregator.open_round(list(range(5)), 10, max_weight=50, clip=1.0, rng=rng)
    good = round_.encrypt(0, np.zeros(10), 1, rng)
    message = decode_paillier_message(good.message)
    other = make_aggregator("paillier", key_bits=512, threshold=2)
    other.setup(3)
    foreign = other.open_round([0, 1], 10, max_weight=50, clip=1.0, rng=rng).encrypt(0, np.zeros(10), 1, rng)
    tampered = dataclasses.replace(message, ciphertexts=(message.ciphertexts[0] + 1,) + message.ciphertexts[1:])
    longer = dataclasses.replace(message, ciphertexts=message.ciphertexts + message.ciphertexts)
    for bad, match in [(EncryptedUpdate(0, foreign.message), "not its message for this session"),
                       (EncryptedUpdate(0, longer.encode()), "ciphertexts, the round takes"),
                       (EncryptedUpdate(0, tampered.encode()), "invalid contribution"),
                       ("not an update", "sent str")]:
        with pytest.raises(ProtocolViolation, match=match):
            round_.receive(0, bad)
    assert 0 in round_.coordinator.misbehaving  # the tampered one names its (claimed) sender


def test_the_coordinator_side_holds_no_key_share(aggregator):
    # every share lives in a bank session; the aggregator's coordinator never sees one
    assert aggregator._shares is None
    round_ = aggregator.open_round(list(range(5)), 4, max_weight=5, clip=1.0, rng=np.random.default_rng(0))
    assert not any(hasattr(value, "share") for value in vars(round_.coordinator).values())


def test_dp_min_shares_makes_the_banks_refuse_a_smaller_sum(aggregator):
    rng = np.random.default_rng(2)
    round_ = aggregator.open_round(list(range(5)), 10, max_weight=50, clip=1.0, rng=rng, min_contributions=5)
    submit_all(round_, rng, range(5), 10)
    result = round_.finish({"masked_input": [2]})  # four contributions arrive, five are needed
    assert not result.ok and "fewer than 5" in result.aborted
    assert all(bank.min_contributors == 5 for bank in aggregator.banks.values())


def test_clients_without_a_key_share_are_refused(aggregator):
    with pytest.raises(ParameterError, match="hold no key share"):
        aggregator.open_round([3, 7], 4, max_weight=5, clip=1.0, rng=np.random.default_rng(0))


def test_fedavg_with_paillier_matches_plain_within_the_bound():
    rng = np.random.default_rng(4)
    w = rng.normal(size=5)
    clients = []
    for _ in range(4):
        X = rng.normal(size=(int(rng.integers(80, 200)), 5))
        clients.append((X, (X @ w > 0).astype(int)))
    runs = {}
    for name, options in [("plain", None), ("paillier", {"key_bits": 512})]:
        fl = FedAvg(NumpyLogisticRegression(5), aggregator=name, rounds=3, learning_rate=0.05, simulated_dropout=0.25,
                    seed=3,
                    aggregator_options=options)
        runs[name] = (fl.fit(clients), fl.weights)
    bound = sum(r.error_bound for r in runs["paillier"][0])
    assert [r.included for r in runs["plain"][0]] == [r.included for r in runs["paillier"][0]]
    assert max(np.max(np.abs(a - b)) for a, b in zip(runs["plain"][1], runs["paillier"][1])) <= bound


def test_missing_extra_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "phe", None)
    with pytest.raises(ImportError, match=r"secagg\[paillier\]"):
        make_aggregator("paillier")


def test_a_bank_packing_outside_its_slots_loses_the_round_not_the_job(aggregator):
    # the second review: a corrupt bank encrypts (and proves, it knows its plaintext) a value with
    # bits above the last slot; the decrypted sum then fails to unpack. Without range proofs the
    # round cannot be saved, but it must end as an abort, never as an exception out of the driver.
    rng = np.random.default_rng(7)
    round_ = aggregator.open_round(list(range(5)), 10, max_weight=50, clip=1.0, rng=rng)
    honest = round_.encrypt
    beyond = 1 << (8 * round_.scheme.slots * round_.scheme.slot_bytes)
    assert beyond < aggregator.public_key.n

    def corrupt_bank_0(client_id, weighted_update, weight, rng):
        if client_id != 0:
            return honest(client_id, weighted_update, weight, rng)
        bank = aggregator.banks[0]
        request = bank.read_request(round_._requests[0])
        return EncryptedUpdate(0, bank.contribute(request, [beyond] * round_.ciphertext_count,
                                                  encoding=round_.encoding))

    round_.encrypt = corrupt_bank_0
    submit_all(round_, rng, range(5), 10)
    result = round_.finish({})
    assert not result.ok and "outside their slots" in result.aborted
