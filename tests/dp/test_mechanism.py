import itertools
import json
import math

import numpy as np
import pytest

from secagg.aggregation import make_aggregator
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.dp import DistributedMechanism, DPConfig
from secagg.dp.mechanism import ROUNDING_KEY_BYTES, MechanismParameters
from secagg.dp.rotation import rotate
from secagg.errors import ParameterError

pytest.importorskip("dp_accounting")


def mechanism(config, dimension=1000, shares=10, rounds=10, rate=1.0, expected=10, population=None):
    return DistributedMechanism(config, dimension=dimension, rounds=rounds, sampling_rate=rate,
                                expected_contributions=expected, min_shares=shares, population=population)


def demo_mechanism(bits, **config):
    """The demo's record-level schedule: 8 banks (7 noise shares), 100 DP-SGD rounds, 2% of records."""
    return DistributedMechanism(DPConfig(epsilon=3.0, level="record", bits=bits, **config), dimension=14, rounds=100,
                                sampling_rate=0.02, expected_contributions=670, min_shares=7)


class Replay:
    """TEST ONLY: a RandomSource that reads a given byte string (a party's secret stream, fixed so a
    test can build the coupling the privacy argument uses)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def random_bytes(self, n: int) -> bytes:
        chunk = self.data[self.offset:self.offset + n]
        assert len(chunk) == n, "the test stream is too short"
        self.offset += n
        return chunk


def aggregate(mech, updates, aggregator="masking", seed=0):
    """Every client's noisy integer vector through an aggregator; the server's decoded sum."""
    signs = mech.signs(bytes([seed]) * 32) if mech.config.rotation else None
    source = TestOnlySeededRandomness(seed, b"parties")
    clients = list(range(len(updates)))
    aggregation = make_aggregator(aggregator).open_round(clients, mech.padded, max_weight=1.0,
                                                         clip=float(mech.value_bound(1)),
                                                         rng=np.random.default_rng(seed))
    for client, update in zip(clients, updates):
        vector = mech.encode(update, signs, source.child(bytes([client])))
        assert vector.dtype == np.int64 and np.abs(vector).max() <= mech.value_bound(1)
        aggregation.submit(client, vector.astype(np.float64), 1.0)
    return mech.decode(aggregation.finish().weighted_sum, signs)


def within_sampling_error(sample_variance, variance, n, sigmas=5.0):
    """The sample variance of n Gaussian-like values has standard error variance * sqrt(2/(n-1))."""
    return abs(sample_variance / variance - 1) < sigmas * math.sqrt(2 / (n - 1))


# ----------------------------------------------------------------------------- noise and decoding

@pytest.mark.parametrize("mechanism_name,aggregator", [("dgauss", "masking"), ("skellam", "plain")])
def test_decoded_noise_has_the_calibrated_variance(mechanism_name, aggregator):
    mech = mechanism(DPConfig(noise_multiplier=0.9, clip=1.0, mechanism=mechanism_name), dimension=4000)
    noise = aggregate(mech, [np.zeros(4000)] * 10, aggregator)
    assert noise.shape == (4000,)
    assert mech.noise_stddev == pytest.approx(0.9 * mech.l2 * mech.granularity, rel=1e-5)
    assert within_sampling_error(noise.var(), mech.noise_stddev**2, noise.size)
    assert abs(noise.mean()) < 5 * mech.noise_stddev / math.sqrt(noise.size)


def test_the_sum_of_real_updates_is_recovered_up_to_the_noise():
    rng = np.random.default_rng(3)
    updates = rng.normal(size=(10, 3000)) * 0.05  # norms near 2.7: clipped to 1
    mech = mechanism(DPConfig(noise_multiplier=0.5, clip=1.0), dimension=3000)
    clipped = updates / np.linalg.norm(updates, axis=1, keepdims=True)
    error = aggregate(mech, list(updates), "plain") - clipped.sum(axis=0)
    rounding = 10 * mech.granularity**2 / 4  # at most a quarter of a grid step squared per client
    assert within_sampling_error(error.var(), mech.noise_stddev**2, error.size)
    assert error.var() < mech.noise_stddev**2 + rounding + 5 * mech.noise_stddev**2 * math.sqrt(2 / error.size)


def test_survivors_beyond_the_minimum_add_noise_never_remove_it():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, dropout_tolerance=0.25), dimension=2000, shares=8)
    noise = aggregate(mech, [np.zeros(2000)] * 12, "plain")
    assert within_sampling_error(noise.var(), mech.noise_stddev**2 * 12 / 8, noise.size)


def test_modular_clipping_wraps_the_sum_into_the_grid():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, rotation=False, bits=10), dimension=4)
    half = 2**9
    decoded = mech.decode(np.array([half - 1, half, -half, 3 * half + 2], dtype=np.float64), None)
    assert np.allclose(decoded / mech.granularity, [half - 1, -half, -half, -half + 2])
    with pytest.raises(ParameterError, match="whole numbers"):
        mech.decode(np.array([0.5, 0, 0, 0]), None)


def test_tiny_discrete_gaussian_shares_are_raised_to_one_quarter():
    # Kairouz, Liu and Steinke's bound for sums of discrete Gaussians needs sigma >= 1/2 per share
    mech = mechanism(DPConfig(noise_multiplier=1e-9, clip=1.0), dimension=4, shares=1, expected=1)
    assert mech.share_variance == 0.25 and mech.epsilon(1) > 0


# ----------------------------------------------------------------------------- rounding: secret, per record

@pytest.mark.parametrize("bits", [12, 16, 20])
def test_removing_one_record_moves_the_sum_by_that_records_own_rounding(bits):
    """The l2 bound holds record by record against an adversary who knows every public seed.

    The adversary knows the trainer's seed and the round's rotation seed, and picks neighbouring
    datasets D and D minus record x. The party's secret stream S is uniform; so is S' = S without
    x's 32-byte rounding key, and the party's outputs on D with S and on D - x with S' differ by
    x's rounded vector alone, noise included. The two output laws are thus mixtures of shifts by at
    most l2: what the accountant assumes.
    """
    mech = demo_mechanism(bits)
    rng = np.random.default_rng(bits)
    records = rng.normal(size=(100, 14))
    records /= np.linalg.norm(records, axis=1, keepdims=True)
    signs = mech.signs(bytes(range(32)))  # public
    stream = TestOnlySeededRandomness(bits, b"a party's secret stream").random_bytes(1 << 16)
    with_all = mech.encode(records, signs, Replay(stream))
    for k in (0, 1, 37, 98, 99):
        key = stream[ROUNDING_KEY_BYTES * k:ROUNDING_KEY_BYTES * (k + 1)]
        coupled = stream[:ROUNDING_KEY_BYTES * k] + stream[ROUNDING_KEY_BYTES * (k + 1):]
        without = mech.encode(np.delete(records, k, axis=0), signs, Replay(coupled))
        difference = with_all - without
        assert np.array_equal(difference, mech._round(records[k:k + 1], signs, key)[0])
        assert difference @ difference <= mech.l2_squared_bound


def test_a_replayable_rounding_stream_would_break_the_bound():
    """The attack the secret keys stop: with coins the adversary can replay (the trainer's seed used to
    drive one numpy stream for all records), removing one record changes how every later record is
    rounded, and the rounded sum moves by more than the accounted l2."""
    mech = demo_mechanism(12)
    records = np.random.default_rng(12).normal(size=(100, 14))
    records /= np.linalg.norm(records, axis=1, keepdims=True)
    signs = mech.signs(bytes(range(32)))
    keys = TestOnlySeededRandomness(12, b"replayable").random_bytes(ROUNDING_KEY_BYTES * 100)
    rounded_sum = mech._round(records, signs, keys).sum(axis=0)
    worst = 0.0
    for k in range(0, 90, 3):  # the same stream read in order, so later records take shifted coins
        shifted = mech._round(np.delete(records, k, axis=0), signs, keys[:ROUNDING_KEY_BYTES * 99]).sum(axis=0)
        worst = max(worst, float(np.linalg.norm(rounded_sum - shifted)) / mech.l2)
    assert worst > 2  # 4.2x measured on the old code at 12 bits


def test_rounding_refuses_a_replayable_numpy_generator():
    mech = demo_mechanism(20)
    with pytest.raises(ParameterError, match="secret randomness"):
        mech.encode(np.zeros(14), mech.signs(bytes(32)), np.random.default_rng(0))
    with pytest.raises(ParameterError, match="random_bytes"):
        mech.encode(np.zeros(14), mech.signs(bytes(32)), 7)


def test_conditional_rounding_respects_the_sensitivity_bound():
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=12), dimension=60, expected=100)
    rows = np.tile(np.random.default_rng(4).normal(size=60), (5000, 1))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rounded = mech._round(rows, mech.signs(bytes(32)), TestOnlySeededRandomness(5).random_bytes(32 * 5000))
    assert np.all(np.einsum("ij,ij->i", rounded, rounded) <= mech.l2_squared_bound)
    assert mech.l2 < (1 / mech.granularity + math.sqrt(mech.padded))


def test_conditional_rounding_bias_is_real_and_within_its_bound():
    # c ~ 2,500 grid steps in 1,024 coordinates: about 10% of first roundings exceed the bound
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=16, rotation=False), dimension=1024, expected=100)
    x = np.random.default_rng(0).normal(size=1024)
    x /= np.linalg.norm(x)
    count = 4000
    rounded = mech._round(np.tile(x, (count, 1)), None, TestOnlySeededRandomness(6).random_bytes(32 * count))
    target = x / mech.granularity
    bias = rounded.mean(axis=0) - target
    # how often plain stochastic rounding fails the check here (p <= beta by Kairouz et al., Prop. 22)
    fraction = target - np.floor(target)
    plain = np.floor(target) + (np.random.default_rng(7).random((count, 1024)) < fraction)
    p = float(np.mean(np.einsum("ij,ij->i", plain, plain) > mech.l2_squared_bound))
    assert 0.02 < p <= mech.config.rounding_beta
    along = float(bias @ x)
    error = 0.5 / math.sqrt(count)  # standard error of the mean along one unit direction
    assert along < -5 * error  # it shrinks: conditional rounding is not unbiased
    assert -along <= math.sqrt(p) / (2 * (1 - p)) + 5 * error  # the documented bound, in that direction
    assert np.linalg.norm(bias) <= mech.rounding_bias_bound + 5 * math.sqrt(1024 / (4 * count))
    assert mech.rounding_bias_bound == pytest.approx(0.98966, abs=1e-5)


def test_conditional_rounding_bound_is_exact_on_a_fine_grid():
    # at 40 bits a contribution spans ~1e11 grid steps: squared norms near 1.5e22 overflow int64,
    # and the check used to wrap around and accept vectors beyond the sensitivity bound
    mech = mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=40), dimension=16, shares=2, rounds=1, expected=2)
    assert mech.l2_squared_bound > 2**63
    rows = np.random.default_rng(1).normal(size=(4000, 16))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rounded = mech._round(rows, mech.signs(bytes(32)), TestOnlySeededRandomness(8).random_bytes(32 * 4000))
    exact = (rounded.astype(object) ** 2).sum(axis=1)  # Python integers
    assert all(exact <= int(mech.l2_squared_bound))
    assert np.abs(rounded).max() > 2**35  # the grid really is that fine


def test_a_party_with_no_sampled_record_sends_noise_only():
    mech = demo_mechanism(20)
    vector = mech.encode(np.zeros((0, 14)), mech.signs(bytes(32)), TestOnlySeededRandomness(9))
    assert vector.shape == (16,) and np.any(vector != 0)


# ----------------------------------------------------------------------------- calibration never stalls

def test_the_width_that_used_to_stall_constructs_at_once():
    # bits=8 on the demo's schedule ran 20 minutes and raised; it is a dozen accountant evaluations
    mech = demo_mechanism(8)
    assert mech.epsilon(100) <= 3.0 and mech.epsilon(100) == pytest.approx(3.0, rel=1e-8)
    assert mech.calibration_evaluations <= 40
    # the grid fits: range_stddevs standard deviations of a coordinate of the sum, in grid units
    m, c = 670, 1 / mech.granularity
    spread = math.sqrt(m * m * c * c / mech.padded + m / 4 + mech.total_variance)
    assert 4 * spread <= 2**7 * (1 + 1e-6)


def test_an_unreachable_width_is_refused_up_front_naming_the_smallest_that_can():
    config = dict(epsilon=0.5, delta=1e-6, clip=1.0)
    with pytest.raises(ParameterError, match=r"cannot be reached at bits=8.*smallest width that can is bits=(\d+)") \
            as refused:
        mechanism(DPConfig(bits=8, **config), dimension=100_000, shares=45, rounds=200, rate=0.05, expected=50,
                  population=1000)
    width = int(refused.value.args[0].split("smallest width that can is bits=")[1].split()[0].rstrip(";,)"))
    mech = mechanism(DPConfig(bits=width, **config), dimension=100_000, shares=45, rounds=200, rate=0.05, expected=50,
                     population=1000)
    assert mech.epsilon(200) <= 0.5
    with pytest.raises(ParameterError, match="cannot be reached"):
        mechanism(DPConfig(bits=width - 1, **config), dimension=100_000, shares=45, rounds=200, rate=0.05,
                  expected=50, population=1000)


SCHEDULES = {  # (dimension, rounds, sampling_rate, expected_contributions, min_shares, population)
    "record, demo": (14, 100, 0.02, 670.0, 7, None),
    "record, big model": (50_000, 500, 0.01, 100.0, 3, None),
    "client, digits": (650, 60, 0.1, 100.0, 95, 1000),
    "client, few": (10_000, 20, 0.5, 10.0, 9, 20),
    "everyone, every round": (1000, 30, 1.0, 8.0, 8, None),
}


def test_every_config_of_a_grid_constructs_in_few_evaluations_or_names_a_width():
    """Calibration cost is counted, not timed (benchmarks/bench_dp.py times the same grid)."""
    refused = constructed = 0
    for (name, schedule), epsilon, bits, accountant in itertools.product(
            SCHEDULES.items(), (0.3, 1.0, 4.0, 16.0), (8, 12, 16, 20, 32), ("proven", "gaussian_approximation")):
        dimension, rounds, rate, expected, shares, population = schedule
        config = DPConfig(epsilon=epsilon, bits=bits, accountant=accountant,
                          level="client" if population else "record")
        try:
            mech = DistributedMechanism(config, dimension=dimension, rounds=rounds, sampling_rate=rate,
                                        expected_contributions=expected, min_shares=shares, population=population)
        except ParameterError as error:
            assert "smallest width that can" in str(error) or "no width up to 48" in str(error), (name, str(error))
            refused += 1
            continue
        constructed += 1
        assert mech.calibration_evaluations <= 60, (name, epsilon, bits, accountant)
        assert epsilon * (1 - 1e-8) <= mech.epsilon(rounds) <= epsilon
    assert constructed > 100 and refused > 5


def test_skellam_and_fixed_noise_calibrate_too():
    skellam = mechanism(DPConfig(epsilon=4.0, mechanism="skellam"), dimension=100, shares=9, rounds=20, expected=10)
    assert 4.0 * (1 - 1e-8) <= skellam.epsilon(20) <= 4.0 and skellam.calibration_evaluations <= 1500
    fixed = mechanism(DPConfig(noise_multiplier=2.0, bits=12), dimension=300, shares=5, rate=0.1, expected=20)
    assert fixed.noise_multiplier == pytest.approx(2.0, rel=1e-12) and fixed.calibration_evaluations == 0


def test_grids_finer_than_float64_can_check_are_refused():
    with pytest.raises(ParameterError, match="2\\^52"):
        mechanism(DPConfig(noise_multiplier=1e-9, clip=1.0, bits=48), dimension=1000, expected=1e-3)


def test_skellam_shares_beyond_the_sampler_accuracy_are_refused():
    with pytest.raises(ParameterError, match="Skellam share"):
        mechanism(DPConfig(noise_multiplier=1.0, clip=1.0, bits=36, mechanism="skellam", rotation=False),
                  dimension=64, shares=2, expected=2)


# ----------------------------------------------------------------------------- what a deployment announces

def test_a_config_round_trips_through_its_canonical_json():
    for config in (DPConfig(epsilon=3, level="record", record_sampling_rate=0.02),
                   DPConfig(noise_multiplier=1.5, mechanism="skellam", rotation=False, bits=16,
                            accountant="gaussian_approximation")):
        text = json.dumps(config.to_dict(), sort_keys=True)
        assert DPConfig.from_dict(json.loads(text)) == config
    assert DPConfig(epsilon=3).to_dict() == DPConfig(epsilon=3.0).to_dict()  # canonical: 3 and 3.0 alike


@pytest.mark.parametrize("change,match", [
    (lambda d: d.pop("bits"), "exactly the keys"),
    (lambda d: d.update(extra=1), "exactly the keys"),
    (lambda d: d.update(format=2), "format"),
    (lambda d: d.update(bits="20"), "bits"),
    (lambda d: d.update(bits=20.0), "bits"),
    (lambda d: d.update(rotation=1), "rotation"),
    (lambda d: d.update(epsilon="3"), "epsilon"),
    (lambda d: d.update(epsilon=True), "epsilon"),
    (lambda d: d.update(level=None), "level"),
    (lambda d: d.update(epsilon=-1.0), "epsilon must be"),
    (lambda d: d.update(accountant="approximately"), "accountant"),
])
def test_a_bad_config_description_is_refused(change, match):
    data = DPConfig(epsilon=3.0).to_dict()
    change(data)
    with pytest.raises(ParameterError, match=match):
        DPConfig.from_dict(data)
    with pytest.raises(ParameterError, match="dict"):
        DPConfig.from_dict([("epsilon", 3.0)])


def test_participants_rebuild_the_coordinators_mechanism_from_the_announcement_alone():
    parameters = MechanismParameters(DPConfig(epsilon=2.0, delta=1e-6, clip=0.5, dropout_tolerance=0.2),
                                     dimension=300, rounds=40, sampling_rate=0.05, expected_contributions=10,
                                     min_shares=8, population=200)
    coordinator = parameters.build()
    announcement = json.dumps({"parameters": parameters.to_dict(), "calibration": coordinator.calibration()},
                              sort_keys=True)

    received = json.loads(announcement)
    participant = MechanismParameters.from_dict(received["parameters"]).build()
    participant.check_calibration(received["calibration"])
    assert (participant.granularity, participant.total_variance, participant.share_variance, participant.l2) == (
        coordinator.granularity, coordinator.total_variance, coordinator.share_variance, coordinator.l2)
    # a coordinator announcing less noise than its parameters call for, or another version's numbers
    for name, factor in (("total_variance", 0.99), ("granularity", 1 + 1e-6), ("epsilon", 1.01)):
        with pytest.raises(ParameterError, match=name):
            participant.check_calibration(received["calibration"] | {name: received["calibration"][name] * factor})
    participant.check_calibration(received["calibration"] | {"granularity": coordinator.granularity * (1 + 1e-13)})
    for bad, match in (({"padded": 256}, "padded"), ({"epsilon": "2"}, "epsilon"), ({"padded": True}, "padded"),
                       ({"total_variance": 10**400}, "total_variance"), ({"padded": 10**400}, "padded")):
        with pytest.raises(ParameterError, match=match):
            participant.check_calibration(received["calibration"] | bad)
    with pytest.raises(ParameterError, match="keys"):
        participant.check_calibration({"granularity": coordinator.granularity})
    # one changed public parameter is a different mechanism
    other = MechanismParameters.from_dict(received["parameters"] | {"rounds": 41}).build()
    with pytest.raises(ParameterError, match="differs"):
        other.check_calibration(received["calibration"])

    # each of 10 participants encodes with its own secret randomness only; the server decodes
    seed = bytes(range(32))
    rng = np.random.default_rng(11)
    updates = rng.normal(size=(10, 300)) * 0.01
    vectors = [participant.encode(update, participant.signs(seed)) for update in updates]
    decoded = coordinator.decode(np.sum(vectors, axis=0).astype(np.float64), coordinator.signs(seed))
    clipped = updates * np.minimum(1, 0.5 / np.linalg.norm(updates, axis=1, keepdims=True))
    error = decoded - clipped.sum(axis=0)
    assert np.std(error) < 2 * coordinator.noise_stddev * math.sqrt(10 / 8)


@pytest.mark.parametrize("change,match", [
    (lambda d: d.pop("rounds"), "exactly the keys"),
    (lambda d: d.update(format=0), "format"),
    (lambda d: d.update(dimension=1.5), "dimension"),
    (lambda d: d.update(population="200"), "population"),
    (lambda d: d.update(sampling_rate=None), "sampling_rate"),
    (lambda d: d.update(sampling_rate=0.051), "cohort"),
    (lambda d: d.update(min_shares=0), "min_shares"),
    (lambda d: d["config"].update(bits=4), "bits"),
])
def test_bad_mechanism_parameters_are_refused(change, match):
    data = MechanismParameters(DPConfig(epsilon=2.0), dimension=300, rounds=40, sampling_rate=0.05,
                               expected_contributions=10, min_shares=8, population=200).to_dict()
    change(data)
    with pytest.raises(ParameterError, match=match):
        MechanismParameters.from_dict(data)


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one"), ({"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
    ({"epsilon": -3.0}, "epsilon"), ({"epsilon": float("inf")}, "epsilon"), ({"epsilon": 0}, "epsilon"),
    ({"epsilon": 1.0, "delta": 0.0}, "delta"), ({"epsilon": 1.0, "delta": 1.0}, "delta"),
    ({"epsilon": 1.0, "clip": 0.0}, "clip"), ({"epsilon": 1.0, "clip": -1}, "clip"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"), ({"epsilon": 1.0, "level": "user"}, "level"),
    ({"epsilon": 1.0, "mechanism": "laplace"}, "mechanism"), ({"epsilon": 1.0, "bits": 4}, "bits"),
    ({"epsilon": 1.0, "dropout_tolerance": 1.0}, "dropout_tolerance"),
    ({"epsilon": 1.0, "record_sampling_rate": 0.0}, "record_sampling_rate"),
    ({"epsilon": 1.0, "rounding_beta": 1.0}, "rounding_beta"), ({"epsilon": True}, "epsilon"),
    ({"epsilon": 1.0, "accountant": "gaussian"}, "accountant"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        DPConfig(**kwargs)


def test_bad_mechanism_arguments():
    config = DPConfig(noise_multiplier=1.0)
    with pytest.raises(ParameterError, match="Skellam"):
        mechanism(DPConfig(noise_multiplier=1.0, mechanism="skellam"), rate=0.5)
    with pytest.raises(ParameterError, match="min_shares"):
        mechanism(config, shares=0)
    with pytest.raises(ParameterError, match="beyond the sampler"):
        mechanism(DPConfig(noise_multiplier=1.0, bits=48), shares=1)
    mech = mechanism(config, dimension=10)
    with pytest.raises(ParameterError, match="rows of 10"):
        mech.encode(np.zeros(11), mech.signs(bytes(32)))
    with pytest.raises(ParameterError, match="NaN"):
        mech.encode(np.full(10, np.nan), mech.signs(bytes(32)))
    with pytest.raises(ParameterError, match="signs"):
        mech.encode(np.zeros(10), None)
    with pytest.raises(ParameterError, match="signs"):
        mech.decode(np.zeros(mech.padded), None)
    with pytest.raises(ParameterError, match="2\\^53"):
        mech.decode(np.full(mech.padded, 2.0**60), mech.signs(bytes(32)))
    with pytest.raises(ParameterError, match="max_contributions"):
        mech.value_bound(0)
    with pytest.raises(ParameterError, match="MechanismParameters"):
        DistributedMechanism.from_parameters({"dimension": 4})
    for kwargs, match in (({"sampling_rate": "0.5"}, "sampling_rate"), ({"sampling_rate": True}, "sampling_rate"),
                          ({"expected_contributions": None}, "expected_contributions"),
                          ({"expected_contributions": float("nan")}, "expected_contributions"),
                          ({"min_shares": 1.0}, "min_shares"), ({"population": 0}, "population"),
                          ({"population": 7, "sampling_rate": 0.5}, "cohort")):
        arguments = dict(dimension=4, rounds=1, sampling_rate=1.0, expected_contributions=1, min_shares=1) | kwargs
        with pytest.raises(ParameterError, match=match):
            DistributedMechanism(config, **arguments)
    with pytest.raises(ParameterError, match="DPConfig"):
        DistributedMechanism({"epsilon": 1.0}, dimension=4, rounds=1, sampling_rate=1.0, expected_contributions=1,
                             min_shares=1)
    numpy_ints = DistributedMechanism(config, dimension=np.int64(4), rounds=np.int32(3), sampling_rate=np.float64(1),
                                      expected_contributions=np.int64(2), min_shares=np.int64(2))
    assert numpy_ints.epsilon(np.int64(3)) == numpy_ints.epsilon(3) > 0
    assert json.dumps(numpy_ints.parameters.to_dict())  # numpy numbers become JSON numbers
    with pytest.raises(ParameterError, match="parties"):
        config.min_shares(-3)
    with pytest.raises(ParameterError, match="parties"):
        config.min_shares(2.5)


@pytest.mark.slow
def test_decoded_noise_variance_many_clients_masking():
    mech = mechanism(DPConfig(noise_multiplier=1.3, clip=1.0), dimension=16_000, shares=45, expected=50)
    noise = aggregate(mech, [np.zeros(16_000)] * 50, "masking", seed=7)
    assert within_sampling_error(noise.var(), mech.noise_stddev**2 * 50 / 45, noise.size, sigmas=4)


def test_announced_parameters_beyond_a_floats_range_are_refused_with_a_typed_error():
    # review 13 (low): float() of a 401-digit JSON integer raised OverflowError (untyped) from
    # from_dict, check_calibration and deep inside the calibration; every field is now range-checked
    parameters = MechanismParameters(DPConfig(epsilon=2.0, delta=1e-6, clip=0.5, dropout_tolerance=0.2),
                                     dimension=30, rounds=4, sampling_rate=0.05, expected_contributions=10,
                                     min_shares=8, population=200)
    data = parameters.to_dict()
    huge = 10**400
    numeric = [name for name, value in data.items() if name != "format" and isinstance(value, (int, float))]
    assert set(numeric) == {"dimension", "rounds", "sampling_rate", "expected_contributions", "min_shares",
                            "population"}
    for name in numeric:
        with pytest.raises(ParameterError, match=name):
            MechanismParameters.from_dict(data | {name: huge}).build()
    for name in ("epsilon", "delta", "clip", "dropout_tolerance", "bits", "range_stddevs"):
        with pytest.raises(ParameterError):
            MechanismParameters.from_dict(data | {"config": data["config"] | {name: huge}}).build()
    for name in ("epsilon", "delta", "clip", "dropout_tolerance"):
        with pytest.raises(ParameterError, match=name):
            DPConfig(**{"epsilon": 2.0, "delta": 1e-6, "clip": 0.5, name: huge})
