"""Sanity checks by model-parameter randomization (Adebayo et al. 2018).

If an attribution barely changes when the model's weights are replaced by random ones, it
explains the input (edges, texture), not the model. Cascading randomization replaces the
weights layer by layer from the output towards the input and compares each map with the
original; the independent variant randomizes one layer at a time. Neither needs retraining
(unlike the data randomization test). Similarity: Spearman rank correlation of the maps
as the method means them — signed for signed methods, absolute for absolute ones (saliency)
— and, for images, SSIM (``skimage.metrics.structural_similarity``) of the channel-summed
absolute maps scaled to [0, 1]. Why signed for signed methods: Adebayo et al. report both;
on absolute values, x * w and x * w' share |x| and keep a rank correlation near 0.5 even
for a linear model whose weights were replaced — their signs, which the method reports,
are uncorrelated.

Everything runs on a deep copy of the network: the caller's model is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from .._agreement import spearman
from ..model import Model

__all__ = [
    "parameterized_layers",
    "checkpoints",
    "randomized_copies",
    "ssim_abs",
    "randomization_similarity",
]


def parameterized_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules that own parameters, in registration (≈ forward) order."""
    return [
        (name, m)
        for name, m in net.named_modules()
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]


@torch.no_grad()
def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    # Same scale as the trained weights (std per tensor), fresh values: the map should change.
    for p in module.parameters(recurse=False):
        std = float(p.std()) if p.numel() > 1 else 0.1
        p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * (std or 0.1))


def _copy_net(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` on the CPU whose parameters are leaves.

    Under autograd, deep-copying a TorchScript module clones its parameters as computed
    (non-leaf) tensors, whose ``requires_grad`` cannot then be frozen; without grad the
    copies are plain leaves (the randomized copies never need parameter gradients).
    """
    with torch.no_grad():
        return copy.deepcopy(net).cpu()


def checkpoints(n_layers: int, max_steps: int | None) -> list[int]:
    """Which of the L randomization steps to score: all, or ``max_steps`` evenly spaced ones
    that always include the first (output layer) and the last (fully randomized)."""
    if max_steps is None or n_layers <= max_steps:
        return list(range(n_layers))
    return sorted({round(k * (n_layers - 1) / (max_steps - 1)) for k in range(max_steps)})


def randomized_copies(
    model: Model, mode: str = "cascading", seed: int = 0, max_steps: int | None = None
):
    """Yield ``(layer_name, Model)`` with randomized weights, never touching ``model``.

    ``cascading``: the top k layers randomized for k = 1..L (output side first).
    ``independent``: one layer at a time. ``max_steps`` limits the steps yielded (the
    cascade still randomizes every layer in between).
    """
    gen = torch.Generator().manual_seed(seed)
    layers = [name for name, _ in parameterized_layers(model.net)]
    keep = set(checkpoints(len(layers), max_steps))
    cascade = _copy_net(model.net)
    for k, name in enumerate(reversed(layers)):
        if mode == "cascading":
            _randomize(dict(cascade.named_modules())[name], gen)
            net = cascade
        else:
            net = _copy_net(model.net)
            _randomize(dict(net.named_modules())[name], gen)
        if k not in keep:
            continue
        yield name, model.with_network(net.to(model.device))


def ssim_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM between channel-summed |maps| of (N, C, H, W) arrays, each scaled to [0, 1] -> (N,)."""
    out = np.empty(len(a))
    for i in range(len(a)):
        x, y = np.abs(a[i]).sum(0), np.abs(b[i]).sum(0)
        x = x / x.max() if x.max() > 0 else x
        y = y / y.max() if y.max() > 0 else y
        side = min(7, *x.shape)
        win = side if side % 2 else side - 1  # the largest odd window that fits (6 px: 5)
        out[i] = (
            structural_similarity(x, y, data_range=1.0, win_size=win)
            if min(x.shape) >= 3
            else np.nan
        )
    return out


def randomization_similarity(
    model: Model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    attributions: torch.Tensor,
    explain_fn: Callable[[Model, torch.Tensor, torch.Tensor], torch.Tensor],
    mode: str = "cascading",
    seed: int = 0,
    signed: bool = True,
    max_steps: int | None = 4,
) -> list[dict]:
    """Similarity of original and randomized-model attributions, per randomization step.

    Args:
        explain_fn: ``(model, inputs, targets) -> attributions`` (same method and parameters).
        signed: compare signed maps (signed methods) or absolute values (absolute methods).
        max_steps: score at most this many randomization steps (None: every layer).

    Returns:
        One dict per step: ``layer``, ``spearman`` (N,), ``ssim`` (N,) (NaN for tabular).
    """
    base = attributions.detach().cpu().numpy()
    steps = []
    for layer, randomized in randomized_copies(model, mode, seed, max_steps):
        with randomized.evaluating():
            moved = explain_fn(randomized, inputs, targets).detach().cpu().numpy()
        rho = spearman(base, moved, absolute=not signed)
        ssim = ssim_abs(base, moved) if base.ndim == 4 else np.full(len(base), np.nan)
        steps.append({"layer": layer, "spearman": rho, "ssim": ssim})
    return steps
