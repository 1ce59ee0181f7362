"""Bad input at the entry points (explain, explain_many, evaluate, wrap, load_explanation)
raises a clear ExplainerError, never a bare torch/numpy/json exception, never a silently
wrong result; and the model is left as it was.

Cases from the security issue: non-finite values (A), uncaught exceptions (B), silently
wrong results (C) and unclear messages (D). The cases of one shape (a call that must raise
an error whose message holds given words) are rows of the tables below (see
error_checks.case); the rest are tests of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from attribution_helpers import make_cnn, make_images, make_linear, make_rows
from error_checks import CASE_FIELDS, case, check_case, explain, with_nan
from torch import nn

import explainer as ex
from explainer._runtime import parse_bytes

CLASSES = ["cat", "dog", "fish"]


def tabular_background() -> torch.Tensor:
    return make_rows(4, seed=7)


def shap_background(method: str) -> dict:
    """The background a SHAP method needs on tabular data; nothing for the others."""
    return {"background": tabular_background()} if "shap" in method else {}


def explained(model: ex.Model) -> ex.Explanation:
    """Saliency of two images for target 0: what the evaluate rows score."""
    return ex.explain(model, make_images(2), "saliency", target=0, progress=False)


def evaluate(exp=explained, *, inference_mode: bool = False, **options):
    """A row's ``call``: ex.evaluate of ``exp(model)`` (default: the saliency above), made
    before, and outside, the inference mode that ``inference_mode=True`` evaluates under."""

    def call(model: ex.Model):
        explanation = exp(model)
        with torch.inference_mode() if inference_mode else contextlib.nullcontext():
            return ex.evaluate(explanation, model, **options)

    return call


def with_nan_attributions(model: ex.Model) -> ex.Explanation:
    exp = explained(model)
    return dataclasses.replace(exp, attributions=with_nan(exp.attributions))


def under_inference_mode(call):
    """``call``, run inside torch.inference_mode()."""

    def inside(model: ex.Model):
        with torch.inference_mode():
            return call(model)

    return inside


# -- A. non-finite values ------------------------------------------------------------------


class NonFinite(nn.Module):
    """A tabular model that is NaN everywhere ("always"), or +Inf only at the all-zero input
    ("at_zero": fine on the inputs, broken at the zero baseline)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.linear, self.where = nn.Linear(6, 3), where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if self.where == "always":
            return y * float("nan")
        at_zero = x.abs().sum(1, keepdim=True) == 0
        return y + torch.where(at_zero, float("inf"), 0.0)


class SqrtNorm(nn.Module):
    """f(x) = linear(x) * ||x||: finite everywhere, but its gradient at x = 0 is 0/0 = NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * (x**2).sum(1, keepdim=True).sqrt()


NON_FINITE = [
    *(
        case(f"nan outputs of the model for {method}",
             lambda: ex.wrap(NonFinite("always").train(), modality="tabular"),
             explain(method, target=0, **shap_background(method)),
             ex.ModelError, "Model output", "finite class scores", "NaN/Inf")
        for method in ["saliency", "integrated_gradients", "gradient_shap", "deep_shap", "kernel_shap"]
    ),
    case("a model infinite only at the baseline",
         lambda: ex.wrap(NonFinite("at_zero").train(), modality="tabular"),
         explain("ig", target=0, n_steps=4),
         ex.ModelError, "non-finite outputs", "references/path points"),
    *(  # the path of ig starts at 0; saliency is asked for the gradient at 0 itself
        case(f"non-finite gradients on the path of {method}",
             lambda: ex.wrap(SqrtNorm().train(), modality="tabular"),
             explain(method, inputs=inputs, target=0, **params),
             ex.ModelError, f"Attributions of {ex.get_method(method).name}",
             "non-finite outputs or gradients", "path")
        for method, inputs, params in [
            ("ig", lambda: make_rows(2), {"rule": "riemann_left", "n_steps": 4}),
            ("saliency", lambda: torch.zeros(2, 6), {}),
        ]
    ),
    *(
        case(f"{label} as the baselines", "image", explain("ig", baselines=value, n_steps=2),
             ex.InputError, "`baselines`", "finite number")
        for label, value in [
            ("nan", float("nan")), ("inf", float("inf")), ("numpy nan", np.float32("nan"))
        ]
    ),
    *(
        case(f"inf in the image background of {method}",
             "image", explain(method, background=with_nan(make_images(3), float("inf"))),
             ex.InputError, "`background`", "NaN/Inf")
        for method in ["gradient_shap", "kernel_shap"]
    ),
    case("evaluate of nan attributions",
         "image", evaluate(with_nan_attributions, metrics=["infidelity"], progress=False),
         ex.InputError, "`explanations` (saliency)", "finite attributions"),
]  # fmt: skip


def test_number_baselines_still_work(image_model):
    a = ex.explain(image_model, make_images(2), "ig", target=0, baselines=0.0, n_steps=4)
    b = ex.explain(image_model, make_images(2), "ig", target=0, baselines="zeros", n_steps=4)
    torch.testing.assert_close(a.attributions, b.attributions)


# -- B. uncaught exceptions that become clear errors ---------------------------------------

SEEDS = [
    ("kernel_shap", -1),
    ("kernel_shap", 1.5),
    ("kernel_shap", True),
    ("smoothgrad", 2**70),
    ("gradient_shap", "3"),
    ("integrated_gradients", -1),  # checked even where the baselines do not use it
]

EXPLAIN_MANY_METHODS = [
    ("None", None, ("`methods`", "got None", "methods=[")),
    ("an empty list", [], ("`methods`", "empty")),
    ("an int", 42, ("`methods`", "int")),
    ("options that are a list", {"saliency": ["absolute"]},
     ("`methods['saliency']`", "mapping of the method's options")),
]  # fmt: skip

UNCAUGHT = [
    case("inputs on the meta device", "image",
         explain(inputs=lambda: make_images(2).to("meta"), progress=True),
         ex.InputError, "`inputs`", "meta device"),
    case("baselines on the meta device", "image",
         explain("ig", baselines=torch.zeros(1, 3, 16, 16, device="meta"), progress=True),
         ex.InputError, "`baselines`", "meta device"),
    *(
        case(f"huge target {label}", "image", explain(target=target),
             ex.InputError, "`target`", "[0, 3)")
        for label, target in [("10**30", 10**30), ("list holding 10**30", [0, 10**30]),
                              ("numpy 2**62", np.int64(2**62))]
    ),
    *(
        case(f"memory_budget {label} suggests 1GB", "image", explain(memory_budget=budget),
             ex.InputError, "`memory_budget`", 'memory_budget="1GB"')
        for label, budget in [
            ("inf", float("inf")), ("nan", float("nan")), ("'1.2.3MB'", "1.2.3MB"), ("'.'", "."),
            ("of 5000 digits", "1" * 5000), ("'1e3'", "1e3"), ("'-5MB'", "-5MB"),
        ]
    ),
    *(
        case(f"seed {seed!r} of {method} names the range", "tabular",
             explain(method, seed=seed, **shap_background(method)),
             ex.InputError, "`seed`", "[0, 2**63 - 1]", "seed=0")
        for method, seed in SEEDS
    ),
    *(
        case(f"evaluate with seed {seed!r}", "image",
             evaluate(metrics=["infidelity"], seed=seed),
             ex.InputError, "`seed`")
        for seed in [-1, 2**64, 0.5]
    ),
    *(
        case(f"explain_many with {label} as the methods", "image",
             lambda m, methods=methods: ex.explain_many(m, make_images(2), methods, progress=False),
             ex.InputError, *words)
        for label, methods, words in EXPLAIN_MANY_METHODS
    ),
]  # fmt: skip


def test_model_on_the_meta_device_raises_model_error():
    net = make_cnn().to("meta").train()  # meta tensors cannot be compared: check the flags
    model = ex.wrap(net)
    with pytest.raises(ex.ModelError, match="meta device.*load_state_dict"):
        ex.explain(model, make_images(2), "saliency", progress=False)
    assert all(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512MB", 512 * 10**6), ("1.5 GiB", 3 * 2**29), (" 2 kb ", 2000), (".5KB", 500), (7, 7)],
)
def test_parse_bytes_reads_numbers_and_units(text, expected):
    assert parse_bytes(text) == expected


def test_parse_bytes_names_the_argument_it_checks():
    with pytest.raises(ex.InputError, match="`max_size`.*max_size="):
        parse_bytes("lots", "max_size", none_means="no limit")


def test_evaluate_with_seed_none_is_seed_zero(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    kw = dict(metrics=["infidelity"], progress=False)
    none = ex.evaluate(exp, image_model, seed=None, **kw)
    zero = ex.evaluate(exp, image_model, seed=0, **kw)
    assert none.rows == zero.rows and none.settings["seed"] == 0


def test_explain_many_reads_none_options_as_the_defaults(image_model):
    x = make_images(2)
    (got,) = ex.explain_many(image_model, x, {"saliency": None}, target=0, progress=False)
    want = ex.explain(image_model, x, "saliency", target=0, progress=False)
    torch.testing.assert_close(got.attributions, want.attributions)


# load_explanation of a file whose header was rewritten


def _rewrite_header(saved, tmp_path, header_text: str):
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files if k != "header"}
    buf = io.BytesIO()
    np.savez(buf, header=np.array(header_text), **arrays)
    path = tmp_path / "bad.npz"
    path.write_bytes(buf.getvalue())
    return path


def _header(saved) -> dict:
    with np.load(saved) as data:
        return json.loads(str(data["header"]))


@pytest.fixture
def saved(image_model, tmp_path):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    return exp.save(tmp_path / "exp.npz")


def _without(key: str):
    return lambda header: json.dumps({k: v for k, v in header.items() if k != key})


def _with(key: str, value):
    return lambda header: json.dumps({**header, key: value})


BAD_HEADERS = [
    *(
        pytest.param(_without(key), f"missing \\['{key}'\\]", id=f"missing key {key}")
        for key in ["method", "modality", "params", "manifest", "class_names"]
    ),
    pytest.param(lambda _: "[1, 2]", "JSON list", id="a JSON list"),
    pytest.param(lambda _: '"a string"', "JSON str", id="a JSON string"),
    pytest.param(lambda _: "[" * 100_000 + "]" * 100_000, "nested too deeply", id="lists nested 100000 deep"),
    pytest.param(lambda _: '{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply",
                 id="objects nested 100000 deep"),
    *(
        pytest.param(_with(key, value), "Explanation file", id=f"{key} {label}")
        for key, value, label in [
            ("class_names", 5, "an int"), ("class_names", [1, 2], "of ints"),
            ("feature_names", "abc", "a string"), ("params", [], "a list"),
            ("method", None, "null"), ("modality", "audio", "audio"),
        ]
    ),
]  # fmt: skip


@pytest.mark.parametrize(("header_text", "words"), BAD_HEADERS)
def test_load_explanation_with_a_bad_header_raises_store_error(saved, tmp_path, header_text, words):
    with pytest.raises(ex.StoreError, match=words) as info:
        ex.load_explanation(_rewrite_header(saved, tmp_path, header_text(_header(saved))))
    assert isinstance(info.value, OSError)


def test_load_explanation_refuses_non_finite_attributions(saved, tmp_path):
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["attributions"] = arrays["attributions"].copy()
    arrays["attributions"].flat[0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **arrays)
    with pytest.raises(ex.StoreError, match="not finite"):
        ex.load_explanation(path)


class RaisesFrom(nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.linear, self.error = nn.Linear(6, 3), error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.linear(x)
        raise self.error


@pytest.mark.parametrize(
    "error",
    [KeyError("logits"), AttributeError("no attribute 'head'"), ZeroDivisionError()],
    ids=["KeyError", "AttributeError", "ZeroDivisionError"],
)
def test_any_exception_in_the_forward_becomes_a_chained_model_error(request, error):
    model = lambda: ex.wrap(RaisesFrom(error).train(), modality="tabular")  # noqa: E731
    words = ("The network failed", type(error).__name__)
    err = check_case(request, model, explain(), ex.ModelError, words, ())
    assert err.__cause__ is error


def test_an_explainer_error_raised_in_the_forward_passes_unchanged():
    error = ex.InputError("raised by a nested explainer call")
    model = ex.wrap(RaisesFrom(error), modality="tabular")
    with pytest.raises(ex.InputError) as info:
        ex.explain(model, make_rows(2), "saliency", progress=False)
    assert info.value is error


def test_class_names_as_an_index_mapping_are_put_in_index_order():
    model = ex.wrap(make_cnn(), class_names={1: "dog", 0: "cat", np.int64(2): "fish"})
    assert model.class_names == ("cat", "dog", "fish")
    exp = ex.explain(model, make_images(2), "saliency", target="dog", progress=False)
    assert exp.targets.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("names", "pattern"),
    [
        *(
            pytest.param(names, "`class_names`.*integer keys 0..K-1", id=f"mapping with keys {label}")
            for label, names in [
                ("1, 2", {1: "a", 2: "b"}), ("'0', '1'", {"0": "a", "1": "b"}),
                ("0, 2", {0: "a", 2: "b"}), ("True, False", {True: "a", False: "b"}),
            ]
        ),
        pytest.param("abc", "`class_names`.*split into characters", id="one string"),
    ],
)  # fmt: skip
def test_wrap_refuses_class_names_it_would_misread(names, pattern):
    with pytest.raises(ex.InputError, match=pattern):
        ex.wrap(make_cnn(), class_names=names)


# -- C. silently wrong results -------------------------------------------------------------


def _masks(n: int = 2) -> torch.Tensor:
    m = torch.zeros(n, 16, 16)
    m[:, 4:12, 4:12] = 1.0
    return m


SILENTLY_WRONG = [
    case("a negative feature_mask id", "tabular",
         explain("kernel_shap", background=tabular_background(),
                 feature_mask=torch.tensor([0, 1, 2, 3, 4, -1])),
         ex.InputError, "`feature_mask`", "non-negative", "-1"),
    *(
        case(f"absolute={value!r} is not a bool", "image", explain(absolute=value),
             ex.InputError, "`absolute`", "True or False")
        for value in ["no", "False", 1, 0, None, torch.tensor(True)]
    ),
    case("absolute='no' inside the base_params of smoothgrad", "image",
         explain("smoothgrad", n_samples=2, base_params={"absolute": "no"}),
         ex.InputError, "`absolute`"),
    case("progress='no' for explain", "image", explain(progress="no"),
         ex.InputError, "`progress`"),
    case("progress='no' for evaluate", "image", evaluate(metrics=["infidelity"], progress="no"),
         ex.InputError, "`progress`"),
    *(
        case(f"memory_budget {budget!r} below one byte", "image", explain(memory_budget=budget),
             ex.InputError, "`memory_budget`", ">= 1", "None for the default")
        for budget in ["0", "0.4", 0.4, 0, "0 MB"]
    ),
    case("feature_names as one string", "tabular", explain(feature_names="abcdef"),
         ex.InputError, "`feature_names`", "split into characters"),
    *(
        case(f"soft masks {label}", "image",
             evaluate(metrics=["localization"], masks=masks, progress=False),
             ex.InputError, "`masks` (mask)", "exactly 0 or 1", "masks > 0.5")
        for label, masks in [("times 0.3", _masks() * 0.3), ("plus 0.5", _masks() + 0.5),
                             ("with nan", with_nan(_masks())), ("times 2", _masks() * 2)]
    ),
    case("masks of another size", "image",
         evaluate(metrics=["localization"], masks=torch.ones(2, 8, 8, dtype=bool)),
         ex.InputError, "`masks` (mask)", "(N=2, 16, 16)"),
]  # fmt: skip


@pytest.mark.parametrize("method", ["kernel_shap", "smoothgrad", "gradient_shap"])
def test_seed_none_means_seed_zero_for_every_sampling_method(tabular_model, method):
    params = shap_background(method)
    params["n_samples"] = 16 if method == "kernel_shap" else 4
    runs = [
        ex.explain(tabular_model, make_rows(2), method, seed=s, progress=False, **params)
        for s in (None, None, 0)
    ]
    for other in runs[1:]:
        assert torch.equal(runs[0].attributions, other.attributions)
    assert runs[0].params["seed"] == 0 and runs[0].manifest["seed"] == 0


def test_numpy_bool_absolute_is_accepted(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", absolute=np.False_, progress=False)
    assert exp.params["absolute"] is False and bool((exp.attributions < 0).any())


def test_zero_one_number_masks_score_like_boolean_masks(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    kw = dict(metrics=["localization"], progress=False)
    as_bool = ex.evaluate(exp, image_model, masks=_masks().bool(), **kw)
    for masks in (_masks(), _masks().long(), _masks().numpy()):
        assert ex.evaluate(exp, image_model, masks=masks, **kw).rows == as_bool.rows


# -- D. unclear messages -------------------------------------------------------------------


def _overflowing(t: torch.Tensor, index: tuple[int, int], value: float) -> torch.Tensor:
    t = t.double()
    t[index] = value
    return t


UNCLEAR = [
    *(
        case(f"float target {label} asks for an int", "image", explain(target=target),
             ex.InputError, "`target`", "an int class index", '"predicted"', absent=("torch.Tensor",))
        for label, target in [("1.0", 1.0), ("numpy 2.0", np.float32(2.0)), ("0.5", 0.5)]
    ),
    *(
        case(f"empty target {label} says empty", "image", explain(target=target),
             ex.InputError, "`target`", "empty", absent=("float64",))
        for label, target in [("list", []), ("tuple", ()), ("tensor", torch.zeros(0, dtype=torch.long))]
    ),
    case("a target list of int and str names the types", "image", explain(target=[0, "dog"]),
         ex.InputError, "`target`", "int, str"),
    case("inputs that overflow the model's float32", "tabular",
         explain(inputs=lambda: _overflowing(make_rows(2), (0, 0), 1e300)),
         ex.InputError, "`inputs`", "overflow"),
    case("a background that overflows the model's float32", "tabular",
         explain("gradient_shap", background=_overflowing(tabular_background(), (1, 2), -1e300)),
         ex.InputError, "`background`", "overflow"),
    *(
        case(f"explain of {method} under inference_mode", "image",
             under_inference_mode(explain(method, **({"n_steps": 2} if method == "ig" else {}))),
             ex.InputError, "inference_mode", "Call ex.explain after")
        for method in ["saliency", "ig", "kernel_shap"]
    ),
    case("evaluate under inference_mode", "image",
         evaluate(metrics=["infidelity"], progress=False, inference_mode=True),
         ex.InputError, "inference_mode", "ex.evaluate"),
]  # fmt: skip


@pytest.mark.parametrize(CASE_FIELDS, NON_FINITE + UNCAUGHT + SILENTLY_WRONG + UNCLEAR)
def test_bad_input_at_an_entry_point_raises_a_clear_error(
    request, model, call, error, words, absent
):
    check_case(request, model, call, error, words, absent)


def test_explain_many_accepts_one_method_name(image_model):
    exps = ex.explain_many(image_model, make_images(2), "saliency", target=0, progress=False)
    assert [e.method for e in exps] == ["saliency"]


def test_float16_inputs_run_in_the_model_dtype(image_model):
    x = make_images(2).half()
    exp = ex.explain(image_model, x, "saliency", target=0, progress=False)
    want = ex.explain(image_model, x.float(), "saliency", target=0, progress=False)
    assert exp.inputs.dtype == torch.float32
    torch.testing.assert_close(exp.attributions, want.attributions)


def test_float64_inputs_of_a_float32_model_stay_float32(image_model):
    exp = ex.explain(image_model, make_images(2).double(), "saliency", progress=False)
    assert exp.inputs.dtype == torch.float32 and exp.attributions.dtype == torch.float32


def test_float64_model_runs_in_float64():
    model = ex.wrap(make_linear().double(), modality="tabular")
    exp = ex.explain(model, make_rows(2).double(), "ig", target=0, n_steps=8, progress=False)
    assert exp.attributions.dtype == torch.float64
    assert float(exp.extras["convergence_delta"].abs().max()) < 1e-12


def test_explain_under_no_grad_still_works(image_model):
    with torch.no_grad():
        exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    assert bool((exp.attributions != 0).any())
