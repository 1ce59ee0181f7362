"""Coalition sampling and the constrained Shapley kernel regression (pure numpy).

Kernel SHAP (Lundberg & Lee 2017) recovers Shapley values as the solution of a weighted
least-squares problem over coalitions z in {0,1}^M with the Shapley kernel
``pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|))`` and the efficiency constraint
``sum(phi) = v(1) - v(0)``. Over *all* coalitions the solution is exactly the Shapley value;
we enumerate when the budget allows. Otherwise we spend the budget where the kernel puts
most mass: whole coalition sizes from the extremes inward (as shap's KernelExplainer does),
then paired samples z and 1 - z (Covert & Lee 2021: pairing cancels the even-order terms of
the estimator's error), never with shap's default L1 feature selection, which is what gives
shap's KernelExplainer its ~35% error at small budgets.

The default estimator (shapley_gp.py) uses :func:`paired_design` instead: pairs z, 1 - z
only, singletons first. :func:`bootstrap_error` and :func:`residual_correction` give the
regression's error estimate and correct a fitted game with pairs it was not fitted to.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "shapley_kernel_weight",
    "plan_coalitions",
    "solve_constrained",
    "paired_design",
    "bootstrap_error",
    "residual_correction",
]


def shapley_kernel_weight(m: int, size: int) -> float:
    """Kernel weight of one coalition of ``size`` out of ``m`` players (0 < size < m)."""
    return (m - 1) / (math.comb(m, size) * size * (m - size))


def plan_coalitions(
    m: int, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Coalitions to evaluate (excluding the empty and full ones) and their regression weights.

    Args:
        m: number of players (features), m >= 2.
        budget: number of coalitions to evaluate besides the empty and full ones.
        rng: source of randomness for the sampled part.

    Returns:
        ``masks`` (K, m) bool with K <= budget, distinct rows, ``weights`` (K,) float, and the
        number of leading rows that enumerate whole sizes (the rest are pairs z, 1 - z).
    """
    if budget >= 2**m - 2:  # everything fits: exact
        masks = np.array(list(itertools.product([False, True], repeat=m)), dtype=bool)[1:-1]
        weights = np.array([shapley_kernel_weight(m, int(s)) for s in masks.sum(1)])
        return masks, weights, len(masks)
    size_mass = np.array([0.0] + [(m - 1) / (s * (m - s)) for s in range(1, m)])  # mass per size
    masks, weights, (lo, hi), left = _enumerate_sizes(m, budget, size_mass)
    n_enumerated = len(masks)
    if lo <= hi and left >= 2:
        pairs, pair_weights = _sample_pairs(m, np.arange(lo, hi + 1), size_mass, left, budget, rng)
        masks += pairs
        weights += pair_weights
    if not masks:
        return np.zeros((0, m), dtype=bool), np.zeros(0), 0
    return np.stack(masks), np.asarray(weights, dtype=float), n_enumerated


def _enumerate_sizes(
    m: int, budget: int, size_mass: np.ndarray
) -> tuple[list[np.ndarray], list[float], tuple[int, int], int]:
    """Every coalition of whole size pairs (1, m-1), (2, m-2), ... from the extremes inwards
    while they fit: the coalitions, their kernel weights, the sizes (lo, hi) left to sample
    and the budget left."""
    enumerated, weights, left = [], [], budget
    lo, hi = 1, m - 1
    while lo <= hi:
        count = math.comb(m, lo) * (1 if lo == hi else 2)
        pair_mass = size_mass[lo] + (size_mass[hi] if hi != lo else 0.0)
        # Sizes 1 and m-1 are enumerated whenever they fit: they make the regression full rank
        # (an additive game is exact from 2m + 2 evaluations). Further pairs only if drawing the
        # budget in proportion to kernel mass would give them at least ``count`` draws (shap's
        # rule); otherwise the middle sizes, which carry most of the remaining mass, would be
        # left with too few samples (the error then grows with the budget).
        if count > left or (lo > 1 and left * pair_mass / size_mass[lo : hi + 1].sum() < count):
            break
        for size in {lo, hi}:
            for combo in itertools.combinations(range(m), size):
                z = np.zeros(m, dtype=bool)
                z[list(combo)] = True
                enumerated.append(z)
                weights.append(shapley_kernel_weight(m, size))
        left -= count
        lo, hi = lo + 1, hi - 1
    return enumerated, weights, (lo, hi), left


def _sample_pairs(
    m: int,
    sizes: np.ndarray,
    size_mass: np.ndarray,
    left: int,
    budget: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[float]]:
    """Distinct pairs z, 1 - z with |z| in ``sizes`` drawn by kernel mass, at most ``left``
    coalitions, weighted so that they share the kernel mass of ``sizes``."""
    p = size_mass[sizes] / size_mass[sizes].sum()
    remaining_mass = size_mass[sizes].sum()  # kernel mass of the sizes not enumerated
    counts: dict[bytes, list] = {}
    tries = 0
    while 2 * (len(counts) + 1) <= left and tries < 40 * budget:
        tries += 1
        size = int(rng.choice(sizes, p=p))
        z = np.zeros(m, dtype=bool)
        z[rng.choice(m, size=size, replace=False)] = True
        key = z.tobytes()
        if key in counts:
            counts[key][1] += 1
        elif (~z).tobytes() in counts:
            counts[(~z).tobytes()][1] += 1
        else:
            counts[key] = [z, 1]
    masks: list[np.ndarray] = []
    weights: list[float] = []
    if counts:
        total = sum(c for _, c in counts.values())
        # Each draw stands for remaining_mass / total of the kernel, split over z and 1 - z
        # (sampling follows the kernel restricted to the sizes not enumerated).
        for z, c in counts.values():
            w = remaining_mass * c / total / 2
            masks += [z, ~z]
            weights += [w, w]
    return masks, weights


def solve_constrained(
    masks: np.ndarray, values: np.ndarray, weights: np.ndarray, v0: float, v1: float
) -> np.ndarray:
    """Weighted least squares for phi with sum(phi) = v1 - v0 (exact efficiency).

    Args:
        masks: (K, m) coalitions; values: (K,) v(z); weights: (K,) kernel weights.
        v0, v1: values of the empty and the full coalition.

    Returns:
        phi (m,) float64.
    """
    m = masks.shape[1]
    delta = v1 - v0
    if m == 1:
        return np.array([delta])
    if len(masks) == 0:  # nothing to regress on: share the total equally
        return np.full(m, delta / m)
    z = masks.astype(float)
    y = values - v0 - z[:, -1] * delta  # eliminate phi_m = delta - sum(phi_1..m-1)
    a = z[:, :-1] - z[:, -1:]
    sw = np.sqrt(weights)[:, None]
    head, *_ = np.linalg.lstsq(a * sw, y * sw[:, 0], rcond=None)
    return np.append(head, delta - head.sum())


def paired_design(m: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct coalition pairs {z, 1 - z} to evaluate, one side of each: (n_pairs, m) bool.

    Every singleton first ({i} with its complement: they pin down the first-order terms,
    which carry most of a game), in random order if not all fit; then pairs whose smaller
    side has size s = 2 .. m/2 drawn with probability proportional to s (middle sizes carry
    the odd interactions of order 3 and 5, which is what is left to estimate after pairing),
    uniformly within a size and without replacement. The full/empty pair is not included.
    """
    n_pairs = min(n_pairs, 2 ** (m - 1) - 1)
    out = [np.eye(m, dtype=bool)[rng.permutation(m)[: min(m, n_pairs)]]]
    sizes = np.arange(2, m // 2 + 1)
    capacity = np.array([math.comb(m, s) // (2 if 2 * s == m else 1) for s in sizes])
    taken = np.zeros(len(sizes), dtype=int)
    seen: set[bytes] = set()
    left = n_pairs - len(out[0])
    while left > 0:
        open_sizes = taken < capacity
        p = sizes * open_sizes / np.sum(sizes * open_sizes)
        batch = rng.choice(len(sizes), size=2 * left + 8, p=p)
        order = np.argsort(rng.random((len(batch), m)), axis=1)  # a random permutation per draw
        for idx, perm in zip(batch, order, strict=True):
            if taken[idx] >= capacity[idx]:
                continue
            z = np.zeros(m, dtype=bool)
            z[perm[: sizes[idx]]] = True
            if (
                2 * sizes[idx] == m and not z[0]
            ):  # a half-size pair has two sides: keep the one holding player 0
                z = ~z
            key = z.tobytes()
            if key in seen:
                continue
            seen.add(key)
            out.append(z[None])
            taken[idx] += 1
            left -= 1
            if left == 0:
                break
    return np.concatenate(out)


def bootstrap_error(
    masks: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    v0: float,
    v1: float,
    n_fixed: int,
    rng: np.random.Generator,
    n_boot: int = 32,
) -> float:
    """Bootstrap standard error (L2 norm) of :func:`solve_constrained` over the sampled pairs.

    Rows ``n_fixed`` and later are pairs (z, 1 - z) in consecutive rows; they are resampled
    with replacement, the first ``n_fixed`` rows (whole enumerated sizes) are kept.
    """
    n_pairs = (len(masks) - n_fixed) // 2
    if n_pairs < 2:
        return 0.0
    draws = []
    for _ in range(n_boot):
        count = np.bincount(rng.integers(0, n_pairs, n_pairs), minlength=n_pairs).repeat(2)
        w = np.concatenate([weights[:n_fixed], weights[n_fixed:] * count])
        draws.append(solve_constrained(masks, values, w, v0, v1))
    draws = np.array(draws)
    return float(np.sqrt(np.sum(draws.var(0))))


def residual_correction(
    z: np.ndarray, residual: np.ndarray, rng: np.random.Generator, n_boot: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values of a game known by its odd part at pairs (z, 1 - z), and their bootstrap covariance.

    For the residual of a fitted game (zero at the empty and full coalitions): the paired
    Kernel SHAP regression, each drawn size standing for its whole kernel mass (stratified
    by size, so no sampling probabilities are needed).
    """
    m = z.shape[1]
    sizes = z.sum(1)
    mass = np.array(
        [0.0] + [(m - 1) / (s * (m - s)) * (1 if 2 * s == m else 2) for s in range(1, m)] + [0.0]
    )
    weights = mass[sizes] / np.bincount(sizes, minlength=m + 1)[sizes] / 2  # split over z and 1 - z
    masks, values = np.concatenate([z, ~z]), np.concatenate([residual, -residual])

    def solve(w: np.ndarray) -> np.ndarray:
        return solve_constrained(masks, values, np.concatenate([w, w]), 0.0, 0.0)

    draws = [
        solve(weights * np.bincount(rng.integers(0, len(z), len(z)), minlength=len(z)))
        for _ in range(n_boot)
    ]
    return solve(weights), np.cov(np.array(draws), rowvar=False)
