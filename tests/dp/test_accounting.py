import math
import sys

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


def test_distributed_gaussian_rho_grows_when_shares_are_tiny():
    assert distributed_gaussian_rho(10.0, 1e4, 5, 100) == pytest.approx(100 / (2 * 5e4), rel=1e-12)
    # with variance 0.05 per party the sum is far from a discrete Gaussian: tau kicks in
    assert distributed_gaussian_rho(1.0, 0.05, 10, 100) > 1 / (2 * 0.5) * 1.5


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
