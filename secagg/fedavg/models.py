"""The model adapter protocol FedAvg trains through, and two NumPy models that implement it.

Any model works with :class:`secagg.fedavg.FedAvg` if it offers the five methods of
:class:`ModelAdapter`. Ready adapters: :class:`NumpyLogisticRegression` and :class:`NumpyMLP` here
(pure NumPy), scikit-learn linear models and PyTorch modules in :mod:`secagg.fedavg.adapters`.

``LogisticRegression`` and ``MLP``, the former names of the NumPy models (the first clashed with
scikit-learn's), still work for one release with a DeprecationWarning.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from secagg.errors import ParameterError, TrainingDiverged
from secagg.fedavg.metrics import accuracy, binary_metrics, log_loss

__all__ = ["ModelAdapter", "NumpyLogisticRegression", "NumpyMLP", "check_dataset", "check_weights"]


@runtime_checkable
class ModelAdapter(Protocol):
    """What FedAvg needs from a model.

    * ``get_weights()`` / ``set_weights(ws)``: the parameters as a list of float arrays, in a
      fixed order and fixed shapes (the order is the model's; FedAvg only adds them up).
    * ``train(X, y, *, epochs, batch_size, learning_rate, proximal_mu, rng)``: local training
      from the current weights. With ``proximal_mu > 0`` (FedProx, Li et al. 2020) the loss gains
      ``mu/2 * ||w - w_start||^2``, w_start being the weights when ``train`` was called.
    * ``evaluate(X, y)``: a dict of metrics (``loss`` and ``accuracy`` at least; binary models
      also ``roc_auc`` and ``average_precision``).
    * ``copy()``: an independent model with the same architecture and weights.

    Optional methods add features: ``predict_proba(X)`` and ``predict(X)``
    (:meth:`FedAvg.predict_proba <secagg.fedavg.FedAvg.predict_proba>`), ``per_example_gradients(X, y)``
    (record-level DP), ``weight_names()`` and ``describe()`` (what a saved model records,
    :mod:`secagg.fedavg.checkpoint`), ``client_data(obj)`` (a client's data in the model's own form,
    e.g. a torch ``DataLoader``, as ``(features, labels)``; ``features.shape[0]`` is its record count).
    """

    def get_weights(self) -> list[np.ndarray]: ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None: ...

    def train(self, X: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, learning_rate: float,
              proximal_mu: float, rng: np.random.Generator) -> None: ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]: ...

    def copy(self) -> ModelAdapter: ...


def check_dataset(X: object, y: object, n_features: int | None = None, n_classes: int | None = None,
                  name: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Validate a (X, y) pair: 2-D finite features, integer labels, matching lengths."""
    try:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name}: features must be numeric ({exc})") from None
    if X.ndim != 2:
        raise ParameterError(f"{name}: X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ParameterError(f"{name}: no samples")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ParameterError(f"{name}: y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ParameterError(f"{name}: X has {X.shape[1]} features, the model expects n_features={n_features}")
    if not np.all(np.isfinite(X)):
        raise ParameterError(f"{name}: X contains NaN or infinity")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ParameterError(f"{name}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
        raise ParameterError(f"{name}: labels must be in 0..{n_classes - 1}")
    return X, y


def check_weights(weights: Sequence[np.ndarray], expected: list[np.ndarray]) -> list[np.ndarray]:
    """Float64 copies of ``weights``, refused unless they match ``expected`` in count and shapes and are finite."""
    if len(weights) != len(expected):
        raise ParameterError(f"expected {len(expected)} weight arrays, got {len(weights)}")
    out = []
    for i, (w, e) in enumerate(zip(weights, expected)):
        w = np.asarray(w, dtype=np.float64)
        if w.shape != e.shape:
            raise ParameterError(f"weight {i} has shape {w.shape}, expected {e.shape}")
        if not np.all(np.isfinite(w)):
            raise ParameterError(f"weight {i} contains NaN or infinity")
        out.append(w.copy())
    return out


def _check_training(epochs: int, batch_size: int, learning_rate: float, proximal_mu: float) -> None:
    if epochs < 1:
        raise ParameterError(f"local_epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    if not learning_rate > 0:
        raise ParameterError(f"learning_rate must be > 0, got {learning_rate}")
    if proximal_mu < 0:
        raise ParameterError(f"proximal_mu must be >= 0, got {proximal_mu}")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


class _NumpyModel:
    """Shared mini-batch SGD loop; subclasses define the forward pass and the gradients."""

    n_features: int
    n_classes: int
    l2: float
    _weights: list[np.ndarray]

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self._weights]

    def copy(self):
        """An independent model of the same class, architecture and weights."""
        return copy.deepcopy(self)

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._weights = check_weights(weights, self._weights)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y=1) for binary models, an (n, classes) matrix otherwise."""
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features, name="X")
        return self._probabilities(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted class of every row (P(y=1) >= 0.5 for binary models)."""
        p = self.predict_proba(X)
        return (p >= 0.5).astype(np.int64) if p.ndim == 1 else p.argmax(axis=1).astype(np.int64)

    def weight_names(self) -> list[str]:
        """A name per weight array: ``W``/``b`` for one layer, ``W1``, ``b1``, ``W2``, ... for more."""
        layers = len(self._weights) // 2
        if layers == 1:
            return ["W", "b"]
        return [f"{kind}{i + 1}" for i in range(layers) for kind in ("W", "b")]

    def describe(self) -> dict:
        """What the weights mean beyond their names and shapes: features and classes."""
        return {"n_features": self.n_features, "n_classes": self.n_classes}

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="evaluation data")
        p = self._probabilities(X)
        if self.n_classes == 2:
            return binary_metrics(y, p)
        return {"loss": log_loss(y, p), "accuracy": accuracy(y, p.argmax(axis=1))}

    def train(self, X: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, learning_rate: float,
              proximal_mu: float = 0.0, rng: np.random.Generator | None = None) -> None:
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="training data")
        _check_training(epochs, batch_size, learning_rate, proximal_mu)
        rng = rng if rng is not None else np.random.default_rng()
        anchor = self.get_weights() if proximal_mu > 0 else None
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected and reported below
            self._sgd(X, y, epochs, batch_size, learning_rate, proximal_mu, anchor, rng)
        if not all(np.all(np.isfinite(w)) for w in self._weights):
            raise TrainingDiverged("training diverged (NaN or infinite weights): lower learning_rate")

    def _sgd(self, X, y, epochs, batch_size, learning_rate, proximal_mu, anchor, rng) -> None:
        for _ in range(epochs):
            order = rng.permutation(X.shape[0])
            for start in range(0, X.shape[0], batch_size):
                batch = order[start:start + batch_size]
                grads = self._gradients(X[batch], y[batch])
                for i, (w, g) in enumerate(zip(self._weights, grads)):
                    if self.l2 and w.ndim == 2:
                        g = g + self.l2 * w
                    if anchor is not None:
                        g = g + proximal_mu * (w - anchor[i])
                    w -= learning_rate * g

    def per_example_gradients(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The loss gradient of every example at the current weights, one flattened row each
        (``len(X)`` x number of weights; the ``l2`` penalty is included in every row).

        DP-SGD clips these rows one by one (:class:`secagg.dp.DPConfig` with ``level="record"``).
        """
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="training data")
        grads = self._example_gradients(X, y)
        for i, w in enumerate(self._weights):
            if self.l2 and w.ndim == 2:
                grads[i] = grads[i] + self.l2 * w
        return np.concatenate([g.reshape(X.shape[0], -1) for g in grads], axis=1)

    def _example_gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if self.n_classes == 2:
            return y.astype(np.float64)[:, None]
        return np.eye(self.n_classes)[y]

    def _probabilities(self, X: np.ndarray) -> np.ndarray:
        out = self._output(X)
        return out[:, 0] if self.n_classes == 2 else out

    def _output(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


def _check_shape_args(n_features: int, n_classes: int) -> None:
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < 1:
        raise ParameterError(f"n_features must be a positive integer, got {n_features!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ParameterError(f"n_classes must be an integer >= 2, got {n_classes!r}")


class NumpyLogisticRegression(_NumpyModel):
    """Logistic regression (sigmoid for 2 classes, softmax above) trained by mini-batch SGD.

    Weights: ``[W (n_features x outputs), b (outputs,)]`` with outputs = 1 for binary models.
    ``l2`` is a ridge penalty on W.
    """

    def __init__(self, n_features: int, n_classes: int = 2, *, l2: float = 0.0) -> None:
        _check_shape_args(n_features, n_classes)
        self.n_features, self.n_classes, self.l2 = int(n_features), int(n_classes), float(l2)
        outputs = 1 if n_classes == 2 else n_classes
        self._weights = [np.zeros((self.n_features, outputs)), np.zeros(outputs)]

    def _output(self, X: np.ndarray) -> np.ndarray:
        z = X @ self._weights[0] + self._weights[1]
        return _sigmoid(z) if self.n_classes == 2 else _softmax(z)

    def _gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        error = (self._output(X) - self._targets(y)) / X.shape[0]
        return [X.T @ error, error.sum(axis=0)]

    def _example_gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        error = self._output(X) - self._targets(y)
        return [X[:, :, None] * error[:, None, :], error]


class NumpyMLP(_NumpyModel):
    """A small multilayer perceptron: ReLU hidden layers, sigmoid/softmax output, mini-batch SGD.

    Weights: ``[W1, b1, W2, b2, ...]``; He-initialised from ``seed`` (so every client that builds
    the model from the same seed starts from the same point).
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (32,), n_classes: int = 2, *,
                 l2: float = 0.0, seed: int = 0) -> None:
        _check_shape_args(n_features, n_classes)
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ParameterError(f"hidden layer sizes must be positive, got {hidden}")
        self.n_features, self.n_classes, self.l2 = int(n_features), int(n_classes), float(l2)
        self.hidden, self.seed = hidden, seed
        rng = np.random.default_rng(seed)
        sizes = [self.n_features, *hidden, 1 if n_classes == 2 else n_classes]
        self._weights = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            self._weights.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)))
            self._weights.append(np.zeros(fan_out))

    def _forward(self, X: np.ndarray) -> list[np.ndarray]:
        activations = [X]
        layers = len(self._weights) // 2
        for i in range(layers):
            z = activations[-1] @ self._weights[2 * i] + self._weights[2 * i + 1]
            if i < layers - 1:
                activations.append(np.maximum(z, 0.0))
            else:
                activations.append(_sigmoid(z) if self.n_classes == 2 else _softmax(z))
        return activations

    def _output(self, X: np.ndarray) -> np.ndarray:
        return self._forward(X)[-1]

    def _gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        activations = self._forward(X)
        delta = (activations[-1] - self._targets(y)) / X.shape[0]
        grads: list[np.ndarray] = []
        for i in range(len(self._weights) // 2 - 1, -1, -1):
            grads = [activations[i].T @ delta, delta.sum(axis=0)] + grads
            if i:
                delta = (delta @ self._weights[2 * i].T) * (activations[i] > 0)
        return grads

    def _example_gradients(self, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        activations = self._forward(X)
        delta = activations[-1] - self._targets(y)
        grads: list[np.ndarray] = []
        for i in range(len(self._weights) // 2 - 1, -1, -1):
            grads = [activations[i][:, :, None] * delta[:, None, :], delta] + grads
            if i:
                delta = (delta @ self._weights[2 * i].T) * (activations[i] > 0)
        return grads



_RENAMED = {"LogisticRegression": NumpyLogisticRegression, "MLP": NumpyMLP}


def _deprecated_name(module: str, name: str, renamed: dict[str, type]) -> type:
    """The class now called ``renamed[name].__name__``, with a DeprecationWarning naming it."""
    cls = renamed[name]
    warnings.warn(f"{module}.{name} is now {cls.__name__} (the old name clashed with scikit-learn's); "
                  "the old name goes in the next release", DeprecationWarning, stacklevel=3)
    return cls


def __getattr__(name: str) -> type:
    if name in _RENAMED:
        return _deprecated_name(__name__, name, _RENAMED)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
