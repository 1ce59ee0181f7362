"""One batch of a dataset explained with every method: the arrays a store keeps for its rows.

Both backends call this (the local loop and each Ray actor), so a batch's arrays never depend
on where it ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..api import explain
from ..errors import ExplainerWarning, InputError, describe
from ..model import Model
from .layout import attributions_path, extras_path

__all__ = ["run_batch"]


def run_batch(
    model: Model,
    x: torch.Tensor,
    labels: torch.Tensor,
    methods: Mapping[str, Mapping[str, Any]],
    target: Any,
    memory_budget: int,
) -> dict[str, np.ndarray]:
    """Explain one batch with every method -> the store's per-sample arrays for these rows.

    Pure: the same rows and settings give the same arrays (the Ray backend relies on it).
    Completeness warnings are not issued per batch: the gaps are stored (``relative_gap``)
    and the run warns once, over the whole store (:meth:`Store.warnings`).
    """
    if isinstance(target, str) and target == "label":
        if bool((labels < 0).any()):
            raise InputError(
                describe(
                    '`target="label"`',
                    "a label for every sample",
                    f"{int((labels < 0).sum())} samples without one in this batch",
                    'Use target="predicted", or data that yields (input, label) pairs.',
                )
            )
        target = labels
    out: dict[str, np.ndarray] = {"inputs": x.numpy(), "labels": labels.numpy()}
    for name, params in methods.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExplainerWarning)
            exp = explain(
                model, x, name, target, progress=False, memory_budget=memory_budget, **params
            )
        # the next methods explain the classes this one resolved: the predicted class is
        # found once per batch, not once per method (every pass counted once)
        target = exp.targets
        out.setdefault("targets", exp.targets.numpy())
        out.setdefault("scores", exp.scores.numpy())
        out[attributions_path(name)] = exp.attributions.numpy()
        for extra, value in exp.extras.items():
            if extra == "embedding_attributions":
                # a text sample's (L, dim) attributions: the store keeps the per-token ones
                # (attributions) and the mask; these would multiply its size by dim
                continue
            per_sample = isinstance(value, torch.Tensor | np.ndarray) and value.ndim >= 1
            if per_sample and len(value) == len(x):
                arr = value.numpy() if isinstance(value, torch.Tensor) else value
                out[extras_path(name, extra)] = np.asarray(arr)
    return out
