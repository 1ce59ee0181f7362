"""What the dataset tests share: the demo model and images, a small map-style dataset, and
store comparisons (tests/dataset is on sys.path when its tests are collected)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

import explainer as ex
from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn
from explainer.demo.shapes import make_shapes

METHODS = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 8},
    "kernel_shap": {"n_samples": 48, "n_segments": 8},
}


def demo_model_and_images(n: int = 24, seed: int = 5):
    """The demo CNN (with its class names) and ``n`` of its shapes images."""
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES, modality="image")
    return model, make_shapes(n, seed=seed)


def flat_image_model(size: int = 16, classes: int = 3) -> ex.Model:
    """A linear image model: fast enough for runs of hundreds of samples."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, classes))
    return ex.wrap(net, modality="image")


class Pairs(Dataset):
    """A map-style dataset of (image, label) pairs, made on the fly."""

    def __init__(self, n: int, size: int = 16) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, self.size, self.size, generator=g), i % 3


def arrays_of(store) -> dict[str, np.ndarray]:
    return {name: np.asarray(store.array(name)[:]) for name in store.array_names()}


def assert_same_store(a, b) -> None:
    left, right = arrays_of(a), arrays_of(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].shape == right[name].shape, name
        assert np.array_equal(left[name], right[name], equal_nan=True), name
