"""Kernel SHAP over superpixels (images) or columns (tabular), with our own estimators.

The value of a coalition z is the model's target output with the features in z taken from
the input and the others from a reference: ``v(z) = mean_b f(x * m(z) + ref_b * (1 - m(z)))``.
References are the ``background`` rows when given (required for tabular data), otherwise
one fill image: the input's per-channel mean, its blur, or zeros.

Attributions are *densities*: feature k's Shapley value divided by the number of input
elements in its group, so that attributions sum to f(x) - f(reference) as IG's do. (captum
repeats phi_k on every element instead.) The per-feature values and the groups are kept in
``extras`` (``feature_values``, ``segments``) for drawing superpixels.

Estimators (``estimator=``): "gp" (default) evaluates coalitions in pairs z, 1 - z, chosen
to be informative before any model call (shapley_design.py), and takes the posterior mean
of a Gaussian process on the game's odd part (shapley_gp.py): exact for games with
interactions up to order 2, with a prior that favours interactions among neighbouring
superpixels; "regression" is the classic constrained Kernel SHAP regression
(coalitions.py). Both are exact from a budget of 2^M. Per sample, ``extras`` also hold
``error_estimate`` (the estimated relative L2 error of ``feature_values``: the posterior
standard deviation for "gp", a bootstrap over the sampled pairs for "regression") and
``evaluations`` (coalitions evaluated, empty and full included), and ``convergence_delta``:
sum of attributions - (v(full) - v(empty)), which efficiency makes zero up to the rounding
of the stored densities (a check, not an estimate).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import as_reference, check_choice, check_int, check_seed, per_input
from .._runtime import (
    ChunkRequest,
    Runtime,
    Tuning,
    accumulator,
    check_expansion,
    chunk_size,
    chunks,
    progress_bar,
)
from ..completeness import EXACT, Completeness
from ..errors import InputError, ModelError, describe
from ..model import Model
from ..registry import MethodResult, register_method
from ._shapley.coalitions import (
    bootstrap_error,
    plan_coalitions,
    residual_correction,
    solve_constrained,
)
from ._shapley.design import bayes_design
from ._shapley.gp import gp_shapley
from .references import gaussian_blur
from .segmentation import expand_feature_mask, group_adjacency, superpixels

MAX_EVALUATIONS = 2**20  # coalitions per sample (n_samples): planned up front
FILLS = ("mean", "blur", "zeros")
ESTIMATORS = ("gp", "regression")


def _references(
    model: Model, inputs: torch.Tensor, background: Any, fill: str
) -> list[torch.Tensor]:
    """One (B, ...) reference tensor per sample."""
    if background is not None:
        bg = as_reference(model, background, inputs, "background")
        return [bg] * len(inputs)
    check_choice(fill, "fill", FILLS)
    if model.layout is None:
        ref = _fill(inputs, fill, "`background`")
    else:  # several inputs: each image filled, the other inputs need background rows
        layout = model.layout
        ref = layout.map(
            lambda k, part: _fill(part, fill, f"`background` ({layout.names[k]})"), inputs
        )
    return [r[None] for r in ref]


def _fill(inputs: torch.Tensor, fill: str, what: str) -> torch.Tensor:
    """The reference of each image (N, C, H, W) without background rows: its per-channel
    mean, its blur or zeros; InputError for other inputs, which need background rows."""
    if inputs.ndim != 4:
        raise InputError(
            describe(
                what,
                "a tensor of reference rows (B, features) for tabular data",
                "None",
                "Pass background=x_train[:100] (a sample of training rows); for several "
                "inputs, one tensor per input: background=(images_bg, rows_bg).",
            )
        )
    if fill == "zeros":
        return torch.zeros_like(inputs)
    if fill == "mean":
        return inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    return gaussian_blur(inputs, sigma=max(inputs.shape[2:]) / 8)


@torch.no_grad()
def coalition_values(
    model: Model,
    x: torch.Tensor,
    ref: torch.Tensor,
    groups: torch.Tensor,
    masks: np.ndarray,
    target: int,
    runtime: Runtime,
    bar=None,
) -> np.ndarray:
    """v(z) for each coalition row of ``masks`` (K, M): mean over references of the target output."""
    z = torch.as_tensor(masks, device=x.device)
    n_ref = len(ref)
    request = ChunkRequest(
        # the built rows, and per coalition its (sample-shaped) keep mask over its references
        extra_bytes_per_row=x.numel() * x.element_size() + -(-x.numel() // n_ref) + 64,
        fixed_bytes=(ref.numel() + x.numel()) * x.element_size() + 8 * groups.numel(),
        backward=False,
        min_rows=n_ref,  # one coalition: all its reference rows in one forward
        what=f"kernel_shap with {n_ref} reference row(s) per coalition on an input",
        buffers="the references, the feature groups",
    )
    # The budget sets the most coalitions a chunk may hold; the chunks run at the size that
    # measured fastest (explainer.throughput): on 2 CPU cores a small CNN on 64x64 images
    # ran ~3x faster per row in batches of 16-32 than of 1024 (cache), a ResNet too.
    size = max(1, chunk_size(model, x, runtime, request) // n_ref)
    tuning = Tuning.of(model, f"forward/{n_ref} rows a coalition", x, runtime)
    # Rows are built channels-last when the caller's images are (as torch.from_numpy(hwc)
    # .permute(2, 0, 1) gives) or, once verified, for a CNN on the CPU (see _channels_last).
    verdict = _channels_last(model, x)
    channels_last = verdict is not False
    dims = (1, 2, 0) if channels_last else tuple(range(x.ndim))
    back = (0, *(int(d) + 1 for d in np.argsort(dims)))
    x_, ref_ = x.permute(dims), ref.permute(0, *(d + 1 for d in dims))
    groups_ = groups.permute(dims).contiguous()  # indexing output takes the index's layout
    values = np.empty(len(z))
    for part in chunks(len(z), size, tuning):
        keep = z[part][:, groups_]  # (k, *sample_shape in build order) bool
        rows = (
            torch.where(keep[:, None], x_, ref_[None]).reshape(-1, *x_.shape).permute(back)
        )  # (k * B, *sample_shape)
        if verdict is None:  # the first chunk of a network not verified yet
            verdict, out = _verified_forward(model, rows)
        else:  # (rows built channels-last before a refusal are copied)
            out = model.forward(rows if verdict else rows.contiguous())
        out = out[:, target].reshape(-1, n_ref)
        values[part] = out.mean(1).double().cpu().numpy()
        if bar is not None:
            bar.update(part.stop - part.start)
    return values


# Networks whose channels-last verdict is known (see _channels_last); weakly held.
_CHANNELS_LAST: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _channels_last(model: Model, x: torch.Tensor) -> bool | None:
    """Whether the coalition rows of image ``x`` (C, H, W) are built channels-last: True
    when the caller's images are; for a network with 2-d convolutions on the CPU, its
    verdict once its first chunk was verified (None: not yet, see :func:`_verified_forward`);
    else False.

    A ResNet-18 forward at 224 px ran 5-20% faster per row on channels-last rows (2 CPU
    cores, chunks of 8 and 16; never slower), the layout convolutions compute in. The
    layout is not the caller's, so it is checked, once per network and process: a forward
    that fails on it (``x.view(n, -1)`` on such rows does) or gives other outputs than on
    contiguous rows (an extension that ignores strides would) keeps contiguous rows."""
    if x.ndim != 3:
        return False
    if not x.is_contiguous() and x[None].is_contiguous(memory_format=torch.channels_last):
        return True  # the caller's own layout
    if not x.is_cpu:
        return False
    net = model.net
    try:
        known = _CHANNELS_LAST.get(net)
    except TypeError:  # not weakly referable: never verified, never used
        return False
    if known is None and not any(isinstance(m, nn.Conv2d) for m in net.modules()):
        known = _CHANNELS_LAST[net] = False
    return known


def _verified_forward(model: Model, rows: torch.Tensor) -> tuple[bool, torch.Tensor]:
    """The outputs on channels-last ``rows`` and the network's verdict on them (recorded):
    kept when its forward on them succeeds and matches the forward on a contiguous copy
    (to float32 rounding: the kernels differ); else the contiguous copy's outputs."""
    plain = model.forward(rows.contiguous())
    try:
        out = model.forward(rows)
    except ModelError:
        out = None
    scale = float(plain.abs().max()) if plain.numel() else 0.0
    same = out is not None and torch.allclose(out, plain, rtol=1e-3, atol=1e-5 * (1.0 + scale))
    _CHANNELS_LAST[model.net] = same
    return same, (out if same else plain)


def _max_rows(runtime: Runtime) -> int:
    """Rows of the Gaussian process that fit the memory budget (~64 n^2 bytes), 256..4096."""
    return int(min(4096, max(256, (runtime.budget / 64) ** 0.5)))


def _shapley_one(
    evaluate,
    m: int,
    n_samples: int,
    estimator: str,
    rng: np.random.Generator,
    adjacency: np.ndarray | None,
    max_rows: int,
) -> tuple[np.ndarray, float, int, float]:
    """Shapley values of one sample's M features, their estimated L2 error, evaluations
    used, and the output change v(full) - v(empty) they add up to.

    ``evaluate(masks)`` returns v at the coalitions in the rows of ``masks`` (K, M).
    """
    ends = np.stack([np.zeros(m, dtype=bool), np.ones(m, dtype=bool)])
    if m == 1 or 2**m <= n_samples or estimator == "regression":
        budget = 2**m - 2 if 2**m <= n_samples else n_samples - 2
        masks, weights, n_fixed = (
            plan_coalitions(m, budget, rng) if m > 1 else (np.zeros((0, 1), bool), np.zeros(0), 0)
        )
        v = evaluate(np.concatenate([ends, masks]))
        phi = solve_constrained(masks, v[2:], weights, v[0], v[1])
        error = (
            bootstrap_error(masks, v[2:], weights, v[0], v[1], n_fixed, rng)
            if len(masks) < 2**m - 2
            else 0.0
        )
        return phi, error, len(v), float(v[1] - v[0])
    z = np.concatenate(
        [ends[1:], bayes_design(m, (n_samples - 2) // 2, rng, adjacency)]
    )  # (pairs, M): full first
    v = evaluate(np.concatenate([z, ~z]))
    w = (v[: len(z)] - v[len(z) :]) / 2  # odd part of the game at each pair
    phi, cov, info = gp_shapley(2.0 * z - 1, w, adjacency, max_rows)
    if len(info["residuals"]):
        # Budget beyond what the process holds: the rest of the pairs estimate its error, c =
        # e + noise. Taking e ~ N(0, cov) and the noise's bootstrap covariance, apply the
        # posterior mean of e: the correction counts as much as it is precise (fully as the
        # budget grows, so the estimate stays consistent; not at all when it is pure noise).
        correction, noise = residual_correction(z[max_rows:], info["residuals"], rng)
        gain = cov @ np.linalg.pinv(cov + noise)
        phi, cov = phi + gain @ correction, cov - gain @ cov
    error = float(np.sqrt(max(np.trace(cov), 0.0)))
    phi = (
        phi + (2 * w[0] - phi.sum()) / m
    )  # efficiency, exactly (the fit matches it up to round-off)
    return phi, error, len(v), float(2 * w[0])  # z[0] is the full coalition


@register_method(
    "kernel_shap",
    aliases=("kernelshap",),
    completeness=Completeness(
        EXACT,
        "Efficiency makes kernel_shap's gap zero up to rounding of the float32 densities: "
        "explain in float64 (model.double() and float64 inputs).",
    ),
    needs_gradients=False,  # forward passes only: explains black-box functions too
)
def kernel_shap(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    background: Any = None,
    n_samples: int = 512,
    n_segments: int = 16,
    compactness: float = 10.0,
    fill: str = "mean",
    feature_mask: Any = None,
    seed: int = 0,
    estimator: str = "gp",
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Shapley values of superpixels or features from a budget of coalition evaluations.

    Args:
        background: reference rows (B, ...) standing in for absent features; required for
            tabular data, optional for images (then ``fill`` is used). Several inputs: one
            tensor per input (a tuple); left out, every input must be an image (each filled).
        n_samples: budget of coalition evaluations per sample, the empty and full coalitions
            included (each costs one forward per reference row), at most 2**20. With 2^M
            or more the result is the exact Shapley value.
        n_segments: approximate number of SLIC superpixels per image (a regular grid where
            SLIC finds only one segment).
        compactness: SLIC compactness (higher: more regular superpixels).
        fill: reference for absent superpixels without background: "mean", "blur", "zeros".
        feature_mask: non-negative integer group ids broadcastable to the inputs; overrides
            superpixels (images) or the one-feature-per-column default (tabular). For
            several inputs: one mask per input (a tuple, None for an input's default), or
            one mask of the packed (N, D) rows. Ids are
            renumbered 0..K-1 per sample in sorted order (``feature_values`` column k is the
            k-th smallest id), so gaps are allowed; negative ids are refused.
        seed: seed of the coalition sampling, an integer in [0, 2**63 - 1]; None means 0
            (deterministic, as for every method).
        estimator: "gp" (paired coalitions, Gaussian-process posterior; default) or
            "regression" (classic constrained Kernel SHAP regression).

    Returns:
        Attributions (densities), with extras ``feature_values`` (N, M), ``error_estimate``
        (N,) relative L2 error estimate of the feature values, ``evaluations`` (N,),
        ``segments``, ``n_features`` and ``convergence_delta`` (N,).
    """
    n_samples = check_evaluations(n_samples)
    n_segments = check_int(n_segments, "n_segments", minimum=2)
    check_choice(fill, "fill", FILLS)
    check_choice(estimator, "estimator", ESTIMATORS)
    seed = check_seed(seed)
    refs = _references(model, inputs, background, fill)
    groups = _feature_groups(model, inputs, feature_mask, n_segments, compactness)
    rng = np.random.default_rng(seed)
    n = len(inputs)
    attributions = accumulator(inputs)  # at least float32
    n_feat = [int(g.max()) + 1 for g in groups]
    values = np.full((n, max(n_feat)), np.nan)
    errors, evaluations = np.zeros(n), np.zeros(n, dtype=np.int64)
    changes = np.zeros(n)  # v(full) - v(empty) per sample
    with progress_bar(n * n_samples, "kernel_shap", runtime) as bar:
        for i in range(n):
            m = n_feat[i]
            adjacency = group_adjacency(groups[i]) if inputs.ndim == 4 else None

            def evaluate(masks: np.ndarray, i: int = i) -> np.ndarray:
                return coalition_values(
                    model, inputs[i], refs[i], groups[i], masks, int(target[i]), runtime, bar
                )

            phi, error, evaluations[i], changes[i] = _shapley_one(
                evaluate, m, n_samples, estimator, rng, adjacency, _max_rows(runtime)
            )
            values[i, :m] = phi
            errors[i] = error / max(float(np.linalg.norm(phi)), 1e-30)
            attributions[i] = _densities(phi, groups[i], inputs)
    segments = groups[:, 0] if inputs.ndim == 4 else groups
    delta = attributions.reshape(n, -1).sum(1) - torch.from_numpy(changes).to(attributions)
    extras = {
        "feature_values": torch.from_numpy(values),
        "segments": segments.cpu(),
        "n_features": torch.tensor(n_feat),
        "error_estimate": torch.from_numpy(errors),
        "evaluations": torch.from_numpy(evaluations),
        "convergence_delta": delta.cpu(),
    }
    params = {
        "n_samples": n_samples,
        "n_segments": n_segments,
        "compactness": compactness,
        "fill": fill,
        "background": None if background is None else f"tensor{tuple(refs[0].shape)}",
        "feature_mask": None if feature_mask is None else "given",
        "seed": seed,
        "estimator": estimator,
    }
    return MethodResult(attributions, extras=extras, params=params)


def check_evaluations(value: Any) -> int:
    """``n_samples``: coalition evaluations per sample, an integer in [2, MAX_EVALUATIONS]."""
    return check_expansion(
        check_int(value, "n_samples", minimum=2),
        "n_samples",
        MAX_EVALUATIONS,
        f"The coalitions are planned up front ((n_samples, M) masks); with 2^M <= n_samples "
        f"the values are exact, so pass n_samples <= {MAX_EVALUATIONS} and, for exactness "
        "beyond, fewer features (n_segments); extras['error_estimate'] says how close it is.",
    )


def _feature_groups(
    model: Model, inputs: torch.Tensor, feature_mask: Any, n_segments: int, compactness: float
) -> torch.Tensor:
    """Feature group ids shaped like the inputs: the caller's mask, else superpixels
    (images) or one group per column (tabular). Several inputs (``model.layout``): each
    input's groups (its own mask from a per-input ``feature_mask``, else its default: a
    tensor input such as (tokens, dim) embeddings has one group per position), numbered
    on after the previous input's."""
    layout = model.layout
    masks = per_input(layout, feature_mask, "feature_mask") if layout is not None else None
    if layout is None or (feature_mask is not None and masks is None):
        return _groups_of(inputs, feature_mask, n_segments, compactness)
    masks = masks or [None] * len(layout)
    out, offset = [], torch.zeros(len(inputs), 1, dtype=torch.long, device=inputs.device)
    for part, mask in zip(layout.unpack(inputs), masks, strict=True):
        if mask is None and part.ndim not in (2, 4):  # one group per position
            ids = torch.arange(part.shape[1], device=part.device)
            g = ids.view(1, -1, *([1] * (part.ndim - 2))).expand(part.shape)
        else:
            g = _groups_of(part, mask, n_segments, compactness)
        g = g.reshape(len(part), -1) + offset
        out.append(g)
        offset = g.max(1, keepdim=True).values + 1
    return torch.cat(out, dim=1)


def _groups_of(
    inputs: torch.Tensor, feature_mask: Any, n_segments: int, compactness: float
) -> torch.Tensor:
    """Feature group ids of one input tensor (see :func:`_feature_groups`)."""
    if feature_mask is not None:
        groups = expand_feature_mask(feature_mask, inputs)
    elif inputs.ndim == 4:
        groups = torch.stack(
            [superpixels(img, n_segments, compactness)[None].expand(img.shape) for img in inputs]
        )
    else:
        groups = torch.arange(inputs.shape[1], device=inputs.device).expand(inputs.shape).clone()
    return groups.to(inputs.device)


def _densities(phi: np.ndarray, groups: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """One sample's attributions: each group's Shapley value spread evenly over its elements
    (shaped like ``groups``, in the inputs' dtype and device)."""
    counts = torch.bincount(groups.reshape(-1), minlength=len(phi)).to(inputs.dtype)
    density = torch.as_tensor(phi, dtype=inputs.dtype, device=inputs.device) / counts
    return density[groups]
