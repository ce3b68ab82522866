"""A FedAvg job a bank brings to the network mode: its own model and data, no code in secagg.

A job is a :class:`FedAvgJob` (or a zero-argument function returning one) in any importable module
or Python file; ``secagg serve --job REF`` and ``secagg join --job REF`` load it by reference,
``package.module:name`` or ``path/to/file.py:name``::

    # bank_job.py
    from sklearn.linear_model import SGDClassifier
    from secagg.fedavg import FedAvg, FedAvgJob, SklearnLinearAdapter

    def job():
        model = SklearnLinearAdapter(SGDClassifier(loss="log_loss"), 20)
        return FedAvgJob(fedavg=FedAvg(model, rounds=10, learning_rate=0.01, max_weight=5000.0),
                         data=lambda bank: load_my_transactions(bank),     # on each bank's machine
                         eval_data=lambda: load_my_holdout())              # on the coordinator's

``fedavg`` is the very configuration ``FedAvg.fit`` runs in-process. The coordinator uses it and
``eval_data``; each participant uses it and ``data(client_id)`` (or ``join --data bank.npz``).
Both sides build it from the same reference, so a bank with another model or other settings
refuses the round with its reason, which the coordinator logs and reports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secagg.errors import ParameterError
from secagg.fedavg.trainer import FedAvg

__all__ = ["FedAvgJob", "load_job"]


@dataclass(frozen=True)
class FedAvgJob:
    """``fedavg``: the :class:`~secagg.fedavg.FedAvg` configuration of the run (or a function
    returning one); ``data(client_id) -> (X, y)``: a participant's own training data;
    ``eval_data() -> (X, y)``: the coordinator's held-out set."""

    fedavg: FedAvg | Callable[[], FedAvg]
    data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None
    eval_data: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fedavg, FedAvg) and not callable(self.fedavg):
            raise ParameterError("FedAvgJob.fedavg must be a FedAvg (or a function returning one)")
        for name in ("data", "eval_data"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ParameterError(f"FedAvgJob.{name} must be a function (or None)")

    def configuration(self) -> FedAvg:
        """The job's FedAvg (built now if the job holds a function)."""
        if isinstance(self.fedavg, FedAvg):
            return self.fedavg
        try:
            fedavg = self.fedavg()
        except ParameterError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's factory: say which and why, typed
            raise ParameterError(f"the job's fedavg() failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(fedavg, FedAvg):
            raise ParameterError(f"the job's fedavg() returned {type(fedavg).__name__}, not a FedAvg")
        return fedavg

    def client_data(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        if self.data is None:
            raise ParameterError("this job defines no data(client_id): give the bank's data with --data FILE.npz")
        return _pair(_call(self.data, client_id, what=f"data({client_id})"), f"data({client_id})")

    def holdout(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.eval_data is None else _pair(_call(self.eval_data, what="eval_data()"), "eval_data()")


def _call(function, *args, what: str):
    try:
        return function(*args)
    except ParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's loader
        raise ParameterError(f"the job's {what} failed: {type(exc).__name__}: {exc}") from None


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
            if spec is None or spec.loader is None:
                raise ParameterError(f"job file {where} cannot be imported as a Python module")
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
