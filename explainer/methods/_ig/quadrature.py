"""Panel rules of the error-controlled IG: trapezoid pairs where the path integrand is rough,
a 7-point degree-9 rule where it is smooth, and the tests that choose between them.

All rules act on a panel [a, a + w] and are given as node offsets (fractions of w) and
weights (fractions of w) over those nodes.

* Trapezoid panel, nodes (0, 1/2, 1): value = two trapezoids; error vector = two trapezoids
  minus one (the indicator of :mod:`explainer.methods._ig.adaptive`). Best for ReLU networks,
  whose integrand is a random walk of jumps: no higher order exists to exploit there.
* Kronrod panel, nodes (0, k-, 1/4, 1/2, 3/4, k+, 1) with k-+ = (1 -+ sqrt(11/15)) / 2: the
  five dyadic nodes of two sibling trapezoid panels plus the one symmetric pair that raises
  Boole's rule (degree 5) to degree 9 (the pair is the root of the degree-8 moment condition,
  u^2 = 11/15; the weights are positive). A Kronrod panel is made from two sibling trapezoid
  panels for two more evaluations; its error vector is Kronrod minus Boole, and the
  convergence rate rho = ||Kronrod - Boole|| / ||Boole - Simpson|| scales it.

Why these numbers (measured per panel, at depths 0-3 of the bisection, on GELU/SiLU CNNs,
GELU/tanh/softplus MLPs and ReLU CNNs/MLPs; the per-sample figures are in
``benchmarks/bench_ig.py``): the trapezoid ratio ||T5 - T3|| / ||T3 - T2|| on a parent's five
dyadic nodes tends to 1/4 for a smooth integrand (second-order error) and is 0.4-0.7 on ReLU
CNNs, so a parent is raised when :func:`looks_smooth`. On a raised panel, rho <= RMAX marks
geometric convergence; the panel's error estimate is then ||K7 - B5|| sqrt(rho) (the true
error of K7 was below it on 92-100% of such panels; ||K7 - B5|| rho, the asymptotic rate,
covered only 75-84%), checked against the exact completeness error of the path slope
(:func:`kronrod_scale`); otherwise it is ||K7 - B5|| itself.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAX_STEPS",
    "gauss_legendre",
    "TRAPEZOID_NODES",
    "KRONROD_NODES",
    "TRAPEZOID_VALUE",
    "TRAPEZOID_ERROR",
    "KRONROD_VALUE",
    "KRONROD_ERROR",
    "BOOLE_ERROR",
    "QMAX",
    "RMAX",
    "interpolatory_weights",
    "kronrod_scale",
    "looks_smooth",
]

# Most quadrature nodes a fixed rule may have: beyond this, more accuracy comes cheaper from
# the error-controlled rule (tolerance=), which spends nodes only where the integrand changes.
MAX_STEPS = 10_000
NUMPY_GAUSS_MAX = 256  # up to here numpy's leggauss (eigenvalues, O(n^3)) is fast enough

KRONROD_ROOT = math.sqrt(11 / 15)  # on [-1, 1]: +-u extends the 5 dyadic nodes to degree 9
QMAX = 0.3  # a parent looks smooth when ||T5 - T3|| / ||T3 - T2|| <= QMAX ...
RICHARDSON_MAX = 0.5  # ... or when ||4 (T5 - T3) - (T3 - T2)|| / ||T3 - T2|| <= RICHARDSON_MAX
RMAX = 0.3  # a Kronrod panel converges geometrically when ||K7 - B5|| / ||B5 - S3|| <= RMAX


def _legendre(n: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P_n(x) and P_n'(x) by the three-term recurrence (stable on [-1, 1]), O(n len(x))."""
    p_prev, p = np.ones_like(x), x.copy()
    for j in range(1, n):
        p_prev, p = p, ((2 * j + 1) * x * p - j * p_prev) / (j + 1)
    return p, n * (x * p - p_prev) / ((x - 1) * (x + 1))  # x - 1: exact near 1


def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes (ascending) and weights on [-1, 1], as numpy's ``leggauss``.

    Up to NUMPY_GAUSS_MAX nodes this *is* ``numpy.polynomial.legendre.leggauss`` (so results
    for those step counts are unchanged); beyond, whose companion-matrix eigenvalues cost
    O(n^3) (20-40 s at n = 4000), Newton's method on the recurrence from Tricomi's initial
    guesses, O(n^2) per iteration (about 0.1 s at n = 4000, 0.5 s at MAX_STEPS). Nodes agree
    with leggauss to float64 rounding (1e-16); the weights are closer to the exact ones than
    leggauss's (checked against 40-digit values at n = 300 and 1000: 2e-11 relative at the
    ends, 1e-15 inside, where leggauss is off by up to 8e-9). Like leggauss, nodes are made
    exactly symmetric and weights scaled to sum to 2.
    """
    if n <= NUMPY_GAUSS_MAX:
        return np.polynomial.legendre.leggauss(n)
    half = (n + 1) // 2  # nodes in [0, 1): x_k = cos(theta_k), k = 1..half, descending
    k = np.arange(1, half + 1)
    x = (1 - (n - 1) / (8.0 * n**3)) * np.cos(np.pi * (4 * k - 1) / (4 * n + 2))
    for _ in range(10):  # quadratic convergence: 3-4 iterations from these guesses
        p, dp = _legendre(n, x)
        step = p / dp
        x = x - step
        if np.abs(step).max() <= 1e-15:
            break
    p, dp = _legendre(n, x)
    x = x - p / dp  # one more Newton step for the derivative at the final nodes
    _, dp = _legendre(n, x)
    w = 2.0 / ((1 - x) * (1 + x) * dp * dp)
    if n % 2:  # the middle node is exactly 0
        x[-1] = 0.0
    nodes = np.concatenate([-x, x[::-1][n % 2 :]])
    weights = np.concatenate([w, w[::-1][n % 2 :]])
    return nodes, weights * (2.0 / weights.sum())


def interpolatory_weights(nodes: np.ndarray) -> np.ndarray:
    """Weights on [0, 1] that integrate every polynomial of degree < len(nodes) exactly."""
    nodes = np.asarray(nodes, dtype=float)
    powers = np.arange(len(nodes))
    vandermonde = nodes[None, :] ** powers[:, None]  # (degree, node)
    return np.linalg.solve(vandermonde, 1.0 / (powers + 1))


TRAPEZOID_NODES = np.array([0.0, 0.5, 1.0])
TRAPEZOID_VALUE = np.array([0.25, 0.5, 0.25])  # two trapezoids
TRAPEZOID_ERROR = np.array([-0.25, 0.5, -0.25])  # two trapezoids minus one

KRONROD_NODES = np.array(
    [0.0, (1 - KRONROD_ROOT) / 2, 0.25, 0.5, 0.75, (1 + KRONROD_ROOT) / 2, 1.0]
)
DYADIC = [0, 2, 3, 4, 6]  # positions of (0, 1/4, 1/2, 3/4, 1) among KRONROD_NODES
KRONROD_VALUE = interpolatory_weights(KRONROD_NODES)  # degree 9
_BOOLE = np.zeros(7)
_BOOLE[DYADIC] = interpolatory_weights(KRONROD_NODES[DYADIC])  # degree 5
_SIMPSON = np.zeros(7)
_SIMPSON[[0, 3, 6]] = (1 / 6, 4 / 6, 1 / 6)  # degree 3
KRONROD_ERROR = KRONROD_VALUE - _BOOLE  # about the error of Boole's rule
BOOLE_ERROR = _BOOLE - _SIMPSON  # about the error of Simpson's rule


def looks_smooth(fine: float, coarse: float, richardson: float) -> bool:
    """Whether a parent's trapezoid differences on its five dyadic nodes behave like a smooth
    integrand's, for which T5 - T3 -> (T3 - T2) / 4: in norm (``fine`` = ||T5 - T3||, ``coarse``
    = ||T3 - T2||) or as vectors (``richardson`` = ||4 (T5 - T3) - (T3 - T2)||, the Simpson-level
    difference, small; it admits e.g. a degree-5 polynomial, where fine / coarse = 0.31).

    On ReLU CNNs fine / coarse is 0.4-0.7 and richardson / coarse 1-3 (the differences of a
    random walk are independent; a single jump gives exactly 1/2 and 1 or 3). A smooth parent
    that fails the test costs order, a rough one that passes two evaluations (on ReLU MLPs with
    few kinks about 7% of parents pass; requiring both tests would halve that but drops smooth
    parents that matter more, such as the bench's GELU CNN's image 3 at fine / coarse 0.22,
    richardson / coarse 1.39).
    """
    return coarse > 0 and (fine <= QMAX * coarse or richardson <= RICHARDSON_MAX * coarse)


def kronrod_scale(
    kronrod_error: float,
    boole_error: float,
    kronrod_slope: float,
    boole_slope: float,
    residual: float,
    noise: float = 0.0,
) -> tuple[float, bool]:
    """Estimated error of the degree-9 rule over ||Kronrod - Boole||, and whether the panel
    converges geometrically (then it is split into Kronrod halves, else demoted to trapezoids).

    With rho = ||K7 - B5|| / ||B5 - S3|| the asymptotic error of K7 is about ||K7 - B5|| rho
    (each rule gains a fixed factor per degree); sqrt(rho) leaves room for panels that are not
    yet in that regime. The same extrapolation is checked where the truth is known: on the
    path slope (x - b) . g, whose integral F(end) - F(start) makes ``residual`` the exact error
    of K7. Where it exceeds the extrapolated slope error (beyond float32 ``noise``), the
    panel is not in the asymptotic regime and the estimate grows by the same factor, up to
    ||K7 - B5|| itself.

    Args:
        kronrod_error, boole_error: ||(x - b) * (K7 - B5)||, ||(x - b) * (B5 - S3)||.
        kronrod_slope, boole_slope: K7 - B5 and B5 - S3 applied to the path slope.
        residual: F(end) - F(start) - K7(path slope).
        noise: rounding level of ``residual``.
    """
    rho = kronrod_error / boole_error if boole_error > 0 else math.inf
    if kronrod_error == 0.0 or rho > RMAX:
        return 1.0, kronrod_error == 0.0
    scale = math.sqrt(rho)
    rho_slope = abs(kronrod_slope) / abs(boole_slope) if boole_slope else math.inf
    predicted = abs(kronrod_slope) * math.sqrt(min(1.0, rho_slope))
    if abs(residual) - noise > predicted:
        scale = min(1.0, scale * (abs(residual) - noise) / max(predicted, 1e-300))
    return scale, True
