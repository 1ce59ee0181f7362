"""Turn explanations into rows of inline images and captions (shared by reports and notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .._agreement import method_agreement
from .heatmap import (
    HeatmapSpec,
    colorbar_rgb,
    denormalize,
    encode_png,
    image_to_rgb,
    percentile_scale,
    png_data_uri,
    reduce_channels,
    render_overlay,
    shared_scale,
    spec_for,
)
from .shown import Shown, prediction

__all__ = [
    "Panel",
    "SampleRow",
    "MethodLegend",
    "Token",
    "TokenLine",
    "image_rows",
    "tabular_rows",
    "text_rows",
    "readable_tokens",
    "MAX_THUMB",
]

MAX_THUMB = 160  # larger images are downsampled for the grid, keeping reports small


@dataclass(frozen=True)
class Panel:
    """One inline image of a row: its caption and a ``data:image/png`` URI.

    Example:
        >>> Panel("input", "data:image/png;base64,...").title
        'input'
    """

    title: str
    uri: str


@dataclass(frozen=True)
class MethodLegend:
    """How one method's overlays are coloured: its heatmap spec and a colorbar image.

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> exps = ex.explain_many(ex.wrap(net), torch.rand(2, 3, 8, 8), ["saliency", "gradient_x_input"], progress=False)
        >>> _, legends = image_rows(exps)
        >>> [legend.method for legend in legends], legends[0].colorbar_uri[:22]
        (['saliency', 'gradient_x_input'], 'data:image/png;base64,')
    """

    method: str
    spec: HeatmapSpec
    colorbar_uri: str


@dataclass(frozen=True)
class Token:
    """One token as a text view draws it: its text as read (subword markers resolved, a
    leading space where a word starts), its attribution and its background colour."""

    text: str  # the token as the tokenizer gives it
    shown: str  # as read
    value: float
    color: str  # an rgba() CSS colour: red for positive, blue for negative, alpha by |value|


@dataclass(frozen=True)
class TokenLine:
    """One method's token heatmap of one sample."""

    method: str
    tokens: tuple[Token, ...]
    scale: float  # the |attribution| drawn at full colour


@dataclass(frozen=True)
class SampleRow:
    """One sample as a view shows it: captions, then panels (images) or bars (tabular).

    ``correct`` is None without true labels; ``agreement`` is the mean rank correlation
    between the methods' maps (None for one method).

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "gradient_x_input", progress=False)
        >>> row = tabular_rows(exp, labels=[1, 0])[0]
        >>> row.index, row.predicted == row.target, row.correct is not None, len(row.bars)
        (0, True, True, 3)
    """

    index: int
    predicted: str
    target: str
    label: str | None
    probability: float  # the predicted class's probability; the value for a regression
    correct: bool | None
    panels: tuple[Panel, ...]
    agreement: float | None = None
    bars: tuple[tuple[str, float, float], ...] = ()  # tabular: (feature, value, width fraction)
    lines: tuple[TokenLine, ...] = ()  # text: one token heatmap per method
    score_text: str = ""  # "p = 0.912", or "ŷ = 151.2" for a regression


def _thumb(rgb: np.ndarray) -> str:
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_THUMB:
        f = MAX_THUMB / max(h, w)
        rgb = np.asarray(
            Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)
        )
    return png_data_uri(encode_png(rgb))


def _caption(exp: Shown, i: int, labels: Sequence[int] | None) -> dict:
    pred = int(exp.predictions[i])
    label = None if labels is None else int(labels[i])
    predicted, score, text = prediction(exp, i)
    return {
        "predicted": predicted,
        "target": exp.class_label(int(exp.targets[i])),
        "label": None if label is None else exp.class_label(label),
        "probability": score,
        "correct": None if label is None else pred == label,
        "score_text": text,
    }


def image_rows(
    explanations: Sequence[Shown],
    labels: Sequence[int] | None = None,
    max_samples: int = 64,
    scale: str = "sample",
) -> tuple[list[SampleRow], list[MethodLegend]]:
    """One row per sample: the input, then one overlay per explanation (same inputs).

    Args:
        explanations: image explanations of the same inputs, one per method.
        labels: true class per sample, or None.
        max_samples: rows at most.
        scale: "sample" (each map clipped at its own percentile) or "shared" (one scale per
            sample across the methods, so magnitudes compare).

    Returns:
        (rows, one legend per method).

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> exps = ex.explain_many(ex.wrap(net), torch.rand(2, 3, 8, 8), ["saliency", "gradient_x_input"], progress=False)
        >>> rows, legends = image_rows(exps, scale="shared")
        >>> len(rows), [panel.title for panel in rows[0].panels]
        (2, ['input', 'saliency', 'gradient_x_input'])
    """
    first = explanations[0]
    n = min(len(first), max_samples)
    specs = [spec_for(e.method, e.params) for e in explanations]
    maps = [
        reduce_channels(e.attributions[:n].numpy(), s.reduction)
        for e, s in zip(explanations, specs, strict=True)
    ]
    scales = [percentile_scale(m, s.percentile) for m, s in zip(maps, specs, strict=True)]
    if scale == "shared":
        common = shared_scale(scales)
        scales = [common] * len(scales)
    agreement = method_agreement(maps)
    rows = []
    prep = first.manifest.get("preprocessing")
    for i in range(n):
        image = denormalize(first.inputs[i].numpy(), prep)  # as the camera saw it
        panels = [Panel("input", _thumb(np.rint(image_to_rgb(image) * 255).astype(np.uint8)))]
        for exp, spec, heat, sc in zip(explanations, specs, maps, scales, strict=True):
            segments = (
                exp.extras["segments"][i].numpy()
                if "segments" in exp.extras and exp.extras["segments"].ndim == 3
                else None
            )
            rgb = render_overlay(image, heat[i], spec, scale=float(sc[i]), segments=segments)
            panels.append(Panel(exp.method, _thumb(rgb)))
        agree = None if np.isnan(agreement[i]) else float(agreement[i])
        rows.append(
            SampleRow(i, panels=tuple(panels), agreement=agree, **_caption(first, i, labels))
        )
    legends = [
        MethodLegend(e.method, s, png_data_uri(encode_png(colorbar_rgb(s))))
        for e, s in zip(explanations, specs, strict=True)
    ]
    return rows, legends


def tabular_rows(
    exp: Shown,
    labels: Sequence[int] | None = None,
    max_samples: int = 64,
    top: int = 8,
    others: Sequence[Shown] = (),
) -> list[SampleRow]:
    """One row per sample with its ``top`` features by |attribution| as signed bars; the
    agreement column compares ``exp`` with ``others`` (same inputs).

    Each bar is (feature name, attribution, width as a fraction of the row's largest).

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "gradient_x_input", progress=False)
        >>> rows = tabular_rows(exp, top=2)
        >>> len(rows), len(rows[0].bars), max(width for _, _, width in rows[0].bars)
        (2, 2, 1.0)
    """
    names = exp.feature_names or tuple(f"x{j}" for j in range(exp.inputs.shape[1]))
    n = min(len(exp), max_samples)
    agreement = method_agreement([e.attributions[:n].numpy() for e in (exp, *others)])
    rows = []
    for i in range(n):
        a = exp.attributions[i].numpy()
        order = np.argsort(-np.abs(a))[:top]
        peak = float(np.abs(a[order]).max()) or 1.0
        bars = tuple((names[j], float(a[j]), float(abs(a[j]) / peak)) for j in order)
        agree = None if np.isnan(agreement[i]) else float(agreement[i])
        rows.append(SampleRow(i, panels=(), agreement=agree, bars=bars, **_caption(exp, i, labels)))
    return rows


def readable_tokens(tokens: Sequence[str]) -> list[str]:
    """Tokens as read: WordPiece continuations ("##ing") join the previous token,
    byte-level BPE ("Ġword") and SentencePiece ("▁word") markers become a space; other
    tokens are separated by a space.

    Example:
        >>> readable_tokens(["[CLS]", "play", "##ing", "Ġwell", "▁done"])
        ['[CLS]', ' play', 'ing', ' well', ' done']
    """
    out = []
    for k, t in enumerate(tokens):
        if t.startswith("##"):
            out.append(t[2:])
        elif t.startswith(("Ġ", "▁")):
            out.append(" " + t[1:])
        else:
            out.append(t if k == 0 else " " + t)
    return out


def _token_color(value: float, scale: float) -> str:
    """Red (positive) or blue (negative), alpha |value| / scale, as a CSS colour."""
    alpha = 0.0 if scale <= 0 else min(abs(value) / scale, 1.0) * 0.85
    rgb = "192, 57, 43" if value >= 0 else "44, 111, 187"
    return f"rgba({rgb}, {alpha:.3f})"


def text_rows(
    explanations: Sequence[Shown],
    labels: Sequence[int] | None = None,
    max_samples: int = 64,
    scale: str = "sample",
) -> list[SampleRow]:
    """One row per sample: for each method (same inputs), its token heatmap.

    Each token's background is coloured by its attribution: red for positive, blue for
    negative, full colour at the scale, which is the largest |attribution| of that sample's
    map (``scale="sample"``, per method) or of every method's maps of that sample
    (``"shared"``). Padding (attention mask 0) is not drawn.

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Flatten(), torch.nn.Linear(6, 2))
        >>> m = ex.wrap(net, modality="text", tokenizer=lambda t: [len(w) for w in t.split()])
        >>> exp = ex.explain(m, ["ab c"], "gradient_x_input", target=0, progress=False)
        >>> line = text_rows([exp])[0].lines[0]
        >>> [t.text for t in line.tokens], line.method
        (['2', '1'], 'gradient_x_input')
    """
    first = explanations[0]
    n = min(len(first), max_samples)
    mask = first.extras.get("attention_mask")
    rows = []
    for i in range(n):
        keep = [j for j in range(first.inputs.shape[1]) if mask is None or int(mask[i, j])]
        texts = [first.tokens[i][j] for j in keep] if first.tokens else [str(j) for j in keep]
        shown = readable_tokens(texts)
        maps = [e.attributions[i, keep].double().numpy() for e in explanations]
        scales = [float(np.abs(a).max()) if len(a) else 0.0 for a in maps]
        if scale == "shared":
            scales = [max(scales)] * len(scales)
        lines = tuple(
            TokenLine(
                e.method,
                tuple(
                    Token(t, s, float(v), _token_color(float(v), sc))
                    for t, s, v in zip(texts, shown, a, strict=True)
                ),
                sc,
            )
            for e, a, sc in zip(explanations, maps, scales, strict=True)
        )
        # one sample: each map as a batch of one (1, tokens)
        agreement = method_agreement([m[None] for m in maps]) if len(maps) > 1 else [np.nan]
        agree = None if np.isnan(agreement[0]) else float(agreement[0])
        rows.append(
            SampleRow(i, panels=(), agreement=agree, lines=lines, **_caption(first, i, labels))
        )
    return rows
