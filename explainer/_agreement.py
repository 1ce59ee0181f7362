"""Agreement between attribution maps: Spearman rank correlation of |attribution| per sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["spearman", "spearman_abs", "method_agreement"]


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


def method_agreement(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Mean pairwise :func:`spearman_abs` between methods, per sample (N,); NaN with < 2 methods."""
    n = len(maps[0])
    if len(maps) < 2:
        return np.full(n, np.nan)
    pairs = [
        spearman_abs(maps[a], maps[b]) for a in range(len(maps)) for b in range(a + 1, len(maps))
    ]
    return np.mean(pairs, axis=0)
