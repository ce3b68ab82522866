"""Data for federated experiments: synthetic bank transactions, and partitioners for any (X, y).

Bank transactions (:func:`make_bank_transactions`)
---------------------------------------------------
A consortium of banks, each with its own customers and its own fraud, about 1% of transactions
fraudulent. Every transaction has 13 features, standardised with one transform common to all
banks (constants from a fixed reference population), so a model trained at one bank applies at
another:

==  =====================  ==========================================================
 0  ``log_amount``          log(1 + amount in EUR)
 1  ``hour_sin``            sin(2 pi hour / 24)
 2  ``hour_cos``            cos(2 pi hour / 24)
 3  ``merchant_risk``       risk score of the merchant category, 0..1
 4  ``log_distance``        log(1 + km from the customer's home)
 5  ``card_present``        1 for chip/contactless at a terminal
 6  ``online``              1 for card-not-present e-commerce
 7  ``international``       1 if merchant country differs from the card's
 8  ``log_tx_24h``          log(1 + the card's transactions in the last 24 h)
 9  ``log_account_age``     log(1 + account age in days)
10  ``log_minutes_since``   log(1 + minutes since the card's previous transaction)
11  ``amount_vs_typical``   log(amount / the customer's typical amount)
12  ``new_device``          1 if the device/terminal is new for this customer
==  =====================  ==========================================================

**Customer profiles** differ by bank (eight archetypes, cycled when there are more banks): urban
retail, rural savings, online neobank, premium travel, students, small business, regional
cooperative, cross-border commuters — different amounts, online and international shares,
account ages, activity and travel.

**Fraud patterns** (modus operandi), each a distribution over the features: *skimming* (cloned
card at a terminal, at night, far from home, large amounts), *card-not-present* (online,
international, new device, risky merchants), *account takeover* (bursts of transactions minutes
apart from a new device, amounts far above the customer's habit), *card testing* (tiny online
amounts in quick succession at risky merchants) and *new-account fraud* (accounts days old spending
large amounts). Each bank sees its own mix, dominated by one or two patterns, so a bank training
alone learns mostly its own fraud; pooled (or federated) training learns them all.

Partitioners
------------
:func:`partition_iid`, :func:`partition_dirichlet` (label skew) and :func:`partition_quantity`
(quantity skew) split any labelled data set into non-empty client shards, each sample used once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secagg.errors import ParameterError

__all__ = [
    "FEATURE_NAMES",
    "BankDataset",
    "make_bank_transactions",
    "partition_iid",
    "partition_dirichlet",
    "partition_quantity",
]

FEATURE_NAMES = ("log_amount", "hour_sin", "hour_cos", "merchant_risk", "log_distance", "card_present",
                 "online", "international", "log_tx_24h", "log_account_age", "log_minutes_since",
                 "amount_vs_typical", "new_device")

# name, log-amount mean, online share, international share, account age (log days) mean,
# daily activity (log tx/24h) mean, travel (log km) mean, night share
_PROFILES = [
    ("urban retail", 3.4, 0.35, 0.05, 7.0, 1.2, 1.5, 0.10),
    ("rural savings", 3.7, 0.15, 0.02, 7.8, 0.7, 2.4, 0.05),
    ("online neobank", 3.1, 0.70, 0.12, 5.6, 1.6, 1.2, 0.18),
    ("premium travel", 4.6, 0.40, 0.35, 7.5, 1.1, 3.5, 0.12),
    ("students", 2.8, 0.55, 0.06, 5.9, 1.7, 1.0, 0.25),
    ("small business", 4.9, 0.45, 0.15, 7.2, 1.4, 2.0, 0.04),
    ("regional cooperative", 3.5, 0.25, 0.03, 7.6, 0.9, 1.8, 0.06),
    ("cross-border commuters", 3.8, 0.30, 0.45, 6.8, 1.2, 3.0, 0.08),
]
_PATTERNS = ("skimming", "card_not_present", "account_takeover", "card_testing", "new_account")
# per profile: share of each fraud pattern (rows sum to 1), dominated by one or two patterns
_PATTERN_MIX = np.array([
    [0.70, 0.15, 0.05, 0.05, 0.05],
    [0.10, 0.05, 0.70, 0.05, 0.10],
    [0.05, 0.70, 0.05, 0.15, 0.05],
    [0.45, 0.40, 0.05, 0.05, 0.05],
    [0.05, 0.15, 0.05, 0.70, 0.05],
    [0.05, 0.10, 0.15, 0.05, 0.65],
    [0.10, 0.05, 0.40, 0.05, 0.40],
    [0.40, 0.10, 0.05, 0.40, 0.05],
])
_FRAUD_RATE_FACTORS = np.array([1.0, 0.6, 1.4, 1.2, 0.8, 1.1, 0.7, 1.3])


@dataclass(frozen=True)
class BankDataset:
    """One bank's transactions, split into train and test sets (both containing fraud)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @property
    def fraud_rate(self) -> float:
        return float(np.concatenate([self.y_train, self.y_test]).mean())


def _legitimate(profile: tuple, n: int, rng: np.random.Generator) -> np.ndarray:
    _, amount, online, international, age, activity, travel, night = profile
    X = np.empty((n, len(FEATURE_NAMES)))
    typical = rng.normal(amount, 0.5, n)
    log_amount = typical + rng.normal(0.0, 0.6, n)
    hours = np.where(rng.random(n) < night, rng.uniform(0, 6, n), rng.normal(14, 3.5, n) % 24)
    is_online = rng.random(n) < online
    X[:, 0] = log_amount
    X[:, 1], X[:, 2] = np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24)
    X[:, 3] = np.clip(rng.beta(2, 6, n) + 0.1 * is_online, 0, 1)
    X[:, 4] = np.clip(rng.normal(travel, 1.0, n), 0, None)
    X[:, 5] = (~is_online) & (rng.random(n) < 0.9)
    X[:, 6] = is_online
    X[:, 7] = rng.random(n) < international
    X[:, 8] = np.clip(rng.normal(activity, 0.5, n), 0, None)
    X[:, 9] = np.clip(rng.normal(age, 0.8, n), 0, None)
    X[:, 10] = np.clip(rng.normal(6.0 - activity, 1.2, n), 0, None)
    X[:, 11] = log_amount - typical
    X[:, 12] = rng.random(n) < 0.04 + 0.04 * is_online
    return X


def _fraud(profile: tuple, pattern: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Fraudulent transactions: the customer's profile, overridden where the pattern shows."""
    X = _legitimate(profile, n, rng)
    typical = X[:, 0] - X[:, 11]

    def set_hours(hours):
        X[:, 1], X[:, 2] = np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24)

    def set_channel(online_share):
        online = rng.random(n) < online_share
        X[:, 6] = online
        X[:, 5] = ~online

    if pattern == "skimming":
        set_channel(0.1)
        set_hours(rng.uniform(0, 5, n))
        X[:, 0] = typical + rng.normal(1.0, 0.6, n)
        X[:, 4] = np.clip(rng.normal(4.5, 1.2, n), 0, None)
        X[:, 3] = np.clip(rng.beta(4, 4, n), 0, 1)
    elif pattern == "card_not_present":
        set_channel(0.95)
        X[:, 7] = rng.random(n) < 0.65
        X[:, 12] = rng.random(n) < 0.6
        X[:, 3] = np.clip(rng.beta(6, 3, n), 0, 1)
        X[:, 0] = typical + rng.normal(0.7, 0.7, n)
    elif pattern == "account_takeover":
        X[:, 12] = rng.random(n) < 0.8
        X[:, 8] = np.clip(rng.normal(2.6, 0.5, n), 0, None)
        X[:, 10] = np.clip(rng.normal(1.8, 0.9, n), 0, None)
        X[:, 0] = typical + rng.normal(1.3, 0.6, n)
    elif pattern == "card_testing":
        set_channel(0.9)
        X[:, 0] = np.clip(rng.normal(0.8, 0.4, n), 0, None)
        X[:, 8] = np.clip(rng.normal(2.8, 0.5, n), 0, None)
        X[:, 10] = np.clip(rng.normal(1.2, 0.8, n), 0, None)
        X[:, 3] = np.clip(rng.beta(6, 3, n), 0, 1)
    elif pattern == "new_account":
        X[:, 9] = np.clip(rng.normal(2.0, 0.9, n), 0, None)
        X[:, 0] = typical + rng.normal(1.2, 0.6, n)
        X[:, 12] = rng.random(n) < 0.4
        set_channel(0.7)
    X[:, 11] = X[:, 0] - typical
    return X


@functools.cache
def _standardisation() -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of every feature over a fixed reference population (all profiles, no fraud)."""
    rng = np.random.default_rng(20_240_601)
    reference = np.vstack([_legitimate(p, 5_000, rng) for p in _PROFILES])
    return reference.mean(axis=0), reference.std(axis=0)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def make_bank_transactions(n_banks: int = 8, samples_per_bank: int | Sequence[int] = 6000, *,
                           fraud_rate: float = 0.01, test_fraction: float = 0.3, seed: int = 0) -> list[BankDataset]:
    """Synthetic card transactions for ``n_banks`` banks (see the module docstring).

    ``fraud_rate`` is the consortium-wide target; each bank's rate varies around it (0.6x..1.4x).
    Train and test splits are stratified, and each contains fraud.
    """
    n_banks = _check_int("n_banks", n_banks, 1)
    sizes = [samples_per_bank] * n_banks if isinstance(samples_per_bank, (int, np.integer)) else list(samples_per_bank)
    if len(sizes) != n_banks:
        raise ParameterError(f"samples_per_bank has {len(sizes)} entries for {n_banks} banks")
    sizes = [_check_int("samples_per_bank", s, 100) for s in sizes]
    if not 0 < fraud_rate <= 0.2:
        raise ParameterError(f"fraud_rate must be in (0, 0.2], got {fraud_rate}")
    if not 0.05 <= test_fraction <= 0.8:
        raise ParameterError(f"test_fraction must be in [0.05, 0.8], got {test_fraction}")
    rng = np.random.default_rng(seed)
    mean, scale = _standardisation()
    banks = []
    for b, size in enumerate(sizes):
        profile = _PROFILES[b % len(_PROFILES)]
        rate = fraud_rate * _FRAUD_RATE_FACTORS[b % len(_FRAUD_RATE_FACTORS)]
        frauds = max(8, int(round(rate * size)))
        counts = rng.multinomial(frauds, _PATTERN_MIX[b % len(_PATTERN_MIX)])
        fraud_rows = [_fraud(profile, pattern, c, rng) for pattern, c in zip(_PATTERNS, counts) if c]
        X = np.vstack([_legitimate(profile, size - frauds, rng), *fraud_rows])
        y = np.concatenate([np.zeros(size - frauds, dtype=np.int64), np.ones(frauds, dtype=np.int64)])
        X = (X - mean) / scale
        test = np.zeros(size, dtype=bool)
        for label in (0, 1):
            idx = rng.permutation(np.flatnonzero(y == label))
            test[idx[:max(1, int(round(test_fraction * idx.size)))]] = True
        train_order, test_order = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
        suffix = f" {b // len(_PROFILES) + 1}" if b >= len(_PROFILES) else ""
        banks.append(BankDataset(f"bank-{b} ({profile[0]}{suffix})", X[train_order], y[train_order],
                                 X[test_order], y[test_order]))
    return banks


# ------------------------------------------------------------------------------ partitioners

def _check_partition(X: object, y: object, n_clients: int, alpha: float = 1.0,
                     min_samples: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim < 1 or X.shape[0] == 0:
        raise ParameterError("X is empty")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ParameterError(f"X has {X.shape[0]} samples but y has shape {y.shape}")
    n_clients = _check_int("n_clients", n_clients, 1)
    if n_clients > X.shape[0]:
        raise ParameterError(f"n_clients={n_clients} exceeds the {X.shape[0]} samples")
    if not alpha > 0:
        raise ParameterError(f"alpha must be > 0, got {alpha}")
    min_samples = _check_int("min_samples", min_samples, 0)
    if min_samples * n_clients > X.shape[0]:
        raise ParameterError(f"min_samples={min_samples} for {n_clients} clients needs more than {X.shape[0]} samples")
    return X, y, max(1, min_samples)


def _shards(X: np.ndarray, y: np.ndarray, assignment: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[np.sort(idx)], y[np.sort(idx)]) for idx in assignment]


def _split_by_proportions(indices: np.ndarray, proportions: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = (np.cumsum(proportions)[:-1] * indices.size).astype(int)
    return np.split(rng.permutation(indices), cuts)


def _repair_min_samples(assignment: list[np.ndarray], min_samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Move samples from the largest shards to shards below ``min_samples``."""
    assignment = [a.copy() for a in assignment]
    for i in range(len(assignment)):
        while assignment[i].size < min_samples:
            donor = int(np.argmax([a.size for a in assignment]))
            take = int(rng.integers(assignment[donor].size))
            assignment[i] = np.append(assignment[i], assignment[donor][take])
            assignment[donor] = np.delete(assignment[donor], take)
    return assignment


def partition_iid(X, y, n_clients: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffle and split into ``n_clients`` shards of (almost) equal size."""
    X, y, _ = _check_partition(X, y, n_clients)
    rng = np.random.default_rng(seed)
    return _shards(X, y, np.array_split(rng.permutation(X.shape[0]), n_clients))


def partition_dirichlet(X, y, n_clients: int, *, alpha: float = 0.5, seed: int = 0,
                        min_samples: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label skew: each class is spread over clients with proportions ~ Dirichlet(alpha).

    Small ``alpha`` (e.g. 0.1) gives clients dominated by few classes; large alpha approaches IID.
    """
    X, y, min_samples = _check_partition(X, y, n_clients, alpha, min_samples)
    rng = np.random.default_rng(seed)
    assignment = [np.zeros(0, dtype=np.int64) for _ in range(n_clients)]
    for label in np.unique(y):
        parts = _split_by_proportions(np.flatnonzero(y == label), rng.dirichlet([alpha] * n_clients), rng)
        assignment = [np.concatenate([a, p]) for a, p in zip(assignment, parts)]
    return _shards(X, y, _repair_min_samples(assignment, min_samples, rng))


def partition_quantity(X, y, n_clients: int, *, alpha: float = 1.0, seed: int = 0,
                       min_samples: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Quantity skew: shard sizes ~ Dirichlet(alpha), labels IID within shards."""
    X, y, min_samples = _check_partition(X, y, n_clients, alpha, min_samples)
    rng = np.random.default_rng(seed)
    parts = _split_by_proportions(np.arange(X.shape[0]), rng.dirichlet([alpha] * n_clients), rng)
    return _shards(X, y, _repair_min_samples(parts, min_samples, rng))
