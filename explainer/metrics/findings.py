"""Findings: what a model relies on, found without ground-truth masks, then measured.

A *finding* is a piece of the input that (1) draws a dominant share of the evidence in most
samples of one class, (2) has nearly the same content across that class (a watermark, a
border, an ID-like column, a recurring token), and (3) matters: on held-out samples, the
model's probability of the class with it, against a class-independent fill in its place,
is higher by at least ``min_effect``, with a seeded bootstrap 90% confidence interval
above 0. Steps 1-2 only propose candidates; step 3 decides. A finding is a measured effect, not a pattern in a
heatmap.

How each step is done, and why:

* **Evidence** is |attribution| (channels summed for images), normalised to sum 1 per
  sample. The sign of an attribution is relative to the method's reference, which can
  itself be scored as the class (the text demo's all-[PAD] reference is called positive, so
  every token's evidence *for* positive is negative there): detection uses magnitude and
  the counterfactual decides the direction (only a pattern that raises p(class) is kept). Several
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
* **Counterfactual**: the effect of a pattern on p(class) is p(class) with it minus
  p(class) without it, "without" being a class-independent fill: images, the box replaced
  by the mean of those pixels over every held-out and explained sample, each class
  weighted equally; tabular, the feature replaced by its class-balanced mean (same pool);
  text, the token removed (the sequence closes up: the model's reference token is not
  neutral for every model - the demo's [PAD] reads as positive). It is measured twice:
  ``effect``, on the held-out samples of the class (the pattern is there; text: those
  that contain the token), and ``effect_others``, on held-out samples of the other
  classes with the pattern put in (images and tabular: the class's median content pasted
  in; text: the other-class texts that contain the token). The first, the drop of p(class)
  when the pattern is removed, is small when the class has other evidence too (the demo
  CNN still sees the shape when its watermark is removed: p(triangle) falls by 0.02 on
  average), while the second shows the shortcut itself (the triangle watermark pasted into
  held-out images of the other shapes raises p(triangle) by 1.00 on average). A candidate is kept when either is at least ``min_effect`` with its 90%
  bootstrap interval above 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
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

_KINDS = {"image": "region", "tabular": "feature", "text": "token"}


@dataclass(frozen=True)
class Finding:
    """One measured reliance: a piece of the input a class's evidence sits on, and what
    taking it away (or putting it in) does to the model's probability of that class.

    Attributes:
        class_index: the class.
        class_name: its name (its number as text when the model has none).
        kind: "region" (images), "feature" (tabular) or "token" (text).
        where: a region's box ``(top, left, height, width)`` in pixels; a feature's
            ``(index, name)``; the token's text.
        share: median share of the sample's evidence (|attribution|) on it, over the
            class's samples (text: those that contain the token).
        support: ``(k, n)``: in k of n samples it is dominant and its content constant.
        effect: mean drop of p(class) when it is replaced by the class-independent fill
            (text: removed), on held-out samples of the class (text: those that contain
            the token); NaN when there are none.
        ci: the 90% bootstrap confidence interval of ``effect`` (NaN under 2 samples).
        n_holdout: held-out samples ``effect`` was measured on.
        effect_others: on held-out samples of the other classes, the mean rise of
            p(class) when the class's content is put in (images, tabular: pasted, against
            the fill; text: the other-class texts that contain the token, against it
            removed); NaN when there are none.
        ci_others: the 90% bootstrap confidence interval of ``effect_others``.
        n_others: held-out samples ``effect_others`` was measured on.
        sentence: the finding in plain English, claiming nothing beyond these numbers.
        record: how it was measured: fill, held-out set, methods, thresholds.
        preview: images only, the class-mean input with the box drawn, (H, W, 3) uint8.

    Example:
        >>> f = Finding(0, "circle", "region", (2, 2, 6, 6), 0.31, (11, 12), 0.04, (0.01, 0.08),
        ...             16, "...", effect_others=0.2, ci_others=(0.12, 0.29), n_others=48)
        >>> f.to_dict()["where"], f.strength
        ([2, 2, 6, 6], 0.2)
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
    effect_others: float = math.nan
    ci_others: tuple[float, float] = (math.nan, math.nan)
    n_others: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def strength(self) -> float:
        """The larger of the two measured effects (NaN counts as none): findings rank by it."""
        values = [v for v in (self.effect, self.effect_others) if not math.isnan(v)]
        return max(values, default=-math.inf)

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready values (the preview left out; NaN where nothing
        was measured)."""
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
            "effect_others": self.effect_others,
            "ci_others": list(self.ci_others),
            "n_others": self.n_others,
            "sentence": self.sentence,
            "record": dict(self.record),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], preview: np.ndarray | None = None) -> Finding:
        """The finding :meth:`to_dict` gave (None read back as NaN), with ``preview``.

        Example:
            >>> f = Finding(1, "yes", "feature", "age", 0.5, (9, 10), 0.2, (0.1, 0.3), 12, "s")
            >>> Finding.from_dict(f.to_dict()) == f
            True
        """

        def number(v: Any) -> float:
            return math.nan if v is None else float(v)

        where = data["where"]
        return cls(
            class_index=int(data["class_index"]),
            class_name=str(data["class_name"]),
            kind=str(data["kind"]),
            where=tuple(where) if isinstance(where, list) else where,
            share=number(data["share"]),
            support=(int(data["support"][0]), int(data["support"][1])),
            effect=number(data["effect"]),
            ci=(number(data["ci"][0]), number(data["ci"][1])),
            n_holdout=int(data["n_holdout"]),
            sentence=str(data["sentence"]),
            effect_others=number(data.get("effect_others")),
            ci_others=tuple(number(v) for v in data.get("ci_others", (None, None))),
            n_others=int(data.get("n_others", 0)),
            record=dict(data.get("record", {})),
            preview=preview,
        )


@dataclass(frozen=True)
class Findings:
    """What :func:`findings` found, ranked by effect, and what it checked.

    Attributes:
        items: the kept findings, largest effect first (:attr:`Finding.strength`).
        checked: what was checked, in words (classes, units, thresholds, held-out set):
            the answer when nothing is found.
        rejected: candidates that were measured and not kept (neither effect reached
            ``min_effect`` with its confidence interval above 0), for the record.

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

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], previews: Sequence[np.ndarray | None] | None = None
    ) -> Findings:
        """The findings :meth:`to_dict` gave; ``previews``, one per kept finding (or None).

        Example:
            >>> Findings.from_dict(Findings([], "checked 2 classes").to_dict())
            Findings(0 found)
              checked 2 classes
        """
        previews = list(previews) if previews is not None else [None] * len(data["items"])
        return cls(
            items=[Finding.from_dict(d, p) for d, p in zip(data["items"], previews, strict=True)],
            checked=str(data["checked"]),
            rejected=[Finding.from_dict(d) for d in data.get("rejected", [])],
        )

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
    nearly the same across that class; it becomes a finding only when it measurably
    raises p(class) on held-out samples: replacing it by a class-independent fill lowers
    p(class) on the class's samples, or putting it into samples of other classes raises
    it, by at least ``min_effect`` on average with a 90% bootstrap confidence interval
    above 0. The module docstring (:mod:`explainer.metrics.findings`) gives every
    threshold and why.

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
            inputs and targets themselves (each finding's record says so). Texts are
            measured where they contain the token, whatever their label.
        min_support: the share of a class's samples, in (0, 1], in which a candidate must
            be dominant and constant.
        min_effect: the smallest mean change of p(class), in [0, 1], that is kept.
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
    evidence = _combined_evidence(exps, _tokens_kept(first, model))
    targets = first.targets.long().numpy()
    detect = {"image": _image_candidates, "tabular": _tabular_candidates, "text": _text_candidates}
    candidates = detect[first.modality](first, evidence, targets, settings, model)
    measured = _measure_all(candidates, model, held, first, settings, [e.method for e in exps])
    kept = [f for f in measured if _kept(f, settings)]
    kept.sort(key=lambda f: -f.strength)
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
    # images and tabular: where the unit is in a batch (``x[index]``) and the class's
    # typical content there (median over its explained samples); None for tokens
    index: tuple[Any, ...] | None
    content: torch.Tensor | None
    pattern: str  # the pattern half of the sentence
    fill: str  # what replaces it, in words
    record: dict[str, Any]
    preview: np.ndarray | None = None


def _kept(f: Finding, settings: _Settings) -> bool:
    own = f.n_holdout > 1 and f.effect >= settings.min_effect and f.ci[0] > 0
    others = f.n_others > 1 and f.effect_others >= settings.min_effect and f.ci_others[0] > 0
    return own or others


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


# -- counterfactuals ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Effects:
    """Per-sample rises of p(class) due to a pattern: on the class's held-out samples and
    on the other classes'."""

    own: np.ndarray
    others: np.ndarray


def _measure_all(
    candidates: list[_Candidate],
    model: Model,
    held: _Holdout,
    exp: Explanation,
    settings: _Settings,
    methods: Sequence[str],
) -> list[Finding]:
    pool, pool_labels = held.x, held.labels
    if held.given and exp.modality != "text":  # the fill: held-out and explained samples
        pool = torch.cat([held.x, as_inputs(model, exp.inputs, "inputs")])
        pool_labels = np.concatenate([held.labels, exp.targets.long().numpy()])
    runtime = Runtime(progress=settings.progress)
    out = []
    with progress_bar(len(candidates), "findings: counterfactuals", runtime) as bar:
        for found in candidates:
            if found.index is None:
                effects = _token_effects(model, held, found)
            else:
                fill = _balanced_mean(pool[found.index], pool_labels)
                effects = _unit_effects(model, held, found, fill)
            out.append(_finding(found, exp, effects, held.given, settings, methods))
            bar.update(1)
    return out


def _unit_effects(model: Model, held: _Holdout, found: _Candidate, fill: torch.Tensor) -> _Effects:
    """Images and tabular: the class's samples as they are against the unit filled; the
    other classes' with the class's content pasted in against the unit filled."""
    c, index = found.class_index, found.index
    out = []
    for own in (True, False):
        rows = torch.from_numpy(held.labels == c if own else held.labels != c)
        x = held.x[rows.to(held.x.device)]
        if not len(x):
            out.append(np.zeros(0))
            continue
        present = x
        if not own:  # the class's content pasted into the other classes' samples
            present = x.clone()
            present[index] = found.content.to(x)
        absent = x.clone()
        absent[index] = fill.to(x)
        out.append(_scores(model, present)[:, c] - _scores(model, absent)[:, c])
    return _Effects(*out)


def _token_effects(model: Model, held: _Holdout, found: _Candidate) -> _Effects:
    """Text: every held-out text that contains the token, as it is against the token
    removed, split by whether it is labelled with the class."""
    usable = held.mask.bool().cpu().numpy() & ~_special(held.x.cpu(), model)
    at = usable & np.array([[t == found.where for t in row] for row in held.tokens], dtype=bool)
    rows = np.flatnonzero(at.any(1))
    if not len(rows):
        return _Effects(np.zeros(0), np.zeros(0))
    ids, mask = held.x.cpu()[rows], held.mask.cpu()[rows]
    pad = model.tokenizer.pad_id if model.tokenizer is not None else 0
    kept_ids, kept_mask = torch.full_like(ids, pad), torch.zeros_like(mask)
    for r, row in enumerate(at[rows]):  # the sequence closes up over the removed tokens
        keep = torch.from_numpy(~row)
        kept_ids[r, : int(keep.sum())] = ids[r][keep]
        kept_mask[r, : int(keep.sum())] = mask[r][keep]
    c = found.class_index
    rises = _scores(model, ids, mask)[:, c] - _scores(model, kept_ids, kept_mask)[:, c]
    own = held.labels[rows] == c
    return _Effects(rises[own], rises[~own])


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


def _balanced_mean(values: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """The mean of ``values`` (n, ...) over samples, each class weighted equally."""
    rows = [torch.from_numpy(labels == c).to(values.device) for c in np.unique(labels)]
    means = [values[r].mean(0) for r in rows]
    return torch.stack(means).mean(0)


def _mean_and_interval(values: np.ndarray, seed: int) -> tuple[float, tuple[float, float]]:
    """The mean of ``values`` and its ``CI_LEVEL`` percentile bootstrap interval (NaN when
    there are too few values)."""
    n = len(values)
    if n < 2:
        return (float(values.mean()) if n else math.nan), (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(part.stop - part.start, n))].mean(1)
            for part in chunks(RESAMPLES, max(1, 2_000_000 // n))
        ]
    )
    tail = (1 - CI_LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(values.mean()), (float(low), float(high))


def _finding(
    found: _Candidate,
    exp: Explanation,
    effects: _Effects,
    given: bool,
    settings: _Settings,
    methods: Sequence[str],
) -> Finding:
    effect, ci = _mean_and_interval(effects.own, settings.seed)
    others, ci_others = _mean_and_interval(effects.others, settings.seed)
    name = exp.class_label(found.class_index)
    record = {
        **found.record,
        "holdout": "given" if given else "none given: measured on the explained samples",
        "fill": found.fill,
        "methods": list(methods),
        "min_support": settings.min_support,
        "min_effect": settings.min_effect,
    }
    measured = Finding(
        class_index=found.class_index,
        class_name=name,
        kind=_KINDS[exp.modality],
        where=found.where,
        share=found.share,
        support=found.support,
        effect=effect,
        ci=ci,
        n_holdout=len(effects.own),
        sentence="",
        effect_others=others,
        ci_others=ci_others,
        n_others=len(effects.others),
        record=record,
        preview=found.preview,
    )
    return replace(measured, sentence=_sentence(measured, found, given))


def _sentence(f: Finding, found: _Candidate, given: bool) -> str:
    """The finding in words: the pattern, then each measured effect (or why it is not)."""
    k, of = f.support
    text = f.kind == "token"
    name = f.class_name
    pattern = (
        f"for class {name}, {found.pattern} draws a dominant share of the evidence "
        f"(median {f.share:.0%}) in {k} of {of} {'of those' if text else 'samples'} ({k / of:.0%})"
    )
    where = "held-out" if given else "explained"
    if text:
        own = (
            "removing it",
            f"{f.n_holdout} {where} texts of the class that contain it",
            f"no {where} text of the class contains it",
        )
        others = (
            "in texts of other classes, removing it",
            f"{f.n_others} {where} texts of other classes that contain it",
            f"no {where} text of another class contains it",
        )
    else:
        own = (
            f"replacing it by {found.fill}",
            f"{f.n_holdout} {where} samples of the class",
            f"no {where} sample of the class",
        )
        others = (
            f"putting the class's content there (against {found.fill})",
            f"{f.n_others} {where} samples of other classes",
            f"no {where} sample of another class",
        )
    parts = [
        _effect_words(own, f.effect, f.ci, f.n_holdout, name, lowers=True),
        # text: the token is taken out of other classes' texts; else pasted in
        _effect_words(others, f.effect_others, f.ci_others, f.n_others, name, lowers=text),
    ]
    unseen = "" if given else " No held-out set was given: measured on the explained samples."
    return f"{pattern}; " + "; ".join(parts) + "." + unseen


def _effect_words(
    how: tuple[str, str, str],
    effect: float,
    ci: tuple[float, float],
    n: int,
    name: str,
    *,
    lowers: bool,
) -> str:
    """One measured effect in words; ``how``: what was done, on which samples, and what
    to say when there are none."""
    action, on, missing = how
    if n == 0:
        return f"{action}: not measured ({missing})"
    # ``effect`` is the rise of p(class) the pattern causes: taking it away (``lowers``)
    # lowers p(class) by that much, putting it in raises it
    up = effect >= 0
    verb = ("lowers" if up else "raises") if lowers else ("raises" if up else "lowers")
    ci = ci if up else (-ci[1], -ci[0])  # the interval of the amount the sentence states
    interval = "" if n < 2 else f"90% CI {_number(ci[0])} to {_number(ci[1])}, "
    return f"{action} {verb} p({name}) by {_number(abs(effect))} on average ({interval}{on})"


def _number(value: float) -> str:
    """Two decimals; three when two would round a small non-zero value to 0.00."""
    if abs(value) < 0.0005:
        return "0.00"
    return f"{value:.3f}" if abs(value) < 0.005 else f"{value:.2f}"


def _checked(
    exp: Explanation,
    exps: list[Explanation],
    targets: np.ndarray,
    held: _Holdout,
    settings: _Settings,
    n_candidates: int,
    n_kept: int,
) -> str:
    """What was checked, in words: the answer when nothing is found."""
    classes = _classes(targets)
    counts = ", ".join(f"{exp.class_label(c)} {int((targets == c).sum())}" for c in classes)
    skipped = len(np.unique(targets)) - len(classes)
    few = f" ({skipped} with fewer left out)" if skipped else ""
    methods = " + ".join(e.method for e in exps)
    where = (
        f"{len(held.x)} held-out samples"
        if held.given
        else f"the {len(held.x)} explained samples (no held-out set given)"
    )
    return (
        f"Checked {len(classes)} class(es) with ≥ {MIN_CLASS_SAMPLES} samples ({counts}){few} "
        f"of {len(exp)} explained by {methods}; units: {_units(exp, settings)}. "
        f"{_rule(exp, settings)} {n_candidates} candidate(s), measured on {where}: p(class) "
        "with the pattern against a class-independent fill, on the class's samples and on "
        "other classes' samples given the pattern; kept when either mean is ≥ "
        f"{settings.min_effect:g} with its 90% bootstrap CI above 0: {n_kept} kept."
    )


def _units(exp: Explanation, settings: _Settings) -> str:
    if exp.modality == "image":
        h, w = exp.inputs.shape[2:]
        cell = max(1, round(min(h, w) / CELLS_PER_SIDE))
        return (
            f"cells of {cell}×{cell} pixels ({math.ceil(h / cell) * math.ceil(w / cell)} per image)"
        )
    if exp.modality == "tabular":
        return f"each of the {exp.inputs.shape[1]} features"
    return f"every token (by its text) in ≥ {settings.min_support:.0%} of a class's samples"


def _rule(exp: Explanation, settings: _Settings) -> str:
    share = f"≥ min({DOMINANCE:g}× its fair share, 1/3) of the sample's evidence (|attribution|)"
    if exp.modality == "text":
        return (
            f"A token is a candidate when it occurs in ≥ {settings.min_support:.0%} of a "
            f"class's samples and, in ≥ {settings.min_support:.0%} of those, holds {share}."
        )
    return (
        f"A unit is a candidate when, in ≥ {settings.min_support:.0%} of a class's samples, it "
        f"holds {share} on content within {CONSTANT:g}× the typical deviation of the class's "
        "median."
    )
