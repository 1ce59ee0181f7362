"""Localization against ground-truth masks: relevance mass and the pointing game.

Relevance mass accuracy (Arras et al. 2022, "CLEVR-XAI"): the share of positive relevance
that falls inside the mask. Pointing game (Zhang et al. 2018): whether the most relevant
pixel lies inside the mask (optionally within ``tolerance`` pixels of it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["relevance_mass", "pointing_game", "positive_map"]


def positive_map(attributions: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) attributions -> (N, H, W) positive evidence (channel sum, clipped at 0)."""
    return attributions.sum(1).clamp_min(0).double()


def relevance_mass(attributions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of positive relevance inside ``masks`` (N, H, W) bool -> (N,) in [0, 1] (NaN if none)."""
    pos = positive_map(attributions)
    total = pos.flatten(1).sum(1)
    inside = (pos * masks.double()).flatten(1).sum(1)
    return torch.where(
        total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan"))
    )


def pointing_game(
    attributions: torch.Tensor, masks: torch.Tensor, tolerance: int = 0
) -> torch.Tensor:
    """1.0 where the maximum of the channel-summed map lies in the (dilated) mask, else 0.0 -> (N,)."""
    heat = attributions.sum(1).double()
    n, h, w = heat.shape
    hit_mask = masks.float()
    if tolerance > 0:
        hit_mask = F.max_pool2d(hit_mask[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[
            :, 0
        ]
    idx = heat.reshape(n, -1).argmax(1)
    return hit_mask.reshape(n, -1).gather(1, idx[:, None]).squeeze(1).double()
