"""A completeness gap is never silent: every method with a completeness property records its
relative gap per sample, and a gap above the method's tolerance is a warning on the
Explanation (kept in its file, shown in its notebook view) and an ExplainerWarning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from attribution_helpers import init_parameters, make_linear, make_mlp, make_rows
from torch import nn

import explainer as ex
from explainer.completeness import EXACT, EXPECTED, relative_gap

COMPLETE = ("integrated_gradients", "gradient_shap", "deep_shap", "kernel_shap")
NOT_COMPLETE = ("saliency", "gradient_x_input", "smoothgrad")


def saturating_mlp() -> ex.Model:
    """A strongly nonlinear tabular model: tanh units driven deep into saturation."""
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    return ex.wrap(init_parameters(net, seed=0, scale=4.0).eval(), modality="tabular")


ROWS = torch.linspace(-1, 1, 12).reshape(3, 4)
BACKGROUND = torch.linspace(-1, 1, 32).reshape(8, 4).flip(0)


def explain_quietly(model, x, method, **params) -> tuple[ex.Explanation, list[str]]:
    """ex.explain of class 0, and the texts of the ExplainerWarnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ex.ExplainerWarning)
        exp = ex.explain(model, x, method, target=0, progress=False, **params)
    issued = [str(w.message) for w in caught if issubclass(w.category, ex.ExplainerWarning)]
    return exp, issued


def test_a_large_completeness_gap_is_never_silent(tmp_path):
    # Two Gauss-Legendre nodes on saturated tanh units: IG misses most of f(x) - f(0).
    exp, issued = explain_quietly(saturating_mlp(), ROWS, "ig", n_steps=2)
    gaps = exp.extras["relative_gap"]
    assert gaps.shape == (3,) and float(gaps.max()) > 0.3
    [warning] = exp.warnings
    over = int((gaps > EXACT).sum())
    assert warning.startswith("integrated_gradients:")
    assert f"in {over} of 3 samples" in warning and "gap above 1%" in warning
    assert f"worst {float(gaps.max()):.1%}" in warning
    assert "n_steps (now 2)" in warning and "tolerance=0.01" in warning
    assert issued == [warning]  # issued once, with the same text
    assert "warnings=1" in repr(exp)
    html = exp._repr_html_()
    assert f'<p class="notice" role="note"><b>warning</b> {warning}</p>' in html
    # next to the map: between the method's header and its grid
    assert html.index(warning) < html.index(' id="grid-0"')
    back = ex.load_explanation(exp.save(tmp_path / "ig.npz"))
    assert back.warnings == exp.warnings
    torch.testing.assert_close(back.extras["relative_gap"], gaps)


def test_a_small_gap_on_a_linear_model_gives_no_warning():
    # IG is exact on a linear model whatever the step count.
    model = ex.wrap(make_linear(), modality="tabular")
    exp, issued = explain_quietly(model, make_rows(4), "ig", n_steps=2)
    assert float(exp.extras["relative_gap"].max()) < 1e-4
    assert exp.warnings == () and issued == []
    assert 'class="notice"' not in exp._repr_html_() and "warnings=" not in repr(exp)


def test_error_controlled_ig_names_its_own_options_in_the_fix():
    # A loose tolerance and the fewest steps allowed: the gap stays large.
    exp, _ = explain_quietly(saturating_mlp(), ROWS, "ig", tolerance=0.5, max_steps=5)
    assert float(exp.extras["relative_gap"].max()) > EXACT
    [warning] = exp.warnings
    assert "smaller tolerance (now 0.5)" in warning and "max_steps (now 5" in warning
    assert "n_steps" not in warning


@pytest.mark.parametrize("method", COMPLETE)
def test_every_method_with_a_completeness_property_records_its_relative_gap(method):
    params = {"n_steps": 16} if method == "integrated_gradients" else {"background": BACKGROUND}
    exp, _ = explain_quietly(saturating_mlp(), ROWS, method, **params)
    delta, gaps = exp.extras["convergence_delta"], exp.extras["relative_gap"]
    assert list(exp.extras).index("relative_gap") == list(exp.extras).index("convergence_delta") + 1
    # the definition, from the raw outputs: |delta| / |f(x) - f(ref)| (above the floor here)
    change = exp.attributions.sum(1) - delta
    torch.testing.assert_close(gaps, delta.abs() / change.abs(), rtol=1e-4, atol=1e-6)
    tolerance = ex.get_method(method).completeness_spec.tolerance
    assert bool(exp.warnings) == bool((gaps > tolerance).any())


@pytest.mark.parametrize("method", NOT_COMPLETE)
def test_methods_without_a_completeness_property_record_no_gap(method):
    exp, issued = explain_quietly(saturating_mlp(), ROWS, method)
    assert "relative_gap" not in exp.extras and exp.warnings == () and issued == []


@pytest.mark.parametrize("estimator", ["gp", "regression"])
def test_kernel_shap_adds_up_by_construction(estimator):
    # Efficiency is enforced: the gap is rounding of the float32 densities, never a warning,
    # even from a budget far below 2^M coalitions.
    exp, issued = explain_quietly(
        ex.wrap(make_mlp(), modality="tabular"),
        make_rows(3),
        "kernel_shap",
        background=make_rows(8, seed=7),
        n_samples=8,
        estimator=estimator,
    )
    assert float(exp.extras["relative_gap"].max()) < 1e-4
    assert exp.warnings == () and issued == []


def test_gradient_shap_is_judged_by_the_looser_tolerance_of_an_estimate():
    assert ex.get_method("gradient_shap").completeness_spec.tolerance == EXPECTED
    assert ex.get_method("integrated_gradients").completeness_spec.tolerance == EXACT
    assert ex.get_method("deep_shap").completeness_spec.tolerance == EXACT  # the default
    model = saturating_mlp()
    # Monte Carlo error: above 1% but within 10% passes silently ...
    exp, issued = explain_quietly(
        model, ROWS[1:2], "gradient_shap", background=BACKGROUND, n_samples=1024
    )
    assert 0.01 < float(exp.extras["relative_gap"][0]) <= 0.10
    assert exp.warnings == () and issued == []
    # ... one draw per input does not, and the fix is more draws
    exp, issued = explain_quietly(model, ROWS, "gradient_shap", background=BACKGROUND, n_samples=1)
    assert float(exp.extras["relative_gap"].max()) > 0.10
    assert "n_samples (now 1)" in exp.warnings[0] and issued == list(exp.warnings)


def test_an_input_at_its_reference_is_measured_against_the_rounding_floor():
    # f(x) = f(ref): the output change is 0, so a rounding-sized delta must not read as an
    # infinite relative gap; it is measured against sqrt(eps) * the output scale.
    attributions = torch.tensor([[1e-7, -1e-7], [0.0, 0.0]])
    gaps = relative_gap(attributions, torch.tensor([1e-6, 0.0]), torch.tensor([5.0, 0.0]))
    eps = torch.finfo(torch.float32).eps
    assert gaps.tolist() == pytest.approx([1e-6 / (eps**0.5 * 5.0), 0.0], rel=1e-5)
    model = ex.wrap(make_mlp(), modality="tabular")
    x = make_rows(2)
    exp, issued = explain_quietly(model, x, "ig", baselines=x, n_steps=2)
    assert float(exp.extras["relative_gap"].max()) == 0.0 and issued == []


def test_a_file_saved_without_warnings_loads_with_none(tmp_path):
    exp, _ = explain_quietly(saturating_mlp(), ROWS, "ig", n_steps=2)
    path = exp.save(tmp_path / "ig.npz")
    with np.load(path) as data:  # the file as an earlier version wrote it: no "warnings" key
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("header")))
    del header["warnings"]
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    back = ex.load_explanation(path)
    assert back.warnings == () and torch.equal(back.attributions, exp.attributions)
