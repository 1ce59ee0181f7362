"""Outputs already computed in one call, so that no forward pass runs twice.

``ex.explain`` needs the network's outputs on the inputs (the recorded scores, the
predicted class), a method computes them on its own way (saliency's gradient pass runs the
forward it needs; integrated gradients runs f(x) and f(baseline) for its completeness gap),
and so do the trust metrics. A :class:`KnownOutputs` is made per call and carried by the
:class:`~explainer._runtime.Runtime` every method receives: a pass that computed the outputs
of some rows records them (:meth:`KnownOutputs.put`), one that needs them asks first
(:meth:`KnownOutputs.get`). A saliency call on given targets then runs one forward+backward
and no other pass, like captum's.

Rows are recognised by what they are, not by their values: the same storage (held weakly:
a freed tensor's entry is dead, never matched by a new tensor at its address), offset,
shape, strides and dtype, and the same autograd version counter (an in-place write to the
rows after ``put`` bumps it, so stale outputs are never returned). Views made again of the
same rows (``x[2:4]`` twice) match. The model must be the same :class:`~explainer.model.Model`
object (also held weakly): its network, forward arguments and layout are what produced the
outputs.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["KnownOutputs"]


def _key(x: torch.Tensor) -> tuple:
    """What identifies rows in their storage: offset, shape, strides, dtype, device and
    autograd version counter."""
    return (x.storage_offset(), tuple(x.shape), x.stride(), x.dtype, x.device, x._version)


class KnownOutputs:
    """The outputs (rows, columns) of the forwards one call has run, by model and rows.

    Example:
        >>> import torch
        >>> known, model = KnownOutputs(), torch.nn.Identity()
        >>> x = torch.ones(4, 3)
        >>> known.put(model, x, torch.zeros(4, 2))
        >>> known.get(model, x[:]).shape, known.get(model, x[:2])
        (torch.Size([4, 2]), None)
        >>> _ = x.add_(1)  # the rows changed: what was known of them is not returned
        >>> known.get(model, x) is None
        True
    """

    def __init__(self) -> None:
        self._entries: list[tuple[weakref.ref, weakref.ref, tuple, torch.Tensor]] = []
        self.hits = 0  # how many passes were saved (tests and benchmarks read it)
        # the chunk sizes this call's passes ran at (explainer.throughput), for its manifest
        self.chunking: dict[str, Any] = {}

    def put(self, model: Any, x: torch.Tensor, out: torch.Tensor) -> None:
        """Remember ``out`` (detached) as ``model``'s outputs on the rows ``x``."""
        if self._entries:
            self._entries = [e for e in self._entries if e[0]() is not None and e[1]() is not None]
        self._entries.append(
            (weakref.ref(model), weakref.ref(x.untyped_storage()), _key(x), out.detach())
        )

    def get(self, model: Any, x: torch.Tensor) -> torch.Tensor | None:
        """``model``'s outputs on the rows ``x`` if a pass of this call computed them."""
        storage, key = x.untyped_storage(), _key(x)
        for model_ref, storage_ref, k, out in self._entries:
            if model_ref() is model and storage_ref() is storage and k == key:
                self.hits += 1
                return out
        return None
