"""Bad input at the entry points (explain, explain_many, evaluate, wrap, load_explanation)
raises a clear ExplainerError, never a bare torch/numpy/json exception, never a silently
wrong result; and the model is left as it was.

Cases from the security issue: non-finite values (A), uncaught exceptions (B), silently
wrong results (C) and unclear messages (D).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from attribution_helpers import make_cnn, make_images, make_linear, make_rows
from test_bad_input import raises, with_nan
from torch import nn

import explainer as ex
from explainer._runtime import parse_bytes

CLASSES = ["cat", "dog", "fish"]


@pytest.fixture
def image_model(cnn):
    cnn.train()  # the caller's mode, which must survive every error
    return ex.wrap(cnn, modality="image", class_names=CLASSES)


@pytest.fixture
def tabular_model(mlp):
    mlp.train()
    return ex.wrap(mlp, modality="tabular", class_names=CLASSES)


def tabular_background() -> torch.Tensor:
    return make_rows(4, seed=7)


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


@pytest.mark.parametrize(
    "method", ["saliency", "integrated_gradients", "gradient_shap", "deep_shap", "kernel_shap"]
)
def test_model_with_nan_outputs_raises_model_error(method):
    model = ex.wrap(NonFinite("always").train(), modality="tabular")
    params = {"background": tabular_background()} if "shap" in method else {}
    err = raises(
        ex.ModelError,
        "Model output",
        "finite class scores",
        "NaN/Inf",
        model=model,
        call=lambda: ex.explain(model, make_rows(2), method, target=0, progress=False, **params),
    )
    assert isinstance(err, RuntimeError)


def test_model_that_is_infinite_only_at_the_baseline_raises_model_error():
    model = ex.wrap(NonFinite("at_zero").train(), modality="tabular")
    raises(
        ex.ModelError,
        "non-finite outputs",
        "references/path points",
        model=model,
        call=lambda: ex.explain(model, make_rows(2), "ig", target=0, n_steps=4, progress=False),
    )


@pytest.mark.parametrize(
    ("method", "params"),
    [("ig", {"rule": "riemann_left", "n_steps": 4}), ("saliency", {})],
)
def test_non_finite_gradients_on_the_path_raise_model_error(method, params):
    model = ex.wrap(SqrtNorm().train(), modality="tabular")
    x = make_rows(2) if method == "ig" else torch.zeros(2, 6)  # the path of ig starts at 0
    raises(
        ex.ModelError,
        f"Attributions of {ex.get_method(method).name}",
        "non-finite outputs or gradients",
        "path",
        model=model,
        call=lambda: ex.explain(model, x, method, target=0, progress=False, **params),
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), np.float32("nan")])
def test_non_finite_number_as_baselines_raises_input_error(image_model, value):
    raises(
        ex.InputError,
        "`baselines`",
        "finite number",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "ig", baselines=value, n_steps=2, progress=False
        ),
    )


def test_number_baselines_still_work(image_model):
    a = ex.explain(image_model, make_images(2), "ig", target=0, baselines=0.0, n_steps=4)
    b = ex.explain(image_model, make_images(2), "ig", target=0, baselines="zeros", n_steps=4)
    torch.testing.assert_close(a.attributions, b.attributions)


@pytest.mark.parametrize("method", ["gradient_shap", "kernel_shap"])
def test_infinite_image_background_raises_input_error(image_model, method):
    raises(
        ex.InputError,
        "`background`",
        "NaN/Inf",
        model=image_model,
        call=lambda: ex.explain(
            image_model,
            make_images(2),
            method,
            background=with_nan(make_images(3), float("inf")),
            progress=False,
        ),
    )


def test_evaluate_refuses_nan_attributions(image_model):
    import dataclasses

    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    broken = dataclasses.replace(exp, attributions=with_nan(exp.attributions))
    raises(
        ex.InputError,
        "`explanations` (saliency)",
        "finite attributions",
        model=image_model,
        call=lambda: ex.evaluate(broken, image_model, metrics=["infidelity"], progress=False),
    )


# -- B. uncaught exceptions that become clear errors ---------------------------------------


def test_inputs_on_the_meta_device_raise_input_error(image_model):
    raises(
        ex.InputError,
        "`inputs`",
        "meta device",
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(2).to("meta"), "saliency"),
    )


def test_baselines_on_the_meta_device_raise_input_error(image_model):
    raises(
        ex.InputError,
        "`baselines`",
        "meta device",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "ig", baselines=torch.zeros(1, 3, 16, 16, device="meta")
        ),
    )


def test_model_on_the_meta_device_raises_model_error():
    net = make_cnn().to("meta").train()  # meta tensors cannot be compared: check the flags
    model = ex.wrap(net)
    with pytest.raises(ex.ModelError, match="meta device.*load_state_dict"):
        ex.explain(model, make_images(2), "saliency", progress=False)
    assert all(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("target", [10**30, [0, 10**30], np.int64(2**62)])
def test_huge_target_raises_input_error(image_model, target):
    raises(
        ex.InputError,
        "`target`",
        "[0, 3)",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=target, progress=False
        ),
    )


@pytest.mark.parametrize(
    "budget", [float("inf"), float("nan"), "1.2.3MB", ".", "1" * 5000, "1e3", "-5MB"]
)
def test_malformed_memory_budget_raises_input_error(image_model, budget):
    raises(
        ex.InputError,
        "`memory_budget`",
        'memory_budget="1GB"',
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", memory_budget=budget, progress=False
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512MB", 512 * 10**6), ("1.5 GiB", 3 * 2**29), (" 2 kb ", 2000), (".5KB", 500), (7, 7)],
)
def test_parse_bytes_reads_numbers_and_units(text, expected):
    assert parse_bytes(text) == expected


def test_parse_bytes_names_the_argument_it_checks():
    with pytest.raises(ex.InputError, match="`max_size`.*max_size="):
        parse_bytes("lots", "max_size", none_means="no limit")


@pytest.mark.parametrize(
    ("method", "seed"),
    [
        ("kernel_shap", -1),
        ("kernel_shap", 1.5),
        ("kernel_shap", True),
        ("smoothgrad", 2**70),
        ("gradient_shap", "3"),
        ("integrated_gradients", -1),  # checked even where the baselines do not use it
    ],
)
def test_bad_seed_raises_input_error(tabular_model, method, seed):
    params = {"background": tabular_background()} if "shap" in method else {}
    raises(
        ex.InputError,
        "`seed`",
        "[0, 2**63 - 1]",
        "seed=0",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model, make_rows(2), method, seed=seed, progress=False, **params
        ),
    )


def test_evaluate_with_seed_none_is_seed_zero(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    kw = dict(metrics=["infidelity"], progress=False)
    none = ex.evaluate(exp, image_model, seed=None, **kw)
    zero = ex.evaluate(exp, image_model, seed=0, **kw)
    assert none.rows == zero.rows and none.settings["seed"] == 0


@pytest.mark.parametrize("seed", [-1, 2**64, 0.5])
def test_evaluate_with_a_bad_seed_raises_input_error(image_model, seed):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    raises(
        ex.InputError,
        "`seed`",
        model=image_model,
        call=lambda: ex.evaluate(exp, image_model, metrics=["infidelity"], seed=seed),
    )


@pytest.mark.parametrize(
    ("methods", "keywords"),
    [
        (None, ("`methods`", "got None", "methods=[")),
        ([], ("`methods`", "empty")),
        (42, ("`methods`", "int")),
        ({"saliency": ["absolute"]}, ("`methods['saliency']`", "mapping of the method's options")),
    ],
)
def test_explain_many_with_bad_methods_raises_input_error(image_model, methods, keywords):
    raises(
        ex.InputError,
        *keywords,
        model=image_model,
        call=lambda: ex.explain_many(image_model, make_images(2), methods, progress=False),
    )


def test_explain_many_reads_none_options_as_the_defaults(image_model):
    x = make_images(2)
    (got,) = ex.explain_many(image_model, x, {"saliency": None}, target=0, progress=False)
    want = ex.explain(image_model, x, "saliency", target=0, progress=False)
    torch.testing.assert_close(got.attributions, want.attributions)


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


@pytest.mark.parametrize("key", ["method", "modality", "params", "manifest", "class_names"])
def test_load_explanation_with_a_missing_header_key_raises_store_error(saved, tmp_path, key):
    header = _header(saved)
    del header[key]
    with pytest.raises(ex.StoreError, match=f"missing \\['{key}'\\]"):
        ex.load_explanation(_rewrite_header(saved, tmp_path, json.dumps(header)))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[1, 2]", "JSON list"),
        ('"a string"', "JSON str"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ],
)
def test_load_explanation_of_a_header_that_is_not_an_object_raises_store_error(
    saved, tmp_path, text, words
):
    with pytest.raises(ex.StoreError, match=words) as info:
        ex.load_explanation(_rewrite_header(saved, tmp_path, text))
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("class_names", 5),
        ("class_names", [1, 2]),
        ("feature_names", "abc"),
        ("params", []),
        ("method", None),
        ("modality", "text"),
    ],
)
def test_load_explanation_with_a_header_value_of_the_wrong_type_raises_store_error(
    saved, tmp_path, key, value
):
    header = _header(saved)
    header[key] = value
    with pytest.raises(ex.StoreError, match="Explanation file"):
        ex.load_explanation(_rewrite_header(saved, tmp_path, json.dumps(header)))


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
    "error", [KeyError("logits"), AttributeError("no attribute 'head'"), ZeroDivisionError()]
)
def test_any_exception_in_the_forward_becomes_a_chained_model_error(error):
    model = ex.wrap(RaisesFrom(error).train(), modality="tabular")
    err = raises(
        ex.ModelError,
        "The network failed",
        type(error).__name__,
        model=model,
        call=lambda: ex.explain(model, make_rows(2), "saliency", progress=False),
    )
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
    "names", [{1: "a", 2: "b"}, {"0": "a", "1": "b"}, {0: "a", 2: "b"}, {True: "a", False: "b"}]
)
def test_class_names_mapping_without_keys_0_to_k_raises_input_error(names):
    with pytest.raises(ex.InputError, match="`class_names`.*integer keys 0..K-1"):
        ex.wrap(make_cnn(), class_names=names)


# -- C. silently wrong results -------------------------------------------------------------


@pytest.mark.parametrize("method", ["kernel_shap", "smoothgrad", "gradient_shap"])
def test_seed_none_means_seed_zero_for_every_sampling_method(tabular_model, method):
    params = {"background": tabular_background()} if "shap" in method else {}
    params["n_samples"] = 16 if method == "kernel_shap" else 4
    runs = [
        ex.explain(tabular_model, make_rows(2), method, seed=s, progress=False, **params)
        for s in (None, None, 0)
    ]
    for other in runs[1:]:
        assert torch.equal(runs[0].attributions, other.attributions)
    assert runs[0].params["seed"] == 0 and runs[0].manifest["seed"] == 0


def test_negative_feature_mask_id_raises_input_error(tabular_model):
    raises(
        ex.InputError,
        "`feature_mask`",
        "non-negative",
        "-1",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model,
            make_rows(2),
            "kernel_shap",
            background=tabular_background(),
            feature_mask=torch.tensor([0, 1, 2, 3, 4, -1]),
            progress=False,
        ),
    )


@pytest.mark.parametrize("value", ["no", "False", 1, 0, None, torch.tensor(True)])
def test_non_bool_absolute_raises_input_error(image_model, value):
    raises(
        ex.InputError,
        "`absolute`",
        "True or False",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", absolute=value, progress=False
        ),
    )


def test_non_bool_absolute_inside_smoothgrad_base_params_raises_input_error(image_model):
    raises(
        ex.InputError,
        "`absolute`",
        model=image_model,
        call=lambda: ex.explain(
            image_model,
            make_images(2),
            "smoothgrad",
            n_samples=2,
            base_params={"absolute": "no"},
            progress=False,
        ),
    )


def test_numpy_bool_absolute_is_accepted(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", absolute=np.False_, progress=False)
    assert exp.params["absolute"] is False and bool((exp.attributions < 0).any())


def test_non_bool_progress_raises_input_error(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    raises(
        ex.InputError,
        "`progress`",
        model=image_model,
        call=lambda: ex.explain(image_model, make_images(2), "saliency", progress="no"),
    )
    raises(
        ex.InputError,
        "`progress`",
        model=image_model,
        call=lambda: ex.evaluate(exp, image_model, metrics=["infidelity"], progress="no"),
    )


@pytest.mark.parametrize("budget", ["0", "0.4", 0.4, 0, "0 MB"])
def test_memory_budget_below_one_byte_raises_input_error(image_model, budget):
    raises(
        ex.InputError,
        "`memory_budget`",
        ">= 1",
        "None for the default",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", memory_budget=budget, progress=False
        ),
    )


def test_class_names_as_one_string_raise_input_error():
    with pytest.raises(ex.InputError, match="`class_names`.*split into characters"):
        ex.wrap(make_cnn(), class_names="abc")


def test_feature_names_as_one_string_raise_input_error(tabular_model):
    raises(
        ex.InputError,
        "`feature_names`",
        "split into characters",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model, make_rows(2), "saliency", feature_names="abcdef", progress=False
        ),
    )


def _masks(n: int = 2) -> torch.Tensor:
    m = torch.zeros(n, 16, 16)
    m[:, 4:12, 4:12] = 1.0
    return m


@pytest.mark.parametrize(
    "masks", [_masks() * 0.3, _masks() + 0.5, with_nan(_masks()), _masks() * 2]
)
def test_soft_masks_raise_input_error(image_model, masks):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    raises(
        ex.InputError,
        "`masks` (mask)",
        "exactly 0 or 1",
        "masks > 0.5",
        model=image_model,
        call=lambda: ex.evaluate(
            exp, image_model, metrics=["localization"], masks=masks, progress=False
        ),
    )


def test_masks_of_another_size_raise_input_error(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    raises(
        ex.InputError,
        "`masks` (mask)",
        "(N=2, 16, 16)",
        model=image_model,
        call=lambda: ex.evaluate(
            exp, image_model, metrics=["localization"], masks=torch.ones(2, 8, 8, dtype=bool)
        ),
    )


def test_zero_one_number_masks_score_like_boolean_masks(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    kw = dict(metrics=["localization"], progress=False)
    as_bool = ex.evaluate(exp, image_model, masks=_masks().bool(), **kw)
    for masks in (_masks(), _masks().long(), _masks().numpy()):
        assert ex.evaluate(exp, image_model, masks=masks, **kw).rows == as_bool.rows


# -- D. unclear messages -------------------------------------------------------------------


@pytest.mark.parametrize("target", [1.0, np.float32(2.0), 0.5])
def test_float_target_message_asks_for_an_int(image_model, target):
    err = raises(
        ex.InputError,
        "`target`",
        "an int class index",
        '"predicted"',
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=target, progress=False
        ),
    )
    assert "torch.Tensor" not in str(err)


@pytest.mark.parametrize("target", [[], (), torch.zeros(0, dtype=torch.long)])
def test_empty_target_message_says_empty(image_model, target):
    err = raises(
        ex.InputError,
        "`target`",
        "empty",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=target, progress=False
        ),
    )
    assert "float64" not in str(err)


def test_mixed_target_list_message_names_the_types(image_model):
    raises(
        ex.InputError,
        "`target`",
        "int, str",
        model=image_model,
        call=lambda: ex.explain(
            image_model, make_images(2), "saliency", target=[0, "dog"], progress=False
        ),
    )


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


def test_inputs_that_overflow_the_model_dtype_raise_input_error(tabular_model):
    x = make_rows(2).double()
    x[0, 0] = 1e300
    raises(
        ex.InputError,
        "`inputs`",
        "overflow",
        model=tabular_model,
        call=lambda: ex.explain(tabular_model, x, "saliency", progress=False),
    )


def test_background_that_overflows_the_model_dtype_raises_input_error(tabular_model):
    bg = tabular_background().double()
    bg[1, 2] = -1e300
    raises(
        ex.InputError,
        "`background`",
        "overflow",
        model=tabular_model,
        call=lambda: ex.explain(
            tabular_model, make_rows(2), "gradient_shap", background=bg, progress=False
        ),
    )


def test_float64_model_runs_in_float64():
    model = ex.wrap(make_linear().double(), modality="tabular")
    exp = ex.explain(model, make_rows(2).double(), "ig", target=0, n_steps=8, progress=False)
    assert exp.attributions.dtype == torch.float64
    assert float(exp.extras["convergence_delta"].abs().max()) < 1e-12


@pytest.mark.parametrize("method", ["saliency", "ig", "kernel_shap"])
def test_explain_under_inference_mode_raises_input_error(image_model, method):
    def call():
        with torch.inference_mode():
            ex.explain(image_model, make_images(2), method, n_steps=2, progress=False) if (
                method == "ig"
            ) else ex.explain(image_model, make_images(2), method, progress=False)

    raises(
        ex.InputError,
        "inference_mode",
        "Call ex.explain after",
        model=image_model,
        call=call,
    )


def test_evaluate_under_inference_mode_raises_input_error(image_model):
    exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)

    def call():
        with torch.inference_mode():
            ex.evaluate(exp, image_model, metrics=["infidelity"], progress=False)

    raises(ex.InputError, "inference_mode", "ex.evaluate", model=image_model, call=call)


def test_explain_under_no_grad_still_works(image_model):
    with torch.no_grad():
        exp = ex.explain(image_model, make_images(2), "saliency", target=0, progress=False)
    assert bool((exp.attributions != 0).any())
