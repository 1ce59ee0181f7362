"""What a result records about how it was made: library versions and canonical parameters.

Manifests (of an explanation, a store) are built from these pieces, so a stored parameter
and one given again compare equal exactly when they are the same value.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

__all__ = ["canonical", "library_versions"]


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
