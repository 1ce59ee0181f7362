"""What drawing reads from an explanation, as a protocol.

:class:`explainer.Explanation` has these attributes; viz functions take anything that does,
so this layer depends on no result class and knows nothing about models.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Shown"]


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
    scores: torch.Tensor  # (N, classes) probabilities
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
