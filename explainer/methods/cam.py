"""The CAM family: maps of where a layer's activations carry the class, upsampled to the
input.

Every method here reads one layer's activations A (N, K, h, w) — a CNN block's map, or a
vision transformer's tokens folded into a grid (:func:`explainer.model_layers.as_grid`) — and,
for the gradient-weighted ones, their gradients G = d y_c / d A of the target output y_c
(the logit, as captum and pytorch-grad-cam use). One forward and the backward of the
network's head only: the layer's output is replaced by a leaf that requires grad
(:class:`explainer.model_layers.LayerCapture`), so backward stops at the layer. Each map is
ReLU'd (positive evidence for the class), kept at layer resolution in
``extras["cam"]`` (N, h, w), and upsampled bilinearly to the input; the attributions are
that map spread evenly over the input's channels (so summing the channels gives it back).

* ``grad_cam`` (Selvaraju et al. 2017): w_k = mean_ij G_k, map = ReLU(sum_k w_k A_k). For
  a network ending in global average pooling and a linear layer this is Zhou et al.'s CAM
  (sum_k W_ck A_k) divided by h*w.
* ``hires_cam`` (Draelos & Carin 2020): ReLU(sum_k G_k * A_k), faithful to the gradient.
* ``grad_cam_pp`` (Chattopadhay et al. 2018): w_k = sum_ij ReLU(G) a_ij with
  a = G^2 / (2 G^2 + sum_ij(A) G^3) (zero where G = 0).
* ``xgrad_cam`` (Fu et al. 2020): w_k = sum_ij(G_k A_k) / sum_ij(A_k).
* ``layer_cam`` (Jiang et al. 2021): ReLU(sum_k ReLU(G_k) * A_k).
* ``eigen_cam`` (Muhammad & Yeasin 2020): the projection of the centred activations
  (h*w, K) on their first principal direction; no gradient, not class-specific; its sign
  is chosen to agree with the summed activations, then ReLU'd.
* ``score_cam`` (Wang et al. 2020): forward passes only. Each channel's map, upsampled and
  min-max normalized to [0, 1], masks the input; w_k is the target's score on that masked
  input (the class probability; a regression's value), as in the authors' code;
  map = ReLU(sum_k w_k A_k). K forward rows per sample, batched under the memory budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .._runtime import (
    ChunkRequest,
    Runtime,
    accumulation_dtype,
    chunk_size,
    chunks,
    network_cost,
    progress_bar,
)
from ..errors import InputError, ModelError, describe
from ..model import Model
from ..model_layers import LayerCapture, as_grid, resolve_layer
from ..registry import MethodResult, register_method
from ..throughput import Tuning

__all__ = ["layer_maps", "layer_activations", "to_input_size", "CAM_WEIGHTS"]


def _check_image(model: Model, inputs: torch.Tensor, method: str) -> None:
    if inputs.ndim != 4 or model.layout is not None:
        raise InputError(
            describe(
                "`method`",
                "an image model (N, C, H, W) for a CAM method",
                f"{method} on inputs of shape {tuple(inputs.shape)}",
                "CAMs map a layer onto the image; for other inputs use "
                "layer_gradient_x_activation or layer_integrated_gradients with layer=...",
            )
        )


def layer_maps(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    layer: Any,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None,
    runtime: Runtime,
    gradients: bool = True,
) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """The layer's name, its activations A and (``gradients``) the gradients G of each
    sample's target output, both folded to (N, K, h, w) (:func:`as_grid`) in at least
    float32; see :func:`layer_activations`.

    Raises:
        InputError: an unknown layer, or one whose output is not a map or tokens on a grid.
        ModelError: the layer runs more than once per forward, or does not reach the output.
    """
    name, a, g = layer_activations(model, inputs, target, layer, runtime, gradients)
    return name, as_grid(a, reshape), None if g is None else as_grid(g, reshape)


def layer_activations(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    layer: Any,
    runtime: Runtime,
    gradients: bool = True,
) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """The layer's name, its activations and (``gradients``) the gradients of each
    sample's target output with respect to them, in the layer's own shape (N, ...), in at
    least float32. Chunks of rows fit the memory budget; each costs one forward and the
    backward of the network's head (the layer's output is a leaf, see LayerCapture)."""
    name = resolve_layer(
        model.net, layer, lambda: model.forward(inputs[:1]), shape=tuple(inputs.shape[1:])
    )
    request = ChunkRequest(
        extra_bytes_per_row=inputs[0].numel() * inputs.element_size(),
        what=f"activations of layer {name!r} on {len(inputs)} input(s)",
        backward=gradients,
    )
    size = chunk_size(model, inputs[0], runtime, request)
    acts, grads, outs = [], [], []
    wide = accumulation_dtype(inputs.dtype)
    kind = "forward+backward to a layer" if gradients else "forward to a layer"
    for part in chunks(len(inputs), size, Tuning.of(model, kind, inputs[0], runtime)):
        with LayerCapture(model.net, name) as cap, torch.enable_grad():
            out = model.forward(inputs[part])
            if len(cap.outputs) != 1:
                raise ModelError(
                    describe(
                        f"Layer {name!r}",
                        "a module that runs once per forward",
                        f"{len(cap.outputs)} calls",
                        "Choose a layer the network calls once (see ex.layers(model, x)).",
                    )
                )
            act = cap.outputs[0]
            if gradients:
                selected = out.gather(1, target[part, None].to(out.device)).squeeze(1)
                (g,) = torch.autograd.grad(selected.sum(), act, allow_unused=True)
                if g is None:
                    raise ModelError(
                        describe(
                            f"Layer {name!r}",
                            "a layer the target output depends on",
                            "no gradient path from the output to it",
                            "Choose a layer before the head (ex.layers marks the default).",
                        )
                    )
                grads.append(g.detach().to(wide))
        acts.append(act.detach().to(wide))
        outs.append(out.detach())
    if runtime.outputs is not None and runtime.reserved == 0:  # the scores need no other pass
        runtime.outputs.put(model, inputs, torch.cat(outs))
    return name, torch.cat(acts), torch.cat(grads) if gradients else None


def to_input_size(cam: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """(N, h, w) maps -> attributions shaped like the (N, C, H, W) inputs: bilinear
    upsampling, then spread evenly over the channels (their sum is the upsampled map)."""
    up = F.interpolate(cam[:, None], size=inputs.shape[2:], mode="bilinear", align_corners=False)
    return (up / inputs.shape[1]).expand(-1, inputs.shape[1], -1, -1).contiguous()


def _grad_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.mean((2, 3), keepdim=True) * a).sum(1)


def _hires_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a).sum(1)


def _grad_cam_pp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    g2, g3 = g.pow(2), g.pow(3)
    denominator = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
    alpha = torch.where(g != 0, g2 / torch.where(denominator != 0, denominator, 1.0), 0.0)
    weights = (g.clamp_min(0) * alpha).sum((2, 3), keepdim=True)
    return (weights * a).sum(1)


def _xgrad_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    total = a.sum((2, 3), keepdim=True)
    weights = (g * a).sum((2, 3), keepdim=True) / torch.where(total != 0, total, 1.0)
    return (weights * a).sum(1)


def _layer_cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.clamp_min(0) * a).sum(1)


# name -> (weighting of activations by gradients, aliases, one-line description)
CAM_WEIGHTS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[str, ...], str]] = {
    "grad_cam": (_grad_cam, ("gradcam",), "Grad-CAM: activations weighted by their mean gradient (Selvaraju et al. 2017)."),
    "hires_cam": (_hires_cam, ("hirescam",), "HiResCAM: gradient times activation, summed over channels (Draelos & Carin 2020)."),
    "grad_cam_pp": (_grad_cam_pp, ("gradcam++", "grad_cam_plus_plus"), "Grad-CAM++: positive gradients weighted by second-order terms (Chattopadhay et al. 2018)."),
    "xgrad_cam": (_xgrad_cam, ("xgradcam",), "XGrad-CAM: axiom-based weights, gradient x activation over activation (Fu et al. 2020)."),
    "layer_cam": (_layer_cam, ("layercam",), "LayerCAM: positive gradients times activations, per position (Jiang et al. 2021)."),
}  # fmt: skip


def _result(cam: torch.Tensor, inputs: torch.Tensor, name: str, reshape: Any) -> MethodResult:
    cam = cam.clamp_min(0)
    params = {"layer": name, "reshape": None if reshape is None else "given"}
    return MethodResult(
        to_input_size(cam.to(inputs.dtype), inputs).to(cam.dtype),
        extras={"cam": cam.cpu()},
        params=params,
    )


def _register_gradient_cam(method: str) -> None:
    weigh, aliases, description = CAM_WEIGHTS[method]

    def cam_method(
        model: Model,
        inputs: torch.Tensor,
        target: torch.Tensor,
        *,
        layer: Any = None,
        reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
        runtime: Runtime = Runtime(),
    ) -> MethodResult:
        _check_image(model, inputs, method)
        name, a, g = layer_maps(model, inputs, target, layer, reshape, runtime)
        return _result(weigh(a, g), inputs, name, reshape)

    cam_method.__name__ = cam_method.__qualname__ = method
    cam_method.__doc__ = f"""{description}

    Args:
        layer: a dotted module name or a module of the network; None (default): the last
            spatial layer (a transformer: its last block's first LayerNorm), see
            ``ex.layers(model, x)``. Recorded by name in the parameters.
        reshape: for a layer whose output is neither (N, C, h, w) nor tokens on a square
            grid: a function of it returning (N, channels, h, w).

    Returns extras ``cam``: the map at the layer's resolution (N, h, w), before upsampling.
    """
    register_method(
        method, aliases=aliases, modalities=("image",), signed=False, reduction="sum",
        description=description,
    )(cam_method)  # fmt: skip


for _name in CAM_WEIGHTS:
    _register_gradient_cam(_name)


@register_method(
    "eigen_cam",
    aliases=("eigencam",),
    modalities=("image",),
    signed=False,
    reduction="sum",
)
def eigen_cam(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    layer: Any = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Eigen-CAM: the first principal component of a layer's activations (Muhammad & Yeasin 2020).

    Class-agnostic (``target`` is not used) and gradient-free: one forward. The centred
    activations (h*w, K) of each sample are projected on their first right singular
    vector; the sign is chosen so the map agrees with the summed activations; ReLU'd.
    ``layer`` and ``reshape`` as for grad_cam.
    """
    _check_image(model, inputs, "eigen_cam")
    name, a, _ = layer_maps(model, inputs, target, layer, reshape, runtime, gradients=False)
    n, k, h, w = a.shape
    flat = a.reshape(n, k, h * w).transpose(1, 2)  # (N, hw, K)
    centred = flat - flat.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None]).squeeze(2)  # (N, hw)
    total = flat.sum(2)  # (N, hw): the summed activations
    agree = (
        (projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))
    ).sum(1)
    projection = projection * torch.where(agree < 0, -1.0, 1.0).to(projection.dtype)[:, None]
    return _result(projection.reshape(n, h, w), inputs, name, reshape)


@register_method(
    "score_cam",
    aliases=("scorecam",),
    modalities=("image",),
    signed=False,
    reduction="sum",
)
def score_cam(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    layer: Any = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Score-CAM: each channel weighted by the score of the input it masks (Wang et al. 2020).

    Forward passes only: one to read the layer, then one row per channel and sample, the
    input times that channel's map (upsampled, min-max normalized to [0, 1]); its weight
    is the target's score there (the class probability, a multilabel sigmoid, a
    regression's value). Rows are batched under the memory budget. ``layer`` and
    ``reshape`` as for grad_cam. Extras: ``cam`` (N, h, w) and ``channel_scores`` (N, K).
    """
    _check_image(model, inputs, "score_cam")
    name, a, _ = layer_maps(model, inputs, target, layer, reshape, runtime, gradients=False)
    n, k = a.shape[:2]
    up = F.interpolate(a, size=inputs.shape[2:], mode="bilinear", align_corners=False)
    lo = up.amin((2, 3), keepdim=True)
    span = up.amax((2, 3), keepdim=True) - lo
    masks = torch.where(span > 0, (up - lo) / torch.where(span > 0, span, 1.0), 0.0)  # (N, K, H, W)
    request = ChunkRequest(
        extra_bytes_per_row=inputs[0].numel() * inputs.element_size(),
        backward=False,
        what=f"score_cam's masked inputs ({k} per input)",
    )
    size = chunk_size(model, inputs[0], runtime, request)
    size = min(
        size, max(1, (64 * 2**20) // max(network_cost(model, inputs[0], False, runtime).per_row, 1))
    )
    weights = torch.empty(n, k, dtype=a.dtype)
    tuning = Tuning.of(model, "forward", inputs[0], runtime)
    with progress_bar(n * k, "score_cam", runtime) as bar, torch.no_grad():
        for i in range(n):
            for part in chunks(k, size, tuning):
                m = masks[i, part, None].to(inputs.dtype)  # (k', 1, H, W)
                rows = inputs[i][None] * m  # (k', C, H, W)
                scores = model.to_scores(model.forward(rows))[:, int(target[i])]
                weights[i, part] = scores.to(a.dtype).cpu()
                bar.update(part.stop - part.start)
    cam = (weights[:, :, None, None].to(a.device) * a).sum(1)
    result = _result(cam, inputs, name, reshape)
    result.extras["channel_scores"] = weights
    return result
