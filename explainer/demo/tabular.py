"""Tabular demo: the Wisconsin breast-cancer data set and a small MLP trained on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_PATH = Path(__file__).parent / "tabular_mlp.pt"
TABULAR_CLASS_NAMES: tuple[str, ...] = ("malignant", "benign")


@dataclass(frozen=True)
class TabularData:
    """A fixed, standardized train/test split of the breast-cancer data set.

    Attributes:
        x_train: float32 tensor (n_train, 30), standardized with ``mean``/``std``.
        x_test: float32 tensor (n_test, 30), standardized with the same statistics.
        y_train: int64 tensor (n_train,) indexing ``class_names``.
        y_test: int64 tensor (n_test,).
        mean: float32 tensor (30,), per-feature mean of the raw training split.
        std: float32 tensor (30,), per-feature standard deviation of the raw training split.
        feature_names: the 30 feature names.
        class_names: ``("malignant", "benign")``, as in scikit-learn's targets 0 and 1.
    """

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = TABULAR_CLASS_NAMES


def load_tabular_data(seed: int = 0) -> TabularData:
    """Load breast-cancer data (bundled with scikit-learn) as a stratified 75/25 split.

    Args:
        seed: ``random_state`` of the split; the shipped MLP was trained with seed 0.

    Returns:
        A :class:`TabularData`, features standardized with the training split's statistics.

    Example:
        >>> data = load_tabular_data()
        >>> tuple(data.x_train.shape), tuple(data.x_test.shape)
        ((426, 30), (143, 30))
    """
    # scikit-learn is heavy to import; only the demo's data needs it.
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # Test data use the training statistics: the test split must not leak into them.
    return TabularData(
        x_train=torch.from_numpy(((x_train - mean) / std).astype(np.float32)),
        x_test=torch.from_numpy(((x_test - mean) / std).astype(np.float32)),
        y_train=torch.from_numpy(y_train),
        y_test=torch.from_numpy(y_test),
        mean=torch.from_numpy(mean.astype(np.float32)),
        std=torch.from_numpy(std.astype(np.float32)),
        feature_names=tuple(str(name) for name in bunch.feature_names),
    )


class TabularMLP(nn.Module):
    """Multilayer perceptron 30 -> 32 -> 16 -> 2 with ReLU, for standardized features."""

    def __init__(self, in_features: int = 30, num_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, 32),
            nn.ReLU(),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, num_classes) for standardized features (N, in_features)."""
        return self.net(x)


def load_tabular_mlp() -> nn.Module:
    """Load the shipped :class:`TabularMLP` weights, trained by ``python -m explainer.demo.train``.

    Returns:
        The model on CPU, in eval mode; it expects features standardized as in
        :func:`load_tabular_data` with ``seed=0``.

    Example:
        >>> model = load_tabular_mlp()
        >>> model(load_tabular_data().x_test[:3]).shape
        torch.Size([3, 2])
    """
    model = TabularMLP()
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
