"""Turn explanations into rows of inline images and captions (shared by reports and notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..explanation import Explanation
from .heatmap import default_reduction, encode_png, image_to_rgb, png_data_uri, render_overlay

__all__ = ["Panel", "SampleRow", "image_rows", "tabular_rows", "thumbnail_scale"]


@dataclass(frozen=True)
class Panel:
    title: str
    uri: str


@dataclass(frozen=True)
class SampleRow:
    index: int
    predicted: str
    target: str
    probability: float
    correct: bool | None
    panels: tuple[Panel, ...]
    bars: tuple[tuple[str, float, float], ...] = ()  # tabular: (feature, value, width fraction)


def thumbnail_scale(height: int) -> int:
    """Integer upscale so small images (e.g. 64 px) show at a readable size (>= ~128 px)."""
    return max(1, 128 // max(height, 1))


def _caption(exp: Explanation, i: int, labels: Sequence[int] | None) -> tuple[str, str, float, bool | None]:
    pred = int(exp.predictions[i])
    target = int(exp.targets[i])
    correct = None if labels is None else bool(pred == int(labels[i]))
    return exp.class_label(pred), exp.class_label(target), float(exp.scores[i, pred]), correct


def image_rows(explanations: Sequence[Explanation], labels: Sequence[int] | None = None, max_samples: int = 64) -> list[SampleRow]:
    """One row per sample: the input, then one overlay per explanation (same inputs)."""
    first = explanations[0]
    rows = []
    for i in range(min(len(first), max_samples)):
        image = first.inputs[i].numpy()
        up = thumbnail_scale(image.shape[1])
        panels = [Panel("input", png_data_uri(encode_png(np.rint(image_to_rgb(image) * 255).astype(np.uint8), up)))]
        for exp in explanations:
            reduction = default_reduction(exp.method, exp.params)
            signed = reduction in ("sum",)
            rgb = render_overlay(image, exp.attributions[i].numpy(), reduction=reduction, signed=signed)
            panels.append(Panel(exp.method, png_data_uri(encode_png(rgb, up))))
        pred, target, prob, correct = _caption(first, i, labels)
        rows.append(SampleRow(i, pred, target, prob, correct, tuple(panels)))
    return rows


def tabular_rows(exp: Explanation, labels: Sequence[int] | None = None, max_samples: int = 64, top: int = 8) -> list[SampleRow]:
    """One row per sample with its ``top`` features by |attribution| as signed bars."""
    names = exp.feature_names or tuple(f"x{j}" for j in range(exp.inputs.shape[1]))
    rows = []
    for i in range(min(len(exp), max_samples)):
        a = exp.attributions[i].numpy()
        order = np.argsort(-np.abs(a))[:top]
        peak = float(np.abs(a[order]).max()) or 1.0
        bars = tuple((names[j], float(a[j]), float(abs(a[j]) / peak)) for j in order)
        pred, target, prob, correct = _caption(exp, i, labels)
        rows.append(SampleRow(i, pred, target, prob, correct, (), bars))
    return rows
