"""A FedAvg job a bank brings to the network mode: its own model and data, no code in secagg.

A job is a :class:`FedAvgJob` (or a zero-argument function returning one) in any importable module
or Python file; ``secagg serve --job REF`` and ``secagg join --job REF`` load it by reference,
``package.module:name`` or ``path/to/file.py:name``::

    # bank_job.py
    from secagg.fedavg import SklearnLinearAdapter
    from secagg.fedavg.job import FedAvgJob
    from secagg.fedavg.network import FedAvgSettings

    def job():
        return FedAvgJob(model=lambda: SklearnLinearAdapter(SGDClassifier(loss="log_loss"), 20),
                         settings=FedAvgSettings(rounds=10, max_weight=5000.0),
                         data=lambda bank: load_my_transactions(bank),     # on each bank's machine
                         eval_data=lambda: load_my_holdout())              # on the coordinator's

The coordinator uses ``model``, ``settings`` and ``eval_data``; each participant ``model`` and
``data(client_id)`` (or ``join --data bank.npz``). Both sides build the model from the same
reference, so a bank with another model refuses the round with its reason, which the coordinator
logs and reports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from secagg.errors import ParameterError
from secagg.fedavg.network import FedAvgSettings

__all__ = ["FedAvgJob", "load_job"]


@dataclass(frozen=True)
class FedAvgJob:
    """``model``: a factory of fresh model adapters (the ModelAdapter protocol of fedavg.md);
    ``settings``: the FedAvg settings the coordinator announces; ``data(client_id) -> (X, y)``:
    a participant's own training data; ``eval_data() -> (X, y)``: the coordinator's held-out set."""

    model: Callable[[], object]
    settings: FedAvgSettings = field(default_factory=FedAvgSettings)
    data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None
    eval_data: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise ParameterError("FedAvgJob.model must be a function returning a fresh model adapter")
        if not isinstance(self.settings, FedAvgSettings):
            raise ParameterError("FedAvgJob.settings must be a FedAvgSettings")
        for name in ("data", "eval_data"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ParameterError(f"FedAvgJob.{name} must be a function (or None)")

    def client_data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        if self.data is None:
            raise ParameterError("this job defines no data(client_id): give the bank's data with --data FILE.npz")
        return _pair(self.data(client_id), f"data({client_id})")

    def holdout(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.eval_data is None else _pair(self.eval_data(), "eval_data()")


def _pair(value, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ParameterError(f"the job's {what} must return a pair (X, y)")
    return np.asarray(value[0]), np.asarray(value[1])


def load_job(reference: str) -> FedAvgJob:
    """The job ``reference`` names (``module:name`` or ``file.py:name``); ParameterError if it
    cannot be imported or is not a FedAvgJob (or a zero-argument function returning one)."""
    if not isinstance(reference, str) or reference.count(":") != 1 or not all(reference.split(":")):
        raise ParameterError(f"a job is named 'package.module:name' or 'path/file.py:name', got {reference!r}")
    where, name = reference.split(":")
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise ParameterError(f"job file {where} does not exist")
            spec = importlib.util.spec_from_file_location(f"secagg_job_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # so that pickling and dataclasses inside it work
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: say which and why, typed
        raise ParameterError(f"cannot load job module {where}: {type(exc).__name__}: {exc}") from None
    target = getattr(module, name, None)
    if target is None:
        raise ParameterError(f"job module {where} has no {name!r}")
    job = target
    if not isinstance(job, FedAvgJob) and callable(job):
        try:
            job = job()
        except ParameterError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's factory
            raise ParameterError(f"job {reference} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(job, FedAvgJob):
        raise ParameterError(f"{reference} is not a FedAvgJob (nor a function returning one)")
    return job
