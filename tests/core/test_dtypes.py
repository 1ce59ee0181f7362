"""Models run in their own dtype: float64 stays float64, float16/bfloat16 are summed in float32."""

from __future__ import annotations

import copy

import pytest
import torch

import explainer as ex
from explainer._runtime import accumulation_dtype
from explainer.demo import load_tabular_data, load_tabular_mlp

pytestmark = pytest.mark.filterwarnings("ignore::explainer.errors.ExplainerWarning")

DATA = load_tabular_data()
X = DATA.x_test[:6]  # (6, 30) float32
BACKGROUND = DATA.x_train[:16]

# Options per method, so that each runs its full machinery (references, seeds) on the MLP;
# a method registered later runs with its defaults.
OPTIONS = {
    "deep_shap": {"background": BACKGROUND},
    "gradient_shap": {"background": BACKGROUND, "seed": 0},
    "kernel_shap": {"background": BACKGROUND, "n_samples": 128, "seed": 0},
    "smoothgrad": {"seed": 0},
}


def _as(dtype: torch.dtype, options: dict) -> dict:
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in options.items()}


def _mlp(dtype: torch.dtype) -> ex.Model:
    return ex.wrap(copy.deepcopy(load_tabular_mlp()).to(dtype), modality="tabular")


@pytest.mark.parametrize(
    "method", [info.name for info in ex.list_methods() if "tabular" in info.modalities]
)
def test_float64_copy_of_demo_mlp_equals_float32_for_every_method(method):
    options = OPTIONS.get(method, {})
    single = ex.explain(_mlp(torch.float32), X, method, target=0, progress=False, **options)
    double = ex.explain(
        _mlp(torch.float64),
        X.double(),
        method,
        target=0,
        progress=False,
        **_as(torch.float64, options),
    )
    assert double.attributions.dtype == torch.float64
    assert double.inputs.dtype == torch.float64
    # measured: at most 4.5e-7 of the largest attribution (float32's precision)
    scale = float(double.attributions.abs().max())
    torch.testing.assert_close(
        double.attributions, single.attributions.double(), rtol=1e-4, atol=1e-5 * scale
    )


def test_float32_inputs_of_a_float64_model_are_cast_to_float64():
    e = ex.explain(_mlp(torch.float64), X, "integrated_gradients", target=0, progress=False)
    assert e.inputs.dtype == e.attributions.dtype == torch.float64
    assert torch.equal(e.inputs, X.double())


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_bfloat16_model_runs_without_raw_error_and_returns_finite_float32(method, tmp_path):
    e = ex.explain(_mlp(torch.bfloat16), X, method, target=0, progress=False)
    reference = ex.explain(_mlp(torch.float32), X, method, target=0, progress=False)
    assert e.attributions.dtype == e.inputs.dtype == e.scores.dtype == torch.float32
    assert bool(torch.isfinite(e.attributions).all())
    # bfloat16 keeps 8 bits of mantissa; measured: within 0.6% of the float32 map's scale
    scale = float(reference.attributions.abs().max())
    assert float((e.attributions - reference.attributions).abs().max()) < 0.03 * scale
    assert ex.load_explanation(e.save(tmp_path / "bf16.npz")).attributions.dtype == torch.float32


def test_bfloat16_model_fingerprint_is_computed_from_its_bytes():
    model = _mlp(torch.bfloat16)
    assert len(model.fingerprint()) == 16
    assert model.fingerprint() != _mlp(torch.float32).fingerprint()


def test_float16_model_attributions_are_accumulated_in_float32():
    net = torch.nn.Linear(30, 2).half()
    e = ex.explain(ex.wrap(net, modality="tabular"), X, "ig", target=0, progress=False)
    assert e.attributions.dtype == torch.float32
    # IG of a linear model is exactly (x - 0) * w: the float32 sums keep it to half's precision
    expected = X.half().float() * net.weight[0].detach().float()
    torch.testing.assert_close(e.attributions, expected, rtol=2e-3, atol=2e-3)


def test_accumulation_dtype_is_at_least_float32():
    assert accumulation_dtype(torch.float16) == torch.float32
    assert accumulation_dtype(torch.bfloat16) == torch.float32
    assert accumulation_dtype(torch.float32) == torch.float32
    assert accumulation_dtype(torch.float64) == torch.float64
