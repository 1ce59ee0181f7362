"""ex.evaluate on a store: scores a class-balanced sample, needs the tensors a store records
only by hash, and writes the scores back for reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explainer as ex
from explainer.dataset.evaluation import stored_scores
from explainer.dataset.layout import TRUST_KEY, scores_from_json, scores_to_json
from explainer.dataset.run import explain_dataset
from explainer.dataset.store import open_store
from explainer.demo.tabular import load_tabular_data


def test_tabular_store_and_trust_scores_need_the_recorded_background(tmp_path):
    model, d = ex.load_model("demo-tabular"), load_tabular_data()
    bg = d.x_train[:16]
    methods = {"kernel_shap": {"background": bg, "n_samples": 64}, "saliency": {}}
    store = explain_dataset(
        model,
        d.x_test[:24],
        methods,
        tmp_path / "t.zarr",
        labels=d.y_test[:24],
        batch_size=8,
        progress=False,
        feature_names=d.feature_names,
    )
    direct = ex.explain(
        model, d.x_test[8:16], "kernel_shap", background=bg, n_samples=64, progress=False
    )
    torch.testing.assert_close(
        store.explanation("kernel_shap", slice(8, 16)).attributions,
        direct.attributions,
        rtol=0,
        atol=0,
    )
    with pytest.raises(ex.InputError, match="background"):
        ex.evaluate(store, model, metrics=["faithfulness"], sample=4, progress=False)
    with pytest.raises(ex.InputError, match="computed with"):
        ex.evaluate(
            store,
            model,
            metrics=["faithfulness"],
            sample=4,
            progress=False,
            params={"kernel_shap": {"background": d.x_train[16:32]}},
        )
    scores = ex.evaluate(
        store,
        model,
        metrics=["faithfulness"],
        sample=4,
        progress=False,
        params={"kernel_shap": {"background": bg}},
    )
    assert set(scores.methods) == {"kernel_shap", "saliency"}
    html = ex.report(open_store(tmp_path / "t.zarr"), tmp_path / "t.html").read_text()
    assert "trust scores per class" in html and any(f in html for f in d.feature_names)


def small_store(tmp_path, n: int = 8) -> tuple[ex.Model, ex.Store]:
    torch.manual_seed(0)
    model = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(1))
    store = explain_dataset(model, x, "saliency", tmp_path / "s.zarr", batch_size=4, progress=False)
    return model, store


def test_options_are_checked_before_the_model_is_looked_for(tmp_path):
    _, store = small_store(tmp_path)  # written from a model in memory: no file to reload
    with pytest.raises(ex.InputError, match="`fill`"):
        ex.evaluate(store, fill="paint", progress=False)
    with pytest.raises(ex.InputError, match="`model`"):
        ex.evaluate(store, progress=False)


@pytest.mark.parametrize("sample", [0, -3, 2.5, True])
def test_a_bad_sample_size_is_an_input_error_that_says_how_to_fix_it(tmp_path, sample):
    model, store = small_store(tmp_path)
    with pytest.raises(ex.InputError, match="`sample`.*Pass e.g. sample=64"):
        ex.evaluate(store, model, ["faithfulness"], sample=sample, progress=False)


def test_a_store_opened_for_writing_is_written_through_and_reads_its_scores_at_once(tmp_path):
    model, store = small_store(tmp_path)
    assert store.group.read_only  # what explain_dataset returns is for reading
    writable = open_store(store.path, mode="r+")
    scores = ex.evaluate(writable, model, ["faithfulness"], sample=5, progress=False)
    gains = writable.metrics("saliency")["deletion_gain"]
    assert np.isfinite(gains).sum() == 5
    assert np.array_equal(
        gains, open_store(store.path).metrics("saliency")["deletion_gain"], equal_nan=True
    )
    assert stored_scores(open_store(store.path)).rows == scores.rows


def test_the_stored_trust_table_reads_back_as_the_scores(tmp_path):
    model, store = small_store(tmp_path)
    scores = ex.evaluate(store, model, ["faithfulness", "agreement"], sample=6, progress=False)
    rows = store.sample(6)
    back = scores_from_json(scores_to_json(scores, rows))
    assert back.rows == scores.rows and back.settings == scores.settings
    for method, curves in scores.curves.items():
        for name, values in curves.items():
            assert np.array_equal(back.curves[method][name], values)
    assert open_store(store.path).group.attrs[TRUST_KEY]["indices"] == rows.tolist()
