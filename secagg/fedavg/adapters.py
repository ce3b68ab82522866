"""Model adapters for scikit-learn linear classifiers and PyTorch modules.

Both implement :class:`secagg.fedavg.models.ModelAdapter`, so :class:`secagg.fedavg.FedAvg` can
train them. scikit-learn and PyTorch are optional (``pip install 'secagg[sklearn]'`` /
``'secagg[torch]'``) and imported only when an adapter is built.

The adapters follow one convention for probabilities: ``predict_proba(X)`` gives P(y=1) as a
vector for a binary model (whatever its output layer: one logit or two) and an
``(n, n_classes)`` matrix otherwise. :meth:`secagg.fedavg.FedAvg.predict_proba` turns both into
scikit-learn's ``(n, n_classes)`` shape.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from secagg.errors import ParameterError, TrainingDiverged
from secagg.fedavg.metrics import accuracy, average_precision, binary_metrics, log_loss, roc_auc
from secagg.fedavg.models import check_dataset, check_weights

__all__ = ["LoaderData", "SklearnLinearAdapter", "TorchModuleAdapter"]

log = logging.getLogger("secagg.fedavg")


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


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------- scikit-learn

_PROBABILISTIC_SGD_LOSSES = ("log_loss", "modified_huber")


def _fingerprint(step: Any) -> str:
    """SHA-256 of a fitted transform: its class, simple parameters and fitted numeric attributes.

    Saved with a model (:mod:`secagg.fedavg.checkpoint`) so weights trained on one scaling are
    never loaded behind another.
    """
    digest = hashlib.sha256(f"{type(step).__module__}.{type(step).__qualname__}".encode())
    params = step.get_params(deep=False) if hasattr(step, "get_params") else {}
    simple = {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}
    digest.update(json.dumps(simple, sort_keys=True).encode())
    for name in sorted(vars(step)):
        value = vars(step)[name]
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, (int, float, np.number, np.ndarray)) and not isinstance(value, bool):
            array = np.asarray(value)
            if array.dtype.kind in "iufb":
                digest.update(name.encode() + str(array.shape).encode() + np.ascontiguousarray(array, "<f8").tobytes())
    return digest.hexdigest()


class SklearnLinearAdapter:
    """A scikit-learn ``SGDClassifier`` or ``LogisticRegression`` as a FedAvg model (labels 0..n_classes-1),
    alone or as the final step of a ``Pipeline`` of fixed transforms.

    Weights are ``[coef_ (outputs x inputs), intercept_ (outputs,)]`` with outputs = 1 for two
    classes. They start at the classifier's own ``coef_``/``intercept_`` if it is already fitted
    with those shapes (a model trained before), else at zero. Every :meth:`set_weights` also
    writes them into the estimator (``coef_``, ``intercept_``, ``classes_``, ``n_features_in_``),
    so ``adapter.estimator`` is a fitted scikit-learn object: after ``FedAvg.fit`` it is the
    global model, ready for ``predict``, ``predict_proba`` or your own tooling.

    Training continues from the current weights:

    * ``SGDClassifier``: ``partial_fit`` on each shuffled mini-batch of ``batch_size`` for
      ``epochs`` passes, with a constant step ``eta0 = learning_rate`` (sample-wise SGD inside a batch).
    * ``LogisticRegression``: ``warm_start`` with ``max_iter = epochs`` solver iterations over the
      whole local set (``batch_size`` and ``learning_rate`` do not apply). A local set with a single
      class cannot be fitted by its solvers: the weights are then left unchanged.

    **Pipelines.** ``Pipeline([..., ("clf", SGDClassifier(...))])``: every step before the last
    must already be fitted, and is never refitted: FedAvg trains the classifier on the transformed
    features, so every client must transform with the same parameters. A transform fitted per
    client (each bank's own scaler) would give every bank a different model input. Fit them first:
    on the consortium's data with :func:`secagg.fedavg.preprocessing.federated_standard_scaler`,
    on public reference data, or use stateless transforms (``FunctionTransformer``). An unfitted
    step is refused with ParameterError. ``n_features`` counts the pipeline's *input* columns.

    **Class weights.** ``class_weight="balanced"`` is computed the way scikit-learn computes it,
    ``n_samples / (n_classes * bincount(y))``, from each client's *own* labels in each local
    training (``SGDClassifier.partial_fit`` refuses "balanced" itself; the adapter passes it the
    weights as a dict). Clients with different class balances then weigh the classes differently.
    For weights from the consortium's *global* class counts, as pooled training would compute
    them, count securely with :func:`secagg.fedavg.preprocessing.federated_class_counts` and pass
    ``class_weight=balanced_class_weight(counts)`` (a dict) to the estimator.

    **Probabilities.** ``predict_proba`` and ``evaluate`` use the estimator's own
    ``predict_proba`` (logistic for ``log_loss``, scikit-learn's formula for ``modified_huber``,
    one-vs-rest normalisation for a multiclass ``SGDClassifier``). A loss with no probabilities
    (``hinge``, the ``SGDClassifier`` default, ``perceptron``, ...) is announced with a logged
    warning: ``predict_proba`` raises ParameterError, and ``evaluate`` reports accuracy, ROC-AUC
    and average precision of its decision function, and no log loss.

    FedProx (``proximal_mu > 0``) cannot be expressed through these estimators and is refused.
    """

    def __init__(self, estimator, n_features: int, n_classes: int = 2) -> None:
        _require("sklearn", "SklearnLinearAdapter", "sklearn")
        from sklearn.linear_model import LogisticRegression as SkLogistic
        from sklearn.linear_model import SGDClassifier
        from sklearn.pipeline import Pipeline

        classifier = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        if not isinstance(classifier, (SGDClassifier, SkLogistic)):
            what = "the final step of the Pipeline" if isinstance(estimator, Pipeline) else "estimator"
            raise ParameterError(f"{what} must be an SGDClassifier or LogisticRegression, got "
                                 f"{type(classifier).__name__}")
        n_classes = _check_int("n_classes", n_classes, 2)
        n_features = _check_int("n_features", n_features, 1)
        self.estimator = estimator
        self.classifier = classifier
        self.n_features = n_features
        self.n_classes = n_classes
        self.classes = np.arange(self.n_classes)
        self._transforms = self._check_transforms(estimator) if isinstance(estimator, Pipeline) else []
        self.n_inputs = self._probe_inputs()
        outputs = 1 if self.n_classes == 2 else self.n_classes
        self._weights = [np.zeros((outputs, self.n_inputs)), np.zeros(outputs)]
        fitted = getattr(classifier, "coef_", None)
        if fitted is not None:
            intercept = np.asarray(getattr(classifier, "intercept_", np.zeros(outputs)), dtype=np.float64).reshape(-1)
            if np.shape(fitted) != self._weights[0].shape or intercept.shape != self._weights[1].shape:
                raise ParameterError(f"the estimator is already fitted with coef_ of shape {np.shape(fitted)}; "
                                     f"{n_classes} classes on {self.n_inputs} inputs need {self._weights[0].shape}")
            self._weights = check_weights([fitted, intercept], self._weights)
        self._sync_estimator()
        if not self.probabilistic:
            log.warning("%s(loss=%r) gives scores, not probabilities: predict_proba is unavailable and evaluate "
                        "reports accuracy, ROC-AUC and average precision of its decision function, without a "
                        "log loss. Use loss='log_loss' for a logistic model.", type(classifier).__name__,
                        classifier.loss)

    @staticmethod
    def _check_transforms(pipeline) -> list[tuple[str, Any]]:
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        transforms = []
        for name, step in pipeline.steps[:-1]:
            if step is None or step == "passthrough":
                continue
            if not hasattr(step, "transform"):
                raise ParameterError(f"pipeline step {name!r} ({type(step).__name__}) has no transform")
            try:
                check_is_fitted(step)
            except NotFittedError:
                raise ParameterError(
                    f"pipeline step {name!r} ({type(step).__name__}) is not fitted: FedAvg never fits a transform "
                    "per client (each client would transform differently); fit it first, e.g. with "
                    "secagg.fedavg.preprocessing.federated_standard_scaler, or on public reference data") from None
            transforms.append((name, step))
        return transforms

    def _probe_inputs(self) -> int:
        """How many columns the fixed transforms make of ``n_features`` (one zero row through them)."""
        if not self._transforms:
            return self.n_features
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                width = np.asarray(self._transform_raw(np.zeros((1, self.n_features)))).shape
        except Exception as exc:  # a transform rejecting the probe: say which input it wanted
            raise ParameterError(f"the pipeline's transforms do not accept {self.n_features} features: "
                                 f"{type(exc).__name__}: {exc}") from None
        if len(width) != 2:
            raise ParameterError(f"the pipeline's transforms give arrays of shape {width}, not rows of features")
        return int(width[1])

    def _transform_raw(self, X: np.ndarray):
        for _, step in self._transforms:
            X = step.transform(X)
        return X

    def _transform(self, X: np.ndarray) -> np.ndarray:
        """``X`` (already checked) through the fixed transforms, as finite float64 rows."""
        if not self._transforms:
            return X
        out = self._transform_raw(X)
        out = np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)
        if out.shape != (X.shape[0], self.n_inputs) or not np.all(np.isfinite(out)):
            raise ParameterError(f"the pipeline's transforms gave {out.shape} with NaN or infinity, or not "
                                 f"{self.n_inputs} finite columns")
        return out

    @property
    def probabilistic(self) -> bool:
        """Whether the classifier gives probabilities (``predict_proba``)."""
        from sklearn.linear_model import SGDClassifier

        return not isinstance(self.classifier, SGDClassifier) or self.classifier.loss in _PROBABILISTIC_SGD_LOSSES

    def _sync_estimator(self) -> None:
        """Write the current weights into the classifier, so the estimator is fitted with them."""
        clf = self.classifier
        clf.coef_, clf.intercept_ = self._weights[0].copy(), self._weights[1].copy()
        clf.classes_ = self.classes.copy()
        clf.n_features_in_ = self.n_inputs

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self._weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._weights = check_weights(weights, self._weights)
        self._sync_estimator()

    def weight_names(self) -> list[str]:
        return ["coef_", "intercept_"]

    def describe(self) -> dict:
        """What the weights mean: the classifier, its classes and inputs, and each fixed transform."""
        return {"estimator": type(self.classifier).__name__, "loss": getattr(self.classifier, "loss", "log_loss"),
                "n_features": self.n_features,
                "n_classes": self.n_classes, "n_inputs": self.n_inputs,
                "transforms": [[name, type(step).__name__, _fingerprint(step)] for name, step in self._transforms]}

    def _class_weight_for(self, y: np.ndarray):
        """A "balanced" class weight as scikit-learn computes it, from these labels (a dict)."""
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        return {int(c): float(w) for c, w in zip(present, weights)}

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
        X = self._transform(X)
        est = self.classifier
        self._sync_estimator()
        if isinstance(est, SGDClassifier):
            balanced = isinstance(est.class_weight, str) and est.class_weight == "balanced"
            est.set_params(learning_rate="constant", eta0=learning_rate, random_state=int(rng.integers(2**31)))
            if balanced:  # partial_fit refuses "balanced": hand it the same weights, computed on these labels
                est.set_params(class_weight=self._class_weight_for(y))
            try:
                for _ in range(epochs):
                    order = rng.permutation(X.shape[0])
                    for start in range(0, X.shape[0], batch_size):
                        batch = order[start:start + batch_size]
                        est.partial_fit(X[batch], y[batch], classes=self.classes)
            finally:
                if balanced:
                    est.set_params(class_weight="balanced")
        else:
            if np.unique(y).size < 2:
                return  # a solver cannot fit one class: keep the weights
            est.set_params(warm_start=True, max_iter=epochs)
            from sklearn.exceptions import ConvergenceWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # few iterations per round, by design
                est.fit(X, y)
        coef, intercept = np.asarray(est.coef_, dtype=np.float64), np.asarray(est.intercept_, dtype=np.float64)
        if coef.shape != self._weights[0].shape:  # e.g. a multiclass set whose local data lacks classes
            raise ParameterError(f"estimator produced coef_ of shape {coef.shape}, expected {self._weights[0].shape}")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise TrainingDiverged("training diverged (NaN or infinite weights): lower learning_rate")
        self._weights = [coef.copy(), intercept.reshape(-1).copy()]
        self._sync_estimator()

    def _inputs(self, X) -> np.ndarray:
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features, name="X")
        return self._transform(X)

    def predict_proba(self, X) -> np.ndarray:
        """P(y=1) for two classes, else an (n, n_classes) matrix: the estimator's own ``predict_proba``."""
        if not self.probabilistic:
            raise ParameterError(f"{type(self.classifier).__name__}(loss={self.classifier.loss!r}) gives no "
                                 "probabilities: use predict, or loss='log_loss'")
        self._sync_estimator()
        probabilities = np.asarray(self.classifier.predict_proba(self._inputs(X)), dtype=np.float64)
        return probabilities[:, 1] if self.n_classes == 2 else probabilities

    def predict(self, X) -> np.ndarray:
        """The predicted class of every row."""
        self._sync_estimator()
        return np.asarray(self.classifier.predict(self._inputs(X)), dtype=np.int64)

    def evaluate(self, X, y) -> dict[str, float]:
        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="evaluation data")
        if self.probabilistic:
            return _metrics(y, self.predict_proba(X), self.n_classes)
        self._sync_estimator()
        inputs = self._transform(X)
        metrics = {"accuracy": accuracy(y, self.classifier.predict(inputs))}
        if self.n_classes == 2:
            scores = self.classifier.decision_function(inputs)
            metrics |= {"roc_auc": roc_auc(y, scores), "average_precision": average_precision(y, scores)}
        return metrics

    def copy(self) -> SklearnLinearAdapter:
        """An independent adapter: the classifier cloned, the fixed transforms copied as fitted."""
        from sklearn.base import clone
        from sklearn.pipeline import Pipeline

        other = object.__new__(SklearnLinearAdapter)  # no second warning about the loss
        other.__dict__.update(self.__dict__)
        if isinstance(self.estimator, Pipeline):
            other.estimator = copy.deepcopy(self.estimator)
            name, classifier = other.estimator.steps[-1]
            other.estimator.steps[-1] = (name, clone(classifier))
            other._transforms = [(n, step) for n, step in other.estimator.steps[:-1]
                                 if step is not None and step != "passthrough"]
        else:
            other.estimator = clone(self.estimator)
        other.classifier = other.estimator.steps[-1][1] if isinstance(other.estimator, Pipeline) else other.estimator
        other.classes = self.classes.copy()
        other._weights = self.get_weights()
        other._sync_estimator()
        return other


# ---------------------------------------------------------------------------------- PyTorch

_LOSS_NAMES = ("auto", "bce", "cross_entropy")


class LoaderData:
    """One client's ``torch.utils.data.DataLoader`` as FedAvg client data (built by
    :meth:`TorchModuleAdapter.client_data`; pass the loader itself to ``FedAvg.fit``).

    Local training iterates the loader: its batch size, sampler and collation are the client's
    own. ``shape`` is ``(records, features)`` (the client's weight is its record count), ``labels``
    every record's label, and indexing with an array of record numbers gives those records'
    features as NumPy rows (record-level DP samples records by number).
    """

    def __init__(self, loader, features: int, labels: np.ndarray) -> None:
        self.loader = loader
        self.labels = labels
        self.shape = (int(labels.shape[0]), int(features))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        dataset = self.loader.dataset
        rows = np.arange(self.shape[0])[index]
        tensors = getattr(dataset, "tensors", None)
        if tensors is not None:
            import torch

            return tensors[0][torch.as_tensor(np.atleast_1d(rows))].detach().cpu().numpy().astype(np.float64)
        return np.stack([np.asarray(dataset[int(i)][0], dtype=np.float64) for i in np.atleast_1d(rows)])


class TorchModuleAdapter:
    """A ``torch.nn.Module`` classifier as a FedAvg model.

    Weights are the module's ``parameters()`` in order, then its floating-point buffers (e.g.
    batch-norm running statistics), as float64 NumPy arrays.

    **Outputs.** The module returns logits: one per example (a binary model, sigmoid) or one per
    class (softmax); a binary model with two output logits is a two-class softmax model.
    Probabilities follow the adapters' convention: P(y=1) for binary models, with one logit or two.

    **Loss.** ``loss`` is ``"auto"`` (BCE with logits for one output, cross-entropy for more),
    ``"bce"``, ``"cross_entropy"``, or any callable ``loss(logits, targets)``: a ``torch.nn``
    loss module such as ``BCEWithLogitsLoss(pos_weight=torch.tensor([99.0]))`` for a rare fraud
    class, ``CrossEntropyLoss(weight=...)``, or your own function. With one output the loss gets
    the logits as a vector and float targets in {0, 1}; with more, an ``(n, classes)`` matrix and
    integer class targets.

    **Optimizer.** ``optimizer`` is a factory called as ``optimizer(parameters, lr=learning_rate)``
    at the start of every local training: ``torch.optim.Adam``,
    ``functools.partial(torch.optim.AdamW, weight_decay=1e-4)``, ... (default: plain SGD). Its
    state (momentum, Adam's moments) is local to one round and never aggregated.

    **Data.** A client's data is ``(X, y)`` arrays (shuffled mini-batches of FedAvg's
    ``batch_size``) or a ``torch.utils.data.DataLoader`` over a map-style dataset of
    ``(features, label)`` records, whose own batching and sampling are then used (see
    :meth:`client_data`). Shuffling and dropout are seeded from FedAvg's ``seed``.

    **Record-level DP.** :meth:`per_example_gradients` computes each record's gradient with
    ``torch.func`` (``vmap`` over ``grad``), so ``FedAvg(dp=DPConfig(level="record", ...))``
    trains torch models with DP-SGD. Batch normalisation mixes the records of a batch, so a
    module with batch-norm layers is refused there (use GroupNorm or LayerNorm).

    FedProx adds ``mu/2 ||w - w_start||^2`` on the parameters when ``proximal_mu > 0``.
    """

    def __init__(self, module, *, loss: str | Callable = "auto", optimizer: Callable | None = None,
                 n_features: int | None = None, device: str = "cpu") -> None:
        torch = _require("torch", "TorchModuleAdapter", "torch")
        if not isinstance(module, torch.nn.Module):
            raise ParameterError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(loss, str):
            if loss not in _LOSS_NAMES:
                raise ParameterError(f"loss must be 'auto', 'bce', 'cross_entropy' or a callable, got {loss!r}")
        elif not callable(loss):
            raise ParameterError(f"loss must be 'auto', 'bce', 'cross_entropy' or a callable, got "
                                 f"{type(loss).__name__}")
        if optimizer is not None and not callable(optimizer):
            raise ParameterError("optimizer must be a factory called as optimizer(parameters, lr=...), e.g. "
                                 f"torch.optim.Adam; got {type(optimizer).__name__}")
        if n_features is not None:
            n_features = _check_int("n_features", n_features, 1)
        self._torch = torch
        self.module = module.to(device)
        dtype = next(iter(module.parameters()), torch.zeros(())).dtype
        # a class weight built from NumPy numbers is float64: the loss computes in the module's dtype
        self.loss = loss.to(device=device, dtype=dtype) if isinstance(loss, torch.nn.Module) else loss
        self.optimizer = optimizer
        self.device = device
        self.n_features = n_features
        self._outputs: int | None = None
        self._tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
        if not self._tensors:
            raise ParameterError("the module has no parameters")
        self._warn_if_probabilities()
        if n_features is not None:
            self._probe(n_features)

    # ------------------------------------------------------------------ shapes and losses
    def _warn_if_probabilities(self) -> None:
        last = self.module
        while isinstance(last, self._torch.nn.Sequential) and len(last):
            last = last[-1]
        activations = (self._torch.nn.Sigmoid, self._torch.nn.Softmax, self._torch.nn.LogSoftmax)
        if isinstance(last, activations):
            log.warning("the module ends in %s, but TorchModuleAdapter treats its outputs as logits (it applies "
                        "the sigmoid or softmax itself, and 'bce'/'cross_entropy' expect logits): remove the "
                        "final %s", type(last).__name__, type(last).__name__)

    def _probe(self, n_features: int) -> None:
        """Learn the output width from one zero row (eval mode, no gradient, the module's state kept)."""
        training = self.module.training
        self.module.eval()
        try:
            with self._torch.no_grad():
                self._logits(self._torch.zeros((1, n_features), device=self.device))
        except ParameterError:
            raise
        except Exception as exc:
            raise ParameterError(f"the module does not take {n_features} features: {type(exc).__name__}: {exc}") \
                from None
        finally:
            self.module.train(training)

    @property
    def n_classes(self) -> int | None:
        """Classes of the model (2 for one output logit), None until the output width is known."""
        if self._outputs is None:
            return 2 if self.loss == "bce" else None
        return max(2, self._outputs)

    def _logits(self, X):
        """The module's outputs as an (n, outputs) tensor; checks the width against the loss."""
        torch = self._torch
        if not isinstance(X, torch.Tensor):
            X = torch.as_tensor(X, dtype=torch.float32, device=self.device)
        try:
            out = self.module(X)
        except RuntimeError as exc:  # e.g. a feature count the first layer does not take
            raise ParameterError(f"the module failed on a batch of shape {tuple(X.shape)}: {exc}") from None
        if out.ndim == 1:
            out = out[:, None]
        if out.ndim != 2:
            raise ParameterError(f"the module returns outputs of shape {tuple(out.shape)}: one row of logits "
                                 "per example is expected")
        width = int(out.shape[1])
        if self._outputs is None:
            if self.loss == "bce" and width != 1:
                raise ParameterError(f"loss='bce' needs one output logit, the module gives {width}: use "
                                     "loss='cross_entropy' or a CrossEntropyLoss")
            if self.loss == "cross_entropy" and width < 2:
                raise ParameterError("loss='cross_entropy' needs one logit per class, the module gives 1: use "
                                     "loss='bce' or a BCEWithLogitsLoss")
            self._outputs = width
        elif width != self._outputs:
            raise ParameterError(f"the module gave {width} outputs, earlier {self._outputs}")
        return out

    def _targets(self, y):
        torch = self._torch
        y = torch.as_tensor(y, device=self.device)
        return y.float() if self._outputs == 1 else y.long()

    def _loss(self, logits, targets, reduction: str = "mean"):
        """The training loss of a batch; ``reduction="sum"`` gives one record's own loss for DP-SGD
        (a weighted mean over one record would divide its class weight away)."""
        functional = self._torch.nn.functional
        binary = self._outputs == 1
        scores = logits[:, 0] if binary else logits
        if self.loss in ("auto", "bce", "cross_entropy"):
            if binary:
                return functional.binary_cross_entropy_with_logits(scores, targets, reduction=reduction)
            return functional.cross_entropy(scores, targets, reduction=reduction)
        loss: Any = self.loss
        if reduction != "mean" and isinstance(getattr(loss, "reduction", None), str):
            loss = copy.copy(loss)
            loss.reduction = reduction
        return loss(scores, targets)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy().astype(np.float64).copy() for t in self._tensors]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        checked = check_weights(weights, self.get_weights())
        with self._torch.no_grad():
            for tensor, w in zip(self._tensors, checked):
                tensor.copy_(self._torch.as_tensor(w, dtype=tensor.dtype, device=tensor.device))

    def weight_names(self) -> list[str]:
        names = [name for name, _ in self.module.named_parameters()]
        return names + [name for name, b in self.module.named_buffers() if b.is_floating_point()]

    def describe(self) -> dict:
        """What the weights mean: the module's class (the weight names and shapes say the rest)."""
        return {"module": type(self.module).__name__}

    # ------------------------------------------------------------------ data
    def client_data(self, loader) -> tuple[LoaderData, np.ndarray]:
        """A ``DataLoader`` as ``(features, labels)`` FedAvg can hand to :meth:`train`.

        The dataset must be map-style (``len`` and indexing: a client's weight is its record
        count, and record-level DP samples records by number) and yield ``(features, label)``
        pairs with 1-D features and integer labels. ParameterError otherwise.
        """
        torch = self._torch
        if not isinstance(loader, torch.utils.data.DataLoader):
            raise ParameterError(f"a client's data must be an (X, y) pair or a torch DataLoader, got "
                                 f"{type(loader).__name__}")
        dataset = loader.dataset
        if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            raise ParameterError("the DataLoader's dataset must be map-style (len and indexing): a client's "
                                 "weight is its record count")
        if len(dataset) == 0:
            raise ParameterError("the DataLoader's dataset is empty")
        first = dataset[0]
        if not isinstance(first, (tuple, list)) or len(first) != 2:
            raise ParameterError("the DataLoader's dataset must yield (features, label) pairs")
        features = np.asarray(first[0])
        if features.ndim != 1:
            raise ParameterError(f"records must have 1-D features, got shape {features.shape}")
        tensors = getattr(dataset, "tensors", None)
        if tensors is not None and len(tensors) == 2:
            labels = tensors[1].detach().cpu().numpy()
        else:
            labels = np.asarray([np.asarray(dataset[i][1]).item() for i in range(len(dataset))])
        if self.n_features is not None and features.shape[0] != self.n_features:
            raise ParameterError(f"records have {features.shape[0]} features, the model expects "
                                 f"n_features={self.n_features}")
        if self.n_features is None:
            self._probe(features.shape[0])  # a width the module does not take is named now
        _, labels = check_dataset(np.zeros((labels.shape[0], 1)), labels.reshape(-1), n_classes=self.n_classes,
                                  name="DataLoader labels")
        return LoaderData(loader, features.shape[0], labels), labels

    def _batches(self, X, y, batch_size: int, rng: np.random.Generator):
        torch = self._torch
        if isinstance(X, LoaderData):
            for batch in X.loader:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ParameterError("the DataLoader must yield (features, labels) batches")
                features, labels = batch
                yield features.to(self.device, torch.float32), labels.to(self.device)
            return
        labels = torch.as_tensor(y, device=self.device)
        order = rng.permutation(X.shape[0])
        for start in range(0, X.shape[0], batch_size):
            batch = order[start:start + batch_size]
            yield X[batch], labels[torch.as_tensor(batch, device=self.device)]

    # ------------------------------------------------------------------ training and prediction
    def train(self, X, y, *, epochs: int, batch_size: int, learning_rate: float, proximal_mu: float = 0.0,
              rng: np.random.Generator | None = None) -> None:
        torch = self._torch
        if not isinstance(X, LoaderData):
            X, y = check_dataset(X, y, self.n_features, self.n_classes, name="training data")
        if epochs < 1 or batch_size < 1 or not learning_rate > 0 or proximal_mu < 0:
            raise ParameterError("epochs and batch_size must be >= 1, learning_rate > 0, proximal_mu >= 0")
        rng = rng if rng is not None else np.random.default_rng()
        parameters = list(self.module.parameters())
        anchor = [p.detach().clone() for p in parameters] if proximal_mu > 0 else None
        factory = self.optimizer if self.optimizer is not None else torch.optim.SGD
        optimizer = factory(parameters, lr=learning_rate)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ParameterError(f"optimizer(parameters, lr=...) returned {type(optimizer).__name__}, not a "
                                 "torch.optim.Optimizer")
        self.module.train()
        with torch.random.fork_rng(devices=[]):  # the loader's shuffling and dropout follow FedAvg's seed
            torch.manual_seed(int(rng.integers(2**63)))
            for _ in range(epochs):
                for features, labels in self._batches(X, y, batch_size, rng):
                    optimizer.zero_grad()
                    logits = self._logits(features)
                    loss = self._loss(logits, self._targets(labels))
                    if anchor is not None:
                        loss = loss + 0.5 * proximal_mu * sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchor))
                    loss.backward()
                    optimizer.step()
        if not all(np.all(np.isfinite(w)) for w in self.get_weights()):
            raise TrainingDiverged("training diverged (NaN or infinite weights): lower learning_rate")

    def per_example_gradients(self, X, y) -> np.ndarray:
        """The loss gradient of every record at the current weights, one flattened row each
        (``len(X)`` x number of weights, in :meth:`get_weights` order; buffers get zeros).

        Computed with ``torch.func.vmap`` over ``torch.func.grad`` of one record's own loss (the
        loss with ``reduction="sum"``, so a class weight stays in its record's gradient). DP-SGD
        clips these rows one by one (:class:`secagg.dp.DPConfig` with ``level="record"``).
        """
        torch = self._torch
        from torch.func import functional_call, grad, vmap

        X, y = check_dataset(X, y, self.n_features, self.n_classes, name="training data")
        batch_norm = [type(m).__name__ for m in self.module.modules()
                      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if batch_norm:
            raise ParameterError(f"per-record gradients are undefined with batch normalisation ({batch_norm[0]} "
                                 "mixes the records of a batch): use GroupNorm or LayerNorm for DP-SGD")
        features = torch.as_tensor(X, dtype=torch.float32, device=self.device)
        self._logits(features[:1])  # learns (or checks) the output width
        targets = self._targets(y)
        parameters = {name: p.detach() for name, p in self.module.named_parameters()}
        buffers = {name: b.detach() for name, b in self.module.named_buffers()}

        def record_loss(params, x, target):
            out = functional_call(self.module, (params, buffers), (x.unsqueeze(0),))
            if out.ndim == 1:
                out = out[:, None]
            return self._loss(out, target.unsqueeze(0), reduction="sum")

        self.module.train()
        gradients = vmap(grad(record_loss), in_dims=(None, 0, 0), randomness="different")(parameters, features,
                                                                                            targets)
        rows = [gradients[name].reshape(X.shape[0], -1).detach().cpu().numpy().astype(np.float64)
                for name, _ in self.module.named_parameters()]
        buffer_size = sum(int(b.numel()) for b in self.module.buffers() if b.is_floating_point())
        if buffer_size:
            rows.append(np.zeros((X.shape[0], buffer_size)))
        return np.concatenate(rows, axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """P(y=1) for binary models (one logit or two), else an (n, classes) matrix."""
        X, _ = check_dataset(X, np.zeros(len(X), dtype=np.int64), self.n_features, name="X")
        torch = self._torch
        self.module.eval()
        with torch.no_grad():
            logits = self._logits(X)
            if self._outputs == 1:
                return torch.sigmoid(logits[:, 0]).cpu().numpy().astype(np.float64)
            probabilities = torch.softmax(logits.double(), dim=1).cpu().numpy()
        return probabilities[:, 1].copy() if self._outputs == 2 else probabilities

    def predict(self, X) -> np.ndarray:
        """The predicted class of every row."""
        probabilities = self.predict_proba(X)
        if probabilities.ndim == 1:
            return (probabilities >= 0.5).astype(np.int64)
        return probabilities.argmax(axis=1).astype(np.int64)

    def evaluate(self, X, y) -> dict[str, float]:
        X, y = check_dataset(X, y, self.n_features, name="evaluation data")
        probabilities = self.predict_proba(X)
        n_classes = 2 if probabilities.ndim == 1 else probabilities.shape[1]
        if y.min() < 0 or y.max() >= n_classes:
            raise ParameterError(f"labels must be in 0..{n_classes - 1}")
        return _metrics(y, probabilities, n_classes)

    def copy(self) -> TorchModuleAdapter:
        """An independent adapter: the module and the loss deep-copied, the optimizer factory shared."""
        other = object.__new__(TorchModuleAdapter)  # no second warning about the module's last layer
        other.__dict__.update(self.__dict__)
        other.module = copy.deepcopy(self.module)
        other.loss = copy.deepcopy(self.loss) if isinstance(self.loss, self._torch.nn.Module) else self.loss
        other._tensors = list(other.module.parameters()) + [b for b in other.module.buffers() if b.is_floating_point()]
        return other
