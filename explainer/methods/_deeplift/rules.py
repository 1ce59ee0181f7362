"""DeepLIFT's multipliers as autograd functions: each returns an operation's value and, on
the way back, a multiplier m with sum(m * (a - a0)) = sum(g * (y - y0)) (summation to delta).

Every rule gets the operation's arguments at the input (``a``) and at the reference
(``a0``, recorded by the reference pass) and the outputs at both (``y``, ``y0``):

- :class:`Rescale` (elementwise nonlinearities: ReLU, GELU, SiLU, Tanh, ...): the rescale
  multiplier (f(a) - f(a0)) / (a - a0), the gradient at ``a`` where a ≈ a0. Exact.
- :class:`MaxPool` (max pooling of any dimension, adaptive included): each output's
  change is split between the input's and the reference's arg-max positions, as shap's
  DeepExplainer does. Exact up to positions where a ≈ a0 (there the share is bounded by
  |a - a0|).
- :class:`PathMean` (everything else that is nonlinear: layer/group norm, softmax, products
  of two activations, attention): the gradient averaged along the straight line from the
  reference to the input (Gauss-Legendre), then corrected along a - a0 so that the sum to
  delta holds exactly per sample. Exact for bilinear operations before the correction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

EPS_RESCALE = 1e-6  # |a - a0| below this: the gradient, as shap's DeepExplainer does
EPS_POOL = 1e-7
PATH_NODES = 8  # Gauss-Legendre nodes of the path mean (exact for polynomials of degree 15)

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(PATH_NODES)
NODES = tuple(float(t) for t in (_NODES + 1) / 2)  # on [0, 1]
WEIGHTS = tuple(float(w) for w in _WEIGHTS / 2)


def _vjp(fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor], g: torch.Tensor):
    """Vector-Jacobian products of ``fn`` at ``args`` with ``g`` (one per argument)."""
    with torch.enable_grad():
        leaves = [a.detach().requires_grad_(True) for a in args]
        out = fn(*leaves)
        if not out.requires_grad:  # constant in its arguments (zeros_like, a comparison)
            return [torch.zeros_like(a) for a in args]
        grads = torch.autograd.grad(out, leaves, g, allow_unused=True)
    return [torch.zeros_like(a) if d is None else d for a, d in zip(args, grads, strict=True)]


class Rescale(torch.autograd.Function):
    """y = f(a) elementwise; backward: g * (y - y0) / (a - a0), f'(a) * g where a ≈ a0.

    ``alone``: f acts on each value alone (no tensor among its other arguments, which
    could broadcast), so its gradient at the few values where a ≈ a0 (a handful in an
    activation of millions, by chance) is taken on those values only, not on the whole
    activation."""

    @staticmethod
    def forward(ctx, a, a0, y0, fn, alone):  # noqa: D102
        y = fn(a.detach())  # computed here: the output needs no copy
        ctx.fn, ctx.a, ctx.a0, ctx.y, ctx.y0 = fn, a.detach(), a0, y.detach(), y0
        ctx.alone = alone
        return y

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        # three activation-sized temporaries, the rest in place (a ReLU network's backward
        # spends a sixth of its time here)
        delta = ctx.a - ctx.a0
        close = delta.abs() < EPS_RESCALE
        grad = (ctx.y - ctx.y0).div_(delta.masked_fill_(close, 1.0)).mul_(g)
        if not ctx.alone:
            if bool(close.any()):
                grad = torch.where(close, _vjp(ctx.fn, [ctx.a], g)[0], grad)
            return grad, None, None, None, None
        where = close.nonzero(as_tuple=True)  # (any memory layout: no flat view)
        if len(where[0]):
            grad[where] = _vjp(ctx.fn, [ctx.a[where]], g[where])[0]
        return grad, None, None, None, None


class MaxPool(torch.autograd.Function):
    """y = max over windows; backward: each output's change, split as
    (max(y, y0) - y0) at the input's arg-max and (y - max(y, y0)) at the reference's,
    divided by a - a0 (zero where a ≈ a0)."""

    @staticmethod
    def forward(ctx, a, y, a0, y0, index, index0, dims):  # noqa: D102
        ctx.save = (a.detach(), a0, y.detach(), y0, index, index0, dims)
        return y.detach().clone()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        # Each share is divided by a - a0 at the arg-max position it goes to before it is
        # added there (division distributes over the sum): every temporary is the size of
        # the output, a quarter or less of the input's, but the one the result is added to.
        a, a0, y, y0, index, index0, dims = ctx.save
        top = torch.maximum(y, y0)
        planes = a.flatten(-dims)
        planes0 = a0.flatten(-dims)
        grad = torch.zeros_like(planes)
        for at, change in ((index, g * (top - y0)), (index0, g * (y - top))):
            at = at.flatten(-dims)
            delta = planes.gather(-1, at).sub_(planes0.gather(-1, at))
            close = delta.abs() < EPS_POOL
            share = change.flatten(-dims).div_(delta.masked_fill_(close, 1.0))
            grad.scatter_add_(-1, at, share.masked_fill_(close, 0.0))
        return grad.reshape(a.shape), None, None, None, None, None, None


class PathMean(torch.autograd.Function):
    """y = fn(*a); backward: the mean gradient on the line a0 -> a, corrected so that
    sum(m * (a - a0)) = sum(g * (y - y0)) per sample (dimension 0 of length ``rows``) or,
    where the tensors are not batch-first, over the whole chunk."""

    @staticmethod
    def forward(ctx, fn, refs, y0, rows, y, *args):  # noqa: D102
        ctx.fn, ctx.refs, ctx.y0, ctx.rows, ctx.y = fn, refs, y0, rows, y.detach()
        ctx.args = [a.detach() for a in args]
        return y.detach().clone()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        deltas = [a - r for a, r in zip(ctx.args, ctx.refs, strict=True)]
        grads = [torch.zeros_like(a) for a in ctx.args]
        for t, w in zip(NODES, WEIGHTS, strict=True):
            point = [r + t * d for r, d in zip(ctx.refs, deltas, strict=True)]
            for total, part in zip(grads, _vjp(ctx.fn, point, g), strict=True):
                total.add_(part, alpha=w)
        _correct(grads, deltas, g * (ctx.y - ctx.y0), ctx.rows)
        return (None, None, None, None, None, *grads)


def _correct(grads, deltas, target: torch.Tensor, rows: int) -> None:
    """Add c * delta to each gradient so that sum(grad * delta) equals sum(target), per row
    when every tensor is batch-first with ``rows`` rows, else over everything. In place."""
    per_row = all(t.ndim and t.shape[0] == rows for t in (target, *deltas))

    def total(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(rows, -1).sum(1) if per_row else t.sum().reshape(1)

    have = sum(total(gr * d) for gr, d in zip(grads, deltas, strict=True))
    norm = sum(total(d * d) for d in deltas)
    c = torch.where(norm > 0, (total(target) - have) / torch.where(norm > 0, norm, 1.0), 0.0)
    for gr, d in zip(grads, deltas, strict=True):
        scale = c.reshape(rows, *[1] * (d.ndim - 1)) if per_row else c.reshape([1] * d.ndim)
        gr.add_(scale.to(d.dtype) * d)
