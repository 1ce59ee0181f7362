"""Thresholds of :func:`explainer.metrics.findings.findings` (the module docstring there says
why each) and the records its steps pass on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DOMINANCE = 4.0  # a unit is dominant at 4x its fair share of the evidence ...
DOMINANT_ENOUGH = 1 / 3  # ... or at a third of it, whichever is smaller
CONSTANT = 0.25  # content within 0.25x the typical deviation of the class's median
CELLS_PER_SIDE = 16  # image cells: round(min(H, W) / 16) pixels
MIN_CLASS_SAMPLES = 3  # fewer explained samples of a class: nothing is called consistent
CI_LEVEL = 0.90
RESAMPLES = 2000
CHUNK = 256  # held-out rows per forward pass

_KINDS = {"image": "region", "tabular": "feature", "text": "token"}


@dataclass(frozen=True)
class _Settings:
    min_support: float
    min_effect: float
    seed: int
    progress: bool


@dataclass(frozen=True)
class _Holdout:
    """The samples effects are measured on: inputs (a tensor on the model's device; for
    text: ids and mask), labels (n,) and whether they were given."""

    x: torch.Tensor
    labels: np.ndarray
    given: bool
    mask: torch.Tensor | None = None  # text: attention mask (n, L)
    tokens: tuple[tuple[str, ...], ...] | None = None  # text: tokens per sample


@dataclass(frozen=True)
class _Candidate:
    """A unit flagged for a class, with what the counterfactual needs."""

    class_index: int
    where: Any
    share: float
    support: tuple[int, int]
    # images and tabular: where the unit is in a batch (``x[index]``) and the class's
    # typical content there (median over its explained samples); None for tokens
    index: tuple[Any, ...] | None
    content: torch.Tensor | None
    pattern: str  # the pattern half of the sentence
    fill: str  # what replaces it, in words
    record: dict[str, Any]
    preview: np.ndarray | None = None
