"""Several inputs: ``ex.explain(model, (images, vectors), ...)`` attributes every input.

Truths: captum's tuple inputs (the oracle: the same gradients per input), IG's completeness
over both inputs together, exact Shapley values by enumeration over the features of both
inputs, DeepLIFT's additivity, and a linear model whose attributions per input are known
in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from attribution_helpers import assert_same_state, exact_shapley, model_state
from torch import nn

import explainer as ex

N, IMG, VEC = 3, (3, 8, 8), 5
# several inputs are packed into rows: every method that explains rows explains them
ALL_METHODS = [m.name for m in ex.list_methods() if "tabular" in m.modalities]
IMAGE_ONLY = [m.name for m in ex.list_methods() if "tabular" not in m.modalities]


class ImageAndVector(nn.Module):
    """forward(image, vector): a small CNN's features and a vector's, into one head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.vec = nn.Linear(VEC, 4)
        self.head = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(image)).mean((2, 3))
        return self.head(torch.cat([h, torch.tanh(self.vec(vector))], 1))


class TwoLinear(nn.Module):
    """f(image, vector) = <w_img, image> + <w_vec, vector> per class: linear in each input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Linear(math.prod(IMG), 2, bias=False)
        self.b = nn.Linear(VEC, 2)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return self.a(image.flatten(1)) + self.b(vector)


def data(n: int = N, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *IMG, generator=g), torch.randn(n, VEC, generator=g)


def background(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return data(b, seed=9)


def params_for(method: str) -> dict:
    return {
        "integrated_gradients": {"n_steps": 32},
        "smoothgrad": {"n_samples": 4},
        "gradient_shap": {"background": background(), "n_samples": 8},
        "deep_shap": {"background": background()},
        "kernel_shap": {
            "background": background(2),
            "feature_mask": (torch.arange(4).repeat_interleave(16).reshape(8, 8), None),
            "n_samples": 2**9,
        },
    }.get(method, {})


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_attributes_each_input_and_keeps_the_model_as_it_was(method):
    net = ImageAndVector()
    before = model_state(net)
    exp = ex.explain(ex.wrap(net), data(), method, target=1, progress=False, **params_for(method))
    assert isinstance(exp, ex.MultiInputExplanation)
    assert [tuple(a.shape) for a in exp.attributions] == [(N, *IMG), (N, VEC)]
    assert all(torch.isfinite(a).all() for a in exp.attributions)
    assert exp.attributions[1].abs().sum() > 0 and exp.attributions[0].abs().sum() > 0
    assert exp.manifest["inputs"]["kinds"] == ["image", "tabular"]
    assert_same_state(before, model_state(net))


@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients"])
def test_several_inputs_equal_captums_tuple_attributions(method):
    captum = pytest.importorskip("captum.attr")
    net = ImageAndVector().eval()
    x = data()
    exp = ex.explain(ex.wrap(net), x, method, target=2, progress=False, **params_for(method))
    if method == "saliency":
        theirs = captum.Saliency(net).attribute(x, target=2)
    elif method == "gradient_x_input":
        theirs = captum.InputXGradient(net).attribute(x, target=2)
    else:
        theirs = captum.IntegratedGradients(net).attribute(
            x, target=2, n_steps=32, method="gausslegendre"
        )
    for ours, their in zip(exp.attributions, theirs, strict=True):
        torch.testing.assert_close(ours, their.detach(), atol=1e-5, rtol=1e-4)


def test_ig_completeness_holds_over_both_inputs_together():
    net = ImageAndVector().eval()
    x = data()
    exp = ex.explain(
        ex.wrap(net), x, "ig", target=0, progress=False, baselines=("blur", "zeros"), n_steps=128
    )
    total = sum(a.flatten(1).sum(1) for a in exp.attributions)
    from explainer.methods.references import gaussian_blur

    blurred = gaussian_blur(x[0], sigma=8 / 8)
    with torch.no_grad():
        change = net(*x)[:, 0] - net(blurred, torch.zeros_like(x[1]))[:, 0]
    torch.testing.assert_close(total, change, atol=2e-3 * change.abs().max().item(), rtol=0)
    assert (exp.extras["relative_gap"] < 0.01).all()


def test_per_input_baselines_give_the_closed_form_of_a_linear_model():
    net = TwoLinear().eval()
    x = data()
    b_img, b_vec = torch.full((1, *IMG), 0.5), torch.ones(1, VEC)
    exp = ex.explain(ex.wrap(net, task="classification"), x, "ig", target=1, progress=False,
                     baselines=(b_img, b_vec), n_steps=4)  # fmt: skip
    w_img = net.a.weight[1].detach().reshape(IMG)
    w_vec = net.b.weight[1].detach()
    torch.testing.assert_close(exp.attributions[0], (x[0] - b_img) * w_img, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(exp.attributions[1], (x[1] - b_vec) * w_vec, atol=1e-6, rtol=1e-5)


def test_kernel_shap_over_both_inputs_equals_exact_shapley_values_by_enumeration():
    net = ImageAndVector().double().eval()
    x = tuple(t.double() for t in data(1))
    ref = tuple(t.double() for t in background(1))
    quadrant = torch.zeros(8, 8, dtype=torch.long)
    quadrant[:4, 4:], quadrant[4:, :4], quadrant[4:, 4:] = 1, 2, 3
    exp = ex.explain(ex.wrap(net), x, "kernel_shap", target=0, progress=False,
                     background=ref, feature_mask=(quadrant, None), n_samples=2**9)  # fmt: skip
    m = 4 + VEC  # four image quadrants, then the vector's columns

    def value(coalition) -> float:
        img = torch.where(torch.tensor(coalition[:4])[quadrant].expand(IMG), x[0][0], ref[0][0])
        vec = torch.where(torch.tensor(coalition[4:]), x[1][0], ref[1][0])
        with torch.no_grad():
            return float(net(img[None], vec[None])[0, 0])

    truth = exact_shapley(value, m)
    img_phi = torch.stack([exp.attributions[0][0][:, quadrant == q].sum() for q in range(4)])
    ours = torch.cat([img_phi, exp.attributions[1][0]])
    torch.testing.assert_close(ours, truth, atol=1e-9, rtol=1e-7)


def test_deep_shap_adds_up_over_both_inputs():
    net = ImageAndVector().eval()
    x, bg = data(), background()
    exp = ex.explain(ex.wrap(net), x, "deep_shap", target=1, progress=False, background=bg)
    total = sum(a.flatten(1).sum(1) for a in exp.attributions)
    with torch.no_grad():
        change = net(*x)[:, 1] - net(*bg)[:, 1].mean()
    torch.testing.assert_close(total, change, atol=1e-5, rtol=1e-5)


def test_a_dict_of_inputs_is_passed_by_keyword():
    class Keywords(nn.Module):
        def forward(self, *, scale: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            return torch.stack([(values * scale).sum(1), values.sum(1)], 1)

    scale, values = torch.full((2, 3), 2.0), torch.ones(2, 3)
    exp = ex.explain(ex.wrap(Keywords()), {"values": values, "scale": scale},
                     "gradient_x_input", target=0, progress=False)  # fmt: skip
    assert exp.input_names == ("values", "scale")
    torch.testing.assert_close(exp.attributions[0], values * scale)
    torch.testing.assert_close(exp.attributions[1], values * scale)


def test_a_tensor_input_of_any_shape_is_drawn_per_position():
    class Tokens(nn.Module):
        def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
            return embeddings.sum((1, 2))[:, None].repeat(1, 2) * torch.tensor([1.0, -1.0])

    emb = torch.ones(2, 4, 6)
    exp = ex.explain(ex.wrap(Tokens()), (emb,), "gradient_x_input", target=0, progress=False)
    part = exp.parts()[0]
    assert part.modality == "tabular" and tuple(part.attributions.shape) == (2, 4)
    torch.testing.assert_close(part.attributions, torch.full((2, 4), 6.0))
    assert part.feature_names[0] == "input 0[0]"


def test_a_two_input_explanation_saves_and_loads_as_several_inputs(tmp_path):
    exp = ex.explain(ex.wrap(ImageAndVector()), data(), "saliency", progress=False)
    back = ex.load_explanation(exp.save(tmp_path / "two.npz"))
    assert isinstance(back, ex.MultiInputExplanation)
    for a, b in zip(back.attributions, exp.attributions, strict=True):
        assert torch.equal(a, b)
    assert back.input_names == exp.input_names


def test_trust_scores_run_on_several_inputs():
    model = ex.wrap(ImageAndVector())
    exps = ex.explain_many(model, data(4), ["saliency", "gradient_x_input"], target=0,
                           progress=False)  # fmt: skip
    scores = ex.evaluate(exps, model, progress=False, metrics=["faithfulness", "randomization"])
    gains = scores.values("saliency", "deletion_gain")
    assert len(gains) == 4 and torch.isfinite(torch.as_tensor(gains)).all()
    assert scores.curves["saliency"]["deletion"].shape[0] == 4


@pytest.mark.parametrize(
    ("inputs", "params", "match"),
    [
        ((torch.rand(2, *IMG), torch.randn(3, VEC)), {}, "same number of samples"),
        ((torch.rand(2, *IMG), torch.arange(10).reshape(2, 5)), {}, "forward_args"),
        ((), {}, "at least one input"),
        (data(2), {"baselines": ("zeros",)}, "one entry per input"),
        (data(2), {"baselines": ("zeros", "blur")}, "Blurring needs images"),
        (data(2), {"baselines": {"input 0": "zeros", "vec": "zeros"}}, "unknown"),
    ],
    ids=["batch sizes", "integer input", "empty", "short tuple", "blur on a vector", "dict keys"],
)
def test_bad_several_inputs_get_a_clear_error(inputs, params, match):
    model = ex.wrap(ImageAndVector())
    with pytest.raises(ex.InputError, match=match):
        ex.explain(model, inputs, "ig", target=0, progress=False, **params)


def test_kernel_shap_without_background_for_a_vector_input_says_what_to_pass():
    with pytest.raises(ex.InputError, match="background=\\(images_bg, rows_bg\\)"):
        ex.explain(ex.wrap(ImageAndVector()), data(1), "kernel_shap", target=0, progress=False)


def test_a_black_box_function_of_two_numpy_arrays_is_explained_by_kernel_shap():
    def predict(a, b):  # numpy in, numpy out: an additive game, so Shapley values are exact
        return (a.reshape(len(a), -1).sum(1) + 2 * b.sum(1))[:, None]

    x = (torch.ones(1, 1, 2, 2), torch.ones(1, 3))
    bg = (torch.zeros(1, 1, 2, 2), torch.zeros(1, 3))
    exp = ex.explain(ex.wrap(predict), x, "kernel_shap", target=0, progress=False,
                     background=bg, feature_mask=(torch.arange(4).reshape(2, 2), None),
                     n_samples=2**7)  # fmt: skip
    torch.testing.assert_close(exp.attributions[0], torch.ones(1, 1, 2, 2))
    torch.testing.assert_close(exp.attributions[1], torch.full((1, 3), 2.0))


@pytest.mark.parametrize("method", IMAGE_ONLY)
def test_methods_for_one_image_say_so_for_several_inputs(method):
    with pytest.raises(ex.InputError, match="several inputs"):
        ex.explain(ex.wrap(ImageAndVector()), data(1), method, target=0, progress=False)
