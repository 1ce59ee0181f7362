"""Integrated gradients: captum as the oracle, completeness, batching, baselines, extras."""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import (
    RecordsBatchSizes,
    init_parameters,
    make_cnn,
    make_images,
    minimum_budget,
    relative_l2,
    seeded,
)
from captum.attr import IntegratedGradients
from torch import nn

import explainer as ex
from explainer.methods.integrated_gradients import quadrature

TARGETS = torch.tensor([0, 1, 2])


@pytest.fixture
def setup():
    net = make_cnn(seed=2)
    x = make_images(3, seed=3)
    return net, ex.wrap(net, modality="image"), x


@pytest.mark.parametrize(
    "rule", ["gausslegendre", "riemann_middle", "riemann_left", "riemann_right"]
)
@pytest.mark.parametrize("baseline", ["zeros", "tensor"])
def test_ig_agrees_with_captum(setup, rule, baseline):
    net, model, x = setup
    b = torch.zeros(1, *x.shape[1:]) if baseline == "zeros" else make_images(1, seed=8) * 0.5
    ours = ex.explain(
        model,
        x,
        "integrated_gradients",
        target=TARGETS,
        n_steps=32,
        rule=rule,
        baselines="zeros" if baseline == "zeros" else b,
        progress=False,
    )
    theirs, delta = IntegratedGradients(net).attribute(
        x, baselines=b, target=TARGETS, n_steps=32, method=rule, return_convergence_delta=True
    )
    diff = relative_l2(ours.attributions, theirs.detach())
    print(f"\nIG vs captum, rule={rule}, baseline={baseline}: relative L2 difference {diff:.2e}")
    assert diff <= 1e-5
    torch.testing.assert_close(
        ours.extras["convergence_delta"], delta.detach().float(), rtol=1e-3, atol=1e-5
    )


def test_quadrature_weights_sum_to_one_for_every_rule():
    for rule in (
        "gausslegendre",
        "riemann_trapezoid",
        "riemann_middle",
        "riemann_left",
        "riemann_right",
    ):
        for n in (2, 7, 64):
            nodes, weights = quadrature(rule, n)
            assert len(nodes) == len(weights) == n
            assert abs(weights.sum() - 1) < 1e-12
            assert nodes.min() >= 0 and nodes.max() <= 1


class SmoothNet(nn.Module):
    """A smooth (tanh/softplus) image classifier, on which the path integral converges."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Tanh(),
            nn.AvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64, 8),
            nn.Softplus(),
            nn.Linear(8, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("rule", ["riemann_left", "riemann_trapezoid", "gausslegendre"])
def test_completeness_gap_shrinks_with_n_steps(rule):
    net = init_parameters(SmoothNet(), seed=0, scale=3.0).eval()
    x = make_images(2, seed=6)  # |f(x) - f(0)| is 3 to 5 for both targets
    gaps = []
    for n_steps in (2, 8, 32):
        exp = ex.explain(net, x, "ig", target=[0, 1], n_steps=n_steps, rule=rule, progress=False)
        gaps.append(float(exp.extras["relative_gap"].max()))
    print(f"\nIG relative completeness gap, rule={rule}, n_steps 2/8/32: {gaps}")
    assert gaps[0] > 1e-2, "the model is too linear to test convergence"
    if rule == "gausslegendre":  # converges so fast that 8 steps already reach float32 rounding
        assert gaps[1] < 1e-4 < gaps[0] and gaps[2] < 1e-5
    else:
        assert gaps[0] > gaps[1] > gaps[2]


def test_convergence_delta_is_sum_of_attributions_minus_output_difference(setup):
    net, model, x = setup
    b = make_images(3, seed=9)
    exp = ex.explain(model, x, "ig", target=TARGETS, baselines=b, n_steps=16, progress=False)
    with torch.no_grad():
        f_x, f_b = net(x)[torch.arange(3), TARGETS], net(b)[torch.arange(3), TARGETS]
    expected = exp.attributions.sum((1, 2, 3)) - (f_x - f_b)
    torch.testing.assert_close(exp.extras["convergence_delta"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        exp.extras["relative_gap"], expected.abs() / (f_x - f_b).abs(), rtol=1e-4, atol=1e-6
    )
    assert exp.extras["convergence_delta"].shape == (3,)


@pytest.mark.parametrize("budget", ["minimum", 3 * 10**5, "1MB"])
def test_memory_bounded_batching_gives_identical_results(setup, budget):
    _, model, x = setup
    default = ex.explain(model, x, "ig", target=TARGETS, n_steps=12, progress=False)
    if budget == "minimum":  # one row per chunk
        budget = minimum_budget(
            lambda b: ex.explain(
                model, x, "ig", target=TARGETS, n_steps=12, memory_budget=b, progress=False
            )
        )
    bounded = ex.explain(
        model, x, "ig", target=TARGETS, n_steps=12, memory_budget=budget, progress=False
    )
    torch.testing.assert_close(bounded.attributions, default.attributions, rtol=1e-5, atol=1e-8)


def test_ig_chunks_the_step_expansion_by_the_memory_budget(setup):
    net, _, x = setup
    recorder = RecordsBatchSizes(net)
    e = ex.explain(recorder, x, "ig", target=TARGETS, n_steps=10, progress=False)
    # The default budget would hold the whole (steps x samples) expansion; the chunk actually
    # used is the fastest measured below that cap (explainer.throughput), recorded in the manifest.
    assert e.manifest["chunks"]["forward+backward"]["cap"] >= 30
    assert max(recorder.sizes) <= 30
    assert (
        str(e.manifest["chunks"]["forward+backward"]["rows"])
        in e.manifest["chunks"]["forward+backward"]["ms_per_row"]
    )
    recorder.sizes.clear()
    floor = minimum_budget(
        lambda b: ex.explain(
            recorder, x, "ig", target=TARGETS, n_steps=10, memory_budget=b, progress=False
        )
    )
    recorder.sizes.clear()
    ex.explain(recorder, x, "ig", target=TARGETS, n_steps=10, memory_budget=floor, progress=False)
    assert (
        recorder.sizes.count(1) >= 30 and max(recorder.sizes) <= 3
    )  # one row per chunk (3 = the inputs)


def test_many_steps_under_a_small_budget_match_captum(setup):
    net, model, x = setup
    # 3 samples x 200 steps would be one 600-row batch in captum; we chunk it to fit 256 kB.
    ours = ex.explain(
        model,
        x,
        "ig",
        target=TARGETS,
        n_steps=200,
        rule="riemann_middle",
        memory_budget="256KB",
        progress=False,
    )
    theirs = IntegratedGradients(net).attribute(
        x, target=TARGETS, n_steps=200, method="riemann_middle", internal_batch_size=50
    )
    assert relative_l2(ours.attributions, theirs.detach()) <= 1e-5


@pytest.mark.parametrize("kind", ["blur", "uniform"])
def test_named_baselines_work(setup, kind):
    _, model, x = setup
    exp = ex.explain(model, x, "ig", target=TARGETS, baselines=kind, n_steps=8, progress=False)
    assert exp.attributions.shape == x.shape and torch.isfinite(exp.attributions).all()
    assert exp.params["baselines"] == kind
    assert exp.extras["relative_gap"].max() < 0.5


def test_blur_baseline_is_a_blurred_copy_of_the_input(setup):
    from explainer.methods.references import make_baselines

    _, model, x = setup
    b = make_baselines(model, x, "blur", seed=0)
    assert b.shape == x.shape
    assert b.std() < x.std()  # smoother
    torch.testing.assert_close(b.mean((2, 3)), x.mean((2, 3)), rtol=0.05, atol=0.02)  # same colours


def test_uniform_baseline_is_deterministic_per_seed(setup):
    _, model, x = setup

    def run(seed):
        return ex.explain(
            model,
            x,
            "ig",
            target=TARGETS,
            baselines="uniform",
            n_steps=4,
            seed=seed,
            progress=False,
        ).attributions

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    assert (
        ex.explain(model, x, "ig", baselines="uniform", seed=7, progress=False).manifest["seed"]
        == 7
    )


def test_blur_baseline_is_refused_for_tabular_data():
    model = ex.wrap(nn.Linear(4, 2), modality="tabular")
    with pytest.raises(ex.InputError, match="baselines"):
        ex.explain(
            model, torch.randn((2, 4), generator=seeded(0)), "ig", baselines="blur", progress=False
        )


def test_baselines_count_must_be_one_or_one_per_input(setup):
    _, model, x = setup
    with pytest.raises(ex.InputError, match="gradient_shap"):
        ex.explain(model, x, "ig", baselines=make_images(2), progress=False)
