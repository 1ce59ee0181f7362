"""Findings: what a model relies on, found without ground-truth masks, then measured.

A *finding* is a piece of the input that (1) draws a dominant share of the evidence in most
samples of one class, (2) has nearly the same content across that class (a watermark, a
border, an ID-like column, a recurring token), and (3) matters: replacing it by a
class-independent fill on held-out samples lowers the model's probability of the class by
at least ``min_effect``, with a seeded bootstrap 90% confidence interval above 0. Steps 1-2
only propose candidates; step 3 decides. A finding is a measured effect, not a pattern in a
heatmap.

How each step is done, and why:

* **Evidence** is |attribution| (channels summed for images), normalised to sum 1 per
  sample. The sign of an attribution is relative to the method's reference, which can
  itself be scored as the class (the text demo's all-[PAD] reference is called positive, so
  every token's evidence *for* positive is negative there): detection uses magnitude and
  the counterfactual decides the direction (only a *drop* of p(class) is kept). Several
  explanations of the same inputs (several methods) are combined by the element-wise
  median of their normalised maps (with two methods: their mean), so that a region needs
  the evidence of at least half of them.
* **Dominant**: a unit (an image cell, a feature, a token) holds at least 4x its fair
  share of the sample's evidence (its area; 1 / features; its count / tokens) - or a third
  of it, whichever is smaller (a 6-token text's fair share is 17%; 4x would ask for 67%).
* **Constant content**: a sample's content in a unit is within 0.25x the *typical
  deviation* (the mean distance of all explained samples to their element-wise median)
  of its class's element-wise median. The median, not the mean, so that the 10-15% of a
  class that lack a watermark do not blur it; the scale is the unit's own, so a noisy
  background and a flat one are judged alike.
* **Support**: the samples where a unit is both dominant and constant; a unit is a
  candidate when they are at least ``min_support`` of the class's samples (text: of the
  samples that contain the token, which must itself occur in ``min_support`` of them).
* **Images**: cells of ``round(min(H, W) / 16)`` pixels (4x4 on 64x64 images), the
  evidence of a cell counted on its constant pixels only (so that a watermark that
  straddles cells is still seen in each); adjacent flagged cells are merged into one box,
  tightened to the pixels that are constant in ``min_support`` of the class.
* **Counterfactual**: images, the box replaced by the mean of those pixels over every
  held-out and explained sample, each class weighted equally; tabular, the feature
  replaced by its class-balanced mean (same pool); text, the token removed (the sequence
  closes up: the model's reference token is not neutral for every model - the demo's
  [PAD] reads as positive). Measured on the held-out samples of the class (images,
  tabular); for text on every held-out text that contains the token, whatever its label:
  a token is present or not, removing it means something only where it occurs, and a text
  of another class that carries the token is where a shortcut shows most (the record
  counts how many are labelled with the class).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import torch
from scipy import ndimage

from .._checks import as_inputs, check_bool, check_fraction, check_seed
from .._runtime import Runtime, chunks, progress_bar
from ..calls import prepare
from ..errors import InputError, describe
from ..explanation import Explanation
from ..model import Model, wrap
from ..viz.heatmap import encode_png, image_to_rgb, png_data_uri

__all__ = ["findings", "Findings", "Finding"]

DOMINANCE = 4.0  # a unit is dominant at 4x its fair share of the evidence ...
DOMINANT_ENOUGH = 1 / 3  # ... or at a third of it, whichever is smaller
CONSTANT = 0.25  # content within 0.25x the typical deviation of the class's median
CELLS_PER_SIDE = 16  # image cells: round(min(H, W) / 16) pixels
MIN_CLASS_SAMPLES = 3  # fewer explained samples of a class: nothing is called consistent
CI_LEVEL = 0.90
RESAMPLES = 2000
CHUNK = 256  # held-out rows per forward pass

Replace = Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor]
_KINDS = {"image": "region", "tabular": "feature", "text": "token"}


@dataclass(frozen=True)
class Finding:
    """One measured reliance: a piece of the input a class's evidence sits on, and what
    replacing it does to the model's probability of that class.

    Attributes:
        class_index: the class.
        class_name: its name (its number as text when the model has none).
        kind: "region" (images), "feature" (tabular) or "token" (text).
        where: a region's box ``(top, left, height, width)`` in pixels; a feature's
            ``(index, name)``; the token's text.
        share: median share of the sample's evidence (|attribution|) on it, over the
            class's samples (text: those that contain the token).
        support: ``(k, n)``: in k of n samples it is dominant and its content constant.
        effect: mean drop of p(class) on the held-out samples when it is replaced.
        ci: the 90% bootstrap confidence interval of ``effect``.
        n_holdout: held-out samples the effect was measured on.
        sentence: the finding in plain English, claiming nothing beyond these numbers.
        record: how it was measured: fill, held-out set, methods, thresholds.
        preview: images only, the class-mean input with the box drawn, (H, W, 3) uint8.
    """

    class_index: int
    class_name: str
    kind: str
    where: Any
    share: float
    support: tuple[int, int]
    effect: float
    ci: tuple[float, float]
    n_holdout: int
    sentence: str
    record: dict[str, Any] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready values (the preview left out)."""
        where = list(self.where) if isinstance(self.where, tuple) else self.where
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "kind": self.kind,
            "where": where,
            "share": self.share,
            "support": list(self.support),
            "effect": self.effect,
            "ci": list(self.ci),
            "n_holdout": self.n_holdout,
            "sentence": self.sentence,
            "record": dict(self.record),
        }


@dataclass(frozen=True)
class Findings:
    """What :func:`findings` found, ranked by effect, and what it checked.

    Attributes:
        items: the kept findings, largest effect first.
        checked: what was checked, in words (classes, units, thresholds, held-out set):
            the answer when nothing is found.
        rejected: candidates that were measured and not kept (effect below
            ``min_effect``, or a confidence interval reaching 0), for the record.

    Example:
        >>> empty = Findings([], "checked 2 classes")
        >>> len(empty), list(empty), "checked 2 classes" in empty._repr_html_()
        (0, [], True)
    """

    items: list[Finding]
    checked: str
    rejected: list[Finding] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

    def __repr__(self) -> str:
        lines = [f"Findings({len(self.items)} found)"]
        lines += [f"  - {f.sentence}" for f in self.items] or [f"  {self.checked}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: the findings, the rejected candidates, what was checked."""
        return {
            "items": [f.to_dict() for f in self.items],
            "rejected": [f.to_dict() for f in self.rejected],
            "checked": self.checked,
        }

    def _repr_html_(self) -> str:
        rows = [
            {
                "sentence": f.sentence,
                "image": None if f.preview is None else png_data_uri(encode_png(f.preview, 2)),
                "class_name": f.class_name,
            }
            for f in self.items
        ]
        return _HTML.render(rows=rows, checked=self.checked)


_HTML = jinja2.Environment(
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
).from_string(
    """<div class="explainer-findings">
{% if rows %}<p><b>{{ rows|length }} finding(s)</b></p><ol>
{% for r in rows %}<li>{% if r.image %}<img src="{{ r.image }}" alt="class-mean input of \
{{ r.class_name }} with the region drawn" style="image-rendering: pixelated; \
vertical-align: middle; margin-right: 8px">{% endif %}{{ r.sentence }}</li>
{% endfor %}</ol>{% else %}<p><b>No finding.</b></p>{% endif %}
<p><small>{{ checked }}</small></p></div>"""
)


# -- entry point --------------------------------------------------------------------------
def findings(
    explanations: Explanation | Sequence[Explanation],
    model: Model | torch.nn.Module,
    holdout: tuple[Any, Any] | None = None,
    *,
    min_support: float = 0.6,
    min_effect: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> Findings:
    """Find what the model relies on in a batch - a watermark, a border, an ID-like column,
    a recurring token - without ground-truth masks, and measure it.

    A candidate is a piece of the input (image region, feature, token) that draws a
    dominant share of the evidence in most samples of a class *and* whose content is
    nearly the same across that class; it becomes a finding only when replacing it by a
    class-independent fill on held-out samples lowers p(class) by at least ``min_effect``
    on average, with a 90% bootstrap confidence interval above 0. The module docstring
    (:mod:`explainer.metrics.findings`) gives every threshold and why.

    Args:
        explanations: an :class:`~explainer.explanation.Explanation`, or several of the
            same inputs and targets (several methods: their evidence is combined by the
            element-wise median of the normalised maps). Samples are grouped into classes
            by their explained ``targets``.
        model: the wrapped model (:func:`~explainer.model.wrap`) or the ``nn.Module``
            explained (wrapped with the explanation's modality and class names).
        holdout: ``(inputs, labels)`` to measure the effects on: images (n, C, H, W),
            rows (n, features), or texts (a list of strings, with a tokenizer on the
            model, or token ids (n, L)); labels (n,) class indices. None: the explained
            inputs and targets themselves (each finding's record says so).
        min_support: the share of a class's samples, in (0, 1], in which a candidate must
            be dominant and constant.
        min_effect: the smallest mean drop of p(class), in [0, 1], that is kept.
        seed: seed of the bootstrap.
        progress: show a progress bar over the counterfactual passes.

    Returns:
        :class:`Findings`: the kept findings ranked by effect, the rejected candidates, and
        what was checked.

    Raises:
        InputError: explanations that are not of the same inputs and targets, of a
            modality other than image, tabular or text, a holdout of the wrong shape or
            labels, ``min_support`` outside (0, 1], ``min_effect`` outside [0, 1].

    Example:
        >>> import torch, explainer as ex
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(40, 3)
        >>> x[:, 2] = (x[:, 0] > 0).float()  # column 2 copies the class: a leak
        >>> net = torch.nn.Linear(3, 2)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[0.0, 0.0, -4.0], [0.0, 0.0, 4.0]]))
        ...     _ = net.bias.copy_(torch.tensor([2.0, -2.0]))
        >>> m = ex.wrap(net, modality="tabular", class_names=["no", "yes"])
        >>> exp = ex.explain(m, x, "gradient_x_input", target=(x[:, 0] > 0).long(), progress=False)
        >>> found = ex.findings(exp, m)
        >>> [(f.class_name, f.where) for f in found]
        [('yes', (2, 'feature 2'))]
    """
    exps = _as_explanations(explanations)
    first = exps[0]
    settings = _Settings(
        min_support=_check_support(min_support),
        min_effect=check_fraction(min_effect, "min_effect"),
        seed=check_seed(seed),
        progress=check_bool(progress, "progress"),
    )
    model = _as_model(model, first)
    held = _as_holdout(holdout, first, model)
    evidence = _combined_evidence(exps)
    targets = first.targets.long().numpy()
    detect = {"image": _image_candidates, "tabular": _tabular_candidates, "text": _text_candidates}
    candidates = detect[first.modality](first, evidence, targets, settings, model)
    measured = _measure_all(candidates, model, held, first, settings, [e.method for e in exps])
    kept = [f for f in measured if _kept(f, settings)]
    kept.sort(key=lambda f: -f.effect)
    rejected = [f for f in measured if not _kept(f, settings)]
    checked = _checked(first, exps, targets, held, settings, len(candidates), len(kept))
    return Findings(kept, checked, rejected)


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
    replace: Replace | None  # images and tabular: (x, pool, pool labels) -> x replaced
    describe: str  # the pattern half of the sentence
    fill: str  # what replaces it, in words
    record: dict[str, Any]
    preview: np.ndarray | None = None


def _kept(f: Finding, settings: _Settings) -> bool:
    return f.n_holdout > 1 and f.effect >= settings.min_effect and f.ci[0] > 0


# -- validation ---------------------------------------------------------------------------
def _check_support(value: Any) -> float:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if not ok or not 0 < float(value) <= 1:
        raise InputError(
            describe(
                "`min_support`",
                "a share of a class's samples in (0, 1]",
                repr(value),
                "Pass e.g. min_support=0.6 (a candidate must hold in 60% of the samples).",
            )
        )
    return float(value)


def _as_explanations(explanations: Any) -> list[Explanation]:
    exps = [explanations] if isinstance(explanations, Explanation) else explanations
    if not isinstance(exps, Sequence) or not exps:
        raise InputError(
            describe(
                "`explanations`",
                "an Explanation or a non-empty list of them on the same inputs",
                type(explanations).__name__,
                "Pass ex.explain(model, x, method) or a list of such results.",
            )
        )
    for k, exp in enumerate(exps):
        if not isinstance(exp, Explanation) or exp.modality not in _KINDS:
            got = getattr(exp, "modality", type(exp).__name__)
            raise InputError(
                describe(
                    f"`explanations[{k}]`",
                    "an Explanation of images, tabular rows or text (one input each)",
                    repr(got),
                    "Explain one input per call (ex.explain on a tensor or texts).",
                )
            )
    first = exps[0]
    for k, exp in enumerate(exps[1:], start=1):
        same = (
            exp.modality == first.modality
            and exp.inputs.shape == first.inputs.shape
            and bool(torch.equal(exp.inputs, first.inputs))
            and bool(torch.equal(exp.targets, first.targets))
        )
        if not same:
            raise InputError(
                describe(
                    f"`explanations[{k}]`",
                    f"the inputs and targets of explanations[0] ({first.modality}, "
                    f"{len(first)} samples)",
                    f"{exp.method} on other inputs or targets ({exp.modality}, {len(exp)} samples)",
                    "Pass explanations of the same batch, e.g. ex.explain_many(model, x, methods).",
                )
            )
    return list(exps)


def _as_model(model: Any, exp: Explanation) -> Model:
    if isinstance(model, torch.nn.Module):
        return wrap(model, class_names=exp.class_names, modality=exp.modality)
    if not isinstance(model, Model) or model.modality != exp.modality:
        got = model.modality if isinstance(model, Model) else type(model).__name__
        raise InputError(
            describe(
                "`model`",
                f"the wrapped {exp.modality} model the explanations were computed with",
                repr(got),
                "Pass the model given to ex.explain.",
            )
        )
    return model


def _as_holdout(holdout: Any, exp: Explanation, model: Model) -> _Holdout:
    if holdout is None:
        if exp.modality == "text":
            mask = exp.extras.get("attention_mask", torch.ones_like(exp.inputs))
            return _Holdout(exp.inputs, exp.targets.long().numpy(), False, mask, exp.tokens)
        return _Holdout(as_inputs(model, exp.inputs, "inputs"), exp.targets.long().numpy(), False)
    if not isinstance(holdout, tuple) or len(holdout) != 2:
        raise InputError(
            describe(
                "`holdout`",
                "a tuple (inputs, labels), or None",
                type(holdout).__name__,
                "Pass holdout=(x_test, y_test).",
            )
        )
    inputs, labels = holdout
    if exp.modality == "text":
        held = _text_holdout(inputs, model)
    else:
        x = as_inputs(model, inputs, "holdout[0]")
        if tuple(x.shape[1:]) != tuple(exp.inputs.shape[1:]):
            raise InputError(
                describe(
                    "`holdout[0]`",
                    f"samples of the explained shape {tuple(exp.inputs.shape[1:])}",
                    f"{tuple(x.shape[1:])}",
                    "Pass held-out inputs prepared like the explained ones.",
                )
            )
        held = _Holdout(x, np.zeros(0, dtype=np.int64), True)
    n = len(held.x)
    return _Holdout(held.x, _labels(labels, n, exp.scores.shape[1]), True, held.mask, held.tokens)


def _text_holdout(inputs: Any, model: Model) -> _Holdout:
    strings = isinstance(inputs, Sequence) and all(isinstance(t, str) for t in inputs)
    if strings and inputs and model.tokenizer is not None:
        ids, mask = model.tokenizer.encode(list(inputs))
    elif isinstance(inputs, torch.Tensor) and inputs.ndim == 2 and not inputs.is_floating_point():
        ids = inputs.long()
        pad = model.tokenizer.pad_id if model.tokenizer is not None else None
        mask = (ids != pad).long() if pad is not None else torch.ones_like(ids)
    else:
        raise InputError(
            describe(
                "`holdout[0]`",
                "texts (a non-empty list of strings, with a tokenizer on the model) or "
                "token ids (n, L)",
                type(inputs).__name__ if not strings else "strings and a model without tokenizer",
                "Pass holdout=(texts, labels) and wrap the model with tokenizer=.",
            )
        )
    return _Holdout(ids, np.zeros(0, dtype=np.int64), True, mask, _tokens_of(ids, model))


def _labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    values = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    ok = (
        values.shape == (n,)
        and np.issubdtype(values.dtype, np.integer)
        and (n == 0 or (values.min() >= 0 and values.max() < n_classes))
    )
    if not ok:
        raise InputError(
            describe(
                "`holdout[1]`",
                f"{n} integer class labels in [0, {n_classes - 1}], one per held-out sample",
                f"shape {values.shape}, dtype {values.dtype}",
                "Pass the held-out labels as a (n,) tensor of class indices.",
            )
        )
    return values.astype(np.int64)


def _tokens_of(ids: torch.Tensor, model: Model) -> tuple[tuple[str, ...], ...]:
    if model.tokenizer is None:
        return tuple(tuple(str(i) for i in row.tolist()) for row in ids)
    return tuple(tuple(model.tokenizer.tokens(row.tolist())) for row in ids)


# -- evidence -----------------------------------------------------------------------------
def _combined_evidence(exps: list[Explanation]) -> np.ndarray:
    """(N, *units) evidence: |attribution| (channels summed for images), normalised to sum
    1 per sample per method, then the element-wise median across methods."""
    maps = []
    for exp in exps:
        a = exp.attributions.detach().double().abs().numpy()
        if exp.modality == "image" and a.ndim == 4:
            a = a.sum(1)  # (N, H, W)
        if exp.modality == "text":
            a = a * _attributable(exp).numpy()
        total = a.reshape(len(a), -1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))
        maps.append(np.divide(a, total, out=np.zeros_like(a), where=total > 0))
    return np.median(np.stack(maps), axis=0)


def _attributable(exp: Explanation) -> torch.Tensor:
    """(N, L) bool: a text explanation's tokens that are not padding (special tokens are
    never attributed: their evidence is 0)."""
    mask = exp.extras.get("attention_mask")
    return torch.ones_like(exp.inputs, dtype=torch.bool) if mask is None else mask.bool()


def _threshold(fair: np.ndarray | float) -> np.ndarray:
    """The share that makes a unit dominant, for its fair share (area, 1/features, ...)."""
    return np.minimum(DOMINANCE * np.asarray(fair, dtype=np.float64), DOMINANT_ENOUGH)


def _constant(x: np.ndarray, in_class: np.ndarray) -> np.ndarray:
    """(n_c, *units) bool: where a sample of the class has (nearly) its class's content.

    ``x`` (N, K, *units), K values per unit (channels; 1 for features). Distance to the
    class's element-wise median (root mean square over the K values) within
    ``CONSTANT`` x the typical distance of all samples to theirs."""
    typical = _distance(x, np.median(x, axis=0)).mean(0)  # (*units)
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
    out = []
    for c in _classes(targets):
        in_class = targets == c
        constant = _constant(x, in_class)  # (n_c, H, W)
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
        replace=_fill_box(box),
        describe=f"a {height}×{width} patch at {place} (rows {rows}, columns {cols})",
        fill="the average of all images",
        record={"cell_pixels": max(1, round(min(x.shape[2:]) / CELLS_PER_SIDE))},
        preview=_preview(x[in_class].mean(0), box),
    )


def _fill_box(box: tuple[int, int, int, int]) -> Replace:
    top, left, height, width = box

    def replace(x: torch.Tensor, pool: torch.Tensor, pool_labels: np.ndarray) -> torch.Tensor:
        region = pool[:, :, top : top + height, left : left + width]
        out = x.clone()
        out[:, :, top : top + height, left : left + width] = _balanced_mean(region, pool_labels)
        return out

    return replace


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


def _balanced_mean(values: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """The mean of ``values`` (n, ...) over samples, each class weighted equally."""
    means = [values[torch.from_numpy(labels == c)].mean(0) for c in np.unique(labels)]
    return torch.stack(means).mean(0)


# -- tabular ------------------------------------------------------------------------------
def _tabular_candidates(
    exp: Explanation, evidence: np.ndarray, targets: np.ndarray, settings: _Settings, model: Model
) -> list[_Candidate]:
    x = exp.inputs.detach().double().numpy()  # (N, F)
    n_features = x.shape[1]
    names = exp.feature_names or tuple(f"feature {j}" for j in range(n_features))
    out = []
    for c in _classes(targets):
        in_class = targets == c
        constant = _constant(x[:, None], in_class)  # (n_c, F)
        # a feature constant over every sample tells no class apart: nothing to replace
        varies = x.std(0) > 0
        dominant = evidence[in_class] >= _threshold(1 / n_features)
        flags = dominant & constant & varies
        for j in np.flatnonzero(flags.mean(0) >= settings.min_support):
            out.append(
                _Candidate(
                    class_index=c,
                    where=(int(j), names[j]),
                    share=float(np.median(evidence[in_class, j])),
                    support=_support(flags[:, j]),
                    replace=_fill_feature(int(j)),
                    describe=f"the feature {names[j]!r} (column {j}), nearly constant across "
                    "the class,",
                    fill="its average over all classes",
                    record={},
                )
            )
    return out


def _fill_feature(j: int) -> Replace:
    def replace(x: torch.Tensor, pool: torch.Tensor, pool_labels: np.ndarray) -> torch.Tensor:
        out = x.clone()
        out[:, j] = _balanced_mean(pool[:, j], pool_labels)
        return out

    return replace


# -- text ---------------------------------------------------------------------------------
def _text_candidates(
    exp: Explanation, evidence: np.ndarray, targets: np.ndarray, settings: _Settings, model: Model
) -> list[_Candidate]:
    usable = _attributable(exp).numpy() & ~_special(exp.inputs, model)  # (N, L)
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
                    replace=None,
                    describe=f"the token {token!r}, which occurs in {k / n:.0%} of the class's "
                    f"samples ({k} of {n}),",
                    fill="",
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


# -- counterfactuals ----------------------------------------------------------------------
def _measure_all(
    candidates: list[_Candidate],
    model: Model,
    held: _Holdout,
    exp: Explanation,
    settings: _Settings,
    methods: Sequence[str] = (),
) -> list[Finding]:
    pool, pool_labels = held.x, held.labels
    if held.given and exp.modality != "text":  # the fill: held-out and explained samples
        pool = torch.cat([held.x, as_inputs(model, exp.inputs, "inputs")])
        pool_labels = np.concatenate([held.labels, exp.targets.long().numpy()])
    runtime = Runtime(progress=settings.progress)
    out = []
    with progress_bar(len(candidates), "findings: counterfactuals", runtime) as bar:
        for found in candidates:
            if found.replace is None:
                drops, labelled = _token_drops(model, held, found)
            else:
                rows = torch.from_numpy(held.labels == found.class_index).to(held.x.device)
                x = held.x[rows]
                changed = found.replace(x, pool, pool_labels) if len(x) else x
                drops = _scores(model, x) - _scores(model, changed) if len(x) else np.zeros((0, 1))
                drops, labelled = drops[:, found.class_index] if len(x) else np.zeros(0), len(x)
            out.append(_finding(found, exp, drops, labelled, held.given, settings, methods))
            bar.update(1)
    return out


def _scores(model: Model, x: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """(n, classes) scores of ``x`` (text: ids with their attention ``mask``), in chunks."""
    parts = []
    for part in chunks(len(x), CHUNK):
        if mask is None:
            parts.append(model.predict(x[part]))
        else:
            call = prepare(model, x[part], {"attention_mask": mask[part]})
            parts.append(call.model.predict(call.x))
    return torch.cat(parts).double().numpy()


def _token_drops(model: Model, held: _Holdout, found: _Candidate) -> tuple[np.ndarray, int]:
    """Drops of p(class) when the token is removed from every held-out text containing it,
    and how many of those texts are labelled with the class."""
    usable = held.mask.bool().cpu().numpy() & ~_special(held.x.cpu(), model)
    at = (
        np.array([[t == found.where for t in row] for row in held.tokens], dtype=bool).reshape(
            usable.shape
        )
        & usable
    )
    rows = np.flatnonzero(at.any(1))
    if not len(rows):
        return np.zeros(0), 0
    ids, mask = held.x.cpu()[rows], held.mask.cpu()[rows]
    pad = model.tokenizer.pad_id if model.tokenizer is not None else 0
    kept_ids = torch.full_like(ids, pad)
    kept_mask = torch.zeros_like(mask)
    for r, row in enumerate(at[rows]):
        keep = torch.from_numpy(~row)
        kept_ids[r, : int(keep.sum())] = ids[r][keep]
        kept_mask[r, : int(keep.sum())] = mask[r][keep]
    c = found.class_index
    drops = _scores(model, ids, mask)[:, c] - _scores(model, kept_ids, kept_mask)[:, c]
    return drops, int((held.labels[rows] == c).sum())


def _bootstrap(drops: np.ndarray, seed: int) -> tuple[float, float]:
    """The ``CI_LEVEL`` percentile bootstrap interval of the mean of ``drops``."""
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            drops[rng.integers(0, len(drops), size=(step.stop - step.start, len(drops)))].mean(1)
            for step in chunks(RESAMPLES, max(1, 2_000_000 // len(drops)))
        ]
    )
    tail = (1 - CI_LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _finding(
    found: _Candidate,
    exp: Explanation,
    drops: np.ndarray,
    labelled: int,
    given: bool,
    settings: _Settings,
    methods: Sequence[str],
) -> Finding:
    n = len(drops)
    effect = float(drops.mean()) if n else math.nan
    ci = _bootstrap(drops, settings.seed) if n > 1 else (math.nan, math.nan)
    name = exp.class_label(found.class_index)
    record = {
        **found.record,
        "holdout": "given" if given else "none given: measured on the explained samples",
        "fill": found.fill or "the token removed (the sequence closes up)",
        "methods": list(methods),
        "min_support": settings.min_support,
        "min_effect": settings.min_effect,
    }
    if found.replace is None:
        record["texts_labelled_with_class"] = labelled
    return Finding(
        class_index=found.class_index,
        class_name=name,
        kind=_KINDS[exp.modality],
        where=found.where,
        share=found.share,
        support=found.support,
        effect=effect,
        ci=ci,
        n_holdout=n,
        sentence=_sentence(found, name, effect, ci, n, labelled, given),
        record=record,
        preview=found.preview,
    )


def _sentence(
    found: _Candidate,
    name: str,
    effect: float,
    ci: tuple[float, float],
    n: int,
    labelled: int,
    given: bool,
) -> str:
    k, of = found.support
    text = found.replace is None
    pattern = (
        f"for class {name}, {found.describe} draws a dominant share of the evidence "
        f"(median {found.share:.0%}) in {k} of {of} {'of those' if text else 'samples'} "
        f"({k / of:.0%})"
    )
    where = "held-out" if given else "explained (no held-out set given)"
    if n == 0:
        missing = "no held-out text contains it" if text else f"no {where} sample of the class"
        return f"{pattern}; not measured: {missing}."
    change = f"{'lowers' if effect >= 0 else 'raises'} p({name}) by {abs(effect):.2f} on average"
    interval = "" if n < 2 else f"90% CI {ci[0]:.2f} to {ci[1]:.2f}, "
    if text:
        on = f"{n} {where} texts containing it, {labelled} of them labelled {name}"
        return f"{pattern}; removing it {change} ({interval}{on})."
    return f"{pattern}; replacing it by {found.fill} {change} ({interval}{n} {where} samples of the class)."


def _checked(
    exp: Explanation,
    exps: list[Explanation],
    targets: np.ndarray,
    held: _Holdout,
    settings: _Settings,
    n_candidates: int,
    n_kept: int,
) -> str:
    classes = _classes(targets)
    counts = ", ".join(f"{exp.class_label(c)} {int((targets == c).sum())}" for c in classes)
    methods = " + ".join(e.method for e in exps)
    if exp.modality == "image":
        h, w = exp.inputs.shape[2:]
        cell = max(1, round(min(h, w) / CELLS_PER_SIDE))
        units = f"cells of {cell}×{cell} pixels ({-(-h // cell) * -(-w // cell)} per image)"
    elif exp.modality == "tabular":
        units = f"each of the {exp.inputs.shape[1]} features"
    else:
        units = f"every token (by its text) that occurs in ≥ {settings.min_support:.0%} of a class's samples"
    where = (
        f"{len(held.x)} held-out samples"
        if held.given
        else (f"the {len(held.x)} explained samples (no held-out set given)")
    )
    return (
        f"Checked {len(classes)} class(es) with ≥ {MIN_CLASS_SAMPLES} samples ({counts}) of "
        f"{len(exp)} explained by {methods}; units: {units}. A unit is a candidate when, in ≥ "
        f"{settings.min_support:.0%} of a class's samples, it holds ≥ min({DOMINANCE:g}× its fair "
        f"share, 1/3) of the sample's evidence (|attribution|) on content within {CONSTANT:g}× the "
        f"typical deviation of the class's median. {n_candidates} candidate(s), measured on "
        f"{where}; kept when the mean drop of p(class) ≥ {settings.min_effect:g} and its 90% "
        f"bootstrap CI excludes 0: {n_kept} kept."
    )
