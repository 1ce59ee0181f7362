"""Trust scores for a result store: computed on a class-balanced sample, written back.

Per-sample values go to ``metrics/<method>/<metric>`` (NaN where not computed) so reports
can show them per class; the whole :class:`Scores` (curves, randomization steps, settings)
is kept as JSON in the store's attributes so ``ex.report(store)`` shows the trust section
without recomputing anything. The writing is :func:`explainer.dataset.writer.write_trust`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._checks import check_autograd_mode, check_int
from ..errors import InputError, describe
from ..explanation import Explanation
from ..loading import load_model
from ..metrics.road import ROAD_FRACTIONS
from ..metrics.scores import Scores
from ..metrics.settings import EvaluationSettings
from ..metrics.suite import score
from ..model import Model
from .layout import TRUST_KEY, scores_from_json, scores_to_json
from .store import Store
from .writer import write_trust

__all__ = ["evaluate", "evaluate_store", "scores_to_json", "scores_from_json", "stored_scores"]


def stored_scores(store: Store) -> Scores | None:
    """The Scores ``ex.evaluate(store)`` saved in the store, or None."""
    data = store.group.attrs.get(TRUST_KEY)
    return scores_from_json(data) if data else None


def model_for_store(store: Store, model: Any = None, map_location: Any = "cpu") -> Any:
    """``model`` if given, else the model file the store records, loaded onto
    ``map_location`` (InputError when the store records none)."""
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
        source["path"],
        factory=source.get("factory"),
        modality=source.get("modality"),
        map_location=map_location,
    )


def evaluate_store(
    store: Store, settings: EvaluationSettings, model: Any = None, sample: int = 64
) -> Scores:
    """Trust scores of up to ``sample`` finished samples of ``store`` (balanced over the
    explained classes) under checked ``settings``, written back into the store. See
    :func:`evaluate`."""
    sample = check_int(sample, "sample", 1, example=64)
    model = model_for_store(store, model)
    rows = store.sample(sample, settings.seed)
    if rows.size == 0:
        raise InputError(
            describe(
                "store",
                "finished samples to score",
                "none",
                "Run ex.explain_dataset(...) (or resume it) first.",
            )
        )
    scores = score(list(store[rows].values()), model, settings)
    write_trust(store, scores, rows)
    return scores


def evaluate(
    explanations: Explanation | Sequence[Explanation] | Store,
    model: Model | torch.nn.Module | None = None,
    metrics: str | Sequence[str] = "default",
    masks: Any = None,
    seed: int = 0,
    *,
    sample: int = 64,
    features: str = "superpixels",
    n_segments: int = 48,
    fill: str = "blur",
    steps: int = 20,
    n_perturb: int = 16,
    n_sensitivity: int = 4,
    randomization: str = "cascading",
    randomization_steps: int | None = 4,
    road_fractions: Sequence[float] = ROAD_FRACTIONS,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    memory_budget: int | str | None = None,
) -> Scores:
    """Trust scores of explanations, or of a result store: how far each explanation can be
    believed (``ex.evaluate``).

    Args:
        explanations: explanations of the same model (several methods on the same inputs
            are also compared with each other), or a result store (``ex.open_store``): then
            ``sample`` finished samples, balanced over classes, are scored and the scores are
            written into the store (per-sample values and the whole table) for reports.
        model: the model they explain (its fingerprint must match); never changed: the
            randomization check works on a copy. For a store written from a model file it
            may be omitted (the recorded file is loaded).
        metrics: "default" (all groups that apply but ROAD), "all", or a list of
            METRIC_GROUPS (faithfulness, infidelity, robustness, randomization,
            localization, completeness, road, agreement; "default" may be one of them).
        masks: ground-truth masks (N, H, W), or ``{name: masks}`` for several regions:
            booleans, or numbers that are exactly 0 or 1 (soft masks are refused: threshold
            them first, e.g. ``masks > 0.5``). Not with a store.
        seed: seeds every random choice (orderings, perturbations, randomized weights, the
            store's sample): an integer in [0, 2**63 - 1]; None means 0, as for the methods.
        sample: with a store, how many finished samples to score (an integer >= 1).
        features: "superpixels" (SLIC, shared by all methods, ``n_segments``) or "pixels" for
            deletion/insertion on images; tabular data always uses columns.
        n_segments: superpixels per image (at least 2).
        fill: value of removed features: "blur", "mean" or "zeros".
        steps: points of the deletion/insertion curves (minus one).
        n_perturb: perturbations for infidelity (forward passes only: cheap).
        n_sensitivity: perturbations for max-sensitivity (each re-runs the method).
        randomization: "cascading" or "independent" layer randomization.
        randomization_steps: score at most this many randomization steps, evenly spaced and
            always including the fully randomized model (None: every layer).
        road_fractions: shares of the pixels ROAD removes, each in [0, 1).
        params: per-method parameters to re-run a loaded explanation (e.g. its background).
        progress: a progress bar over the explanations (quiet when not on a terminal).
        memory_budget: bytes (or "512MB") that re-run methods and perturbed forward passes
            may use; None for the default.

    Returns:
        :class:`~explainer.metrics.scores.Scores`: tidy rows, curves and verdicts.

    Raises:
        InputError: bad options, masks or explanations (NaN/Inf attributions included), a
            store without finished samples, or a call under ``torch.inference_mode()``.
        ModelError: the model fails, gives non-finite outputs, or has weights on the
            ``meta`` device. StoreError: the store cannot be read or written.

    Example:
        >>> import numpy as np, torch, tempfile, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exps = ex.explain_many(m, torch.randn(8, 3), ["saliency", "gradient_x_input"],
        ...                        progress=False)
        >>> scores = ex.evaluate(exps, m, ["faithfulness", "agreement"], progress=False)
        >>> scores.methods, len(scores.values("saliency", "deletion_gain"))
        (['saliency', 'gradient_x_input'], 8)
        >>> store = ex.explain_dataset(m, torch.randn(8, 3), "saliency",
        ...                            tempfile.mkdtemp() + "/s.zarr", progress=False)
        >>> scores = ex.evaluate(store, m, ["faithfulness"], sample=4, progress=False)
        >>> len(scores.values("saliency", "deletion_gain"))
        4
        >>> gains = ex.open_store(store.path).metrics("saliency")["deletion_gain"]  # NaN: not scored
        >>> int(np.isfinite(gains).sum()), len(gains)
        (4, 8)
    """
    check_autograd_mode("ex.evaluate")
    settings = EvaluationSettings.from_options(
        metrics,
        seed,
        features=features,
        n_segments=n_segments,
        fill=fill,
        steps=steps,
        n_perturb=n_perturb,
        n_sensitivity=n_sensitivity,
        randomization=randomization,
        randomization_steps=randomization_steps,
        road_fractions=road_fractions,
        params=params,
        progress=progress,
        memory_budget=memory_budget,
    )
    if not isinstance(explanations, Store):
        return score(explanations, model, settings, masks)
    if masks is not None:
        raise InputError(
            describe(
                "`masks` with a store",
                "no masks (a store has no ground-truth regions)",
                "masks",
                "Evaluate explanations (store[indices]) with their masks instead.",
            )
        )
    return evaluate_store(explanations, settings, model, sample)
