"""Hooks on a network's modules, with one lifecycle: registered on entry, removed on exit.

* :class:`LayerCapture` captures one layer's output during the forward (replacing it by a
  leaf that requires grad, so gradients stop there, or by any tensor: layer integrated
  gradients and text models patch activations this way);
* :func:`left_as_it_was` removes what the network's own code adds during a call (hooks,
  attributes);
* :func:`refuse_torchscript` says clearly that a TorchScript network cannot be hooked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .errors import ModelError, describe

__all__ = ["LayerCapture", "left_as_it_was", "refuse_torchscript", "first_tensor"]


def first_tensor(out: Any) -> torch.Tensor | None:
    """The tensor a module's output stands for: itself, or the first tensor of a tuple,
    list, dict or ModelOutput."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def refuse_torchscript(net: nn.Module, what: str) -> None:
    """ModelError for a TorchScript network: its graph runs in C++, its submodules cannot
    be hooked and its attention weights cannot be asked for."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in net.modules()):
        raise ModelError(
            describe(
                f"{what} on a TorchScript model",
                "an eager nn.Module (layer hooks need Python modules)",
                "a TorchScript module, whose submodules cannot be hooked",
                "Load the eager network (ex.load_model with factory= and a state_dict), or "
                "explain the TorchScript model with a method on its inputs "
                "(integrated_gradients, saliency, kernel_shap).",
            )
        )


class LayerCapture:
    """One forward hook on one layer, registered on entry and removed on exit (also when
    an error is raised); errors are never swallowed.

    Inside the ``with``, every forward of the network replaces the layer's output (its
    first tensor) by a leaf copy that requires grad, kept in :attr:`outputs` (one per
    forward), so ``torch.autograd.grad(score, capture.outputs[-1])`` is the gradient with
    respect to the layer and backward stops there. ``replace`` (a function of the captured
    tensor) substitutes another tensor for it (layer integrated gradients patches the
    activations this way).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
        >>> with LayerCapture(net, "0") as cap:
        ...     y = net(torch.ones(1, 3))
        >>> cap.outputs[0].shape, len(net[0]._forward_hooks)
        (torch.Size([1, 2]), 0)
    """

    def __init__(
        self,
        net: nn.Module,
        name: str,
        replace: Callable[[torch.Tensor], torch.Tensor] | None = None,
        grad: bool = True,
    ) -> None:
        self.module = dict(net.named_modules())[name]
        self.name = name
        self.replace = replace
        self.grad = grad
        self.outputs: list[torch.Tensor] = []
        self._handle: Any = None

    def _hook(self, _module: nn.Module, _inputs: Any, out: Any) -> Any:
        t = first_tensor(out)
        if t is None:
            raise ModelError(
                describe(
                    f"Layer {self.name!r}",
                    "a module whose output is a tensor (or a tuple starting with one)",
                    f"an output of type {type(out).__name__}",
                    "Choose another layer (see ex.layers(model, x)).",
                )
            )
        new = self.replace(t) if self.replace is not None else t.detach()
        if self.grad and not new.requires_grad:
            new = new.detach().requires_grad_(True)
        self.outputs.append(new)
        if isinstance(out, torch.Tensor):
            return new
        if isinstance(out, tuple):
            return (new, *out[1:])
        if isinstance(out, list):
            return [new, *out[1:]]
        key = next(iter(out))
        out[key] = new  # a dict / ModelOutput: its first entry
        return out

    def __enter__(self) -> LayerCapture:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@contextmanager
def left_as_it_was(net: nn.Module) -> Iterator[None]:
    """Hooks the network's own code registers during the block, and attributes it adds to
    its modules, removed on exit (HuggingFace installs output-capturing hooks, and a flag
    saying so, the first time a model is asked for its attention weights): the model is
    left as it was, and a later call installs them again if it needs them."""
    modules = list(net.modules())
    hooks = [{attr: dict(getattr(m, attr, {})) for attr in _HOOK_DICTS} for m in modules]
    attributes = [set(vars(m)) for m in modules]
    try:
        yield
    finally:
        for m, before, names in zip(modules, hooks, attributes, strict=True):
            for attr, kept in before.items():
                held = getattr(m, attr, None)
                if held is not None:
                    for key in [k for k in held if k not in kept]:
                        del held[key]
            for name in set(vars(m)) - names:
                delattr(m, name)
