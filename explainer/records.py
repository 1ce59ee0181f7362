"""What a result records about how it was made: library versions, canonical parameters and
the model record.

Manifests (of an explanation, a store) are built from these pieces, so a stored parameter
and one given again compare equal exactly when they are the same value, and the model is
described the same way everywhere (:func:`model_record`).
"""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "canonical",
    "library_versions",
    "model_record",
    "store_model_record",
    "explanation_model_record",
    "explanation_manifest",
    "REQUIRED_MODEL_KEYS",
]

# The entries of a store's model record that its readers rely on (checked on open).
REQUIRED_MODEL_KEYS = ("fingerprint", "modality", "name")
# What an Explanation holds itself, so its manifest's model record leaves it out.
_HELD_BY_EXPLANATION = ("class_names", "modality")


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results, for manifests (read once per process:
    importlib.metadata costs ~3 ms, which every explain() call paid)."""
    out = {"python": platform.python_version()}
    for pkg in ("explainer", "torch", "captum", "shap", "numpy", "scikit-image"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def canonical(value: Any) -> Any:
    """JSON-able stand-in for a parameter value (tensors by shape and content hash)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        arr = np.ascontiguousarray(arr)
        digest = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
        return {"array": list(arr.shape), "dtype": str(arr.dtype), "sha256": digest}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return repr(value)


def model_record(model: Model) -> dict[str, Any]:
    """The model part of every manifest (explanations and stores): name, fingerprint,
    parameter count, output kind, task (``task_given``: False when inferred from the
    columns), how the explained tensor was selected from the forward's result, and the
    input kind ("numpy" for a black-box function).

    Example:
        >>> import torch, explainer as ex
        >>> record = model_record(ex.wrap(torch.nn.Linear(3, 2), modality="tabular"))
        >>> list(record), record["parameters"]
        (['name', 'fingerprint', 'parameters', 'output', 'task', 'task_given', 'selected', 'input'], 8)
    """
    return {
        "name": model.name,
        "fingerprint": model.fingerprint(),
        "parameters": model.n_parameters,
        "output": model.output,
        "task": model.task,
        "task_given": model.task_given,
        "selected": model.selected,
        "input": model.input,
    }


def store_model_record(model: Model, source: Mapping[str, Any] | None) -> dict[str, Any]:
    """A store's model record: :func:`model_record` plus the class names, the modality and
    ``source``, the file the model was loaded from (``{"path", "factory", ...}``, or None),
    so that trust scores can reload it later."""
    return {
        **model_record(model),
        "class_names": list(model.class_names) if model.class_names else None,
        "modality": model.modality,
        "source": source,
    }


def explanation_model_record(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The model record of an Explanation read from a store: the store's record without the
    class names and modality, which the Explanation holds itself."""
    return {k: v for k, v in stored.items() if k not in _HELD_BY_EXPLANATION}


def explanation_manifest(
    model: Model,
    inputs: torch.Tensor,
    *,
    schema_version: int,
    seed: Any,
    duration_s: float,
    memory_budget: int,
) -> dict[str, Any]:
    """The manifest of an Explanation computed now: schema, versions, seed, model record,
    input shape, duration, device and memory budget; for several inputs their layout
    (``"inputs"``: names, shapes, kinds), and the forward arguments in words."""
    extra: dict[str, Any] = {}
    if model.layout is not None:
        extra["inputs"] = model.layout.record()
    if model.forward_args:
        extra["forward_args"] = model.forward_args.describe()
    return {
        "schema_version": schema_version,
        "versions": dict(library_versions()),  # a copy: the cached dict is shared
        "seed": seed,
        "model": model_record(model),
        "input_shape": list(inputs.shape),
        "duration_s": duration_s,
        "device": str(inputs.device),
        "memory_budget": memory_budget,
        **extra,
    }
