"""Attributions to a layer's activations, against captum's LayerIntegratedGradients and
LayerGradientXActivation, and their completeness at the layer."""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import make_images
from test_cam import DeepHead, hf_model

import explainer as ex

captum = pytest.importorskip("captum.attr")


def test_layer_gradient_x_activation_equals_captums():
    net = DeepHead().eval()
    x = make_images(3, seed=2, shape=(3, 6, 6))
    exp = ex.explain(ex.wrap(net), x, "layer_gradient_x_activation", target=1,
                     layer="features", progress=False)  # fmt: skip
    theirs = captum.LayerGradientXActivation(net, net.features).attribute(x, target=1)
    torch.testing.assert_close(
        exp.extras["layer_attributions"], theirs.detach(), atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(
        exp.extras["per_channel"], theirs.detach().sum((2, 3)), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(exp.attributions.sum(1).mean((1, 2)) * 36, exp.extras["spatial"].sum((1, 2)),
                               atol=1e-5, rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("baselines", ["zeros", "blur"])
def test_layer_integrated_gradients_equals_captums_at_equal_steps(baselines):
    net = DeepHead().eval()
    x = make_images(3, seed=3, shape=(3, 6, 6))
    exp = ex.explain(ex.wrap(net), x, "layer_integrated_gradients", target=0, layer="features",
                     baselines=baselines, n_steps=32, progress=False)  # fmt: skip
    from explainer.methods.references import gaussian_blur

    b = torch.zeros_like(x) if baselines == "zeros" else gaussian_blur(x, sigma=6 / 8)
    theirs = captum.LayerIntegratedGradients(net, net.features).attribute(
        x, baselines=b, target=0, n_steps=32, method="gausslegendre"
    )
    torch.testing.assert_close(
        exp.extras["layer_attributions"], theirs.detach(), atol=1e-5, rtol=1e-5
    )


def test_layer_integrated_gradients_adds_up_to_the_output_change_at_the_layer():
    net = DeepHead().eval()
    x = make_images(2, seed=4, shape=(3, 6, 6))
    exp = ex.explain(
        ex.wrap(net), x, "layer_ig", target=1, layer="mix", n_steps=256, progress=False
    )
    with torch.no_grad():
        change = net(x)[:, 1] - net(torch.zeros_like(x))[:, 1]
    total = exp.extras["layer_attributions"].flatten(1).sum(1)
    torch.testing.assert_close(total, change, atol=2e-4 * change.abs().max().item(), rtol=0)
    assert (exp.extras["relative_gap"] < 0.01).all()


@pytest.mark.parametrize("kind", ["resnet", "vit"])
@pytest.mark.parametrize("method", ["layer_gradient_x_activation", "layer_integrated_gradients"])
def test_layer_methods_run_on_huggingface_models(kind, method):
    net = hf_model(kind)
    x = make_images(2, seed=5, shape=(3, 32, 32))
    params = {"n_steps": 16} if method == "layer_integrated_gradients" else {}
    exp = ex.explain(ex.wrap(net), x, method, progress=False, **params)
    assert exp.attributions.shape == x.shape and torch.isfinite(exp.attributions).all()
    assert exp.extras["spatial"].shape[1:] == (4, 4)
    k = exp.extras["per_channel"].shape[1]
    assert k == (16 if kind == "resnet" else 16)
