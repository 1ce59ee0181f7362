"""Which coalition pairs to evaluate: a greedy Bayesian design for the Gaussian-process estimator.

The posterior covariance of the Shapley values (shapley_gp.py) depends on *where* the game
is evaluated, not on the values there, so the design can be chosen before any model call:
after the full/empty pair and the singletons, take one pair at a time from a random pool,
the one whose observation shrinks the trace of phi's posterior covariance the most
(reduction ``||cov(phi, w_c)||^2 / var(w_c)``), under a fixed prior close to what the
marginal likelihood picks (images: gamma = beta = 1e-3 on the superpixel graph; tabular:
gamma = 0.3). Random pairs fill the rest of the budget beyond ``cap`` greedy picks.

Measured at budget 128 on 16-superpixel CNN games this cut the error 1.3-2x against the
same number of random pairs (e.g. 1.1 % -> 0.55 % on a coffee image); on tabular MLP games
1.0-1.7x. The pool is random and the estimator interpolates every pair it sees, so the
estimate stays exact once all pairs are in, and consistent before.
"""

from __future__ import annotations

import numpy as np
import torch

from .coalitions import paired_design
from .gp import _one_thread, _Pieces, connected_odd_sets

__all__ = ["bayes_design"]

IMAGE_PRIOR = (1e-3, 1e-3)  # (gamma, beta) with a neighbourhood graph
TABULAR_PRIOR = (0.3, 1.0)  # without one
FIRST_ORDER_VARIANCE = 1e3  # stands in for the flat prior of the first-order terms


def bayes_design(
    m: int,
    n_pairs: int,
    rng: np.random.Generator,
    adjacency: np.ndarray | None = None,
    cap: int = 128,
    pool_factor: int = 4,
) -> np.ndarray:
    """``n_pairs`` distinct coalitions (one side of each pair z, 1 - z), the full one excluded: (n_pairs, m) bool.

    Singletons first (as :func:`paired_design`), then up to ``cap`` greedy picks from a pool of
    ``pool_factor`` random pairs per pick, then the rest of the pool in its random order.
    """
    n_free = n_pairs - m
    if n_free < 2:
        return paired_design(m, n_pairs, rng)
    greedy = min(n_free, cap)
    pool = pool_factor * greedy
    candidates = paired_design(m, min(2 ** (m - 1) - 1, m + n_free + pool - greedy), rng)
    fixed = np.concatenate([np.ones((1, m), dtype=bool), candidates[:m]])  # full pair + singletons
    rows = np.concatenate([fixed, candidates[m:]])
    sets = (
        [torch.from_numpy(s) for s in connected_odd_sets(adjacency, max_order=3)]
        if adjacency is not None
        else []
    )
    gamma, beta = IMAGE_PRIOR if sets else TABULAR_PRIOR
    with _one_thread():
        x = torch.as_tensor(2.0 * rows[: len(fixed) + pool] - 1, dtype=torch.float64)
        kernel, cross, _ = _Pieces(x, sets).assemble(gamma, beta, FIRST_ORDER_VARIANCE)
    picks = _greedy(kernel.numpy(), cross.numpy().T.copy(), len(fixed), greedy)
    chosen = set(picks)
    rest = [i for i in range(len(fixed), len(rows)) if i not in chosen][
        : n_free - greedy
    ]  # random order
    return np.concatenate([fixed[1:], rows[picks + rest]])


def _greedy(kernel: np.ndarray, cov_phi: np.ndarray, n_fixed: int, n_picks: int) -> list[int]:
    """Condition on rows 0..n_fixed-1, then pick ``n_picks`` rows one by one (sequential Cholesky).

    ``kernel`` (N, N) prior covariance of the odd part at the rows, ``cov_phi`` (M, N) that of
    phi with it; ``cov_phi`` is updated in place as rows are observed (rank one each).
    """
    n = len(kernel)
    factor = np.zeros((n_fixed + n_picks, n))  # rows of L^-1 K(observed, all)
    variance = kernel.diagonal().copy()
    floor = 1e-12 * float(variance.mean())
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    for step in range(n_fixed + n_picks):
        if step < n_fixed:
            j = step
        else:
            gain = np.einsum("ij,ij->j", cov_phi, cov_phi) / np.maximum(variance, floor)
            gain[taken] = -1.0
            j = int(np.argmax(gain))
            picks.append(j)
        scale = max(float(variance[j]), floor) ** 0.5
        row = (kernel[j] - factor[:step, j] @ factor[:step]) / scale
        cov_phi -= np.outer(cov_phi[:, j] / scale, row)
        variance -= row**2
        factor[step] = row
        taken[j] = True
    return picks
