"""What drawing reads from an explanation, as a protocol.

:class:`explainer.Explanation` has these attributes; viz functions take anything that does,
so this layer depends on no result class and knows nothing about models.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Shown", "prediction"]


@runtime_checkable
class Shown(Protocol):
    """One method's attributions of a batch of inputs, as drawing sees them.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> isinstance(exp, Shown), exp.predictions.shape, exp.class_label(1)
        (True, torch.Size([2]), '1')
    """

    method: str
    attributions: torch.Tensor  # (N, ...) like inputs
    inputs: torch.Tensor  # (N, ...)
    targets: torch.Tensor  # (N,)
    scores: torch.Tensor  # (N, columns) probabilities, or values (regression)
    class_names: tuple[str, ...] | None
    modality: str
    params: dict[str, Any]
    manifest: dict[str, Any]
    feature_names: tuple[str, ...] | None
    warnings: tuple[str, ...]  # shown next to the maps

    def __len__(self) -> int: ...

    @property
    def predictions(self) -> torch.Tensor: ...

    def class_label(self, index: int) -> str: ...


def prediction(exp: Shown, i: int) -> tuple[str, float, str]:
    """Sample ``i``'s prediction as views show it: (what was predicted, its score, the
    score in words). A regression (the task its manifest records) predicts the value of
    the explained output column, ``"ŷ = 151.2"``; a classifier (or multilabel model)
    its top class with its probability, ``"p = 0.912"``.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 1), modality="tabular", task="regression")
        >>> torch.nn.init.constant_(m.net.bias, 151.2) and None
        >>> exp = ex.explain(m, torch.zeros(1, 3), "saliency", progress=False)
        >>> prediction(exp, 0)[2]
        'ŷ = 151.2'
    """
    if exp.manifest.get("model", {}).get("task") == "regression":
        column = int(exp.targets[i])
        value = float(exp.scores[i, column])
        return exp.class_label(column), value, f"ŷ = {value:.4g}"
    pred = int(exp.predictions[i])
    p = float(exp.scores[i, pred])
    return exp.class_label(pred), p, f"p = {p:.3f}"
