"""Explanation: save/load round trip, manifest, atomic save, views, targets, wrap, explain_many."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from attribution_helpers import (
    assert_same_state,
    make_cnn,
    make_images,
    make_mlp,
    make_rows,
    model_state,
)

import explainer as ex
from explainer.explanation import SCHEMA_VERSION

CLASSES = ["cat", "dog", "fish"]
FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def image_exp():
    model = ex.wrap(make_cnn(), class_names=CLASSES)
    return ex.explain(
        model, make_images(2), "integrated_gradients", target=[0, 2], n_steps=8, progress=False
    )


@pytest.fixture(scope="module")
def tabular_exp():
    model = ex.wrap(make_mlp(), modality="tabular", class_names=CLASSES)
    return ex.explain(
        model,
        make_rows(3),
        "kernel_shap",
        background=make_rows(5, seed=4),
        n_samples=20,
        feature_names=FEATURES,
        progress=False,
    )


def assert_same_explanation(a: ex.Explanation, b: ex.Explanation) -> None:
    for name in ("attributions", "inputs", "targets", "scores"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        assert a.extras[k].dtype == b.extras[k].dtype and torch.equal(a.extras[k], b.extras[k]), k
    for name in ("method", "modality", "class_names", "feature_names", "params", "manifest"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("which", ["image_exp", "tabular_exp"])
def test_save_and_load_round_trip_exactly(request, tmp_path, which):
    exp = request.getfixturevalue(which)
    path = exp.save(tmp_path / "run.npz")
    assert path == tmp_path / "run.npz" and path.exists()
    assert_same_explanation(exp, ex.load_explanation(path))


def test_round_trip_keeps_what_each_method_records(image_exp, tabular_exp, tmp_path):
    assert set(image_exp.extras) == {"convergence_delta", "relative_gap"}
    assert {"feature_values", "segments", "n_features", "error_estimate", "evaluations"} <= set(
        tabular_exp.extras
    )
    loaded = ex.load_explanation(tabular_exp.save(tmp_path / "k.npz"))
    assert loaded.feature_names == tuple(FEATURES) and loaded.class_names == tuple(CLASSES)
    assert loaded.params["n_samples"] == 20 and loaded.params["background"] == "tensor(5, 6)"


def test_manifest_records_versions_seed_fingerprint_shape_duration_and_schema(image_exp):
    m = image_exp.manifest
    assert m["schema_version"] == SCHEMA_VERSION
    assert {"python", "torch", "captum", "shap", "numpy", "explainer"} <= set(m["versions"])
    assert m["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert m["seed"] == 0 and image_exp.params["seed"] == 0
    assert m["input_shape"] == [2, 3, 16, 16]
    assert isinstance(m["duration_s"], float) and m["duration_s"] >= 0
    fingerprint = m["model"]["fingerprint"]
    assert len(fingerprint) == 16 and fingerprint == ex.wrap(make_cnn()).fingerprint()
    assert fingerprint != ex.wrap(make_cnn(seed=1)).fingerprint()
    json.dumps(m)  # plain JSON


def test_a_file_of_another_schema_version_raises_store_error(image_exp, tmp_path):
    path = image_exp.save(tmp_path / "run.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("header")))
    header["schema_version"] = SCHEMA_VERSION + 1
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ex.StoreError, match="schema version") as info:
        ex.load_explanation(path)
    assert isinstance(info.value, OSError) and "Re-create" in str(info.value)


def test_a_missing_file_raises_store_error(tmp_path):
    with pytest.raises(ex.StoreError, match="Check the path"):
        ex.load_explanation(tmp_path / "nothing.npz")


def test_a_file_that_is_not_an_explanation_raises_store_error(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ex.StoreError, match="exp.save"):
        ex.load_explanation(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ex.StoreError):
        ex.load_explanation(tmp_path / "other.npz")


def test_save_leaves_no_temp_files(image_exp, tmp_path):
    image_exp.save(tmp_path / "run.npz")
    image_exp.save(tmp_path / "run.npz")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]


def test_save_replaces_an_existing_file_only_when_the_new_write_completes(
    image_exp, tabular_exp, tmp_path, monkeypatch
):
    path = tabular_exp.save(tmp_path / "run.npz")
    old = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        image_exp.save(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"], "a temp file was left behind"
    monkeypatch.undo()
    assert ex.load_explanation(path).method == "kernel_shap"


def test_save_creates_missing_folders(image_exp, tmp_path):
    path = image_exp.save(tmp_path / "a" / "b" / "run.npz")
    assert ex.load_explanation(path).method == "integrated_gradients"


@pytest.mark.parametrize("which", ["image_exp", "tabular_exp"])
def test_plot_returns_a_matplotlib_figure(request, which):
    from matplotlib.figure import Figure

    exp = request.getfixturevalue(which)
    fig = exp.plot()
    assert isinstance(fig, Figure) and fig.axes
    assert exp.plot() is not fig  # draws anew every time


def test_repr_html_of_an_image_explanation_inlines_png_heatmaps(image_exp):
    import base64
    import re

    html = image_exp._repr_html_()
    images = re.findall(r'<img[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 2 * len(image_exp), "an input and an overlay per sample"
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    assert "integrated_gradients" in html and 'src="http' not in html  # no CDN


def test_repr_html_of_a_tabular_explanation_is_html(tabular_exp):
    html = tabular_exp._repr_html_()
    assert html.lstrip().startswith("<") and "kernel_shap" in html


# -- targets ---------------------------------------------------------------------------------


@pytest.fixture
def named_model(cnn):
    return ex.wrap(cnn, class_names=CLASSES)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (1, [1, 1, 1]),
        ([2, 0, 1], [2, 0, 1]),
        (torch.tensor([1, 2, 0]), [1, 2, 0]),
        (np.array([0, 0, 2]), [0, 0, 2]),
        (torch.tensor(2), [2, 2, 2]),
        (np.int64(1), [1, 1, 1]),
        ("dog", [1, 1, 1]),
        (["fish", "cat", "dog"], [2, 0, 1]),
    ],
)
def test_target_accepts_int_list_tensor_class_name_and_list_of_names(named_model, target, expected):
    exp = ex.explain(named_model, make_images(3), "saliency", target=target, progress=False)
    assert exp.targets.tolist() == expected and exp.targets.dtype == torch.long


def test_target_predicted_explains_the_argmax_class(named_model):
    x = make_images(4, seed=12)
    exp = ex.explain(named_model, x, "saliency", target="predicted", progress=False)
    with torch.no_grad():
        assert exp.targets.tolist() == named_model.net(x).argmax(1).tolist()
    assert torch.equal(exp.predictions, exp.targets)
    torch.testing.assert_close(exp.scores.sum(1), torch.ones(4))
    assert exp.class_label(int(exp.targets[0])) in CLASSES


def test_explanations_for_different_targets_differ(named_model):
    x = make_images(2)
    a = ex.explain(
        named_model, x, "saliency", target=0, absolute=False, progress=False
    ).attributions
    b = ex.explain(
        named_model, x, "saliency", target=1, absolute=False, progress=False
    ).attributions
    assert not torch.allclose(a, b)


def test_probabilities_output_is_kept_as_scores():
    net = torch.nn.Sequential(make_mlp(), torch.nn.Softmax(dim=1))
    exp = ex.explain(
        ex.wrap(net, modality="tabular", output="probabilities"),
        make_rows(2),
        "saliency",
        progress=False,
    )
    with torch.no_grad():
        torch.testing.assert_close(exp.scores, net(make_rows(2)))


def test_numpy_inputs_work_like_tensors(named_model):
    x = make_images(2)
    from_numpy = ex.explain(named_model, x.numpy(), "ig", target=[0, 1], n_steps=4, progress=False)
    from_torch = ex.explain(named_model, x, "ig", target=[0, 1], n_steps=4, progress=False)
    assert torch.equal(from_numpy.attributions, from_torch.attributions)


def test_feature_names_must_match_the_columns():
    model = ex.wrap(make_mlp(), modality="tabular")
    with pytest.raises(ex.InputError, match="`feature_names`"):
        ex.explain(model, make_rows(2), "saliency", feature_names=["a", "b"], progress=False)


# -- wrap and explain_many -------------------------------------------------------------------


def test_wrap_is_idempotent_and_changes_only_what_is_asked():
    net = make_cnn()
    m = ex.wrap(net, class_names=CLASSES)
    assert ex.wrap(m) is m
    renamed = ex.wrap(m, name="mine")
    assert renamed is not m and renamed.net is net and renamed.class_names == tuple(CLASSES)
    assert renamed.name == "mine" and m.name == "SmallCNN"


def test_explain_restores_the_state_of_a_wrapped_and_of_a_bare_network():
    net = make_cnn()
    net.train()
    net.features[0].weight.grad = torch.ones_like(net.features[0].weight)
    before = model_state(net)
    ex.explain(ex.wrap(net), make_images(2), "ig", n_steps=4, progress=False)
    ex.explain(net, make_images(2), "saliency", progress=False)
    assert_same_state(before, model_state(net))


def test_explain_many_returns_one_explanation_per_method_in_order(named_model):
    x = make_images(2)
    exps = ex.explain_many(
        named_model, x, ["saliency", "ig", "gradient_x_input"], target=1, progress=False
    )
    assert [e.method for e in exps] == ["saliency", "integrated_gradients", "gradient_x_input"]
    assert all(e.attributions.shape == x.shape and e.targets.tolist() == [1, 1] for e in exps)


def test_explain_many_takes_per_method_options(named_model):
    x = make_images(2)
    exps = ex.explain_many(
        named_model,
        x,
        {"ig": {"n_steps": 3}, "gradient_shap": {"background": make_images(2, 5)}},
        progress=False,
    )
    assert exps[0].params["n_steps"] == 3 and exps[1].method == "gradient_shap"
    single = ex.explain(named_model, x, "ig", n_steps=3, progress=False)
    assert torch.equal(exps[0].attributions, single.attributions)


def test_explain_many_with_no_methods_raises_input_error(named_model):
    with pytest.raises(ex.InputError, match="`methods`"):
        ex.explain_many(named_model, make_images(1), [])


def test_explanation_is_frozen(image_exp):
    with pytest.raises(AttributeError):
        image_exp.method = "other"
    assert len(image_exp) == 2 and "integrated_gradients" in repr(image_exp)
