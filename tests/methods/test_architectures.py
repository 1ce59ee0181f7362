"""Every registered image method on architectures nobody here wrote: HuggingFace ResNet, ViT
and ConvNeXt built from small configs with random weights (no download), wrapped as they
are (their forward returns a ModelOutput with ``.logits``).

Each run keeps the model-state contract (weights, modes, flags, hooks as they were), gives
finite attributions of the input's shape, and the complete methods add up: integrated
gradients within its quadrature error, deep_shap and kernel_shap (at full budget) to float
precision.
"""
# A finding kept here: from a zero baseline IG's gap on ConvNeXt is ~100% at any step count
# (the output is scale-invariant after the stem's LayerNorm, so f jumps at the baseline);
# explain() warns about it, as it should.

from __future__ import annotations

import pytest
import torch
from attribution_helpers import assert_same_state, make_images, model_state

import explainer as ex

transformers = pytest.importorskip("transformers")

SIZE = 32


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "resnet":
        config = transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3
        )
        return transformers.ResNetForImageClassification(config).eval()
    if kind == "vit":
        config = transformers.ViTConfig(
            image_size=SIZE, patch_size=8, hidden_size=16, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=32, num_labels=3,
        )  # fmt: skip
        return transformers.ViTForImageClassification(config).eval()
    config = transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3
    )
    return transformers.ConvNextForImageClassification(config).eval()


KINDS = ["resnet", "vit", "convnext"]
IMAGE_METHODS = [m.name for m in ex.list_methods() if "image" in m.modalities]
TRANSFORMERS_ONLY = {"attention_rollout"}  # reads attention weights: the ViT only


def params_for(method: str) -> dict:
    background = make_images(3, seed=7, shape=(3, SIZE, SIZE))
    return {
        # Not from zeros: ConvNeXt's stem LayerNorm makes f(a*x) constant for a >= 1e-4, so
        # from a zero baseline the whole change happens next to it (the gap warning says so).
        "integrated_gradients": {"n_steps": 32, "baselines": "blur"},
        "smoothgrad": {"n_samples": 4},
        "gradient_shap": {"background": background, "n_samples": 6},
        "deep_shap": {"background": background},
        "kernel_shap": {"n_segments": 6, "n_samples": 64},  # 2^6: the exact enumeration
    }.get(method, {})


@pytest.mark.parametrize(
    ("kind", "method"),
    [(k, m) for m in IMAGE_METHODS for k in KINDS if m not in TRANSFORMERS_ONLY or k == "vit"],
)
def test_every_image_method_runs_on_huggingface_vision_models(kind, method):
    net = build(kind)
    before = model_state(net)
    x = make_images(2, seed=1, shape=(3, SIZE, SIZE))
    exp = ex.explain(
        ex.wrap(net, modality="image"), x, method, target=1, progress=False, **params_for(method)
    )
    assert exp.attributions.shape == x.shape and torch.isfinite(exp.attributions).all()
    assert exp.attributions.abs().sum() > 0
    assert_same_state(before, model_state(net))
    if method in ("deep_shap", "kernel_shap"):
        assert float(exp.extras["relative_gap"].max()) < 1e-4
    if method == "integrated_gradients":
        assert float(exp.extras["relative_gap"].max()) < 0.05
