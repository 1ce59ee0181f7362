"""Error-controlled integrated gradients: nested trapezoid panels refined per sample.

Why this rule. Along the straight path b + a (x - b) the IG integrand g(a) = grad F is, on a
ReLU network, piecewise constant with very many small jumps (every unit that changes sign
adds one), so it behaves like a random walk in a: every fixed rule converges at first order,
Gauss-Legendre gains nothing over the midpoint rule, and no rule built on n gradient
evaluations beats an error of about sigma / (sqrt(12) n), where sigma^2 is the walk's
quadratic variation. What can still be won is (a) spending evaluations where the walk moves
(or where a few large jumps sit), (b) spending them per sample, only until that sample is
accurate enough, and (c) an error estimate that costs no extra evaluations. Nested
trapezoid panels give all three:

* A panel [a, b] holds gradients at a, its midpoint m and b. Its coarse value is the
  trapezoid on [a, b], its fine value the two trapezoids on [a, m] and [m, b]; the
  attribution-space difference ``(x - b) * (b - a) / 4 * (2 g(m) - g(a) - g(b))`` is the
  panel's error indicator. Refining a panel adds the midpoints of its halves, so every
  gradient evaluated is part of the returned (fine) rule: the estimate is free.
* Sample i's estimate combines the panels' indicators e_p: ``c * max(sqrt(sum_p e_p^2),
  ||sum_p (x - b) * (fine_p - coarse_p)||) / ||attribution_i||``. Independent panel errors
  (random-walk jumps in different units) add in quadrature, coherent ones (a smooth
  integrand) add up; the larger of the two covers both. A panel's true error is r e_p with
  r ~ 1/sqrt(3) for a random walk, r uniform in [0, 1] for one jump, r ~ 1/3 for a smooth
  integrand; c is the 90% quantile of the mean r^2 over the panels that carry the error (1 for
  one dominant panel, 1.07/sqrt(3) for many). The completeness of the fine rule on every panel,
  F(b) - F(a), is known exactly from the outputs that come with the gradients and bounds the
  panel's error from below (|sum of errors| <= sqrt(features) ||errors||); it matters on
  low-dimensional inputs.
* Each round refines, in every sample that is not yet converged, the panels with the largest
  errors until the predicted estimate falls below AIM * tolerance (a split panel keeps about
  a quarter of its squared error), never a panel with under a quarter of the largest error
  (so a lone jump is found by bisection), at most growing the sample's nodes by half per
  round so that smooth samples do not overshoot. The new nodes of all refining samples go through
  the network together, in chunks sized by the memory budget.

Gradients at all nodes are kept until a sample finishes, so samples are processed in groups
whose worst case (``max_steps`` gradients each) fits half the memory budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import torch

from .._runtime import Runtime, chunk_size, chunks, input_gradients, progress_bar
from ..model import Model

__all__ = ["AdaptiveResult", "adaptive_gradient_integral", "MIN_STEPS"]

QUANTILE = 1.2816  # normal 90% quantile: the estimate is meant to cover the error 9 times in 10
MIN_CALIBRATION = 1.07 / math.sqrt(3)  # random walks: error ~ indicator / sqrt(3), plus 7%
START_PANELS = 2  # initial uniform panels: 5 gradient evaluations per sample
MIN_STEPS = 2 * START_PANELS + 1
MIN_WIDTH = 2.0**-30  # panels narrower than this are never split (float32 path positions)
GROWTH = 1.5  # at most this factor more nodes per sample per round
MIN_SHARE = 0.25  # a panel is split only if its error is at least this share of the largest
AIM = 0.8  # refine until the predicted estimate is AIM * tolerance (one round less, usually)


@dataclasses.dataclass
class AdaptiveResult:
    """Gradient integral per sample and the bookkeeping of how it was obtained."""

    grad_integral: torch.Tensor  # (N, ...): integral_0^1 grad F(b + a (x - b)) da
    error_estimate: torch.Tensor  # (N,) relative L2 error of the attributions, estimated
    steps_used: torch.Tensor  # (N,) gradient (forward + backward) evaluations
    converged: torch.Tensor  # (N,) bool: estimate <= tolerance
    f_inputs: torch.Tensor  # (N,) F(x) for the target, from the node at a = 1
    f_baselines: torch.Tensor  # (N,) F(b), from the node at a = 0


# columns of a sample's panel table
START, WIDTH, IA, IM, IB, INDICATOR, RESIDUAL = range(7)


class _Group:
    """Nodes and panels of a group of samples refined together.

    Per sample: node lists (alpha, gradient, output F, path slope (x - b) . gradient) and a
    panel table (numpy). Across samples: the running integrals, so that the tensor work of a
    round is a few batched operations whatever the number of samples.
    """

    def __init__(self, diffs: torch.Tensor, size: int) -> None:
        n = len(diffs)
        self.diffs = diffs  # (n, ...): x - b
        self.size = size  # rows per batched operation
        self.n_features = (diffs != 0).flatten(1).sum(1).clamp_min(1).cpu().numpy()
        self.alphas: list[list[float]] = [[] for _ in range(n)]
        self.grads: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.outputs: list[list[float]] = [[] for _ in range(n)]
        self.slopes: list[list[float]] = [[] for _ in range(n)]
        self.panels = [np.zeros((0, 7)) for _ in range(n)]
        self.total = torch.zeros_like(diffs)  # fine trapezoid integral of the gradient
        self.fine_minus_coarse = torch.zeros_like(diffs)  # summed over each sample's panels
        self.estimate = np.full(n, math.inf)
        self.norm = np.zeros(n)  # ||(x - b) * total||: the attributions' norm
        self.done = np.zeros(n, dtype=bool)

    def add_node(
        self, i: int, alpha: float, grad: torch.Tensor, output: float, slope: float
    ) -> int:
        self.alphas[i].append(alpha)
        self.grads[i].append(grad)
        self.outputs[i].append(output)
        self.slopes[i].append(slope)
        return len(self.alphas[i]) - 1

    def differences(self, items: list[tuple[int, np.ndarray]]) -> torch.Tensor:
        """Fine minus coarse rule, width / 4 (2 g(m) - g(a) - g(b)), of (sample, panel row) items: (P, ...)."""
        stack = lambda col: torch.stack([self.grads[i][int(row[col])] for i, row in items])  # noqa: E731
        width = torch.tensor(
            [row[WIDTH] / 4 for _, row in items], dtype=self.diffs.dtype, device=self.diffs.device
        )
        return (
            (2 * stack(IM))
            .sub_(stack(IA))
            .sub_(stack(IB))
            .mul_(width.view(-1, *([1] * (self.diffs.ndim - 1))))
        )

    def add_panels(self, items: list[tuple[int, np.ndarray]]) -> None:
        """Add (sample, [start, width, ia, im, ib]) panels whose nodes exist; their coarse rule
        must already be in ``total`` (it is the parent's fine rule on that half)."""
        new: list[list[np.ndarray]] = [[] for _ in self.panels]
        for part in chunks(len(items), self.size):
            block = items[part]
            diffs = self.differences(block)  # (P, ...)
            idx = torch.tensor([i for i, _ in block], device=self.diffs.device)
            indicator = (self.diffs[idx] * diffs).flatten(1).norm(dim=1).tolist()
            self.total.index_add_(0, idx, diffs)
            self.fine_minus_coarse.index_add_(0, idx, diffs)
            for (i, row), e in zip(block, indicator, strict=True):
                f, s = self.outputs[i], self.slopes[i]
                ia, im, ib = int(row[IA]), int(row[IM]), int(row[IB])
                # completeness of the fine rule on the panel: F(b) - F(a) is known exactly
                residual = f[ib] - f[ia] - row[WIDTH] / 4 * (s[ia] + 2 * s[im] + s[ib])
                new[i].append(np.array([*row[:INDICATOR], e, residual]))
        for i, rows in enumerate(new):
            if rows:
                self.panels[i] = np.concatenate([self.panels[i], np.stack(rows)])

    def split(
        self, marked: dict[int, np.ndarray], results: Iterator[tuple[torch.Tensor, float, float]]
    ) -> None:
        """Split the marked panels of each sample at their midpoints; new nodes from ``results``."""
        parents, children = [], []
        for i, panels in marked.items():
            for p in panels:
                row = self.panels[i][p]
                a, w, ia, im, ib = row[:INDICATOR]
                i1 = self.add_node(i, float(a + w / 4), *next(results))
                i2 = self.add_node(i, float(a + 3 * w / 4), *next(results))
                parents.append((i, row))
                children += [
                    (i, np.array([a, w / 2, ia, i1, im])),
                    (i, np.array([a + w / 2, w / 2, im, i2, ib])),
                ]
            self.panels[i] = np.delete(self.panels[i], panels, axis=0)
        # the parents' fine - coarse leaves the sums; the children's comes in with add_panels
        for part in chunks(len(parents), self.size):
            idx = torch.tensor([i for i, _ in parents[part]], device=self.diffs.device)
            self.fine_minus_coarse.index_add_(0, idx, self.differences(parents[part]), alpha=-1)
        self.add_panels(children)

    def calibration(self, i: int) -> float:
        """Factor from indicator to error estimate, by how many panels carry the error.

        A panel's true error is r times its indicator with r about uniform in [0, 1] (one
        jump at a uniform position; for a random walk r is close to 1/sqrt(3)), so over
        n_eff comparable panels mean(r^2) is 1/3 with variance (4/45) / n_eff. The factor is
        that mean's 90% quantile: 1 for a single dominant panel, -> 1/sqrt(3) for many; at
        least MIN_CALIBRATION, because a random walk's ratio sits near 1/sqrt(3) with no
        spread over panels for the quantile to cover.
        """
        e2 = self.panels[i][:, INDICATOR] ** 2
        n_eff = float(e2.sum() ** 2 / max(float((e2**2).sum()), 1e-300)) if e2.any() else 1.0
        return max(
            MIN_CALIBRATION, math.sqrt(min(1.0, 1 / 3 + QUANTILE * math.sqrt(4 / 45 / n_eff)))
        )

    def panel_errors(self, i: int) -> np.ndarray:
        """Per-panel error estimate of sample i in attribution units (before normalization)."""
        lower = np.abs(self.panels[i][:, RESIDUAL]) / math.sqrt(self.n_features[i])
        return np.maximum(self.calibration(i) * self.panels[i][:, INDICATOR], lower)

    def refresh(self, tolerance: float, max_steps: int) -> None:
        """Update every sample's error estimate and whether it is finished."""
        self.norm = (self.diffs * self.total).flatten(1).norm(dim=1).cpu().numpy().astype(float)
        coherent = (
            (self.diffs * self.fine_minus_coarse).flatten(1).norm(dim=1).cpu().numpy().astype(float)
        )
        for i, panels in enumerate(self.panels):
            # panel errors add in quadrature when independent (random-walk jumps), linearly when
            # coherent (smooth integrands): the larger of the two covers both. The completeness
            # residuals give a lower bound: |sum of errors| <= sqrt(features) * ||errors||.
            quadrature = math.sqrt(float((panels[:, INDICATOR] ** 2).sum()))
            residual = panels[:, RESIDUAL]
            lower = max(
                math.sqrt(float((residual**2).sum())), abs(float(residual.sum()))
            ) / math.sqrt(self.n_features[i])
            error = max(self.calibration(i) * max(quadrature, coherent[i]), lower)
            self.estimate[i] = 0.0 if error == 0 else error / max(self.norm[i], 1e-30)
            splittable = (panels[:, WIDTH] >= 2 * MIN_WIDTH).any()
            self.done[i] = (
                self.estimate[i] <= tolerance
                or len(self.alphas[i]) + 2 > max_steps
                or not splittable
            )

    def mark(self, i: int, tolerance: float, max_steps: int) -> np.ndarray:
        """Panels of sample i to split: largest errors first, until the prediction meets the aim."""
        room = max_steps - len(self.alphas[i])
        eligible = np.flatnonzero(self.panels[i][:, WIDTH] >= 2 * MIN_WIDTH)
        if self.done[i] or len(eligible) == 0 or room < 2:
            return eligible[:0]
        e2 = self.panel_errors(i) ** 2
        # never split a panel with under a quarter of the largest error (it would still have the
        # smaller error after the largest is split twice): a lone jump gets bisection
        eligible = eligible[e2[eligible] >= MIN_SHARE**2 * e2[eligible].max()]
        order = eligible[np.argsort(-e2[eligible], kind="stable")]
        # a split panel keeps about a quarter of its squared error (jumps and random walks
        # alike); smooth panels keep less, which GROWTH guards against
        predicted = e2.sum() - 0.75 * np.cumsum(e2[order])
        count = int(np.searchsorted(-predicted, -((AIM * tolerance * self.norm[i]) ** 2))) + 1
        cap = max(1, int((GROWTH - 1) * len(self.alphas[i]) / 2))
        return order[: max(1, min(count, cap, room // 2))]


def _evaluate(
    model: Model,
    rows: list[tuple[int, float]],
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    size: int,
    bar,
) -> Iterator[tuple[torch.Tensor, float, float]]:
    """Gradient, output and path slope (x - b) . gradient at (sample, alpha) rows, evaluated in
    chunks of ``size``, in row order."""
    shape1 = (-1, *([1] * (inputs.ndim - 1)))
    for part in chunks(len(rows), size):
        idx = torch.tensor([i for i, _ in rows[part]], device=inputs.device)
        a = torch.tensor([a for _, a in rows[part]], dtype=inputs.dtype, device=inputs.device)
        base = (
            baselines[idx]
            if len(baselines) > 1
            else baselines.expand(len(idx), *baselines.shape[1:])
        )
        points = base + a.view(shape1) * (inputs[idx] - base)  # (rows, ...)
        grads, selected = input_gradients(model, points, target[idx])
        slopes = (grads * (inputs[idx] - base)).flatten(1).sum(1)
        bar.update(len(idx))
        yield from zip(grads, selected.tolist(), slopes.tolist(), strict=True)


def _refine_group(
    model: Model,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    tolerance: float,
    max_steps: int,
    size: int,
    bar,
) -> _Group:
    """Run the adaptive rule on one group of samples, refining all of them together."""
    group = _Group(inputs - baselines, size)
    rows = [(i, float(a)) for i in range(len(inputs)) for a in np.linspace(0.0, 1.0, MIN_STEPS)]
    for (i, alpha), result in zip(
        rows, _evaluate(model, rows, inputs, baselines, target, size, bar), strict=True
    ):
        group.add_node(i, alpha, *result)
    w = 1.0 / START_PANELS
    first = np.array(
        [[p * w, w, 2 * p, 2 * p + 1, 2 * p + 2] for p in range(START_PANELS)]
    )  # (start, width, nodes)
    for i in range(len(inputs)):  # the coarse rule of the first panels
        group.total[i] = sum(
            (w / 2) * (group.grads[i][2 * p] + group.grads[i][2 * p + 2])
            for p in range(START_PANELS)
        )
    group.add_panels([(i, row) for i in range(len(inputs)) for row in first])
    group.refresh(tolerance, max_steps)
    while True:
        marked = {i: group.mark(i, tolerance, max_steps) for i in range(len(inputs))}
        marked = {i: m for i, m in marked.items() if len(m)}
        if not marked:
            return group
        rows = [
            (i, float(a + f * w))
            for i, panels in marked.items()
            for a, w in group.panels[i][panels][:, [START, WIDTH]]
            for f in (0.25, 0.75)
        ]
        group.split(marked, _evaluate(model, rows, inputs, baselines, target, size, bar))
        group.refresh(tolerance, max_steps)


def adaptive_gradient_integral(
    model: Model,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    tolerance: float,
    max_steps: int,
    runtime: Runtime,
) -> AdaptiveResult:
    """Integral of the gradient along the straight path, refined per sample to ``tolerance``.

    Args:
        inputs: (N, ...); baselines: (1 or N, ...); target: (N,) class indices.
        tolerance: wanted relative L2 error of the attributions (x - b) * integral.
        max_steps: most gradient evaluations per sample (>= MIN_STEPS).
        runtime: memory budget (half for stored gradients, half for network chunks) and progress.

    Returns:
        An :class:`AdaptiveResult`.
    """
    n = len(inputs)
    half = dataclasses.replace(runtime, memory_budget=max(1, runtime.budget // 2))
    size = chunk_size(model, inputs[0], half)
    per_sample = (max_steps + 4) * inputs[0].numel() * inputs.element_size()  # stored gradients
    group = int(max(1, min(n, half.budget // per_sample)))
    bar = progress_bar(None, "integrated_gradients (adaptive)", runtime)
    groups = []
    for part in chunks(n, group):
        b = baselines if len(baselines) == 1 else baselines[part]
        groups.append(
            _refine_group(model, inputs[part], b, target[part], tolerance, max_steps, size, bar)
        )
    bar.close()
    dev = inputs.device
    estimate = np.concatenate([g.estimate for g in groups])
    return AdaptiveResult(
        grad_integral=torch.cat([g.total for g in groups]),
        error_estimate=torch.as_tensor(estimate, dtype=torch.float32),
        steps_used=torch.tensor([len(a) for g in groups for a in g.alphas]),
        converged=torch.as_tensor(estimate <= tolerance),
        f_inputs=torch.tensor([f[MIN_STEPS - 1] for g in groups for f in g.outputs], device=dev),
        f_baselines=torch.tensor([f[0] for g in groups for f in g.outputs], device=dev),
    )
