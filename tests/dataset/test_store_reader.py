"""Reading a store: lazy access by index and class, per-class means, balanced samples,
and clear errors for what is not a store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from error_checks import assert_message_format
from store_helpers import demo_model_and_images

import explainer as ex
from explainer.dataset.run import explain_dataset
from explainer.dataset.store import open_store
from explainer.demo.cnn import CLASS_NAMES
from explainer.reporting.store_summary import dataset_summary


@pytest.fixture(scope="module")
def demo():
    return demo_model_and_images()


def test_lazy_access_by_index_and_class(demo, tmp_path):
    model, data = demo
    store = explain_dataset(
        model,
        data.images,
        {"saliency": {}},
        tmp_path / "s.zarr",
        labels=data.labels,
        batch_size=5,
        progress=False,
    )
    store = open_store(tmp_path / "s.zarr")
    targets = store.targets
    for cls in range(len(CLASS_NAMES)):
        idx = store.indices(cls=CLASS_NAMES[cls])
        assert np.array_equal(idx, np.flatnonzero(targets == cls))
    one = store[3]["saliency"]
    assert len(one) == 1 and one.inputs.shape == (1, 3, 64, 64)
    picked = store[[1, 7, 20]]["saliency"]
    torch.testing.assert_close(picked.inputs, data.images[[1, 7, 20]])
    means = store.mean_attribution("saliency")
    attr = np.asarray(store.array("attributions/saliency")[:], dtype=np.float64)
    for cls, (mean_map, mean_input, count) in means.items():
        assert count == int((targets == cls).sum())
        np.testing.assert_allclose(mean_map, attr[targets == cls].mean(0), rtol=1e-6)
        np.testing.assert_allclose(mean_input, data.images[targets == cls].double().mean(0))
    summary = dataset_summary(store, shown=4, max_classes=2)  # the 2 most frequent classes
    counts = np.bincount(targets)
    assert len(summary.maps[0]["panels"]) == 2 and summary.maps[0]["limited"].startswith("2 ")
    assert sorted(p[1] for p in summary.maps[0]["panels"]) == sorted(counts)[-2:]
    only = store.mean_attribution("saliency", classes=[1])
    assert list(only) == [1] and np.allclose(only[1][0], means[1][0])
    sample = store.sample(8)
    assert len(sample) == 8 and len(set(targets[sample])) == len(set(targets))


def test_open_store_errors(tmp_path):
    with pytest.raises(ex.StoreError, match="explain_dataset"):
        open_store(tmp_path / "nothing.zarr")
    (tmp_path / "bad.zarr").mkdir()
    with pytest.raises(ex.StoreError):
        open_store(tmp_path / "bad.zarr")


def test_a_bad_index_or_grouping_is_an_error_that_says_how_to_fix_it(tmp_path):
    model = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
    store = explain_dataset(
        model, torch.rand(5, 3), "saliency", tmp_path / "s.zarr", progress=False
    )
    with pytest.raises(ex.InputError) as info:
        store[[1, 5]]
    assert_message_format(info.value)
    assert "Index with 0..4" in str(info.value)
    for call in (
        lambda: store.mean_attribution("saliency", by="size"),
        lambda: store.indices(0, by="size"),
    ):
        with pytest.raises(ex.InputError, match='Use by="target"') as info:
            call()
        assert_message_format(info.value)
