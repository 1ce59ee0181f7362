"""Error-controlled integrated gradients (``tolerance=``): honest estimates, per-sample steps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from attribution_helpers import (
    RecordsBatchSizes,
    assert_same_state,
    dress_up,
    init_parameters,
    make_cnn,
    make_images,
    make_linear,
    make_mlp,
    make_rows,
    model_state,
    relative_l2,
)
from torch import nn

import explainer as ex
from explainer._runtime import Runtime
from explainer.methods._ig.adaptive import MIN_STEPS, adaptive_gradient_integral
from explainer.methods._ig.quadrature import (
    KRONROD_ERROR,
    KRONROD_NODES,
    KRONROD_VALUE,
    kronrod_scale,
)


def reference(model, x, target, baselines="zeros"):
    """2048-step Gauss-Legendre IG: the 'true' attributions the estimates are judged against."""
    return ex.explain(
        model, x, "ig", target=target, n_steps=2048, baselines=baselines, progress=False
    ).attributions


def true_errors(attributions, ref):
    return torch.stack(
        [torch.tensor(relative_l2(a, r)) for a, r in zip(attributions, ref, strict=True)]
    )


class SmoothCNN(nn.Module):
    """GELU/SiLU, average pooling: an integrand that is smooth along the path."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.GELU(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Kink(nn.Module):
    """f(x) = relu(x_0 + x_1 - 1) - ... : one jump of the gradient at a = 1 / (x_0 + x_1) on the path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x[:, 0] + x[:, 1] - 1.0) + 0.1 * x[:, 2]
        return torch.stack([y, -y], dim=1)


@pytest.fixture(scope="module")
def relu_case():
    net = make_cnn(seed=4)  # BatchNorm and ReLU(inplace=True)
    x = make_images(8, seed=11)
    target = net(x).argmax(1)
    return net, x, target, reference(net, x, target)


@pytest.fixture(scope="module")
def smooth_case():
    net = init_parameters(SmoothCNN(), seed=1, scale=2.5).eval()
    x = make_images(8, seed=12)
    target = net(x).argmax(1)
    return net, x, target, reference(net, x, target)


@pytest.mark.parametrize("case", ["relu_case", "smooth_case"])
def test_converged_samples_are_within_tolerance_of_a_2048_step_reference(case, request):
    net, x, target, ref = request.getfixturevalue(case)
    exp = ex.explain(net, x, "ig", target=target, tolerance=0.01, progress=False)
    errors = true_errors(exp.attributions, ref)
    converged = exp.extras["converged"]
    print(
        f"\n{case}: steps {exp.extras['steps_used'].tolist()}\n true errors {errors.numpy().round(4)}\n"
        f" estimates  {exp.extras['error_estimate'].numpy().round(4)}"
    )
    assert converged.all()
    assert (exp.extras["error_estimate"] <= 0.01).all()
    assert errors[converged].max() <= 0.015


@pytest.mark.parametrize("case", ["relu_case", "smooth_case"])
def test_error_estimate_is_conservative_on_most_samples(case, request):
    net, x, target, ref = request.getfixturevalue(case)
    covered = []
    for tol in (0.05, 0.02):
        exp = ex.explain(net, x, "ig", target=target, tolerance=tol, progress=False)
        covered.append(exp.extras["error_estimate"] >= true_errors(exp.attributions, ref))
    fraction = float(torch.cat(covered).float().mean())
    print(f"\n{case}: estimate >= true error on {fraction:.0%} of samples")
    assert fraction >= 0.75


def test_estimate_tracks_the_true_error_across_tolerances(relu_case):
    net, x, target, ref = relu_case
    est, err = [], []
    for tol in (0.2, 0.05, 0.01):
        exp = ex.explain(net, x, "ig", target=target, tolerance=tol, progress=False)
        est.append(exp.extras["error_estimate"])
        err.append(true_errors(exp.attributions, ref))
    est, err = torch.cat(est).log(), torch.cat(err).log()
    corr = float(torch.corrcoef(torch.stack([est, err]))[0, 1])
    print(f"\ncorrelation of log estimate and log true error: {corr:.3f}")
    assert corr > 0.9


def test_smooth_network_needs_far_fewer_steps_than_relu_network(relu_case, smooth_case):
    steps = {}
    for name, (net, x, target, _) in (("relu", relu_case), ("smooth", smooth_case)):
        exp = ex.explain(net, x, "ig", target=target, tolerance=0.01, progress=False)
        steps[name] = float(exp.extras["steps_used"].float().mean())
    print(f"\nmean steps for 1%: {steps}")
    assert steps["smooth"] * 3 < steps["relu"]


def test_linear_model_converges_with_the_minimum_steps_and_is_exact():
    net = make_linear(seed=3)
    x = make_rows(5, seed=4)
    exp = ex.explain(
        ex.wrap(net, modality="tabular"), x, "ig", target=1, tolerance=1e-4, progress=False
    )
    assert exp.extras["steps_used"].tolist() == [MIN_STEPS] * 5
    assert exp.extras["converged"].all()
    assert exp.extras["error_estimate"].max() <= 1e-6
    torch.testing.assert_close(exp.attributions, x * net.weight[1].detach(), rtol=1e-5, atol=1e-6)


def test_a_degenerate_gradient_at_the_baseline_itself_is_not_taken_for_a_jump():
    # Bias-free ReLU layers from a zero baseline: f(a x) = a f(x), so the gradient is the same
    # at every a > 0 and IG is exactly x * grad f(x). At a = 0 every ReLU sits on its kink and
    # autograd's gradient there is 0: a rule that used that value saw a jump at the baseline
    # (13 steps, 0.78% error on a random-init ResNet); the node is taken just inside the path.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16, bias=False), nn.ReLU(), nn.Linear(16, 3, bias=False))
    x = make_rows(4, seed=5)[:, :6]
    exp = ex.explain(ex.wrap(net, modality="tabular"), x, "ig", target=2, tolerance=1e-4,
                     baselines="zeros", progress=False)  # fmt: skip
    rows = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(rows)[:, 2].sum(), rows)
    assert exp.extras["steps_used"].tolist() == [MIN_STEPS] * 4
    torch.testing.assert_close(exp.attributions, x * grad, rtol=1e-5, atol=1e-6)
    # completeness still holds against the exact f(0) = 0
    assert exp.extras["convergence_delta"].abs().max() <= 1e-5


def test_nodes_concentrate_at_a_single_kink():
    # One gradient jump at a = 1/(x_0 + x_1): uniform rules need ~1/tolerance steps, bisection
    # towards the jump needs ~log(1/tolerance).
    model = ex.wrap(Kink(), modality="tabular")
    x = torch.tensor([[0.9, 0.8, 1.0], [1.3, 0.4, 1.0]])
    exp = ex.explain(model, x, "ig", target=0, tolerance=1e-3, progress=False)
    jump = 1 / (x[:, 0] + x[:, 1])
    exact = torch.stack([x[:, 0] * (1 - jump), x[:, 1] * (1 - jump), 0.1 * x[:, 2]], dim=1)
    errors = (exp.attributions - exact).norm(dim=1) / exact.norm(dim=1)
    print(f"\nkink: steps {exp.extras['steps_used'].tolist()}, errors {errors.tolist()}")
    assert exp.extras["converged"].all() and (errors <= 1.5e-3).all()
    assert exp.extras["steps_used"].max() <= 50
    uniform = ex.explain(
        model, x, "ig", target=0, n_steps=50, rule="riemann_middle", progress=False
    )
    assert ((uniform.attributions - exact).norm(dim=1) / exact.norm(dim=1)).max() > 1e-3


def test_extras_have_one_entry_per_sample(relu_case):
    net, x, target, _ = relu_case
    exp = ex.explain(net, x[:3], "ig", target=target[:3], tolerance=0.05, progress=False)
    for key in (
        "error_estimate",
        "steps_used",
        "forward_evaluations",
        "converged",
        "convergence_delta",
        "relative_gap",
    ):
        assert exp.extras[key].shape == (3,), key
    assert exp.extras["converged"].dtype == torch.bool
    assert (
        exp.extras["steps_used"].dtype == torch.long
        and (exp.extras["steps_used"] >= MIN_STEPS).all()
    )
    assert (exp.extras["steps_used"] % 2 == 1).all()  # 2 per panel split, 5 to start
    assert exp.params["tolerance"] == 0.05 and exp.params["rule"] == "adaptive_hp"
    # completeness comes with it, from the outputs at the path ends
    with torch.no_grad():
        out = (
            net(x[:3])[torch.arange(3), target[:3]]
            - net(torch.zeros_like(x[:3]))[torch.arange(3), target[:3]]
        )
    torch.testing.assert_close(
        exp.extras["convergence_delta"], exp.attributions.sum((1, 2, 3)) - out, rtol=1e-4, atol=1e-5
    )


def test_adaptive_rule_is_deterministic_and_independent_of_the_memory_budget(relu_case):
    net, x, target, _ = relu_case
    runs = [
        ex.explain(
            net,
            x[:4],
            "ig",
            target=target[:4],
            tolerance=0.03,
            memory_budget=budget,
            progress=False,
        )
        for budget in (None, None, "300KB")
    ]
    assert torch.equal(runs[0].attributions, runs[1].attributions)
    assert torch.equal(runs[0].extras["steps_used"], runs[1].extras["steps_used"])
    assert torch.equal(runs[0].extras["steps_used"], runs[2].extras["steps_used"])
    torch.testing.assert_close(runs[2].attributions, runs[0].attributions, rtol=1e-4, atol=1e-6)


def test_samples_still_refining_go_through_the_network_together(relu_case):
    net, x, target, _ = relu_case
    recorder = RecordsBatchSizes(net)
    ex.explain(
        recorder, x[:1], "ig", target=target[:1], tolerance=0.5, progress=False
    )  # measures memory
    recorder.sizes.clear()
    exp = ex.explain(recorder, x, "ig", target=target, tolerance=0.05, progress=False)
    rows = int(exp.extras["steps_used"].sum())
    assert sum(recorder.sizes) == rows + len(x)  # + the prediction pass of explain()
    # the first nodes of all samples go through together: in chunks of the first round's
    # rows (sized by measured throughput, explainer.throughput), not one call per sample
    first_round = list(itertools.accumulate(recorder.sizes[1:]))
    assert len(x) * MIN_STEPS in first_round
    assert first_round.index(len(x) * MIN_STEPS) < len(x)
    assert len(recorder.sizes) < rows / 8  # rounds, not one call per sample and step


def test_max_steps_is_respected_and_unconverged_samples_are_reported(relu_case):
    net, x, target, ref = relu_case
    exp = ex.explain(
        net, x[:4], "ig", target=target[:4], tolerance=1e-3, max_steps=21, progress=False
    )
    assert (exp.extras["steps_used"] <= 21).all()
    assert not exp.extras["converged"].any()
    assert (exp.extras["error_estimate"] > 1e-3).all()
    # the estimate still says how far off it is
    errors = true_errors(exp.attributions, ref[:4])
    assert (errors > 1e-3).all() and (errors < 3 * exp.extras["error_estimate"]).all()


def test_adaptive_rule_leaves_the_model_as_it_was():
    net = dress_up(make_cnn(seed=5))
    before = model_state(net)
    ex.explain(net, make_images(2, seed=2), "ig", target=0, tolerance=0.05, progress=False)
    assert_same_state(before, model_state(net))


def test_per_sample_baselines_work_with_tolerance():
    model = ex.wrap(make_mlp(seed=2), modality="tabular")
    x, b = make_rows(4, seed=6), make_rows(4, seed=7)
    exp = ex.explain(model, x, "ig", target=0, baselines=b, tolerance=0.01, progress=False)
    ref = reference(model, x, 0, baselines=b)
    assert exp.extras["converged"].all()
    assert max(true_errors(exp.attributions, ref)) <= 0.015


@pytest.mark.parametrize("bad", [0, -0.1, 1.0, math.nan, math.inf, "0.01", True, [0.01]])
def test_bad_tolerance_is_refused(bad):
    model = ex.wrap(make_mlp(), modality="tabular")
    with pytest.raises(ex.InputError, match="tolerance"):
        ex.explain(model, make_rows(2), "ig", tolerance=bad, progress=False)


@pytest.mark.parametrize("bad", [4, 0, 2.5, "64"])
def test_bad_max_steps_is_refused(bad):
    model = ex.wrap(make_mlp(), modality="tabular")
    with pytest.raises(ex.InputError, match="max_steps"):
        ex.explain(model, make_rows(2), "ig", tolerance=0.01, max_steps=bad, progress=False)


# -- higher-order (Kronrod) panels where the integrand is smooth -------------------------------


def trapezoid_only(model, x, target, tolerance):
    """The same error control with trapezoid panels only: the second-order rule alone."""
    model = ex.wrap(model, modality="image" if x.ndim == 4 else "tabular")
    with model.evaluating():
        return adaptive_gradient_integral(
            model,
            x,
            torch.zeros_like(x[:1]),
            torch.as_tensor(target).expand(len(x)),
            tolerance,
            1024,
            Runtime(progress=False),
            high_order=False,
        )


class Power(nn.Module):
    """f(x) = (w . x)^p: along the path from 0 the IG integrand is a polynomial of degree p - 1."""

    def __init__(self, w: torch.Tensor, p: int) -> None:
        super().__init__()
        self.w, self.p = w, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.w) ** self.p
        return torch.stack([y, -y], dim=1)


def gelu_mlp(seed: int = 0) -> nn.Module:
    net = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 3))
    return init_parameters(net, seed=seed, scale=3.0).eval()


@pytest.mark.parametrize("degree", [0, 1, 3, 5])
def test_kronrod_rule_is_exact_for_polynomials_up_to_degree_9(degree):
    weights = {"kronrod": KRONROD_VALUE, "boole": KRONROD_VALUE - KRONROD_ERROR}
    for k in range(12):
        exact = 1 / (k + 1)
        assert (abs(weights["kronrod"] @ KRONROD_NODES**k - exact) < 1e-12) == (k <= 9)
        assert (abs(weights["boole"] @ KRONROD_NODES**k - exact) < 1e-12) == (k <= 5)
    assert (KRONROD_VALUE > 0).all()
    # a model whose path integrand is a polynomial: exact and certified with one Kronrod panel
    w = torch.tensor([0.5, -0.3, 0.8])
    x = torch.tensor([[1.0, 0.5, 0.7], [0.3, -1.2, 0.9]])
    model = ex.wrap(Power(w, degree + 1), modality="tabular")
    exp = ex.explain(model, x, "ig", target=0, tolerance=1e-5, progress=False)
    s = x @ w
    torch.testing.assert_close(exp.attributions, x * w * s[:, None] ** degree, rtol=1e-5, atol=1e-6)
    expected = MIN_STEPS if degree <= 1 else MIN_STEPS + 2  # trapezoids are exact up to degree 1
    assert exp.extras["steps_used"].tolist() == [expected] * 2
    assert (exp.extras["error_estimate"] <= 1e-5).all()


def test_smooth_network_reaches_the_tolerance_with_fewer_evaluations_than_trapezoid_panels(
    smooth_case,
):
    net, x, target, ref = smooth_case
    exp = ex.explain(net, x, "ig", target=target, tolerance=0.01, progress=False)
    before = trapezoid_only(net, x, target, 0.01)
    ours, trapezoids = int(exp.extras["steps_used"].sum()), int(before.steps_used.sum())
    print(f"\nsmooth CNN, evaluations for 1%: Kronrod panels {ours}, trapezoid panels {trapezoids}")
    assert exp.extras["converged"].all() and before.converged.all()
    assert ours <= 0.8 * trapezoids
    assert true_errors(exp.attributions, ref).max() <= 0.01


def test_relu_network_costs_no_more_than_with_trapezoid_panels(relu_case):
    net, x, target, ref = relu_case
    exp = ex.explain(net, x, "ig", target=target, tolerance=0.01, progress=False)
    before = trapezoid_only(net, x, target, 0.01)
    assert int(exp.extras["steps_used"].sum()) <= 1.02 * int(before.steps_used.sum())
    assert exp.extras["converged"].all()
    assert true_errors(exp.attributions, ref).max() <= 0.015


def test_error_estimate_covers_the_true_error_on_a_tiny_gelu_mlp():
    model = ex.wrap(gelu_mlp(), modality="tabular")
    x = make_rows(16, seed=3) * 2  # large inputs: a clearly nonlinear path
    target = model.net(x).argmax(1)
    ref = reference(model, x, target)
    covered, steps = [], {}
    for tol in (0.05, 0.01, 0.001):
        exp = ex.explain(model, x, "ig", target=target, tolerance=tol, progress=False)
        errors = true_errors(exp.attributions, ref)
        covered.append(exp.extras["error_estimate"] >= errors)
        steps[tol] = int(exp.extras["steps_used"].sum())
        assert exp.extras["converged"].all() and errors.max() <= tol
    fraction = float(torch.cat(covered).float().mean())
    print(f"\nGELU MLP: estimate >= true error on {fraction:.0%}; evaluations {steps}")
    assert fraction >= 0.9
    assert steps[0.001] < trapezoid_only(model.net, x, target, 0.001).steps_used.sum()


def test_kronrod_estimate_trusts_the_convergence_rate_only_where_the_path_slope_confirms_it():
    # geometric convergence (rho = 0.04): the estimate is ||K7 - B5|| sqrt(rho)
    assert kronrod_scale(1.0, 25.0, 0.1, 2.5, residual=0.01) == pytest.approx((0.2, True))
    # the exact error of the slope's integral exceeds what the same rule predicts for it:
    # the estimate grows by that factor, up to ||K7 - B5|| itself
    scale, smooth = kronrod_scale(1.0, 25.0, 0.1, 2.5, residual=0.04)
    assert smooth and scale == pytest.approx(0.2 * 0.04 / 0.02)
    assert kronrod_scale(1.0, 25.0, 0.1, 2.5, residual=1.0) == (1.0, True)
    # float32 rounding of the outputs is not evidence
    assert kronrod_scale(1.0, 25.0, 0.1, 2.5, residual=0.04, noise=0.03) == pytest.approx(
        (0.2, True)
    )
    # no geometric convergence: the indicator itself, and the panel is demoted when refined
    assert kronrod_scale(1.0, 2.0, 0.1, 0.2, residual=0.0) == (1.0, False)
