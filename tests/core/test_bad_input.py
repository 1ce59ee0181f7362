"""Bad input raises the promised ExplainerError subclass, with a message that names the
argument and says how to fix it; and the model is left as it was.

Each case of the tables below reads: what is wrong (its id), the model it is given to, the
call, the error class, and the words its message must hold (see error_checks.case).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_helpers import make_cnn, make_images, make_rows
from error_checks import CASE_FIELDS, case, check_case, explain, raises, with_nan
from torch import nn

import explainer as ex
from explainer.registry import _REGISTRY, MethodInfo

CLASSES = ["cat", "dog", "fish"]
SHAP_WITH_BACKGROUND = ["gradient_shap", "deep_shap", "kernel_shap"]


# -- inputs --------------------------------------------------------------------------------

INPUTS = [
    *(
        case(f"{name} inputs suggest nan_to_num",
             "image", explain(inputs=lambda v=v: with_nan(make_images(2), v)),
             ex.InputError, "`inputs`", "NaN/Inf", "nan_to_num")
        for name, v in [("nan", float("nan")), ("inf", float("inf")), ("-inf", -float("inf"))]
    ),
    case("one image without its batch dimension suggests unsqueeze",
         "image", explain(inputs=lambda: make_images(1)[0]),
         ex.InputError, "`inputs`", "4 dimensions", "unsqueeze(0)"),
    case("one row without its batch dimension suggests unsqueeze",
         "tabular", explain(inputs=lambda: make_rows(1)[0]),
         ex.InputError, "`inputs`", "2 dimensions", "unsqueeze(0)"),
    case("channels-last images suggest permute",
         "image", explain(inputs=lambda: make_images(2).permute(0, 2, 3, 1)),  # (N, H, W, C)
         ex.InputError, "`inputs`", "channels-last", "permute(0, 3, 1, 2)"),
    *(
        case(f"{dtype} inputs suggest float",
             "image", explain(inputs=lambda d=dtype: (make_images(2) * 255).to(d)),
             ex.InputError, "`inputs`", "floating-point", ".float()")
        for dtype in [torch.uint8, torch.int64, torch.int32]
    ),
    case("uint8 inputs are told to scale by 255",
         "image", explain(inputs=lambda: (make_images(2) * 255).to(torch.uint8)),
         ex.InputError, "uint8", "/ 255"),
    case("numpy uint8 inputs are told to scale by 255",
         "image", explain(inputs=lambda: (make_images(2).numpy() * 255).astype(np.uint8)),
         ex.InputError, "uint8", "/ 255"),
    case("an empty batch asks for a non-empty one",
         "image", explain(inputs=lambda: torch.zeros(0, 3, 16, 16)),
         ex.InputError, "`inputs`", "empty batch", "non-empty"),
    case("a string as inputs suggests torch.as_tensor", "image", explain(inputs=lambda: "an image"),
         ex.InputError, "`inputs`", "torch.as_tensor"),
]  # fmt: skip

# -- references ----------------------------------------------------------------------------

REFERENCES = [
    case("nan in the baselines", "image", explain("ig", baselines=with_nan(make_images(1)), n_steps=2),
         ex.InputError, "`baselines`", "NaN/Inf"),
    *(
        case(f"nan in the background of {method}",
             "tabular", explain(method, background=with_nan(make_rows(4))),
             ex.InputError, "`background`", "NaN/Inf")
        for method in SHAP_WITH_BACKGROUND
    ),
    case("baselines of another image size",
         "image", explain("ig", baselines=torch.zeros(1, 3, 8, 8), n_steps=2),
         ex.InputError, "`baselines`", "(B, 3, 16, 16)", "same per-sample shape"),
    *(
        case(f"background of another row width for {method}",
             "tabular", explain(method, background=torch.zeros(4, 5)),
             ex.InputError, "`background`", "(B, 6)", "same per-sample shape")
        for method in SHAP_WITH_BACKGROUND
    ),
    *(  # tabular kernel_shap has no default background either
        case(f"no background for tabular {method} says what to pass", "tabular", explain(method),
             ex.InputError, "`background`", "background=x_train")
        for method in SHAP_WITH_BACKGROUND
    ),
]  # fmt: skip

# -- target --------------------------------------------------------------------------------

TARGETS = [
    *(
        case(f"target {label} out of range suggests predicted", "image", explain(target=target),
             ex.InputError, "`target`", "[0, 3)", 'target="predicted"')
        for label, target in [("3", 3), ("-1", -1), ("list holding 7", [0, 7])]
    ),
    *(
        case(f"unknown class name as {label} lists the names", "image", explain(target=target),
             ex.InputError, "`target`", "'cow'", "Known class names", "dog")
        for label, target in [("a string", "cow"), ("a list item", ["cat", "cow"])]
    ),
    case("three targets for two samples", "image", explain(target=[0, 1, 2]),
         ex.InputError, "`target`", "one class per sample"),
    case("a float tensor target suggests long", "image", explain(target=torch.tensor([0.0, 1.0])),
         ex.InputError, "`target`", "target.long()"),
]  # fmt: skip

# -- method and parameters -----------------------------------------------------------------

BAD_OPTIONS = [
    ("ig n_steps=0", "ig", {"n_steps": 0}, ("`n_steps`", "integer >= 1")),
    ("ig rule simpson", "ig", {"rule": "simpson"}, ("`rule`", "gausslegendre")),
    ("ig baselines noise", "ig", {"baselines": "noise"}, ("`baselines`", "uniform")),
    ("smoothgrad stdev -1", "smoothgrad", {"stdev": -1.0}, ("`stdev`", "Pass e.g.")),
    ("smoothgrad base smoothgrad", "smoothgrad", {"base": "smoothgrad"}, ("`base`", 'base="saliency"')),
    ("kernel_shap fill grey", "kernel_shap", {"fill": "grey"}, ("`fill`", "mean")),
    ("kernel_shap n_samples=1", "kernel_shap", {"n_samples": 1}, ("`n_samples`", ">= 2")),
    ("kernel_shap feature_mask 5x5", "kernel_shap",
     {"feature_mask": torch.zeros(5, 5, dtype=torch.long)},
     ("`feature_mask`", "(H, W)")),
    ("kernel_shap feature_mask of floats", "kernel_shap", {"feature_mask": torch.zeros(16, 16)},
     ("`feature_mask`", "integer")),
]  # fmt: skip

OPTIONS = [
    *(
        case(f"misspelt method {name!r} suggests {suggestion!r}", "image", explain(name),
             ex.UnknownMethodError, "`method`", f"Did you mean {suggestion!r}", "ex.list_methods()")
        for name, suggestion in [
            ("integrated_gradient", "integrated_gradients"),
            ("kernelshap_", "kernelshap"),
            ("salency", "saliency"),
        ]
    ),
    case("unknown option n_step lists the accepted ones", "image", explain("ig", n_step=8),
         ex.InputError, "'n_step'", "integrated_gradients", "'n_steps'", "'baselines'", "'rule'",
         "Did you mean 'n_steps'?"),
    *(
        case(f"option {label} is refused, naming it",
             "image", explain(method, **params), ex.InputError, *words)
        for label, method, params, words in BAD_OPTIONS
    ),
    case("memory_budget lots suggests 1GB", "image", explain(memory_budget="lots"),
         ex.InputError, "`memory_budget`", 'memory_budget="1GB"'),
]  # fmt: skip

# -- the model -----------------------------------------------------------------------------


class Returns(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv, self.kind = nn.Conv2d(3, 3, 3, padding=1), kind

    def forward(self, x: torch.Tensor):
        y = self.conv(x)  # (N, 3, H, W)
        if self.kind == "tuple":  # select="auto" takes the first element: a map
            return y, y.mean((2, 3))
        if self.kind == "map":
            return y
        return y.mean((2, 3))[:1]  # wrong batch size


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

MODELS = [
    *(
        case(f"{kind} output is not (batch, classes)", lambda k=kind: ex.wrap(Returns(k)), explain(),
             ex.ModelError, "Model output", "(batch=2, classes)", "one row of class scores")
        for kind in ["tuple", "map", "batch"]  # an (N,) vector is one column (regression)
    ),
    case("3 output columns for 2 class names",
         lambda: ex.wrap(make_cnn(), class_names=["a", "b"]), explain(),
         ex.ModelError, "2 classes", "class_names"),
    case("a forward failure names the input shape",
         lambda: ex.wrap(make_cnn()), explain(inputs=lambda: torch.zeros(2, 3, 1, 1)),
         ex.ModelError, "failed on inputs of shape (2, 3, 1, 1)", "layout"),
    *(
        case(f"{how} model has no gradient path for {method}, suggests kernel_shap",
             lambda h=how: ex.wrap(Detached(h), modality="tabular"),
             explain(method, **({"background": make_rows(3)} if "shap" in method else {})),
             ex.ModelError, "no gradient path", "kernel_shap")
        for method in GRADIENT_METHODS
        for how in ["detach", "no_grad"]
    ),
]  # fmt: skip


@pytest.mark.parametrize(CASE_FIELDS, INPUTS + REFERENCES + TARGETS + OPTIONS + MODELS)
def test_bad_input_raises_its_error_naming_the_argument_and_the_fix(
    request, model, call, error, words, absent
):
    check_case(request, model, call, error, words, absent)


def test_numpy_float_input_is_accepted_as_float32(image_model):
    x = make_images(2).numpy()
    exp = ex.explain(image_model, x.astype(np.float64), "saliency", target=0, progress=False)
    assert exp.attributions.shape == x.shape and exp.inputs.dtype == torch.float32
    torch.testing.assert_close(exp.inputs, torch.from_numpy(x))


def test_model_without_a_gradient_path_still_works_with_kernel_shap():
    model = ex.wrap(Detached("no_grad"), modality="tabular")
    exp = ex.explain(model, make_rows(2), "kernel_shap", background=make_rows(3), progress=False)
    assert torch.isfinite(exp.attributions).all()


@pytest.mark.parametrize(
    ("net", "options", "pattern"),
    [
        # a function is a black box (tests/core/test_black_box.py); a name is not a network
        pytest.param("resnet18", {}, "`net`.*callable.*ex.wrap", id="a model name as the net"),
        pytest.param(nn.Linear(2, 2), {"input": "numpy"}, "`input`.*tensor",
                     id="numpy input for a module"),
        pytest.param(lambda x: x, {"input": "list"}, "`input`.*numpy", id="input list"),
        pytest.param(nn.Linear(2, 2), {"task": "ranking"}, "`task`.*regression", id="task ranking"),
        pytest.param(nn.Linear(2, 2), {"select": 1.5}, "`select`.*key", id="select a float"),
        pytest.param(nn.Linear(2, 2), {"modality": "audio"}, "`modality`.*text", id="modality audio"),
        pytest.param(nn.Linear(2, 2), {"output": "logprobs"}, "`output`.*probabilities",
                     id="output logprobs"),
        pytest.param(nn.Linear(2, 2), {"class_names": ["a", "a"]}, "`class_names`.*distinct",
                     id="repeated class names"),
    ],
)  # fmt: skip
def test_wrap_refuses_what_is_not_a_module_or_a_known_option(net, options, pattern):
    with pytest.raises(ex.InputError, match=pattern):
        ex.wrap(net, **options)


def test_method_for_another_modality_raises_input_error(image_model):
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
