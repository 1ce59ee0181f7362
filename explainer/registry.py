"""The method registry: the project's only global state.

A method is a plain function ``fn(model, inputs, target, *, runtime, **params) -> MethodResult``
registered under a name (and aliases). Registering a name twice is an error. What the rest
of the package needs to know about a method (the modalities it accepts, how its maps are
drawn) is registered with it, so no other module names methods.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import torch

from .completeness import DEFAULT_COMPLETENESS, Completeness
from .errors import InputError, UnknownMethodError, describe

__all__ = [
    "MethodResult",
    "MethodInfo",
    "register_method",
    "get_method",
    "list_methods",
    "MethodList",
    "REDUCTIONS",
    "completeness_of",
]

_RESERVED = ("model", "inputs", "target", "runtime")
# The channel reductions a heatmap can draw with (explainer.viz.heatmap implements them).
REDUCTIONS = ("sum", "abs_sum", "l2", "max_abs")


@dataclass
class MethodResult:
    """What a method returns: attributions shaped like the inputs, per-sample extras, and the
    parameters it actually used (defaults and resolved values included).

    Example:
        >>> import torch
        >>> result = MethodResult(torch.zeros(2, 3), extras={"delta": torch.zeros(2)})
        >>> tuple(result.attributions.shape), sorted(result.extras), result.params
        ((2, 3), ['delta'], {})
    """

    attributions: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: name, aliases, modalities, one-line description, parameters, how
    its maps are drawn (see :func:`register_method`'s ``signed`` and ``reduction``) and its
    completeness tolerance.

    Example:
        >>> info = get_method("ig")
        >>> info.name, info.modalities, "n_steps" in info.parameters
        ('integrated_gradients', ('image', 'tabular', 'text'), True)
        >>> info.draws_signed({}), info.heatmap_reduction({})
        (True, 'sum')
        >>> get_method("saliency").draws_signed({"absolute": True})
        False
        >>> info.completeness_spec.tolerance, get_method("gradient_shap").completeness_spec.tolerance
        (0.01, 0.1)
        >>> info.needs_gradients, get_method("kernel_shap").needs_gradients
        (True, False)
    """

    name: str
    func: Callable[..., MethodResult]
    aliases: tuple[str, ...]
    modalities: tuple[str, ...]
    description: str
    defaults: dict[str, Any]
    signed: bool | Callable[[dict[str, Any]], bool] = True
    reduction: str | None = None
    completeness: Completeness | None = None
    needs_gradients: bool = True
    row_aligned: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    @property
    def completeness_spec(self) -> Completeness:
        """The tolerance and fix its completeness gaps are judged by (used only when its
        results report ``convergence_delta``): the registered one, else the exact default."""
        return self.completeness or DEFAULT_COMPLETENESS

    def draws_signed(self, params: dict[str, Any] | None = None) -> bool:
        """Whether maps made with ``params`` (the parameters an explanation records) have a
        meaningful sign: drawn on a diverging colormap centred on 0, else on |value|."""
        if callable(self.signed):
            return bool(self.signed(params or {}))
        return self.signed

    def heatmap_reduction(self, params: dict[str, Any] | None = None) -> str:
        """How channels become one map: the registered ``reduction``, else ``"sum"`` for
        signed maps and ``"max_abs"`` (max |.| over channels) for unsigned ones."""
        if self.reduction is not None:
            return self.reduction
        return "sum" if self.draws_signed(params) else "max_abs"

    def __repr__(self) -> str:
        alias = f" (aliases: {', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.name}{alias} [{', '.join(self.modalities)}]: {self.description}"

    def check_params(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.defaults, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InputError(
                describe(
                    f"Parameter {unknown[0]!r} for method {self.name!r}",
                    f"one of {list(self.defaults)}",
                    f"{unknown}",
                    f"Remove it or use an accepted name.{hint}",
                )
            )


class MethodList(list):
    """``list_methods()`` result: a list of MethodInfo that prints as a table."""

    def __str__(self) -> str:
        rows = [("name", "aliases", "modalities", "description")]
        rows += [
            (m.name, ", ".join(m.aliases) or "-", ", ".join(m.modalities), m.description)
            for m in self
        ]
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}" for r in rows
        )

    def _repr_html_(self) -> str:
        head = "<tr><th>name</th><th>aliases</th><th>modalities</th><th>description</th></tr>"
        body = "".join(
            f"<tr><td>{escape(m.name)}</td><td>{escape(', '.join(m.aliases))}</td>"
            f"<td>{escape(', '.join(m.modalities))}</td><td>{escape(m.description)}</td></tr>"
            for m in self
        )
        return f"<table>{head}{body}</table>"


_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}


def register_method(
    name: str,
    aliases: Sequence[str] = (),
    modalities: Sequence[str] = ("image", "tabular", "text"),
    description: str | None = None,
    signed: bool | Callable[[dict[str, Any]], bool] = True,
    reduction: str | None = None,
    completeness: Completeness | None = None,
    needs_gradients: bool = True,
    row_aligned: bool = False,
) -> Callable:
    """Decorator registering ``fn`` as attribution method ``name``.

    The description defaults to the first line of the docstring. Accepted parameters are the
    function's keyword-only arguments other than ``runtime``.

    Args:
        name: the method's name; ``aliases``: other names for it.
        modalities: the kinds of model it explains ("image", "tabular", "text"; a text
            model is explained through its embeddings, rows of (tokens, dim) values).
        description: one line for :func:`list_methods` (default: the docstring's first).
        signed: whether its maps have a meaningful sign (a diverging colormap centred on
            0), or a function of the parameters an explanation records that says so
            (saliency: not when ``absolute=True``).
        reduction: how an image map's channels become one ("sum", "abs_sum", "l2",
            "max_abs"); None: "sum" for signed maps, "max_abs" for unsigned ones.
        completeness: for a method whose results report ``extras["convergence_delta"]``
            (sum of attributions minus the output change, per sample): the relative gap it
            tolerates and how to close a larger one (see :mod:`explainer.completeness`);
            None: the exact tolerance (1%) with a generic fix.
        needs_gradients: whether it differentiates the model; False for a method that
            needs only forward passes, the only kind that explains a black-box function
            (``ex.wrap(clf.predict_proba)``).
        row_aligned: whether its passes run on the caller's rows only, one per sample, in
            chunks bound to their samples' rows (:meth:`~explainer.model.Model.rows`), and
            never on rows it builds (path points, noisy copies, coalitions): then a batch
            whose forward arguments hold a row per sample is explained in one call, not one
            call per sample (saliency, gradient x input).

    Raises:
        ValueError: ``name`` or an alias is already registered, or ``reduction`` is unknown.
        TypeError: ``signed`` is neither a bool nor a callable, or ``completeness`` is
            not a :class:`~explainer.completeness.Completeness`.

    Example:
        >>> import torch
        >>> from explainer.registry import _unregister
        >>> @register_method("doctest_scaled_input", modalities=("tabular",), signed=False)
        ... def scaled_input(model, inputs, target, *, scale: float = 2.0, runtime=None):
        ...     "Attributions: the inputs times ``scale``."
        ...     return MethodResult(scale * inputs.abs(), params={"scale": scale})
        >>> info = get_method("doctest_scaled_input")
        >>> info.parameters, info.description, info.heatmap_reduction()
        (('scale',), 'Attributions: the inputs times ``scale``.', 'max_abs')
        >>> info.func(None, torch.tensor([[1.0, -2.0]]), None).attributions
        tensor([[2., 4.]])
        >>> _unregister("doctest_scaled_input")  # leave the registry as other code finds it
    """
    if not (isinstance(signed, bool) or callable(signed)):
        raise TypeError(
            f"`signed` of method {name!r}: expected a bool or a function params -> bool, "
            f"got {signed!r}"
        )
    if completeness is not None and not isinstance(completeness, Completeness):
        raise TypeError(
            f"`completeness` of method {name!r}: expected a Completeness or None, "
            f"got {completeness!r}"
        )
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(
            f"`reduction` of method {name!r}: expected one of {REDUCTIONS} or None, "
            f"got {reduction!r}"
        )

    def decorate(fn: Callable[..., MethodResult]) -> Callable[..., MethodResult]:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"attribution method name {key!r} is already registered")
        sig = inspect.signature(fn)
        defaults = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in _RESERVED
        }
        doc = (fn.__doc__ or "").strip().splitlines()
        info = MethodInfo(
            name,
            fn,
            tuple(aliases),
            tuple(modalities),
            description or (doc[0] if doc else name),
            defaults,
            signed,
            reduction,
            completeness,
            bool(needs_gradients),
            bool(row_aligned),
        )
        _REGISTRY[name] = info
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def get_method(name: str) -> MethodInfo:
    """Look up a method by name or alias; unknown names raise UnknownMethodError.

    Example:
        >>> get_method("ig") is get_method("integrated_gradients")
        True
        >>> get_method("integrated_gradient")
        Traceback (most recent call last):
        ...
        explainer.errors.UnknownMethodError: ...Did you mean 'integrated_gradients'?...
    """
    if not isinstance(name, str):
        raise UnknownMethodError(
            describe("`method`", "a method name (str)", repr(name), "See ex.list_methods().")
        )
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        known = sorted([*_REGISTRY, *_ALIASES])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise UnknownMethodError(
            describe(
                "`method`",
                f"one of {sorted(_REGISTRY)}",
                repr(name),
                f"{hint}ex.list_methods() shows every method.",
            )
        )
    return _REGISTRY[key]


def completeness_of(name: str) -> Completeness:
    """The completeness tolerance and fix of method ``name``; the exact default for a name
    not registered in this process (a file or store written with a custom method).

    Example:
        >>> completeness_of("ig").tolerance, completeness_of("not registered").tolerance
        (0.01, 0.01)
    """
    try:
        return get_method(name).completeness_spec
    except UnknownMethodError:
        return DEFAULT_COMPLETENESS


def list_methods() -> MethodList:
    """Every registered method: name, aliases, modalities and a one-line description.

    Example:
        >>> import explainer as ex
        >>> "integrated_gradients" in [m.name for m in ex.list_methods()]
        True
    """
    return MethodList(sorted(_REGISTRY.values(), key=lambda m: m.name))


def _unregister(name: str) -> None:
    """Remove method ``name`` and its aliases (for examples and tests that register one)."""
    info = _REGISTRY.pop(name)
    for alias in info.aliases:
        del _ALIASES[alias]
