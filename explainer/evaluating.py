"""The state a network is explained in, set once per call and restored after it.

:meth:`Model.evaluating <explainer.model.Model.evaluating>` puts the network in eval mode,
freezes its parameters and turns in-place activations off; the outermost entry on a network
does it and restores everything on exit, nested entries (``ex.explain`` inside, a method
inside that) only count. The outermost entry walks the network's modules once
(:func:`walk`) and, while the network is inside, holds what that walk found: its device,
dtype and parameter count (:func:`call_facts`) and its named parameters and buffers
(:func:`named_tensors`, which the fingerprint's state key and the meta-device check read).
A call asks for these dozens of times, and each walk of a module tree costs as much as a
tiny model's forward pass.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = ["Evaluating", "Walk", "walk", "call_facts", "facts_of", "named_tensors"]

# Networks inside Model.evaluating() now, and how deeply nested (see Model.evaluating).
_EVALUATING: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
# What the outermost entry's walk found, for each network inside Model.evaluating().
_HELD: weakref.WeakKeyDictionary[Any, Held] = weakref.WeakKeyDictionary()


class Walk(NamedTuple):
    """A network's modules, named parameters and named buffers, each once: what
    ``modules()``, ``named_parameters()`` and ``named_buffers()`` give, in their order."""

    modules: list[nn.Module]
    parameters: list[tuple[str, torch.Tensor]]
    buffers: list[tuple[str, torch.Tensor]]


class Held(NamedTuple):
    """What :class:`Evaluating` holds for a network inside it."""

    facts: tuple[torch.device, torch.dtype, int]
    walk: Walk


def walk(net: nn.Module) -> Walk:
    """``net``'s modules, named parameters and named buffers in one pass over its modules
    (the three ``nn.Module`` iterators walk the tree once each).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> w = walk(net)
        >>> len(w.modules), [n for n, _ in w.parameters] == [n for n, _ in net.named_parameters()]
        (3, True)
        >>> [n for n, _ in w.buffers] == [n for n, _ in net.named_buffers()]
        True
    """
    if isinstance(net, torch.jit.ScriptModule):  # its members are not plain dicts
        return Walk(list(net.modules()), list(net.named_parameters()), list(net.named_buffers()))
    modules: list[nn.Module] = []
    parameters: list[tuple[str, torch.Tensor]] = []
    buffers: list[tuple[str, torch.Tensor]] = []
    seen_parameters: set[int] = set()
    seen_buffers: set[int] = set()
    for prefix, module in net.named_modules():
        modules.append(module)
        dot = prefix + "." if prefix else ""
        for into, seen, members in (
            (parameters, seen_parameters, module._parameters),
            (buffers, seen_buffers, module._buffers),
        ):
            for key, t in members.items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    into.append((dot + key, t))
    return Walk(modules, parameters, buffers)


class Evaluating:
    """:meth:`Model.evaluating`'s context (a class, not a generator: a call enters it a few
    times, and the nested entries must cost next to nothing)."""

    __slots__ = ("model", "saved")

    def __init__(self, model: Any) -> None:
        self.model = model
        self.saved: tuple | None = None

    def __enter__(self) -> Any:
        net = self.model.net
        try:
            depth = _EVALUATING.get(net, 0)
        except TypeError:  # not weakly referable: the flags are set and restored every time
            depth = None
        if depth:
            _EVALUATING[net] = depth + 1
            return self.model
        found = walk(net)
        modules = found.modules
        training = [m.training for m in modules]
        # TorchScript modules hold ``inplace`` as a constant that cannot be set: they keep it
        # (autograd handles in-place ReLU; the methods that need hooks refuse TorchScript).
        # The flag is read from each module's __dict__, where nn.ReLU & co keep it: getattr
        # on a module without it would go through nn.Module's slow __getattr__.
        inplace = [
            (m, m.inplace)
            for m in modules
            if isinstance(m.__dict__.get("inplace"), bool)
            and not isinstance(m, torch.jit.ScriptModule)
        ]
        params = [p for _, p in found.parameters]
        requires_grad = [p.requires_grad for p in params]
        plain = _plain_flags(modules)
        self.saved = (depth is not None, modules, training, inplace, params, requires_grad, plain)
        try:
            if depth is not None:
                _EVALUATING[net] = 1
                _HELD[net] = Held(facts_of(net, params, found), found)
            if any(training):
                if plain:  # what eval() does, without its recursive calls and __setattr__
                    for m in modules:
                        m.__dict__["training"] = False
                else:
                    net.eval()
            for p, flag in zip(params, requires_grad, strict=True):
                if flag:
                    p.requires_grad_(False)
            for m, _ in inplace:
                m.inplace = False
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.model

    def __exit__(self, *exc: Any) -> None:
        net = self.model.net
        if self.saved is None:  # a nested entry
            _EVALUATING[net] -= 1
            return
        counted, modules, training, inplace, params, requires_grad, plain = self.saved
        self.saved = None
        if counted:
            _EVALUATING.pop(net, None)
            _HELD.pop(net, None)
        for m, flag in zip(modules, training, strict=True):
            if plain:
                m.__dict__["training"] = flag
            else:
                m.training = flag
        for p, flag in zip(params, requires_grad, strict=True):
            if flag:
                p.requires_grad_(True)
        for m, flag in inplace:
            m.inplace = flag


def _plain_flags(modules: list[nn.Module]) -> bool:
    """Whether every module keeps ``training`` in its ``__dict__`` and neither ``train()``
    nor ``__setattr__`` is overridden: then writing the flag there is exactly what
    ``eval()`` does (TorchScript modules and modules that react to the mode are not)."""
    for m in modules:
        kind = type(m)
        if (
            kind.train is not _TRAIN
            or kind.__setattr__ is not _SETATTR
            or "training" not in m.__dict__
        ):
            return False
    return True


_TRAIN = nn.Module.train
_SETATTR = nn.Module.__setattr__


def facts_of(
    net: nn.Module, params: list[torch.Tensor], found: Walk | None = None
) -> tuple[torch.device, torch.dtype, int]:
    """(device, dtype, parameter count) of ``net`` whose parameters are ``params``: see
    :attr:`Model.device` and :attr:`Model.dtype` (buffers only when no parameter decides;
    ``found``: a :func:`walk` that has them)."""
    device = params[0].device if params else None
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    if device is None or dtype is None:
        buffers = [b for _, b in found.buffers] if found is not None else list(net.buffers())
        if device is None:
            device = buffers[0].device if buffers else torch.device("cpu")
        if dtype is None:
            dtype = next((b.dtype for b in buffers if b.is_floating_point()), torch.float32)
    return device, dtype, sum(p.numel() for p in params)


def call_facts(net: Any) -> tuple[torch.device, torch.dtype, int]:
    """(device, dtype, parameter count) of ``net``: held while it is inside an
    :class:`Evaluating` context, else found now (see :func:`facts_of`)."""
    try:
        return _HELD[net].facts
    except (KeyError, TypeError):  # not inside evaluating(), or not weakly referable
        return facts_of(net, list(net.parameters()))


def named_tensors(net: nn.Module) -> tuple[list[tuple[str, torch.Tensor]], ...]:
    """``net``'s (named parameters, named buffers): held while it is inside an
    :class:`Evaluating` context, else walked now."""
    try:
        found = _HELD[net].walk
    except (KeyError, TypeError):
        found = walk(net)
    return found.parameters, found.buffers
