"""Attributions to a layer's activations: which channels and positions of a block carry
the decision.

* ``layer_gradient_x_activation``: A * dy/dA at the layer (captum's
  LayerGradientXActivation).
* ``layer_integrated_gradients``: integrated gradients along the straight line from the
  layer's activations at the baseline input to those at the input (captum's
  LayerIntegratedGradients). The network is run on the input with the layer's output
  *replaced* by each path point (:class:`explainer.model_layers.LayerCapture` with
  ``replace``), so the path integral is the one of integrated gradients, computed by its
  engine (quadrature, chunks, the completeness gap) on a model whose input is the layer.
  Its sum is f(x) - f(x with the layer at its baseline activations), which is
  f(x) - f(baseline) when everything after the layer depends on the input through it.

Both keep the attributions in the layer's own shape in ``extras["layer_attributions"]``
and summarise them: per channel (``per_channel``, summed over positions) and per position
(``spatial``, summed over channels; tokens folded to their grid, the class token left
out). The attributions shaped like the input are the per-position map upsampled to the
image, spread evenly over its channels (signed), so the heatmap, the report and the trust
metrics read them like any image map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._runtime import Runtime
from ..errors import InputError, describe
from ..model import Model
from ..model_layers import LayerCapture, as_grid, resolve_layer
from ..registry import MethodResult, register_method
from .cam import layer_activations, to_input_size
from .integrated_gradients import integrated_gradients
from .references import make_baselines

__all__ = ["layer_gradient_x_activation", "layer_integrated_gradients"]


def _token_shape(model: Model) -> tuple[int, ...] | None:
    """(tokens, dim) when the rows are one packed (tokens, dim) input (a text model's
    embeddings), else None."""
    layout = model.layout
    if layout is not None and len(layout) == 1 and len(layout.shapes[0]) == 2:
        return layout.shapes[0]
    return None


def _layer_for(model: Model, inputs: torch.Tensor, layer: Any, method: str) -> Any:
    """Check the inputs (an image batch, or a text model's embeddings) and the layer: a
    text model's layer must be named (a block whose output has a row per token); a name
    given as in the user's network is found in the wrapper that runs its embeddings."""
    if _token_shape(model) is None:
        if inputs.ndim != 4 or model.layout is not None:
            raise InputError(
                describe(
                    "`method`",
                    "an image model (N, C, H, W) or a text model (modality='text') for a layer "
                    "method",
                    f"{method} on inputs of shape {tuple(inputs.shape)}",
                    "Explain the inputs with integrated_gradients, or wrap a text model with "
                    "modality='text' and name a block with layer=.",
                )
            )
        return layer
    if layer is None:
        raise InputError(
            describe(
                "`layer`",
                "the block to explain, for a text model (its output has a row per token)",
                "None",
                "Name it, e.g. layer='bert.encoder.layer.1' (see ex.layers(model.net, ids)).",
            )
        )
    names = dict(model.net.named_modules())
    if isinstance(layer, str) and layer not in names and f"net.{layer}" in names:
        return f"net.{layer}"  # the text wrapper holds the user's network as .net
    return layer


def _summarised(
    attr: torch.Tensor,
    inputs: torch.Tensor,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None,
    extras: dict[str, Any],
    params: dict[str, Any],
    tokens: tuple[int, ...] | None = None,
) -> MethodResult:
    """Layer attributions (N, ...) -> a result: input-shaped map and the summaries (per
    token for a text model's block: attributions spread over each token's embedding)."""
    if tokens is not None:
        length, dim = tokens
        if attr.ndim != 3 or attr.shape[1] != length:
            raise InputError(
                describe(
                    f"Layer {params['layer']!r}",
                    f"an output with one row per token (N, {length}, features)",
                    f"shape {tuple(attr.shape)}",
                    "Choose a block of the encoder (its output is the token sequence).",
                )
            )
        position = attr.sum(-1)  # (N, L)
        extras = {
            **extras,
            "layer_attributions": attr.cpu(),
            "per_channel": attr.sum(1).cpu(),
            "spatial": position.cpu(),
        }
        spread = (position / dim)[..., None].expand(len(attr), length, dim).reshape(len(attr), -1)
        return MethodResult(spread.to(inputs.dtype), extras=extras, params=params)
    grid = as_grid(attr, reshape)  # (N, K, h, w)
    spatial = grid.sum(1)
    extras = {
        **extras,
        "layer_attributions": attr.cpu(),
        "per_channel": grid.sum((2, 3)).cpu(),
        "spatial": spatial.cpu(),
    }
    return MethodResult(to_input_size(spatial, inputs), extras=extras, params=params)


@register_method(
    "layer_gradient_x_activation", aliases=("layer_gxa",), modalities=("image", "text")
)
def layer_gradient_x_activation(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    layer: Any = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Activation times gradient at a layer: each channel's and position's share of the decision.

    Args:
        layer: a dotted module name or a module; None: the default CAM layer (see
            ``ex.layers(model, x)``). Recorded by name.
        reshape: for a layer whose output is neither (N, C, h, w) nor tokens on a square
            grid: a function returning (N, channels, h, w).

    Returns extras ``layer_attributions`` (the layer's shape), ``per_channel`` (N, K) and
    ``spatial`` (N, h, w); the attributions are ``spatial`` upsampled to the input.
    """
    layer = _layer_for(model, inputs, layer, "layer_gradient_x_activation")
    name, a, g = layer_activations(model, inputs, target, layer, runtime)
    params = {"layer": name, "reshape": None if reshape is None else "given"}
    return _summarised(a * g, inputs, reshape, {}, params, _token_shape(model))


class _PatchedNetwork(nn.Module):
    """The network run on one sample's input with a layer's output replaced by the rows it
    is given: a function of the layer's activations (N, ...) for integrated gradients."""

    def __init__(self, model: Model, layer: str) -> None:
        super().__init__()
        self.inner = model  # called as the user's model is (outputs, forward arguments)
        self.net = model.net  # registered: parameters, eval mode and fingerprint are its
        self.layer = layer
        self.sample: torch.Tensor | None = None  # (1, ...): the input being explained

    def forward(self, activations: torch.Tensor) -> Any:
        rows = self.sample.expand(len(activations), *self.sample.shape[1:])
        with LayerCapture(self.net, self.layer, replace=lambda _: activations):
            return self.inner.call_network(rows)


@register_method(
    "layer_integrated_gradients",
    aliases=("layer_ig",),
    modalities=("image", "text"),
)
def layer_integrated_gradients(
    model: Model,
    inputs: torch.Tensor,
    target: torch.Tensor,
    *,
    layer: Any = None,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    baselines: Any = "zeros",
    n_steps: int = 64,
    rule: str = "gausslegendre",
    runtime: Runtime = Runtime(),
) -> MethodResult:
    """Integrated gradients at a layer, from its activations at the baseline input (Sundararajan et al. 2017).

    Args:
        layer, reshape: as for layer_gradient_x_activation.
        baselines: the *input* baseline ("zeros", "blur", "uniform", a number or a tensor
            of 1 or N inputs); the path starts at the layer's activations there.
        n_steps, rule: the quadrature, as for integrated_gradients.

    Returns the extras of layer_gradient_x_activation and ``convergence_delta`` (per
    sample: sum of the layer attributions - (f(x) - f(x with the layer at its baseline
    activations)); ``ex.explain`` adds ``relative_gap`` and warns above 1%).
    """
    layer = _layer_for(model, inputs, layer, "layer_integrated_gradients")
    name = resolve_layer(model.net, layer, lambda: model.forward(inputs[:1]))
    b = make_baselines(model, inputs, baselines, seed=0).expand_as(inputs)
    _, a_x, _ = layer_activations(model, inputs, target, name, runtime, gradients=False)
    _, a_b, _ = layer_activations(model, b, target, name, runtime, gradients=False)
    attrs, deltas = [], []
    network = _PatchedNetwork(model, name)  # one module: measured costs are reused
    patched = model.with_network(network).calling(None, None)  # it calls the model itself
    for i in range(len(inputs)):
        network.sample = inputs[i : i + 1]
        result = integrated_gradients(
            patched,
            a_x[i : i + 1].to(inputs.dtype),
            target[i : i + 1],
            baselines=a_b[i : i + 1].to(inputs.dtype),
            n_steps=n_steps,
            rule=rule,
            runtime=runtime.reserve(0, progress=False),
        )
        attrs.append(result.attributions)
        deltas.append(result.extras["convergence_delta"])
    params = {
        "layer": name,
        "reshape": None if reshape is None else "given",
        "baselines": baselines
        if isinstance(baselines, str | int | float)
        else f"tensor{tuple(b.shape)}",
        "n_steps": n_steps,
        "rule": rule,
    }
    extras = {"convergence_delta": torch.cat(deltas)}
    return _summarised(torch.cat(attrs), inputs, reshape, extras, params, _token_shape(model))
