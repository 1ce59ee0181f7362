"""matplotlib figures of explanations (the report itself uses numpy heatmaps, not these)."""

from __future__ import annotations

import numpy as np

from ..explanation import Explanation
from .heatmap import default_reduction, image_to_rgb, render_overlay

__all__ = ["plot_explanation"]


def plot_explanation(exp: Explanation, max_samples: int = 8, top: int = 10):
    """Figure: for images a grid of samples x (input, overlay); for tabular, top-feature bars.

    Returns:
        matplotlib.figure.Figure (not shown; display it or ``fig.savefig``).
    """
    from matplotlib.figure import Figure

    n = min(len(exp), max_samples)
    if exp.modality == "image":
        fig = Figure(figsize=(4.4, 2.2 * n), layout="constrained")
        axes = fig.subplots(n, 2, squeeze=False)
        reduction = default_reduction(exp.method, exp.params)
        for i in range(n):
            image = exp.inputs[i].numpy()
            pred = int(exp.predictions[i])
            axes[i, 0].imshow(image_to_rgb(image))
            axes[i, 0].set_title(f"{exp.class_label(pred)} (p={float(exp.scores[i, pred]):.2f})", fontsize=9)
            axes[i, 1].imshow(render_overlay(image, exp.attributions[i].numpy(), reduction=reduction, signed=reduction == "sum"))
            axes[i, 1].set_title(f"{exp.method} → {exp.class_label(int(exp.targets[i]))}", fontsize=9)
            for ax in axes[i]:
                ax.set_axis_off()
        return fig
    names = exp.feature_names or tuple(f"x{j}" for j in range(exp.inputs.shape[1]))
    fig = Figure(figsize=(4.5 * min(n, 4), 0.3 * top + 1.2), layout="constrained")
    axes = fig.subplots(1, min(n, 4), squeeze=False)[0]
    for i, ax in enumerate(axes):
        a = exp.attributions[i].numpy()
        order = np.argsort(-np.abs(a))[:top][::-1]
        ax.barh([names[j] for j in order], a[order], color=["#c0392b" if a[j] >= 0 else "#2c6fbb" for j in order])
        ax.axvline(0, color="#444", lw=0.8)
        ax.set_title(f"sample {i}: {exp.class_label(int(exp.targets[i]))}", fontsize=9)
        ax.tick_params(labelsize=7)
    return fig
