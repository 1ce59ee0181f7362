"""Gradient methods: saliency, gradient x input, and SmoothGrad around any gradient method."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_bool, check_fraction, check_int, check_seed
from .._runtime import (
    ChunkRequest,
    Runtime,
    Tuning,
    accumulator,
    check_budget,
    chunk_size,
    chunks,
    format_bytes,
    input_gradients,
    network_cost,
    progress_chunks,
    seeded_generator,
)
from ..errors import InputError, UnknownMethodError, describe
from ..inputs import value_ranges
from ..model import Model
from ..registry import MethodInfo, MethodResult, get_method, register_method
from ..throughput import one_chunk


def _batched_gradients(
    model: Model, x: torch.Tensor, target: torch.Tensor, runtime: Runtime, what: str
) -> torch.Tensor:
    """Input gradients of every row, in chunks that fit the budget next to the (N, ...)
    gradients and the inputs (a dtype conversion copies them; in a nested call, such as
    smoothgrad's, they are the caller's, already held out); attributions are made in place."""
    n = x.shape[0]
    if n == 1 and not runtime.explicit:
        size = 1  # chunk_size's answer for a row that cannot be split, without its request
    else:
        request = ChunkRequest(
            extra_bytes_per_row=64,
            fixed_bytes=gradient_buffers(x, nested=runtime.reserved > 0),
            what=f"{what} on {n} input(s)",
            buffers="the gradients" if runtime.reserved else "the gradients and the inputs",
            most=n,
        )
        size = chunk_size(model, x[0], runtime, request)
    if one_chunk(n, size):  # one pass: its gradients are the result, nothing to gather
        grads, out = input_gradients(model, x, target, full=True)
        grads = grads.contiguous()  # autograd may hand back an expanded (read-only) view
    else:
        grads = torch.empty_like(x)
        outs = []
        for part in chunks(n, size, Tuning.of(model, "forward+backward", x[0], runtime)):
            grads[part], part_out = input_gradients(
                model.rows(part), x[part], target[part], full=True
            )
            outs.append(part_out)
        out = torch.cat(outs)
    if runtime.outputs is not None and runtime.reserved == 0:  # the caller's rows, not copies
        runtime.outputs.put(model, x, out)
    return grads


def _saliency_signed(params: dict[str, Any]) -> bool:
    """|gradient| maps (the default) are drawn unsigned, with max |.| over channels
    (Simonyan et al.'s choice); ``absolute=False`` ones are signed."""
    return not params.get("absolute", True)


@register_method(
    "saliency", aliases=("gradient", "vanilla_gradient"), signed=_saliency_signed, row_aligned=True
)
def saliency(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    absolute: bool = True,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Gradient of the target score with respect to the input (absolute value by default).

    Simonyan et al. 2014. ``absolute=False`` keeps the sign (``absolute`` must be a bool).
    """
    absolute = check_bool(absolute, "absolute")
    grads = _batched_gradients(model, inputs, target, runtime, "saliency")
    return MethodResult(grads.abs_() if absolute else grads, params={"absolute": absolute})


@register_method("gradient_x_input", aliases=("input_x_gradient",), row_aligned=True)
def gradient_x_input(
    model: Model, inputs: torch.Tensor, target: torch.Tensor, *, runtime: Runtime = Runtime()
) -> MethodResult:
    """Input times gradient: exact for linear models with a zero baseline (Shrikumar et al. 2016)."""
    grads = _batched_gradients(model, inputs, target, runtime, "gradient_x_input")
    return MethodResult(grads.mul_(inputs))


def _smoothed_signed(params: dict[str, Any]) -> bool:
    """SmoothGrad's maps are drawn as its base method's (an unknown base: signed)."""
    try:
        info = get_method(params.get("base", "saliency"))
    except UnknownMethodError:
        return True
    return info.draws_signed(params.get("base_params") or {})


@register_method("smoothgrad", aliases=("noise_tunnel",), signed=_smoothed_signed)
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
        seed: seed of the noise, an integer in [0, 2**63 - 1]; results are identical for
            the same seed; None means 0.
        base_params: options passed to the base method.
    """
    n_samples = check_int(n_samples, "n_samples")
    seed = check_seed(seed)
    stdev = check_fraction(stdev, "stdev", 0.0, 10.0)
    info = _base_method(base)
    base_params = dict(base_params or {})
    info.check_params(base_params)
    n = len(inputs)
    sigma = stdev * value_ranges(inputs, model.layout)  # (N, 1, ...), or (N, D) per input
    gen = seeded_generator(seed, inputs.device)
    # Draw noise sample by sample, so the result for a given seed does not depend on chunking.
    per_chunk = noisy_copies_per_chunk(model, inputs, runtime)
    total = accumulator(inputs)  # at least float32
    with progress_chunks(n_samples, per_chunk, "smoothgrad", runtime, rows_per_index=n) as parts:
        for part in parts:
            k = part.stop - part.start
            noisy = _noisy_copies(inputs, sigma, k, gen)  # (k * N, ...), held while the base runs
            res = info.func(
                model,
                noisy,
                target.repeat(k),
                runtime=runtime.reserve(smoothgrad_bytes(inputs, k), progress=False),
                **base_params,
            )
            total += res.attributions.reshape(k, *inputs.shape).sum(0)
            del noisy, res  # before the next chunk's noise is allocated
    params = {
        "base": info.name,
        "n_samples": n_samples,
        "stdev": stdev,
        "seed": seed,
        "base_params": base_params,
    }
    return MethodResult(total / n_samples, params=params)


def _base_method(base: str) -> MethodInfo:
    """The registered method smoothgrad smooths: any but smoothgrad itself."""
    info = get_method(base)
    if info.name == "smoothgrad":
        raise InputError(
            describe("`base`", "a method other than smoothgrad", repr(base), 'Use base="saliency".')
        )
    return info


def _noisy_copies(
    inputs: torch.Tensor, sigma: torch.Tensor, k: int, gen: torch.Generator
) -> torch.Tensor:
    """``k`` noisy copies of the batch, inputs + noise * sigma: (k * N, ...)."""
    # One equal-sized draw per noisy copy: the CPU generator's stream depends on the size of
    # each call, so drawing (k, N, ...) at once would tie the noise to the chunk size.
    noise = torch.empty((k, *inputs.shape), device=inputs.device, dtype=inputs.dtype)
    # Drawn in float32 whatever the model's dtype: a seed gives the same noise to a float64
    # or bfloat16 copy of a model (randn's stream depends on the dtype).
    for j in range(k):
        noise[j] = torch.randn(inputs.shape, generator=gen, device=inputs.device)
    # In place: the same values as inputs + noise * sigma, in the noise's memory.
    return noise.mul_(sigma[None]).add_(inputs[None]).reshape(k * len(inputs), *inputs.shape[1:])


def gradient_buffers(x: torch.Tensor, nested: bool) -> int:
    """(N, ...) gradients, and the inputs unless a calling method holds them."""
    return (1 if nested else 2) * x.numel() * x.element_size()


def smoothgrad_bytes(inputs: torch.Tensor, copies: int) -> int:
    """What smoothgrad holds while its base method runs on ``copies`` noisy copies of the
    batch: the total, a noise draw being copied, the inputs, a chunk's summed attributions
    (four (N, ...)) and the noisy rows themselves."""
    return (4 + copies) * len(inputs) * inputs[0].numel() * inputs.element_size()


def noisy_copies_per_chunk(model: Model, inputs: torch.Tensor, runtime: Runtime) -> int:
    """Noisy copies of the batch per call of the base method: as many as fit the budget with
    one network chunk for all their rows (as saliency needs: the rows, their gradients and
    attributions next to the network's cost). At least one; a base method that needs more
    memory per row chunks the rows itself within what is left.

    Raises:
        InputError: the budget (set by the caller) is below what one copy needs with a
            network chunk of one row; the message says the minimum.
    """
    n, row = len(inputs), inputs[0].numel() * inputs.element_size()
    cost = network_cost(model, inputs[0], runtime=runtime)
    one_row = cost.floor(64)  # as saliency's chunk_size counts it
    minimum = smoothgrad_bytes(inputs, 1) + n * row + one_row  # + the copy's gradients
    check_budget(
        runtime,
        minimum,
        f"smoothgrad on {n} input(s) of shape {tuple(inputs.shape[1:])}",
        f"{format_bytes(one_row)} for one row's forward+backward pass and "
        f"{format_bytes(minimum - one_row)} of buffers (one noisy copy of the batch, its "
        "gradients, the total, the inputs)",
    )
    # per row: the noisy row and its gradient (the attributions, in place) next to the pass
    rows = cost.rows_within(runtime.budget - smoothgrad_bytes(inputs, 0), 2 * row + 64)
    return int(max(1, rows // n))
