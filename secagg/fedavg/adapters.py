"""Model adapters for scikit-learn linear classifiers and PyTorch modules.

Both implement :class:`secagg.fedavg.models.ModelAdapter`, so :class:`secagg.fedavg.FedAvg` can
train them. scikit-learn and PyTorch are optional (``pip install 'secagg[sklearn]'`` /
``'secagg[torch]'``) and imported only when an adapter is built.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from secagg.errors import ParameterError
from secagg.fedavg.metrics import accuracy, binary_metrics, log_loss
from secagg.fedavg.models import check_dataset, check_weights

__all__ = ["SklearnLinearAdapter", "TorchModuleAdapter"]


def _require(module: str, adapter: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"{adapter} needs {'scikit-learn' if module == 'sklearn' else module}: "
                          f"pip install 'secagg[{extra}]'") from None


def _metrics(y: np.ndarray, probabilities: np.ndarray, n_classes: int) -> dict[str, float]:
    if n_classes == 2:
        return binary_metrics(y, probabilities)
    return {"loss": log_loss(y, probabilities), "accuracy": accuracy(y, probabilities.argmax(axis=1))}


class SklearnLinearAdapter:
    """A scikit-learn ``SGDClassifier`` or ``LogisticRegression`` as a FedAvg model (labels 0..n_classes-1).

    Weights are ``[coef_ (outputs x n_features), intercept_ (outputs,)]`` with outputs = 1 for two
    classes; they start at zero and exist before any training. Training continues from the current
    weights:

    * ``SGDClassifier``: ``partial_fit`` on each shuffled mini-batch of ``batch_size`` for
      ``epochs`` passes, with a constant step ``eta0 = learning_rate`` (sample-wise SGD inside a batch).
    * ``LogisticRegression``: ``warm_start`` with ``max_iter = epochs`` solver iterations over the
      whole local set (``batch_size`` and ``learning_rate`` do not apply). A local set with a single
      class cannot be fitted by its solvers: the weights are then left unchanged.

    FedProx (``proximal_mu > 0``) cannot be expressed through these estimators and is refused.
    Probabilities for ``evaluate`` come from the weights (sigmoid / softmax of ``X @ coef_.T + intercept_``).
    """

    def __init__(self, estimator, n_features: int, n_classes: int = 2) -> None:
        _require("sklearn", "SklearnLinearAdapter", "sklearn")
        from sklearn.linear_model import LogisticRegression as SkLogistic
        from sklearn.linear_model import SGDClassifier

        if not isinstance(estimator, (SGDClassifier, SkLogistic)):
            raise ParameterError(f"estimator must be an SGDClassifier or LogisticRegression, got {type(estimator).__name__}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
            raise ParameterError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise ParameterError(f"n_features must be a positive integer, got {n_features!r}")
        self.estimator = estimator
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.classes = np.arange(self.n_classes)
        outputs = 1 if self.n_classes == 2 else self.n_classes
        self._weights = [np.zeros((outputs, self.n_features)), np.zeros(outputs)]

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self._weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._weights = check_weights(weights, self._weights)


    def train(self, X, y, *, epochs: int, batch_size: int, learning_rate: float, proximal_mu: float = 0.0,
              rng: np.random.Generator | None = None) -> None:
        from sklearn.linear_model import SGDClassifier

        if proximal_mu > 0:
            raise ParameterError("proximal_mu > 0 (FedProx) is not supported by scikit-learn estimators; "
                                 "use a NumPy or PyTorch model")
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="training data")
        if epochs < 1 or batch_size < 1 or not learning_rate > 0:
            raise ParameterError("epochs and batch_size must be >= 1 and learning_rate > 0")
        rng = rng if rng is not None else np.random.default_rng()
        est = self.estimator
        est.coef_, est.intercept_ = self._weights[0].copy(), self._weights[1].copy()
        if isinstance(est, SGDClassifier):
            est.set_params(learning_rate="constant", eta0=learning_rate,
                           random_state=int(rng.integers(2**31)))
            for _ in range(epochs):
                order = rng.permutation(X.shape[0])
                for start in range(0, X.shape[0], batch_size):
                    batch = order[start:start + batch_size]
                    est.partial_fit(X[batch], y[batch], classes=self.classes)
        else:
            if np.unique(y).size < 2:
                return  # a solver cannot fit one class: keep the weights
            est.set_params(warm_start=True, max_iter=epochs)
            import warnings

            from sklearn.exceptions import ConvergenceWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # few iterations per round, by design
                est.fit(X, y)
        coef, intercept = np.asarray(est.coef_, dtype=np.float64), np.asarray(est.intercept_, dtype=np.float64)
        if coef.shape != self._weights[0].shape:  # e.g. a multiclass set whose local data lacks classes
            raise ParameterError(f"estimator produced coef_ of shape {coef.shape}, expected {self._weights[0].shape}")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise ParameterError("training diverged (NaN or infinite weights): lower learning_rate")
        self._weights = [coef.copy(), intercept.reshape(-1).copy()]

    def predict_proba(self, X) -> np.ndarray:
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features, name="X")
        z = X @ self._weights[0].T + self._weights[1]
        if self.n_classes == 2:
            return 0.5 * (1.0 + np.tanh(0.5 * z[:, 0]))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def evaluate(self, X, y) -> dict[str, float]:
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="evaluation data")
        return _metrics(y, self.predict_proba(X), self.n_classes)

    def copy(self) -> SklearnLinearAdapter:
        from sklearn.base import clone

        other = SklearnLinearAdapter(clone(self.estimator), self.n_features, self.n_classes)
        other.set_weights(self.get_weights())
        return other


class TorchModuleAdapter:
    """A ``torch.nn.Module`` classifier as a FedAvg model.

    Weights are the module's ``parameters()`` in order, then its floating-point buffers (e.g.
    batch-norm running statistics), as float64 NumPy arrays. ``loss="bce"`` expects one output logit
    (binary); ``"cross_entropy"`` one logit per class; ``"auto"`` picks by the output size on the
    first batch (1 -> BCE). Training is mini-batch SGD with ``learning_rate``, plus the FedProx term
    ``mu/2 ||w - w_start||^2`` on the parameters when ``proximal_mu > 0``.
    """

    def __init__(self, module, *, loss: str = "auto", n_features: int | None = None, device: str = "cpu") -> None:
        torch = _require("torch", "TorchModuleAdapter", "torch")
        if not isinstance(module, torch.nn.Module):
            raise ParameterError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if loss not in ("auto", "bce", "cross_entropy"):
            raise ParameterError(f"loss must be 'auto', 'bce' or 'cross_entropy', got {loss!r}")
        self._torch = torch
        self.module = module.to(device)
        self.loss = loss
        self.device = device
        self.n_features = n_features
        self._tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
        if not self._tensors:
            raise ParameterError("the module has no parameters")

    @property
    def n_classes(self) -> int | None:
        """Classes implied by the loss (None until known for ``loss="auto"``)."""
        return 2 if self.loss == "bce" else getattr(self, "_classes", None)

    def get_weights(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy().astype(np.float64).copy() for t in self._tensors]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        checked = check_weights(weights, self.get_weights())
        with self._torch.no_grad():
            for tensor, w in zip(self._tensors, checked):
                tensor.copy_(self._torch.as_tensor(w, dtype=tensor.dtype, device=tensor.device))

    def _logits(self, X: np.ndarray):
        torch = self._torch
        out = self.module(torch.as_tensor(X, dtype=torch.float32, device=self.device))
        if out.ndim == 1:
            out = out[:, None]
        if self.loss == "auto":
            self.loss = "bce" if out.shape[1] == 1 else "cross_entropy"
        if self.loss == "cross_entropy":
            self._classes = int(out.shape[1])
        return out

    def _loss(self, logits, y):
        functional = self._torch.nn.functional
        if self.loss == "bce":
            return functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
        return functional.cross_entropy(logits, y.long())

    def train(self, X, y, *, epochs: int, batch_size: int, learning_rate: float, proximal_mu: float = 0.0,
              rng: np.random.Generator | None = None) -> None:
        torch = self._torch
        X, y = check_dataset(X, y, self.n_features, name="training data")
        if epochs < 1 or batch_size < 1 or not learning_rate > 0 or proximal_mu < 0:
            raise ParameterError("epochs and batch_size must be >= 1, learning_rate > 0, proximal_mu >= 0")
        rng = rng if rng is not None else np.random.default_rng()
        parameters = list(self.module.parameters())
        anchor = [p.detach().clone() for p in parameters] if proximal_mu > 0 else None
        optimizer = torch.optim.SGD(parameters, lr=learning_rate)
        labels = torch.as_tensor(y, device=self.device)
        self.module.train()
        for _ in range(epochs):
            order = rng.permutation(X.shape[0])
            for start in range(0, X.shape[0], batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad()
                loss = self._loss(self._logits(X[batch]), labels[torch.as_tensor(batch, device=self.device)])
                if anchor is not None:
                    loss = loss + 0.5 * proximal_mu * sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchor))
                loss.backward()
                optimizer.step()
        if not all(np.all(np.isfinite(w)) for w in self.get_weights()):
            raise ParameterError("training diverged (NaN or infinite weights): lower learning_rate")

    def predict_proba(self, X) -> np.ndarray:
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features, name="X")
        self.module.eval()
        with self._torch.no_grad():
            logits = self._logits(X)
            if self.loss == "bce":
                return self._torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float64)
            return self._torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def evaluate(self, X, y) -> dict[str, float]:
        X, y = check_dataset(X, y, self.n_features, name="evaluation data")
        probabilities = self.predict_proba(X)
        n_classes = 2 if probabilities.ndim == 1 else probabilities.shape[1]
        if y.min() < 0 or y.max() >= n_classes:
            raise ParameterError(f"labels must be in 0..{n_classes - 1}")
        return _metrics(y, probabilities, n_classes)

    def copy(self) -> TorchModuleAdapter:
        other = TorchModuleAdapter(copy.deepcopy(self.module), loss=self.loss, n_features=self.n_features,
                                   device=self.device)
        if hasattr(self, "_classes"):
            other._classes = self._classes
        return other
