import math
import sys

import numpy as np
import pytest

dp_accounting = pytest.importorskip("dp_accounting")

from secagg.dp.accounting import (  # noqa: E402
    MechanismAccountant,
    calibrate_noise_multiplier,
    distributed_gaussian_rho,
    epsilon_for_noise_multiplier,
    require_dp_accounting,
)
from secagg.errors import ParameterError  # noqa: E402


def dp_accounting_epsilon(event, delta):
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("z,q,rounds", [(1.1, 0.01, 1000), (0.8, 0.2, 30), (3.0, 1.0, 50)])
def test_epsilon_is_dp_accountings_for_the_subsampled_gaussian(z, q, rounds):
    gaussian = dp_accounting.GaussianDpEvent(z)
    event = gaussian if q == 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)
    expected = dp_accounting_epsilon(dp_accounting.SelfComposedDpEvent(event, rounds), 1e-5)
    assert epsilon_for_noise_multiplier(z, q, rounds, 1e-5) == expected
    assert epsilon_for_noise_multiplier(np.float64(z), q, np.int64(rounds), 1e-5) == expected


def test_calibration_meets_the_target_and_is_tight():
    z = calibrate_noise_multiplier(3.0, 0.02, 100, 1e-5)
    assert epsilon_for_noise_multiplier(z, 0.02, 100, 1e-5) <= 3.0
    assert epsilon_for_noise_multiplier(z * 0.999, 0.02, 100, 1e-5) > 3.0


def test_mechanism_epsilon_per_round_equals_a_fresh_accountant():
    accountant = MechanismAccountant("dgauss", l2=1000.0, l1=30_000.0, variance=1.44e6, shares=20, dimension=1024,
                                     sampling_rate=0.05, delta=1e-6)
    for rounds in (1, 7, 250):
        assert accountant.epsilon(rounds) == pytest.approx(dp_accounting_epsilon(accountant.event(rounds), 1e-6),
                                                           rel=1e-12)
    # the discrete Gaussian's tau is negligible here: the event is the Gaussian with z = sqrt(variance) / l2
    direct = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.2)), 250)
    assert accountant.epsilon(250) == pytest.approx(dp_accounting_epsilon(direct, 1e-6), rel=1e-9)
    assert accountant.epsilon(0) == 0.0


def test_distributed_gaussian_rho_takes_the_larger_tau_term_and_needs_sigma_one_half():
    assert distributed_gaussian_rho(10.0, 1e4, 5, 100) == pytest.approx(100 / (2 * 5e4), rel=1e-12)
    # with variance 0.3 per party the sum is far from a discrete Gaussian: tau kicks in, and it is
    # counted at its Proposition 14 size tau * d (Google's distributed_dp), not the theorem's tau * d / 4
    tau = 10 * sum(math.exp(-2 * math.pi**2 * 0.3 * k / (k + 1)) for k in range(1, 10))
    first = 1 / (2 * 3.0) + tau * 100
    second = (1 / math.sqrt(3.0) + tau * 10) ** 2 / 2
    assert distributed_gaussian_rho(1.0, 0.3, 10, 100) == pytest.approx(min(first, second), rel=1e-12)
    assert distributed_gaussian_rho(1.0, 0.3, 10, 100) >= 1 / (2 * 3.0) + tau * 100 / 4
    # Kairouz, Liu and Steinke's Theorem 1 needs sigma >= 1/2 per share
    with pytest.raises(ParameterError, match="sigma >= 1/2"):
        distributed_gaussian_rho(1.0, 0.05, 10, 100)


def replace_one_epsilon(event, delta):
    accountant = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(event)
    return accountant.get_epsilon(delta)


def test_fixed_cohort_is_accounted_as_replace_one_with_twice_the_sensitivity():
    # client level: 40 of 1,000 clients per round, sampled without replacement; the protected
    # client is replaced (not removed), so the number of noise shares never depends on it, and two
    # clipped updates differ by up to 2 l2
    accountant = MechanismAccountant("dgauss", l2=1000.0, l1=30_000.0, variance=4 * 1.44e6, shares=36,
                                     dimension=1024, sampling_rate=0.04, delta=1e-5, population=1000)
    assert accountant.neighboring_relation == dp_accounting.NeighboringRelation.REPLACE_ONE
    event = accountant.event(30)
    assert isinstance(event.event, dp_accounting.SampledWithoutReplacementDpEvent)
    assert (event.event.source_dataset_size, event.event.sample_size) == (1000, 40)
    assert event.event.event.noise_multiplier == pytest.approx(1.2, rel=1e-12)  # sqrt(v) / (2 l2)
    direct = dp_accounting.SelfComposedDpEvent(
        dp_accounting.SampledWithoutReplacementDpEvent(1000, 40, dp_accounting.GaussianDpEvent(1.2)), 30)
    assert accountant.epsilon(30) == pytest.approx(replace_one_epsilon(direct, 1e-5), rel=1e-9)
    assert accountant.epsilon(np.int64(30)) == accountant.epsilon(30)
    # the same noise read as add-or-remove with Poisson sampling would claim far less
    poisson = MechanismAccountant("dgauss", l2=1000.0, l1=30_000.0, variance=4 * 1.44e6, shares=36, dimension=1024,
                                  sampling_rate=0.04, delta=1e-5)
    assert poisson.epsilon(30) < 0.6 * accountant.epsilon(30)
    spent = epsilon_for_noise_multiplier(1.2, 0.04, 30, 1e-5, population=1000)
    assert spent == pytest.approx(replace_one_epsilon(direct, 1e-5), rel=1e-12)


def test_calibration_for_a_fixed_cohort():
    z = calibrate_noise_multiplier(4.0, 0.1, 20, 1e-5, population=200)
    assert epsilon_for_noise_multiplier(z, 0.1, 20, 1e-5, population=200) <= 4.0
    assert epsilon_for_noise_multiplier(z * 0.999, 0.1, 20, 1e-5, population=200) > 4.0


def test_skellam_event_is_zcdp_with_agarwal_constants():
    l2, l1, v = 100.0, 9000.0, 1e5
    accountant = MechanismAccountant("skellam", l2=l2, l1=l1, variance=v, shares=4, dimension=64, sampling_rate=1.0,
                                     delta=1e-5)
    event = accountant.event(10)
    assert isinstance(event.event, dp_accounting.ZCDpEvent) and event.count == 10
    assert event.event.rho == pytest.approx(l2**2 / (2 * v) + l2**2 / (2 * v * v))
    assert event.event.xi == pytest.approx((6 * l1 - l2**2) / (4 * v * v))
    gaussian = dp_accounting_epsilon(dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(math.sqrt(v) / l2), 10), 1e-5)
    assert gaussian < accountant.epsilon(10) < gaussian * 1.001
    clamped = MechanismAccountant("skellam", l2=l2, l1=100.0, variance=v, shares=4, dimension=64, sampling_rate=1.0,
                                  delta=1e-5)
    assert clamped.event(1).event.xi == 0.0  # 6 l1 < l2^2: xi would be negative; 0 is the safe side


@pytest.mark.parametrize("call,match", [
    (lambda: calibrate_noise_multiplier(-1.0, 0.1, 10, 1e-5), "epsilon"),
    (lambda: calibrate_noise_multiplier(1.0, 0.1, 10, 1.0), "delta"),
    (lambda: calibrate_noise_multiplier(1.0, 0.0, 10, 1e-5), "sampling_rate"),
    (lambda: calibrate_noise_multiplier(1.0, 0.1, 0, 1e-5), "rounds"),
    (lambda: epsilon_for_noise_multiplier(0.0, 0.1, 10, 1e-5), "noise_multiplier"),
    (lambda: MechanismAccountant("skellam", 1.0, 1.0, 1.0, 1, 4, 0.5, 1e-5), "Skellam"),
    (lambda: MechanismAccountant("laplace", 1.0, 1.0, 1.0, 1, 4, 1.0, 1e-5), "mechanism"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, "0.5", 1e-5), "sampling_rate"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, 0.5, 1e-5, population=7), "cohort"),
    (lambda: epsilon_for_noise_multiplier("1", 0.1, 10, 1e-5), "noise_multiplier"),
    (lambda: epsilon_for_noise_multiplier(1.0, "0.1", 10, 1e-5), "sampling_rate"),
    (lambda: epsilon_for_noise_multiplier(1.0, 0.1, 10.0, 1e-5), "rounds"),
    (lambda: epsilon_for_noise_multiplier(1.0, 0.1, 10, None), "delta"),
    (lambda: epsilon_for_noise_multiplier(1.0, 0.1, 10, 1e-5, population=0), "population"),
    (lambda: calibrate_noise_multiplier("3", 0.1, 10, 1e-5), "epsilon"),
    (lambda: calibrate_noise_multiplier(True, 0.1, 10, 1e-5), "epsilon"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_missing_dp_accounting_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(ImportError, match=r"secagg\[dp\]"):
        require_dp_accounting()
    with pytest.raises(ImportError, match=r"secagg\[dp\]"):
        epsilon_for_noise_multiplier(1.0, 0.1, 10, 1e-5)
