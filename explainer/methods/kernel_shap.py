"""Kernel SHAP over superpixels (images) or columns (tabular), with our own estimator.

The value of a coalition z is the model's target output with the features in z taken from
the input and the others from a reference: ``v(z) = mean_b f(x * m(z) + ref_b * (1 - m(z)))``.
References are the ``background`` rows when given (required for tabular data), otherwise
one fill image: the input's per-channel mean, its blur, or zeros.

Attributions are *densities*: feature k's Shapley value divided by the number of input
elements in its group, so that attributions sum to f(x) - f(reference) as IG's do. (captum
repeats phi_k on every element instead.) The per-feature values and the groups are kept in
``extras`` (``feature_values``, ``segments``) for drawing superpixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._checks import as_reference, check_choice, check_int
from .._runtime import Runtime, chunk_size, chunks, progress_bar
from ..errors import InputError, describe
from ..model import Model
from ..registry import MethodResult, register_method
from .coalitions import plan_coalitions, solve_constrained
from .integrated_gradients import gaussian_blur
from .segmentation import expand_feature_mask, superpixels

FILLS = ("mean", "blur", "zeros")


def _references(model: Model, inputs: torch.Tensor, background: Any, fill: str) -> list[torch.Tensor]:
    """One (B, ...) reference tensor per sample."""
    if background is not None:
        bg = as_reference(model, background, inputs, "background")
        return [bg] * len(inputs)
    if inputs.ndim != 4:
        raise InputError(describe("`background`", "a tensor of reference rows (B, features) for tabular data", "None",
                                  "Pass background=x_train[:100] (a sample of training rows)."))
    check_choice(fill, "fill", FILLS)
    if fill == "zeros":
        ref = torch.zeros_like(inputs)
    elif fill == "mean":
        ref = inputs.mean(dim=(2, 3), keepdim=True).expand_as(inputs)
    else:
        ref = gaussian_blur(inputs, sigma=max(inputs.shape[2:]) / 8)
    return [r[None] for r in ref]


@torch.no_grad()
def coalition_values(model: Model, x: torch.Tensor, ref: torch.Tensor, groups: torch.Tensor, masks: np.ndarray,
                     target: int, runtime: Runtime, bar=None) -> np.ndarray:
    """v(z) for each coalition row of ``masks`` (K, M): mean over references of the target output."""
    z = torch.as_tensor(masks, device=x.device)
    n_ref = len(ref)
    size = max(1, chunk_size(model, x, runtime) // n_ref)
    values = np.empty(len(z))
    for part in chunks(len(z), size):
        keep = z[part][:, groups]  # (k, *sample_shape) bool
        rows = torch.where(keep[:, None], x, ref[None])  # (k, B, *sample_shape)
        out = model.forward(rows.reshape(-1, *x.shape))[:, target].reshape(-1, n_ref)
        values[part] = out.mean(1).double().cpu().numpy()
        if bar is not None:
            bar.update(part.stop - part.start)
    return values


@register_method("kernel_shap", aliases=("kernelshap",))
def kernel_shap(model: Model, inputs: torch.Tensor, target: torch.Tensor, *, background: Any = None,
                n_samples: int = 512, n_segments: int = 16, compactness: float = 10.0, fill: str = "mean",
                feature_mask: Any = None, seed: int = 0, runtime: Runtime = Runtime()) -> MethodResult:
    """Shapley values of superpixels or features by the constrained Shapley kernel regression.

    Args:
        background: reference rows (B, ...) standing in for absent features; required for
            tabular data, optional for images (then ``fill`` is used).
        n_samples: budget of coalition evaluations per sample, the empty and full coalitions
            included (each costs one forward per reference row). With 2^M or more the
            result is the exact Shapley value.
        n_segments: approximate number of SLIC superpixels per image.
        compactness: SLIC compactness (higher: more regular superpixels).
        fill: reference for absent superpixels without background: "mean", "blur", "zeros".
        feature_mask: integer group ids broadcastable to the inputs; overrides superpixels
            (images) or the one-feature-per-column default (tabular).
        seed: seed of the coalition sampling.
    """
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    n_segments = check_int(n_segments, "n_segments", minimum=2)
    check_choice(fill, "fill", FILLS)
    refs = _references(model, inputs, background, fill)
    if feature_mask is not None:
        groups = expand_feature_mask(feature_mask, inputs)
    elif inputs.ndim == 4:
        groups = torch.stack([superpixels(img, n_segments, compactness)[None].expand(img.shape) for img in inputs])
    else:
        groups = torch.arange(inputs.shape[1], device=inputs.device).expand(inputs.shape).clone()
    groups = groups.to(inputs.device)
    rng = np.random.default_rng(seed)
    n = len(inputs)
    attributions = torch.zeros_like(inputs)
    n_feat = [int(g.max()) + 1 for g in groups]
    values = np.full((n, max(n_feat)), np.nan)
    bar = progress_bar(n * n_samples, "kernel_shap", runtime)
    for i in range(n):
        m = n_feat[i]
        masks, weights = plan_coalitions(m, n_samples - 2, rng) if m > 1 else (np.zeros((0, 1), bool), np.zeros(0))
        ends = np.stack([np.zeros(m, dtype=bool), np.ones(m, dtype=bool)])
        v = coalition_values(model, inputs[i], refs[i], groups[i], np.concatenate([ends, masks]), int(target[i]), runtime, bar)
        phi = solve_constrained(masks, v[2:], weights, v[0], v[1])
        values[i, :m] = phi
        counts = torch.bincount(groups[i].reshape(-1), minlength=m).to(inputs.dtype)
        density = torch.as_tensor(phi, dtype=inputs.dtype, device=inputs.device) / counts
        attributions[i] = density[groups[i]]
    bar.close()
    segments = groups[:, 0] if inputs.ndim == 4 else groups
    extras = {"feature_values": torch.from_numpy(values), "segments": segments.cpu(),
              "n_features": torch.tensor(n_feat)}
    params = {"n_samples": n_samples, "n_segments": n_segments, "compactness": compactness, "fill": fill,
              "background": None if background is None else f"tensor{tuple(torch.as_tensor(background).shape)}",
              "feature_mask": None if feature_mask is None else "given", "seed": seed}
    return MethodResult(attributions, extras=extras, params=params)
