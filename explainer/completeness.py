"""Completeness: how far attributions are from adding up to the output change, and when
that is said out loud.

A method with a completeness property (integrated gradients, DeepLIFT-SHAP, gradient SHAP,
kernel SHAP) reports ``extras["convergence_delta"]``, per sample
``delta = sum(attributions) - (f(x) - f(reference))`` (captum's name). :func:`relative_gap`
turns it into the one number every method is judged by, computed in one place
(``ex.explain`` stores it as ``extras["relative_gap"]``)::

    relative_gap = |delta| / max(|f(x) - f(ref)|, floor)
    floor        = sqrt(eps) * max(|f(x)|, |f(ref)|, sum |attributions|)

with ``eps`` the machine epsilon of the attributions' dtype (float32: floor = 3.5e-4 of the
scale). Below the floor the output change is within what rounding of the forward passes and
of the sum can produce, so the gap is measured against the floor instead: an input equal to
its reference, or one whose output barely moves, does not raise an alarm about rounding.

Tolerances, stated once (a method registers its own with ``register_method(completeness=)``):

- ``EXACT`` = 1%: integrated gradients, DeepLIFT-SHAP, kernel SHAP. Their sum equals the
  output change up to the error of their rule (quadrature, DeepLIFT's multipliers, rounding
  of kernel SHAP's enforced efficiency), which a converged computation keeps far below 1%
  (rounding alone stays well under it): above it, the rule has not converged.
- ``EXPECTED`` = 10%: gradient SHAP, complete only in expectation. Its sum is a Monte Carlo
  estimate whose error falls as 1/sqrt(n_samples); above 10% sampling noise dominates it.

Above its tolerance, an explanation carries a warning (``Explanation.warnings``, shown next
to the map in notebooks, reports and the CLI) and ``ex.explain`` issues it once as an
:class:`~explainer.errors.ExplainerWarning`. A method that reports ``convergence_delta``
without registering a :class:`Completeness` is held to the exact tolerance.
(The trust section's completeness verdict, ``ex.evaluate``, is a separate statement: the
median gap of the scored samples against ``THRESHOLDS["completeness_gap"]``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "EXACT",
    "EXPECTED",
    "Completeness",
    "DEFAULT_COMPLETENESS",
    "relative_gap",
    "gap_warning",
]

EXACT = 0.01  # methods whose sum is exact up to their rule's error
EXPECTED = 0.10  # methods complete only in expectation (Monte Carlo error)


@dataclass(frozen=True)
class Completeness:
    """A method's completeness tolerance and what to do when a gap exceeds it.

    Attributes:
        tolerance: the largest relative gap (see :func:`relative_gap`) that passes silently.
        fix: a sentence saying how to close the gap, or a function of the parameters the
            explanation records that writes one (e.g. naming the current ``n_steps``).

    Example:
        >>> spec = Completeness(EXPECTED, lambda p: f"Pass more n_samples (now {p['n_samples']}).")
        >>> spec.tolerance, spec.fix_for({"n_samples": 64})
        (0.1, 'Pass more n_samples (now 64).')
    """

    tolerance: float = EXACT
    fix: str | Callable[[Mapping[str, Any]], str] = (
        "Try another reference (baselines or background) or the method's accuracy options."
    )

    def fix_for(self, params: Mapping[str, Any]) -> str:
        """The fix sentence for an explanation made with ``params``."""
        return self.fix(params) if callable(self.fix) else self.fix


DEFAULT_COMPLETENESS = Completeness()


def relative_gap(
    attributions: torch.Tensor, convergence_delta: torch.Tensor, outputs: torch.Tensor
) -> torch.Tensor:
    """Per sample ``|delta| / max(|f(x) - f(ref)|, floor)`` (module docstring), on the CPU.

    The output change is recovered as ``sum(attributions) - delta``, so the method needs to
    report only ``convergence_delta``; ``f(ref) = f(x) - (f(x) - f(ref))``.

    Args:
        attributions: (N, ...) as the method returned them.
        convergence_delta: (N,) ``sum(attributions) - (f(x) - f(ref))``.
        outputs: (N,) the model's target output ``f(x)`` on the inputs.

    Returns:
        (N,) relative gaps, in the dtype of ``convergence_delta``.

    Example:
        >>> attr = torch.tensor([[1.0, 1.0], [0.5, 0.5]])
        >>> gap = relative_gap(attr, torch.tensor([0.5, 0.0]), torch.tensor([3.0, 2.0]))
        >>> [round(g, 4) for g in gap.tolist()]  # sample 0: sum 2.0 for a change of 1.5
        [0.3333, 0.0]
        >>> relative_gap(attr[:1] * 0, torch.tensor([0.0]), torch.tensor([0.0])).tolist()
        [0.0]
    """
    n = len(attributions)
    flat = attributions.detach().reshape(n, -1)
    total = flat.sum(1).cpu().double()  # (N,), summed where the attributions are
    size = flat.abs().sum(1).cpu().double()
    delta = convergence_delta.detach().cpu().double().reshape(n)
    f_x = outputs.detach().cpu().double().reshape(n)
    change = total - delta
    eps = torch.finfo(attributions.dtype).eps if attributions.is_floating_point() else 2.0**-23
    scale = torch.stack([f_x.abs(), (f_x - change).abs(), size]).amax(0)
    floor = (math.sqrt(eps) * scale).clamp_min(torch.finfo(torch.float64).tiny)
    return (delta.abs() / torch.maximum(change.abs(), floor)).to(convergence_delta.dtype)


def gap_warning(
    method: str, gaps: Any, spec: Completeness, params: Mapping[str, Any]
) -> str | None:
    """The warning for ``method``'s per-sample relative ``gaps``, or None when every one is
    within ``spec.tolerance``: how many samples exceed it, the worst gap, and the fix.

    Example:
        >>> gap_warning("ig", [0.002, 0.5, 0.03], Completeness(0.01, "Pass more n_steps."), {})
        'ig: attributions do not add up to f(x) - f(reference) in 2 of 3 samples (gap above 1%, worst 50.0%). Pass more n_steps.'
        >>> gap_warning("ig", [0.002], Completeness(0.01, "Pass more n_steps."), {}) is None
        True
    """
    values = np.asarray(gaps, dtype=np.float64).reshape(-1)
    over = ~(values <= spec.tolerance)  # NaN counts as over: a gap nobody could measure
    if not over.any():
        return None
    worst = float(np.nanmax(values)) if not np.isnan(values).all() else float("nan")
    return (
        f"{method}: attributions do not add up to f(x) - f(reference) in {int(over.sum())} of "
        f"{values.size} samples (gap above {spec.tolerance * 100:g}%, worst {worst:.1%}). "
        f"{spec.fix_for(params)}"
    )
