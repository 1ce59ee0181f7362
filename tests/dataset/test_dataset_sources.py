"""What explain_dataset reads: Datasets, DataLoaders (shuffling refused), arrays with labels,
label targets, and clear errors for anything else, before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from store_helpers import Pairs, assert_same_store, flat_image_model
from torch.utils.data import DataLoader

import explainer as ex
from explainer.dataset.run import explain_dataset


def test_datasets_loaders_and_label_targets(tmp_path):
    model = flat_image_model()
    ds = Pairs(10)
    a = explain_dataset(
        model, ds, "saliency", tmp_path / "a.zarr", batch_size=4, target="label", progress=False
    )
    assert np.array_equal(a.targets, np.arange(10) % 3) and np.array_equal(a.labels, a.targets)
    b = explain_dataset(
        model,
        DataLoader(ds, batch_size=4, num_workers=0),
        "saliency",
        tmp_path / "b.zarr",
        target="label",
        progress=False,
    )
    assert_same_store(a, b)
    with pytest.raises(ex.InputError, match="shuffle"):
        explain_dataset(model, DataLoader(ds, shuffle=True), "saliency", tmp_path / "c.zarr")
    with pytest.raises(ex.InputError, match="label"):
        explain_dataset(
            model,
            torch.rand(4, 3, 16, 16),
            "saliency",
            tmp_path / "d.zarr",
            target="label",
            progress=False,
        )
    with pytest.raises(ex.InputError, match="Dataset"):
        explain_dataset(model, iter([1, 2]), "saliency", tmp_path / "e.zarr")
    with pytest.raises(ex.UnknownMethodError):
        explain_dataset(model, ds, "saliancy", tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()  # nothing written for a bad call
