"""Gradient methods: saliency, gradient x input, and SmoothGrad around any gradient method."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_fraction, check_int
from .._runtime import Runtime, chunk_size, chunks, input_gradients, progress_bar, seeded_generator
from ..errors import InputError, describe
from ..model import Model
from ..registry import MethodResult, get_method, register_method


def _batched_gradients(
    model: Model, x: torch.Tensor, target: torch.Tensor, runtime: Runtime
) -> torch.Tensor:
    size = chunk_size(model, x[0], runtime)
    grads = torch.empty_like(x)
    for part in chunks(len(x), size):
        grads[part], _ = input_gradients(model, x[part], target[part])
    return grads


@register_method("saliency", aliases=("gradient", "vanilla_gradient"))
def saliency(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    absolute: bool = True,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Gradient of the target score with respect to the input (absolute value by default).

    Simonyan et al. 2014. ``absolute=False`` keeps the sign.
    """
    grads = _batched_gradients(model, inputs, target, runtime)
    return MethodResult(grads.abs() if absolute else grads, params={"absolute": bool(absolute)})


@register_method("gradient_x_input", aliases=("input_x_gradient",))
def gradient_x_input(
    model: Model, inputs: torch.Tensor, target: torch.Tensor, *, runtime: Runtime = Runtime()
) -> MethodResult:
    """Input times gradient: exact for linear models with a zero baseline (Shrikumar et al. 2016)."""
    return MethodResult(inputs * _batched_gradients(model, inputs, target, runtime))


@register_method("smoothgrad", aliases=("noise_tunnel",))
def smoothgrad(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    base: str = "saliency",
    n_samples: int = 25,
    stdev: float = 0.15,
    seed: int = 0,
    base_params: dict[str, Any] | None = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Average of a gradient method over noisy copies of the input (Smilkov et al. 2017).

    Args:
        base: the method to smooth (any registered method except smoothgrad itself).
        n_samples: noisy copies per input.
        stdev: noise standard deviation as a fraction of each input's value range (max - min).
        seed: seed of the noise; results are identical for the same seed.
        base_params: options passed to the base method.
    """
    n_samples = check_int(n_samples, "n_samples")
    stdev = check_fraction(stdev, "stdev", 0.0, 10.0)
    info = get_method(base)
    if info.name == "smoothgrad":
        raise InputError(
            describe("`base`", "a method other than smoothgrad", repr(base), 'Use base="saliency".')
        )
    base_params = dict(base_params or {})
    info.check_params(base_params)
    n = len(inputs)
    flat = inputs.reshape(n, -1)
    sigma = stdev * (flat.max(1).values - flat.min(1).values)  # (N,)
    sigma = sigma.reshape(n, *([1] * (inputs.ndim - 1)))
    gen = seeded_generator(seed, inputs.device)
    # Draw noise sample by sample, so the result for a given seed does not depend on chunking.
    per_chunk = max(1, chunk_size(model, inputs[0], runtime) // n)
    total = torch.zeros_like(inputs)
    bar = progress_bar(n_samples * n, "smoothgrad", runtime)
    for part in chunks(n_samples, per_chunk):
        k = part.stop - part.start
        # One equal-sized draw per noisy copy: the CPU generator's stream depends on the size of
        # each call, so drawing (k, N, ...) at once would tie the noise to the chunk size.
        noise = torch.stack(
            [
                torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
                for _ in range(k)
            ]
        )  # (k, N, ...)
        noisy = (inputs[None] + noise * sigma[None]).reshape(
            k * n, *inputs.shape[1:]
        )  # (k * N, ...)
        res = info.func(
            model,
            noisy,
            target.repeat(k),
            runtime=Runtime(False, runtime.memory_budget),
            **base_params,
        )
        total += res.attributions.reshape(k, *inputs.shape).sum(0)
        bar.update(k * n)
    bar.close()
    params = {
        "base": info.name,
        "n_samples": n_samples,
        "stdev": stdev,
        "seed": seed,
        "base_params": base_params,
    }
    return MethodResult(total / n_samples, params=params)
