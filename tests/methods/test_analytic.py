"""Analytic truths on a linear model f(x) = W x + b (tabular, and Flatten + Linear on images).

For a linear model every path method and every SHAP variant has a closed form:
IG with baseline r = (x - r) * w, gradient x input = x * w, saliency = |w|, and
SHAP = (x - E[background]) * w, where w is the target's row of W shaped like one input.
"""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import N_FEATURES, make_images, make_linear, make_linear_image, make_rows

import explainer as ex

TOL = {"rtol": 1e-4, "atol": 1e-5}
SMALL_IMAGE = (3, 4, 4)  # for kernel_shap with one feature per input element


def weights_for(
    net: torch.nn.Module, targets: torch.Tensor, sample_shape: tuple[int, ...]
) -> torch.Tensor:
    """Row of W of each sample's target, shaped like one input: (N, *sample_shape)."""
    linear = net if isinstance(net, torch.nn.Linear) else net[-1]
    return linear.weight.detach()[targets].reshape(len(targets), *sample_shape)


def case(modality: str):
    """(model, inputs, background, w) with targets [0, 1, 2, 0]."""
    targets = torch.tensor([0, 1, 2, 0])
    if modality == "tabular":
        net, x, bg = make_linear(), make_rows(4), make_rows(5, seed=9)
        model = ex.wrap(net, modality="tabular")
    else:
        net, x, bg = make_linear_image(), make_images(4), make_images(5, seed=9)
        model = ex.wrap(net, modality="image")
    return model, x, bg, targets, weights_for(net, targets, tuple(x.shape[1:]))


MODALITIES = ["tabular", "image"]


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize(
    ("rule", "n_steps"),
    [
        ("gausslegendre", 1),
        ("gausslegendre", 7),
        ("gausslegendre", 64),
        ("riemann_middle", 1),
        ("riemann_middle", 7),
        ("riemann_middle", 64),
        ("riemann_trapezoid", 2),
        ("riemann_trapezoid", 7),
        ("riemann_trapezoid", 64),
        ("riemann_left", 7),
        ("riemann_right", 7),
    ],
)
def test_ig_equals_input_times_weight_for_linear_model(modality, rule, n_steps):
    model, x, _, targets, w = case(modality)
    exp = ex.explain(
        model, x, "integrated_gradients", target=targets, n_steps=n_steps, rule=rule, progress=False
    )
    torch.testing.assert_close(exp.attributions, x * w, **TOL)
    # Weights that sum to 1 make completeness exact for a linear model, whatever the rule.
    assert exp.extras["convergence_delta"].abs().max() < 1e-4
    assert exp.params["rule"] == rule and exp.params["n_steps"] == n_steps


def test_trapezoid_rule_needs_two_steps():
    model, x, _, targets, _ = case("tabular")
    with pytest.raises(ex.InputError, match="n_steps"):
        ex.explain(
            model, x, "ig", target=targets, n_steps=1, rule="riemann_trapezoid", progress=False
        )


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_ig_with_a_tensor_baseline_equals_input_minus_baseline_times_weight(modality, per_sample):
    model, x, bg, targets, w = case(modality)
    baseline = bg[:4] if per_sample else bg[0]
    exp = ex.explain(
        model,
        x,
        "integrated_gradients",
        target=targets,
        baselines=baseline,
        n_steps=5,
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, (x - baseline) * w, **TOL)


@pytest.mark.parametrize("modality", MODALITIES)
def test_ig_with_a_constant_baseline_equals_input_minus_constant_times_weight(modality):
    model, x, _, targets, w = case(modality)
    exp = ex.explain(
        model, x, "integrated_gradients", target=targets, baselines=0.5, n_steps=3, progress=False
    )
    torch.testing.assert_close(exp.attributions, (x - 0.5) * w, **TOL)


@pytest.mark.parametrize("modality", MODALITIES)
def test_gradient_x_input_equals_input_times_weight(modality):
    model, x, _, targets, w = case(modality)
    exp = ex.explain(model, x, "gradient_x_input", target=targets, progress=False)
    torch.testing.assert_close(exp.attributions, x * w, **TOL)


@pytest.mark.parametrize("modality", MODALITIES)
def test_saliency_equals_absolute_weight_and_signed_saliency_equals_weight(modality):
    model, x, _, targets, w = case(modality)
    absolute = ex.explain(model, x, "saliency", target=targets, progress=False)
    signed = ex.explain(model, x, "saliency", target=targets, absolute=False, progress=False)
    torch.testing.assert_close(absolute.attributions, w.abs(), **TOL)
    torch.testing.assert_close(signed.attributions, w, **TOL)
    assert (signed.attributions < 0).any(), "the weights have both signs, so must signed saliency"


@pytest.mark.parametrize("modality", MODALITIES)
def test_smoothgrad_of_a_linear_model_equals_its_gradient(modality):
    model, x, _, targets, w = case(modality)
    exp = ex.explain(
        model,
        x,
        "smoothgrad",
        target=targets,
        n_samples=3,
        base_params={"absolute": False},
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, w, **TOL)


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("multiple", [1, 3])
def test_gradient_shap_equals_input_minus_background_mean_times_weight(modality, multiple):
    model, x, bg, targets, w = case(modality)
    exp = ex.explain(
        model,
        x,
        "gradient_shap",
        target=targets,
        background=bg,
        n_samples=multiple * len(bg),
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, (x - bg.mean(0)) * w, **TOL)
    assert exp.extras["convergence_delta"].abs().max() < 1e-4


@pytest.mark.parametrize("modality", MODALITIES)
def test_deep_shap_equals_input_minus_background_mean_times_weight(modality):
    model, x, bg, targets, w = case(modality)
    exp = ex.explain(model, x, "deep_shap", target=targets, background=bg, progress=False)
    torch.testing.assert_close(exp.attributions, (x - bg.mean(0)) * w, **TOL)
    assert exp.extras["convergence_delta"].abs().max() < 1e-4


# M = 6 columns, 2^M = 64: 14 enumerates sizes 1 and 5, 24 and 40 sample the rest, 64 is exact.
@pytest.mark.parametrize("n_samples", [14, 24, 40, 64])
@pytest.mark.parametrize("seed", [0, 1])
def test_tabular_kernel_shap_equals_input_minus_background_mean_times_weight(n_samples, seed):
    assert N_FEATURES == 6
    model, x, bg, targets, w = case("tabular")
    exp = ex.explain(
        model,
        x,
        "kernel_shap",
        target=targets,
        background=bg,
        n_samples=n_samples,
        seed=seed,
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, (x - bg.mean(0)) * w, **TOL)
    torch.testing.assert_close(exp.extras["feature_values"].float(), (x - bg.mean(0)) * w, **TOL)


def small_linear_image_case():
    net = make_linear_image(shape=SMALL_IMAGE)
    x, bg = make_images(2, shape=SMALL_IMAGE), make_images(3, seed=9, shape=SMALL_IMAGE)
    targets = torch.tensor([1, 2])
    return ex.wrap(net, modality="image"), x, bg, targets, weights_for(net, targets, SMALL_IMAGE)


def test_image_kernel_shap_with_one_feature_per_element_equals_input_minus_background_mean_times_weight():
    model, x, bg, targets, w = small_linear_image_case()
    mask = torch.arange(x[0].numel()).reshape(SMALL_IMAGE)  # group size 1: density = phi
    m = mask.numel()
    exp = ex.explain(
        model,
        x,
        "kernel_shap",
        target=targets,
        background=bg,
        feature_mask=mask,
        n_samples=2 * m + 2,
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, (x - bg.mean(0)) * w, **TOL)


def test_image_kernel_shap_with_per_pixel_mask_spreads_each_pixels_value_over_its_channels():
    model, x, bg, targets, w = small_linear_image_case()
    h, wd = SMALL_IMAGE[1:]
    mask = torch.arange(h * wd).reshape(h, wd)  # (H, W): one feature per pixel, 3 channels each
    exp = ex.explain(
        model,
        x,
        "kernel_shap",
        target=targets,
        background=bg,
        feature_mask=mask,
        n_samples=2 * h * wd + 2,
        progress=False,
    )
    pixel_phi = ((x - bg.mean(0)) * w).sum(1, keepdim=True)  # (N, 1, H, W)
    torch.testing.assert_close(exp.attributions, (pixel_phi / 3).expand_as(x), **TOL)


def test_image_kernel_shap_with_zero_fill_equals_input_times_weight():
    model, x, _, targets, w = small_linear_image_case()
    mask = torch.arange(x[0].numel()).reshape(SMALL_IMAGE)
    exp = ex.explain(
        model,
        x,
        "kernel_shap",
        target=targets,
        fill="zeros",
        feature_mask=mask,
        n_samples=2 * mask.numel() + 2,
        progress=False,
    )
    torch.testing.assert_close(exp.attributions, x * w, **TOL)
