"""A model's weights in a ``.npz`` file with a schema, and back: never pickle.

The file holds one float64 array per weight (``w0000``, ``w0001``, ...) and ``__schema__``, a
JSON document::

    {"format": "secagg.fedavg.weights", "format_version": 1, "secagg_version": "...",
     "model": {"class": "secagg.fedavg.models.NumpyLogisticRegression", "n_features": 13, "n_classes": 2},
     "weights": [{"name": "W", "shape": [13, 1], "dtype": "float64"}, {"name": "b", ...}],
     "metadata": {...}}

``model`` is the adapter's class and its ``describe()`` (for a scikit-learn pipeline: every fixed
transform's fingerprint, so weights trained behind one scaling never load behind another); the
weight names come from ``weight_names()`` where the adapter has it. :func:`load_weights` refuses,
with ParameterError and before changing the model, a file that is not such an archive, an
unknown format version, another model description, and any missing, extra, misnamed, misshaped,
non-float64 or non-finite weight. Arrays are read with ``allow_pickle=False``: a file cannot run code.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from secagg._version import __version__
from secagg.errors import ParameterError
from secagg.fedavg.models import ModelAdapter, check_weights

__all__ = ["FORMAT", "FORMAT_VERSION", "describe_model", "load_weights", "read_schema", "read_weights",
           "save_weights"]

FORMAT = "secagg.fedavg.weights"
FORMAT_VERSION = 1
_SCHEMA_KEY = "__schema__"


def _key(index: int) -> str:
    return f"w{index:04d}"


def describe_model(model: ModelAdapter) -> dict[str, Any]:
    """The model's class and its own ``describe()`` (if it has one): what must match to load."""
    description: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    describe = getattr(model, "describe", None)
    if callable(describe):
        description.update(describe())
    return json.loads(json.dumps(description))  # JSON-able, as it will be read back


def _weight_names(model: ModelAdapter, count: int) -> list[str]:
    names = getattr(model, "weight_names", None)
    result = list(names()) if callable(names) else [f"weight_{i}" for i in range(count)]
    if len(result) != count or len(set(result)) != count:
        raise ParameterError(f"the model names {len(result)} weights (distinct: {len(set(result))}), it has {count}")
    return [str(name) for name in result]


def save_weights(model: ModelAdapter, path: str | os.PathLike, *, weights: list[np.ndarray] | None = None,
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``weights`` (default: the model's own) with the schema to ``path`` (``.npz`` is
    appended if missing, as NumPy does); returns the path written."""
    arrays = [np.asarray(w, dtype=np.float64) for w in (model.get_weights() if weights is None else weights)]
    check_weights(arrays, [np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    names = _weight_names(model, len(arrays))
    schema = {"format": FORMAT, "format_version": FORMAT_VERSION, "secagg_version": __version__,
              "model": describe_model(model),
              "weights": [{"name": n, "shape": list(a.shape), "dtype": "float64"} for n, a in zip(names, arrays)],
              "metadata": json.loads(json.dumps(dict(metadata or {})))}
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    contents: dict[str, np.ndarray] = {_key(i): a for i, a in enumerate(arrays)}
    contents[_SCHEMA_KEY] = np.array(json.dumps(schema, sort_keys=True))
    np.savez(target, **contents)  # type: ignore[arg-type]  # numpy's stub types the keywords as allow_pickle
    return target


def read_schema(path: str | os.PathLike) -> dict[str, Any]:
    """The schema of a weights file (ParameterError if it is not one)."""
    schema, _ = _read(path)
    return schema


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ParameterError(f"{path}: not a secagg weights file ({type(exc).__name__}: {exc})") from None
    raw = contents.pop(_SCHEMA_KEY, None)
    if raw is None or raw.dtype.kind != "U" or raw.shape != ():
        raise ParameterError(f"{path}: no schema: not a secagg weights file")
    try:
        schema = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{path}: the schema is not JSON ({exc})") from None
    if not isinstance(schema, dict) or schema.get("format") != FORMAT:
        raise ParameterError(f"{path}: not a secagg weights file (format {schema.get('format')!r})"
                             if isinstance(schema, dict) else f"{path}: the schema is not an object")
    if schema.get("format_version") != FORMAT_VERSION:
        raise ParameterError(f"{path}: format version {schema.get('format_version')!r}; this secagg reads "
                             f"version {FORMAT_VERSION}")
    entries = schema.get("weights")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ParameterError(f"{path}: the schema lists no weights")
    return schema, contents


def read_weights(model: ModelAdapter, path: str | os.PathLike) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The weights saved at ``path`` for ``model``, checked against it, and the file's schema;
    the model itself is not touched.

    Refused with ParameterError unless the file describes this model (same class and
    description, same weight names, shapes and dtype) and every weight is finite.
    """
    schema, contents = _read(path)
    own = describe_model(model)
    if schema.get("model") != own:
        saved: dict[str, Any] = schema["model"] if isinstance(schema.get("model"), dict) else {}
        differences = sorted(k for k in set(own) | set(saved) if own.get(k) != saved.get(k))
        described = ", ".join(f"{k} {saved.get(k)!r} (this model: {own.get(k)!r})" for k in differences)
        raise ParameterError(f"{path} holds another model: {described}")
    expected = [np.asarray(w, dtype=np.float64) for w in model.get_weights()]
    names = _weight_names(model, len(expected))
    entries = schema["weights"]
    if [e.get("name") for e in entries] != names:
        raise ParameterError(f"{path} has weights {[e.get('name') for e in entries]}, this model {names}")
    if set(contents) != {_key(i) for i in range(len(entries))}:
        raise ParameterError(f"{path}: the arrays do not match the schema's {len(entries)} weights")
    weights = []
    for i, (entry, like) in enumerate(zip(entries, expected)):
        array = contents[_key(i)]
        if entry.get("dtype") != "float64" or array.dtype != np.float64:
            raise ParameterError(f"{path}: weight {entry.get('name')!r} is {array.dtype}, not float64")
        if list(array.shape) != entry.get("shape") or array.shape != like.shape:
            raise ParameterError(f"{path}: weight {entry.get('name')!r} has shape {array.shape}, this model "
                                 f"needs {like.shape}")
        weights.append(array)
    return check_weights(weights, expected), schema


def load_weights(model: ModelAdapter, path: str | os.PathLike) -> dict[str, Any]:
    """Set ``model``'s weights from the file at ``path``; returns the file's schema.
    Refused as :func:`read_weights` refuses, the model unchanged."""
    weights, schema = read_weights(model, path)
    model.set_weights(weights)
    return schema
