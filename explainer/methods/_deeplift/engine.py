"""DeepLIFT (rescale rule) on any PyTorch network, at the level of torch functions.

Two passes through the network, each under a :class:`torch.overrides.TorchFunctionMode`
that sees every torch function the forward calls (module or functional, reused modules
included) and follows which tensors depend on the input:

1. the **reference pass** runs the references and records, for every nonlinear operation,
   its arguments and output;
2. the **input pass** runs the inputs with gradients and replaces each nonlinear operation
   by its rule (:mod:`.rules`), given the recorded reference values of the same call.

Linear operations (add, matmul with one activation, conv, linear, pooling by averages,
batch norm in eval mode, reshapes, indexing) keep their gradient, which is their exact
multiplier. The gradient of the target output with respect to the input, times
(input - reference), is then DeepLIFT's attribution, and it sums to f(x) - f(reference).

Both passes must take the same path through the network: a forward whose control flow
depends on the input values is refused (:class:`ControlFlowError`).
"""

from __future__ import annotations

import functools
import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from .rules import MaxPool, PathMean, Rescale

__all__ = ["deeplift", "DeepLiftResult", "Coverage", "ControlFlowError"]

# Elementwise nonlinearities of one activation (any constant arguments): the rescale rule.
ELEMENTWISE = frozenset(
    """relu relu6 leaky_relu prelu rrelu elu selu celu gelu silu mish softplus hardtanh
    hardswish hardsigmoid hardshrink softshrink tanhshrink logsigmoid softsign threshold
    tanh sigmoid exp exp2 expm1 log log2 log10 log1p sqrt rsqrt reciprocal square pow
    abs sin cos erf erfc sign clamp clip clamp_min clamp_max sinh cosh arctan atan
    __pow__ __abs__""".split()
)
# Max pooling: the shap split of each output's change between the two arg-max positions.
MAX_POOLS = {
    "max_pool1d": 1,
    "max_pool2d": 2,
    "max_pool3d": 3,
    "adaptive_max_pool1d": 1,
    "adaptive_max_pool2d": 2,
    "adaptive_max_pool3d": 3,
}
# Linear in each activation argument: the gradient is the exact multiplier.
LINEAR = frozenset(
    """add sub rsub neg negative cat concat concatenate stack hstack vstack reshape view
    view_as flatten unflatten permute transpose t squeeze unsqueeze expand expand_as repeat
    tile contiguous clone narrow select index_select gather take_along_dim split chunk
    unbind roll flip movedim moveaxis swapaxes swapdims sum mean nansum cumsum diff trace
    conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear
    avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d
    adaptive_avg_pool3d pad interpolate upsample pixel_shuffle pixel_unshuffle dropout
    dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout identity masked_fill
    where to type float double half bfloat16 unfold fold __getitem__ __add__ __radd__
    __iadd__ __sub__ __rsub__ __isub__ __neg__ add_ sub_ embedding detach""".split()
)
# Linear in each argument separately: linear when at most one argument is an activation.
MULTILINEAR = frozenset(
    """mul multiply matmul mm bmm einsum bilinear outer dot __mul__ __rmul__ __imul__
    __matmul__ __rmatmul__ mul_ baddbmm addmm""".split()
)
DIVISION = frozenset("div divide true_divide __truediv__ __itruediv__ div_".split())
TRAINING_SENSITIVE = {"batch_norm": 5, "dropout": 2, "instance_norm": 5}  # `training` index


class ControlFlowError(RuntimeError):
    """The input pass called other operations than the reference pass."""


class _NotRowwise(Exception):
    """A value recorded on the distinct references is not one row per reference: the
    reference pass is run again on every pair's reference (see :func:`deeplift`)."""


@dataclass(frozen=True)
class _Rows:
    """Maps the reference pass's rows (one per distinct reference) to the pairs' rows."""

    index: torch.Tensor  # (pairs,): the reference row of each pair
    count: int  # distinct references

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0 or t.shape[0] != self.count:
            raise _NotRowwise
        return t.index_select(0, self.index.to(t.device))


@dataclass
class Coverage:
    """Which rule covered how many operations of one attribution pass."""

    rules: Counter = field(default_factory=Counter)  # rule -> operations
    path: Counter = field(default_factory=Counter)  # operation name -> calls under PathMean
    uncovered: Counter = field(default_factory=Counter)  # passed on as plain gradients

    def record(self) -> dict[str, Any]:
        return {
            "rules": dict(self.rules),
            "path_mean": dict(self.path),
            "uncovered": dict(self.uncovered),
        }


def _has_float(out: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tree_flatten(out)[0])


def _name(func: Callable) -> str:
    return getattr(func, "__name__", str(func))


@functools.lru_cache(maxsize=512)
def _signature(func: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _without_inplace(func: Callable, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict]:
    """The out-of-place form of ``func(*args, **kwargs)`` (relu_ -> relu, inplace=False)."""
    name = _name(func)
    if name.endswith("_") and not name.endswith("__") and hasattr(torch.Tensor, name[:-1]):
        return getattr(torch.Tensor, name[:-1]), args, kwargs
    sig = _signature(func)
    if sig is not None and "inplace" in sig.parameters:
        bound = sig.bind(*args, **kwargs)
        bound.arguments["inplace"] = False
        return func, bound.args, bound.kwargs
    return func, args, kwargs


class _Trace(TorchFunctionMode):
    """Follows the tensors that depend on ``source`` through one forward pass; records
    (reference pass) or applies (input pass) the rules of the nonlinear operations."""

    def __init__(
        self,
        source: torch.Tensor,
        records: list | None,
        rows: int,
        expand: _Rows | None = None,
    ) -> None:
        super().__init__()
        self.recording = records is None
        self.records = [] if records is None else records
        self.step = 0
        self.rows = rows
        self.coverage = Coverage()
        # the input pass of pairs whose references ran once each: recorded values expanded
        self.expand = expand
        self._mark(source)

    def _mark(self, t: Any) -> None:
        if isinstance(t, torch.Tensor):
            t._explainer_deeplift = self  # a tag of this pass only

    def _tainted(self, t: Any) -> bool:
        """Depends on the pass's input (floating point: an activation)."""
        return isinstance(t, torch.Tensor) and getattr(t, "_explainer_deeplift", None) is self

    def _active(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        flat = tree_flatten((args, kwargs))[0]
        return [t for t in flat if self._tainted(t) and t.is_floating_point()]

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        tainted = [t for t in tree_flatten((args, kwargs))[0] if self._tainted(t)]
        if not tainted:
            return func(*args, **kwargs)
        func, args, kwargs = _without_inplace(func, args, kwargs)
        active = self._active(args, kwargs)
        # an input-dependent mask or index (x > 0) makes even a linear operation nonlinear
        kind = "path" if len(active) < len(tainted) else self._kind(func, args, kwargs, active)
        out = self._run(kind, func, args, kwargs) if kind != "linear" else func(*args, **kwargs)
        tree_map(self._mark, out)
        return out

    def _kind(self, func: Callable, args: tuple, kwargs: dict, active: list) -> str:
        name = _name(func)
        if name == "__get__":  # a property: .T, .mT, .real (linear), .shape, .dtype (no tensor)
            return "linear"
        if name in TRAINING_SENSITIVE:
            sig = _signature(func)
            training = sig.bind(*args, **kwargs).arguments.get("training") if sig else None
            return "path" if training else "linear"
        if name in LINEAR or name in MULTILINEAR and len(active) <= 1:
            return "linear"
        if name in DIVISION:
            return "linear" if len(active) == 1 and self._tainted(args[0]) else "path"
        one = len(active) == 1 and args and self._tainted(args[0])
        if name in ELEMENTWISE and one:
            return "rescale"
        if name in MAX_POOLS and one:
            return "maxpool"
        return "path"

    # --- the two passes -------------------------------------------------------------

    def _run(self, kind: str, func: Callable, args: tuple, kwargs: dict) -> Any:
        out = None
        if kind == "path":  # sizes, masks and indices carry no gradient: nothing to cover
            with torch.no_grad():
                out = func(*args, **kwargs)
            if not _has_float(out) or isinstance(out, torch.Tensor) and not out.is_floating_point():
                return out
        if self.recording:
            out = func(*args, **kwargs) if out is None else out
            refs = [a.detach() for a in self._active(args, kwargs)]
            self.records.append((_name(func), refs, out, args, kwargs))
            return out
        if self.step >= len(self.records):
            self._mismatch(f"{_name(func)} was not called on the references")
        name, refs, out0, args0, kwargs0 = self.records[self.step]
        self.step += 1
        ref_call = (args0, kwargs0)
        if self.expand is not None:
            refs = [self.expand(r) for r in refs]
            out0 = tree_map(self._expanded, out0)
        shapes = [tuple(a.shape) for a in self._active(args, kwargs)]
        if name != _name(func) or shapes != [tuple(r.shape) for r in refs]:
            self._mismatch(
                f"{_name(func)}{shapes} on the inputs, {name}{[tuple(r.shape) for r in refs]} "
                "on the references"
            )
        if kind == "path":
            return self._path(func, args, kwargs, refs, out0, out)
        return getattr(self, f"_{kind}")(func, args, kwargs, refs, out0, ref_call)

    def _mismatch(self, message: str) -> None:
        """The passes differ: a control-flow error, unless the references ran on their own
        rows (the difference may come from there: run them again with every pair's)."""
        if self.expand is not None:
            raise _NotRowwise
        raise ControlFlowError(message)

    def _expanded(self, t: Any) -> Any:
        """A value recorded on the distinct references, for the pairs: an activation of the
        reference pass one row per pair, anything else (weights, sizes) as it is."""
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return self.expand(t)
        return t

    def _rescale(self, func, args, kwargs, refs, out0, _ref_call):
        self.coverage.rules["rescale"] += 1
        rest = args[1:]

        def fn(a: torch.Tensor) -> torch.Tensor:
            return func(a, *rest, **kwargs)

        alone = not any(isinstance(v, torch.Tensor) for v in (*rest, *kwargs.values()))
        return Rescale.apply(args[0], refs[0], out0, fn, alone)

    def _maxpool(self, func, args, kwargs, refs, out0, ref_call):
        self.coverage.rules["maxpool"] += 1
        with_indices = getattr(F, f"{_name(func)}_with_indices")
        sig = _signature(with_indices)

        def pool(call_args: tuple, call_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, bool]:
            bound = sig.bind(*call_args, **call_kwargs)
            asked = bool(bound.arguments.get("return_indices", False))
            with torch.no_grad():
                values, index = with_indices(*bound.args, **bound.kwargs)
            return values, index, asked

        y, index, asked = pool(args, kwargs)
        y0, index0, _ = pool(*ref_call)  # on the references' own rows, then one per pair
        if self.expand is not None:
            y0, index0 = self.expand(y0), self.expand(index0)
        dims = MAX_POOLS[_name(func)]
        pooled = MaxPool.apply(args[0], y, refs[0], y0, index, index0, dims)
        return (pooled, index) if asked else pooled

    def _path(self, func, args, kwargs, refs, out0, out):
        if not isinstance(out0, torch.Tensor) or not refs:
            self.coverage.uncovered[_name(func)] += 1
            return func(*args, **kwargs)
        self.coverage.rules["path_mean"] += 1
        self.coverage.path[_name(func)] += 1
        flat, spec = tree_flatten((args, kwargs))
        slots = [i for i, t in enumerate(flat) if self._tainted(t) and t.is_floating_point()]

        def fn(*active: torch.Tensor) -> torch.Tensor:
            filled = list(flat)
            for i, a in zip(slots, active, strict=True):
                filled[i] = a
            call_args, call_kwargs = spec.unflatten(filled)
            return func(*call_args, **call_kwargs)

        return PathMean.apply(fn, refs, out0, self.rows, out, *[flat[i] for i in slots])


@dataclass
class DeepLiftResult:
    attributions: torch.Tensor  # (rows, ...) multipliers x (inputs - references)
    outputs: torch.Tensor  # (rows,) f(input)[target]
    reference_outputs: torch.Tensor  # (rows,) f(reference)[target]
    coverage: Coverage
    all_outputs: torch.Tensor | None = None  # (rows, classes) f(input)
    all_reference_outputs: torch.Tensor | None = None  # (rows, classes) f(reference)


def deeplift(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    references: torch.Tensor,
    target: torch.Tensor,
    check: Callable[[torch.Tensor], None] | None = None,
    reference_index: torch.Tensor | None = None,
) -> DeepLiftResult:
    """DeepLIFT attributions of ``forward(inputs)[i, target[i]]`` to each input row with
    the reference of the same row (rows, ...). ``forward`` maps (rows, ...) to (rows,
    classes); it is run twice (references, then inputs) and once backwards. ``check`` is
    called on the chosen outputs before the backward (to refuse ones without a gradient
    path, say).

    ``reference_index`` (rows,): ``references`` holds each distinct reference once and row
    i's reference is ``references[reference_index[i]]``. The reference pass then runs on the
    distinct references only (DeepSHAP pairs each background row with every input: a
    quarter of the rows at 4 inputs) and its recorded values are expanded to the pairs. A
    forward whose recorded activations are not one row per reference (rows mixed or moved
    off the first dimension) is run again with every pair's reference.

    Raises:
        ControlFlowError: the two passes called different operations.
    """
    if reference_index is not None and len(references) < len(inputs):
        try:
            return _deeplift(forward, inputs, references, target, check, reference_index)
        except _NotRowwise:
            references = references[reference_index]
    return _deeplift(forward, inputs, references, target, check, None)


def _deeplift(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    references: torch.Tensor,
    target: torch.Tensor,
    check: Callable[[torch.Tensor], None] | None,
    reference_index: torch.Tensor | None,
) -> DeepLiftResult:
    rows = len(inputs)
    picked = torch.arange(rows, device=inputs.device)
    refs = references.detach().clone()
    reference = _Trace(refs, None, len(refs))
    with torch.no_grad(), reference:
        out0 = forward(refs)
    expand = None
    if reference_index is not None:
        expand = _Rows(reference_index, len(refs))
        out0, refs = expand(out0), expand(refs)
    x = inputs.detach().clone().requires_grad_(True)
    trace = _Trace(x, reference.records, rows, expand)
    with torch.enable_grad():
        with trace:
            out = forward(x)
        if trace.step != len(reference.records):
            trace._mismatch(
                f"{len(reference.records) - trace.step} operation(s) of the reference pass "
                "were not called on the inputs"
            )
        chosen = out[picked, target]
        if check is not None:
            check(chosen)
        (grad,) = torch.autograd.grad(chosen.sum(), x, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return DeepLiftResult(
        (grad * (x.detach() - refs)).detach(),
        chosen.detach(),
        out0[picked, target].detach(),
        trace.coverage,
        out.detach(),
        out0.detach(),
    )
