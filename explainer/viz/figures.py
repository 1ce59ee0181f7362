"""matplotlib figures: explanation grids, method comparison, and tabular summaries
(global importance, per-sample waterfall, beeswarm) drawn by us so styles match."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from .heatmap import image_to_rgb, render_overlay, spec_for
from .shown import Shown

__all__ = [
    "plot_explanation",
    "plot_comparison",
    "plot_global_importance",
    "plot_waterfall",
    "plot_beeswarm",
    "figure_png",
]

POS, NEG = "#c0392b", "#2c6fbb"


def new_figure(**kwargs):
    """A matplotlib Figure not attached to pyplot (never shown, freed with its last reference)."""
    from matplotlib.figure import Figure  # matplotlib is heavy: imported on first figure

    return Figure(layout="constrained", **kwargs)


def _names(exp: Shown) -> tuple[str, ...]:
    return exp.feature_names or tuple(f"x{j}" for j in range(exp.inputs.shape[1]))


def figure_png(fig, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_comparison(explanations: Sequence[Shown], max_samples: int = 8):
    """Grid of samples x (input, one overlay per method) for explanations of the same inputs."""
    first = explanations[0]
    n = min(len(first), max_samples)
    cols = 1 + len(explanations)
    fig = new_figure(figsize=(2.1 * cols, 2.2 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        image = first.inputs[i].numpy()
        pred = int(first.predictions[i])
        axes[i, 0].imshow(image_to_rgb(image))
        axes[i, 0].set_title(
            f"{first.class_label(pred)} (p={float(first.scores[i, pred]):.2f})", fontsize=9
        )
        for j, exp in enumerate(explanations, start=1):
            axes[i, j].imshow(
                render_overlay(image, exp.attributions[i].numpy(), spec_for(exp.method, exp.params))
            )
            axes[i, j].set_title(
                f"{exp.method} → {exp.class_label(int(exp.targets[i]))}", fontsize=8
            )
        for ax in axes[i]:
            ax.set_axis_off()
    return fig


def plot_global_importance(exp: Shown, top: int = 12):
    """Bar chart of mean |attribution| per feature over the samples (shap's ``bar``)."""
    names = _names(exp)
    imp = exp.attributions.abs().mean(0).numpy()
    order = np.argsort(-imp)[:top][::-1]
    fig = new_figure(figsize=(5.5, 0.28 * len(order) + 1.0))
    ax = fig.subplots()
    ax.barh([names[j] for j in order], imp[order], color="#7a5195")
    ax.set_xlabel(f"mean |{exp.method} attribution|", fontsize=8)
    ax.tick_params(labelsize=7)
    return fig


def plot_waterfall(exp: Shown, index: int = 0, top: int = 10):
    """Per-sample waterfall: reference output, the largest contributions, the sample's output.

    The reference (left end) is f(x) - sum(attributions), exact for complete methods.
    """
    names = _names(exp)
    a = exp.attributions[index].numpy().astype(float)
    order = np.argsort(-np.abs(a))
    shown, rest = order[:top], order[top:]
    steps = [(names[j], a[j]) for j in shown] + (
        [(f"{len(rest)} other features", a[rest].sum())] if len(rest) else []
    )
    total = a.sum()
    fig = new_figure(figsize=(5.5, 0.3 * len(steps) + 1.2))
    ax = fig.subplots()
    start = -total  # relative to the sample's output at 0
    for k, (_name, value) in enumerate(reversed(steps)):
        ax.barh(k, value, left=start, color=POS if value >= 0 else NEG)
        ax.text(start + value, k, f" {value:+.3g}", va="center", fontsize=7)
        start += value
    ax.set_yticks(range(len(steps)), [s[0] for s in reversed(steps)], fontsize=7)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel(
        f"output relative to f(x) (sample {index}, class {exp.class_label(int(exp.targets[index]))})",
        fontsize=8,
    )
    return fig


def plot_beeswarm(exp: Shown, top: int = 12, seed: int = 0):
    """Summary plot: one dot per sample and feature, x = attribution, colour = feature value."""
    names = _names(exp)
    attr = exp.attributions.numpy()
    vals = exp.inputs.numpy()
    order = np.argsort(-np.abs(attr).mean(0))[:top][::-1]
    rng = np.random.default_rng(seed)
    fig = new_figure(figsize=(6, 0.32 * len(order) + 1.2))
    ax = fig.subplots()
    for k, j in enumerate(order):
        v = vals[:, j]
        span = v.max() - v.min()
        colour = (v - v.min()) / span if span > 0 else np.full_like(v, 0.5)
        ax.scatter(
            attr[:, j],
            k + rng.uniform(-0.25, 0.25, len(v)),
            c=colour,
            cmap="coolwarm",
            s=10,
            vmin=0,
            vmax=1,
        )
    ax.set_yticks(range(len(order)), [names[j] for j in order], fontsize=7)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel(f"{exp.method} attribution (colour: feature value, low → high)", fontsize=8)
    return fig


def plot_explanation(exp: Shown, max_samples: int = 8, top: int = 10):
    """``Shown.plot()``: image grid of samples x (input, overlay), or tabular bars.

    Returns:
        matplotlib.figure.Figure (not shown; display it or ``fig.savefig``).
    """
    if exp.modality == "image":
        return plot_comparison([exp], max_samples=max_samples)
    names = _names(exp)
    n = min(len(exp), max_samples, 4)
    fig = new_figure(figsize=(4.5 * n, 0.3 * top + 1.2))
    for i, ax in enumerate(fig.subplots(1, n, squeeze=False)[0]):
        a = exp.attributions[i].numpy()
        order = np.argsort(-np.abs(a))[:top][::-1]
        ax.barh(
            [names[j] for j in order], a[order], color=[POS if a[j] >= 0 else NEG for j in order]
        )
        ax.axvline(0, color="#444", lw=0.8)
        pred = int(exp.predictions[i])
        ax.set_title(
            f"sample {i}: {exp.class_label(pred)} (p={float(exp.scores[i, pred]):.2f})", fontsize=9
        )
        ax.tick_params(labelsize=7)
    return fig
