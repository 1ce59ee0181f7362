"""``ex.evaluate``: trust scores for explanations, as a tidy table with verdicts.

Table-driven: every metric group of METRIC_GROUPS is one small function. The groups that
score one explanation at a time read a :class:`_Job` (the explanation, its tensors on the
model's device, a generator seeded once per explanation and shared by the groups in table
order, the checked :class:`~explainer.metrics.settings.EvaluationSettings`) and add rows
to the :class:`Scores`; agreement compares the explanations of the same inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._agreement import method_agreement
from .._checks import check_attributions, check_autograd_mode, check_model
from .._runtime import accumulation_dtype
from ..calls import REFERENCE_PARAMETERS, spread_tokens, text_scoring
from ..errors import InputError, describe
from ..explanation import Explanation
from ..inputs import InputLayout
from ..methods.segmentation import superpixels
from ..model import Model, wrap
from ..multi_input import MultiInputExplanation
from ..records import canonical
from ..registry import get_method
from ..text import per_token
from ..viz.heatmap import spec_for
from ..viz.sections import group_by_inputs
from .faithfulness import (
    auc,
    feature_scores,
    fill_reference,
    infidelity_noise,
    infidelity_of,
    perturbation_curves,
    perturbed_outputs,
)
from .localization import pointing_game, relevance_mass
from .road import NOISE, road_curves
from .robustness import max_sensitivity
from .sanity import randomization_similarity
from .scores import Scores
from .settings import METRIC_GROUPS, EvaluationSettings

__all__ = ["score", "METRIC_GROUPS", "EvaluationSettings"]

ExplainFn = Callable[[Model, torch.Tensor, torch.Tensor], torch.Tensor]


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


def score(
    explanations: Explanation | Sequence[Explanation],
    model: Model | torch.nn.Module | None,
    settings: EvaluationSettings,
    masks: Any = None,
) -> Scores:
    """Trust scores of ``explanations`` under checked ``settings``: the explanations' branch
    of ``ex.evaluate`` (:func:`explainer.dataset.evaluation.evaluate`, which documents the
    options and builds the settings with :meth:`EvaluationSettings.from_options`).

    Every argument is checked (masks and model fingerprints included) before any metric
    runs, so that a bad mask does not fail after minutes of scoring.
    """
    check_autograd_mode("ex.evaluate")
    exps, model = _checked(explanations, model)
    mask_sets = {
        id(e): _masks(masks, tuple(e.inputs.shape)) if e.modality == "image" else {} for e in exps
    }
    _check_fingerprints(exps, model)
    # the default budget of re-runs and forward passes is that of the model's device
    settings = replace(settings, runtime=replace(settings.runtime, device=str(model.device)))
    scores = Scores(settings=settings.record(model.name, model.task))
    shared = _Shared(settings.seed)  # what does not depend on the method, computed once
    groups = [g for g in _PER_EXPLANATION if g.name in settings.groups]
    bar = tqdm(
        total=len(exps),
        desc="evaluate",
        disable=None if settings.progress else True,
        leave=False,
        delay=0.5,
    )
    with bar:
        for exp in exps:
            explain = _explain_fn(exp, settings)
            if exp.modality == "text":  # scored on its embeddings, tokens removed whole
                job = _text_job(exp, model, settings, scores, explain, shared)
            else:
                job = _Job.of(
                    exp, _calling(model, exp), settings, scores, explain, mask_sets[id(exp)],
                    shared,
                )  # fmt: skip
            for one in job.aligned():
                for group in groups:
                    group.run_on(one)
            bar.update(1)
    if "agreement" in settings.groups:
        _agreement(exps, scores)
    return scores


def _text_job(exp, model, settings, scores, explain, shared) -> _Job:
    """The job of a text explanation: its embedding attributions scored on the model that
    runs embeddings; deletion removes whole tokens (special tokens and padding never),
    replacing them by the reference token; re-runs get the reference as their baselines."""
    text = text_scoring(exp, model)
    info = get_method(exp.method)
    absolute = not info.draws_signed(exp.params)
    dim = text.token_ids.shape[1] // exp.inputs.shape[1]

    def token_level(m, x, t, reference=None, groups=None) -> torch.Tensor:
        """A re-run's embedding attributions as the explanation's are: per token, spread."""
        out = explain(m, x, t, reference, groups)
        return spread_tokens(per_token(out.reshape(len(x), -1, dim), absolute), dim)

    job = _Job.of(text.exp, text.model, settings, scores, token_level, {}, shared)
    reference = text.reference.to(job.inputs.device)
    return replace(
        job,
        batch=None,  # its features are the tokens the explanation scored: not shared
        reference=reference,
        features=(text.token_scores, text.token_ids),
        rerun_defaults=reference,
        rerun_groups=text.groups,
    )


def _calling(model: Model, exp: Explanation) -> Model:
    """``model`` called as ``exp``'s network was: on packed rows of several inputs (the
    layout its manifest records) and with its forward arguments."""
    layout = exp.manifest.get("inputs")
    if layout is None and exp.forward_args is None:
        if exp.manifest.get("forward_args"):
            raise InputError(
                describe(
                    f"The {exp.method} explanation",
                    "its forward arguments, to call the network as it was called",
                    f"a file that describes them only ({exp.manifest['forward_args']})",
                    "Forward arguments are kept in memory: score the explanation that "
                    "ex.explain returned, or explain again with forward_args=...",
                )
            )
        return model
    return model.calling(
        None if layout is None else InputLayout.from_record(layout), exp.forward_args
    )


def _checked(explanations: Any, model: Any) -> tuple[list[Explanation], Model]:
    """The explanations as a list (each with finite attributions) and the wrapped model."""
    if model is None:
        raise InputError(
            describe(
                "`model`",
                "the model the explanations were computed with",
                "None",
                "Pass ex.evaluate(explanations, model).",
            )
        )
    single = isinstance(explanations, Explanation | MultiInputExplanation)
    exps = [explanations] if single else list(explanations)
    # several inputs are scored on their packed rows (explainer.inputs)
    exps = [e.packed if isinstance(e, MultiInputExplanation) else e for e in exps]
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
    return exps, model


def _check_fingerprints(exps: list[Explanation], model: Model) -> None:
    """Every explanation was computed with ``model`` (by its recorded fingerprint)."""
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


def _explain_fn(exp: Explanation, settings: EvaluationSettings) -> ExplainFn:
    """``(model, inputs, targets, reference=None) -> attributions``: ``exp``'s method re-run
    with its call parameters (robustness and randomization need it); ``reference`` (a text
    model's reference embeddings) as its baselines / background when the call has none."""
    info = get_method(exp.method)
    call = _call_params(exp, dict(settings.params.get(exp.method, {})))

    def explain_fn(
        m: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        reference: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        params = dict(call)
        for name in REFERENCE_PARAMETERS:
            if reference is not None and name in info.defaults and params.get(name) is None:
                params[name] = reference
        if groups is not None and isinstance(params.get("feature_mask"), str):
            params["feature_mask"] = (groups[..., None],)  # a text call's words or tokens
        out = info.func(m, x, t, runtime=settings.runtime, **params).attributions
        check_attributions(out, info.name)
        return out.to(accumulation_dtype(out.dtype))  # float32 for half models, as explain's

    return explain_fn


@dataclass
class _Job:
    """One explanation being scored: what every metric group reads."""

    exp: Explanation
    model: Model
    settings: EvaluationSettings
    scores: Scores
    explain: ExplainFn  # re-runs the explanation's method
    masks: dict[str, torch.Tensor]  # ground truth by name: (N, H, W) bool
    inputs: torch.Tensor  # on the model's device
    targets: torch.Tensor  # as recorded (CPU)
    attributions: torch.Tensor  # on the model's device
    generator: torch.Generator  # seeded once per explanation, shared by the groups in order
    shared: _Shared  # what does not depend on the method, by input batch
    batch: tuple[int, int] | None  # this job's inputs and targets in ``shared`` (None: not shared)
    # Batch statistics, computed on the whole batch (also when it is scored sample by sample)
    reference: torch.Tensor  # what deletion/insertion replace features by, like inputs
    noise_scale: float  # infidelity's noise: a tenth of the inputs' standard deviation
    radius: float  # max-sensitivity's radius: 2% of the inputs' range
    road_noise: float  # ROAD's imputation noise: 1% of the inputs' range
    first: int = 0  # the batch index of this job's first sample
    # Text: the features deletion removes (per-token scores (N, L), the token of each
    # embedding value) and the references re-runs start from
    features: tuple[torch.Tensor, torch.Tensor] | None = None
    rerun_defaults: torch.Tensor | None = None
    rerun_groups: torch.Tensor | None = None  # text: the feature groups "words" gave (N, L)

    def rerun(self, model: Model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The explanation's method on ``x`` (robustness, randomization), given this job's
        references when it has some (a text job's: one sample's, broadcast to the rows)."""
        return self.explain(model, x, t, self.rerun_defaults, self.rerun_groups)

    @classmethod
    def of(cls, exp, model, settings, scores, explain, masks, shared) -> _Job:
        """The job of ``exp``: its tensors on the model's device and a fresh generator."""
        # in the model's dtype too: a bfloat16 model's explanation holds float32 inputs
        x = exp.inputs.to(device=model.device, dtype=model.dtype)
        layout = model.layout
        fill = settings.fill
        reference = (
            fill_reference(x, fill)
            if layout is None
            else layout.map(lambda _, part: fill_reference(part, fill), x)
        )
        return cls(
            exp=exp,
            model=model,
            settings=settings,
            scores=scores,
            explain=explain,
            masks=masks,
            inputs=x,
            targets=exp.targets,
            attributions=exp.attributions.to(model.device),
            generator=torch.Generator().manual_seed(settings.seed),
            shared=shared,
            batch=shared.batch_of(exp, model),
            reference=reference,
            noise_scale=0.1 * float(x.std()) if len(x) > 1 or x.numel() > 1 else 0.1,
            radius=0.02 * float(x.max() - x.min()),
            road_noise=NOISE * float(x.max() - x.min()),
        )

    def aligned(self) -> list[_Job]:
        """This job, or one job per sample when a forward argument holds a row per sample
        (the model bound to that sample's row, as :func:`explainer.explain` ran it); the
        generator, the reference and the scales are the whole batch's."""
        args = self.model.forward_args
        if not args.per_sample:
            return [self]
        return [self._sample(i, args.sample(i)) for i in range(len(self.exp))]

    def _sample(self, i: int, args: Any) -> _Job:
        one = slice(i, i + 1)
        n = len(self.exp)
        exp = replace(
            self.exp,
            attributions=self.exp.attributions[one],
            inputs=self.exp.inputs[one],
            targets=self.exp.targets[one],
            scores=self.exp.scores[one],
            extras={
                k: v[one] if isinstance(v, torch.Tensor) and v.ndim and len(v) == n else v
                for k, v in self.exp.extras.items()
            },
        )
        return replace(
            self,
            exp=exp,
            model=self.model.calling(self.model.layout, args),
            masks={k: m[one] for k, m in self.masks.items()},
            inputs=self.inputs[one],
            targets=self.targets[one],
            attributions=self.attributions[one],
            reference=self.reference[one],
            first=i,
            batch=None,  # one sample of a batch bound to its own forward arguments
            features=None
            if self.features is None
            else (self.features[0][one], self.features[1][one]),
            rerun_defaults=None if self.rerun_defaults is None else self.rerun_defaults[one],
            rerun_groups=None if self.rerun_groups is None else self.rerun_groups[one],
        )

    def add(self, metric: str, values: Any, mask: str | None = None) -> None:
        self.scores.add(self.exp.method, metric, values, mask=mask, first=self.first)

    def share(
        self, name: str, compute: Callable[[torch.Generator], Any], per_inputs: bool = False
    ) -> Any:
        """``compute(generator)``, once for every explanation of this job's inputs (and
        targets, unless ``per_inputs``); its generator is seeded by the settings' seed
        and ``name``, so the draws are the same whatever method asks first."""
        return self.shared.get(self.batch, name, compute, per_inputs)


class _Shared:
    """What trust scores need that does not depend on the method, computed once for all
    the explanations of the same inputs (equal values, on the same network with no
    per-sample forward arguments) and targets: the superpixels, the random-order
    deletion and insertion curves, infidelity's perturbed forwards. Each draws from a
    generator of its own, seeded by the settings' seed and the part's name, so its values
    do not depend on which method came first (the per-explanation generator serves the
    method-dependent parts)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._inputs: list[tuple[torch.Tensor, Any]] = []
        self._targets: list[list[torch.Tensor]] = []
        self._values: dict[tuple, Any] = {}

    def batch_of(self, exp: Explanation, model: Model) -> tuple[int, int] | None:
        """The (inputs, targets) indices of ``exp``'s batch, or None when not shared."""
        if model.forward_args:
            return None
        x = exp.inputs
        same = [
            k
            for k, (seen, net) in enumerate(self._inputs)
            if net is model.net and seen.shape == x.shape and seen.dtype == x.dtype
            and torch.equal(seen, x)
        ]  # fmt: skip
        if not same:
            self._inputs.append((x, model.net))
            self._targets.append([])
        i = same[0] if same else len(self._inputs) - 1
        targets = self._targets[i]
        for j, seen in enumerate(targets):
            if torch.equal(seen, exp.targets):
                return i, j
        targets.append(exp.targets)
        return i, len(targets) - 1

    def get(
        self,
        batch: tuple[int, int] | None,
        name: str,
        compute: Callable[[torch.Generator], Any],
        per_inputs: bool = False,
    ) -> Any:
        digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")
        generator = torch.Generator().manual_seed((self.seed + digest) % 2**63)
        if batch is None:
            return compute(generator)
        key = (batch[0], name) if per_inputs else (*batch, name)
        if key not in self._values:
            self._values[key] = compute(generator)
        return self._values[key]


def _faithfulness(job: _Job) -> None:
    """Deletion and insertion curves (most-relevant-first, random, least-relevant-first for
    deletion), their AUCs and the gains over a random order."""
    s, x, t = job.settings, job.inputs, job.targets
    feat, ids = job.features or feature_scores(job.attributions.cpu(), _segments(job))
    reference = job.reference

    def curve(mode: str, order: str) -> torch.Tensor:
        if order == "random":  # the same for every method: its own draws, computed once
            return job.share(
                f"{mode} curve, random order",
                lambda gen: perturbation_curves(
                    job.model, x, t, feat, ids, reference, mode, order, s.steps, gen, s.runtime
                ),
            )
        return perturbation_curves(
            job.model, x, t, feat, ids, reference, mode, order, s.steps, job.generator, s.runtime
        )

    curves = {}
    for mode in ("deletion", "insertion"):
        for order in ("morf", "random"):
            curves[mode if order == "morf" else f"{mode}_random"] = curve(mode, order)
    curves["deletion_lerf"] = curve("deletion", "lerf")
    a = {k: auc(v) for k, v in curves.items()}
    job.add("deletion_auc", a["deletion"])
    job.add("deletion_random_auc", a["deletion_random"])
    job.add("deletion_gain", a["deletion_random"] - a["deletion"])
    job.add("deletion_lerf_auc", a["deletion_lerf"])
    job.add("insertion_auc", a["insertion"])
    job.add("insertion_random_auc", a["insertion_random"])
    job.add("insertion_gain", a["insertion"] - a["insertion_random"])
    job.scores.add_curves(job.exp.method, {k: v.numpy() for k, v in curves.items()}, job.first)


def _segments(job: _Job) -> torch.Tensor | None:
    """Superpixels (N, H, W) of the job's images (computed once per input batch), or None
    when deletion works on pixels or columns."""
    if job.exp.modality != "image" or job.settings.features != "superpixels":
        return None
    n = job.settings.n_segments
    return job.share(
        "superpixels",
        lambda _: torch.stack([superpixels(img, n) for img in job.exp.inputs]),
        per_inputs=True,
    )


def _infidelity(job: _Job) -> None:
    """Infidelity under Gaussian noise of a tenth of the inputs' standard deviation."""
    s, x = job.settings, job.inputs
    perturbed = job.share(
        "infidelity's perturbed outputs",  # the same noise for every method: computed once
        lambda gen: perturbed_outputs(
            job.model,
            x,
            job.targets,
            infidelity_noise(x, s.n_perturb, job.noise_scale, gen),
            s.runtime,
        ),
    )
    job.add("infidelity", infidelity_of(job.attributions, perturbed))


def _robustness(job: _Job) -> None:
    """Max-sensitivity within 2% of the inputs' range (each perturbation re-runs the method)."""
    x, radius = job.inputs, job.radius
    sens = max_sensitivity(
        lambda xs, ts: job.rerun(job.model, xs, ts.to(xs.device)),
        x,
        job.targets,
        job.attributions,
        radius,
        job.settings.n_sensitivity,
        job.generator,
    )
    job.add("max_sensitivity", sens)


def _randomization(job: _Job) -> None:
    """Similarity to the maps of randomized models: the scores of the last step (cascading)
    or of the most similar layer (independent), and the mean of every step."""
    s, x, exp = job.settings, job.inputs, job.exp
    steps_out = randomization_similarity(
        job.model,
        x,
        job.targets.to(x.device),
        job.attributions,
        job.rerun,
        s.randomization,
        s.seed,
        spec_for(exp.method, exp.params).signed,
        s.randomization_steps,
    )
    if not steps_out:
        return
    last = (
        steps_out[-1]
        if s.randomization == "cascading"
        else min(steps_out, key=lambda step: np.nanmean(step["spearman"]))
    )
    job.add("randomization_spearman", last["spearman"])
    job.add("randomization_ssim", last["ssim"])
    job.scores.add_randomization(
        exp.method,
        job.first,
        [
            {
                "layer": step["layer"],
                "spearman": float(np.nanmean(step["spearman"])),
                "ssim": float(np.nanmean(step["ssim"]))
                if not np.isnan(step["ssim"]).all()
                else None,
            }
            for step in steps_out
        ],
    )


def _localization(job: _Job) -> None:
    """Relevance mass, mask area and pointing game per ground-truth mask (images only)."""
    if job.exp.modality != "image":
        return
    attr = job.exp.attributions
    for name, mk in job.masks.items():
        job.add("relevance_mass", relevance_mass(attr, mk), mask=name)
        job.add("mask_fraction", mk.flatten(1).float().mean(1), mask=name)
        job.add("pointing_game", pointing_game(attr, mk), mask=name)


def _road(job: _Job) -> None:
    """ROAD (remove and debias): the target's score after removing a share of the pixels
    most relevant first and least relevant first, imputed from their neighbours; the means
    over the fractions and their difference (images only)."""
    if job.exp.modality != "image" or job.inputs.ndim != 4:
        return
    s = job.settings
    curves = {
        f"road_{order}": road_curves(
            job.model,
            job.inputs,
            job.targets,
            job.attributions,
            s.road_fractions,
            order,
            job.generator,
            s.runtime,
            job.road_noise,
        )
        for order in ("morf", "lerf")
    }
    morf, lerf = curves["road_morf"].mean(1), curves["road_lerf"].mean(1)
    job.add("road_morf", morf)
    job.add("road_lerf", lerf)
    job.add("road_gain", lerf - morf)
    job.scores.add_curves(job.exp.method, {k: v.numpy() for k, v in curves.items()}, job.first)


def _completeness(job: _Job) -> None:
    """The completeness gap a method reported (``relative_gap``: integrated gradients, the
    SHAP family; see :mod:`explainer.completeness`)."""
    if "relative_gap" in job.exp.extras:
        job.add("completeness_gap", job.exp.extras["relative_gap"])


@dataclass(frozen=True)
class _Group:
    """A metric group run on one explanation at a time."""

    name: str
    run: Callable[[_Job], None]
    evaluating: bool  # inside model.evaluating(); randomization works on copies instead

    def run_on(self, job: _Job) -> None:
        if not self.evaluating:
            self.run(job)
            return
        with job.model.evaluating():
            self.run(job)


# In METRIC_GROUPS order, which is also the order the generator's draws are made in.
_PER_EXPLANATION = (
    _Group("faithfulness", _faithfulness, True),
    _Group("infidelity", _infidelity, True),
    _Group("robustness", _robustness, True),
    _Group("randomization", _randomization, False),
    _Group("localization", _localization, False),
    _Group("completeness", _completeness, False),
    _Group("road", _road, True),
)


def _agreement(exps: list[Explanation], scores: Scores) -> None:
    """Mean rank agreement of each map with the other methods' maps of the same inputs."""
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
