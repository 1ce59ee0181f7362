"""kernel_shap's default estimator (paired coalitions + Gaussian-process posterior) on games
small enough to enumerate: accuracy against exact Shapley values and against shap's
Permutation explainer at the same budget, exactness where the theory says so, and an error
estimate that tracks the true error.

Every game is v(S) = mean over references b of f(x_S, b_~S)[target]; exact values come from
all 2^M coalitions (M <= 12). shap's Permutation explainer runs on the same value table, so
both spend exactly the coalition evaluations they are given.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import shap
import torch
from attribution_helpers import init_parameters, make_cnn, make_images, seeded
from torch import nn

import explainer as ex
from explainer.methods.segmentation import superpixels

SEEDS = range(5)


@torch.no_grad()
def value_table(
    net: nn.Module, x: torch.Tensor, reference: torch.Tensor, groups: torch.Tensor, target: int
) -> np.ndarray:
    """v at all 2^M coalitions; coalition index c holds player k iff bit k of c is set."""
    m = int(groups.max()) + 1
    z = (torch.arange(2**m)[:, None] >> torch.arange(m)) & 1 == 1  # (2^M, M)
    rows = torch.where(z[:, groups][:, None], x, reference[None])  # (2^M, B, *x.shape)
    return net(rows.reshape(-1, *x.shape))[:, target].double().reshape(2**m, -1).mean(1).numpy()


def exact_shapley(v: np.ndarray) -> np.ndarray:
    m = int(math.log2(len(v)))
    index = np.arange(len(v))
    size = np.array([bin(c).count("1") for c in index])
    weight = np.array(
        [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    )
    phi = np.zeros(m)
    for k in range(m):
        without = index[(index >> k) & 1 == 0]
        phi[k] = np.sum(weight[size[without]] * (v[without | (1 << k)] - v[without]))
    return phi


def shap_permutation(v: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """shap's antithetic permutation estimator on the value table (the strongest library baseline)."""
    m = int(math.log2(len(v)))
    powers = 1 << np.arange(m)

    def game(z: np.ndarray) -> np.ndarray:
        return v[(z.astype(int) * powers).sum(1)]

    state = np.random.get_state()  # shap seeds numpy's global generator
    try:
        explainer = shap.explainers.Permutation(
            game, shap.maskers.Independent(np.zeros((1, m))), seed=seed
        )
        return explainer(np.ones((1, m)), max_evals=budget, silent=True).values[0]
    finally:
        np.random.set_state(state)


def relative_error(estimate: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


# -- the games ----------------------------------------------------------------------------


class InteractionMLP(nn.Module):
    """Tabular, 10 columns: a tanh/ReLU MLP plus explicit 2nd- and 3rd-order products."""

    def __init__(self, m: int = 10) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(m, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = x[:, 0] * x[:, 1] + x[:, 2] * x[:, 3] * x[:, 4] + torch.sin(2 * x[:, 5] * x[:, 6])
        return self.mlp(x) + extra[:, None]


class Quadratic(nn.Module):
    """f(x) = a.x + x'Bx: its game has interactions of order 2 only."""

    def __init__(self, m: int = 10) -> None:
        super().__init__()
        gen = seeded(21)
        self.a, self.b = torch.randn(m, generator=gen), torch.randn(m, m, generator=gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.a + ((x @ self.b) * x).sum(1)
        return torch.stack([out, -out], 1)


def grid_mask(rows: int = 3, cols: int = 4, size: int = 16) -> torch.Tensor:
    """(H, W) ids of a rows x cols grid of blocks: 12 neighbouring 'superpixels'."""
    return (torch.arange(size)[:, None] * rows // size) * cols + torch.arange(size)[
        None, :
    ] * cols // size


@pytest.fixture(scope="module")
def tabular_game():
    net = init_parameters(InteractionMLP(), seed=3, scale=2.0).eval()
    x = torch.randn((2, 10), generator=seeded(11))
    background = torch.randn((4, 10), generator=seeded(12))
    targets = torch.tensor([0, 1])
    model = ex.wrap(net, modality="tabular")
    tables = [
        value_table(net, x[i], background, torch.arange(10), int(targets[i])) for i in range(2)
    ]
    return model, x, {"background": background}, targets, tables


@pytest.fixture(scope="module")
def image_game():
    net = make_cnn(seed=4)
    x = make_images(2, seed=5)
    background = make_images(2, seed=6)
    targets = torch.tensor([1, 2])
    mask = grid_mask()
    groups = mask[None].expand(3, -1, -1)
    model = ex.wrap(net, modality="image")
    tables = [value_table(net, x[i], background, groups, int(targets[i])) for i in range(2)]
    return model, x, {"background": background, "feature_mask": mask}, targets, tables


GAMES = ["tabular_game", "image_game"]


def run(game, n_samples: int, seed: int = 0, **params) -> ex.Explanation:
    model, x, fixed, targets, _ = game
    return ex.explain(
        model,
        x,
        "kernel_shap",
        target=targets,
        n_samples=n_samples,
        seed=seed,
        progress=False,
        **fixed,
        **params,
    )


def errors(game, n_samples: int, seeds=SEEDS) -> tuple[np.ndarray, np.ndarray]:
    """True and estimated relative errors, (seeds, samples) each."""
    exact = [exact_shapley(v) for v in game[4]]
    true, estimated = [], []
    for seed in seeds:
        exp = run(game, n_samples, seed)
        values = exp.extras["feature_values"].numpy()
        true.append([relative_error(values[i, : len(e)], e) for i, e in enumerate(exact)])
        estimated.append(exp.extras["error_estimate"].numpy())
    return np.array(true), np.array(estimated)


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GAMES)
def test_the_games_are_far_from_additive_and_from_second_order(name, request):
    # The pairing argument makes any estimator with antithetic samples exact up to order 2;
    # these games must have enough third-order (and higher) interaction to test anything.
    game = request.getfixturevalue(name)
    for v in game[4]:
        errs = [
            relative_error(shap_permutation(v, 2 * int(math.log2(len(v))) + 2, s), exact_shapley(v))
            for s in SEEDS
        ]
        assert np.mean(errs) > 0.01


@pytest.mark.parametrize("name", GAMES)
def test_error_shrinks_with_budget_and_beats_shap_permutation_at_equal_budget(name, request):
    game = request.getfixturevalue(name)
    budgets = (48, 96, 192, 384)
    ours = {b: errors(game, b)[0].mean() for b in budgets}
    theirs = {
        b: np.mean(
            [
                relative_error(shap_permutation(v, b, s), exact_shapley(v))
                for v in game[4]
                for s in SEEDS
            ]
        )
        for b in budgets
    }
    print(f"\n{name}: mean relative L2 error by budget, ours {ours}, shap Permutation {theirs}")
    assert all(ours[a] > ours[b] for a, b in zip(budgets, budgets[1:], strict=False))
    assert all(ours[b] < theirs[b] for b in budgets)
    assert all(ours[b] < theirs[b] / 2 for b in budgets[1:])  # from 96 = 2M + 2 + ~4M on


@pytest.mark.parametrize("name", GAMES)
@pytest.mark.parametrize("estimator", ["gp", "regression"])
def test_exact_at_full_budget_with_zero_error_estimate(name, estimator, request):
    game = request.getfixturevalue(name)
    exp = run(game, n_samples=len(game[4][0]), estimator=estimator)
    for i, v in enumerate(game[4]):
        np.testing.assert_allclose(
            exp.extras["feature_values"][i].numpy(), exact_shapley(v), rtol=1e-6, atol=1e-8
        )
    assert exp.extras["error_estimate"].abs().max() == 0
    assert exp.extras["evaluations"].tolist() == [len(game[4][0])] * 2


@pytest.mark.parametrize("name", GAMES)
@pytest.mark.parametrize("n_samples", [13, 30, 100])
def test_efficiency_holds_exactly_at_any_budget(name, n_samples, request):
    game = request.getfixturevalue(name)
    exp = run(game, n_samples)
    for i, v in enumerate(game[4]):
        assert abs(float(exp.extras["feature_values"][i].sum()) - (v[-1] - v[0])) < 1e-6 * max(
            1.0, abs(v[-1] - v[0])
        )
    assert (exp.extras["evaluations"] <= n_samples).all()
    assert (
        exp.extras["evaluations"] >= n_samples - 1
    ).all()  # pairs: an odd budget leaves one unused


def test_a_game_with_only_pairwise_interactions_is_recovered_exactly_from_2m_plus_2_evaluations():
    net = Quadratic().eval()
    x, background = (
        torch.randn((2, 10), generator=seeded(31)),
        torch.randn((3, 10), generator=seeded(32)),
    )
    exp = ex.explain(
        ex.wrap(net, modality="tabular"),
        x,
        "kernel_shap",
        target=0,
        background=background,
        n_samples=22,
        progress=False,
    )
    for i in range(2):
        exact = exact_shapley(value_table(net, x[i], background, torch.arange(10), 0))
        np.testing.assert_allclose(
            exp.extras["feature_values"][i].numpy(), exact, rtol=1e-6, atol=1e-6
        )
    assert exp.extras["error_estimate"].max() < 1e-6  # nothing left to estimate, and it knows


@pytest.mark.parametrize("name", GAMES)
def test_error_estimate_tracks_the_true_error(name, request):
    game = request.getfixturevalue(name)
    true, estimated = zip(
        *(errors(game, b, seeds=range(4)) for b in (40, 80, 160, 320)), strict=True
    )
    true, estimated = np.concatenate(true).ravel(), np.concatenate(estimated).ravel()
    correlation = np.corrcoef(np.log(true), np.log(estimated))[0, 1]
    ratio = np.exp(np.mean(np.log(estimated / true)))
    print(
        f"\n{name}: log-log correlation {correlation:.2f}, geometric mean estimate/true {ratio:.2f}"
    )
    assert correlation > 0.7
    assert 0.4 < ratio < 4  # neither wildly optimistic nor uselessly pessimistic


def test_beyond_the_process_capacity_the_rest_of_the_budget_corrects_the_residual(tabular_game):
    # A 1 MB memory budget caps the process at 256 pairs; the other ~240 pairs estimate its error.
    model, x, fixed, targets, tables = tabular_game
    exact = [exact_shapley(v) for v in tables]

    def capped(n_samples: int) -> tuple[np.ndarray, ex.Explanation]:
        exp = ex.explain(
            model,
            x,
            "kernel_shap",
            target=targets,
            n_samples=n_samples,
            progress=False,
            memory_budget="1MB",
            **fixed,
        )
        return np.array(
            [
                relative_error(exp.extras["feature_values"][i].numpy(), e)
                for i, e in enumerate(exact)
            ]
        ), exp

    head_only, _ = capped(2 * 256)  # what the process alone gets from its 256 pairs
    corrected, exp = capped(1000)
    print(
        f"\nrelative error with 256 pairs: {head_only}; plus a correction from 243 more: {corrected}"
    )
    assert corrected.mean() < 1.2 * head_only.mean()
    assert exp.extras["evaluations"].tolist() == [1000, 1000]
    assert (exp.extras["error_estimate"] > 0).all()


def test_regression_estimator_reports_a_bootstrap_error_estimate(tabular_game):
    exp = run(tabular_game, 200, estimator="regression")
    exact = [exact_shapley(v) for v in tabular_game[4]]
    true = [relative_error(exp.extras["feature_values"][i].numpy(), e) for i, e in enumerate(exact)]
    estimate = exp.extras["error_estimate"].numpy()
    assert ((estimate > 0.2 * np.array(true)) & (estimate < 1)).all()


def test_slic_on_pure_noise_falls_back_to_a_grid_of_about_n_segments():
    noise = torch.rand((3, 16, 16), generator=seeded(41))
    labels = superpixels(noise, n_segments=16)
    assert 12 <= int(labels.max()) + 1 <= 20
    exp = ex.explain(
        ex.wrap(make_cnn(), modality="image"),
        noise[None],
        "kernel_shap",
        target=0,
        n_segments=16,
        n_samples=64,
        progress=False,
    )
    assert int(exp.extras["n_features"][0]) >= 12


@pytest.mark.parametrize("with_graph", [False, True])
def test_the_design_is_seeded_distinct_pairs_with_every_singleton(with_graph):
    from explainer.methods._shapley.design import bayes_design
    from explainer.methods.segmentation import group_adjacency

    adjacency = group_adjacency(grid_mask()) if with_graph else None
    first = bayes_design(12, 300, np.random.default_rng(7), adjacency)
    again = bayes_design(12, 300, np.random.default_rng(7), adjacency)
    assert first.shape == (300, 12) and np.array_equal(first, again)
    pairs = {min(z.tobytes(), (~z).tobytes()) for z in first}
    assert len(pairs) == 300  # no coalition twice, and never both sides of a pair
    assert {tuple(np.flatnonzero(z)) for z in first if z.sum() == 1} == {(i,) for i in range(12)}
    assert not first.all(1).any() and first.any(1).all()  # the full/empty pair is the caller's


@pytest.mark.parametrize("m", [1, 2, 3, 7, 16, 31])
def test_the_kernel_tables_equal_their_binomial_sum_definitions(m):
    """Krawtchouk K_k(h) = sum_j (-1)^j C(h, j) C(m-h, k-j) and the elementary symmetric
    e_j of m-1 values (p of them +1) = sum_a C(p, a) C(m-1-p, j-a) (-1)^(j-a), exactly."""
    from explainer.methods._shapley.gp import _tables

    def kraw(k, h):
        return sum((-1) ** j * math.comb(h, j) * math.comb(m - h, k - j) for j in range(k + 1))

    def esym(j, p):
        return sum(
            math.comb(p, a) * math.comb(m - 1 - p, j - a) * (-1) ** (j - a) for a in range(j + 1)
        )

    t = _tables(m)
    f64 = torch.float64
    want_k = torch.tensor(
        [[float(kraw(k, h)) for h in range(m + 1)] for k in range(m + 1)], dtype=f64
    )
    want_e = torch.tensor([[float(esym(j, p)) for p in range(m)] for j in range(m)], dtype=f64)
    assert torch.equal(t["krawtchouk"], want_k) and torch.equal(t["esym"], want_e)
