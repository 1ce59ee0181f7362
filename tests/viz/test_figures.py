"""Figures draw where the caller says: a one-panel figure on the Axes it is given (returned,
nothing new created), a grid in the empty Figure or SubFigure it is given; without a target
each returns a new Figure, never shown and not managed by pyplot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from attribution_helpers import make_cnn, make_images, make_mlp, make_rows
from matplotlib.figure import Figure, SubFigure

import explainer as ex
from explainer.viz import figures

FEATURES = [f"f{i}" for i in range(6)]
ONE_PANEL_KINDS = ("importance", "beeswarm", "waterfall")


@pytest.fixture(scope="module")
def tabular_exps():
    model = ex.wrap(make_mlp(), modality="tabular", class_names=["a", "b", "c"])
    return ex.explain_many(
        model,
        make_rows(5),
        ["saliency", "gradient_x_input"],
        feature_names=FEATURES,
        progress=False,
    )


@pytest.fixture(scope="module")
def image_exps():
    model = ex.wrap(make_cnn())
    return ex.explain_many(model, make_images(3), ["saliency", "gradient_x_input"], progress=False)


@pytest.fixture
def pyplot_layout(monkeypatch):
    """The user's ``fig, axes = plt.subplots(1, 3)``; fails the test if we make a Figure of
    our own or call pyplot.show, and closes the user's figure afterwards."""

    def refuse(*args, **kwargs):
        raise AssertionError("a drawing with a target must not create a figure or show one")

    monkeypatch.setattr(figures, "new_figure", refuse)
    monkeypatch.setattr(plt, "show", refuse)
    fig, axes = plt.subplots(1, 3)
    yield fig, axes
    plt.close(fig)


def test_bar_beeswarm_and_waterfall_land_on_the_users_own_subplots(tabular_exps, pyplot_layout):
    exp = tabular_exps[0]
    fig, axes = pyplot_layout
    before = plt.get_fignums()

    returned = (
        figures.plot_global_importance(exp, top=4, ax=axes[0]),
        figures.plot_beeswarm(exp, top=4, ax=axes[1]),
        figures.plot_waterfall(exp, index=2, top=3, ax=axes[2]),
    )

    assert all(r is a for r, a in zip(returned, axes, strict=True))
    assert plt.get_fignums() == before, "no new pyplot figure"
    assert fig.axes == list(axes), "no Axes added to the user's figure (colorbar, twin, ...)"
    assert len(axes[0].patches) == 4, "one bar per top feature"
    assert len(axes[1].collections) == 4, "one dot cloud per top feature"
    assert sum(len(c.get_offsets()) for c in axes[1].collections) == 4 * len(exp)
    assert len(axes[2].patches) == 3 + 1, "three features and the rest summed"
    assert "sample 2" in axes[2].get_xlabel()


def test_explanation_plot_passes_ax_through_and_returns_it(tabular_exps, pyplot_layout):
    exp = tabular_exps[0]
    fig, axes = pyplot_layout
    for kind, ax in zip(ONE_PANEL_KINDS, axes, strict=True):
        assert exp.plot(kind, top=5, ax=ax) is ax
        assert ax.has_data(), kind
    assert fig.axes == list(axes)


def test_without_a_target_each_kind_returns_a_new_figure_that_pyplot_does_not_hold(tabular_exps):
    exp = tabular_exps[0]
    before = plt.get_fignums()
    for kind in ("samples", *ONE_PANEL_KINDS):
        fig = exp.plot(kind)
        assert isinstance(fig, Figure) and fig.axes, kind
        assert all(ax.has_data() for ax in fig.axes), kind
        assert exp.plot(kind) is not fig, "draws anew every time"
    assert plt.get_fignums() == before, "pyplot holds none of them (never shown, freed)"


def test_one_panel_figures_return_their_new_figure_with_one_axes(tabular_exps):
    exp = tabular_exps[0]
    for draw in (figures.plot_global_importance, figures.plot_beeswarm, figures.plot_waterfall):
        fig = draw(exp)
        assert isinstance(fig, Figure) and len(fig.axes) == 1, draw.__name__


def test_image_grid_fills_a_subfigure_of_the_users_layout(image_exps, monkeypatch):
    monkeypatch.setattr(figures, "new_figure", None)  # any attempt to make our own fails
    layout = Figure()
    left, right = layout.subfigures(1, 2)
    mine = left.subplots()

    assert image_exps[0].plot(max_samples=2, fig=right) is right
    assert len(right.axes) == 2 * 2, "two samples x (input, overlay)"
    assert all(ax.images for ax in right.axes)
    assert left.axes == [mine] and not mine.has_data(), "the rest of the layout is untouched"


def test_comparison_plot_fills_the_given_figure(image_exps, tabular_exps):
    target = Figure()
    assert ex.compare(image_exps, max_samples=2).plot(fig=target) is target
    assert len(target.axes) == 2 * (1 + len(image_exps))
    bottom = Figure().subfigures(2, 1)[1]
    assert ex.compare(tabular_exps, max_samples=3).plot(fig=bottom) is bottom
    assert len(bottom.axes) == 3 * len(tabular_exps), "one bar panel per sample and method"
    assert all(len(ax.patches) == 6 for ax in bottom.axes)


def test_comparison_plot_without_a_target_returns_a_new_figure(image_exps, tabular_exps):
    for exps in (image_exps, tabular_exps):
        fig = ex.compare(exps, max_samples=2).plot()
        assert isinstance(fig, Figure) and not isinstance(fig, SubFigure) and fig.axes


def test_a_target_of_the_wrong_kind_is_an_input_error_naming_it(tabular_exps):
    exp = tabular_exps[0]
    layout = Figure()
    axes = layout.subplots(1, 2)
    with pytest.raises(ex.InputError, match=r"`ax`.*got ndarray.*ax=axes\[0\]"):
        exp.plot("beeswarm", ax=axes)  # the whole array, not one Axes
    with pytest.raises(ex.InputError, match=r"`fig`.*empty.*already holds 2 Axes"):
        exp.plot("samples", fig=layout)
    with pytest.raises(ex.InputError, match=r"`fig`.*got Axes"):
        figures.plot_comparison([exp], fig=axes[0])
    with pytest.raises(ex.InputError, match=r'`ax`: expected None for kind="samples"'):
        exp.plot("samples", ax=axes[0])
    with pytest.raises(ex.InputError, match=r"`fig`: expected None for kind='importance'"):
        exp.plot("importance", fig=Figure())
    assert not any(ax.has_data() for ax in axes), "nothing drawn before refusing"


def test_image_explanations_refuse_the_tabular_kinds(image_exps):
    with pytest.raises(ex.InputError, match=r"one of \['samples'\] for image explanations"):
        image_exps[0].plot("beeswarm", ax=Figure().subplots())


def test_waterfall_ends_at_the_samples_output_relative_to_fx(tabular_exps):
    exp = tabular_exps[1]  # gradient x input: attributions sum to a first-order f(x) - f(0)
    ax = Figure().subplots()
    figures.plot_waterfall(exp, index=0, top=2, ax=ax)
    bars = ax.patches
    left = bars[0].get_x()
    assert left == pytest.approx(-float(exp.attributions[0].sum()), abs=1e-6)
    end = bars[-1].get_x() + bars[-1].get_width()
    assert end == pytest.approx(0.0, abs=1e-6), "the last bar ends at f(x), drawn at 0"
