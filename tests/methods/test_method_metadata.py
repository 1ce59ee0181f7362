"""What a method registers besides its function (how its maps are drawn), and the progress
bars of the method loops: counted by rows, closed when the loop fails."""

from __future__ import annotations

import pytest
import torch
from tqdm.auto import tqdm

import explainer as ex
from explainer import _runtime
from explainer._runtime import Runtime, progress_chunks
from explainer.registry import MethodResult, _unregister, get_method, register_method
from explainer.viz.heatmap import spec_for


@pytest.mark.parametrize(
    ("method", "params", "signed"),
    [
        ("saliency", {}, False),
        ("saliency", {"absolute": True}, False),
        ("saliency", {"absolute": False}, True),
        ("smoothgrad", {}, False),
        ("smoothgrad", {"base": "saliency", "base_params": {"absolute": False}}, True),
        ("smoothgrad", {"base": "gradient_x_input", "base_params": {}}, True),
        ("smoothgrad", {"base": "a_plugin_not_installed"}, True),
        ("integrated_gradients", {}, True),
        ("kernel_shap", {}, True),
    ],
)
def test_registered_sign_decides_how_maps_are_drawn(method, params, signed):
    info = get_method(method)
    assert info.draws_signed(params) is signed
    assert info.heatmap_reduction(params) == ("sum" if signed else "max_abs")
    spec = spec_for(method, params)
    assert (spec.signed, spec.reduction) == (signed, info.heatmap_reduction(params))
    assert spec.cmap == ("RdBu_r" if signed else "inferno")


def test_an_unregistered_method_is_drawn_signed_with_channels_summed():
    spec = spec_for("made_by_a_plugin_not_installed", {"absolute": True}, percentile=95.0)
    assert (spec.signed, spec.reduction, spec.percentile) == (True, "sum", 95.0)


def test_a_plugin_method_registers_its_drawing():
    @register_method("test_plugin_magnitude", modalities=("tabular",), signed=False, reduction="l2")
    def magnitude(model, inputs, target, *, runtime=Runtime()):
        """|inputs|."""
        return MethodResult(inputs.abs())

    try:
        spec = spec_for("test_plugin_magnitude", {})
        assert (spec.signed, spec.reduction) == (False, "l2")
        exp = ex.explain(
            ex.wrap(torch.nn.Linear(3, 2), modality="tabular"),
            -torch.ones(2, 3),
            "test_plugin_magnitude",
            progress=False,
        )
        assert torch.equal(exp.attributions, torch.ones(2, 3))
    finally:
        _unregister("test_plugin_magnitude")
    with pytest.raises(ex.UnknownMethodError):
        get_method("test_plugin_magnitude")


def test_register_method_refuses_an_unknown_reduction_or_sign():
    with pytest.raises(ValueError, match="`reduction`.*max_abs"):
        register_method("test_bad_reduction", reduction="median")
    with pytest.raises(TypeError, match="`signed`"):
        register_method("test_bad_sign", signed="yes")
    for name in ("test_bad_reduction", "test_bad_sign"):
        with pytest.raises(ex.UnknownMethodError):
            get_method(name)


class RecordingBar(tqdm):
    """A real tqdm bar that also records its updates and whether it was closed."""

    made: list[RecordingBar] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows, self.was_closed = 0, False
        RecordingBar.made.append(self)

    def update(self, n=1):
        self.rows += n
        return super().update(n)

    def close(self):
        self.was_closed = True
        super().close()


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(_runtime, "tqdm", RecordingBar)
    return RecordingBar.made


def test_progress_chunks_counts_rows_per_index_and_closes_the_bar(bars):
    with progress_chunks(7, 3, "demo", Runtime(progress=False), rows_per_index=4) as parts:
        seen = [(p.start, p.stop) for p in parts]
    assert seen == [(0, 3), (3, 6), (6, 7)]
    (bar,) = bars
    assert (bar.total, bar.rows, bar.was_closed) == (28, 28, True)


def test_progress_chunks_closes_the_bar_when_the_loop_fails(bars):
    with pytest.raises(RuntimeError, match="network failed"):
        with progress_chunks(10, 2, "demo", Runtime(progress=False)) as parts:
            for part in parts:
                if part.start == 4:
                    raise RuntimeError("network failed")
    (bar,) = bars
    assert bar.was_closed and bar.rows == 4  # the two chunks done before the failure


class InterruptedBar(RecordingBar):
    """Stops the work at its first update, as Ctrl-C or a failing chunk would."""

    def update(self, n=1):
        super().update(n)
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated_gradients", {"n_steps": 8}),
        ("integrated_gradients", {"tolerance": 0.01}),
        ("smoothgrad", {"n_samples": 8}),
        ("gradient_shap", {"background": torch.zeros(4, 3), "n_samples": 8}),
        ("deep_shap", {"background": torch.zeros(4, 3)}),
        ("kernel_shap", {"background": torch.zeros(2, 3), "n_samples": 8}),
    ],
)
def test_a_method_interrupted_midway_closes_its_progress_bar(monkeypatch, method, params):
    RecordingBar.made = []
    monkeypatch.setattr(_runtime, "tqdm", InterruptedBar)
    model = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
    with pytest.raises(KeyboardInterrupt):
        ex.explain(model, torch.ones(3, 3), method, progress=False, **params)
    (bar,) = RecordingBar.made
    assert bar.rows > 0 and bar.was_closed
