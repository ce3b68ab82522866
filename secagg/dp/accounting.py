"""Privacy accounting: the RDP curve of one round, amplified by sampling, composed and converted.

A training run is ``rounds`` repetitions of one mechanism: the sum of every contribution in the
round (one client update, or one record's gradient) plus integer noise of total variance at least
``variance`` (integer units), spread over at least ``shares`` parties; one contribution has L2 norm
at most ``l2`` and L1 norm at most ``l1``. Two sampling schemes, each with its neighbouring relation:

* **Poisson sampling, add-or-remove-one** (record level): each contribution is in a round with
  probability ``sampling_rate``; neighbours differ by one contribution (sensitivities ``l2``, ``l1``).
* **A fixed-size cohort, replace-one** (client level, ``population`` given): every round takes
  ``m = sampling_rate * population`` contributors uniformly without replacement; neighbours replace
  one contributor, so the number of noise shares never depends on the protected client, and the
  sensitivities are ``2 l2`` and ``2 l1``.

**The mechanism's own RDP curve** ``eps(alpha)`` for one round without sampling:

* Discrete Gaussian shares: Kairouz, Liu and Steinke (ICML 2021, Theorem 1; per-share
  ``sigma >= 1/2``) show the sum of ``n`` independent ``N_Z(0, s^2)`` is ``rho``-zCDP, i.e.
  ``eps(alpha) = alpha rho`` at every order, with
  ``rho = min(D^2/(2 n s^2) + tau d, (D/sqrt(n s^2) + tau sqrt(d))^2 / 2)`` for sensitivity ``D``,
  ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k/(k+1))`` (the ``tau d`` term at its Proposition 14
  size, larger than the theorem's ``tau d / 4``).
* Skellam of total variance ``v``: Agarwal, Kairouz and Liu (NeurIPS 2021, Theorem 3.5), first
  branch: ``eps(alpha) = xi + alpha rho`` with ``rho = D^2/(2v) + D^2/(2 v^2)`` and
  ``xi = max(0, (6 D_1 - D^2)/(4 v^2))``. Only without sampling (refused otherwise).

**Amplification by sampling**, two accountants (``DPConfig.accountant``):

* ``"proven"`` (default): bounds that hold for *any* mechanism, applied to the curve above.
  Poisson: Zhu and Wang (ICML 2019), the general upper bound (Theorem 5 of "Poisson Subsampled
  Renyi Differential Privacy"), at integer ``alpha >= 2``::

      eps'(alpha) <= log[ (1-q)^(alpha-1) (1 + (alpha-1) q)
                          + C(alpha,2) q^2 (1-q)^(alpha-2) e^eps(2)
                          + 3 sum_{l=3}^{alpha} C(alpha,l) q^l (1-q)^(alpha-l) e^((l-1) eps(l)) ] / (alpha-1)

  Fixed cohort: Wang, Balle and Kasiviswanathan (AISTATS 2019, Theorem 9) with ``eps(inf) = inf``::

      eps'(alpha) <= log[ 1 + q^2 C(alpha,2) min(4 (e^eps(2) - 1), 2 e^eps(2))
                          + 2 sum_{j=3}^{alpha} q^j C(alpha,j) e^((j-1) eps(j)) ] / (alpha-1)

  Each is taken together with ``eps'(alpha) <= eps(alpha)`` (sampling never hurts: the sampled
  output is a mixture of the unsampled mechanism's outputs on neighbouring inputs). This is what
  Kairouz et al.'s own accounting code does for the distributed discrete Gaussian (Zhu-Wang's bound).
* ``"gaussian_approximation"``: the continuous Gaussian's own subsampled RDP at the noise
  multiplier ``1/sqrt(2 rho)``: Mironov, Talwar and Zhang (2019) for Poisson sampling, Wang, Balle
  and Kasiviswanathan (2019, Theorem 27) for the cohort, exactly as dp-accounting computes them
  (``PoissonSampledDpEvent`` / ``SampledWithoutReplacementDpEvent`` of a ``GaussianDpEvent``). Tighter
  (epsilon 3.00 where the proven bound gives 3.69 on the demo's schedule), but proven only for
  Gaussian noise, not for the discrete sum.

Without sampling both are the curve itself (exact for the mechanism). ``rounds`` rounds compose by
multiplying the curve by ``rounds``; dp-accounting's ``compute_epsilon`` (the conversion of
Canonne, Kamath and Steinke 2020 / Asoodeh et al. 2021) turns it into epsilon at ``delta``. All
curves are evaluated at :data:`RDP_ORDERS` (integers only: the generic bounds are stated for
integer orders).

Everything here is vectorised NumPy over the orders, so one evaluation takes about a millisecond and
calibration (bisection, :func:`rho_budget`) a few dozen of them. The Gaussian curves are checked
against dp-accounting's ``RdpAccountant(orders=RDP_ORDERS)`` in tests/dp/test_accounting.py.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError

__all__ = ["ACCOUNTANT_THEOREMS", "Epsilon", "MechanismAccountant", "MIN_SHARE_VARIANCE", "RDP_ORDERS",
           "distributed_gaussian_rho", "require_dp_accounting", "rho_budget", "subsampled_rdp"]

# Integer orders: every one up to 128, then steps of 16, 32 and 64 up to 1024.
RDP_ORDERS = tuple(range(2, 129)) + tuple(range(144, 257, 16)) + tuple(range(288, 513, 32)) + tuple(
    range(576, 1025, 64))

# Kairouz, Liu and Steinke's Theorem 1 holds for per-share standard deviations of at least 1/2.
MIN_SHARE_VARIANCE = 0.25

# What each accountant rests on, by sampling scheme (reported by MechanismAccountant.theorem).
ACCOUNTANT_THEOREMS = {
    ("proven", "none"): "the mechanism's own RDP curve, no sampling (exact composition)",
    ("proven", "poisson"): "Zhu & Wang (ICML 2019) general upper bound for Poisson subsampling (Theorem 5), "
                           "applied to the mechanism's own RDP curve",
    ("proven", "cohort"): "Wang, Balle & Kasiviswanathan (AISTATS 2019) Theorem 9 for sampling without "
                          "replacement, applied to the mechanism's own RDP curve",
    ("gaussian_approximation", "none"): "the mechanism's own RDP curve, no sampling (exact composition)",
    ("gaussian_approximation", "poisson"): "APPROXIMATION: the continuous Gaussian's Poisson-subsampled RDP "
                                           "(Mironov, Talwar & Zhang 2019) at the same rho; not proven for the "
                                           "discrete sum",
    ("gaussian_approximation", "cohort"): "APPROXIMATION: the continuous Gaussian's subsampled RDP without "
                                          "replacement (Wang, Balle & Kasiviswanathan 2019, Theorem 27) at the "
                                          "same rho; not proven for the discrete sum",
}

_ORDERS = np.array(RDP_ORDERS, dtype=np.int64)
_MAX_ORDER = int(_ORDERS[-1])
# dp-accounting's Theorem 27 computation uses forward differences up to this order, the generic term above.
_WOR_FORWARD_DIFFERENCE_ORDER = 256


def require_dp_accounting():
    """The ``dp_accounting`` module, or an ImportError naming the extra that provides it."""
    try:
        import dp_accounting
        import dp_accounting.rdp  # noqa: F401
    except ImportError:
        raise ImportError("privacy accounting needs Google's dp-accounting: pip install 'secagg[dp]'") from None
    return dp_accounting


def _is_int(value: object) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


def _is_real(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


class Epsilon(float):
    """An epsilon spent, as a float that also says how it was accounted.

    ``accountant`` is ``DPConfig.accountant`` (``"proven"`` or ``"gaussian_approximation"``),
    ``theorem`` what that accountant rests on for the sampling used, ``delta`` the delta it holds at.
    Arithmetic on it gives plain floats.
    """

    accountant: str
    delta: float
    theorem: str

    def __new__(cls, value: float, accountant: str, delta: float, theorem: str = "") -> Epsilon:
        epsilon = super().__new__(cls, value)
        epsilon.accountant = accountant
        epsilon.delta = delta
        epsilon.theorem = theorem
        return epsilon

    def __repr__(self) -> str:
        return f"Epsilon({float(self)!r}, accountant={self.accountant!r}, delta={self.delta!r})"

    def __str__(self) -> str:
        return float.__repr__(self)

    def __reduce__(self):
        return (Epsilon, (float(self), self.accountant, self.delta, self.theorem))


# ----------------------------------------------------------------------------- RDP curves at RDP_ORDERS

@functools.cache
def _layout():
    """Every (order, j) pair with 0 <= j <= order, flattened order by order, and log C(order, j).

    The sums of the subsampling bounds run over j for each order; they are done for all orders at
    once with ``reduceat`` over these segments.
    """
    alphas = np.repeat(_ORDERS, _ORDERS + 1)
    starts = np.concatenate([[0], np.cumsum(_ORDERS + 1)[:-1]])
    js = np.arange(alphas.size) - np.repeat(starts, _ORDERS + 1)
    log_factorial = np.array([math.lgamma(k + 1.0) for k in range(_MAX_ORDER + 1)])
    log_binomial = log_factorial[alphas] - log_factorial[js] - log_factorial[alphas - js]
    for array in (alphas, starts, js, log_binomial):
        array.flags.writeable = False
    return alphas, js, starts, log_binomial


def _segment_logsumexp(values: np.ndarray) -> np.ndarray:
    """``log(sum(exp(values)))`` over each order's segment, accurate when the result is near 0.

    The largest term is taken out and the others summed before ``log1p``, so a total of
    ``1 + tiny`` keeps the tiny part to full relative precision (the RDP is ``log(total)/(alpha-1)``).
    """
    _, _, starts, _ = _layout()
    top = np.maximum.reduceat(values, starts)
    top_each = np.repeat(top, _ORDERS + 1)
    at_top = values == top_each
    with np.errstate(invalid="ignore", over="ignore"):
        rest = np.where(at_top, 0.0, np.exp(values - top_each))
    ties = np.add.reduceat(at_top.astype(np.float64), starts) - 1
    return top + np.log1p(np.add.reduceat(rest, starts) + ties)


def subsampled_rdp(base: np.ndarray, sampling_rate: float, population: int | None) -> np.ndarray:
    """The generic (any-mechanism) subsampling bound at :data:`RDP_ORDERS`, from the unsampled curve.

    ``base[j]`` is the unsampled mechanism's RDP at integer order ``j`` (``j`` = 0 .. 1024; entries
    below 2 are ignored). Poisson (``population`` None): Zhu and Wang's general upper bound; cohort:
    Wang, Balle and Kasiviswanathan's Theorem 9. Each is capped by ``base`` itself (module docstring).
    """
    base = np.asarray(base, dtype=np.float64)
    if base.shape != (_MAX_ORDER + 1,) or not np.all(base[2:] >= 0):
        raise ParameterError(f"base must be the unsampled RDP at orders 0..{_MAX_ORDER} (>= 0), got shape {base.shape}")
    if not (_is_real(sampling_rate) and 0 < sampling_rate <= 1):
        raise ParameterError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    unsampled = base[_ORDERS]
    q = float(sampling_rate)
    if q >= 1:
        return unsampled.copy()
    alphas, js, _, log_binomial = _layout()
    log_q, log_1mq = math.log(q), math.log1p(-q)
    e2 = float(base[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        higher = log_binomial + js * log_q + (js - 1) * base[np.minimum(js, _MAX_ORDER)]
        if population is None:
            higher = higher + (alphas - js) * log_1mq + math.log(3)
            second = log_binomial + 2 * log_q + (alphas - 2) * log_1mq + e2
            first = (alphas - 1) * log_1mq + np.log1p((alphas - 1) * q)
        else:
            higher = higher + math.log(2)
            log_expm1 = e2 + math.log1p(-math.exp(-e2)) if e2 > 0 else -math.inf  # log(e^e2 - 1), no overflow
            second = log_binomial + 2 * log_q + min(math.log(4) + log_expm1, e2 + math.log(2))
            first = np.zeros(alphas.size)
        terms = np.where(js == 0, first, np.where(js == 1, -np.inf, np.where(js == 2, second, higher)))
    bound = _segment_logsumexp(terms) / (_ORDERS - 1)
    return np.maximum(np.minimum(bound, unsampled), 0.0)


def _poisson_gaussian_rdp(q: float, sigma: float) -> np.ndarray:
    """RDP of the Poisson-sampled Gaussian at :data:`RDP_ORDERS` (Mironov, Talwar, Zhang 2019, integer orders)."""
    if q >= 1:
        return _ORDERS / (2 * sigma**2)
    alphas, js, _, log_binomial = _layout()
    terms = log_binomial + js * math.log(q) + (alphas - js) * math.log1p(-q) + (js * js - js) / (2 * sigma**2)
    return np.maximum(_segment_logsumexp(terms) / (_ORDERS - 1), 0.0)


def _log_forward_differences_direct(sigma: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``log Delta^(i+1) g(-1)`` for ``i < count``, ``g(x) = exp(x (x+1) / (2 sigma^2))``, by iterated
    differences in the log domain (dp-accounting's ``_get_forward_diffs``), and whether float64
    resolves each.

    Every difference here is >= 0 (``_log_forward_differences_series`` writes each as a sum of
    positive terms), so each level is ``log(e^upper - e^lower)``. Beside each value runs a bound on
    its rounding error: it inherits the errors of its two inputs, plus about ``1 + |upper|`` units in
    the last place of ``e^upper`` (the argument of the rounded exponential is itself a difference of
    logarithms). An entry counts as resolved when that bound is below 2^-20 of its value. At small
    noise every entry is; at large noise the high differences are far smaller than the values that
    cancel to produce them, and are not.
    """
    points = np.arange(-1, count + 1, dtype=np.float64)
    values = points * (points + 1) / (2.0 * sigma**2)
    values[0] = 0.0
    log_unit = math.log(4 * 2.0**-53)
    errors = values + log_unit  # log of the absolute error bound of each value
    out = np.empty(count)
    margin = np.empty(count)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for level in range(count):
            upper, lower = values[1:], values[:-1]
            errors = np.logaddexp(np.logaddexp(errors[1:], errors[:-1]),
                                  upper + log_unit + np.log1p(np.abs(upper)))
            values = upper + np.log1p(-np.exp(lower - upper))
            values[~(upper > lower)] = -np.inf  # rounding noise: never resolved
            out[level] = values[0]
            margin[level] = values[0] - errors[0]
    return out, margin > 20 * math.log(2)


# The series below needs about (count^2 / (2 sigma^2)) steps; beyond this many it is not attempted
# (it is only needed at large sigma, where it is short).
_SERIES_STEPS = 20_000


def _log_forward_differences_series(sigma: float, count: int) -> np.ndarray | None:
    """The same differences as a sum of positive terms (no cancellation), or None if too long.

    With ``h(t) = g(t - 1) = exp(a t (t-1))``, ``a = 1/(2 sigma^2)``: expanding the exponential and
    writing ``(t(t-1))^m`` in falling factorials ``t^(k)`` (coefficients ``c[m][k] >= 0``, from
    ``t^(r) t^(2) = t^(r+2) + 2r t^(r+1) + r(r-1) t^(r)``), ``Delta^k h(0) = k! sum_m a^m c[m][k] / m!``.
    Terms are summed in the log domain until every remaining one is below ``e^-45`` of its sum.
    """
    a = 1.0 / (2.0 * sigma**2)
    size = count + 2  # k = 0 .. count + 1
    if a * size * size > _SERIES_STEPS:
        return None
    s = np.arange(size, dtype=np.float64)
    with np.errstate(divide="ignore"):
        weight_from_below = np.log(2 * (s[1:] - 1))  # c[m][s-1] counts 2(s-1) times in c[m+1][s]
        weight_same = np.log(s * (s - 1))              # c[m][s] counts s(s-1) times
    terms = np.full(size, -np.inf)
    terms[0] = 0.0  # m = 0: the constant 1
    sums = np.full(size, -np.inf)
    step = np.full(size, -np.inf)
    with np.errstate(invalid="ignore"):
        for m in range(_SERIES_STEPS):
            step[:] = terms + weight_same
            step[1:] = np.logaddexp(step[1:], terms[:-1] + weight_from_below)
            step[2:] = np.logaddexp(step[2:], terms[:-2])
            terms, step = step + math.log(a / (m + 1)), terms
            np.logaddexp(sums, terms, out=sums)
            if m + 1 >= size and m + 1 > a * size * size and np.all((terms < sums - 45) | (terms == -np.inf)):
                break
    log_factorial = np.array([math.lgamma(k + 1.0) for k in range(size)])
    return (sums + log_factorial)[1:count + 1]


def _log_forward_differences(sigma: float, count: int) -> np.ndarray:
    """``log |Delta^(i+1) g(-1)|`` for ``i < count``, ``g(x) = exp(x (x+1) / (2 sigma^2))``, accurately,
    NaN where it cannot be computed (then the caller uses Theorem 27's generic term there).

    Direct iterated differences when float64 resolves them all (small noise), else the positive
    series (large noise, where it is short). dp-accounting evaluates only the direct form; where it is
    not resolved its entries are rounding noise (checked against 400-digit arithmetic in
    tests/dp/test_accounting.py), although the epsilons it reports from them agreed with the exact
    bound in every case we checked.
    """
    direct, resolved = _log_forward_differences_direct(sigma, count)
    resolved[0] = True  # Delta g(-1) = g(0) - g(-1) = 0 exactly; never used by the bound
    if resolved.all():
        return direct
    series = _log_forward_differences_series(sigma, count)
    if series is None:
        return np.where(resolved, direct, np.nan)
    return np.where(resolved, direct, series)


def _wor_gaussian_rdp(q: float, sigma: float) -> np.ndarray:
    """RDP of the Gaussian sampled without replacement at :data:`RDP_ORDERS`, as dp-accounting computes it
    (Wang, Balle, Kasiviswanathan 2019, Theorem 27 up to order 256, their generic term above)."""
    if q >= 1:
        return _ORDERS / (2 * sigma**2)
    alphas, js, _, log_binomial = _layout()
    deltas = _log_forward_differences(sigma, _WOR_FORWARD_DIFFERENCE_ORDER)
    f2 = 2.0 / (2.0 * sigma**2)
    log_f2m1 = f2 + math.log1p(-math.exp(-f2))
    cgf_below = (js - 1.0) * js / (2.0 * sigma**2)
    generic = math.log(2) + cgf_below
    index = np.clip(js, 2, _WOR_FORWARD_DIFFERENCE_ORDER)
    low = deltas[np.clip(2 * (index // 2) - 1, 0, deltas.size - 1)]
    high = deltas[np.clip(2 * ((index + 1) // 2) - 1, 0, deltas.size - 1)]
    specific = math.log(4) + 0.5 * (low + high)
    usable = (alphas <= _WOR_FORWARD_DIFFERENCE_ORDER) & ~np.isnan(specific)
    higher = np.where(usable, np.minimum(np.where(usable, specific, 0.0), generic), generic)
    higher = higher + js * math.log(q) + log_binomial
    second = 2 * math.log(q) + log_binomial + min(math.log(4) + log_f2m1, f2 + math.log(2))
    with np.errstate(invalid="ignore"):
        terms = np.where(js == 0, 0.0, np.where(js == 1, -np.inf, np.where(js == 2, second, higher)))
    return np.maximum(_segment_logsumexp(terms) / (_ORDERS - 1), 0.0)


def _epsilon(rdp: np.ndarray, rounds: int, delta: float) -> float:
    dp_accounting = require_dp_accounting()
    epsilon, _ = dp_accounting.rdp.compute_epsilon(RDP_ORDERS, int(rounds) * rdp, float(delta))
    return float(epsilon)


@functools.lru_cache(maxsize=512)
def _zcdp_rdp(rho: float, sampling_rate: float, population: int | None, accountant: str) -> np.ndarray:
    """One round's RDP at :data:`RDP_ORDERS` of a ``rho``-zCDP mechanism under the schedule's sampling
    (read-only; cached, since both sides of a deployment calibrate the same mechanism)."""
    if sampling_rate >= 1:
        curve = _ORDERS * rho
    elif accountant == "proven":
        curve = subsampled_rdp(np.arange(_MAX_ORDER + 1) * rho, sampling_rate, population)
    elif population is None:
        curve = _poisson_gaussian_rdp(sampling_rate, 1 / math.sqrt(2 * rho))
    else:
        curve = _wor_gaussian_rdp(sampling_rate, 1 / math.sqrt(2 * rho))
    curve = np.asarray(curve, dtype=np.float64)
    curve.flags.writeable = False
    return curve


# ----------------------------------------------------------------------------- checks

def _check_schedule(sampling_rate: float, rounds: int, delta: float, population: int | None = None) -> int | None:
    """Validate a schedule; the cohort size ``sampling_rate * population`` when ``population`` is given."""
    if not _is_int(rounds) or rounds < 1:
        raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
    if not (_is_real(sampling_rate) and 0 < sampling_rate <= 1):
        raise ParameterError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    if not (_is_real(delta) and 0 < delta < 1):
        raise ParameterError(f"delta must be in (0, 1), got {delta!r}")
    return _cohort(sampling_rate, population)


def cohort_size(sampling_rate: float, population: int | None) -> int | None:
    """``sampling_rate * population`` as a whole cohort size (None without ``population``), or ParameterError."""
    return _cohort(sampling_rate, population)


def _cohort(sampling_rate: float, population: int | None) -> int | None:
    if population is None:
        return None
    if not _is_int(population) or population < 1:
        raise ParameterError(f"population must be a positive int or None, got {population!r}")
    cohort = round(float(sampling_rate) * int(population))
    if not 1 <= cohort <= population or abs(cohort - float(sampling_rate) * int(population)) > 1e-6:
        raise ParameterError(f"sampling_rate * population must be a whole cohort size, got {sampling_rate!r} * "
                             f"{population}")
    return cohort


def _check_accountant(accountant: str) -> str:
    if accountant not in ("proven", "gaussian_approximation"):
        raise ParameterError(f"accountant must be 'proven' or 'gaussian_approximation', got {accountant!r}")
    return accountant


def _sampling_scheme(sampling_rate: float, population: int | None) -> str:
    if sampling_rate >= 1:
        return "none"
    return "poisson" if population is None else "cohort"


# ----------------------------------------------------------------------------- calibration

def monotone_boundary(f, start: float, *, lowest: float, highest: float, tolerance: float = 1e-9,
                      value_tolerance: float = 0.0, limit: int = 200) -> tuple[float | None, float | None, int]:
    """Where an increasing ``f`` on ``[lowest, highest]`` (positive reals) crosses from ``<= 0`` to ``> 0``.

    Returns ``(low, high, evaluations)`` with ``f(low) <= 0 < f(high)`` and either ``high / low <= 1 +
    tolerance`` or ``f(low) >= -value_tolerance`` (``low`` is then as good as the crossing itself);
    ``low`` is None if ``f(lowest) > 0``, ``high`` None if ``f(highest) <= 0``. The bracket is found
    by steps of a factor 16 from ``start``, then narrowed by the Illinois variant of regula falsi on
    ``log x`` (a bisection step whenever a step fails to halve the bracket), so a smooth ``f`` needs
    about ten evaluations; ``limit`` evaluations at most, always the same ones for the same inputs.
    """
    evaluations = 0

    def value(x: float) -> float:
        nonlocal evaluations
        evaluations += 1
        if evaluations > limit:  # pragma: no cover - a bracket of 1e-9 is reached long before
            raise RuntimeError("monotone_boundary did not converge")
        return float(f(x))

    x = min(max(start, lowest), highest)
    fx = value(x)
    if fx <= 0:
        low, f_low = x, fx
        while True:
            if low >= highest:
                return low, None, evaluations
            high = min(low * 16, highest)
            f_high = value(high)
            if f_high > 0:
                break
            low, f_low = high, f_high
    else:
        high, f_high = x, fx
        while True:
            if high <= lowest:
                return None, high, evaluations
            low = max(high / 16, lowest)
            f_low = value(low)
            if f_low <= 0:
                break
            high, f_high = low, f_low
    a, b = math.log(low), math.log(high)
    fa, fb = f_low, f_high
    side = 0
    while b - a > math.log1p(tolerance) and fa < -value_tolerance:
        width = b - a
        c = b - fb * (b - a) / (fb - fa) if fb != fa else 0.5 * (a + b)
        if not a < c < b:
            c = 0.5 * (a + b)
        fc = value(math.exp(c))
        if fc <= 0:
            a, fa = c, fc
            if side == -1:
                fb /= 2
            side = -1
        else:
            b, fb = c, fc
            if side == 1:
                fa /= 2
            side = 1
        if b - a > 0.5 * width and fa < -value_tolerance:  # a slow step: bisect once
            middle = 0.5 * (a + b)
            fm = value(math.exp(middle))
            if fm <= 0:
                a, fa = middle, fm
            else:
                b, fb = middle, fm
    return math.exp(a), math.exp(b), evaluations


# zCDP rho searched between these (a round that may spend more than 1e8 needs no noise; one that
# may spend less than 1e-14 cannot be calibrated in float64).
_RHO_LOWEST, _RHO_HIGHEST = 1e-14, 1e8


def rho_budget(epsilon: float, rounds: int, delta: float, sampling_rate: float, *, population: int | None = None,
               accountant: str = "proven") -> tuple[float, int]:
    """The largest zCDP ``rho`` of one unsampled round whose run spends at most ``epsilon``.

    Returns ``(rho, evaluations)``. Epsilon increases with ``rho`` for both accountants, so this is
    :func:`monotone_boundary` on ``log rho`` until the run spends between ``epsilon (1 - 1e-10)`` and
    ``epsilon``, about a dozen evaluations of the
    accountant (each one or a few milliseconds). ParameterError when even ``rho = 1e-14`` spends
    more than ``epsilon``.
    """
    _check_schedule(sampling_rate, rounds, delta, population)
    if not (_is_real(epsilon) and epsilon > 0):
        raise ParameterError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    _check_accountant(accountant)
    target = math.log(epsilon)

    def excess(rho: float) -> float:
        spent = _epsilon(_zcdp_rdp(rho, float(sampling_rate), population, accountant), rounds, delta)
        return math.log(spent) - target if spent > 0 else -math.inf

    # start from the unsampled Gaussian's rho (epsilon ~ T rho + 2 sqrt(T rho log(1/delta))); the
    # approximation starts from the proven bound's answer, cheap to find and close to its own
    start = epsilon**2 / (4 * rounds * math.log(1 / delta))
    if accountant != "proven" and sampling_rate < 1:
        start, proven_evaluations = rho_budget(epsilon, rounds, delta, sampling_rate, population=population)
    else:
        proven_evaluations = 0
    low, high, evaluations = monotone_boundary(excess, start, lowest=_RHO_LOWEST, highest=_RHO_HIGHEST,
                                               value_tolerance=1e-10)
    if low is None:
        raise ParameterError(f"epsilon {epsilon} over {rounds} rounds at delta {delta} is below what float64 "
                             "accounting can calibrate (a zCDP rho under 1e-14 per round)")
    return low, evaluations + proven_evaluations


def distributed_gaussian_rho(l2: float, share_variance: float, shares: int, dimension: int) -> float:
    """zCDP ``rho`` of the sum of ``shares`` independent ``N_Z(0, share_variance)`` vectors of
    ``dimension`` coordinates for L2 sensitivity ``l2`` (Kairouz, Liu, Steinke 2021, Theorem 1, with
    the ``tau`` term taken at its larger, Proposition 14 form; see the module docstring)."""
    if not (_is_real(share_variance) and share_variance >= MIN_SHARE_VARIANCE):
        raise ParameterError(f"a discrete Gaussian share needs variance >= 1/4 (sigma >= 1/2) for the "
                             f"distributed bound, got {share_variance!r}: use more bits")
    if not _is_int(shares) or shares < 1:
        raise ParameterError(f"shares must be a positive int, got {shares!r}")
    total = shares * share_variance
    tau = 0.0
    if shares > 1 and math.pi**2 * share_variance < 745:  # beyond, every term underflows to 0
        k = np.arange(1, min(shares, 10_000), dtype=np.float64)
        tau = 10 * float(np.exp(-2 * math.pi**2 * share_variance * k / (k + 1)).sum())
        if shares > 10_000:  # the remaining terms are each at most the last one computed
            tau += 10 * (shares - 10_000) * math.exp(-math.pi**2 * share_variance)
    return min(l2**2 / (2 * total) + tau * dimension, (l2 / math.sqrt(total) + tau * math.sqrt(dimension)) ** 2 / 2)


def zcdp_epsilon(rho: float, xi: float, rounds: int, delta: float) -> float:
    """Epsilon of ``rounds`` rounds of an unsampled ``(xi, rho)``-zCDP mechanism (RDP ``xi + alpha rho``)."""
    return _epsilon(xi + rho * _ORDERS, rounds, delta)


def skellam_zcdp(l2: float, l1: float, variance: float) -> tuple[float, float]:
    """``(rho, xi)`` of Skellam noise of total ``variance`` for sensitivities ``l2``, ``l1`` (Agarwal,
    Kairouz, Liu 2021, Theorem 3.5, first branch; ``xi`` clamped at 0)."""
    return l2**2 / (2 * variance) + l2**2 / (2 * variance * variance), max(0.0, (6 * l1 - l2**2) / (4 * variance**2))


# ----------------------------------------------------------------------------- the accountant of a run

@dataclass(frozen=True)
class MechanismAccountant:
    """The privacy of a training run whose rounds each apply one distributed-noise mechanism.

    ``variance`` is the smallest total noise variance of a round's sum (integer units), ``shares`` the
    smallest number of parties whose noise is in it, ``l2``/``l1`` the norm bounds of one
    contribution (integer units), ``dimension`` the vector length. Without ``population``,
    contributions are Poisson-sampled with ``sampling_rate`` (add-or-remove-one neighbours); with it,
    every round takes a cohort of ``sampling_rate * population`` without replacement (replace-one
    neighbours, sensitivities ``2 l2`` and ``2 l1``). ``accountant`` picks the amplification bound
    (module docstring).
    """

    mechanism: str  # "dgauss" or "skellam"
    l2: float
    l1: float
    variance: float
    shares: int
    dimension: int
    sampling_rate: float
    delta: float
    population: int | None = None
    accountant: str = "proven"

    def __post_init__(self) -> None:
        if self.mechanism not in ("dgauss", "skellam"):
            raise ParameterError(f"mechanism must be 'dgauss' or 'skellam', got {self.mechanism!r}")
        if not (_is_real(self.sampling_rate) and 0 < self.sampling_rate <= 1):
            raise ParameterError(f"sampling_rate must be in (0, 1], got {self.sampling_rate!r}")
        if self.mechanism == "skellam" and self.sampling_rate < 1:
            raise ParameterError("Skellam accounting needs every contribution in every round (sampling_rate 1); "
                                 "use mechanism 'dgauss'")
        if not (_is_real(self.delta) and 0 < self.delta < 1):
            raise ParameterError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (_is_real(self.l2) and _is_real(self.l1) and _is_real(self.variance) and self.l2 > 0
                and self.l1 > 0 and self.variance > 0):
            raise ParameterError("l2, l1 and variance must be finite and positive")
        if not (_is_int(self.shares) and self.shares >= 1 and _is_int(self.dimension) and self.dimension >= 1):
            raise ParameterError("shares and dimension must be positive ints")
        _cohort(self.sampling_rate, self.population)
        _check_accountant(self.accountant)

    @property
    def sensitivity_factor(self) -> int:
        """2 under replace-one (two clipped contributions differ by up to twice the bound), else 1."""
        return 1 if self.population is None else 2

    @property
    def theorem(self) -> str:
        """What the reported epsilon rests on, for this accountant and sampling scheme."""
        return ACCOUNTANT_THEOREMS[self.accountant, _sampling_scheme(self.sampling_rate, self.population)]

    @property
    def rho(self) -> float:
        """zCDP rho of one unsampled round (the discrete Gaussian's; Skellam's ``rho`` beside its ``xi``)."""
        l2 = self.sensitivity_factor * self.l2
        if self.mechanism == "dgauss":
            return distributed_gaussian_rho(l2, self.variance / self.shares, int(self.shares), int(self.dimension))
        return skellam_zcdp(l2, self.sensitivity_factor * self.l1, self.variance)[0]

    @functools.cached_property
    def round_rdp(self) -> np.ndarray:
        """One round's RDP at :data:`RDP_ORDERS` (read-only)."""
        if self.mechanism == "dgauss":
            return _zcdp_rdp(self.rho, float(self.sampling_rate), self.population, self.accountant)
        rho, xi = skellam_zcdp(self.sensitivity_factor * self.l2, self.sensitivity_factor * self.l1, self.variance)
        curve = xi + rho * _ORDERS
        curve.flags.writeable = False
        return curve

    def dp_accounting_event(self, rounds: int = 1):
        """The dp-accounting event whose ``RdpAccountant(orders=RDP_ORDERS)`` gives this epsilon, or None.

        There is one for the Gaussian approximation and without sampling; dp-accounting has no event
        for a generic subsampled curve (the proven accountant with sampling), hence None.
        """
        dp_accounting = require_dp_accounting()
        if not _is_int(rounds) or rounds < 1:
            raise ParameterError(f"rounds must be a positive int, got {rounds!r}")
        scheme = _sampling_scheme(self.sampling_rate, self.population)
        if self.mechanism == "skellam":
            rho, xi = skellam_zcdp(self.sensitivity_factor * self.l2, self.sensitivity_factor * self.l1, self.variance)
            return dp_accounting.SelfComposedDpEvent(dp_accounting.ZCDpEvent(rho, xi), int(rounds))
        if scheme != "none" and self.accountant == "proven":
            return None
        gaussian = dp_accounting.GaussianDpEvent(1 / math.sqrt(2 * self.rho))
        if scheme == "poisson":
            gaussian = dp_accounting.PoissonSampledDpEvent(float(self.sampling_rate), gaussian)
        elif scheme == "cohort":
            if self.population is None:  # the cohort scheme is that of a known population: typed anyway
                raise ParameterError("sampling a cohort needs the population")
            gaussian = dp_accounting.SampledWithoutReplacementDpEvent(
                int(self.population), _cohort(self.sampling_rate, self.population), gaussian)
        return dp_accounting.SelfComposedDpEvent(gaussian, int(rounds))

    def epsilon(self, rounds: int) -> Epsilon:
        """Epsilon at :attr:`delta` after ``rounds`` rounds (0 rounds: 0), labelled with the accountant."""
        if not _is_int(rounds) or rounds < 0:
            raise ParameterError(f"rounds must be a non-negative int, got {rounds!r}")
        value = 0.0 if rounds == 0 else _epsilon(self.round_rdp, int(rounds), self.delta)
        return Epsilon(value, self.accountant, self.delta, self.theorem)
