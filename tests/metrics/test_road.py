"""ROAD (remove and debias, Rong et al. 2022): the noisy linear imputation against known
answers (a linear ramp is its own 8-neighbour mean; a constant stays constant at the
borders; a dense system built pixel by pixel), the curves on a model whose output is the
mean of one region, and the group in ``ex.evaluate`` (opt-in, one row per sample, curves
merged with deletion's, options checked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_helpers import RecordsBatchSizes, inputs_for, method_params, model_for
from torch import nn

import explainer as ex
from explainer._runtime import Runtime
from explainer.metrics.road import (
    ROAD_FRACTIONS,
    noisy_linear_imputation,
    removal_counts,
    road_curves,
)
from explainer.metrics.settings import DEFAULT_GROUPS, METRIC_GROUPS, EvaluationSettings

ROAD_METRICS = ("road_morf", "road_lerf", "road_gain")
SMALL_BUDGET = 100_000  # bytes: chunks of a row or a few (16x16 images, the small CNN)


def ramp(c: int = 2, h: int = 12, w: int = 14) -> torch.Tensor:
    """A different linear function a*row + b*col + d on each channel (float64)."""
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    return torch.stack([(0.3 + k) * rows - (1.7 - k) * cols + 2.0 * k for k in range(c)])


def interior_mask(h: int, w: int, share: float, seed: int) -> torch.Tensor:
    """A random mask of about ``share`` of the pixels, off the border rows and columns."""
    mask = torch.rand((h, w), generator=torch.Generator().manual_seed(seed)) < share
    mask[0], mask[-1], mask[:, 0], mask[:, -1] = False, False, False, False
    return mask


def dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The oracle: the same system written pixel by pixel, as a dense matrix."""
    _, h, w = image.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    where = {p: i for i, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), image.shape[0]))
    for i, (y, x) in enumerate(unknown):
        neighbours = [
            (y + dy, x + dx, 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0) and 0 <= y + dy < h and 0 <= x + dx < w
        ]
        total = sum(wt for _, _, wt in neighbours)
        a[i, i] = 1.0
        for ny, nx, wt in neighbours:
            if (ny, nx) in where:
                a[i, where[ny, nx]] -= wt / total
            else:
                b[i] += wt / total * image[:, ny, nx]
    out = image.copy()
    solution = np.linalg.solve(a, b)
    for i, (y, x) in enumerate(unknown):
        out[:, y, x] = solution[i]
    return out


# -- the imputation ---------------------------------------------------------------------


@pytest.mark.parametrize("share, seed", [(0.3, 0), (0.8, 1), (1.0, 2)])
def test_imputation_reproduces_a_linear_ramp_inside_the_removed_region(share, seed):
    image = ramp()
    removed = interior_mask(*image.shape[1:], share, seed)
    assert removed.sum() > 10
    out = noisy_linear_imputation(image, removed, noise_std=0.0)
    torch.testing.assert_close(out, image, atol=1e-9, rtol=0)
    # a function that is not harmonic (a paraboloid) is not reproduced: the test can fail
    curved = image + torch.arange(12, dtype=torch.float64)[:, None] ** 2
    assert (noisy_linear_imputation(curved, removed) - curved).abs().max() > 0.1


def test_the_weights_are_renormalised_at_the_borders_and_corners():
    image = torch.full((3, 6, 7), 0.7, dtype=torch.float64)
    removed = torch.zeros(6, 7, dtype=torch.bool)
    removed[0], removed[:, -1], removed[-1, 0] = True, True, True  # an edge, a side, a corner
    out = noisy_linear_imputation(image, removed)
    torch.testing.assert_close(out, image, atol=1e-12, rtol=0)


def test_imputation_equals_the_dense_system_built_pixel_by_pixel():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand((3, 7, 9), generator=gen, dtype=torch.float64)
    removed = torch.rand((7, 9), generator=gen) < 0.6
    out = noisy_linear_imputation(image, removed)
    expected = dense_imputation(image.numpy(), removed.numpy())
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def test_known_pixels_are_never_changed_and_the_noise_is_seeded():
    gen = torch.Generator().manual_seed(4)
    image = torch.rand((3, 16, 16), generator=gen)
    removed = torch.rand((16, 16), generator=gen) < 0.5
    noisy = noisy_linear_imputation(image, removed, 0.2, torch.Generator().manual_seed(0))
    again = noisy_linear_imputation(image, removed, 0.2, torch.Generator().manual_seed(0))
    clean = noisy_linear_imputation(image, removed, 0.0)
    assert noisy.dtype == image.dtype and noisy.shape == image.shape
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])  # bit for bit
    assert torch.equal(clean[:, ~removed], image[:, ~removed])
    assert torch.equal(noisy, again)
    added = (noisy - clean)[:, removed]
    assert added.abs().min() > 0 and 0.1 < float(added.std()) < 0.3  # the noise, on each


def test_removing_nothing_returns_the_image_and_removing_everything_is_refused():
    image = torch.rand(3, 5, 5)
    assert torch.equal(noisy_linear_imputation(image, torch.zeros(5, 5, dtype=torch.bool)), image)
    with pytest.raises(ex.InputError, match="`removed`"):
        noisy_linear_imputation(image, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ex.InputError, match="`removed`"):
        noisy_linear_imputation(image, torch.zeros(4, 5, dtype=torch.bool))


def test_removal_counts_stay_below_every_pixel():
    assert removal_counts(ROAD_FRACTIONS, 100) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert removal_counts((0.0, 0.99), 10) == [0, 9]


# -- the curves ---------------------------------------------------------------------------


class RegionMean(nn.Module):
    """f(x) = mean of the top-left 4x4 pixels, all channels (a regression)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :4, :4].mean(dim=(1, 2, 3))[:, None]


def distance_map(n: int, corner: tuple[int, int], size: int = 16) -> torch.Tensor:
    """Relevance that falls with the distance to ``corner``, on every channel: (n, 3, H, W)."""
    rows = torch.arange(size, dtype=torch.float32)[:, None] - corner[0]
    cols = torch.arange(size, dtype=torch.float32)[None, :] - corner[1]
    return (-(rows**2 + cols**2).sqrt()).expand(n, 3, size, size).clone()


def test_a_map_on_the_region_the_model_reads_gets_a_higher_gain_than_one_elsewhere():
    model = ex.wrap(RegionMean(), modality="image", task="regression")
    x = 0.2 * torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(5))
    x[:, :, :4, :4] += 0.8  # the region is bright: imputing it from its dark surroundings dims it
    t = torch.zeros(4, dtype=torch.long)

    def curves(corner: tuple[int, int]) -> dict[str, torch.Tensor]:
        maps = distance_map(4, corner)
        gen = torch.Generator().manual_seed(0)
        with model.evaluating():
            return {
                order: road_curves(model, x, t, maps, ROAD_FRACTIONS, order, gen)
                for order in ("morf", "lerf")
            }

    right, wrong = curves((1, 1)), curves((14, 14))
    assert right["morf"].shape == (4, len(ROAD_FRACTIONS))
    gain = {
        k: c["lerf"].mean(1) - c["morf"].mean(1) for k, c in (("right", right), ("wrong", wrong))
    }
    assert bool((right["morf"].mean(1) < wrong["morf"].mean(1)).all())
    assert bool((right["lerf"].mean(1) > wrong["lerf"].mean(1)).all())
    assert bool((gain["right"] > 0.3).all()) and bool((gain["wrong"] < -0.3).all())
    # LeRF on the right map never reaches the region (16 of 256 pixels): the output is unchanged
    torch.testing.assert_close(
        right["lerf"], x[:, :, :4, :4].mean(dim=(1, 2, 3)).double()[:, None].expand(4, 9)
    )


def test_curves_do_not_depend_on_the_memory_budget():
    recorder = RecordsBatchSizes(model_for("image").net)
    model = ex.wrap(recorder, modality="image")
    x = inputs_for("image", 3)
    maps = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0, 1, 2])

    def run(budget: int) -> torch.Tensor:
        recorder.sizes.clear()
        with model.evaluating():
            gen = torch.Generator().manual_seed(1)
            return road_curves(model, x, t, maps, (0.25, 0.5), "morf", gen, Runtime(False, budget))

    whole = run(2**30)
    assert recorder.sizes[-1] == 6  # 3 images x 2 fractions in one pass
    parts = run(SMALL_BUDGET)
    assert max(recorder.sizes[-3:]) < 6  # the same rows in several passes
    # the same imputed rows (and noise draws): only the network's float32 sums may differ
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=1e-5)


# -- the group in ex.evaluate -------------------------------------------------------------


def cnn_explanations(n: int = 4) -> tuple[ex.Model, list]:
    model = model_for("image")
    x = inputs_for("image", n)
    methods = ["saliency", "gradient_x_input"]
    params = {m: method_params(m, "image") for m in methods}
    return model, [ex.explain(model, x, m, progress=False, **params[m]) for m in methods]


def test_evaluate_road_gives_one_row_per_sample_and_the_curves():
    model, exps = cnn_explanations()
    scores = ex.evaluate(exps, model, metrics=["road"], progress=False)
    assert {r["metric"] for r in scores.rows} == set(ROAD_METRICS)
    for method in ("saliency", "gradient_x_input"):
        for metric in ROAD_METRICS:
            rows = [r for r in scores.rows if r["method"] == method and r["metric"] == metric]
            assert [r["sample"] for r in rows] == [0, 1, 2, 3]
            assert all(np.isfinite(r["value"]) for r in rows)
        gain = scores.values(method, "road_gain")
        diff = scores.values(method, "road_lerf") - scores.values(method, "road_morf")
        np.testing.assert_allclose(gain, diff)
        curves = scores.curves[method]
        assert set(curves) == {"road_morf", "road_lerf"}
        assert curves["road_morf"].shape == (4, len(ROAD_FRACTIONS))
        np.testing.assert_allclose(curves["road_morf"].mean(1), scores.values(method, "road_morf"))
    assert scores.settings["road_fractions"] == list(ROAD_FRACTIONS)
    assert any("ROAD" in v.check for v in scores.verdicts())
    again = ex.evaluate(exps, model, metrics=["road"], progress=False)
    assert again.rows == scores.rows  # seeded


def test_road_is_opt_in_and_leaves_the_other_groups_results_unchanged():
    model, exps = cnn_explanations(3)
    assert "road" in METRIC_GROUPS and "road" not in DEFAULT_GROUPS
    assert "road" not in EvaluationSettings.from_options().groups
    assert "road" in EvaluationSettings.from_options("all").groups
    assert EvaluationSettings.from_options(["default", "road"]).groups == {*DEFAULT_GROUPS, "road"}
    kw = dict(features="pixels", steps=5, progress=False)
    alone = ex.evaluate(exps, model, ["faithfulness", "infidelity"], **kw)
    both = ex.evaluate(exps, model, ["faithfulness", "infidelity", "road"], **kw)
    assert [r for r in both.rows if not r["metric"].startswith("road")] == alone.rows
    assert "road_fractions" not in alone.settings
    curves = both.curves["saliency"]  # deletion's curves and ROAD's, merged
    assert {"deletion", "deletion_lerf", "road_morf", "road_lerf"} <= set(curves)
    np.testing.assert_array_equal(curves["deletion"], alone.curves["saliency"]["deletion"])


class Conditioned(nn.Module):
    """A CNN whose channels are scaled by a per-sample forward argument."""

    def __init__(self) -> None:
        super().__init__()
        self.net = model_for("image").net

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(x * c[:, :, None, None])


def test_samples_scored_one_at_a_time_append_their_curves():
    model = ex.wrap(Conditioned(), modality="image")
    x = inputs_for("image", 3)
    c = 0.5 + torch.rand((3, 3), generator=torch.Generator().manual_seed(8))
    exp = ex.explain(model, x, "saliency", forward_args=(c,), progress=False)
    scores = ex.evaluate(exp, model, ["faithfulness", "road"], features="pixels", steps=4,
                         progress=False)  # fmt: skip
    assert [r["sample"] for r in scores.rows if r["metric"] == "road_gain"] == [0, 1, 2]
    curves = scores.curves["saliency"]
    assert curves["road_lerf"].shape == (3, 9) and curves["deletion"].shape == (3, 5)


def test_tabular_explanations_get_no_road_rows():
    model = model_for("tabular")
    exp = ex.explain(model, inputs_for("tabular", 4), "saliency", progress=False)
    scores = ex.evaluate(exp, model, ["road"], progress=False)
    assert len(scores) == 0 and not scores.curves


@pytest.mark.parametrize(
    "value", [(), (0.1, 1.0), (-0.1,), (True,), ("half",), 0.5, None, [0.2, float("nan")]]
)
def test_a_bad_road_fraction_is_an_input_error_naming_the_option(value):
    with pytest.raises(ex.InputError, match="`road_fractions`") as err:
        EvaluationSettings.from_options(["road"], road_fractions=value)
    assert "Pass e.g. road_fractions=" in str(err.value)


def test_fractions_are_taken_as_floats_and_a_misspelled_group_is_refused():
    s = EvaluationSettings.from_options(["road"], road_fractions=[0, np.float32(0.5), 0.75])
    assert s.road_fractions == (0.0, 0.5, 0.75)
    model, exps = cnn_explanations(2)
    with pytest.raises(ex.InputError, match="`metrics`"):
        ex.evaluate(exps, model, metrics=["roads"], progress=False)
