"""kernel_shap against exact Shapley values, computed by enumerating every coalition.

The game is the one kernel_shap documents: v(S) = mean over background rows b of
f(x_S, b_~S)[target] (features in S from the input, the others from the reference). With a
budget of 2^M coalitions kernel_shap must be exact; below it, its error must shrink as the
budget grows. shap's Exact explainer (same interventional game) is a second oracle.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shap
import torch
from attribution_helpers import init_parameters, make_cnn, make_images, relative_l2, seeded
from torch import nn

import explainer as ex

M = 10  # features; 2^10 = 1024 coalitions


class InteractionMLP(nn.Module):
    """A nonlinear tabular model with strong feature interactions (tanh MLP plus products)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(M, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = torch.stack(
            [x[:, 0] * x[:, 1], x[:, 2] * x[:, 3] * x[:, 4], torch.sin(2 * x[:, 5] * x[:, 6])], 1
        )
        return self.mlp(x) + pairs


@pytest.fixture(scope="module")
def game():
    net = init_parameters(InteractionMLP(), seed=3, scale=2.0).eval()
    x = torch.randn((2, M), generator=seeded(11))
    background = torch.randn((4, M), generator=seeded(12))
    targets = torch.tensor([0, 2])
    return net, x, background, targets


@torch.no_grad()
def exact_shapley(
    forward, x: torch.Tensor, reference: torch.Tensor, groups: torch.Tensor, target: int
) -> np.ndarray:
    """Shapley values of the groups of one sample ``x`` by enumerating all 2^M coalitions.

    ``reference`` is (B, *x.shape); ``groups`` holds a group id 0..M-1 per element of x.
    """
    m = int(groups.max()) + 1
    coalitions = torch.tensor(list(itertools.product([False, True], repeat=m)))  # (2^M, M)
    keep = coalitions[:, groups]  # (2^M, *x.shape)
    rows = torch.where(keep[:, None], x, reference[None])  # (2^M, B, *x.shape)
    out = (
        forward(rows.reshape(-1, *x.shape))[:, target].double().reshape(len(coalitions), -1).mean(1)
    )
    value = {tuple(c.tolist()): float(v) for c, v in zip(coalitions, out, strict=True)}
    phi = np.zeros(m)
    for coalition, v_with in value.items():
        for k in range(m):
            if not coalition[k]:
                continue
            without = list(coalition)
            without[k] = False
            size = sum(coalition) - 1  # |S| for S = coalition without k
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            phi[k] += weight * (v_with - value[tuple(without)])
    return phi


@pytest.fixture(scope="module")
def exact(game):
    net, x, background, targets = game
    groups = torch.arange(M)
    return np.stack(
        [exact_shapley(net, x[i], background, groups, int(targets[i])) for i in range(len(x))]
    )


def ours(game, n_samples: int, seed: int = 0) -> np.ndarray:
    net, x, background, targets = game
    exp = ex.explain(
        ex.wrap(net, modality="tabular"),
        x,
        "kernel_shap",
        target=targets,
        background=background,
        n_samples=n_samples,
        seed=seed,
        progress=False,
    )
    return exp.attributions.double().numpy()


def test_enumeration_oracle_agrees_with_shap_exact_explainer(game, exact):
    net, x, background, targets = game
    for i in range(len(x)):

        def f(data: np.ndarray, t: int = int(targets[i])) -> np.ndarray:
            with torch.no_grad():
                return net(torch.as_tensor(data, dtype=torch.float32))[:, t].double().numpy()

        masker = shap.maskers.Independent(background.numpy(), max_samples=len(background))
        values = shap.explainers.Exact(f, masker)(x[i : i + 1].numpy()).values[0]
        np.testing.assert_allclose(values, exact[i], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_the_game_has_interactions(game, exact):
    # Sanity: in an additive game each Shapley value is the feature's own marginal effect, which
    # any kernel_shap budget recovers; check this game is far from that.
    net, x, background, targets = game
    additive = np.stack(
        [
            [
                float(
                    net(torch.where(torch.arange(M) == k, x[i], background).float())[
                        :, targets[i]
                    ].mean()
                    - net(background)[:, targets[i]].mean()
                )
                for k in range(M)
            ]
            for i in range(len(x))
        ]
    )
    assert relative_l2(torch.as_tensor(additive), torch.as_tensor(exact)) > 0.05


def test_kernel_shap_is_exact_at_full_budget(game, exact):
    phi = ours(game, n_samples=2**M)
    err = relative_l2(torch.as_tensor(phi), torch.as_tensor(exact))
    print(f"\nkernel_shap relative L2 error at the full budget 2^{M}: {err:.2e}")
    assert err < 1e-6


def test_kernel_shap_efficiency_holds_at_any_budget(game, exact):
    for n_samples in (16, 64, 2**M):
        phi = ours(game, n_samples=n_samples)
        np.testing.assert_allclose(phi.sum(1), exact.sum(1), rtol=1e-5, atol=1e-5)


def mean_error(game, exact, budget: int, seeds=range(5)) -> float:
    return float(
        np.mean(
            [
                relative_l2(torch.as_tensor(ours(game, budget, seed)), torch.as_tensor(exact))
                for seed in seeds
            ]
        )
    )


def test_kernel_shap_error_shrinks_as_the_budget_grows(game, exact):
    # 112 is where whole coalition sizes 1, 2, 8, 9 would just fit: enumerating them all and
    # leaving nothing for the middle sizes once made the error there worse than at 64.
    budgets = (32, 64, 112, 256)
    error = {budget: mean_error(game, exact, budget) for budget in budgets}
    print(f"\nkernel_shap mean relative L2 error over 5 seeds, by budget: {error}")
    assert all(error[a] > error[b] for a, b in zip(budgets, budgets[1:], strict=False))
    assert error[256] < 0.05  # small at a moderate budget (a quarter of the 2^M coalitions)


@pytest.mark.parametrize("budget", [32, 128])
def test_kernel_shap_is_more_accurate_than_shap_kernel_explainer_at_the_same_budget(
    game, exact, budget
):
    net, x, background, targets = game

    def f(data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(data, dtype=torch.float32)).double().numpy()

    state = np.random.get_state()  # shap samples from numpy's global generator
    try:
        theirs = []
        for seed in range(5):
            np.random.seed(seed)
            values = np.asarray(
                shap.KernelExplainer(f, background.numpy()).shap_values(
                    x.numpy(), nsamples=budget, silent=True
                )
            )
            phi = np.stack([values[i, :, int(targets[i])] for i in range(len(x))])
            theirs.append(relative_l2(torch.as_tensor(phi), torch.as_tensor(exact)))
    finally:
        np.random.set_state(state)
    mine = mean_error(game, exact, budget)
    print(
        f"\nmean relative L2 error at budget {budget}: ours {mine:.3f}, shap KernelExplainer {np.mean(theirs):.3f}"
    )
    assert mine < np.mean(theirs)


def test_shap_kernel_explainer_at_full_budget_matches_the_enumeration_oracle(game, exact):
    # A second implementation of kernel SHAP (shap's, same interventional game) checks the
    # oracle's game definition.
    net, x, background, targets = game

    def f(data: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.as_tensor(data, dtype=torch.float32)).double().numpy()

    explainer = shap.KernelExplainer(f, background.numpy())
    values = explainer.shap_values(
        x.numpy(), nsamples=2**M, silent=True
    )  # (N, M, classes) in shap >= 0.45
    theirs = np.stack([np.asarray(values)[i, :, int(targets[i])] for i in range(len(x))])
    assert relative_l2(torch.as_tensor(theirs), torch.as_tensor(exact)) < 1e-4


# -- the image path: a feature mask of 6 groups on a small CNN ---------------------------


def six_group_mask(h: int = 16, w: int = 16) -> torch.Tensor:
    """(H, W) ids 0..5: a 2 x 3 grid of blocks."""
    rows = torch.arange(h)[:, None] * 2 // h
    cols = torch.arange(w)[None, :] * 3 // w
    return rows * 3 + cols


@pytest.mark.parametrize("use_background", [True, False])
def test_image_kernel_shap_with_six_groups_is_exact_at_full_budget(use_background):
    net = make_cnn(seed=4)
    x = make_images(2, seed=5)
    mask = six_group_mask()
    targets = torch.tensor([1, 2])
    background = make_images(3, seed=6) if use_background else None
    params = {"background": background} if use_background else {"fill": "zeros"}
    exp = ex.explain(
        ex.wrap(net, modality="image"),
        x,
        "kernel_shap",
        target=targets,
        feature_mask=mask,
        n_samples=2**6,
        progress=False,
        **params,
    )
    groups = mask[None].expand(3, -1, -1)
    sizes = torch.bincount(mask.reshape(-1)).double() * 3
    for i in range(len(x)):
        reference = background if use_background else torch.zeros(1, *x.shape[1:])
        phi = exact_shapley(net, x[i], reference, groups, int(targets[i]))
        np.testing.assert_allclose(
            exp.extras["feature_values"][i, :6].numpy(), phi, rtol=1e-5, atol=1e-6
        )
        # Attributions are densities: phi_k spread evenly over the elements of group k.
        density = torch.as_tensor(phi) / sizes
        torch.testing.assert_close(
            exp.attributions[i].double(), density[groups], rtol=1e-5, atol=1e-8
        )
        assert abs(phi).max() > 1e-4, "a game this flat would not test anything"


def test_image_kernel_shap_attributions_sum_to_output_minus_empty_coalition_value():
    net = make_cnn(seed=4)
    x = make_images(3, seed=5)
    background = make_images(4, seed=6)
    targets = torch.tensor([0, 1, 2])
    for params in (
        {"feature_mask": six_group_mask(), "n_samples": 20},
        {"n_segments": 10, "n_samples": 40},
    ):
        exp = ex.explain(
            ex.wrap(net, modality="image"),
            x,
            "kernel_shap",
            target=targets,
            background=background,
            progress=False,
            **params,
        )
        with torch.no_grad():
            f_x = net(x)[torch.arange(3), targets]
            v_empty = net(background)[:, targets].mean(0)
        torch.testing.assert_close(
            exp.attributions.sum((1, 2, 3)), f_x - v_empty, rtol=1e-4, atol=1e-5
        )
