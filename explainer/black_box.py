"""A plain callable (``clf.predict_proba``, any function of a batch) as a network.

:class:`CallableNet` makes the function an ``nn.Module`` so that everything built for
networks (eval mode, memory probes, chunking) runs unchanged. A function fed numpy is a
black box: only forward passes reach it, so only methods that need no gradients explain it
(``register_method(..., needs_gradients=False)``). A function fed tensors is called on them,
and gradients flow when the function is differentiable.

Its fingerprint (:func:`callable_fingerprint`) hashes the pickled function — a bound method
pickles its object, so a scikit-learn model's fitted weights are hashed — and, when the
function cannot be pickled (a lambda, a closure), its qualified name and ``id``: unique in
this process but not across processes, so such a model must be explained and evaluated in
the same session.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import ExplainerError, InputError, ModelError, describe

__all__ = ["CallableNet", "INPUT_KINDS", "callable_fingerprint"]

INPUT_KINDS = ("tensor", "numpy")


class CallableNet(nn.Module):
    """``fn`` as a module: fed numpy (``input="numpy"``) or tensors (``input="tensor"``).

    A bound method of an ``nn.Module`` keeps that module as a child, so its parameters,
    eval mode and fingerprint are the module's.

    Example:
        >>> import numpy as np, torch
        >>> net = CallableNet(lambda a: a.sum(1), "numpy")
        >>> net(torch.ones(2, 3)), net.fed_numpy
        (array([3., 3.], dtype=float32), True)
    """

    def __init__(self, fn: Callable[..., Any], input: str) -> None:
        super().__init__()
        if input not in INPUT_KINDS:
            raise InputError(
                describe(
                    "`input`",
                    f"one of {INPUT_KINDS}",
                    repr(input),
                    'Pass input="numpy" for scikit-learn and numpy functions, '
                    'input="tensor" for functions of torch tensors.',
                )
            )
        self.fn = fn
        self.input = input
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module):
            self.owner = owner  # registered: parameters, buffers and eval mode are its

    @property
    def fed_numpy(self) -> bool:
        return self.input == "numpy"

    @property
    def qualified_name(self) -> str:
        fn = self.fn
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """The function on ``x`` (and any further inputs or forward arguments), as numpy
        arrays when it is fed numpy."""
        if not self.fed_numpy:
            return self.fn(x, *args, **kwargs)
        as_array = lambda v: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v  # noqa: E731
        try:
            return self.fn(
                as_array(x),
                *map(as_array, args),
                **{k: as_array(v) for k, v in kwargs.items()},
            )
        except ExplainerError:
            raise
        except Exception as err:  # a function of tensors fails on numpy: say how to fix it
            raise ModelError(
                describe(
                    f"The function {self.qualified_name} failed on a numpy array of shape "
                    f"{tuple(x.shape)}",
                    "a function of numpy arrays (input='numpy', the default for callables)",
                    f"{type(err).__name__}: {err}",
                    'If it takes torch tensors, pass input="tensor" to ex.wrap; else check '
                    "the inputs' shape and layout.",
                )
            ) from err


def callable_fingerprint(net: CallableNet) -> str:
    """SHA-256 (first 16 hex digits) of the pickled function (its owning module's
    parameters when it is a module's method); its qualified name and id when it cannot
    be pickled (see the module docstring)."""
    h = hashlib.sha256(net.qualified_name.encode())
    if hasattr(net, "owner"):
        for key, t in net.owner.state_dict().items():
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
    try:
        h.update(pickle.dumps(net.fn, protocol=4))
    except Exception:  # lambdas, closures, local functions: not picklable
        h.update(f"id {id(net.fn)}".encode())
    return h.hexdigest()[:16]
