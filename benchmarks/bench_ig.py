"""Model evaluations to reach 1% true error: error-controlled IG vs captum's fixed rules.

For each network, 8 test images of the shapes demo (64x64), the predicted class, zero baseline:

* the reference is Gauss-Legendre IG with 2048 steps (ReLU networks; its own error is about
  0.05%) or 256 steps (the smooth network, where it is exact to float32 rounding);
* ours: ``ex.explain(..., "ig", tolerance=0.01)``: gradient rows per sample, true error,
  estimated error, wall time; also at tolerance 0.05, for the estimate/true-error correlation;
* ours with trapezoid panels only (``high_order=False``, the rule before Kronrod panels were
  added), at tolerance 0.01: the before/after of the higher-order panels in the same run;
* captum: ``IntegratedGradients.attribute(method=rule, n_steps=n)`` for riemann_middle (its
  best rule on ReLU networks), gausslegendre (its default) and riemann_trapezoid, n on GRID
  ascending until the *max* error over the 8 images is <= 1% (the mean criterion and a
  log-log interpolated n are reported as well), with captum's convergence delta at every n
  beside the true error. A rule's grid also stops once n passes the n at which an earlier
  rule reached 1% (it cannot be the best rule then; reported as ``stopped_above_best``).
  ``equal_max_error`` ratios compare at ours' achieved max error.

The headline ratio per network is captum's best fixed rule (fewest steps to 1% max error)
over ours, in forward+backward equivalents. Wall times are the best of 3 (ours, and captum at
its deciding n): the machine is shared.

"Model evaluations" are reported raw (gradient = forward+backward rows, forward-only rows) and
in forward+backward equivalents (a forward-only row counts 1/3). Usage:
    python -m benchmarks.bench_ig [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from .ig_cases import (
    FORWARD_COST,
    GRID,
    TOLERANCE,
    compare,
    estimate_quality,
    networks,
    pearson,
    relative_errors,
    steps_for,
    summarize,
)

RULES = ("riemann_middle", "gausslegendre", "riemann_trapezoid")
REPEATS = 3  # wall times: best of 3 for ours and for captum at its deciding step count


def run_ours(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, ref: torch.Tensor, tolerance: float
) -> dict:
    import explainer as ex

    seconds = math.inf
    for _ in range(REPEATS):  # best of REPEATS: the machine is shared
        start = time.perf_counter()
        exp = ex.explain(net, x, "ig", target=target, tolerance=tolerance, progress=False)
        seconds = min(seconds, time.perf_counter() - start)
    err, est = relative_errors(exp.attributions, ref), exp.extras["error_estimate"].numpy()
    grad_rows = int(exp.extras["steps_used"].sum())
    fwd_rows = int(exp.extras["forward_evaluations"].sum()) + len(x)  # + explain's prediction pass
    return {
        "tolerance": tolerance,
        "seconds": round(seconds, 3),
        "gradient_rows": grad_rows,
        "forward_rows": fwd_rows,
        "fwd_bwd_equivalents": round(grad_rows + FORWARD_COST * fwd_rows, 1),
        "steps_per_sample": exp.extras["steps_used"].tolist(),
        "converged": exp.extras["converged"].tolist(),
        "true_error_mean": float(err.mean()),
        "true_error_max": float(err.max()),
        "true_error": err.round(5).tolist(),
        "estimate": est.round(5).tolist(),
        "fraction_estimate_ge_true": float(np.mean(est >= err)),
    }


def run_trapezoid_only(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, ref: torch.Tensor, tolerance: float
) -> dict:
    """The same error control with trapezoid panels only (no Kronrod panels), once."""
    import explainer as ex
    from explainer._runtime import Runtime
    from explainer.methods._ig.adaptive import adaptive_gradient_integral

    model = ex.wrap(net)
    start = time.perf_counter()
    with model.evaluating():
        result = adaptive_gradient_integral(
            model,
            x,
            torch.zeros_like(x[:1]),
            target,
            tolerance,
            1024,
            Runtime(progress=False),
            high_order=False,
        )
    seconds = time.perf_counter() - start
    err = relative_errors(x * result.grad_integral, ref)
    est = result.error_estimate.numpy()
    grad_rows = int(result.steps_used.sum())
    return {
        "tolerance": tolerance,
        "seconds": round(seconds, 3),
        "gradient_rows": grad_rows,
        "fwd_bwd_equivalents": round(grad_rows + FORWARD_COST * len(x), 1),  # + prediction pass
        "steps_per_sample": result.steps_used.tolist(),
        "true_error_max": float(err.max()),
        "fraction_estimate_ge_true": float(np.mean(est >= err)),
    }


def run_captum(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    ref: torch.Tensor,
    rule: str,
    limit: int | None = None,
) -> dict:
    """captum's ``rule`` on GRID until the max error is <= TOLERANCE or n exceeds ``limit``."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(net)
    with torch.no_grad():
        change = (net(x) - net(torch.zeros_like(x)))[torch.arange(len(x)), target].abs().numpy()
    grid = []
    for n in GRID:
        if limit is not None and n > limit:
            break
        start = time.perf_counter()
        attr, delta = ig.attribute(
            x, target=target, n_steps=n, method=rule, return_convergence_delta=True
        )
        seconds = time.perf_counter() - start
        err, gap = relative_errors(attr.detach(), ref), np.abs(delta.detach().numpy()) / change
        grid.append(
            {
                "n_steps": n,
                "seconds": round(seconds, 3),
                "true_error_mean": float(err.mean()),
                "true_error_max": float(err.max()),
                "relative_gap_mean": float(gap.mean()),
                "true_error": err.round(5).tolist(),
                "relative_gap": gap.round(6).tolist(),
            }
        )
        if err.max() <= TOLERANCE:
            break
    reached = grid[-1]["true_error_max"] <= TOLERANCE
    for _ in range(REPEATS - 1 if reached else 0):  # the deciding step count: best of REPEATS
        start = time.perf_counter()
        ig.attribute(
            x,
            target=target,
            n_steps=grid[-1]["n_steps"],
            method=rule,
            return_convergence_delta=True,
        )
        grid[-1]["seconds"] = round(min(grid[-1]["seconds"], time.perf_counter() - start), 3)
    return {
        "grid": grid,
        "stopped_above_best": not reached and grid[-1]["n_steps"] < GRID[-1],
        "steps_for_max_1pct": steps_for(grid, "true_error_max", TOLERANCE),
        "steps_for_mean_1pct": steps_for(grid, "true_error_mean", TOLERANCE),
        "delta_vs_true_error": estimate_quality(
            [g["relative_gap"] for g in grid], [g["true_error"] for g in grid]
        ),
    }


def reference_error(
    net: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    ref: torch.Tensor,
    ref_steps: int,
    gausslegendre: dict,
) -> float:
    """Max error of the reference: extrapolated from captum's Gauss-Legendre errors with the
    first-order law err ~ 1/n (ReLU), or measured against half the steps (smooth, cheap)."""
    import explainer as ex

    if ref_steps <= 256:
        half = ex.explain(
            net, x, "ig", target=target, n_steps=ref_steps // 2, progress=False
        ).attributions
        return float(relative_errors(half, ref).max())
    last = gausslegendre["grid"][-1]
    return float(last["true_error_max"] * last["n_steps"] / ref_steps)


def run(quick: bool = False) -> dict:
    """Run the benchmark; ``quick`` uses 2 images at 32x32 and 512-step references (< 30 s)."""
    import explainer as ex
    from explainer.demo import make_shapes

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=UserWarning)
    n_images = 2 if quick else 8
    x = make_shapes(n_images, split="test").images
    if quick:
        x = nn.functional.interpolate(x, size=32, mode="area")
    out: dict = {
        "tolerance": TOLERANCE,
        "n_images": n_images,
        "image_size": x.shape[-1],
        "quick": quick,
        "threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
        "criterion": "max true error over the images <= 1% (mean also shown)",
        "networks": {},
    }
    pooled_est, pooled_err, gap_pool, gap_err_pool = [], [], [], []
    for name, (net, ref_steps, description) in networks().items():
        if net is None:
            out["networks"][name] = {
                "skipped": "explainer/demo/demo_cnn.pt not found (train with make train)"
            }
            continue
        ref_steps = min(ref_steps, 512) if quick else ref_steps
        with torch.no_grad():
            target = net(x).argmax(1)
        start = time.perf_counter()
        ref = ex.explain(
            net, x, "ig", target=target, n_steps=ref_steps, progress=False
        ).attributions
        ref_seconds = time.perf_counter() - start
        ex.explain(
            net, x[:1], "ig", target=target[:1], tolerance=0.5, progress=False
        )  # warm-up (memory probe)
        ours = run_ours(net, x, target, ref, TOLERANCE)
        loose = run_ours(net, x, target, ref, 0.05)
        trapezoid = run_trapezoid_only(net, x, target, ref, TOLERANCE)
        captum: dict[str, dict] = {}
        for rule in RULES:  # a rule that needs more steps than an earlier one cannot be the best
            done = [r["steps_for_max_1pct"]["grid"] for r in captum.values()]
            limit = min((n for n in done if n is not None), default=None)
            captum[rule] = run_captum(net, x, target, ref, rule, limit)
        est = ours["estimate"] + loose["estimate"]
        err = ours["true_error"] + loose["true_error"]
        pooled_est += est
        pooled_err += err
        for res in captum.values():
            for g in res["grid"]:
                gap_pool += g["relative_gap"]
                gap_err_pool += g["true_error"]
        out["networks"][name] = {
            "description": description,
            "reference_steps": ref_steps,
            "reference_seconds": round(ref_seconds, 1),
            "reference_error_bound": reference_error(
                net, x, target, ref, ref_steps, captum["gausslegendre"]
            ),
            "ours": ours,
            "ours_tolerance_0.05": loose,
            "ours_trapezoid_only": trapezoid,
            "captum": captum,
            "evaluation_ratio_captum_over_ours": compare(ours, captum, n_images),
            "estimate_vs_true_error": {"pearson": pearson(est, err), **estimate_quality(est, err)},
        }
        out["networks"][name]["summary"] = summarize(name, ours, trapezoid, captum, n_images)
    out["estimate_vs_true_error_all_networks"] = {
        "pearson": pearson(pooled_est, pooled_err),
        **estimate_quality(pooled_est, pooled_err),
    }
    out["captum_delta_vs_true_error_all_networks"] = estimate_quality(gap_pool, gap_err_pool)
    quality = out["estimate_vs_true_error_all_networks"]
    out["headline"] = [
        v["summary"]["headline"] for v in out["networks"].values() if "summary" in v
    ] + [
        f"error estimate vs true error (all networks, tolerances 0.01 and 0.05): estimate >= "
        f"true on {quality['fraction_estimate_ge_true']:.0%}, log-log correlation "
        f"{quality['pearson_log']:.2f}"
    ]
    # wall times are only comparable on an otherwise idle machine: with other processes on the
    # 2 cores, every OpenMP region waits for a descheduled thread, and ours has more, smaller ones
    out["load_average_at_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
