"""Bad input raises the promised ExplainerError subclass, with a message that names the
argument and says how to fix it; and the model is left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_helpers import (
    assert_same_state,
    make_cnn,
    make_images,
    make_rows,
    model_state,
)
from torch import nn

import explainer as ex

CLASSES = ["cat", "dog", "fish"]


@pytest.fixture
def image_model(cnn):
    cnn.train()  # the caller's mode, which must survive every error
    return ex.wrap(cnn, modality="image", class_names=CLASSES)


@pytest.fixture
def tabular_model(mlp):
    return ex.wrap(mlp, modality="tabular", class_names=CLASSES)


def raises(error, *keywords, model, call):
    """Run ``call``; check the error type, that the message holds every keyword, and the model state."""
    before = model_state(model.net)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in keywords:
        assert word in message, f"{word!r} not in message: {message}"
    assert isinstance(info.value, ex.ExplainerError)
    assert_same_state(before, model_state(model.net))
    return info.value


def with_nan(t: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[3] = value
    return t


# -- inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_raise_input_error(image_model, value):
    err = raises(
        ex.InputError,
        "`inputs`",
        "NaN/Inf",
        "nan_to_num",
        model=image_model,
        call=lambda: ex.explain(
            image_model, with_nan(make_images(2), value), "saliency", progress=False
        ),
    )
    assert isinstance(err, ValueError)


def test_missing_batch_dimension_raises_input_error_suggesting_unsqueeze(image_model):
    raises(
        ex.InputError,
        "`inputs`",
        "4 dimensions",
        "unsqueeze(0)",
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(1)[0], "saliency", progress=False),
    )


def test_missing_batch_dimension_on_tabular_raises_input_error(tabular_model):
    raises(
        ex.InputError,
        "`inputs`",
        "2 dimensions",
        "unsqueeze(0)",
        model=tabular_model,
        call=lambda: ex.explain(tabular_model, make_rows(1)[0], "saliency", progress=False),
    )


def test_channels_last_input_raises_input_error_suggesting_permute(image_model):
    x = make_images(2).permute(0, 2, 3, 1)  # (N, H, W, C)
    raises(
        ex.InputError,
        "`inputs`",
        "channels-last",
        "permute(0, 3, 1, 2)",
        model=image_model,
        call=lambda: ex.explain(image_model, x, "saliency", progress=False),
    )


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.int32])
def test_integer_inputs_raise_input_error_suggesting_float(image_model, dtype):
    x = (make_images(2) * 255).to(dtype)
    raises(
        ex.InputError,
        "`inputs`",
        "floating-point",
        ".float()",
        model=image_model,
        call=lambda: ex.explain(image_model, x, "saliency", progress=False),
    )


def test_uint8_message_says_to_scale(image_model):
    x = (make_images(2) * 255).to(torch.uint8)
    raises(
        ex.InputError,
        "uint8",
        "/ 255",
        model=image_model,
        call=lambda: ex.explain(image_model, x, "saliency", progress=False),
    )


def test_empty_batch_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`inputs`",
        "empty batch",
        "non-empty",
        model=image_model,
        call=lambda: ex.explain(image_model, torch.zeros(0, 3, 16, 16), "saliency", progress=False),
    )


def test_numpy_float_input_is_accepted_and_numpy_uint8_is_refused(image_model):
    x = make_images(2).numpy()
    exp = ex.explain(image_model, x.astype(np.float64), "saliency", target=0, progress=False)
    assert exp.attributions.shape == x.shape and exp.inputs.dtype == torch.float32
    torch.testing.assert_close(exp.inputs, torch.from_numpy(x))
    raises(
        ex.InputError,
        "uint8",
        "/ 255",
        model=image_model,
        call=lambda: ex.explain(
            image_model, (x * 255).astype(np.uint8), "saliency", progress=False
        ),
    )


def test_non_array_input_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`inputs`",
        "torch.as_tensor",
        model=image_model,
        call=lambda: ex.explain(image_model, "an image", "saliency", progress=False),
    )


# -- references ----------------------------------------------------------------------------


def test_nan_in_baselines_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`baselines`",
        "NaN/Inf",
        model=image_model,
        call=lambda: ex.explain(
            image_model,
            make_images(2),
            "ig",
            baselines=with_nan(make_images(1)),
            n_steps=2,
            progress=False,
        ),
    )


@pytest.mark.parametrize("method", ["gradient_shap", "deep_shap", "kernel_shap"])
def test_nan_in_background_raises_input_error(tabular_model, method):
    raises(
        ex.InputError,
        "`background`",
        "NaN/Inf",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model, make_rows(2), method, background=with_nan(make_rows(4)), progress=False
        ),
    )


def test_baselines_of_the_wrong_shape_raise_input_error(image_model):
    raises(
        ex.InputError,
        "`baselines`",
        "(B, 3, 16, 16)",
        "same per-sample shape",
        model=image_model,
        call=lambda: ex.explain(
            image_model,
            make_images(2),
            "ig",
            baselines=torch.zeros(1, 3, 8, 8),
            n_steps=2,
            progress=False,
        ),
    )


@pytest.mark.parametrize("method", ["gradient_shap", "deep_shap", "kernel_shap"])
def test_background_of_the_wrong_shape_raises_input_error(tabular_model, method):
    raises(
        ex.InputError,
        "`background`",
        "(B, 6)",
        "same per-sample shape",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model, make_rows(2), method, background=torch.zeros(4, 5), progress=False
        ),
    )


@pytest.mark.parametrize("method", ["gradient_shap", "deep_shap"])
def test_missing_background_raises_input_error_saying_what_to_pass(tabular_model, method):
    raises(
        ex.InputError,
        "`background`",
        "background=x_train",
        model=tabular_model,
        call=lambda: ex.explain(tabular_model, make_rows(2), method, progress=False),
    )


def test_tabular_kernel_shap_without_background_raises_input_error(tabular_model):
    raises(
        ex.InputError,
        "`background`",
        "background=x_train",
        model=tabular_model,
        call=lambda: ex.explain(tabular_model, make_rows(2), "kernel_shap", progress=False),
    )


# -- target --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [3, -1, [0, 7]])
def test_target_out_of_range_raises_input_error(image_model, target):
    raises(
        ex.InputError,
        "`target`",
        "[0, 3)",
        'target="predicted"',
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=target, progress=False
        ),
    )


@pytest.mark.parametrize("target", ["cow", ["cat", "cow"]])
def test_unknown_class_name_raises_input_error_listing_the_names(image_model, target):
    raises(
        ex.InputError,
        "`target`",
        "'cow'",
        "Known class names",
        "dog",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=target, progress=False
        ),
    )


def test_wrong_number_of_targets_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`target`",
        "one class per sample",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=[0, 1, 2], progress=False
        ),
    )


def test_float_target_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`target`",
        "target.long()",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=torch.tensor([0.0, 1.0]), progress=False
        ),
    )


# -- method and parameters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("integrated_gradient", "integrated_gradients"),
        ("kernelshap_", "kernelshap"),
        ("salency", "saliency"),
    ],
)
def test_unknown_method_raises_unknown_method_error_suggesting_the_closest_name(
    image_model, name, suggestion
):
    err = raises(
        ex.UnknownMethodError,
        "`method`",
        f"Did you mean {suggestion!r}",
        "ex.list_methods()",
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(2), name, progress=False),
    )
    assert isinstance(err, KeyError)
    assert not str(err).startswith("'"), "the message must not be quoted like a bare KeyError"


def test_unknown_parameter_raises_input_error_listing_the_accepted_ones(image_model):
    raises(
        ex.InputError,
        "'n_step'",
        "integrated_gradients",
        "'n_steps'",
        "'baselines'",
        "'rule'",
        "Did you mean 'n_steps'?",
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(2), "ig", n_step=8, progress=False),
    )


@pytest.mark.parametrize(
    ("method", "params", "keywords"),
    [
        ("ig", {"n_steps": 0}, ("`n_steps`", "integer >= 1")),
        ("ig", {"rule": "simpson"}, ("`rule`", "gausslegendre")),
        ("ig", {"baselines": "noise"}, ("`baselines`", "uniform")),
        ("smoothgrad", {"stdev": -1.0}, ("`stdev`", "Pass e.g.")),
        ("smoothgrad", {"base": "smoothgrad"}, ("`base`", 'base="saliency"')),
        ("kernel_shap", {"fill": "grey"}, ("`fill`", "mean")),
        ("kernel_shap", {"n_samples": 1}, ("`n_samples`", ">= 2")),
        (
            "kernel_shap",
            {"feature_mask": torch.zeros(5, 5, dtype=torch.long)},
            ("`feature_mask`", "(H, W)"),
        ),
        ("kernel_shap", {"feature_mask": torch.zeros(16, 16)}, ("`feature_mask`", "integer")),
    ],
)
def test_bad_method_options_raise_input_error_naming_the_option(
    image_model, method, params, keywords
):
    raises(
        ex.InputError,
        *keywords,
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(2), method, progress=False, **params),
    )


def test_bad_memory_budget_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`memory_budget`",
        'memory_budget="1GB"',
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", memory_budget="lots", progress=False
        ),
    )


# -- the model -----------------------------------------------------------------------------


class Returns(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv, self.kind = nn.Conv2d(3, 3, 3, padding=1), kind

    def forward(self, x: torch.Tensor):
        y = self.conv(x)  # (N, 3, H, W)
        if self.kind == "vector":
            return y.mean((1, 2, 3))  # (N,)
        if self.kind == "tuple":
            return y.mean((2, 3)), y
        if self.kind == "map":
            return y
        return y.mean((2, 3))[:1]  # wrong batch size


@pytest.mark.parametrize("kind", ["vector", "tuple", "map", "batch"])
def test_model_output_that_is_not_batch_by_classes_raises_model_error(kind):
    model = ex.wrap(Returns(kind))
    err = raises(
        ex.ModelError,
        "Model output",
        "(batch=2, classes)",
        "one row of class scores",
        model=model,
        call=lambda: ex.explain(model, make_images(2), "saliency", progress=False),
    )
    assert isinstance(err, RuntimeError)


def test_output_width_not_matching_class_names_raises_model_error():
    model = ex.wrap(make_cnn(), class_names=["a", "b"])
    raises(
        ex.ModelError,
        "2 classes",
        "class_names",
        model=model,
        call=lambda: ex.explain(model, make_images(2), "saliency", progress=False),
    )


def test_forward_failure_raises_model_error_about_the_input_shape():
    model = ex.wrap(make_cnn())
    raises(
        ex.ModelError,
        "failed on inputs of shape (2, 3, 1, 1)",
        "layout",
        model=model,
        call=lambda: ex.explain(model, torch.zeros(2, 3, 1, 1), "saliency", progress=False),
    )


class Detached(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.linear, self.how = nn.Linear(6, 3), how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "detach":
            return self.linear(x.detach())
        with torch.no_grad():
            return self.linear(x)


GRADIENT_METHODS = [
    "saliency",
    "gradient_x_input",
    "integrated_gradients",
    "smoothgrad",
    "gradient_shap",
    "deep_shap",
]


@pytest.mark.parametrize("how", ["detach", "no_grad"])
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_model_without_a_gradient_path_raises_model_error_for_gradient_methods(method, how):
    model = ex.wrap(Detached(how), modality="tabular")
    params = {"background": make_rows(3)} if "shap" in method else {}
    raises(
        ex.ModelError,
        "no gradient path",
        "kernel_shap",
        model=model,
        call=lambda: ex.explain(model, make_rows(2), method, progress=False, **params),
    )


def test_model_without_a_gradient_path_still_works_with_kernel_shap():
    model = ex.wrap(Detached("no_grad"), modality="tabular")
    exp = ex.explain(model, make_rows(2), "kernel_shap", background=make_rows(3), progress=False)
    assert torch.isfinite(exp.attributions).all()


def test_wrap_refuses_what_is_not_a_module_or_a_known_option():
    with pytest.raises(ex.InputError, match="`net`.*ex.wrap"):
        ex.wrap(lambda x: x)
    with pytest.raises(ex.InputError, match="`modality`.*tabular"):
        ex.wrap(nn.Linear(2, 2), modality="text")
    with pytest.raises(ex.InputError, match="`output`.*probabilities"):
        ex.wrap(nn.Linear(2, 2), output="logprobs")
    with pytest.raises(ex.InputError, match="`class_names`.*distinct"):
        ex.wrap(nn.Linear(2, 2), class_names=["a", "a"])


def test_method_for_another_modality_raises_input_error(image_model):
    from explainer.registry import _REGISTRY, MethodInfo

    info = _REGISTRY["saliency"]
    _REGISTRY["tabular_only"] = MethodInfo(
        "tabular_only", info.func, (), ("tabular",), "test", info.defaults
    )
    try:
        raises(
            ex.InputError,
            "`method`",
            "image",
            "ex.list_methods()",
            model=image_model,
            call=lambda: ex.explain(image_model, make_images(2), "tabular_only", progress=False),
        )
    finally:
        del _REGISTRY["tabular_only"]
