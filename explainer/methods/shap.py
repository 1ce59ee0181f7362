"""Gradient-based SHAP: expected gradients (gradient_shap) and DeepLIFT-SHAP (deep_shap).

Both average an attribution over reference samples drawn from a ``background`` tensor, so
for a linear model f(x) = w.x + b they equal (x - E[background]) * w.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import DeepLift

from .._checks import as_reference, check_fraction, check_int, has_gradient_path
from .._runtime import Runtime, chunk_size, chunks, input_gradients, progress_bar, seeded_generator
from ..errors import InputError, describe
from ..model import Model
from ..registry import MethodResult, register_method


def _background(model: Model, background: Any, inputs: torch.Tensor, method: str) -> torch.Tensor:
    if background is None:
        raise InputError(
            describe(
                "`background`",
                f"a tensor of reference samples (B, {', '.join(map(str, inputs.shape[1:]))}) for {method}",
                "None",
                "Pass background=x_train[:64] (a sample of training inputs).",
            )
        )
    return as_reference(model, background, inputs, "background")


def _target_outputs(model: Model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward(x).gather(1, target[:, None].to(x.device)).squeeze(1)


@register_method("gradient_shap", aliases=("expected_gradients",))
def gradient_shap(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    background: Any = None,
    n_samples: int = 64,
    stdev: float = 0.0,
    seed: int = 0,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Expected gradients: E over references b and a ~ U(0,1) of grad f(b + a(x - b)) * (x - b).

    Erion et al. 2021 / Lundberg & Lee 2017 (GradientExplainer). Sampling is stratified:
    every background row is used equally often (so when ``n_samples`` is a multiple of the
    background size the reference mean is exact) and the a's are stratified in [0, 1].

    Args:
        background: reference samples (B, ...).
        n_samples: (reference, a) draws per input.
        stdev: optional Gaussian noise added to the path points, as a fraction of each
            input's value range (captum's ``stdevs``); 0 by default.
        seed: seed of the draws.
    """
    n_samples = check_int(n_samples, "n_samples")
    stdev = check_fraction(stdev, "stdev", 0.0, 10.0)
    bg = _background(model, background, inputs, "gradient_shap")
    n, n_bg = len(inputs), len(bg)
    gen = seeded_generator(seed, inputs.device)
    reps = -(-n_samples // n_bg)
    ref_idx = torch.stack(
        [
            torch.cat(
                [torch.randperm(n_bg, generator=gen, device=inputs.device) for _ in range(reps)]
            )[:n_samples]
            for _ in range(n)
        ]
    )  # (N, n_samples)
    strata = torch.stack(
        [torch.randperm(n_samples, generator=gen, device=inputs.device) for _ in range(n)]
    )
    alphas = (
        strata + torch.rand((n, n_samples), generator=gen, device=inputs.device)
    ) / n_samples  # (N, n_samples)
    span = (
        inputs.reshape(n, -1).max(1).values - inputs.reshape(n, -1).min(1).values
    ) * stdev  # (N,)
    shape1 = (-1, *([1] * (inputs.ndim - 1)))
    total = torch.zeros_like(inputs)
    size = chunk_size(model, inputs[0], runtime)
    bar = progress_bar(n * n_samples, "gradient_shap", runtime)
    for part in chunks(n * n_samples, size):  # row r is draw r // N of sample r % N
        rows = torch.arange(part.start, part.stop, device=inputs.device)
        draw, sample = rows // n, rows % n
        b = bg[ref_idx[sample, draw]]
        diff = inputs[sample] - b
        points = b + alphas[sample, draw].to(inputs.dtype).view(shape1) * diff
        if stdev > 0:
            # One draw per row, so the noise of a row does not depend on the chunk size.
            noise = torch.stack(
                [
                    torch.randn(
                        points.shape[1:], generator=gen, device=inputs.device, dtype=inputs.dtype
                    )
                    for _ in range(len(rows))
                ]
            )  # (rows, ...)
            points = points + noise * span[sample].view(shape1)
        grads, _ = input_gradients(model, points, target[sample])
        total.index_add_(0, sample, grads * diff)
        bar.update(len(rows))
    bar.close()
    attributions = total / n_samples
    delta = attributions.reshape(n, -1).sum(1) - (
        _target_outputs(model, inputs, target) - _mean_reference_output(model, bg, target)
    )
    params = {
        "n_samples": n_samples,
        "stdev": stdev,
        "seed": seed,
        "background": f"tensor{tuple(bg.shape)}",
    }
    return MethodResult(attributions, extras={"convergence_delta": delta.cpu()}, params=params)


def _mean_reference_output(model: Model, bg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over background rows of f(b)[target_i], per sample (N,)."""
    with torch.no_grad():
        out = model.forward(bg)  # (B, classes)
    return out.mean(0)[target.to(out.device)]


@register_method("deep_shap", aliases=("deeplift_shap",))
def deep_shap(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    background: Any = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """DeepLIFT-SHAP: DeepLIFT (rescale rule) averaged over every background reference.

    Shrikumar et al. 2017, Lundberg & Lee 2017. captum's DeepLift is the engine; we batch
    the (input, reference) pairs under the memory budget and average. Works for networks
    built from nn.Module activations (functional activations fall back to gradients).
    """
    bg = _background(model, background, inputs, "deep_shap")
    n, n_bg = len(inputs), len(bg)
    with torch.enable_grad():  # captum would fail with a bare RuntimeError on a detached forward
        probe = inputs[:1].detach().requires_grad_(True)
        has_gradient_path(model, model.forward(probe)[:, int(target[0])])
    engine = DeepLift(model.net)
    total = torch.zeros_like(inputs)
    size = max(
        1, chunk_size(model, inputs[0], runtime) // 2
    )  # DeepLIFT runs inputs and references together
    bar = progress_bar(n * n_bg, "deep_shap", runtime)
    for part in chunks(n * n_bg, size):  # row r pairs reference r // N with sample r % N
        rows = torch.arange(part.start, part.stop, device=inputs.device)
        ref, sample = rows // n, rows % n
        with torch.enable_grad(), warnings.catch_warnings():
            # captum announces its temporary hooks on every call; they are removed before it returns.
            warnings.filterwarnings("ignore", message=".*hooks and attributes.*")
            attr = engine.attribute(
                inputs[sample].clone().requires_grad_(True),
                baselines=bg[ref].clone(),
                target=target[sample].to(inputs.device),
            )
        total.index_add_(0, sample, attr.detach())
        bar.update(len(rows))
    bar.close()
    attributions = total / n_bg
    delta = attributions.reshape(n, -1).sum(1) - (
        _target_outputs(model, inputs, target) - _mean_reference_output(model, bg, target)
    )
    return MethodResult(
        attributions,
        extras={"convergence_delta": delta.cpu()},
        params={"background": f"tensor{tuple(bg.shape)}"},
    )
