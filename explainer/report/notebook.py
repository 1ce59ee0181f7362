"""Inline notebook views (``_repr_html_``), built from the report's panels and template."""

from __future__ import annotations

from collections.abc import Sequence

from ..explanation import Explanation
from .html import render_fragment

__all__ = ["explanation_html", "explanations_html"]


def explanation_html(exp: Explanation, max_samples: int = 8) -> str:
    """HTML for one explanation: a heatmap grid (images) or top-feature bars (tabular)."""
    return explanations_html([exp], max_samples=max_samples)


def explanations_html(explanations: Sequence[Explanation], max_samples: int = 8) -> str:
    """HTML comparing several explanations of the same inputs side by side."""
    return render_fragment(list(explanations), max_samples=max_samples)
