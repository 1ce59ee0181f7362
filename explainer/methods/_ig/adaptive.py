"""Error-controlled integrated gradients: hp-adaptive panels refined per sample.

Why this rule. Along the straight path b + a (x - b) the IG integrand g(a) = grad F is, on a
ReLU network, piecewise constant with very many small jumps (every unit that changes sign
adds one), so it behaves like a random walk in a: every fixed rule converges at first order,
Gauss-Legendre gains nothing over the midpoint rule, and no rule built on n gradient
evaluations beats an error of about sigma / (sqrt(12) n), where sigma^2 is the walk's
quadratic variation. On a smooth network (GELU, SiLU, tanh) the integrand is analytic and a
high-order rule needs a handful of nodes. The rule serves both, per sample and per stretch of
the path, and its error estimate costs no extra evaluations:

* A trapezoid panel [a, b] holds gradients at a, its midpoint m and b. Its value is the two
  trapezoids on [a, m] and [m, b], its indicator the attribution-space norm of their
  difference from the one trapezoid on [a, b]. Splitting it adds the midpoints of its halves,
  so every gradient evaluated is part of the returned rule.
* Two sibling trapezoid panels hold the five dyadic nodes of their parent. Where the parent
  looks smooth (the trapezoid differences shrink by about 4 per halving), refining them
  instead *raises* the parent to a Kronrod panel: two more nodes make a degree-9 rule whose
  error is estimated from the convergence of Simpson -> Boole -> Kronrod on the same nodes
  (:mod:`explainer.methods._ig.quadrature`). A Kronrod panel that converges geometrically is
  split into two Kronrod halves (8 nodes); one that does not is demoted to four trapezoid
  panels (4 nodes), so a kink found late costs two wasted evaluations at most.
* Sample i's estimate combines the panels' errors e_p: ``max(sqrt(sum_p e_p^2), ||sum_p
  error vector_p||) / ||attribution_i||``. Independent panel errors (random-walk jumps in
  different units) add in quadrature, coherent ones (a smooth integrand) add up; the larger
  of the two covers both. Trapezoid indicators are calibrated by how many panels carry the
  error (:meth:`PanelGroup.calibration`). The completeness of every panel, F(b) - F(a), is
  known exactly from the outputs that come with the gradients and bounds the panel's error
  from below (|sum of errors| <= sqrt(features) ||errors||); it matters on low-dimensional
  inputs.
* Each round refines, in every sample that is not yet converged, the panels with the largest
  errors until the predicted estimate falls below AIM * tolerance, never a panel with under
  a quarter of the largest error (so a lone jump is found by bisection), at most growing the
  sample's nodes by half per round so that smooth samples do not overshoot. The new nodes of
  all refining samples go through the network together, in chunks sized by the memory budget.

Gradients at all nodes are kept until a sample finishes, so samples are processed in groups
whose worst case (``max_steps`` gradients each) fits half the memory budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..._runtime import (
    ChunkRequest,
    Runtime,
    Tuning,
    chunk_size,
    chunks,
    input_gradients,
    progress_bar,
)
from ...model import Model
from .panels import (
    AIM,
    COST,
    EIGHTHS,
    GROWTH,
    KEEP,
    KRONROD_PAIR,
    MIN_SHARE,
    MIN_WIDTH,
    Action,
    Panel,
    PanelGroup,
)

__all__ = ["AdaptiveResult", "adaptive_gradient_integral", "MIN_STEPS"]

MIN_STEPS = 5  # the first nodes: a = 0, 1/4, 1/2, 3/4, 1 (two trapezoid panels)
# The node at a = 0 is evaluated just inside the path, at a = EDGE: the gradient at the
# baseline itself is often degenerate. A zero image through bias-free convolutions and
# fresh batch norms puts every ReLU exactly at its kink, where autograd's gradient is 0, so
# g(0) is not the limit of g(a) as a -> 0 (a random-init ResNet: g(0) = 0). One wrong node
# value is a jump to the rule: the panels at a = 0 are bisected and the error falls only as
# 1/n (13 steps left 0.78% on the ResNet, where Gauss-Legendre, which has no node at 0,
# reached 0.008% with 8). The integral does not depend on one point's value, and
# F(0) = F(EDGE) - EDGE * F'(EDGE) to O(EDGE^2), far below float32 rounding.
EDGE = 2.0**-24


@dataclasses.dataclass
class AdaptiveResult:
    """Gradient integral per sample and the bookkeeping of how it was obtained."""

    grad_integral: torch.Tensor  # (N, ...): integral_0^1 grad F(b + a (x - b)) da
    error_estimate: torch.Tensor  # (N,) relative L2 error of the attributions, estimated
    steps_used: torch.Tensor  # (N,) gradient (forward + backward) evaluations
    converged: torch.Tensor  # (N,) bool: estimate <= tolerance
    f_inputs: torch.Tensor  # (N,) F(x) for the target, from the node at a = 1
    f_baselines: torch.Tensor  # (N,) F(b), from the node at a = 0


def _action(group: PanelGroup, i: int, p: Panel, room: int, taken: set[int]) -> Action | None:
    """What refining panel p of sample i means, or None if it does not fit in ``room``
    (``taken``: ids of panels already refined this round)."""
    if p.kronrod:
        kind = "ksplit" if p.smooth and COST["ksplit"] <= room else "demote"
        return (kind, i, (p,)) if COST[kind] <= room and p.width >= 16 * MIN_WIDTH else None
    sibling = group.panels[i].get(p.sibling_key())
    if (
        group.high_order
        and p.smooth
        and sibling is not None
        and not sibling.kronrod
        and id(sibling) not in taken
    ):
        pair = (p, sibling) if p.start < sibling.start else (sibling, p)
        return ("raise", i, pair) if COST["raise"] <= room else None
    return ("split", i, (p,)) if COST["split"] <= room and p.width >= 2 * MIN_WIDTH else None


def plan(group: PanelGroup, i: int, tolerance: float, max_steps: int) -> list[Action]:
    """Refinements of sample i this round: largest errors first, until the prediction meets
    the aim, within the growth cap and ``max_steps``."""
    room = max_steps - len(group.alphas[i])
    if group.done[i] or room < 2:
        return []
    panels = list(group.panels[i].values())
    e2 = group.panel_errors(i, panels, group.calibrations[i]) ** 2
    # never refine a panel with under a quarter of the largest error (it would still have the
    # smaller error after the largest is split twice): a lone jump gets bisection
    order = [k for k in np.argsort(-e2, kind="stable") if e2[k] >= MIN_SHARE**2 * e2.max()]
    predicted, aim = e2.sum(), (AIM * tolerance * group.norm[i]) ** 2
    cap = 2 * max(1, int((GROWTH - 1) * len(group.alphas[i]) / 2))  # new nodes this round
    position = {id(p): k for k, p in enumerate(panels)}
    actions: list[Action] = []
    taken: set[int] = set()
    added = 0
    for k in order:
        if id(panels[k]) in taken:
            continue
        action = _action(group, i, panels[k], room - added, taken)
        if action is None:
            continue
        if actions and added + COST[action[0]] > cap:
            break
        actions.append(action)
        added += COST[action[0]]
        taken.update(id(p) for p in action[2])
        covered = sum(float(e2[position[id(p)]]) for p in action[2])
        predicted -= (1 - KEEP[action[0]]) * covered
        if predicted <= aim:
            break
    return actions


def new_alphas(action: Action) -> list[float]:
    """Path positions of the nodes an action adds, in the order :func:`apply` expects."""
    kind, _, panels = action
    a, w = panels[0].start, panels[0].width
    if kind == "split":
        return [a + w / 4, a + 3 * w / 4]
    if kind == "raise":
        return list(a + 2 * w * KRONROD_PAIR)
    eighths = list(a + w * EIGHTHS)
    if kind == "demote":
        return eighths
    return eighths + list(a + w / 2 * KRONROD_PAIR) + list(a + w / 2 + w / 2 * KRONROD_PAIR)


def apply(group: PanelGroup, actions: list[Action], results: Iterator) -> None:
    """Add the new nodes (gradient, output, slope from ``results``) and replace the panels."""
    old, new, pairs, splits = [], [], [], []
    for action in actions:
        kind, i, panels = action
        ids = [group.add_node(i, alpha, *next(results)) for alpha in new_alphas(action)]
        p = panels[0]
        a, w = p.start, p.width
        if kind == "split":  # the parent leaves inside add_pairs
            na, nm, nb = p.nodes
            splits.append(
                (i, Panel(a, w / 2, (na, ids[0], nm)), Panel(a + w / 2, w / 2, (nm, ids[1], nb)))
            )
            continue
        if kind == "raise":
            left, right = panels
            nodes = (
                *left.nodes[:1],
                ids[0],
                *left.nodes[1:],
                right.nodes[1],
                ids[1],
                right.nodes[2],
            )
            new.append((i, Panel(a, 2 * w, nodes)))
        elif kind == "demote":
            na, _, nq1, nm, nq3, _, nb = p.nodes
            q = w / 4
            pairs.append((i, Panel(a, q, (na, ids[0], nq1)), Panel(a + q, q, (nq1, ids[1], nm))))
            pairs.append(
                (i, Panel(a + 2 * q, q, (nm, ids[2], nq3)), Panel(a + 3 * q, q, (nq3, ids[3], nb)))
            )
        else:  # ksplit: two Kronrod halves
            na, _, nq1, nm, nq3, _, nb = p.nodes
            new.append((i, Panel(a, w / 2, (na, ids[4], ids[0], nq1, ids[1], ids[5], nm))))
            new.append((i, Panel(a + w / 2, w / 2, (nm, ids[6], ids[2], nq3, ids[3], ids[7], nb))))
        old += [(i, panel) for panel in panels]
    group.remove_panels(old)
    group.add_kronrod(new)
    group.add_pairs(pairs, replace=False)
    group.add_pairs(splits, replace=True)


@dataclasses.dataclass(frozen=True)
class StraightPaths:
    """The straight paths b + a (x - b) of one group of samples, and how their gradients are
    evaluated: ``size`` rows per network chunk, each row counted on ``bar``."""

    model: Model
    inputs: torch.Tensor  # (n, ...)
    baselines: torch.Tensor  # (1 or n, ...)
    target: torch.Tensor  # (n,)
    size: int
    bar: Any
    tuning: Tuning | None = None  # chunk sizes by measured throughput, at most ``size``


def _evaluate(
    path: StraightPaths, rows: list[tuple[int, float]]
) -> Iterator[tuple[torch.Tensor, float, float]]:
    """Gradient, output and path slope (x - b) . gradient at (sample, alpha) rows, evaluated in
    chunks of ``path.size``, in row order."""
    model, inputs, baselines, target = path.model, path.inputs, path.baselines, path.target
    shape1 = (-1, *([1] * (inputs.ndim - 1)))
    for part in chunks(len(rows), path.size, path.tuning):
        idx = torch.tensor([i for i, _ in rows[part]], device=inputs.device)
        nodes = [a for _, a in rows[part]]
        shift = torch.tensor([EDGE if a == 0.0 else 0.0 for a in nodes], dtype=inputs.dtype)
        a = torch.tensor(nodes, dtype=inputs.dtype).add_(shift).to(inputs.device)
        base = (
            baselines[idx]
            if len(baselines) > 1
            else baselines.expand(len(idx), *baselines.shape[1:])
        )
        points = base + a.view(shape1) * (inputs[idx] - base)  # (rows, ...)
        grads, selected = input_gradients(model, points, target[idx])
        slopes = (grads * (inputs[idx] - base)).flatten(1).sum(1)
        outputs = selected - shift.to(selected.device, selected.dtype) * slopes  # F at the node
        path.bar.update(len(idx))
        yield from zip(grads, outputs.tolist(), slopes.tolist(), strict=True)


def refine_group(
    path: StraightPaths, tolerance: float, max_steps: int, high_order: bool = True
) -> PanelGroup:
    """Run the adaptive rule on one group of samples, refining all of them together."""
    n = len(path.inputs)
    group = PanelGroup(path.inputs - path.baselines, path.size, high_order)
    rows = [(i, float(a)) for i in range(n) for a in np.linspace(0.0, 1.0, MIN_STEPS)]
    for (i, alpha), result in zip(rows, _evaluate(path, rows), strict=True):
        group.add_node(i, alpha, *result)
    pairs = [(i, Panel(0.0, 0.5, (0, 1, 2)), Panel(0.5, 0.5, (2, 3, 4))) for i in range(n)]
    group.add_pairs(pairs, replace=False)
    group.refresh(tolerance, max_steps)
    while True:
        actions = [a for i in range(n) for a in plan(group, i, tolerance, max_steps)]
        if not actions:
            return group
        rows = [(a[1], alpha) for a in actions for alpha in new_alphas(a)]
        apply(group, actions, _evaluate(path, rows))
        group.refresh(tolerance, max_steps)


def adaptive_gradient_integral(
    model: Model,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    target: torch.Tensor,
    tolerance: float,
    max_steps: int,
    runtime: Runtime,
    high_order: bool = True,
) -> AdaptiveResult:
    """Integral of the gradient along the straight path, refined per sample to ``tolerance``.

    Args:
        inputs: (N, ...); baselines: (1 or N, ...); target: (N,) class indices.
        tolerance: wanted relative L2 error of the attributions (x - b) * integral.
        max_steps: most gradient evaluations per sample (>= MIN_STEPS).
        runtime: memory budget (half for stored gradients, half for network chunks) and progress.
        high_order: False keeps every panel a trapezoid panel (the second-order rule alone).

    Returns:
        An :class:`AdaptiveResult`.
    """
    n = len(inputs)
    half = runtime.reserve(runtime.budget - runtime.budget // 2)  # the other half: gradients
    request = ChunkRequest(
        # the path points and their temporaries (x - b, the path slope's product)
        extra_bytes_per_row=3 * inputs[0].numel() * inputs.element_size() + 64,
        what=f"integrated_gradients (tolerance=) on {n} input(s)",
        buffers="none: the stored gradients have the other half of the budget",
    )
    size = chunk_size(model, inputs[0], half, request)
    per_sample = (max_steps + 4) * inputs[0].numel() * inputs.element_size()  # stored gradients
    group = int(max(1, min(n, half.budget // per_sample)))
    groups = []
    with progress_bar(None, "integrated_gradients (adaptive)", runtime) as bar:
        for part in chunks(n, group):
            b = baselines if len(baselines) == 1 else baselines[part]
            tuning = Tuning.of(model, "forward+backward", inputs[0], runtime)
            path = StraightPaths(model, inputs[part], b, target[part], size, bar, tuning)
            groups.append(refine_group(path, tolerance, max_steps, high_order))
    dev = inputs.device
    estimate = np.concatenate([g.estimate for g in groups])
    return AdaptiveResult(
        grad_integral=torch.cat([g.finish() for g in groups]),
        error_estimate=torch.as_tensor(estimate, dtype=torch.float32),
        steps_used=torch.tensor([len(a) for g in groups for a in g.alphas]),
        converged=torch.as_tensor(estimate <= tolerance),
        f_inputs=torch.tensor([f[MIN_STEPS - 1] for g in groups for f in g.outputs], device=dev),
        f_baselines=torch.tensor([f[0] for g in groups for f in g.outputs], device=dev),
    )
