"""What drawing reads from an explanation, as a protocol.

:class:`explainer.Explanation` has these attributes; viz functions take anything that does,
so this layer depends on no result class and knows nothing about models.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["Shown"]


class Shown(Protocol):
    """One method's attributions of a batch of inputs, as drawing sees them."""

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

    def __len__(self) -> int: ...

    @property
    def predictions(self) -> torch.Tensor: ...

    def class_label(self, index: int) -> str: ...
