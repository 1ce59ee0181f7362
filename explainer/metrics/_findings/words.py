"""The words of a finding and of what was checked."""

from __future__ import annotations

import math

import numpy as np

from ...explanation import Explanation
from .candidates import _classes
from .common import (
    CELLS_PER_SIDE,
    CONSTANT,
    DOMINANCE,
    MIN_CLASS_SAMPLES,
    _Candidate,
    _Holdout,
    _Settings,
)
from .result import Finding


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
