"""The report's trust section: per method, verdicts, mean scores and small curve plots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics.scores import METRIC_INFO, Scores, Verdict
from ..viz.figures import figure_png, new_figure
from ..viz.heatmap import png_data_uri

__all__ = ["TrustBlock", "trust_blocks"]


@dataclass(frozen=True)
class TrustBlock:
    """One method's part of the report's trust section.

    Attributes:
        method: the method scored.
        model: the model's name, as the scores recorded it.
        verdicts: what the scores say about the method (pass, warn, fail and why).
        metrics: one dict per metric: its mean and std, which way is better, what it means.
        curves_uri: deletion/insertion curves as a PNG data URI, or None.
        randomization_uri: similarity under layer randomization as a PNG data URI, or None.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
        >>> [block] = trust_blocks(ex.evaluate(exp, m))
        >>> block.method, block.metrics[0]["metric"] != "", block.curves_uri[:22]
        ('saliency', True, 'data:image/png;base64,')
    """

    method: str
    model: str
    verdicts: tuple[Verdict, ...]
    metrics: tuple[dict, ...]  # {"metric", "mean", "std", "better", "meaning"}
    curves_uri: str | None
    randomization_uri: str | None


def _curves_png(curves: dict[str, np.ndarray], method: str) -> str:
    fig = new_figure(figsize=(5.2, 2.0))
    axes = fig.subplots(1, 2)
    for ax, mode in zip(axes, ("deletion", "insertion"), strict=True):
        x = np.linspace(0, 1, curves[mode].shape[1])
        ax.plot(x, curves[mode].mean(0), color="#c0392b", label=f"{method} (most relevant first)")
        ax.plot(x, curves[f"{mode}_random"].mean(0), color="#888", ls="--", label="random order")
        if mode == "deletion" and "deletion_lerf" in curves:
            ax.plot(
                x,
                curves["deletion_lerf"].mean(0),
                color="#2c6fbb",
                ls=":",
                label="least relevant first",
            )
        ax.set_title(mode, fontsize=8)
        ax.set_xlabel(
            "fraction of features " + ("removed" if mode == "deletion" else "restored"), fontsize=7
        )
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("p(target)", fontsize=7)
    axes[0].legend(fontsize=5.5, loc="upper right")
    return png_data_uri(figure_png(fig, dpi=110))


def _randomization_png(steps: list[dict]) -> str:
    fig = new_figure(figsize=(3.2, 2.0))
    ax = fig.subplots()
    x = np.arange(len(steps))
    ax.plot(
        x,
        [s["spearman"] for s in steps],
        marker="o",
        ms=3,
        label="Spearman rank corr.",
        color="#7a5195",
    )
    if all(s["ssim"] is not None for s in steps):
        ax.plot(x, [s["ssim"] for s in steps], marker="s", ms=3, label="SSIM", color="#ef5675")
    ax.axhline(0.5, color="#999", lw=0.6, ls="--")
    ax.set_xticks(x, [s["layer"] for s in steps], fontsize=6, rotation=45)
    ax.set_ylim(-0.2, 1.05)
    ax.set_title("similarity to the original map as layers are randomized", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    return png_data_uri(figure_png(fig, dpi=110))


def trust_blocks(scores: Scores) -> list[TrustBlock]:
    """One block per method, in the order the methods were scored.

    Args:
        scores: the result of ``ex.evaluate``.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
        >>> [block] = trust_blocks(ex.evaluate(exp, m))
        >>> block.method, len(block.metrics) > 0
        ('saliency', True)
    """
    verdicts = scores.verdicts()
    summary = scores.summary()
    blocks = []
    for m in scores.methods:
        rows = []
        for r in summary:
            if r["method"] != m:
                continue
            higher, _, meaning = METRIC_INFO.get(r["metric"].split("[")[0], (None, "", ""))
            better = (
                "higher is better" if higher else ("lower is better" if higher is False else "")
            )
            rows.append(
                {
                    "metric": r["metric"],
                    "mean": r["mean"],
                    "std": r["std"],
                    "better": better,
                    "meaning": meaning,
                }
            )
        curves = scores.curves.get(m)
        steps = scores.randomization.get(m)
        blocks.append(
            TrustBlock(
                m,
                str(scores.settings.get("model", "")),
                tuple(v for v in verdicts if v.method == m),
                tuple(rows),
                _curves_png(curves, m) if curves and "deletion" in curves else None,
                _randomization_png(steps) if steps else None,
            )
        )
    return blocks
