"""Federated preprocessing: feature standardisation and class counts from secure sums.

A consortium that trains one model must transform its features one way: a scaler fitted at each
bank would give every bank a different model input. :func:`federated_standard_scaler` computes the
mean and variance of every feature over *all* clients' records in one secure sum, while the
aggregator (masking by default) shows the coordinator only the totals, never a client's own.

**Encoding.** Every feature has a public range ``value_range = (low, high)`` (from a data
dictionary or the units' physical range; one pair for all features or one per feature). Each
client clips its values to the range (counting how many it clipped), maps them onto ``[-1, 1]``
around the range's midpoint, ``z = (clip(x) - mid) / half``, and hands the aggregator, weighted by
its record count ``n_k``, the sums ``sum z``, ``sum z^2`` and its clipped counts. The weights sum
to the record count ``N``. The coordinator computes ``mean = mid + half * m`` and
``var = half^2 * (s - m^2)`` from ``m = sum z / N`` and ``s = sum z^2 / N``. Centring on the
range's midpoint before squaring keeps the subtraction ``s - m^2`` between numbers of at most 1,
so a feature far from zero (amounts around 10^6, say) loses nothing to cancellation.

**Error bound.** The aggregator decodes each coordinate of the sum to within ``e`` (its
``AggregateResult.error_bound``: ``K / 2^f`` for ``K`` clients and ``f`` fractional bits; 0 for
``"plain"``). Float64 adds at most ``2 eps`` to ``m`` and ``4 eps`` to ``s`` (``eps = 2^-52``:
rounding ``z`` and ``z^2``, the clients' sums, correctly rounded with ``math.fsum``, and the
division). With ``dm = e / N + 2 eps`` and ``ds = e / N + 4 eps``, per feature,
``|mean_ - mu| <= half * dm + eps * (2 half + |mid|)`` (``mean_error_bound_``) and
``|var_ - var| <= half^2 * (ds + 2 dm + dm^2 + 4 eps)`` (``var_error_bound_``), ``mu`` and
``var`` being the exact mean and variance of the clipped values. With an aggregator given by
name, ``f`` is the most for which every client's integers and their sum stay below ``2^53``
(exact in float64), capped at 48: 40 bits for 5 clients of up to 1,000 records. Then, for 5
clients of 1,000 records on a range of half-width 1,000, the mean is within ``2e-12`` and the
variance within ``5e-9``: the bound grows with the range, so choose it close to the data's.
Features whose variance is within its error bound of zero are constant: their ``scale_`` is 1,
as in scikit-learn.

**What is revealed.** The outputs: ``N``, every feature's mean, variance and clipped count, in
the clear to the coordinator and the clients (no differential privacy is added).

:func:`federated_class_counts` counts each class over all clients the same way, and
:func:`balanced_class_weight` turns the counts into scikit-learn's "balanced" class weights.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg.aggregation import AggregateResult, Aggregator, make_aggregator
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, ParameterError
from secagg.fedavg.models import check_dataset

__all__ = ["FederatedStandardScaler", "balanced_class_weight", "federated_class_counts", "federated_standard_scaler"]

_MAX_FRACTIONAL_BITS = 48
_EPS = float(np.finfo(np.float64).eps)


class FederatedStandardScaler:
    """A standard scaler fitted by :func:`federated_standard_scaler`: ``(x - mean_) / scale_``.

    The attributes are scikit-learn's ``StandardScaler``'s (``mean_``, ``var_``, ``scale_``,
    ``n_samples_seen_``, ``n_features_in_``) and the same methods apply (``transform``,
    ``inverse_transform``), so it works as a fixed step of a scikit-learn ``Pipeline``
    (:class:`~secagg.fedavg.adapters.SklearnLinearAdapter`). ``fit`` is refused: refitting on one
    client's data would lose the consortium's statistics. :meth:`to_sklearn` gives a fitted
    ``sklearn.preprocessing.StandardScaler`` with the same numbers.

    Besides: ``value_range_`` (``(low, high)`` per feature), ``n_clipped_`` (values clipped per
    feature, over all clients), ``mean_error_bound_`` and ``var_error_bound_`` (see the module).
    """

    # set by federated_standard_scaler (absent until then, as scikit-learn's fitted attributes)
    mean_: np.ndarray
    var_: np.ndarray | None
    scale_: np.ndarray | None
    n_samples_seen_: int
    n_features_in_: int
    n_clipped_: np.ndarray
    value_range_: tuple[np.ndarray, np.ndarray]
    mean_error_bound_: np.ndarray
    var_error_bound_: np.ndarray | None

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = bool(with_mean)
        self.with_std = bool(with_std)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"with_mean": self.with_mean, "with_std": self.with_std}

    def set_params(self, **params: Any) -> FederatedStandardScaler:
        unknown = set(params) - {"with_mean", "with_std"}
        if unknown:
            raise ParameterError(f"unknown parameters {sorted(unknown)}")
        for name, value in params.items():
            setattr(self, name, bool(value))
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "mean_")

    def __sklearn_tags__(self):
        """scikit-learn's description of a transformer (scikit-learn 1.6 and later ask for it)."""
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=TransformerTags())

    def __repr__(self) -> str:
        state = f", n_samples_seen_={self.n_samples_seen_}" if hasattr(self, "mean_") else ", not fitted"
        return f"FederatedStandardScaler(with_mean={self.with_mean}, with_std={self.with_std}{state})"

    def fit(self, X: Any, y: Any = None) -> FederatedStandardScaler:
        """Refused: fit federatedly with :func:`federated_standard_scaler`."""
        raise ParameterError("a FederatedStandardScaler is fitted on every client's data at once with "
                             "secagg.fedavg.preprocessing.federated_standard_scaler; refitting it on one dataset "
                             "would lose the consortium's statistics")

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Refused, as :meth:`fit`."""
        return self.fit(X, y)  # type: ignore[return-value]  # raises

    def _check(self, X: Any) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise ParameterError("this scaler is not fitted: build it with federated_standard_scaler")
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features_in_, name="X")
        return X

    def transform(self, X: Any, copy: bool | None = None) -> np.ndarray:
        """``(X - mean_) / scale_`` (without centring if ``with_mean=False``, without scaling if
        ``with_std=False``), as a new float64 array."""
        X = self._check(X)
        if self.with_mean:
            X = X - self.mean_
        if self.with_std and self.scale_ is not None:
            X = X / self.scale_
        return X

    def inverse_transform(self, X: Any, copy: bool | None = None) -> np.ndarray:
        """The inverse of :meth:`transform`."""
        X = self._check(X)
        if self.with_std and self.scale_ is not None:
            X = X * self.scale_
        if self.with_mean:
            X = X + self.mean_
        return X

    def to_sklearn(self):
        """A fitted ``sklearn.preprocessing.StandardScaler`` with these statistics (needs scikit-learn)."""
        try:
            from sklearn.preprocessing import StandardScaler
        except ImportError:
            raise ImportError("to_sklearn needs scikit-learn: pip install 'secagg[sklearn]'") from None
        if not hasattr(self, "mean_"):
            raise ParameterError("this scaler is not fitted: build it with federated_standard_scaler")
        scaler = StandardScaler(with_mean=self.with_mean, with_std=self.with_std)
        scaler.mean_ = self.mean_.copy()
        scaler.var_ = None if self.var_ is None else self.var_.copy()
        scaler.scale_ = None if self.scale_ is None else self.scale_.copy()
        scaler.n_samples_seen_ = self.n_samples_seen_
        scaler.n_features_in_ = self.n_features_in_
        return scaler


def _features_of(clients: Sequence[Any], name: str) -> list[np.ndarray]:
    """Each client's feature matrix, from ``X`` or ``(X, y)``; all finite, same width, non-empty."""
    if isinstance(clients, (str, bytes)) or not hasattr(clients, "__len__") or len(clients) == 0:
        raise ParameterError(f"{name}: a non-empty sequence of clients' X (or (X, y) pairs) is needed")
    out: list[np.ndarray] = []
    for i, data in enumerate(clients):
        X = data[0] if isinstance(data, (tuple, list)) and len(data) == 2 else data
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), out[0].shape[1] if out else None,
                             name=f"clients[{i}]")
        out.append(X)
    return out


def _aggregator(aggregator: str | Aggregator, options: dict | None, clients: int, max_weight: float,
                clip: float) -> Aggregator:
    """The aggregator, by name with the finest fixed point the ring holds for these sums."""
    options = dict(options or {})
    if isinstance(aggregator, str) and aggregator != "plain" and "fractional_bits" not in options:
        # every client's integers and their sum stay below 2^53: exact in float64, encoded and decoded
        bits = min(_MAX_FRACTIONAL_BITS, 53 - math.ceil(math.log2(clients * (max_weight * clip + 1))))
        while bits > 16 and FixedPointEncoder.required_bits(clients, max_weight, clip, bits) > 64:
            bits -= 1
        options["fractional_bits"] = max(bits, 16)
    built = make_aggregator(aggregator, **options)
    if built.name != "plain" and clients < 2:
        raise ParameterError(f"one client: a secure sum of one client's statistics is that client's statistics "
                             f"(aggregator {built.name!r} needs two or more)")
    return built


def _secure_sum(aggregator: Aggregator, contributions: list[np.ndarray], weights: list[float], *, max_weight: float,
                clip: float, seed: int | None, progress: bool) -> AggregateResult:
    """One round of ``aggregator`` over every client; AbortError if it cannot finish."""
    count = len(contributions)
    step = aggregator.setup_step(count)
    if step is None:
        aggregator.setup(count)
    else:
        from secagg.display import status

        with status(step, sys.stderr, enabled=progress):
            aggregator.setup(count)
    round_ = aggregator.open_round(list(range(count)), contributions[0].size, max_weight=max_weight, clip=clip,
                                   rng=np.random.default_rng(seed))
    for client, (vector, weight) in enumerate(zip(contributions, weights)):
        round_.submit(client, vector, weight)
    result = round_.finish()
    if not result.ok or result.weighted_sum is None:
        raise AbortError(f"the secure sum did not finish: {result.aborted}")
    return result


def _ranges(value_range: Any, features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` per feature from one pair or a pair of per-feature arrays."""
    try:
        low, high = value_range
        low = np.broadcast_to(np.asarray(low, dtype=np.float64), (features,)).copy()
        high = np.broadcast_to(np.asarray(high, dtype=np.float64), (features,)).copy()
    except (TypeError, ValueError):
        raise ParameterError(f"value_range must be (low, high): two numbers, or two arrays of one value per "
                             f"feature ({features})") from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or np.any(high <= low):
        raise ParameterError("value_range needs finite low < high for every feature")
    return low, high


def federated_standard_scaler(clients: Sequence[Any], *, value_range: Any, aggregator: str | Aggregator = "masking",
                              aggregator_options: dict | None = None, with_mean: bool = True, with_std: bool = True,
                              max_weight: float | None = None, seed: int | None = None,
                              progress: bool = True) -> FederatedStandardScaler:
    """A :class:`FederatedStandardScaler` fitted on every client's features through one secure sum.

    ``clients`` is one ``X`` (or ``(X, y)``) per client. ``value_range``: the public ``(low,
    high)`` of the features (two numbers, or two arrays of one value per feature); values outside
    are clipped and counted in ``n_clipped_`` (see the module for the error the range implies).
    ``aggregator``: a name (``"masking"``, ``"paillier"``, ``"plain"``) built with
    ``aggregator_options``, or an :class:`~secagg.aggregation.Aggregator`. ``max_weight``: the
    public cap on a client's record count that sizes the ring (default: the largest client's,
    known in this in-process run). ``seed`` makes the stochastic rounding reproducible;
    ``progress`` announces a long set-up (a Paillier key) on standard error. AbortError if the
    secure sum cannot finish.
    """
    data = _features_of(clients, "federated_standard_scaler")
    features = data[0].shape[1]
    low, high = _ranges(value_range, features)
    middle, half = (low + high) / 2.0, (high - low) / 2.0
    sizes = [float(X.shape[0]) for X in data]
    cap = float(max(sizes) if max_weight is None else max_weight)
    if not (math.isfinite(cap) and cap >= max(sizes)):
        raise ParameterError(f"max_weight {max_weight} is below the largest client's {max(sizes):.0f} records")
    built = _aggregator(aggregator, aggregator_options, len(data), cap, 1.0)
    contributions = []
    for X in data:
        z = np.clip((np.clip(X, low, high) - middle) / half, -1.0, 1.0)
        clipped = ((X < low) | (X > high)).sum(axis=0).astype(np.float64)
        sums = np.array([math.fsum(column) for column in z.T])  # correctly rounded: no error growing with n
        squares = np.array([math.fsum(column) for column in (z * z).T])
        contributions.append(np.concatenate([sums, squares, clipped]))
    result = _secure_sum(built, contributions, sizes, max_weight=cap, clip=1.0, seed=seed, progress=progress)
    total = float(result.total_weight)
    total_z, total_z2, clipped_count = np.split(np.asarray(result.weighted_sum, dtype=np.float64), 3)
    m = np.clip(total_z / total, -1.0, 1.0)
    s = np.clip(total_z2 / total, 0.0, 1.0)
    # per record: the decoding error, plus float64's in z, z^2 (eps, 3 eps), the clients' sums and the division
    dm = float(result.error_bound) / total + 2 * _EPS
    ds = float(result.error_bound) / total + 4 * _EPS
    scaler = FederatedStandardScaler(with_mean=with_mean, with_std=with_std)
    scaler.mean_ = middle + half * m
    scaler.n_samples_seen_ = int(round(total))
    scaler.n_features_in_ = features
    scaler.n_clipped_ = np.maximum(np.round(clipped_count), 0).astype(np.int64)
    scaler.value_range_ = (low, high)
    scaler.mean_error_bound_ = half * dm + _EPS * (2 * half + np.abs(middle))
    scaler.var_ = scaler.scale_ = scaler.var_error_bound_ = None
    if with_std:
        scaler.var_ = half**2 * np.maximum(s - m * m, 0.0)
        scaler.var_error_bound_ = half**2 * (ds + 2 * dm + dm * dm + 4 * _EPS)
        constant = scaler.var_ <= scaler.var_error_bound_
        scaler.scale_ = np.where(constant, 1.0, np.sqrt(scaler.var_))
    return scaler


def federated_class_counts(labels: Sequence[Any], n_classes: int, *, aggregator: str | Aggregator = "masking",
                           aggregator_options: dict | None = None, max_weight: float | None = None,
                           seed: int | None = None, progress: bool = True) -> np.ndarray:
    """How many records of each class ``0..n_classes-1`` all clients hold together, through one
    secure sum (the coordinator learns the totals only). ``labels`` is one label vector (or
    ``(X, y)`` pair) per client. The counts are exact: the fixed-point error is far below 1/2."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ParameterError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__") or len(labels) == 0:
        raise ParameterError("federated_class_counts: a non-empty sequence of clients' labels is needed")
    vectors = []
    for i, data in enumerate(labels):
        y = data[1] if isinstance(data, (tuple, list)) and len(data) == 2 else data
        _, y = check_dataset(np.zeros((len(y), 1)), y, n_classes=int(n_classes), name=f"labels[{i}]")
        vectors.append(np.bincount(y, minlength=int(n_classes)).astype(np.float64))
    sizes = [float(v.sum()) for v in vectors]
    cap = float(max(sizes) if max_weight is None else max_weight)
    if not (math.isfinite(cap) and cap >= max(sizes)):
        raise ParameterError(f"max_weight {max_weight} is below the largest client's {max(sizes):.0f} records")
    built = _aggregator(aggregator, aggregator_options, len(vectors), cap, 1.0)
    result = _secure_sum(built, vectors, sizes, max_weight=cap, clip=1.0, seed=seed, progress=progress)
    if result.error_bound >= 0.5:
        raise ParameterError(f"the aggregator's error bound {result.error_bound:g} is too coarse to count exactly: "
                             "raise its fractional_bits")
    return np.round(np.asarray(result.weighted_sum, dtype=np.float64)).astype(np.int64)


def balanced_class_weight(counts: Sequence[int] | np.ndarray) -> dict[int, float]:
    """scikit-learn's "balanced" class weights ``N / (n_classes * count_c)`` from class counts
    (e.g. :func:`federated_class_counts`), as the dict ``class_weight`` accepts."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size < 2 or counts.dtype.kind not in "iu" and not np.all(counts == np.round(counts)):
        raise ParameterError("counts must be one whole number per class (two or more classes)")
    if np.any(counts <= 0):
        raise ParameterError(f"every class needs at least one record for a balanced weight, got counts "
                             f"{counts.tolist()}")
    total = float(counts.sum())
    return {c: total / (counts.size * float(n)) for c, n in enumerate(counts)}
