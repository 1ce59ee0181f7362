"""``ex.evaluate``: trust scores for explanations, as a tidy table with verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._agreement import method_agreement
from .._checks import (
    check_attributions,
    check_autograd_mode,
    check_bool,
    check_choice,
    check_int,
    check_model,
    check_seed,
)
from .._runtime import Runtime, parse_bytes
from ..errors import InputError, describe
from ..explanation import Explanation
from ..methods.segmentation import superpixels
from ..model import Model, wrap
from ..records import canonical
from ..registry import get_method
from ..viz.heatmap import spec_for
from ..viz.sections import group_by_inputs
from .faithfulness import (
    FILLS,
    auc,
    feature_scores,
    fill_reference,
    infidelity,
    perturbation_curves,
)
from .localization import pointing_game, relevance_mass
from .robustness import max_sensitivity
from .sanity import randomization_similarity
from .scores import Scores

__all__ = ["evaluate", "METRIC_GROUPS"]

METRIC_GROUPS = (
    "faithfulness",
    "infidelity",
    "robustness",
    "randomization",
    "localization",
    "completeness",
    "agreement",
)


def _metric_set(metrics: str | Sequence[str]) -> set[str]:
    if metrics == "default" or metrics == "all":
        return set(METRIC_GROUPS)
    chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in chosen:
        check_choice(m, "metrics", ("default", *METRIC_GROUPS))
    return set(METRIC_GROUPS) if "default" in chosen else set(chosen)


def _call_params(exp: Explanation, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to re-run ``exp``'s method: its call parameters, overridden by
    ``given`` (``ex.evaluate(params={method: {...}})``). Tensors that were only recorded by
    shape or hash (saved files, result stores) must be given again."""
    missing = [
        k
        for k, v in exp.params.items()
        if (
            (isinstance(v, str) and v.startswith("tensor("))
            or (isinstance(v, dict) and "sha256" in v)  # a tensor recorded by a result store
        )
        and k not in exp.call_params
        and k not in given
    ]
    if missing:
        raise InputError(
            describe(
                f"Parameters {missing} of the {exp.method} explanation",
                "the tensors it was computed with",
                "only their shapes (saved files and result stores record tensors by shape "
                "and hash)",
                f"Pass params={{{exp.method!r}: {{{missing[0]!r}: tensor}}}} to ex.evaluate.",
            )
        )
    for k, v in given.items():
        recorded = exp.params.get(k)
        if isinstance(recorded, dict) and "sha256" in recorded and canonical(v) != recorded:
            raise InputError(
                describe(
                    f"`params[{exp.method!r}][{k!r}]`",
                    f"the tensor the explanation was computed with ({recorded})",
                    f"{canonical(v)}",
                    "Pass the same tensor (same values, shape and dtype).",
                )
            )
    return {**exp.call_params, **given}


def _masks(masks: Any, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Ground-truth masks for inputs of ``shape`` (N, C, H, W) -> {name: (N, H, W) bool}.

    Boolean masks, or numbers that are all exactly 0 or 1. Soft masks (other values, NaN)
    are refused rather than silently read as True wherever they are not 0.
    """
    if masks is None:
        return {}
    n, hw = shape[0], tuple(shape[2:])
    items = masks.items() if isinstance(masks, Mapping) else [("mask", masks)]
    out = {}
    for name, value in items:
        try:
            t = torch.as_tensor(
                np.asarray(value) if not isinstance(value, torch.Tensor) else value
            ).detach()
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputError(
                describe(
                    f"`masks` ({name})",
                    f"a (N={n}, H, W) boolean tensor",
                    f"{type(value).__name__} that is not a numeric array",
                    "Pass one ground-truth mask per explained image.",
                )
            ) from err
        if t.dtype != torch.bool:
            odd = t[(t != 0) & (t != 1)]  # NaN included
            if len(odd):
                raise InputError(
                    describe(
                        f"`masks` ({name})",
                        "boolean masks (or numbers that are exactly 0 or 1)",
                        f"dtype {t.dtype} with {len(odd)} other value(s), e.g. {odd[0].item()!r}",
                        "Threshold soft masks first, e.g. masks > 0.5.",
                    )
                )
            t = t == 1
        if t.ndim != 3 or len(t) != n or tuple(t.shape[1:]) != hw:
            raise InputError(
                describe(
                    f"`masks` ({name})",
                    f"a (N={n}, {', '.join(map(str, hw))}) boolean tensor",
                    f"shape {tuple(t.shape)}",
                    "Pass one ground-truth mask per explained image.",
                )
            )
        out[str(name)] = t.cpu()
    return out


def evaluate(
    explanations: Explanation | Sequence[Explanation],
    model: Model | torch.nn.Module | None = None,
    metrics: str | Sequence[str] = "default",
    masks: Any = None,
    seed: int = 0,
    *,
    features: str = "superpixels",
    n_segments: int = 48,
    fill: str = "blur",
    steps: int = 20,
    n_perturb: int = 16,
    n_sensitivity: int = 4,
    randomization: str = "cascading",
    randomization_steps: int | None = 4,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    memory_budget: int | str | None = None,
) -> Scores:
    """Trust scores: how far each explanation can be believed.

    Args:
        explanations: explanations of the same model (several methods on the same inputs
            are also compared with each other), or a result store (``ex.open_store``): then
            ``sample`` finished samples, balanced over classes, are scored and the scores are
            written into the store (per-sample values and the whole table) for reports.
        model: the model they explain (its fingerprint must match); never changed: the
            randomization check works on a copy. For a store written from a model file it
            may be omitted (the recorded file is loaded).
        metrics: "default" (all groups that apply) or a list of METRIC_GROUPS.
        masks: ground-truth masks (N, H, W), or ``{name: masks}`` for several regions:
            booleans, or numbers that are exactly 0 or 1 (soft masks are refused: threshold
            them first, e.g. ``masks > 0.5``).
        seed: seeds every random choice (orderings, perturbations, randomized weights): an
            integer in [0, 2**63 - 1]; None means 0, as for the methods.
        features: "superpixels" (SLIC, shared by all methods, ``n_segments``) or "pixels" for
            deletion/insertion on images; tabular data always uses columns.
        fill: value of removed features: "blur", "mean" or "zeros".
        steps: points of the deletion/insertion curves (minus one).
        n_perturb: perturbations for infidelity (forward passes only: cheap).
        n_sensitivity: perturbations for max-sensitivity (each re-runs the method).
        randomization: "cascading" or "independent" layer randomization.
        randomization_steps: score at most this many randomization steps, evenly spaced and
            always including the fully randomized model (None: every layer).
        params: per-method parameters to re-run a loaded explanation (e.g. its background).

    Returns:
        :class:`~explainer.metrics.scores.Scores`: tidy rows, curves and verdicts.

    Raises:
        InputError: bad options, masks or explanations (NaN/Inf attributions included), or
            a call under ``torch.inference_mode()``. ModelError: the model fails, gives
            non-finite outputs, or has weights on the ``meta`` device.
    """
    check_autograd_mode("ex.evaluate")
    seed = check_seed(seed)
    progress = check_bool(progress, "progress")

    if model is None:
        raise InputError(
            describe(
                "`model`",
                "the model the explanations were computed with",
                "None",
                "Pass ex.evaluate(explanations, model).",
            )
        )
    exps = [explanations] if isinstance(explanations, Explanation) else list(explanations)
    if not exps or not all(isinstance(e, Explanation) for e in exps):
        raise InputError(
            describe(
                "`explanations`",
                "Explanation objects",
                repr(explanations),
                "Pass the result of ex.explain(...).",
            )
        )
    model = wrap(model)
    check_model(model)
    for e in exps:
        bad = ~torch.isfinite(e.attributions)
        if bool(bad.any()):
            raise InputError(
                describe(
                    f"`explanations` ({e.method})",
                    "finite attributions",
                    f"{int(bad.sum())} NaN/Inf value(s)",
                    "Scores of NaN attributions mean nothing: re-run ex.explain, which "
                    "refuses to return them.",
                )
            )
    chosen = _metric_set(metrics)
    # Checked before any work, so that a bad mask does not fail after minutes of scoring.
    mask_sets = {
        id(e): _masks(masks, tuple(e.inputs.shape)) if e.modality == "image" else {} for e in exps
    }
    check_choice(features, "features", ("superpixels", "pixels"))
    check_choice(fill, "fill", FILLS)
    check_choice(randomization, "randomization", ("cascading", "independent"))
    steps, n_perturb, n_segments = (
        check_int(steps, "steps", 2),
        check_int(n_perturb, "n_perturb"),
        check_int(n_segments, "n_segments", 2),
    )
    n_sensitivity = check_int(n_sensitivity, "n_sensitivity")
    if randomization_steps is not None:
        randomization_steps = check_int(randomization_steps, "randomization_steps", 2)
    fingerprint = model.fingerprint()
    for e in exps:
        if e.manifest.get("model", {}).get("fingerprint", fingerprint) != fingerprint:
            raise InputError(
                describe(
                    "`model`",
                    f"the model the explanations were computed with (fingerprint {e.manifest['model']['fingerprint']})",
                    f"a model with fingerprint {fingerprint}",
                    "Pass the same trained model (weights) as used by ex.explain.",
                )
            )
    runtime = Runtime(False, 0 if memory_budget is None else parse_bytes(memory_budget))
    scores = Scores(
        settings={
            "model": model.name,
            "features": features,
            "n_segments": n_segments,
            "fill": fill,
            "steps": steps,
            "n_perturb": n_perturb,
            "n_sensitivity": n_sensitivity,
            "randomization": randomization,
            "randomization_steps": randomization_steps,
            "seed": seed,
        }
    )
    segment_cache: dict[int, torch.Tensor | None] = {}
    bar = tqdm(
        total=len(exps), desc="evaluate", disable=None if progress else True, leave=False, delay=0.5
    )
    for exp in exps:
        info = get_method(exp.method)
        call = _call_params(exp, dict((params or {}).get(exp.method, {})))

        def explain_fn(
            m: Model, x: torch.Tensor, t: torch.Tensor, _info=info, _call=call
        ) -> torch.Tensor:
            out = _info.func(m, x, t, runtime=runtime, **_call).attributions
            check_attributions(out, _info.name)
            return out

        x, t, attr = exp.inputs.to(model.device), exp.targets, exp.attributions.to(model.device)
        gen = torch.Generator().manual_seed(seed)
        with model.evaluating():
            if "faithfulness" in chosen:
                _faithfulness(
                    model,
                    exp,
                    x,
                    t,
                    attr,
                    scores,
                    segment_cache,
                    features,
                    n_segments,
                    fill,
                    steps,
                    gen,
                    runtime,
                )
            if "infidelity" in chosen:
                noise_scale = 0.1 * float(x.std())
                scores.add(
                    exp.method,
                    "infidelity",
                    infidelity(model, x, t, attr, n_perturb, noise_scale, gen, runtime),
                )
            if "robustness" in chosen:
                radius = 0.02 * float(x.max() - x.min())
                sens = max_sensitivity(
                    lambda xs, ts: explain_fn(model, xs, ts.to(xs.device)),
                    x,
                    t,
                    attr,
                    radius,
                    n_sensitivity,
                    gen,
                )
                scores.add(exp.method, "max_sensitivity", sens)
        if "randomization" in chosen:
            signed = spec_for(exp.method, exp.params).signed
            steps_out = randomization_similarity(
                model,
                x,
                t.to(x.device),
                attr,
                explain_fn,
                randomization,
                seed,
                signed,
                randomization_steps,
            )
            if steps_out:
                last = (
                    steps_out[-1]
                    if randomization == "cascading"
                    else min(steps_out, key=lambda s: np.nanmean(s["spearman"]))
                )
                scores.add(exp.method, "randomization_spearman", last["spearman"])
                scores.add(exp.method, "randomization_ssim", last["ssim"])
                scores.randomization[exp.method] = [
                    {
                        "layer": s["layer"],
                        "spearman": float(np.nanmean(s["spearman"])),
                        "ssim": float(np.nanmean(s["ssim"]))
                        if not np.isnan(s["ssim"]).all()
                        else None,
                    }
                    for s in steps_out
                ]
        if "localization" in chosen and exp.modality == "image":
            for name, mk in mask_sets[id(exp)].items():
                scores.add(
                    exp.method, "relevance_mass", relevance_mass(exp.attributions, mk), mask=name
                )
                scores.add(exp.method, "mask_fraction", mk.flatten(1).float().mean(1), mask=name)
                scores.add(
                    exp.method, "pointing_game", pointing_game(exp.attributions, mk), mask=name
                )
        if "completeness" in chosen and "relative_gap" in exp.extras:
            scores.add(exp.method, "completeness_gap", exp.extras["relative_gap"])
        bar.update(1)
    bar.close()
    if "agreement" in chosen:
        _agreement(exps, scores)
    return scores


def _faithfulness(
    model, exp, x, t, attr, scores, cache, features, n_segments, fill, steps, gen, runtime
) -> None:
    segments = None
    if exp.modality == "image" and features == "superpixels":
        key = id(exp.inputs)
        if key not in cache:
            cache[key] = torch.stack([superpixels(img, n_segments) for img in exp.inputs])
        segments = cache[key]
    feat, ids = feature_scores(attr.cpu(), segments)
    reference = fill_reference(x, fill)
    curves = {}
    for mode in ("deletion", "insertion"):
        for order in ("morf", "random"):
            c = perturbation_curves(
                model, x, t, feat, ids, reference, mode, order, steps, gen, runtime
            )
            curves[mode if order == "morf" else f"{mode}_random"] = c
    curves["deletion_lerf"] = perturbation_curves(
        model, x, t, feat, ids, reference, "deletion", "lerf", steps, gen, runtime
    )
    a = {k: auc(v) for k, v in curves.items()}
    m = exp.method
    scores.add(m, "deletion_auc", a["deletion"])
    scores.add(m, "deletion_random_auc", a["deletion_random"])
    scores.add(m, "deletion_gain", a["deletion_random"] - a["deletion"])
    scores.add(m, "deletion_lerf_auc", a["deletion_lerf"])
    scores.add(m, "insertion_auc", a["insertion"])
    scores.add(m, "insertion_random_auc", a["insertion_random"])
    scores.add(m, "insertion_gain", a["insertion"] - a["insertion_random"])
    scores.curves[m] = {k: v.numpy() for k, v in curves.items()}


def _agreement(exps: list[Explanation], scores: Scores) -> None:
    for group in group_by_inputs(exps):
        if len(group) < 2:
            continue
        maps = [
            e.attributions.abs().sum(1).numpy() if e.modality == "image" else e.attributions.numpy()
            for e in group
        ]
        for k, e in enumerate(group):
            others = [maps[j] for j in range(len(group)) if j != k]
            pair = [method_agreement([maps[k], o]) for o in others]
            scores.add(e.method, "agreement", np.mean(pair, axis=0))
