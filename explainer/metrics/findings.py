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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import as_inputs, check_bool, check_fraction, check_seed
from ..errors import InputError, describe
from ..explanation import Explanation
from ..model import Model, wrap
from ._findings.candidates import (
    _combined_evidence,
    _image_candidates,
    _tabular_candidates,
    _text_candidates,
    _tokens_kept,
)
from ._findings.common import (  # noqa: F401 (the thresholds, importable from here)
    _KINDS,
    CELLS_PER_SIDE,
    CHUNK,
    CI_LEVEL,
    CONSTANT,
    DOMINANCE,
    DOMINANT_ENOUGH,
    MIN_CLASS_SAMPLES,
    RESAMPLES,
    _Holdout,
    _Settings,
)
from ._findings.effects import _measure_all
from ._findings.result import Finding, Findings
from ._findings.words import _checked

__all__ = ["findings", "Findings", "Finding"]


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
