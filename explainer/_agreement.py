"""Agreement between attribution maps: Spearman rank correlation of |attribution| per sample.

Image maps (N, H, W) are compared at most :data:`SIDE` x :data:`SIDE`: |attribution|
averaged over blocks first (a 224 px map over 4 x 4 pixel blocks). At full resolution the
ranks are mostly those of the many near-zero pixels, whose order is noise, and ranking
50,000 values per map took 60% of a report's time; the blocks keep where each map puts
its mass, which is what two methods agree on or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata

__all__ = ["SIDE", "spearman", "spearman_abs", "method_agreement", "pooled_abs"]

SIDE = 56  # image maps are compared at most SIDE x SIDE (block means of |attribution|)


def spearman(a: np.ndarray, b: np.ndarray, absolute: bool = False) -> np.ndarray:
    """Spearman rank correlation of a_i and b_i (or their absolute values) for each sample
    i of (N, ...) arrays -> (N,).

    Ties get average ranks (as scipy.stats.spearmanr); a constant map correlates 0.
    """
    n = len(a)
    a, b = a.reshape(n, -1), b.reshape(n, -1)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.where(denom > 0, (ra * rb).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)


def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of |a_i| and |b_i| per sample (N,)."""
    return spearman(a, b, absolute=True)


def pooled_abs(maps: np.ndarray, side: int = SIDE) -> np.ndarray:
    """|maps|, and image maps (N, H, W) larger than ``side`` averaged over blocks to at most
    ``side`` x ``side`` (other shapes as they are).

    Example:
        >>> pooled_abs(-np.ones((1, 224, 224))).shape, pooled_abs(np.ones((2, 5))).shape
        ((1, 56, 56), (2, 5))
    """
    maps = np.abs(maps)
    if maps.ndim != 3 or max(maps.shape[1:]) <= side:
        return maps
    h, w = maps.shape[1:]
    out = (min(h, side), min(w, side))
    if h % out[0] == 0 and w % out[1] == 0:  # whole blocks: a reshape
        return maps.reshape(len(maps), out[0], h // out[0], out[1], w // out[1]).mean((2, 4))
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(maps)[:, None], out)
    return pooled[:, 0].numpy()


def method_agreement(maps: Sequence[np.ndarray], side: int = SIDE) -> np.ndarray:
    """Mean pairwise :func:`spearman_abs` between methods, per sample (N,); NaN with < 2
    methods. Image maps (N, H, W) are compared as :func:`pooled_abs` of ``side``."""
    n = len(maps[0])
    if len(maps) < 2:
        return np.full(n, np.nan)
    maps = [pooled_abs(np.asarray(m), side) for m in maps]
    pairs = [
        spearman_abs(maps[a], maps[b]) for a in range(len(maps)) for b in range(a + 1, len(maps))
    ]
    return np.mean(pairs, axis=0)
