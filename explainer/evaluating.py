"""The state a network is explained in, set once per call and restored after it.

:meth:`Model.evaluating <explainer.model.Model.evaluating>` puts the network in eval mode,
freezes its parameters and turns in-place activations off; the outermost entry on a network
does it and restores everything on exit, nested entries (``ex.explain`` inside, a method
inside that) only count. While a network is inside, its device, dtype and parameter count
are held (:func:`call_facts`): a call asks for them dozens of times and each answer walks
every parameter.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

__all__ = ["Evaluating", "call_facts", "facts_of"]

# Networks inside Model.evaluating() now, and how deeply nested (see Model.evaluating).
_EVALUATING: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
# (device, dtype, parameter count) of each network inside Model.evaluating(), found once
# per call: the properties walk every parameter, and a call asks for them dozens of times
_FACTS: weakref.WeakKeyDictionary[Any, tuple[torch.device, torch.dtype, int]] = (
    weakref.WeakKeyDictionary()
)


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
        modules = list(net.modules())
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
        params = list(net.parameters())
        requires_grad = [p.requires_grad for p in params]
        self.saved = (depth is not None, modules, training, inplace, params, requires_grad)
        try:
            if depth is not None:
                _EVALUATING[net] = 1
                _FACTS[net] = facts_of(net, params)
            if any(training):  # (eval() walks every module in Python)
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
        counted, modules, training, inplace, params, requires_grad = self.saved
        self.saved = None
        if counted:
            _EVALUATING.pop(net, None)
            _FACTS.pop(net, None)
        for m, flag in zip(modules, training, strict=True):
            m.training = flag
        for p, flag in zip(params, requires_grad, strict=True):
            if flag:
                p.requires_grad_(True)
        for m, flag in inplace:
            m.inplace = flag


def facts_of(net: nn.Module, params: list[torch.Tensor]) -> tuple[torch.device, torch.dtype, int]:
    """(device, dtype, parameter count) of ``net`` whose parameters are ``params``: see
    :attr:`Model.device` and :attr:`Model.dtype` (buffers only when no parameter decides)."""
    device = params[0].device if params else None
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    if device is None or dtype is None:
        buffers = list(net.buffers())
        if device is None:
            device = buffers[0].device if buffers else torch.device("cpu")
        if dtype is None:
            dtype = next((b.dtype for b in buffers if b.is_floating_point()), torch.float32)
    return device, dtype, sum(p.numel() for p in params)


def call_facts(net: Any) -> tuple[torch.device, torch.dtype, int]:
    """(device, dtype, parameter count) of ``net``: held while it is inside an
    :class:`Evaluating` context, else found now (see :func:`facts_of`)."""
    try:
        return _FACTS[net]
    except (KeyError, TypeError):  # not inside evaluating(), or not weakly referable
        return facts_of(net, list(net.parameters()))
