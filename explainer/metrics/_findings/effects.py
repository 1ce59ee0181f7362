"""Counterfactuals: p(class) with a candidate's pattern against a class-independent fill, on
held-out samples, with bootstrap intervals; each measured candidate becomes a Finding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..._checks import as_inputs
from ..._runtime import Runtime, chunks, progress_bar
from ...calls import prepare
from ...explanation import Explanation
from ...model import Model
from .candidates import _special
from .common import _KINDS, CHUNK, CI_LEVEL, RESAMPLES, _Candidate, _Holdout, _Settings
from .result import Finding
from .words import _sentence


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
