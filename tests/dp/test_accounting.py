import functools
import math
import sys

import numpy as np
import pytest

dp_accounting = pytest.importorskip("dp_accounting")
mpmath = pytest.importorskip("mpmath")  # a dependency of dp-accounting

from secagg.dp import DistributedMechanism, DPConfig  # noqa: E402
from secagg.dp.accounting import (  # noqa: E402
    RDP_ORDERS,
    Epsilon,
    MechanismAccountant,
    _log_forward_differences_direct,
    _poisson_gaussian_rdp,
    _wor_gaussian_rdp,
    distributed_gaussian_rho,
    require_dp_accounting,
    rho_budget,
    subsampled_rdp,
)
from secagg.errors import ParameterError  # noqa: E402

DELTA = 1e-5


# ----------------------------------------------------------------------------- an independent computation

def theorem_rdp(alpha, q, rdp, scheme):
    """The generic subsampled-RDP bound at integer order alpha, written from the papers in 60-digit
    arithmetic, one term at a time (nothing shared with secagg.dp.accounting).

    scheme "poisson": Zhu & Wang (ICML 2019), general upper bound; "cohort": Wang, Balle &
    Kasiviswanathan (AISTATS 2019), Theorem 9 with eps(inf) = inf. ``rdp(j)`` is the unsampled
    mechanism's RDP at order j (an mpmath number). Capped by rdp(alpha), as sampling never hurts.
    """
    with mpmath.workdps(60):
        q = mpmath.mpf(q)
        if scheme == "poisson":
            total = (1 - q) ** (alpha - 1) * (alpha * q - q + 1)
            total += mpmath.binomial(alpha, 2) * q**2 * (1 - q) ** (alpha - 2) * mpmath.e ** rdp(2)
            for ell in range(3, alpha + 1):
                total += 3 * mpmath.binomial(alpha, ell) * (1 - q) ** (alpha - ell) * q**ell * mpmath.e ** (
                    (ell - 1) * rdp(ell))
        else:
            e2 = mpmath.e ** rdp(2)
            total = 1 + q**2 * mpmath.binomial(alpha, 2) * min(4 * (e2 - 1), 2 * e2)
            for j in range(3, alpha + 1):
                total += 2 * q**j * mpmath.binomial(alpha, j) * mpmath.e ** ((j - 1) * rdp(j))
        return float(min(mpmath.log(total) / (alpha - 1), rdp(alpha)))


@functools.lru_cache(maxsize=64)
def independent_curve(rho, q, scheme):
    """One round's RDP at every order of a rho-zCDP mechanism under the proven subsampling bound."""
    rho = mpmath.mpf(rho)
    return tuple(theorem_rdp(alpha, q, lambda j: j * rho, scheme) for alpha in RDP_ORDERS)


def independent_epsilon(rho, q, rounds, scheme, delta=DELTA):
    """Epsilon of ``rounds`` rounds (composition multiplies the curve), converted by dp-accounting's
    own compute_epsilon."""
    curve = [rounds * value for value in independent_curve(float(rho), float(q), scheme)]
    return dp_accounting.rdp.compute_epsilon(list(RDP_ORDERS), curve, delta)[0]


def mechanism(config, **kwargs):
    arguments = dict(dimension=650, rounds=60, sampling_rate=0.1, expected_contributions=100, min_shares=95,
                     population=1000) | kwargs
    return DistributedMechanism(config, **arguments)


# ----------------------------------------------------------------------------- the default is proven

def test_default_record_level_epsilon_is_the_proven_poisson_bound():
    # the demo's schedule: 100 DP-SGD rounds, records Poisson-sampled at 2%, 7 of 8 banks' shares
    mech = mechanism(DPConfig(epsilon=3.0, level="record"), dimension=14, rounds=100, sampling_rate=0.02,
                     expected_contributions=670, min_shares=7, population=None)
    spent = mech.epsilon(100)
    assert isinstance(spent, Epsilon) and spent.accountant == "proven" and "Zhu & Wang" in spent.theorem
    assert spent <= 3.0 and spent == pytest.approx(3.0, rel=1e-8)
    # the mechanism's rho, from Kairouz et al.'s Theorem 1, through the theorem written independently
    expected = independent_epsilon(mech.accountant.rho, 0.02, 100, "poisson")
    assert spent == pytest.approx(expected, rel=1e-9)
    assert mech.epsilon(37) == pytest.approx(independent_epsilon(mech.accountant.rho, 0.02, 37, "poisson"), rel=1e-9)


def test_default_client_level_epsilon_is_the_proven_cohort_bound():
    # the digits schedule: 100 of 1,000 clients per round, 60 rounds, replace-one
    mech = mechanism(DPConfig(epsilon=4.0, dropout_tolerance=0.05))
    spent = mech.epsilon(60)
    assert spent.accountant == "proven" and "Theorem 9" in spent.theorem
    assert spent <= 4.0 and spent == pytest.approx(4.0, rel=1e-8)
    # replace-one: the accounted sensitivity is twice the bound of one contribution
    assert mech.accountant.rho == pytest.approx((2 * mech.l2) ** 2 / (2 * mech.total_variance), rel=1e-12)
    assert spent == pytest.approx(independent_epsilon(mech.accountant.rho, 0.1, 60, "cohort"), rel=1e-9)


def test_the_gap_the_issue_measured_between_the_gaussian_bound_and_the_proven_one():
    # noise calibrated with the continuous Gaussian's subsampling bound, then read with the proven one
    for level, kwargs, target, proven in (
            ("record", dict(dimension=14, rounds=100, sampling_rate=0.02, expected_contributions=670, min_shares=7,
                            population=None), 3.0, 3.69),
            ("client", dict(), 4.0, 4.44)):
        approximate = mechanism(DPConfig(epsilon=target, level=level, accountant="gaussian_approximation"), **kwargs)
        assert approximate.epsilon(approximate.rounds) == pytest.approx(target, rel=1e-8)
        assert approximate.epsilon(approximate.rounds).accountant == "gaussian_approximation"
        scheme = "poisson" if level == "record" else "cohort"
        reread = independent_epsilon(approximate.accountant.rho, approximate.sampling_rate, approximate.rounds, scheme)
        assert reread == pytest.approx(proven, abs=0.01)
        # and the proven default adds the noise that closes that gap
        assert mechanism(DPConfig(epsilon=target, level=level), **kwargs).noise_multiplier > \
            approximate.noise_multiplier * 1.05


def test_without_sampling_both_accountants_are_the_exact_zcdp_curve():
    for accountant in ("proven", "gaussian_approximation"):
        mech = mechanism(DPConfig(epsilon=2.0, accountant=accountant), sampling_rate=1.0, population=None,
                         min_shares=9, expected_contributions=10)
        event = mech.accountant.dp_accounting_event(60)
        rdp = dp_accounting.rdp.RdpAccountant(orders=list(RDP_ORDERS))
        rdp.compose(event)
        assert mech.epsilon(60) == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-12)
        assert "no sampling" in mech.epsilon(60).theorem


def test_the_proven_poisson_bound_is_never_below_the_gaussians_exact_one():
    # applied to the continuous Gaussian's own curve, a bound that holds for every mechanism must
    # be at least the Gaussian's exact subsampled RDP (Mironov et al.) at every order
    for q in (0.001, 0.02, 0.3):
        for sigma in (0.6, 1.0, 3.0, 10.0):
            generic = subsampled_rdp(np.arange(1025) / (2 * sigma**2), q, None)
            exact = _poisson_gaussian_rdp(q, sigma)
            assert np.all(generic >= exact * (1 - 1e-12))


# ----------------------------------------------------------------------------- the approximation

def dp_accounting_rdp_epsilon(event, relation, rounds=1):
    accountant = dp_accounting.rdp.RdpAccountant(orders=list(RDP_ORDERS), neighboring_relation=relation)
    accountant.compose(event)
    return accountant.get_epsilon(DELTA)


@pytest.mark.parametrize("level,kwargs,target", [
    ("record", dict(dimension=14, rounds=100, sampling_rate=0.02, expected_contributions=670, min_shares=7,
                    population=None), 3.0),
    ("client", dict(), 1.0),
    ("client", dict(), 8.0),
])
def test_gaussian_approximation_is_dp_accountings_gaussian_bound(level, kwargs, target):
    mech = mechanism(DPConfig(epsilon=target, level=level, accountant="gaussian_approximation"), **kwargs)
    event = mech.accountant.dp_accounting_event(mech.rounds)
    relation = dp_accounting.NeighboringRelation
    expected = dp_accounting_rdp_epsilon(event, relation.ADD_OR_REMOVE_ONE if level == "record" else
                                         relation.REPLACE_ONE)
    assert mech.epsilon(mech.rounds) == pytest.approx(expected, rel=1e-9)
    assert mech.epsilon(mech.rounds) <= target and "APPROXIMATION" in mech.epsilon(mech.rounds).theorem
    assert mech.accountant.dp_accounting_event(1) is not None
    assert mechanism(DPConfig(epsilon=target, level=level), **kwargs).accountant.dp_accounting_event(1) is None


def exact_forward_differences(sigma, count):
    """log Delta^(i+1) g(-1), g(x) = exp(x (x+1) / (2 sigma^2)), in 400-digit arithmetic."""
    with mpmath.workdps(400):
        a = 1 / (2 * mpmath.mpf(sigma) ** 2)
        values = [mpmath.e ** (a * x * (x + 1)) for x in range(-1, count + 1)]
        out = []
        for _ in range(count):
            values = [values[i + 1] - values[i] for i in range(len(values) - 1)]
            out.append(float(mpmath.log(values[0])) if values[0] > 0 else -math.inf)
    return np.array(out)


def exact_theorem_27(q, sigma, deltas):
    """Wang, Balle & Kasiviswanathan's Theorem 27 for the Gaussian, with exact differences."""
    out = []
    for alpha in RDP_ORDERS:
        f2 = 1 / sigma**2
        terms = [0.0, 2 * math.log(q) + math.log(math.comb(alpha, 2)) + min(
            math.log(4) + f2 + math.log1p(-math.exp(-f2)), f2 + math.log(2))]
        for i in range(3, alpha + 1):
            term = math.log(2) + (i - 1) * i / (2 * sigma**2)
            if alpha <= 256:
                term = min(term, math.log(4) + 0.5 * (deltas[2 * (i // 2) - 1] + deltas[2 * ((i + 1) // 2) - 1]))
            terms.append(term + i * math.log(q) + math.log(math.comb(alpha, i)))
        top = max(terms)
        out.append((top + math.log(sum(math.exp(t - top) for t in terms))) / (alpha - 1))
    return np.array(out)


@pytest.mark.parametrize("q,sigma", [(0.1, 20.0), (0.5, 7.0)])
def test_theorem_27_is_evaluated_exactly_where_float_differences_are_noise(q, sigma):
    exact = exact_forward_differences(sigma, 256)
    direct, resolved = _log_forward_differences_direct(sigma, 256)
    # where the direct (dp-accounting's) differences are flagged resolved they are right; where
    # not, they are rounding noise, which is why the positive series takes over there
    assert np.all(np.abs(direct[1:][resolved[1:]] - exact[1:][resolved[1:]]) < 1e-6)
    assert not resolved[1:].all()
    assert np.nanmax(np.abs(direct[1:][~resolved[1:]] - exact[1:][~resolved[1:]])) > 1
    assert np.allclose(_wor_gaussian_rdp(q, sigma), exact_theorem_27(q, sigma, exact), rtol=1e-9, atol=0)


# ----------------------------------------------------------------------------- calibration

@pytest.mark.parametrize("accountant", ["proven", "gaussian_approximation"])
@pytest.mark.parametrize("epsilon,rounds,q,population", [
    (3.0, 100, 0.02, None), (0.5, 1000, 0.01, None), (8.0, 10, 1.0, None), (1.0, 60, 0.1, 1000),
    (16.0, 60, 0.1, 1000), (0.1, 100, 0.05, 200)])
def test_rho_budget_meets_the_target_tightly_in_few_evaluations(accountant, epsilon, rounds, q, population):
    rho, evaluations = rho_budget(epsilon, rounds, DELTA, q, population=population, accountant=accountant)
    spends = MechanismAccountant("dgauss", 1.0, 1.0, 1 / (2 * rho) * (1 if population is None else 4), 1, 1, q, DELTA,
                                 population, accountant).epsilon
    assert epsilon * (1 - 1e-9) <= spends(rounds) <= epsilon
    assert evaluations <= 60  # the old loop recomputed the accountant up to 10,000 times


def test_a_target_below_float_precision_is_refused():
    with pytest.raises(ParameterError, match="below what float64"):
        rho_budget(1e-12, 1000, 1e-200, 0.5)


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


def test_skellam_is_accounted_with_agarwal_et_als_zcdp():
    l2, l1, v = 100.0, 9000.0, 1e5
    accountant = MechanismAccountant("skellam", l2=l2, l1=l1, variance=v, shares=4, dimension=64, sampling_rate=1.0,
                                     delta=DELTA)
    event = accountant.dp_accounting_event(10)
    assert isinstance(event.event, dp_accounting.ZCDpEvent) and event.count == 10
    assert event.event.rho == pytest.approx(l2**2 / (2 * v) + l2**2 / (2 * v * v))
    assert event.event.xi == pytest.approx((6 * l1 - l2**2) / (4 * v * v))
    assert accountant.epsilon(10) == pytest.approx(dp_accounting_rdp_epsilon(
        event, dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE), rel=1e-12)
    gaussian = dp_accounting_rdp_epsilon(dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(math.sqrt(v) / l2), 10), dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    assert gaussian < accountant.epsilon(10) < gaussian * 1.001
    clamped = MechanismAccountant("skellam", l2=l2, l1=100.0, variance=v, shares=4, dimension=64, sampling_rate=1.0,
                                  delta=DELTA)
    assert clamped.dp_accounting_event(1).event.xi == 0.0  # 6 l1 < l2^2: xi would be negative; 0 is the safe side


def test_epsilon_per_round_and_its_label():
    accountant = MechanismAccountant("dgauss", l2=1000.0, l1=30_000.0, variance=1.44e6, shares=20, dimension=1024,
                                     sampling_rate=0.05, delta=1e-6)
    assert accountant.epsilon(0) == 0.0 and accountant.epsilon(0).accountant == "proven"
    values = [accountant.epsilon(t) for t in (1, 7, 250)]
    assert values[0] < values[1] < values[2]
    assert accountant.epsilon(np.int64(7)) == values[1]
    assert values[2] == pytest.approx(independent_epsilon(accountant.rho, 0.05, 250, "poisson", delta=1e-6), rel=1e-9)
    assert repr(values[2]).startswith("Epsilon(") and str(values[2]) == repr(float(values[2]))


@pytest.mark.parametrize("call,match", [
    (lambda: rho_budget(-1.0, 10, DELTA, 0.1), "epsilon"),
    (lambda: rho_budget(1.0, 10, 1.0, 0.1), "delta"),
    (lambda: rho_budget(1.0, 10, DELTA, 0.0), "sampling_rate"),
    (lambda: rho_budget(1.0, 0, DELTA, 0.1), "rounds"),
    (lambda: rho_budget(1.0, 10, DELTA, 0.1, accountant="magic"), "accountant"),
    (lambda: rho_budget(1.0, 10, DELTA, 0.5, population=7), "cohort"),
    (lambda: rho_budget("3", 10, DELTA, 0.1), "epsilon"),
    (lambda: rho_budget(True, 10, DELTA, 0.1), "epsilon"),
    (lambda: MechanismAccountant("skellam", 1.0, 1.0, 1.0, 1, 4, 0.5, DELTA), "Skellam"),
    (lambda: MechanismAccountant("laplace", 1.0, 1.0, 1.0, 1, 4, 1.0, DELTA), "mechanism"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, "0.5", DELTA), "sampling_rate"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, 0.5, DELTA, population=7), "cohort"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, 0.5, DELTA, accountant="gauss"), "accountant"),
    (lambda: MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, 0.5, DELTA).epsilon(1.0), "rounds"),
    (lambda: subsampled_rdp(np.arange(100) * 0.1, 0.1, None), "orders 0..1024"),
    (lambda: subsampled_rdp(-np.arange(1025) * 0.1, 0.1, None), "orders 0..1024"),
    (lambda: subsampled_rdp(np.arange(1025) * 0.1, 0.0, None), "sampling_rate"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_missing_dp_accounting_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)
    with pytest.raises(ImportError, match=r"secagg\[dp\]"):
        require_dp_accounting()
    with pytest.raises(ImportError, match=r"secagg\[dp\]"):
        MechanismAccountant("dgauss", 1.0, 1.0, 1.0, 1, 4, 1.0, DELTA).epsilon(3)
