"""kernel_shap's default estimator is exact wherever the regression is: games of order <= 2.

An additive game, or one with pairwise interactions only, has a linear odd part, so paired
coalitions pin its Shapley values down as soon as the pairs seen have rank M (M pairs: the
full one and M - 1 singletons, a budget of 2M). The Gaussian-process estimator must then be
exact at every budget, also where the pairs outnumber the rank of its higher-order kernel
(2^(M-1) - M: 4 for M = 4, 11 for M = 5), which is where a jittered solve once shrank the
first-order coefficients (errors up to 1/3 of the largest Shapley value). Oracle: every one
of the 2^M coalitions of the game v(S) = mean over background rows b of f(x_S, b_~S).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from attribution_helpers import init_parameters, relative_l2, seeded
from torch import nn

import explainer as ex

TOL = 1e-5  # relative to the largest Shapley value: float32 model outputs, exact otherwise
WEIGHTS = (1.5, -2.0, 3.0, -0.5, 2.5)  # distinct, so that a shrunk or mixed fit shows


class PairwiseGame(nn.Module):
    """f(x) = sum_i w_i x_i + sum_{i<j} v_ij x_i x_j: interactions of order 2 at most."""

    def __init__(self, m: int, seed: int = 0) -> None:
        super().__init__()
        gen = seeded(seed)
        self.register_buffer("w", torch.randn(m, generator=gen))
        self.register_buffer("v", torch.randn(m, m, generator=gen).triu(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.w + ((x @ self.v) * x).sum(1))[:, None]


def linear_model(m: int) -> nn.Linear:
    net = nn.Linear(m, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([WEIGHTS[:m]]))
        net.bias.fill_(0.5)
    return net


def rows(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The explained row x (M,) and a non-zero background (3, M)."""
    return torch.randn(m, generator=seeded(1)), torch.randn((3, m), generator=seeded(2)) + 1.0


@torch.no_grad()
def exact_shapley(net: nn.Module, x: torch.Tensor, background: torch.Tensor) -> np.ndarray:
    """Shapley values of v(S) = mean_b net(x_S, b_~S)[0] by enumerating all 2^M coalitions."""
    m = len(x)
    z = (torch.arange(2**m)[:, None] >> torch.arange(m)) & 1 == 1  # coalition c holds k iff bit k
    table = torch.where(z[:, None], x, background[None])  # (2^M, B, M)
    v = net(table.reshape(-1, m))[:, 0].double().reshape(2**m, -1).mean(1).numpy()
    weight = [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    phi = np.zeros(m)
    for c in range(2**m - 1):  # every coalition S but the full one, and each k not in S
        for k in range(m):
            if not c >> k & 1:
                phi[k] += weight[bin(c).count("1")] * (v[c | 1 << k] - v[c])
    return phi


def kernel_shap_values(
    net: nn.Module, x: torch.Tensor, background: torch.Tensor, n_samples: int, **params
) -> np.ndarray:
    exp = ex.explain(
        ex.wrap(net, modality="tabular"),
        x[None],
        "kernel_shap",
        target=0,
        background=background,
        n_samples=n_samples,
        progress=False,
        **params,
    )
    assert int(exp.extras["evaluations"][0]) <= n_samples
    return exp.extras["feature_values"][0].numpy()


def errors_by_budget(net: nn.Module, m: int, **params) -> dict[int, float]:
    """Largest error / largest |phi| at every budget from 2M to 2^M."""
    x, background = rows(m)
    exact = exact_shapley(net, x, background)
    return {
        n: float(np.abs(kernel_shap_values(net, x, background, n, **params) - exact).max())
        / float(np.abs(exact).max())
        for n in range(2 * m, 2**m + 1)
    }


@pytest.mark.parametrize("m", [4, 5])
def test_default_estimator_is_exact_on_additive_games_below_full_budget(m):
    net = linear_model(m)
    x, background = rows(m)
    analytic = (
        np.array(WEIGHTS[:m]) * (x - background.mean(0)).numpy()
    )  # phi_i = w_i (x_i - mean b_i)
    np.testing.assert_allclose(exact_shapley(net, x, background), analytic, rtol=1e-5, atol=1e-6)
    errors = errors_by_budget(net, m)
    assert max(errors.values()) < TOL, f"relative error by budget: {errors}"


@pytest.mark.parametrize("m", [4, 5])
def test_default_estimator_is_exact_on_pairwise_games_wherever_the_regression_is(m):
    net = PairwiseGame(m).eval()
    x, background = rows(m)
    exact = exact_shapley(net, x, background)
    additive = np.array(
        [
            float(
                net(torch.where(torch.arange(m) == k, x, background)).mean()
                - net(background).mean()
            )
            for k in range(m)
        ]
    )  # each player's own marginal effect: what phi would be without the pairwise terms
    assert relative_l2(torch.as_tensor(additive), torch.as_tensor(exact)) > 0.1
    regression = errors_by_budget(net, m, estimator="regression")
    assert sum(e < TOL for e in regression.values()) >= len(regression) // 2  # order <= 2 indeed
    errors = errors_by_budget(net, m)
    # Every budget from 2M on, so every budget at which the regression is exact among them.
    assert max(errors.values()) < TOL, f"relative error by budget: {errors}"


def smooth_game(m: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tanh network: smooth, with interactions of every order."""
    net = nn.Sequential(nn.Linear(m, 16), nn.Tanh(), nn.Linear(16, 1))
    net = init_parameters(net, seed=5, scale=2.0).eval()
    return net, torch.randn((2, m), generator=seeded(51)), torch.randn((4, m), generator=seeded(52))


@pytest.mark.parametrize(
    ("m", "budgets"),
    [(10, (32, 48, 64)), (5, (24, 26, 28))],  # M = 5: more pairs than the kernel's rank 11
)
def test_default_estimator_beats_the_regression_at_small_budgets_on_a_smooth_game(m, budgets):
    net, x, background = smooth_game(m)
    exact = [exact_shapley(net, x[i], background) for i in range(len(x))]

    def mean_error(n_samples: int, estimator: str) -> float:
        return float(
            np.mean(
                [
                    relative_l2(
                        torch.as_tensor(
                            kernel_shap_values(
                                net, x[i], background, n_samples, estimator=estimator, seed=seed
                            )
                        ),
                        torch.as_tensor(e),
                    )
                    for seed in range(5)
                    for i, e in enumerate(exact)
                ]
            )
        )

    gp = {n: mean_error(n, "gp") for n in budgets}
    regression = {n: mean_error(n, "regression") for n in budgets}
    print(f"\nM={m}: mean relative L2 error by budget, gp {gp}, regression {regression}")
    assert all(gp[n] < regression[n] for n in budgets)
    assert np.mean([regression[n] / gp[n] for n in budgets]) > 1.3
