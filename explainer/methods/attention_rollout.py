"""Attention rollout (Abnar & Zuidema 2020) for vision transformers that expose their
attention weights.

Each layer's attention (N, heads, T, T) is fused over heads (mean by default), mixed with
the identity for the residual connection, A = (W + I) / 2 with rows renormalised, and the
layers are multiplied in order: R = A_L ... A_1. The class token's row of R, without the
class token itself, says how much each patch flows into the class token; folded to the
patch grid and upsampled, it is the map. Class-agnostic (``target`` is not used) and
gradient-free: one forward.

The weights are read from the network's output (``.attentions`` of a HuggingFace
``ModelOutput``, or ``attentions=``, a function of the output) with
``output_attentions=True`` passed as a forward argument. A HuggingFace model running
scaled-dot-product attention returns no weights: it is switched to its eager attention for
the call and switched back afterwards (the same mathematics, another kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .._checks import check_choice
from .._runtime import ChunkRequest, Runtime, chunk_size, chunks
from ..errors import ModelError, describe
from ..inputs import ForwardArgs
from ..model import Model
from ..model_layers import as_grid, left_as_it_was, refuse_torchscript
from ..registry import MethodResult, register_method
from .cam import _check_image, to_input_size

__all__ = ["attention_rollout", "rollout"]

HEAD_FUSIONS = ("mean", "max", "min")


def rollout(attentions: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """The rollout (N, T, T) of per-layer attentions [(N, heads, T, T), ...].

    Example:
        >>> import torch
        >>> uniform = [torch.full((1, 2, 3, 3), 1 / 3)] * 2
        >>> rollout(uniform)[0, 0]  # the residual keeps half of the first token on itself
        tensor([0.5000, 0.2500, 0.2500])
    """
    out = None
    for w in attentions:
        fused = {"mean": w.mean(1), "max": w.amax(1), "min": w.amin(1)}[head_fusion]
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        a = (fused + eye) / 2
        a = a / a.sum(-1, keepdim=True)
        out = a if out is None else a @ out
    if out is None:
        raise ValueError("no attention layers")
    return out


@contextmanager
def _eager_attention(net: nn.Module) -> Iterator[None]:
    """A HuggingFace model's attention switched to "eager" (which returns its weights) for
    the ``with`` block, and back to what it was afterwards."""
    config = getattr(net, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(net, "set_attn_implementation")
    if switch:
        net.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            net.set_attn_implementation(before)


def _weights(out: Any, attentions: Callable[[Any], Any] | None) -> list[torch.Tensor]:
    got = attentions(out) if attentions is not None else getattr(out, "attentions", None)
    if got is None and isinstance(out, dict):
        got = out.get("attentions")
    weights = list(got) if isinstance(got, tuple | list) else []
    if not weights or not all(isinstance(w, torch.Tensor) and w.ndim == 4 for w in weights):
        raise ModelError(
            describe(
                "The network's attention weights",
                "a list of (N, heads, T, T) tensors, one per layer (a HuggingFace model's "
                ".attentions with output_attentions=True)",
                f"{type(got).__name__}" + (" (empty)" if isinstance(got, tuple | list) else ""),
                "Pass attentions=lambda out: [...] returning the weights from the output, or "
                "explain the model with grad_cam / layer_cam on its last block.",
            )
        )
    return weights


def _called(model: Model, rows: torch.Tensor) -> Any:
    """The network's raw output asked for its attention weights; its failure a ModelError."""
    try:
        return model.call_network(rows)
    except Exception as err:  # any failure of the user's code is the model's
        raise ModelError(
            describe(
                "The network asked for its attention weights (output_attentions=True)",
                "a transformer that returns them (a HuggingFace model)",
                f"{type(err).__name__}: {err}",
                "Use attention_rollout on a vision transformer, or grad_cam / layer_cam on "
                "this network (ex.layers(model, x) shows its layers).",
            )
        ) from err


@register_method(
    "attention_rollout",
    aliases=("rollout",),
    modalities=("image",),
    signed=False,
    reduction="sum",
)
def attention_rollout(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    head_fusion: str = "mean",
    attentions: Callable[[Any], Any] | None = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Attention rollout: how much each patch flows into the class token (Abnar & Zuidema 2020).

    Args:
        head_fusion: how a layer's heads become one attention: "mean" (default), "max"
            or "min".
        attentions: a function of the network's output returning its per-layer attention
            weights; None: ``out.attentions`` (HuggingFace, with output_attentions=True).

    Returns extras ``cam``: the rollout on the patch grid (N, h, w), and ``rollout``, the
    class token's full row (N, T).
    """
    check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
    _check_image(model, inputs, "attention_rollout")
    refuse_torchscript(model.net, "attention_rollout")
    extra = ForwardArgs.of({"output_attentions": True}, len(inputs))
    asking = model.calling(None, ForwardArgs(model.forward_args.items + extra.items))
    request = ChunkRequest(backward=False, what=f"attention_rollout on {len(inputs)} input(s)")
    size = chunk_size(model, inputs[0], runtime, request)
    rows, outputs = [], []
    with torch.no_grad(), left_as_it_was(model.net), _eager_attention(model.net):
        for part in chunks(len(inputs), size):
            out = _called(asking, inputs[part])
            weights = _weights(out, attentions)
            rows.append(rollout([w.float() for w in weights], head_fusion)[:, 0])  # (n, T)
            outputs.append(model.columns(out, inputs[part]))  # the scores: no other forward
    cls_row = torch.cat(rows)
    if runtime.outputs is not None and runtime.reserved == 0:
        runtime.outputs.put(model, inputs, torch.cat(outputs))
    cam = as_grid(cls_row[:, :, None], None)[:, 0]  # (N, h, w): the class token dropped
    params = {"head_fusion": head_fusion, "attentions": None if attentions is None else "given"}
    return MethodResult(
        to_input_size(cam.to(inputs.dtype), inputs),
        extras={"cam": cam.cpu(), "rollout": cls_row.cpu()},
        params=params,
    )
