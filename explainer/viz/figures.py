"""matplotlib figures: explanation grids, method comparison, and tabular summaries
(global importance, per-sample waterfall, beeswarm) drawn by us so styles match.

Every figure draws where it is told and returns what it drew on; none is ever shown
(no pyplot here):

* one-panel figures (:func:`plot_global_importance`, :func:`plot_waterfall`,
  :func:`plot_beeswarm`) take ``ax``: an Axes of the caller's layout, drawn on and
  returned. Without it a new Figure is made and returned (what a notebook displays and
  ``fig.savefig`` writes).
* several-panel figures (:func:`plot_explanation`, :func:`plot_comparison`) take ``fig``:
  an empty Figure or SubFigure (``fig.subfigures`` places one in a layout), filled with
  the grid and returned. Without it a new Figure sized to the grid is returned.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, describe
from .heatmap import image_to_rgb, render_overlay, spec_for
from .panels import text_rows
from .shown import Shown, prediction

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, FigureBase

__all__ = [
    "plot_explanation",
    "plot_comparison",
    "plot_global_importance",
    "plot_waterfall",
    "plot_beeswarm",
    "figure_png",
]

POS, NEG = "#c0392b", "#2c6fbb"


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure not attached to pyplot (never shown, freed with its last reference).

    Example:
        >>> fig = new_figure(figsize=(2, 1))
        >>> fig.get_layout_engine().__class__.__name__, fig.get_size_inches().tolist()
        ('ConstrainedLayoutEngine', [2.0, 1.0])
    """
    from matplotlib.figure import Figure  # matplotlib is heavy: imported on first figure

    return Figure(layout="constrained", **kwargs)


def _one_panel(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Axes, Axes | Figure]:
    """(the Axes to draw on, what to return): the caller's ``ax`` twice, or the only Axes
    of a new Figure and that Figure."""
    if ax is None:
        fig = new_figure(figsize=figsize)
        return fig.subplots(), fig
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise InputError(
            describe(
                "`ax`",
                "one matplotlib Axes (or None for a new Figure)",
                type(ax).__name__,
                "Pass one Axes of your layout, e.g. fig, axes = plt.subplots(1, 3) and then "
                "ax=axes[0].",
            )
        )
    return ax, ax


def _panel_grid(
    fig: FigureBase | None, rows: int, cols: int, figsize: tuple[float, float]
) -> tuple[np.ndarray, FigureBase]:
    """(rows x cols array of Axes, what to return): a grid filling the caller's empty
    ``fig``, or a new Figure sized ``figsize``."""
    if fig is None:
        fig = new_figure(figsize=figsize)
    else:
        _check_empty_figure(fig)
    return fig.subplots(rows, cols, squeeze=False), fig


def _check_empty_figure(fig: Any) -> None:
    from matplotlib.figure import FigureBase

    if not isinstance(fig, FigureBase):
        raise InputError(
            describe(
                "`fig`",
                "an empty matplotlib Figure or SubFigure (or None for a new Figure)",
                type(fig).__name__,
                "Pass e.g. fig=plt.figure(), or part of your layout: "
                "top, bottom = fig.subfigures(2, 1) and then fig=bottom.",
            )
        )
    if fig.axes:
        raise InputError(
            describe(
                "`fig`",
                "an empty Figure or SubFigure (the grid fills all of it)",
                f"one that already holds {len(fig.axes)} Axes",
                "Pass a new one, or an empty part of your layout: "
                "left, right = fig.subfigures(1, 2) and then fig=right.",
            )
        )


def _names(exp: Shown) -> tuple[str, ...]:
    return exp.feature_names or tuple(f"x{j}" for j in range(exp.inputs.shape[1]))


def _prediction_caption(exp: Shown, i: int) -> str:
    predicted, _, text = prediction(exp, i)
    return f"{predicted} ({text})"


def figure_png(fig: FigureBase, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes.

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure_png(Figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _draw_image_row(axes_row: Sequence[Axes], explanations: Sequence[Shown], i: int) -> None:
    """Sample ``i``: the input, then one overlay per explanation."""
    first = explanations[0]
    image = first.inputs[i].numpy()
    axes_row[0].imshow(image_to_rgb(image))
    axes_row[0].set_title(_prediction_caption(first, i), fontsize=9)
    for ax, exp in zip(axes_row[1:], explanations, strict=True):
        spec = spec_for(exp.method, exp.params)
        ax.imshow(render_overlay(image, exp.attributions[i].numpy(), spec))
        ax.set_title(f"{exp.method} → {exp.class_label(int(exp.targets[i]))}", fontsize=8)
    for ax in axes_row:
        ax.set_axis_off()


def _draw_sample_bars(ax: Axes, exp: Shown, i: int, top: int, title: str) -> None:
    """Sample ``i``'s ``top`` features by |attribution| as signed horizontal bars."""
    names = _names(exp)
    a = exp.attributions[i].numpy()
    order = np.argsort(-np.abs(a))[:top][::-1]
    ax.barh([names[j] for j in order], a[order], color=[POS if a[j] >= 0 else NEG for j in order])
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def plot_comparison(
    explanations: Sequence[Shown],
    max_samples: int = 8,
    top: int = 10,
    fig: FigureBase | None = None,
) -> FigureBase:
    """Grid of several explanations of the same inputs, one row per sample.

    Images: the input, then one overlay per method. Tabular: one panel of signed bars
    (the ``top`` features) per method.

    Args:
        explanations: explanations of the same inputs (one per method).
        max_samples: rows drawn at most.
        top: features per panel (tabular).
        fig: an empty Figure or SubFigure to fill; None: a new Figure sized to the grid.

    Returns:
        ``fig`` when given, else the new matplotlib Figure (never shown).

    Raises:
        InputError: ``fig`` is not an empty Figure or SubFigure.

    Example:
        >>> import torch, explainer as ex
        >>> from matplotlib.figure import Figure
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exps = ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False)
        >>> len(plot_comparison(exps).axes)  # 2 samples x 2 methods
        4
        >>> left, right = Figure().subfigures(1, 2)  # a part of your own layout
        >>> plot_comparison(exps, fig=right) is right
        True
    """
    first = explanations[0]
    n = min(len(first), max_samples)
    if first.modality == "image":
        cols = 1 + len(explanations)
        axes, drawn_on = _panel_grid(fig, n, cols, figsize=(2.1 * cols, 2.2 * n))
        for i in range(n):
            _draw_image_row(axes[i], explanations, i)
        return drawn_on
    cols = len(explanations)
    axes, drawn_on = _panel_grid(fig, n, cols, figsize=(4.2 * cols, (0.3 * top + 1.0) * n))
    for i in range(n):
        for ax, exp in zip(axes[i], explanations, strict=True):
            title = f"sample {i}, {exp.method} → {exp.class_label(int(exp.targets[i]))}"
            _draw_sample_bars(ax, exp, i, top, title)
    return drawn_on


def plot_global_importance(exp: Shown, top: int = 12, ax: Axes | None = None) -> Axes | Figure:
    """Bar chart of mean |attribution| per feature over the samples (shap's ``bar``).

    Args:
        exp: a tabular explanation.
        top: features shown, largest first.
        ax: an Axes to draw on (one of your layout); None: a new Figure.

    Returns:
        ``ax`` when given, else the new matplotlib Figure (never shown).

    Example:
        >>> import torch, explainer as ex
        >>> from matplotlib.figure import Figure
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
        >>> type(plot_global_importance(exp)).__name__
        'Figure'
        >>> axes = Figure().subplots(1, 3)  # or: fig, axes = plt.subplots(1, 3)
        >>> plot_global_importance(exp, ax=axes[0]) is axes[0]
        True
    """
    names = _names(exp)
    imp = exp.attributions.abs().mean(0).numpy()
    order = np.argsort(-imp)[:top][::-1]
    target, drawn_on = _one_panel(ax, figsize=(5.5, 0.28 * len(order) + 1.0))
    target.barh([names[j] for j in order], imp[order], color="#7a5195")
    target.set_xlabel(f"mean |{exp.method} attribution|", fontsize=8)
    target.tick_params(labelsize=7)
    return drawn_on


def _waterfall_steps(exp: Shown, index: int, top: int) -> list[tuple[str, float]]:
    """(feature, attribution) of the ``top`` largest |attributions|, then the rest summed."""
    names = _names(exp)
    a = exp.attributions[index].numpy().astype(float)
    order = np.argsort(-np.abs(a))
    shown, rest = order[:top], order[top:]
    steps = [(names[j], float(a[j])) for j in shown]
    if len(rest):
        steps.append((f"{len(rest)} other features", float(a[rest].sum())))
    return steps


def plot_waterfall(
    exp: Shown, index: int = 0, top: int = 10, ax: Axes | None = None
) -> Axes | Figure:
    """Per-sample waterfall: reference output, the largest contributions, the sample's output.

    The reference (left end) is f(x) - sum(attributions), exact for complete methods.

    Args:
        exp: a tabular explanation.
        index: the sample drawn.
        top: features shown one by one; the others are summed into one bar.
        ax: an Axes to draw on (one of your layout); None: a new Figure.

    Returns:
        ``ax`` when given, else the new matplotlib Figure (never shown).

    Example:
        >>> import torch, explainer as ex
        >>> from matplotlib.figure import Figure
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(4, 3), "gradient_x_input", progress=False)
        >>> axes = Figure().subplots(1, 3)
        >>> plot_waterfall(exp, index=1, ax=axes[2]) is axes[2]
        True
    """
    steps = _waterfall_steps(exp, index, top)
    target, drawn_on = _one_panel(ax, figsize=(5.5, 0.3 * len(steps) + 1.2))
    start = -sum(value for _, value in steps)  # relative to the sample's output at 0
    for k, (_name, value) in enumerate(reversed(steps)):
        target.barh(k, value, left=start, color=POS if value >= 0 else NEG)
        target.text(start + value, k, f" {value:+.3g}", va="center", fontsize=7)
        start += value
    target.set_yticks(range(len(steps)), [s[0] for s in reversed(steps)], fontsize=7)
    target.axvline(0, color="#444", lw=0.8)
    label = exp.class_label(int(exp.targets[index]))
    target.set_xlabel(f"output relative to f(x) (sample {index}, class {label})", fontsize=8)
    return drawn_on


def plot_beeswarm(
    exp: Shown, top: int = 12, seed: int = 0, ax: Axes | None = None
) -> Axes | Figure:
    """Summary plot: one dot per sample and feature, x = attribution, colour = feature value.

    Args:
        exp: a tabular explanation.
        top: features shown, largest mean |attribution| at the top.
        seed: of the vertical jitter (a local generator; the same seed draws the same dots).
        ax: an Axes to draw on (one of your layout); None: a new Figure.

    Returns:
        ``ax`` when given, else the new matplotlib Figure (never shown).

    Example:
        >>> import torch, explainer as ex
        >>> from matplotlib.figure import Figure
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(8, 3), "saliency", progress=False)
        >>> axes = Figure().subplots(1, 3)
        >>> plot_beeswarm(exp, ax=axes[1]) is axes[1]
        True
    """
    names = _names(exp)
    attr = exp.attributions.numpy()
    vals = exp.inputs.numpy()
    order = np.argsort(-np.abs(attr).mean(0))[:top][::-1]
    rng = np.random.default_rng(seed)
    target, drawn_on = _one_panel(ax, figsize=(6, 0.32 * len(order) + 1.2))
    for k, j in enumerate(order):
        v = vals[:, j]
        span = v.max() - v.min()
        colour = (v - v.min()) / span if span > 0 else np.full_like(v, 0.5)
        jitter = k + rng.uniform(-0.25, 0.25, len(v))
        target.scatter(attr[:, j], jitter, c=colour, cmap="coolwarm", s=10, vmin=0, vmax=1)
    target.set_yticks(range(len(order)), [names[j] for j in order], fontsize=7)
    target.axvline(0, color="#444", lw=0.8)
    target.set_xlabel(f"{exp.method} attribution (colour: feature value, low → high)", fontsize=8)
    return drawn_on


def plot_explanation(
    exp: Shown, max_samples: int = 8, top: int = 10, fig: FigureBase | None = None
) -> FigureBase:
    """``Explanation.plot()``: image grid of samples x (input, overlay), or tabular bars.

    Args:
        exp: the explanation.
        max_samples: samples drawn at most (tabular: at most 4 panels side by side).
        top: features per panel (tabular).
        fig: an empty Figure or SubFigure to fill; None: a new Figure sized to the grid.

    Returns:
        ``fig`` when given, else the new matplotlib Figure (never shown; display it or
        ``fig.savefig``).

    Raises:
        InputError: ``fig`` is not an empty Figure or SubFigure.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> fig = plot_explanation(ex.explain(m, torch.ones(2, 3), "saliency", progress=False))
        >>> len(fig.axes)  # one panel per sample
        2
    """
    if exp.modality == "image":
        return plot_comparison([exp], max_samples=max_samples, fig=fig)
    if exp.modality == "text":
        return plot_tokens(exp, max_samples=max_samples, fig=fig)
    n = min(len(exp), max_samples, 4)
    axes, drawn_on = _panel_grid(fig, 1, n, figsize=(4.5 * n, 0.3 * top + 1.2))
    for i, ax in enumerate(axes[0]):
        _draw_sample_bars(ax, exp, i, top, f"sample {i}: {_prediction_caption(exp, i)}")
    return drawn_on


def plot_tokens(exp: Shown, max_samples: int = 8, fig: FigureBase | None = None) -> FigureBase:
    """A text explanation's token heatmaps, one panel per sample: each token on a
    background coloured by its attribution (red for the class, blue against, full colour at
    the sample's largest |attribution|), wrapped to the panel's width; padding left out.

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Flatten(), torch.nn.Linear(6, 2))
        >>> m = ex.wrap(net, modality="text", tokenizer=lambda t: [len(w) for w in t.split()])
        >>> fig = plot_tokens(ex.explain(m, ["ab c", "a bb"], "gradient_x_input", progress=False))
        >>> len(fig.axes)
        2
    """
    rows = text_rows([exp], max_samples=max_samples)
    axes, drawn_on = _panel_grid(fig, len(rows), 1, figsize=(9, 0.9 * len(rows) + 0.4))
    for (ax,), row in zip(axes, rows, strict=True):
        ax.set_axis_off()
        ax.set_title(
            f"sample {row.index}: {_prediction_caption(exp, row.index)}", fontsize=9, loc="left"
        )
        x, y = 0.0, 0.75
        for token in row.lines[0].tokens:
            width = 0.012 * max(len(token.shown), 1)
            if x + width > 1.0:  # wrap
                x, y = 0.0, y - 0.45
            color = _rgba(token.color)
            ax.text(x, y, token.shown.strip() or "·", fontsize=8, va="center", ha="left",
                    transform=ax.transAxes, bbox={"facecolor": color, "edgecolor": "none", "pad": 1.5})  # fmt: skip
            x += width + 0.01
    return drawn_on


def _rgba(css: str) -> tuple[float, float, float, float]:
    """An ``rgba(r, g, b, a)`` CSS colour as a matplotlib colour."""
    r, g, b, a = (float(v) for v in css[css.index("(") + 1 : -1].split(","))
    return r / 255, g / 255, b / 255, a
