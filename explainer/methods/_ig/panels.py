"""Nodes, panels and error estimates of a group of samples refined together (adaptive IG).

Per sample: node lists (alpha, gradient, output F, path slope (x - b) . gradient) and a dict
of panels keyed by (start, width). Across samples: running sums of panel values and error
vectors, so that the tensor work of a round is a few batched operations whatever the number
of samples. The rules and the smoothness tests are in :mod:`explainer.methods._ig.quadrature`;
the algorithm is described in :mod:`explainer.methods._ig.adaptive`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..._runtime import chunks
from .quadrature import (
    BOOLE_ERROR,
    KRONROD_ERROR,
    KRONROD_NODES,
    KRONROD_VALUE,
    TRAPEZOID_ERROR,
    TRAPEZOID_VALUE,
    kronrod_scale,
    looks_smooth,
)

QUANTILE = 1.2816  # normal 90% quantile: the estimate is meant to cover the error 9 times in 10
MIN_CALIBRATION = 1.07 / math.sqrt(3)  # random walks: error ~ indicator / sqrt(3), plus 7%
MIN_WIDTH = 2.0**-30  # panels narrower than this are never split (float32 path positions)
GROWTH = 1.5  # at most this factor more nodes per sample per round
MIN_SHARE = 0.25  # a panel is refined only if its error is at least this share of the largest
AIM = 0.8  # refine until the predicted estimate is AIM * tolerance (one round less, usually)
# share of a panel's squared error expected to remain after each action (for planning only)
KEEP = {"split": 0.25, "demote": 0.25, "raise": 1 / 16, "ksplit": 1 / 64}
COST = {"split": 2, "raise": 2, "demote": 4, "ksplit": 8}  # new gradient evaluations
NOISE = 2.0**-20  # float32 outputs: completeness residuals below NOISE * |F| are rounding
EIGHTHS = np.array([1, 3, 5, 7]) / 8
KRONROD_PAIR = KRONROD_NODES[[1, 5]]


@dataclasses.dataclass(eq=False)
class Panel:
    """[start, start + width] with 3 (trapezoid) or 7 (Kronrod) node indices of its sample."""

    start: float
    width: float
    nodes: tuple[int, ...]
    indicator: float = 0.0  # ||(x - b) * error vector||
    residual: float = 0.0  # F(end) - F(start) - rule(path slope): the exact completeness error
    scale: float = 1.0  # Kronrod: estimate / indicator (trapezoids are calibrated per sample)
    smooth: bool = False  # trapezoid: the parent looks smooth; Kronrod: converges geometrically

    @property
    def kronrod(self) -> bool:
        return len(self.nodes) == 7

    @property
    def key(self) -> tuple[float, float]:
        return (self.start, self.width)

    def sibling_key(self) -> tuple[float, float]:
        left = round(self.start / self.width) % 2 == 0  # dyadic positions: exact in float64
        return (self.start + self.width if left else self.start - self.width, self.width)


Action = tuple[str, int, tuple[Panel, ...]]  # (kind, sample, panels it replaces)


class PanelGroup:
    """Nodes and panels of a group of samples; see the module docstring."""

    def __init__(self, diffs: torch.Tensor, size: int, high_order: bool = True) -> None:
        n = len(diffs)
        self.diffs = diffs  # (n, ...): x - b
        self.size = size  # rows per batched operation
        self.high_order = high_order
        self.n_features = (diffs != 0).flatten(1).sum(1).clamp_min(1).cpu().numpy()
        self.alphas: list[list[float]] = [[] for _ in range(n)]
        self.grads: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.outputs: list[list[float]] = [[] for _ in range(n)]
        self.slopes: list[list[float]] = [[] for _ in range(n)]
        self.panels: list[dict[tuple[float, float], Panel]] = [{} for _ in range(n)]
        self.total = torch.zeros_like(diffs)  # sum of the panels' values: the gradient integral
        self.rough = torch.zeros_like(diffs)  # sum of trapezoid error vectors
        self.smooth = torch.zeros_like(diffs)  # sum of Kronrod error vectors times their scale
        self.estimate = np.full(n, math.inf)
        self.norm = np.zeros(n)  # ||(x - b) * total||: the attributions' norm
        self.done = np.zeros(n, dtype=bool)
        self.calibrations = np.ones(n)

    # -- nodes and panel vectors ----------------------------------------------------------

    def add_node(
        self, i: int, alpha: float, grad: torch.Tensor, output: float, slope: float
    ) -> int:
        self.alphas[i].append(alpha)
        self.grads[i].append(grad)
        self.outputs[i].append(output)
        self.slopes[i].append(slope)
        return len(self.alphas[i]) - 1

    def combine(self, items: list[tuple[int, tuple[int, ...], np.ndarray]]) -> torch.Tensor:
        """sum_j w_j grad[i][node_j] of (sample, nodes, weights) items, equally long: (P, ...)."""
        w = torch.tensor(
            np.stack([wt for _, _, wt in items]), dtype=self.diffs.dtype, device=self.diffs.device
        )  # (P, nodes)
        shape1 = (-1, *([1] * (self.diffs.ndim - 1)))
        out = self.diffs.new_zeros((len(items), *self.diffs.shape[1:]))
        for j in range(w.shape[1]):  # one node position at a time: 2 (P, ...) temporaries
            out.add_(
                torch.stack([self.grads[i][nodes[j]] for i, nodes, _ in items]).mul_(
                    w[:, j].view(shape1)
                )
            )
        return out

    def norms(self, idx: torch.Tensor, vectors: torch.Tensor) -> list[float]:
        """||(x - b) * vector|| per row, in attribution units."""
        return (self.diffs[idx] * vectors).flatten(1).norm(dim=1).tolist()

    def _rule(self, p: Panel) -> tuple[np.ndarray, np.ndarray]:
        if p.kronrod:
            return p.width * KRONROD_VALUE, p.width * KRONROD_ERROR
        return p.width * TRAPEZOID_VALUE, p.width * TRAPEZOID_ERROR

    def add_kronrod(self, new: list[tuple[int, Panel]]) -> None:
        """Compute new Kronrod panels' values, indicators, scales and residuals; add them."""
        for part in chunks(len(new), self.size):
            block = new[part]
            idx = torch.tensor([i for i, _ in block], device=self.diffs.device)
            value = self.combine([(i, p.nodes, p.width * KRONROD_VALUE) for i, p in block])
            error = self.combine([(i, p.nodes, p.width * KRONROD_ERROR) for i, p in block])
            boole = self.combine([(i, p.nodes, p.width * BOOLE_ERROR) for i, p in block])
            self.total.index_add_(0, idx, value)
            for (i, p), e, b in zip(
                block, self.norms(idx, error), self.norms(idx, boole), strict=True
            ):
                f = self.outputs[i]
                p.indicator = e
                p.residual = (
                    f[p.nodes[-1]] - f[p.nodes[0]] - self.slope_rule(i, p, p.width * KRONROD_VALUE)
                )
                p.scale, p.smooth = kronrod_scale(
                    e,
                    b,
                    # the same rules on the path slope, whose integral is known exactly
                    self.slope_rule(i, p, p.width * KRONROD_ERROR),
                    self.slope_rule(i, p, p.width * BOOLE_ERROR),
                    p.residual,
                    NOISE * (abs(f[p.nodes[0]]) + abs(f[p.nodes[-1]])),
                )
                self.panels[i][p.key] = p
            scales = torch.tensor(
                [p.scale for _, p in block], dtype=error.dtype, device=error.device
            )
            self.smooth.index_add_(0, idx, error * scales.view(-1, *([1] * (error.ndim - 1))))

    def slope_rule(self, i: int, p: Panel, weights: np.ndarray) -> float:
        """A rule applied to sample i's path slope (x - b) . gradient over panel p's nodes."""
        return float(sum(w * self.slopes[i][j] for w, j in zip(weights, p.nodes, strict=True)))

    def remove_panels(self, old: list[tuple[int, Panel]]) -> None:
        """Take panels out of the running sums (their vectors are recomputed from the nodes)."""
        for kronrod in (False, True):
            items = [(i, p) for i, p in old if p.kronrod == kronrod]
            for part in chunks(len(items), self.size):
                block = items[part]
                idx = torch.tensor([i for i, _ in block], device=self.diffs.device)
                rules = [self._rule(p) for _, p in block]
                value = self.combine(
                    [(i, p.nodes, r[0]) for (i, p), r in zip(block, rules, strict=True)]
                )
                self.total.index_add_(0, idx, value, alpha=-1)
                scaled = [
                    (i, p.nodes, r[1] * p.scale) for (i, p), r in zip(block, rules, strict=True)
                ]
                (self.smooth if kronrod else self.rough).index_add_(
                    0, idx, self.combine(scaled), alpha=-1
                )
                for i, p in block:
                    del self.panels[i][p.key]

    def add_pairs(self, pairs: list[tuple[int, Panel, Panel]], replace: bool) -> None:
        """Add sibling trapezoid panels (left, right). With ``replace`` they replace their parent,
        a trapezoid panel in the sums (a split: the parent's value T3 is the children's coarse
        rule, so only their differences come in); otherwise they come fresh (the first panels,
        a demoted Kronrod panel). From the same vectors, whether the parent looks smooth
        (:func:`looks_smooth`): refining such a pair raises the parent to a Kronrod panel."""
        shape1 = (-1, *([1] * (self.diffs.ndim - 1)))
        # about 10 input-sized rows per pair at once: half a network chunk's budget at most
        for part in chunks(len(pairs), max(1, self.size // 2)):
            block = pairs[part]
            idx = torch.tensor([i for i, _, _ in block], device=self.diffs.device)
            # the parent's five nodes a, left mid, m, right mid, b: one stack each
            ga, gl, gm, gr, gb = (
                torch.stack([self.grads[i][n] for i, n in column])
                for column in zip(
                    *[[(i, n) for n in (*lt.nodes, *rt.nodes[1:])] for i, lt, rt in block],
                    strict=True,
                )
            )
            quarter = torch.tensor(
                [lt.width / 4 for _, lt, _ in block], dtype=ga.dtype, device=ga.device
            ).view(shape1)
            left = (2 * gl - ga - gm).mul_(quarter)  # two trapezoids minus one, per child
            right = (2 * gr - gm - gb).mul_(quarter)
            parent = (2 * gm - ga - gb).mul_(2 * quarter)  # T3 - T2 on the parent
            fine = left + right  # T5 - T3 on the parent
            if replace:
                self.total.index_add_(0, idx, fine)
                self.rough.index_add_(0, idx, fine - parent)
            else:  # the parent's T3 comes in too
                value = (ga + 2 * gm + gb).mul_(2 * quarter).add_(fine)
                self.total.index_add_(0, idx, value)
                self.rough.index_add_(0, idx, fine)
            d = self.diffs[idx]
            left, right, parent = left.mul_(d), right.mul_(d), parent.mul_(d)
            fine = left + right
            norms = zip(
                *(
                    v.flatten(1).norm(dim=1).tolist()
                    for v in (left, right, fine, parent, fine.mul(4).sub_(parent))
                ),  # the last: 4 (T5 - T3) - (T3 - T2)
                strict=True,
            )
            for (i, lt, rt), (el, er, fn, cn, rn) in zip(block, norms, strict=True):
                if replace:
                    del self.panels[i][(lt.start, 2 * lt.width)]
                lt.indicator, rt.indicator = el, er
                lt.smooth = rt.smooth = self.high_order and looks_smooth(fn, cn, rn)
                for p in (lt, rt):
                    f = self.outputs[i]
                    p.residual = (
                        f[p.nodes[-1]]
                        - f[p.nodes[0]]
                        - self.slope_rule(i, p, p.width * TRAPEZOID_VALUE)
                    )
                    self.panels[i][p.key] = p

    def finish(self) -> torch.Tensor:
        """The gradient integral, summed afresh over the final panels (no running-sum drift)."""
        self.total.zero_()
        items = [(i, p) for i, panels in enumerate(self.panels) for p in panels.values()]
        for kronrod in (False, True):
            kind = [(i, p.nodes, self._rule(p)[0]) for i, p in items if p.kronrod == kronrod]
            for part in chunks(len(kind), self.size):
                idx = torch.tensor([i for i, _, _ in kind[part]], device=self.diffs.device)
                self.total.index_add_(0, idx, self.combine(kind[part]))
        return self.total

    # -- error estimates ------------------------------------------------------------------

    def calibration(self, i: int) -> float:
        """Factor from trapezoid indicator to error estimate, by how many panels carry the error.

        A panel's true error is r times its indicator with r about uniform in [0, 1] (one
        jump at a uniform position; for a random walk r is close to 1/sqrt(3)), so over
        n_eff comparable panels mean(r^2) is 1/3 with variance (4/45) / n_eff. The factor is
        that mean's 90% quantile: 1 for a single dominant panel, -> 1/sqrt(3) for many; at
        least MIN_CALIBRATION, because a random walk's ratio sits near 1/sqrt(3) with no
        spread over panels for the quantile to cover.
        """
        e2 = np.array([p.indicator for p in self.panels[i].values() if not p.kronrod]) ** 2
        n_eff = float(e2.sum() ** 2 / max(float((e2**2).sum()), 1e-300)) if e2.any() else 1.0
        return max(
            MIN_CALIBRATION, math.sqrt(min(1.0, 1 / 3 + QUANTILE * math.sqrt(4 / 45 / n_eff)))
        )

    def panel_errors(self, i: int, panels: list[Panel], calibration: float) -> np.ndarray:
        """Per-panel error estimate of sample i in attribution units (before normalization)."""
        lower = np.array([abs(p.residual) for p in panels]) / math.sqrt(self.n_features[i])
        scale = np.array([p.scale if p.kronrod else calibration for p in panels])
        return np.maximum(scale * np.array([p.indicator for p in panels]), lower)

    def refresh(self, tolerance: float, max_steps: int) -> None:
        """Update every sample's error estimate and whether it is finished.

        Panel errors add in quadrature when independent (random-walk jumps), linearly when
        coherent (smooth integrands): the larger of the two covers both. The completeness
        residuals give a lower bound: |sum of errors| <= sqrt(features) * ||errors||.
        """
        self.norm = (self.diffs * self.total).flatten(1).norm(dim=1).cpu().numpy().astype(float)
        calibration = np.array([self.calibration(i) for i in range(len(self.panels))])
        self.calibrations = calibration  # per sample, reused when planning the next round
        c = torch.as_tensor(calibration, dtype=self.diffs.dtype, device=self.diffs.device)
        coherent = self.diffs * (
            c.view(-1, *([1] * (self.diffs.ndim - 1))) * self.rough + self.smooth
        )
        coherent = coherent.flatten(1).norm(dim=1).cpu().numpy().astype(float)
        for i, by_key in enumerate(self.panels):
            panels = list(by_key.values())
            scale = np.array([p.scale if p.kronrod else calibration[i] for p in panels])
            quadrature = math.sqrt(float(((scale * [p.indicator for p in panels]) ** 2).sum()))
            residual = np.array([p.residual for p in panels])
            lower = max(
                math.sqrt(float((residual**2).sum())), abs(float(residual.sum()))
            ) / math.sqrt(self.n_features[i])
            error = max(quadrature, coherent[i], lower)
            self.estimate[i] = 0.0 if error == 0 else error / max(self.norm[i], 1e-30)
            self.done[i] = (
                self.estimate[i] <= tolerance
                or len(self.alphas[i]) + 2 > max_steps
                or not any(p.width >= 2 * MIN_WIDTH for p in panels)
            )
