"""Gradient-based SHAP: expected gradients (gradient_shap) and DeepLIFT-SHAP (deep_shap).

Both average an attribution over reference samples drawn from a ``background`` tensor, so
for a linear model f(x) = w.x + b they equal (x - E[background]) * w.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .._checks import as_reference, check_fraction, check_int, check_seed, has_gradient_path
from .._runtime import (
    ChunkRequest,
    RowCost,
    Runtime,
    Tuning,
    accumulator,
    check_expansion,
    chunk_size,
    forward_in_chunks,
    input_gradients,
    measured_cost,
    network_cost,
    progress_chunks,
    seeded_generator,
)
from ..completeness import EXACT, EXPECTED, Completeness
from ..errors import ExplainerWarning, InputError, ModelError, describe
from ..inputs import value_ranges
from ..model import Model
from ..registry import MethodResult, register_method
from ._deeplift.engine import ControlFlowError, Coverage, DeepLiftResult, deeplift


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


MAX_SAMPLES = 10_000  # gradient_shap draws per input: (N, n_samples) indices are drawn up front
BUFFERS = "the background, the total, the attributions and the inputs"


def _held_bytes(inputs: torch.Tensor, bg: torch.Tensor) -> int:
    """(N, ...) total, attributions and inputs (a dtype conversion copies them), and the
    background (B, ...), held for the whole call."""
    return (3 * len(inputs) + len(bg)) * inputs[0].numel() * inputs.element_size()


def _target_outputs(
    model: Model, x: torch.Tensor, target: torch.Tensor, runtime: Runtime, held: int
) -> torch.Tensor:
    out = forward_in_chunks(model, x, runtime, held, "f(inputs)")
    return out.gather(1, target[:, None].to(x.device)).squeeze(1)


def _fewer_draws_gap(params: Mapping[str, Any]) -> str:
    """How to close gradient_shap's completeness gap: it is Monte Carlo error."""
    noise = (
        " (stdev > 0 also moves the expectation off f(x) - E f(background))"
        if params.get("stdev")
        else ""
    )
    return (
        f"Pass more n_samples (now {params.get('n_samples')}): the gap is sampling error and "
        f"falls as 1/sqrt(n_samples), 4x the samples halve it{noise}."
    )


@register_method(
    "gradient_shap",
    aliases=("expected_gradients",),
    completeness=Completeness(EXPECTED, _fewer_draws_gap),
)
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
        n_samples: (reference, a) draws per input, at most 10000 (MAX_SAMPLES).
        stdev: optional Gaussian noise added to the path points, as a fraction of each
            input's value range (captum's ``stdevs``); 0 by default.
        seed: seed of the draws, an integer in [0, 2**63 - 1]; None means 0.
    """
    n_samples = check_draws(n_samples)
    seed = check_seed(seed)
    stdev = check_fraction(stdev, "stdev", 0.0, 10.0)
    bg = _background(model, background, inputs, "gradient_shap")
    n = len(inputs)
    held = _held_bytes(inputs, bg)
    size = _draws_per_chunk(model, inputs, bg, n_samples, stdev, runtime)
    gen = seeded_generator(seed, inputs.device)
    ref_idx, alphas = _stratified_draws(gen, n, len(bg), n_samples, inputs.device)
    span = value_ranges(inputs, model.layout) * stdev  # (N, 1, ...), or (N, D) per input
    shape1 = (-1, *([1] * (inputs.ndim - 1)))
    total = accumulator(inputs)  # at least float32
    tuning = Tuning.of(model, "forward+backward", inputs[0], runtime)
    with progress_chunks(n * n_samples, size, "gradient_shap", runtime, tuning=tuning) as parts:
        for part in parts:  # row r is draw r // N of sample r % N
            rows = torch.arange(part.start, part.stop, device=inputs.device)
            draw, sample = rows // n, rows % n
            # In place on gathered rows: the same values as x - b and b + a (x - b).
            b = bg[ref_idx[sample, draw]]
            diff = inputs[sample].sub_(b)
            points = (diff * alphas[sample, draw].to(inputs.dtype).view(shape1)).add_(b)
            del b
            if stdev > 0:
                _add_noise(points, span[sample], gen)
            grads, _ = input_gradients(model, points, target[sample])
            del points
            total.index_add_(0, sample, grads.mul_(diff).to(total.dtype))
            del diff, grads
    del ref_idx, alphas
    attributions = total / n_samples
    del total
    delta = _completeness_gap(model, inputs, bg, target, attributions, runtime, held)
    params = {
        "n_samples": n_samples,
        "stdev": stdev,
        "seed": seed,
        "background": f"tensor{tuple(bg.shape)}",
    }
    return MethodResult(attributions, extras={"convergence_delta": delta.cpu()}, params=params)


def check_draws(value: Any) -> int:
    """``n_samples`` of gradient_shap: an integer in [1, MAX_SAMPLES]."""
    return check_expansion(
        check_int(value, "n_samples"),
        "n_samples",
        MAX_SAMPLES,
        f"Every draw is one gradient per input; the estimate's error falls as 1/sqrt(n_samples) "
        f"(with n_samples a multiple of the background size the reference mean is exact), so "
        f"pass n_samples <= {MAX_SAMPLES}, or deep_shap for an exact average over the background.",
    )


def _draws_per_chunk(
    model: Model,
    inputs: torch.Tensor,
    bg: torch.Tensor,
    n_samples: int,
    stdev: float,
    runtime: Runtime,
) -> int:
    """(reference, a) draws per network chunk of gradient_shap, within the memory budget."""
    n, n_bg = len(inputs), len(bg)
    reps = -(-n_samples // n_bg)
    row = inputs[0].numel() * inputs.element_size()
    # Drawn up front, (N, n_samples): reference indices and strata (int64), path positions,
    # and the lists and sums they are built from.
    draws = 8 * n * reps * n_bg + 40 * n * n_samples
    # Per row: the reference, x - b and the path point (and the noise) while they are built,
    # then x - b and the point next to the network's pass.
    build = (4 if stdev > 0 else 3) * row
    request = ChunkRequest(
        extra_bytes_per_row=max(
            2 * row, build - network_cost(model, inputs[0], runtime=runtime).per_row
        )
        + 64,
        fixed_bytes=_held_bytes(inputs, bg) + draws,
        what=f"gradient_shap on {n} input(s)",
        buffers=f"{BUFFERS}, the (N, n_samples) draws",
    )
    return chunk_size(model, inputs[0], runtime, request)


def _stratified_draws(
    gen: torch.Generator, n: int, n_bg: int, n_samples: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input, ``n_samples`` reference indices using every background row equally often,
    and path positions a stratified in [0, 1]: both (N, n_samples)."""
    reps = -(-n_samples // n_bg)
    rows = []
    for _ in range(n):  # per input: shuffled passes over the background, cut to n_samples
        passes = [torch.randperm(n_bg, generator=gen, device=device) for _ in range(reps)]
        rows.append(torch.cat(passes)[:n_samples])
    ref_idx = torch.stack(rows)  # (N, n_samples)
    strata = torch.stack(
        [torch.randperm(n_samples, generator=gen, device=device) for _ in range(n)]
    )
    alphas = (
        strata + torch.rand((n, n_samples), generator=gen, device=device)
    ) / n_samples  # (N, n_samples)
    return ref_idx, alphas


def _add_noise(points: torch.Tensor, scale: torch.Tensor, gen: torch.Generator) -> None:
    """Add Gaussian noise times ``scale`` (rows, 1, ...) to ``points`` (rows, ...), in place."""
    # One draw per row, so the noise of a row does not depend on the chunk size.
    noise = torch.empty_like(points)  # (rows, ...)
    # Drawn in float32 whatever the dtype, so a seed gives every dtype the same noise.
    for j in range(len(points)):
        noise[j] = torch.randn(points.shape[1:], generator=gen, device=points.device)
    points.add_(noise.mul_(scale))


def _completeness_gap(
    model: Model,
    inputs: torch.Tensor,
    bg: torch.Tensor,
    target: torch.Tensor,
    attributions: torch.Tensor,
    runtime: Runtime,
    held: int,
) -> torch.Tensor:
    """Per sample, sum of attributions - (f(x) - mean_b f(b)) for the target: (N,)."""
    return attributions.reshape(len(inputs), -1).sum(1) - (
        _target_outputs(model, inputs, target, runtime, held)
        - _mean_reference_output(model, bg, target, runtime, held)
    )


def _mean_reference_output(
    model: Model, bg: torch.Tensor, target: torch.Tensor, runtime: Runtime, held: int
) -> torch.Tensor:
    """Mean over background rows of f(b)[target_i], per sample (N,)."""
    out = forward_in_chunks(model, bg, runtime, held, "f(background)")  # (B, classes)
    return out.mean(0)[target.to(out.device)]


def _deeplift_cost(model: Model, sample: torch.Tensor, runtime: Runtime) -> RowCost:
    """Measured cost of our DeepLIFT on (input, reference) pairs shaped like ``sample`` (a
    reference pass that keeps each nonlinear operation's values, then a pass with gradients)."""

    def run(rows: torch.Tensor) -> None:
        _pairs(model, rows, rows.detach().mul(0.5), torch.zeros(len(rows), dtype=torch.long))

    return measured_cost(model, sample, "deeplift", run, runtime)


def _outputs_of(
    result: DeepLiftResult,
    f_x: torch.Tensor | None,
    f_b: torch.Tensor | None,
    n: int,
    n_bg: int,
    sample: torch.Tensor,
    ref: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) (N, classes) and f(b) (B, classes) filled in from a chunk of pairs' passes."""
    out, out0 = result.all_outputs, result.all_reference_outputs
    if f_x is None or f_b is None:
        f_x = out.new_zeros(n, out.shape[1])
        f_b = out0.new_zeros(n_bg, out0.shape[1])
    f_x[sample] = out
    f_b[ref] = out0
    return f_x, f_b


def _pairs(
    model: Model,
    x: torch.Tensor,
    refs: torch.Tensor,
    target: torch.Tensor,
    reference_index: torch.Tensor | None = None,
) -> DeepLiftResult:
    """DeepLIFT of each row of ``x`` against the row of ``refs`` (or, with
    ``reference_index``, against ``refs[reference_index]``: each distinct reference once); a
    forward whose operations depend on the input values is a ModelError, so is one without a
    gradient path."""
    try:
        return deeplift(
            model.forward,
            x,
            refs,
            target,
            check=lambda out: has_gradient_path(model, out),
            reference_index=reference_index,
        )
    except ModelError as err:
        if not isinstance(err.__cause__, ControlFlowError):
            raise
        raise ModelError(
            describe(
                "deep_shap",
                "a network that runs the same operations on the inputs and on the references",
                f"{err.__cause__}",
                "Its control flow depends on the input values: use integrated_gradients or "
                "kernel_shap, which only need the outputs on many points.",
            )
        ) from err.__cause__


def _warn_uncovered(coverage: Coverage) -> None:
    if coverage.uncovered:
        names = ", ".join(f"{k} ({v}x)" for k, v in sorted(coverage.uncovered.items()))
        warnings.warn(
            f"deep_shap: no DeepLIFT rule covers {names} (operations with several outputs); "
            "their plain gradients were used, so the attributions may not add up to "
            "f(x) - E f(background): see the completeness gap (convergence_delta).",
            ExplainerWarning,
            stacklevel=3,
        )


def _refuse_torchscript(model: Model) -> None:
    """TorchScript runs its graph in C++, where our engine cannot follow the operations."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.net.modules()):
        raise ModelError(
            describe(
                "deep_shap on a TorchScript model",
                "an eager nn.Module (DeepLIFT follows each torch operation of the forward)",
                f"{type(model.net).__name__}",
                "Load the eager network (ex.load_model with factory= and a state_dict), or "
                "explain the TorchScript model with integrated_gradients, gradient_shap or "
                "kernel_shap.",
            )
        )


@register_method(
    "deep_shap",
    aliases=("deeplift_shap",),
    completeness=Completeness(
        EXACT,
        "DeepLIFT's rules add up exactly on the operations they cover: see the warning on "
        "uncovered operations and exp.params['rules'], or use integrated_gradients.",
    ),
)
def deep_shap(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    background: Any = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """DeepLIFT-SHAP: DeepLIFT (rescale rule) averaged over every background reference.

    Shrikumar et al. 2017, Lundberg & Lee 2017. Our engine (``methods/_deeplift``) sees
    every torch operation of the forward, module or functional, reused modules included:
    elementwise nonlinearities get the rescale multiplier, max pooling shap's split of each
    output's change, other nonlinear operations (layer norm, softmax, products of
    activations) the mean gradient along the reference-to-input line corrected to sum to
    delta. The attributions add up to f(x) - mean_b f(b) per sample (``convergence_delta``
    records the gap); the rules used are recorded in the parameters (``rules``).
    """
    bg = _background(model, background, inputs, "deep_shap")
    _refuse_torchscript(model)
    n, n_bg = len(inputs), len(bg)
    held = _held_bytes(inputs, bg)
    request = ChunkRequest(
        extra_bytes_per_row=2 * inputs[0].numel() * inputs.element_size() + 64,  # the pair
        fixed_bytes=held,
        what=f"deep_shap on {n} input(s)",
        buffers=BUFFERS,
        cost=_deeplift_cost(model, inputs[0], runtime),
    )
    size = chunk_size(model, inputs[0], runtime, request)
    total, coverage = accumulator(inputs), Coverage()
    # the pairs' own passes give f(x) and f(b): no forward is run again for the gap
    f_x: torch.Tensor | None = None
    f_b: torch.Tensor | None = None
    tuning = Tuning.of(model, "deeplift", inputs[0], runtime)
    with progress_chunks(n * n_bg, size, "deep_shap", runtime, tuning=tuning) as parts:
        for part in parts:  # row r pairs reference r // N with sample r % N
            rows = torch.arange(part.start, part.stop, device=inputs.device)
            ref, sample = rows // n, rows % n
            first = int(ref[0])  # the chunk's references, each run once (see deeplift)
            result = _pairs(
                model,
                inputs[sample],
                bg[first : int(ref[-1]) + 1],
                target[sample].to(inputs.device),
                ref - first,
            )
            total.index_add_(0, sample, result.attributions.to(total.dtype))
            coverage = result.coverage
            f_x, f_b = _outputs_of(result, f_x, f_b, n, n_bg, sample, ref)
    _warn_uncovered(coverage)
    attributions = total / n_bg
    del total
    if runtime.outputs is not None and runtime.reserved == 0:
        runtime.outputs.put(model, inputs, f_x)
    picked = target.to(f_x.device)[:, None]
    delta = attributions.reshape(n, -1).sum(1) - (
        f_x.gather(1, picked).squeeze(1) - f_b.mean(0)[picked.squeeze(1)]
    ).to(attributions)
    return MethodResult(
        attributions,
        extras={"convergence_delta": delta.cpu()},
        params={"background": f"tensor{tuple(bg.shape)}", "rules": coverage.record()},
    )
