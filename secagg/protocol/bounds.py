"""The threat model as arithmetic: which parameters a session may use, and what they guarantee.

**Holders.** A client Shamir-shares its self-mask seed and its mask key among its *holders*: all
n - 1 other clients (complete graph), or K clients it draws itself, uniformly without replacement
among the other n - 1, with its own CSPRNG (SecAgg+). A client never holds its own shares, so only
other clients' shares count toward the threshold t.

**Adversary.** The coordinator together with up to c corrupt clients, chosen before the session.
Honest-but-curious mode: everyone follows the protocol and the coalition pools what it saw.
Malicious mode: the coordinator may deviate arbitrarily (forge directories, split survivor lists,
replay messages, exclude anyone at any round); corrupt clients too.

**Bounds** (Bonawitz et al. 2017, section 6; Bell et al. 2020, section 4; here with h holders):

* honest-but-curious: an input is exposed only if the coalition holds t shares of *both* of its
  secrets; honest holders reveal one kind per owner, so it needs c_u >= t corrupt holders of u;
* malicious: the coordinator can split the honest holders of u between revealing the two kinds,
  but every honest holder reveals at most once (signed survivor lists), so it needs
  2t <= h_u + c_u: safe iff 2t > h + c (the complete graph: h = n - 1, c_u <= c);
* SecAgg+: c_u is the number of corrupt clients among K uniform draws from n - 1, a
  hypergeometric variable; the union bound over all honest clients must stay below
  2^-security_bits. A coordinator cannot steer the draws (each client makes them), nor raise c_u
  by excluding clients: exclusion only removes holders.
* liveness: each survivor needs t of its holders to answer at the end. Complete graph: with
  d = floor(dropout_fraction * n) dropouts (plus c silent corrupt clients in malicious mode),
  t <= n - 1 - d (- c). SecAgg+: every holder stays independently with probability
  1 - dropout_fraction (- c/n), union bound below 2^-correctness_bits.
* SecAgg+, honest-but-curious: the mask graph of the honest survivors must stay connected, or
  the server learns the sums of its pieces separately; bounded below 2^-security_bits together
  with the holder bound. (Against a malicious coordinator, which may exclude clients after seeing
  the graph, :attr:`ThreatModel.min_honest_inputs_per_sum` bounds what any piece contains.)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError

__all__ = ["ThreatModel", "evaluate", "privacy_failure", "log2_smaller_sum", "log2_hypergeometric_tail", "log2_binomial_below", "log2_disconnection"]

_LN2 = math.log(2.0)


def _lgamma(x: np.ndarray) -> np.ndarray:
    """ln Gamma(x) for x >= 1, vectorised: Stirling's series after shifting x above 8 (error < 1e-12)."""
    x = np.asarray(x, dtype=float)
    shift = np.zeros_like(x)
    y = x.copy()
    for _ in range(8):
        small = y < 8
        shift[small] += np.log(y[small])
        y[small] += 1
    inv, inv2 = 1.0 / y, 1.0 / (y * y)
    series = inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))
    result: np.ndarray = (y - 0.5) * np.log(y) - y + 0.5 * math.log(2 * math.pi) + series - shift
    return result


def _log2_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    """log2 C(n, k) for real arrays with 0 <= k <= n."""
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    result: np.ndarray = (_lgamma(n + 1) - _lgamma(k + 1) - _lgamma(n - k + 1)) / _LN2
    return result


def _log2_sum(terms: np.ndarray) -> float:
    terms = np.asarray(terms, dtype=float)
    terms = terms[np.isfinite(terms)]
    return float(np.logaddexp2.reduce(terms)) if terms.size else -math.inf


def log2_hypergeometric_tail(population: int, successes: int, draws: int, at_least: int) -> float:
    """log2 P[X >= at_least] for X ~ Hypergeometric(population, successes, draws)."""
    if at_least <= 0:
        return 0.0
    top = min(successes, draws)
    if at_least > top:
        return -math.inf
    x = np.arange(at_least, top + 1)
    x = x[draws - x <= population - successes]
    if x.size == 0:
        return -math.inf
    terms = _log2_comb(successes, x) + _log2_comb(population - successes, draws - x) - _log2_comb(population, draws)
    return min(0.0, _log2_sum(terms))


def log2_binomial_below(trials: int, p: float, threshold: int) -> float:
    """log2 P[Y <= threshold - 1] for Y ~ Binomial(trials, p)."""
    if threshold <= 0:
        return -math.inf
    if threshold > trials:
        return 0.0
    if p >= 1.0:
        return -math.inf
    if p <= 0.0:
        return 0.0
    y = np.arange(0, threshold)
    terms = _log2_comb(trials, y) + (y * math.log(p) + (trials - y) * math.log1p(-p)) / _LN2
    return min(0.0, _log2_sum(terms))


def log2_disconnection(num_clients: int, holders: int, honest_survivors: int) -> float:
    """log2 of a union bound on P[the mask graph of m honest survivors is disconnected].

    Each survivor drew ``holders`` holders uniformly among the other n - 1 clients; two clients
    mask with each other when either drew the other. A split of the m survivors into A (|A| = a
    <= m/2) and the rest B has no edge across iff every member of A avoided B and every member
    of B avoided A: (C(N-|B|, K)/C(N, K))^a (C(N-a, K)/C(N, K))^(m-a), N = n - 1. The bound is the
    sum over all such splits.
    """
    n, k, m = num_clients, holders, honest_survivors
    if m <= 1:
        return -math.inf
    N = n - 1
    a = np.arange(1, m // 2 + 1)
    rest = m - a
    total = _log2_comb(N, k)
    with np.errstate(invalid="ignore"):
        avoid_rest = np.where(N - rest >= k, _log2_comb(np.maximum(N - rest, k), k) - total, -np.inf)
        avoid_a = np.where(N - a >= k, _log2_comb(np.maximum(N - a, k), k) - total, -np.inf)
        terms = _log2_comb(m, a) + a * avoid_rest + rest * avoid_a
    return min(0.0, _log2_sum(terms))


@dataclass(frozen=True)
class ThreatModel:
    """What a configuration guarantees, against whom (see the module docstring).

    ``corrupt_clients`` is the number of corrupt clients the parameters were checked against,
    ``tolerated_corrupt`` the largest number they tolerate. ``privacy_failure_log2`` and
    ``correctness_failure_log2`` are -inf for the complete graph, whose bounds are exact.
    ``min_honest_inputs_per_sum``: every sum the coalition can compute contains at least this
    many honest clients' inputs (except with probability 2^privacy_failure_log2).
    """

    malicious: bool
    holders: int
    threshold: int
    corrupt_clients: int
    tolerated_corrupt: int
    dropout_fraction: float
    privacy_failure_log2: float
    correctness_failure_log2: float
    min_honest_inputs_per_sum: int
    bound: str


def _complete(n: int, t: int, malicious: bool, c: int, dropout: float) -> tuple[str | None, str | None, str]:
    h = n - 1
    dropped = math.floor(dropout * n)
    if malicious:
        bound = "malicious server: 2t > (n - 1) + c"
        privacy = None if 2 * t > h + c else (f"{bound} fails for n={n}, t={t}, c={c} (the coordinator could split "
                                              f"the honest holders between revealing both kinds of share)")
        silent = dropped + c
    else:
        bound = "honest-but-curious server: t > c"
        privacy = None if t > c else f"{bound} fails for t={t}, c={c} (c corrupt holders would reconstruct)"
        silent = dropped
    liveness = None if t <= h - silent else (
        f"threshold {t} cannot be met: with {dropped} dropouts of {n}" + (f" and {c} silent corrupt clients"
                                                                        if malicious else "")
        + f" a client keeps only {max(0, h - silent)} live holders")
    return privacy, liveness, bound


def _sparse(n: int, k: int, t: int, malicious: bool, c: int, dropout: float,
            security_bits: float, correctness_bits: float) -> tuple[str | None, str | None, str, float, float]:
    honest = n - c
    at_least = 2 * t - k if malicious else t
    # No shortcut for c = 0: in malicious mode 2t <= K lets the coordinator alone split the
    # honest holders (the tail is then 1), whatever c is.
    holder_failure = -math.inf if honest <= 0 else math.log2(honest) + log2_hypergeometric_tail(n - 1, c, k, at_least)
    privacy_failure = holder_failure
    if not malicious:
        survivors = n - c - math.floor(dropout * n)
        privacy_failure = float(np.logaddexp2(holder_failure, log2_disconnection(n, k, survivors)))
    silent = min(1.0, dropout + (c / n if malicious else 0.0))
    correctness_failure = math.log2(n) + log2_binomial_below(k, 1.0 - silent, t)
    bound = ("SecAgg+, malicious server: P[some client has >= 2t - K corrupt holders]" if malicious else
             "SecAgg+, honest-but-curious server: P[some client has >= t corrupt holders, or the honest "
             "survivors' mask graph falls apart]") + f" <= 2^-{security_bits:g}"
    privacy = None if privacy_failure <= -security_bits else (
        f"{bound} fails for n={n}, K={k}, t={t}, c={c}: 2^{privacy_failure:.1f}")
    liveness = None if correctness_failure <= -correctness_bits else (
        f"SecAgg+ liveness: P[some client keeps fewer than t={t} of its K={k} holders] = 2^{correctness_failure:.1f} "
        f"exceeds 2^-{correctness_bits:g} at dropout {dropout:g}" + (f" with c={c} silent corrupt clients"
                                                                   if malicious else ""))
    return privacy, liveness, bound, privacy_failure, correctness_failure


def _max_corrupt_holders(n: int, k: int, c: int, security_bits: float) -> int:
    """The largest number of corrupt holders any honest client has, except with probability
    2^-security_bits (union bound over honest clients)."""
    if c == 0:
        return 0
    for x in range(1, min(c, k) + 1):
        if math.log2(max(1, n - c)) + log2_hypergeometric_tail(n - 1, c, k, x) <= -security_bits:
            return x - 1
    return min(c, k)


def _evaluate_at(n: int, t: int, k: int | None, malicious: bool, c: int, dropout: float, security_bits: float,
                 correctness_bits: float) -> tuple[str | None, str | None, str, float, float]:
    if k is None:
        privacy, liveness, bound = _complete(n, t, malicious, c, dropout)
        return privacy, liveness, bound, -math.inf, -math.inf
    return _sparse(n, k, t, malicious, c, dropout, security_bits, correctness_bits)


def log2_smaller_sum(num_clients: int, neighbors: int | None, threshold: int, min_sum: int,
                     corrupt_clients: int = 0) -> float:
    """log2 of a union bound on P[a malicious coordinator unmasks a sum of fewer than ``min_sum``
    inputs].

    A client's mask partners are whoever the coordinator shows it (its key directory, the bundles
    it is sent), so every edge between the summed group A and the other clients can be made
    one-sided: the others mask with A's members, who never hear of them, and still pass every
    check and sign the survivor list (review 14). Neither the list's length nor its signatures
    constrain A. What does: each member of A needs t holders to reveal its self-mask share, all
    inside A or among the c corrupt clients (a holder outside A would be a two-sided edge). So the
    event is "some set of a honest clients, a + c < min_sum, each of whom drew at least t holders
    inside the set plus the corrupt clients". A member of a set of a honest clients does so with
    probability P_a = P[Hypergeometric(n - 1, a - 1 + c, K) >= t], independently; the bound sums
    C(h, a) P_a^a over a (h = n - c). For the complete graph (K = n - 1) P_a is 0 or 1 and the
    bound is exact: a sum of fewer than ``min_sum`` inputs is impossible iff t >= min_sum - 1.
    """
    return _log2_smaller_sum(int(num_clients), None if neighbors is None else int(neighbors), int(threshold),
                             int(min_sum), int(corrupt_clients))


@functools.lru_cache(maxsize=256)
def _log2_smaller_sum(n: int, neighbors: int | None, t: int, min_sum: int, c: int) -> float:
    # every client of a session checks the same parameters: computed once per process
    k = n - 1 if neighbors is None else neighbors
    h = n - c
    largest = min(min_sum - c - 1, h)  # the biggest set that is still too small
    if k >= n - 1:  # every member holds for all others: a set of a is closed iff a - 1 + c >= t
        return 0.0 if largest >= max(1, t + 1 - c) else -math.inf
    total = -math.inf
    for a in range(largest, max(1, t + 1 - c) - 1, -1):  # largest first (the likeliest); smaller than t + 1 - c: never
        closed = log2_hypergeometric_tail(n - 1, a - 1 + c, k, t)
        if np.isfinite(closed):
            total = float(np.logaddexp2(total, float(_log2_comb(h, a)) + a * closed))
            if total >= 0.0:
                break  # certain: the bound is 1 whatever the larger sets add
    return min(0.0, total)


def privacy_failure(num_clients: int, threshold: int, neighbors: int | None, malicious: bool, corrupt_clients: int,
                    *, security_bits: float = 40.0) -> str | None:
    """Why (n, t, K, mode) does not keep inputs private against the coordinator with
    ``corrupt_clients`` corrupt clients, or None when it does: the privacy bound alone, whatever
    the dropouts (liveness is the coordinator's problem, privacy the client's).

    This is what a client checks of a session it is asked to join, with the number of corrupt
    clients *its own* configuration tolerates, not the one the coordinator declares: in malicious
    mode strength is not monotone in the neighbours (2t > h + c), so a larger graph at an accepted
    threshold can tolerate fewer corrupt clients.
    """
    n, t, k, c = num_clients, threshold, neighbors, corrupt_clients
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ParameterError(f"corrupt_clients must be a non-negative int, got {c!r}")
    if c >= n:
        return f"{c} corrupt clients of {n}: no honest input is left to protect"
    privacy, *_ = _evaluate_at(n, t, k, malicious, c, 0.0, security_bits, 20.0)
    return privacy


def evaluate(num_clients: int, threshold: int, neighbors: int | None, malicious: bool, *,
             corrupt_clients: int | None = None, dropout_fraction: float = 0.0,
             security_bits: float = 40.0, correctness_bits: float = 20.0) -> ThreatModel:
    """Check the parameters against the bounds; :class:`ParameterError` naming the bound if unsafe.

    ``corrupt_clients`` None checks the largest number of corrupt clients the parameters tolerate
    (which must be at least 0); an int checks exactly that many.
    """
    n, t, k = num_clients, threshold, neighbors
    if not (isinstance(dropout_fraction, (int, float)) and not isinstance(dropout_fraction, bool)
            and 0.0 <= dropout_fraction < 1.0):
        raise ParameterError(f"dropout_fraction must be in [0, 1), got {dropout_fraction!r}")
    for name, value in (("security_bits", security_bits), ("correctness_bits", correctness_bits)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 256):
            raise ParameterError(f"{name} must be in [1, 256], got {value!r}")
    if corrupt_clients is not None and (isinstance(corrupt_clients, bool) or not isinstance(corrupt_clients, int)
                                        or not 0 <= corrupt_clients < n):
        raise ParameterError(f"corrupt_clients must be an int in 0..{n - 1} or None, got {corrupt_clients!r}")
    args = (dropout_fraction, security_bits, correctness_bits)

    def ok(c: int) -> bool:
        privacy, liveness, *_ = _evaluate_at(n, t, k, malicious, c, *args)
        return privacy is None and liveness is None

    checked = 0 if corrupt_clients is None else corrupt_clients
    privacy, liveness, bound, privacy_failure, correctness_failure = _evaluate_at(n, t, k, malicious, checked, *args)
    if privacy is not None or liveness is not None:
        raise ParameterError(privacy or liveness)
    low, high = checked, n - 1  # largest c that passes: both bounds only get worse with c
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if ok(mid) else (low, mid - 1)
    tolerated = low
    if corrupt_clients is None:
        checked = tolerated
        _, _, bound, privacy_failure, correctness_failure = _evaluate_at(n, t, k, malicious, checked, *args)
    if k is None:
        min_honest = max(0, t + 1 - checked)
    else:
        min_honest = max(1, t - _max_corrupt_holders(n, k, checked, security_bits) + 1)
    return ThreatModel(malicious, n - 1 if k is None else k, t, checked, tolerated, float(dropout_fraction),
                       privacy_failure, correctness_failure, min_honest, bound)
