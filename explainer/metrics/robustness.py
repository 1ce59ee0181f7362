"""Robustness: max-sensitivity (Yeh et al. 2019) of an attribution method.

How much the attribution moves when the input moves a little: the maximum over random
perturbations ``x + d`` with ``d ~ U(-radius, radius)`` of ``||a(x + d) - a(x)|| / ||a(x)||``.
The relative form (Quantus's default normalisation) is comparable across methods; with
``normalize=False`` it is captum's ``sensitivity_max`` (the absolute Frobenius norm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["max_sensitivity"]


def max_sensitivity(
    explain_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attributions: torch.Tensor,
    radius: float = 0.02,
    n_perturb: int = 8,
    generator: torch.Generator | None = None,
    normalize: bool = True,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Max-sensitivity per sample (N,).

    Args:
        explain_fn: ``(inputs, targets) -> attributions`` for a batch (the same method and
            parameters as the explanation being scored). Called once on all perturbed copies.
        radius: half-width of the uniform perturbation (in input units).
        noise: optional fixed perturbations (n_perturb, N, ...) (for oracle tests).
    """
    n = len(inputs)
    if noise is None:
        noise = (
            torch.rand((n_perturb, *inputs.shape), generator=generator, dtype=inputs.dtype) * 2 - 1
        ) * radius
    noise = noise.to(inputs.device)
    perturbed = (inputs[None] + noise).reshape(-1, *inputs.shape[1:])  # (P * N, ...)
    moved = (
        explain_fn(perturbed, targets.repeat(len(noise))).reshape(len(noise), n, -1).double().cpu()
    )
    base = attributions.reshape(1, n, -1).double().cpu()
    diff = (moved - base).norm(dim=2)  # (P, N)
    if normalize:
        diff = diff / base.norm(dim=2).clamp_min(1e-12)
    return diff.max(0).values
