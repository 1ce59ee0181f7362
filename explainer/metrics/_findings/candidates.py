"""Candidates: units (image cells merged into boxes, features, tokens) that dominate a class's
evidence on content constant across the class."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ...explanation import Explanation
from ...model import Model
from ...viz.heatmap import image_to_rgb
from .common import (
    CELLS_PER_SIDE,
    CONSTANT,
    DOMINANCE,
    DOMINANT_ENOUGH,
    MIN_CLASS_SAMPLES,
    _Candidate,
    _Settings,
)


# -- evidence -----------------------------------------------------------------------------
def _combined_evidence(exps: list[Explanation], tokens: np.ndarray | None) -> np.ndarray:
    """(N, *units) evidence: |attribution| (channels summed for images; text: on the
    ``tokens`` kept, (N, L) bool), normalised to sum 1 per sample per method, then the
    element-wise median across methods."""
    maps = []
    for exp in exps:
        a = exp.attributions.detach().double().abs().numpy()
        if exp.modality == "image" and a.ndim == 4:
            a = a.sum(1)  # (N, H, W)
        if tokens is not None:
            a = a * tokens
        total = a.reshape(len(a), -1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))
        maps.append(np.divide(a, total, out=np.zeros_like(a), where=total > 0))
    return np.median(np.stack(maps), axis=0)


def _tokens_kept(exp: Explanation, model: Model) -> np.ndarray | None:
    """Text: (N, L) bool, the tokens that can be findings: neither padding nor the
    tokenizer's special tokens ([CLS], [SEP], whose attributions are not evidence of the
    text). None for other modalities."""
    if exp.modality != "text":
        return None
    mask = exp.extras.get("attention_mask", torch.ones_like(exp.inputs))
    return mask.bool().numpy() & ~_special(exp.inputs, model)


def _threshold(fair: np.ndarray | float) -> np.ndarray:
    """The share that makes a unit dominant, for its fair share (area, 1/features, ...)."""
    return np.minimum(DOMINANCE * np.asarray(fair, dtype=np.float64), DOMINANT_ENOUGH)


def _typical(x: np.ndarray) -> np.ndarray:
    """(*units): the mean distance of the samples ``x`` (N, K, *units), K values per unit
    (channels; 1 for features), to their element-wise median (root mean square over K)."""
    return _distance(x, np.median(x, axis=0)).mean(0)


def _constant(x: np.ndarray, in_class: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """(n_c, *units) bool: where a sample of the class has (nearly) its class's content:
    its distance to the class's element-wise median is within ``CONSTANT`` x ``typical``."""
    mine = _distance(x[in_class], np.median(x[in_class], axis=0))  # (n_c, *units)
    return mine <= CONSTANT * typical


def _distance(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.sqrt(((x - centre) ** 2).mean(1))


def _support(flags: np.ndarray) -> tuple[int, int]:
    return int(flags.sum()), int(len(flags))


def _classes(targets: np.ndarray) -> list[int]:
    values, counts = np.unique(targets, return_counts=True)
    return [int(c) for c, n in zip(values, counts, strict=True) if n >= MIN_CLASS_SAMPLES]


# -- images -------------------------------------------------------------------------------
def _image_candidates(
    exp: Explanation, evidence: np.ndarray, targets: np.ndarray, settings: _Settings, model: Model
) -> list[_Candidate]:
    x = exp.inputs.detach().double().numpy()  # (N, C, H, W)
    h, w = x.shape[2:]
    cell = max(1, round(min(h, w) / CELLS_PER_SIDE))
    area = _cell_sums(np.ones((1, h, w)), cell)[0] / (h * w)  # (gh, gw)
    typical = _typical(x)  # (H, W)
    out = []
    for c in _classes(targets):
        in_class = targets == c
        constant = _constant(x, in_class, typical)  # (n_c, H, W)
        shares = _cell_sums(evidence[in_class] * constant, cell)  # (n_c, gh, gw)
        flagged = (shares >= _threshold(area)).mean(0) >= settings.min_support
        components, count = ndimage.label(flagged)
        steady = constant.mean(0) >= settings.min_support  # (H, W)
        for k in range(1, count + 1):
            box = _box(components == k, cell, steady, (h, w))
            found = _region(exp, x, evidence, constant, in_class, c, box)
            if found.support[0] >= settings.min_support * found.support[1]:
                out.append(found)
    return out


def _cell_sums(maps: np.ndarray, cell: int) -> np.ndarray:
    """(n, H, W) -> (n, ceil(H / cell), ceil(W / cell)) sums over square cells."""
    n, h, w = maps.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((n, gh * cell, gw * cell))
    padded[:, :h, :w] = maps
    return padded.reshape(n, gh, cell, gw, cell).sum((2, 4))


def _box(
    cells: np.ndarray, cell: int, steady: np.ndarray, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the flagged ``cells`` (gh, gw) in pixels, tightened to
    their pixels that are ``steady`` (constant in ``min_support`` of the class)."""
    h, w = size
    pixels = np.repeat(np.repeat(cells, cell, 0), cell, 1)[:h, :w]
    tight = pixels & steady
    rows, cols = np.nonzero(tight if tight.any() else pixels)
    return int(rows.min()), int(cols.min()), int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1


def _region(
    exp: Explanation,
    x: np.ndarray,
    evidence: np.ndarray,
    constant: np.ndarray,
    in_class: np.ndarray,
    c: int,
    box: tuple[int, int, int, int],
) -> _Candidate:
    top, left, height, width = box
    inside = (slice(None), slice(top, top + height), slice(left, left + width))
    area = height * width / (x.shape[2] * x.shape[3])
    share = evidence[in_class][inside].sum((1, 2))
    steady_share = (evidence[in_class] * constant)[inside].sum((1, 2))
    support = _support(steady_share >= _threshold(area))
    place = _place(box, x.shape[2:])
    rows, cols = f"{top}-{top + height - 1}", f"{left}-{left + width - 1}"
    return _Candidate(
        class_index=c,
        where=box,
        share=float(np.median(share)),
        support=support,
        index=(slice(None), slice(None), slice(top, top + height), slice(left, left + width)),
        content=torch.from_numpy(np.median(x[in_class], axis=0)[inside]),
        pattern=f"a {height}×{width} patch at {place} (rows {rows}, columns {cols}), nearly "
        "the same across the class,",
        fill="the average of all images",
        record={"cell_pixels": max(1, round(min(x.shape[2:]) / CELLS_PER_SIDE))},
        preview=_preview(x[in_class].mean(0), box),
    )


def _place(box: tuple[int, int, int, int], size: tuple[int, int]) -> str:
    """Where a box sits, in words: "the top-left corner", "the right edge", "the centre"."""
    top, left, height, width = box
    third = lambda centre, extent: min(2, int(3 * centre / extent))  # noqa: E731
    row = third(top + height / 2, size[0])
    col = third(left + width / 2, size[1])
    vertical, horizontal = ("top", "middle", "bottom")[row], ("left", "centre", "right")[col]
    if row != 1 and col != 1:
        return f"the {vertical}-{horizontal} corner"
    if row == 1 and col == 1:
        return "the centre"
    return f"the {vertical if row != 1 else horizontal} edge"


def _preview(mean_image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The class-mean image (C, H, W) as (H, W, 3) uint8 with the box outlined in yellow."""
    rgb = np.round(image_to_rgb(mean_image.astype(np.float32)) * 255).astype(np.uint8)
    top, left, height, width = box
    bottom, right = top + height - 1, left + width - 1
    colour = np.array([255, 230, 0], dtype=np.uint8)
    for r in (max(top - 1, 0), min(bottom + 1, rgb.shape[0] - 1)):
        rgb[r, max(left - 1, 0) : right + 2] = colour
    for col in (max(left - 1, 0), min(right + 1, rgb.shape[1] - 1)):
        rgb[max(top - 1, 0) : bottom + 2, col] = colour
    return rgb


# -- tabular ------------------------------------------------------------------------------
def _tabular_candidates(
    exp: Explanation, evidence: np.ndarray, targets: np.ndarray, settings: _Settings, model: Model
) -> list[_Candidate]:
    x = exp.inputs.detach().double().numpy()  # (N, F)
    n_features = x.shape[1]
    names = exp.feature_names or tuple(f"feature {j}" for j in range(n_features))
    typical = _typical(x[:, None])  # (F,)
    # a feature constant over every sample tells no class apart: nothing to replace
    varies = x.std(0) > 0
    out = []
    for c in _classes(targets):
        in_class = targets == c
        constant = _constant(x[:, None], in_class, typical)  # (n_c, F)
        dominant = evidence[in_class] >= _threshold(1 / n_features)
        flags = dominant & constant & varies
        for j in np.flatnonzero(flags.mean(0) >= settings.min_support):
            out.append(
                _Candidate(
                    class_index=c,
                    where=(int(j), names[j]),
                    share=float(np.median(evidence[in_class, j])),
                    support=_support(flags[:, j]),
                    index=(slice(None), int(j)),
                    content=torch.tensor(float(np.median(x[in_class, j]))),
                    pattern=f"the feature {names[j]!r} (column {j}), nearly constant across "
                    "the class,",
                    fill="its average over all classes",
                    record={},
                )
            )
    return out


# -- text ---------------------------------------------------------------------------------
def _text_candidates(
    exp: Explanation, evidence: np.ndarray, targets: np.ndarray, settings: _Settings, model: Model
) -> list[_Candidate]:
    usable = _tokens_kept(exp, model)  # (N, L)
    tokens = np.array(
        [
            [t if usable[i, k] else "" for k, t in enumerate(row)]
            for i, row in enumerate(exp.tokens)
        ],
        dtype=object,
    )
    counts = usable.sum(1).clip(min=1)
    out = []
    for c in _classes(targets):
        rows = np.flatnonzero(targets == c)
        for token in sorted({t for t in tokens[rows].ravel() if t}):
            at = tokens[rows] == token  # (n_c, L)
            occurs = at.any(1)
            if occurs.mean() < settings.min_support:
                continue
            share = (evidence[rows] * at).sum(1)[occurs]
            fair = at.sum(1)[occurs] / counts[rows][occurs]
            flags = share >= _threshold(fair)
            if flags.mean() < settings.min_support:
                continue
            k, n = int(occurs.sum()), len(rows)
            out.append(
                _Candidate(
                    class_index=c,
                    where=token,
                    share=float(np.median(share)),
                    support=_support(flags),
                    index=None,
                    content=None,
                    pattern=f"the token {token!r}, which occurs in {k / n:.0%} of the class's "
                    f"samples ({k} of {n}),",
                    fill="nothing (the token removed, the sequence closing up)",
                    record={"occurs": [k, n]},
                )
            )
    return out


def _special(ids: torch.Tensor, model: Model) -> np.ndarray:
    """(N, L) bool: the tokenizer's special tokens ([CLS], [SEP]...), never a finding."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in model.tokenizer.special_ids if model.tokenizer is not None else ():
        special |= ids == s
    return special.numpy()
