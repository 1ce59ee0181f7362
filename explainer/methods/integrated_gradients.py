"""Integrated gradients (Sundararajan et al. 2017) with memory-bounded batching.

IG_i(x) = (x_i - b_i) * integral_0^1 dF/dx_i (b + a (x - b)) da, approximated by a quadrature
``rule`` with ``n_steps`` nodes. The n_steps x batch expansion is processed in chunks whose
size comes from the memory budget, so no step count or batch size can exhaust memory.
With ``tolerance=`` the step count is chosen per sample instead, until an error estimate is
below the tolerance (:mod:`explainer.methods._ig.adaptive`).

Departure from captum, on purpose: our ``riemann_trapezoid`` uses the correct composite
trapezoid weights (they sum to 1). captum's weights sum to (n-1)/n, which leaves a
completeness gap of (f(x) - f(b))/n even on a linear model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._checks import check_choice, check_int, check_seed
from .._runtime import (
    ChunkRequest,
    Runtime,
    Tuning,
    accumulation_dtype,
    accumulator,
    check_expansion,
    chunk_size,
    forward_in_chunks,
    input_gradients,
    progress_chunks,
)
from ..completeness import EXACT, Completeness
from ..errors import InputError, describe
from ..model import Model
from ..registry import MethodResult, register_method
from ._ig.adaptive import MIN_STEPS, adaptive_gradient_integral
from ._ig.quadrature import MAX_STEPS, gauss_legendre
from .references import make_baselines

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")


def quadrature(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] and weights (summing to 1) of a quadrature rule with ``n_steps`` nodes."""
    n = n_steps
    if rule == "gausslegendre":
        nodes, weights = gauss_legendre(n)
        return 0.5 * (nodes + 1), 0.5 * weights
    if rule == "riemann_trapezoid":
        if n < 2:
            raise InputError(
                describe(
                    "`n_steps`", "at least 2 for the trapezoid rule", str(n), "Pass n_steps >= 2."
                )
            )
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n), w
    offsets = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    return (np.arange(n) + offsets) / n, np.full(n, 1.0 / n)


def integrate_gradients(
    model: Model,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    alphas: np.ndarray,
    weights: np.ndarray,
    runtime: Runtime,
) -> torch.Tensor:
    """sum_k w_k * grad F(b + a_k (x - b)), chunked over (step, sample) rows by the memory budget."""
    n, steps = len(inputs), len(alphas)
    request = ChunkRequest(
        extra_bytes_per_row=row_bytes(inputs) + 64,  # the path points; row indices
        fixed_bytes=fixed_bytes(inputs, baselines) + 16 * steps,
        what=f"integrated_gradients on {n} input(s)",
        buffers=FIXED_BUFFERS,
    )
    size = chunk_size(model, inputs[0], runtime, request)
    diff = inputs - baselines  # (N, ...)
    base = baselines.expand_as(inputs)
    a = torch.as_tensor(alphas, dtype=inputs.dtype, device=inputs.device)
    # weights and sums in at least float32: a float16/bfloat16 model's gradients are summed there
    w = torch.as_tensor(weights, dtype=accumulation_dtype(inputs.dtype), device=inputs.device)
    total = accumulator(inputs)
    shape1 = (-1, *([1] * (inputs.ndim - 1)))
    tuning = Tuning.of(model, "forward+backward", inputs[0], runtime)
    with progress_chunks(steps * n, size, "integrated_gradients", runtime, tuning=tuning) as parts:
        for part in parts:  # row r is step r // N of sample r % N
            rows = torch.arange(part.start, part.stop, device=inputs.device)
            step, sample = rows // n, rows % n
            # In place on the gathered rows: the same values as b + a (x - b), one temporary less.
            points = diff[sample].mul_(a[step].view(shape1)).add_(base[sample])  # (rows, ...)
            grads, _ = input_gradients(model, points, target[sample])
            del points
            total.index_add_(0, sample, grads.to(total.dtype).mul_(w[step].view(shape1)))
    return total


def _closing_the_gap(params: Mapping[str, Any]) -> str:
    """How to close a completeness gap of an explanation made with ``params``."""
    if params.get("tolerance") is None:
        return (
            f"Pass more n_steps (now {params.get('n_steps')}), or tolerance=0.01 for steps "
            "chosen per sample until the error is below 1%."
        )
    return (
        f"Pass a smaller tolerance (now {params.get('tolerance')}) or a larger max_steps "
        f"(now {params.get('max_steps')}; see extras['converged'])."
    )


@register_method(
    "integrated_gradients", aliases=("ig",), completeness=Completeness(EXACT, _closing_the_gap)
)
def integrated_gradients(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    baselines: Any = "zeros",
    n_steps: int = 64,
    rule: str = "gausslegendre",
    tolerance: float | None = None,
    max_steps: int = 1024,
    seed: int = 0,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Path integral of gradients from a baseline to the input (Sundararajan et al. 2017).

    Args:
        baselines: "zeros", "blur" (Gaussian-blurred input), "uniform" (noise in the input's
            range, seeded) or a tensor of shape (1 or N, ...) or a number.
        n_steps: quadrature nodes along the path, at most 10000 (MAX_STEPS; for more
            accuracy use ``tolerance``).
        rule: "gausslegendre" (default), "riemann_trapezoid", "riemann_middle",
            "riemann_left" or "riemann_right".
        tolerance: None (default) for the fixed ``rule`` with ``n_steps`` nodes. A number in
            (0, 1) switches to the error-controlled rule (``params["rule"]`` "adaptive_hp"):
            per sample, nested panels are refined where the integrand changes, trapezoid
            panels where it is rough (ReLU) and degree-9 Kronrod panels where it is smooth
            (GELU, SiLU, tanh), until the estimated relative L2 error of the attributions is
            at most ``tolerance`` (see :mod:`explainer.methods._ig.adaptive`); ``n_steps``
            and ``rule`` are then unused.
        max_steps: with ``tolerance``, the most gradient evaluations per sample (5 to
            10000); a sample that needs more stops there and is reported as not converged.
        seed: used by baselines="uniform": an integer in [0, 2**63 - 1]; None means 0.

    Returns extras ``convergence_delta`` (sum of attributions - (f(x) - f(b)), per sample;
    ``ex.explain`` adds ``relative_gap`` from it, and warns above 1%: see
    :mod:`explainer.completeness`). With ``tolerance`` also, per sample:
    ``error_estimate`` (estimated relative L2 error), ``steps_used`` (gradient evaluations,
    each one forward + backward row), ``forward_evaluations`` (forward-only rows: 0, the
    outputs at the path ends come with the gradients) and ``converged`` (bool).

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> e = ex.explain(ex.wrap(net, modality="tabular"), torch.ones(2, 3), "ig", target=0,
        ...                tolerance=0.01, progress=False)
        >>> bool(e.extras["converged"].all()), bool((e.extras["error_estimate"] <= 0.01).all())
        (True, True)
    """
    seed = check_seed(seed)
    b = make_baselines(model, inputs, baselines, seed)
    if tolerance is None:
        n_steps = check_steps(n_steps)
        check_choice(rule, "rule", RULES)
        grad_sum, f_x, f_b = _fixed_rule(model, inputs, b, target, rule, n_steps, runtime)
        extras: dict[str, torch.Tensor] = {}
    else:
        tolerance = check_tolerance(tolerance)
        max_steps = check_max_steps(max_steps)
        grad_sum, f_x, f_b, extras = _adaptive_rule(
            model, inputs, b, target, tolerance, max_steps, runtime
        )
    attributions = (inputs - b).mul_(grad_sum)  # as (x - b) * grad_sum, one (N, ...) less
    delta = attributions.reshape(len(inputs), -1).sum(1) - (f_x - f_b)
    params = {
        "baselines": baselines
        if isinstance(baselines, str | int | float)
        else f"tensor{tuple(b.shape)}",
        "n_steps": n_steps if tolerance is None else None,
        "rule": rule if tolerance is None else "adaptive_hp",
        "tolerance": tolerance,
        "max_steps": max_steps,
        "seed": seed,
    }
    extras = {"convergence_delta": delta.cpu(), **extras}
    return MethodResult(attributions, extras=extras, params=params)


def _fixed_rule(
    model: Model,
    inputs: torch.Tensor,
    b: torch.Tensor,
    target: torch.Tensor,
    rule: str,
    n_steps: int,
    runtime: Runtime,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient integral by ``rule`` with ``n_steps`` nodes, and F(x), F(b) for the
    target: (N, ...), (N,), (N,)."""
    alphas, weights = quadrature(rule, n_steps)
    grad_sum = integrate_gradients(model, inputs, b, target, alphas, weights, runtime)
    held = fixed_bytes(inputs, b)
    f_x = forward_in_chunks(model, inputs, runtime, held, "integrated_gradients' f(x)")
    f_x = f_x.gather(1, target[:, None].to(inputs.device)).squeeze(1)
    f_b = forward_in_chunks(model, b.expand_as(inputs), runtime, held, "its f(baseline)")
    f_b = f_b.gather(1, target[:, None].to(inputs.device)).squeeze(1)
    return grad_sum, f_x, f_b


def _adaptive_rule(
    model: Model,
    inputs: torch.Tensor,
    b: torch.Tensor,
    target: torch.Tensor,
    tolerance: float,
    max_steps: int,
    runtime: Runtime,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The gradient integral refined per sample to ``tolerance``, F(x), F(b), and the
    per-sample extras of the error-controlled rule."""
    result = adaptive_gradient_integral(model, inputs, b, target, tolerance, max_steps, runtime)
    extras = {
        "error_estimate": result.error_estimate,
        "steps_used": result.steps_used,
        "forward_evaluations": torch.zeros(len(inputs), dtype=torch.long),
        "converged": result.converged,
    }
    return result.grad_integral, result.f_inputs, result.f_baselines, extras


FIXED_BUFFERS = "baselines, x - b, the gradient total, the attributions and the inputs"


def row_bytes(inputs: torch.Tensor) -> int:
    """Bytes of one input sample."""
    return inputs[0].numel() * inputs.element_size()


def fixed_bytes(inputs: torch.Tensor, baselines: torch.Tensor) -> int:
    """What a call holds whatever the chunk size: the baselines, x - b and the gradient total
    during the loop (then the total and the attributions), and the inputs once (as a dtype
    conversion copies them), all (N, ...). The total is kept in at least float32: a
    float16/bfloat16 row of it takes twice an input row."""
    wider = accumulator(inputs[:0]).element_size() - inputs.element_size()  # 0 unless half
    return (len(baselines) + 3 * len(inputs)) * row_bytes(inputs) + inputs.numel() * wider


def check_steps(value: Any) -> int:
    """``n_steps``: an integer in [1, MAX_STEPS]."""
    return check_expansion(
        check_int(value, "n_steps"),
        "n_steps",
        MAX_STEPS,
        f"More nodes than {MAX_STEPS} rarely add accuracy a fixed rule can use (on ReLU "
        "networks every rule converges at first order); for a given accuracy pass "
        "tolerance=0.01 (the error-controlled rule places nodes where the integrand "
        "changes and reports its error), or n_steps <= "
        f"{MAX_STEPS}.",
    )


def check_max_steps(value: Any) -> int:
    """``max_steps`` (with ``tolerance``): an integer in [MIN_STEPS, MAX_STEPS]."""
    return check_expansion(
        check_int(value, "max_steps", minimum=MIN_STEPS),
        "max_steps",
        MAX_STEPS,
        f"A sample that needs more than {MAX_STEPS} gradients for this tolerance is "
        "reported as not converged at max_steps; loosen tolerance, or pass "
        f"max_steps <= {MAX_STEPS}.",
    )


def check_tolerance(value: Any) -> float:
    """A relative error in (0, 1): ``tolerance=0.01`` asks for 1% relative L2 error."""
    ok = (
        isinstance(value, int | float | np.floating)
        and not isinstance(value, bool)
        and 0 < float(value) < 1
    )
    if not ok:
        raise InputError(
            describe(
                "`tolerance`",
                "a relative error in (0, 1), e.g. 0.01 for 1%",
                repr(value),
                "Pass tolerance=0.01, or tolerance=None for a fixed n_steps.",
            )
        )
    return float(value)
