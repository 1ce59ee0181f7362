"""Inside the model: its layers, the one CAM methods use by default, and a hook lifecycle
that captures a layer's activations (and lets gradients stop there).

* :func:`layers` lists every module with the shape of its output on an example input and
  marks the CAM candidates: modules whose output is a spatial map (N, C, h, w) with h * w
  > 1, or a sequence of tokens (N, T, D) that folds into a grid (a vision transformer).
* :func:`resolve_layer` gives the layer CAM methods use when none is named: for a CNN the
  module whose spatial output is computed *last* (the last conv block, before pooling);
  for a transformer the first LayerNorm of its last block (what pytorch-grad-cam
  recommends: after the last block's attention the class token no longer mixes with the
  patch tokens, so gradients there are zero on every patch).
* :class:`LayerCapture` is the one hook lifecycle: a context manager that registers one
  forward hook, keeps its handle, and removes it in ``finally``. During the forward the
  captured output is replaced by a leaf tensor that requires grad, so the gradient of the
  target with respect to the layer is exact and backward stops at the layer (a CAM costs
  one forward and the backward of the network's head only).
* :func:`as_grid` maps token activations (N, 1 + h*w, D) to (N, D, h, w): the class token
  dropped when T - 1 is a square, none dropped when T is; ``reshape=`` for other layouts.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

import torch
from torch import nn

from .errors import InputError, describe
from .hooks import LayerCapture, first_tensor, left_as_it_was, refuse_torchscript
from .model import wrap

__all__ = [
    "LayerInfo",
    "LayerTable",
    "layers",
    "resolve_layer",
    "as_grid",
    "LayerCapture",
    "left_as_it_was",
    "refuse_torchscript",
]  # the hooks are re-exported from explainer.hooks for the methods that read layers


@dataclass(frozen=True)
class LayerInfo:
    """One module as :func:`layers` saw it on the example input.

    Attributes:
        name: its dotted name in ``named_modules()`` ("" for the network itself).
        kind: its class name.
        shape: the shape of its output (of the first tensor of a tuple/ModelOutput), or None.
        candidate: "spatial" (N, C, h, w), "tokens" (N, T, D) that fold into a grid, or "".
        default: whether CAM methods use it when no layer is named.
        parameters: parameters of the module and its children.
    """

    name: str
    kind: str
    shape: tuple[int, ...] | None
    candidate: str
    default: bool
    parameters: int


class LayerTable(tuple):
    """The rows of :func:`layers`: a tuple of :class:`LayerInfo` that prints as a table
    (and renders as one in a notebook)."""

    def __repr__(self) -> str:
        lines = [f"{'':2}{'layer':<44} {'kind':<24} {'output':<22} candidate"]
        for r in self:
            mark = "→ " if r.default else "  "
            shape = "" if r.shape is None else str(tuple(r.shape))
            lines.append(f"{mark}{r.name or '(model)':<44} {r.kind:<24} {shape:<22} {r.candidate}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "<tr><th>layer</th><th>kind</th><th>output</th><th>CAM candidate</th></tr>"
        rows = []
        for r in self:
            name = escape(r.name or "(model)") + (" (default)" if r.default else "")
            shape = "" if r.shape is None else escape(str(tuple(r.shape)))
            cells = f"<td>{name}</td><td>{escape(r.kind)}</td><td>{shape}</td><td>{escape(r.candidate)}</td>"
            rows.append(f"<tr><th>{cells}</th></tr>" if r.default else f"<tr>{cells}</tr>")
        return f"<table>{head}{''.join(rows)}</table>"

    @property
    def default(self) -> LayerInfo | None:
        return next((r for r in self if r.default), None)


def _grid_side(tokens: int) -> tuple[int, int] | None:
    """(tokens dropped, side) when ``tokens`` fold into a square grid: T = side^2 or 1 + side^2."""
    for drop in (1, 0):
        side = math.isqrt(tokens - drop) if tokens - drop > 0 else 0
        if side > 1 and side * side == tokens - drop:
            return drop, side
    return None


def _candidate(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    if len(shape) == 4 and shape[2] * shape[3] > 1:
        return "spatial"
    if len(shape) == 3 and _grid_side(shape[1]) is not None:
        return "tokens"
    return ""


Row = tuple[str, nn.Module, Any, int, bool]


def _trace(net: nn.Module, run: Callable[[], Any]) -> list[Row]:
    """(name, module, output shape, completion order, output is a plain tensor) of every
    module on one forward."""
    seen: dict[str, tuple[Any, int, bool]] = {}
    handles = []
    counter = iter(range(10**9))

    def hook(name: str):
        def record(_module, _inputs, out):
            t = first_tensor(out)
            shape = None if t is None else tuple(t.shape)
            seen.setdefault(name, (shape, next(counter), isinstance(out, torch.Tensor)))

        return record

    try:
        for name, module in net.named_modules():
            if isinstance(module, torch.jit.ScriptModule):
                continue
            handles.append(module.register_forward_hook(hook(name)))
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return [(name, module, *seen[name]) for name, module in net.named_modules() if name in seen]


def _pick_default(net: nn.Module, rows: list[Row]) -> str | None:
    """The default CAM layer's name (see the module docstring): of the spatial and token
    candidates, whichever kind is computed last decides (a ViT's patch embedding is a
    spatial map, but its blocks come after it)."""
    spatial = [r for r in rows if _candidate(r[2]) == "spatial"]
    tokens = [r for r in rows if _candidate(r[2]) == "tokens"]
    order = lambda r: r[3]  # noqa: E731
    if spatial and (not tokens or max(map(order, spatial)) > max(map(order, tokens))):
        plain = [r for r in spatial if r[4]] or spatial  # a tensor, not a ModelOutput
        return max(plain, key=order)[0]
    if not tokens:
        return None
    # the last block of the last ModuleList whose blocks output tokens; its first LayerNorm
    names = {r[0] for r in tokens}
    lists = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    for list_name, blocks in reversed(lists):
        last = f"{list_name}.{len(blocks) - 1}" if list_name else str(len(blocks) - 1)
        inside = [r for r in rows if r[0] == last or r[0].startswith(last + ".")]
        if not any(r[0] in names for r in inside):
            continue
        norms = [r for r in inside if isinstance(r[1], nn.LayerNorm) and r[0] in names]
        if norms:
            return min(norms, key=order)[0]
        return last if last in names else None
    return max(tokens, key=order)[0]


def layers(model: Any, example: Any) -> LayerTable:
    """Every module of ``model`` with its output shape on ``example`` (one forward, no
    gradients), the CAM candidates marked and the default CAM layer flagged.

    Args:
        model: an ``ex.Model`` or ``nn.Module``.
        example: a batch the network takes (one sample is enough).

    Returns:
        A :class:`LayerTable` (a tuple of :class:`LayerInfo`, printed as a table).

    Raises:
        ModelError: the network fails on ``example``, or is TorchScript (its modules
            cannot be hooked).

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(4, 2))
        >>> table = ex.layers(net, torch.rand(1, 3, 8, 8))
        >>> table.default.name, table.default.shape
        ('1', (1, 4, 6, 6))
    """
    m = wrap(model)
    refuse_torchscript(m.net, "ex.layers")
    x = example.to(m.device) if isinstance(example, torch.Tensor) else example
    with m.evaluating():
        rows = _trace(m.net, lambda: m.forward(x))
    default = _pick_default(m.net, rows)
    return LayerTable(
        LayerInfo(
            name=name,
            kind=type(module).__name__,
            shape=shape,
            candidate=_candidate(shape),
            default=name == default,
            parameters=sum(p.numel() for p in module.parameters()),
        )
        for name, module, shape, _, _ in rows
    )


# the default layer found per network, for one sample shape and set of modules
_DEFAULTS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, tuple[Any, ...]], str]] = (
    weakref.WeakKeyDictionary()
)


def resolve_layer(
    net: nn.Module, layer: Any, run: Callable[[], Any] | None = None, shape: Any = None
) -> str:
    """The dotted name of ``layer`` in ``net``: a name (checked) or a module of ``net``;
    None: the default CAM layer, found by tracing ``run`` (one forward). With ``shape`` (the
    sample shape ``run`` sees), the default found is remembered for ``net`` while its
    modules are the same objects, so later calls on that shape need no forward.

    Raises:
        InputError: an unknown name or a module that is not part of ``net``, or no layer
            given for a network without a spatial or token layer.
        ModelError: a TorchScript network.
    """
    refuse_torchscript(net, "A layer method")
    names = dict(net.named_modules())
    if isinstance(layer, str):
        if layer in names:
            return layer
        close = [n for n in names if n.endswith(layer)][:3]
        raise InputError(
            describe(
                "`layer`",
                "the dotted name of a module of the network (see ex.layers(model, x))",
                repr(layer),
                f"Did you mean {close}?" if close else "List the layers with ex.layers(model, x).",
            )
        )
    if isinstance(layer, nn.Module):
        for name, module in names.items():
            if module is layer:
                return name
        raise InputError(
            describe(
                "`layer`",
                "a module of the explained network",
                f"a {type(layer).__name__} that is not one of its modules",
                "Pass a module of the wrapped network, or its dotted name.",
            )
        )
    if layer is not None:
        raise InputError(
            describe(
                "`layer`",
                "a dotted module name, a module, or None (the default layer)",
                type(layer).__name__,
                'Pass e.g. layer="layer4" or layer=model.layer4.',
            )
        )
    modules = tuple((n, id(m)) for n, m in names.items())
    known = _DEFAULTS.get(net, {})
    default = known.get((shape, modules)) if shape is not None else None
    if default is None and run is not None:
        default = _pick_default(net, _trace(net, run))
        if default is not None and shape is not None:
            _DEFAULTS[net] = {(shape, modules): default}
    if default is None:
        raise InputError(
            describe(
                "`layer`",
                "a layer with a spatial output (N, C, h, w) or tokens (N, T, D) on a grid",
                "none found in the network",
                "Name the layer to explain: layer='...' (see ex.layers(model, x)).",
            )
        )
    return default


def as_grid(
    t: torch.Tensor, reshape: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    """A layer's activations (or gradients) as a spatial map (N, K, h, w).

    (N, K, h, w) is returned as is; tokens (N, T, D) become (N, D, h, w), dropping the
    first (class) token when T - 1 is a square; ``reshape`` (a function of the captured
    tensor returning (N, K, h, w)) handles any other layout.

    Raises:
        InputError: a layout that is not a map and not tokens on a square grid.

    Example:
        >>> import torch
        >>> as_grid(torch.zeros(2, 1 + 16, 8), None).shape
        torch.Size([2, 8, 4, 4])
    """
    if reshape is not None:
        out = reshape(t)
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or len(out) != len(t):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                describe(
                    "`reshape`",
                    f"a function returning (N={len(t)}, channels, h, w)",
                    f"{got}",
                    "Return the activations as a spatial map, e.g. "
                    "lambda t: t[:, 1:].reshape(len(t), 14, 14, -1).permute(0, 3, 1, 2).",
                )
            )
        return out
    if t.ndim == 4:
        return t
    grid = _grid_side(t.shape[1]) if t.ndim == 3 else None
    if grid is None:
        raise InputError(
            describe(
                "The layer's output",
                "a spatial map (N, C, h, w) or tokens (N, T, D) with T = h*w or 1 + h*w",
                f"shape {tuple(t.shape)}",
                "Pass reshape=lambda t: ... returning (N, channels, h, w), or choose another "
                "layer (ex.layers(model, x) marks the candidates).",
            )
        )
    drop, side = grid
    return t[:, drop:].reshape(len(t), side, side, -1).permute(0, 3, 1, 2)
