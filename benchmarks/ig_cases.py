"""Networks, helpers and ratios of the IG benchmark (:mod:`benchmarks.bench_ig`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

TOLERANCE = 0.01
GRID = (2, 4, 8, 16, 32, 64, 96, 128, 192, 256)
FORWARD_COST = 1 / 3  # a forward-only row, in forward+backward rows


def anchor_cnn(
    act: type[nn.Module] = nn.ReLU,
    pool: type[nn.Module] = nn.MaxPool2d,
    widths: tuple[int, ...] = (8, 16, 32, 64),
    gain: float | None = None,
    seed: int = 0,
) -> nn.Module:
    """The anchor's CNN (4 conv blocks, pooling, global average, linear head), random init.

    ``gain`` re-draws weights from N(0, gain^2 / fan_in) (biases likewise), which makes a
    smooth network's path integrand clearly nonlinear (at PyTorch's default init it is
    almost linear and 2 Gauss-Legendre steps are exact).
    """
    torch.manual_seed(seed)
    c = (3, *widths)
    layers: list[nn.Module] = []
    for i in range(len(widths)):
        layers += [nn.Conv2d(c[i], c[i + 1], 3, padding=1), act()]
        if i < len(widths) - 1:
            layers.append(pool(2))
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[-1], 10))
    if gain is not None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) * gain / fan_in**0.5)
    return net.eval()


def networks() -> dict[str, tuple[nn.Module | None, int, str]]:
    """name -> (network or None when unavailable, reference steps, description)."""
    from explainer.demo.cnn import WEIGHTS_PATH

    demo = None
    if WEIGHTS_PATH.exists():
        from explainer.demo import load_demo_cnn

        demo = load_demo_cnn()
    return {
        "demo_cnn": (
            demo,
            2048,
            "trained DemoCNN (16/32/64/64 channels, ReLU, max pools, global max pool)",
        ),
        "relu_cnn_random": (
            anchor_cnn(),
            2048,
            "anchor CNN layout at 8/16/32/64 channels, ReLU, max pools, random init",
        ),
        "gelu_cnn_smooth": (
            anchor_cnn(nn.GELU, nn.AvgPool2d, gain=2.0),
            256,
            "same layout, GELU, average pools, random init with gain 2 (smooth, clearly nonlinear)",
        ),
    }


def relative_errors(a: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    a, ref = a.double().flatten(1), ref.double().flatten(1)
    return ((a - ref).norm(dim=1) / ref.norm(dim=1)).numpy()


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def steps_for(grid: list[dict], key: str, target: float) -> dict:
    """Smallest grid n with ``key`` <= target, and n interpolated on the log-log error curve."""
    found = next((g["n_steps"] for g in grid if g[key] <= target), None)
    interpolated = None
    for lo, hi in zip(grid, grid[1:], strict=False):
        if lo[key] > target >= hi[key]:
            slope = math.log(hi["n_steps"] / lo["n_steps"]) / math.log(hi[key] / lo[key])
            interpolated = lo["n_steps"] * math.exp(slope * math.log(target / lo[key]))
    return {"grid": found, "interpolated": None if interpolated is None else round(interpolated, 1)}


def estimate_quality(estimates: list[list[float]], errors: list[list[float]]) -> dict:
    """How well an error estimate tracks the true error, over samples and settings."""
    est, err = np.maximum(np.ravel(estimates), 1e-12), np.maximum(np.ravel(errors), 1e-12)
    return {
        "pearson_log": pearson(np.log(est), np.log(err)),
        "fraction_estimate_ge_true": float(np.mean(est >= err)),
        "true_over_estimate_median": float(np.median(err / est)),
        "true_over_estimate_max": float(np.max(err / est)),
    }


def compare(ours: dict, captum: dict, n_images: int) -> dict:
    """Evaluation ratios (captum / ours, fwd+bwd equivalents; captum's delta costs 2 forwards per image)."""
    out = {}
    for criterion in ("steps_for_max_1pct", "steps_for_mean_1pct"):
        for rule, res in captum.items():
            n = res[criterion]["grid"]
            if n is not None:
                cost = n * n_images + FORWARD_COST * 2 * n_images
                out[f"{rule}:{criterion}"] = round(cost / ours["fwd_bwd_equivalents"], 2)
    # at equal max true error: captum's steps interpolated to reach ours' achieved max error
    for rule, res in captum.items():
        grid = res["grid"]
        at = steps_for(grid, "true_error_max", ours["true_error_max"])["interpolated"]
        if at is not None:
            out[f"{rule}:equal_max_error"] = round(
                (at + 2 * FORWARD_COST) * n_images / ours["fwd_bwd_equivalents"], 2
            )
    for rule, res in captum.items():  # wall time at the deciding step counts (max criterion)
        if res["steps_for_max_1pct"]["grid"] is None:
            continue
        out[f"{rule}:seconds_over_ours"] = round(res["grid"][-1]["seconds"] / ours["seconds"], 2)
    return out


def summarize(name: str, ours: dict, trapezoid: dict, captum: dict, n_images: int) -> dict:
    """captum's best fixed rule (fewest steps to 1% max error) against ours, and a headline."""
    reached = {
        rule: res["steps_for_max_1pct"]["grid"]
        for rule, res in captum.items()
        if res["steps_for_max_1pct"]["grid"] is not None
    }
    if not reached:
        return {"headline": f"{name}: no captum rule reached 1% by n={GRID[-1]}"}
    best = min(reached, key=reached.get)
    cost = reached[best] * n_images + FORWARD_COST * 2 * n_images
    ratio = round(cost / ours["fwd_bwd_equivalents"], 2)
    before = round(cost / trapezoid["fwd_bwd_equivalents"], 2)
    return {
        "captum_best_rule": best,
        "captum_best_steps": reached[best],
        "captum_fwd_bwd_equivalents": round(cost, 1),
        "ours_fwd_bwd_equivalents": ours["fwd_bwd_equivalents"],
        "ratio_captum_best_over_ours": ratio,
        "trapezoid_only_fwd_bwd_equivalents": trapezoid["fwd_bwd_equivalents"],
        "ratio_captum_best_over_trapezoid_only": before,
        "headline": (
            f"{name}: captum's best fixed rule ({best}, n={reached[best]}) needs {ratio}x the "
            f"model evaluations of ours to reach 1% max error (trapezoid panels only: {before}x); "
            f"ours: max true error {ours['true_error_max']:.4f}, estimate >= true error on "
            f"{ours['fraction_estimate_ge_true']:.0%} of images"
        ),
    }
