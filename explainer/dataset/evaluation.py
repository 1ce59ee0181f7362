"""Trust scores for a result store: computed on a class-balanced sample, written back.

Per-sample values go to ``metrics/<method>/<metric>`` (NaN where not computed) so reports
can show them per class; the whole :class:`Scores` (curves, randomization steps, settings)
is kept as JSON in the store's attributes so ``ex.report(store)`` shows the trust section
without recomputing anything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._checks import check_autograd_mode, check_seed
from ..errors import InputError, describe
from ..loading import load_model
from ..metrics.scores import Scores
from ..metrics.suite import evaluate as evaluate_explanations
from .store import Store, open_store
from .writer import seal_metrics, write_metric, writer_lock

__all__ = ["evaluate", "evaluate_store", "scores_to_json", "scores_from_json", "stored_scores"]

_ATTR = "trust"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def scores_to_json(scores: Scores, rows: np.ndarray) -> dict[str, Any]:
    """JSON-able form (NaN as null); ``rows`` maps the sample numbers to store indices."""
    return _clean(
        {
            "rows": [dict(r) for r in scores.rows],
            "curves": {
                m: {k: np.asarray(v).tolist() for k, v in c.items()}
                for m, c in scores.curves.items()
            },
            "randomization": scores.randomization,
            "settings": scores.settings,
            "indices": np.asarray(rows).tolist(),
        }
    )


def scores_from_json(data: dict[str, Any]) -> Scores:
    nan = float("nan")
    rows = [{**r, "value": nan if r["value"] is None else r["value"]} for r in data["rows"]]
    curves = {
        m: {k: np.asarray(v, dtype=float) for k, v in c.items()} for m, c in data["curves"].items()
    }
    return Scores(rows, curves, data["randomization"], data["settings"])


def stored_scores(store) -> Scores | None:
    """The Scores ``ex.evaluate(store)`` saved in the store, or None."""
    data = store.group.attrs.get(_ATTR)
    return scores_from_json(data) if data else None


def _model_for(store, model):
    if model is not None:
        return model
    source = store.manifest["model"].get("source")
    if not source:
        raise InputError(
            describe(
                "`model`",
                "the model the store was computed with",
                "nothing (and the store records no model file)",
                "Pass model=... (the same weights as used by explain_dataset).",
            )
        )
    return load_model(
        source["path"], factory=source.get("factory"), modality=source.get("modality")
    )


def evaluate_store(
    store, model=None, metrics="default", sample: int = 64, seed: int = 0, **options: Any
) -> Scores:
    """Trust scores of up to ``sample`` finished samples of ``store`` (balanced over the
    explained classes), written back into the store. See :func:`explainer.evaluate`."""
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
        raise InputError(
            describe("`sample`", "a positive number of samples", repr(sample), "Use e.g. 64.")
        )
    model = _model_for(store, model)
    rows = store.sample(sample, seed)
    if rows.size == 0:
        raise InputError(
            describe(
                "store",
                "finished samples to score",
                "none",
                "Run ex.explain_dataset(...) (or resume it) first.",
            )
        )
    exps = list(store[rows].values())
    scores = evaluate_explanations(exps, model, metrics, seed=seed, **options)
    with writer_lock(store.path):
        writable = open_store(store.path, mode="r+")
        keys = dict.fromkeys((r["method"], r["metric"]) for r in scores.rows if r["mask"] is None)
        for method, metric in keys:
            values = scores.values(method, metric)
            if len(values) == len(rows):
                write_metric(writable, method, metric, rows, values)
        seal_metrics(writable)
        writable.group.attrs[_ATTR] = scores_to_json(scores, rows)
    return scores


def evaluate(
    explanations: Any,
    model: Any = None,
    metrics: Any = "default",
    masks: Any = None,
    seed: int = 0,
    *,
    sample: int = 64,
    **options: Any,
) -> Scores:
    """Trust scores of explanations or of a result store (``ex.evaluate``).

    For explanations this is :func:`explainer.metrics.evaluate` (every option is described
    there). For a store (``ex.open_store``), ``sample`` finished samples, balanced over the
    explained classes, are scored and the scores are written into the store (per-sample
    values and the whole table) for reports; ``model`` may then be omitted when the store
    was written from a model file.
    """
    check_autograd_mode("ex.evaluate")
    seed = check_seed(seed)
    if not isinstance(explanations, Store):
        return evaluate_explanations(explanations, model, metrics, masks, seed, **options)
    if masks is not None:
        raise InputError(
            describe(
                "`masks` with a store",
                "no masks (a store has no ground-truth regions)",
                "masks",
                "Evaluate explanations (store[indices]) with their masks instead.",
            )
        )
    return evaluate_store(explanations, model, metrics, sample, seed, **options)
