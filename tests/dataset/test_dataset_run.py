"""explain_dataset end to end: the store holds exactly what ex.explain gives per batch,
memory stays flat, progress can be silenced, and only per-sample extras become arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from store_helpers import METHODS, Pairs, demo_model_and_images, flat_image_model

import explainer as ex
import explainer.dataset.batches as batches
from explainer.dataset.run import explain_dataset
from explainer.records import model_record


@pytest.fixture(scope="module")
def demo():
    return demo_model_and_images()


def test_store_matches_explain_per_batch(demo, tmp_path):
    model, data = demo
    store = explain_dataset(
        model,
        data.images,
        METHODS,
        tmp_path / "s.zarr",
        labels=data.labels,
        batch_size=8,
        progress=False,
    )
    assert store.complete and len(store) == 24 and store.methods == list(METHODS)
    assert np.array_equal(store.labels, data.labels.numpy())
    for name, params in METHODS.items():
        direct = ex.explain(model, data.images[8:16], name, progress=False, **params)
        stored = store.explanation(name, slice(8, 16))
        torch.testing.assert_close(stored.attributions, direct.attributions, rtol=0, atol=0)
        torch.testing.assert_close(stored.scores, direct.scores)
        assert stored.params == {**stored.params, **params}
        for key, value in direct.extras.items():
            if isinstance(value, torch.Tensor) and len(value) == 8:
                got = stored.extras[key]
                torch.testing.assert_close(
                    got[..., : value.shape[-1]].to(value.dtype), value, equal_nan=True
                )
    # the store's explanations feed the report and the notebook view
    html = ex.report(store[0:4], path=tmp_path / "r.html")
    assert html.exists()


def test_memory_stays_flat(tmp_path):
    """Peak Python/numpy allocations do not grow with the dataset (8x more samples)."""
    model = flat_image_model()
    peaks = []
    for n in (40, 320):
        tracemalloc.start()
        explain_dataset(
            model, Pairs(n), "saliency", tmp_path / f"{n}.zarr", batch_size=8, progress=False
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0] + 2**20, peaks


def test_progress_off_is_silent(tmp_path, capfd):
    explain_dataset(
        flat_image_model(),
        Pairs(6),
        "saliency",
        tmp_path / "p.zarr",
        batch_size=2,
        progress=False,
    )
    assert capfd.readouterr().err == ""


def test_only_per_sample_extras_are_stored(monkeypatch):
    """A method's scalar extras (0-d tensors) are not rows of the store and must not break it."""
    real = batches.explain

    def with_scalar(*args, **kwargs):
        exp = real(*args, **kwargs)
        exp.extras.update(total=torch.tensor(3.0), per=torch.ones(len(exp)))
        return exp

    monkeypatch.setattr(batches, "explain", with_scalar)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    out = batches.run_batch(
        ex.wrap(net, modality="image"),
        torch.rand(3, 3, 2, 2),
        torch.full((3,), -1),
        {"saliency": {}},
        "predicted",
        2**28,
    )
    assert "extras/saliency/per" in out and "extras/saliency/total" not in out


def test_the_store_and_its_explanations_record_the_model_as_ex_explain_does(tmp_path):
    model = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
    x = torch.rand(4, 3)
    store = explain_dataset(model, x, "saliency", tmp_path / "s.zarr", progress=False)
    record = model_record(model)
    assert ex.explain(model, x, "saliency", progress=False).manifest["model"] == record
    assert store.manifest["model"] == {
        **record,
        "class_names": ["no", "yes"],
        "modality": "tabular",
        "source": None,
    }
    assert store[0:2]["saliency"].manifest["model"] == {**record, "source": None}


def test_a_store_records_what_the_first_forward_found_an_inferred_regression_and_its_output(
    tmp_path,
):
    class Dict(torch.nn.Module):  # one output column, in a dict: a regression found at "logits"
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)

        def forward(self, x):
            return {"logits": self.lin(x)}

    model = ex.wrap(Dict(), modality="tabular")  # a new wrap: it has not run yet
    store = explain_dataset(
        model, torch.rand(4, 3), "saliency", tmp_path / "r.zarr", progress=False
    )
    assert store.manifest["model"]["task"] == "regression"
    assert store.manifest["model"]["selected"] == "key 'logits' (automatic)"
    assert store[0:1]["saliency"].manifest["model"]["task"] == "regression"
