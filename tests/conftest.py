"""Shared fixtures. The builders behind them (models, data, the per-method parameters and
model-state snapshots) live in tests/attribution_helpers.py, importable by test modules."""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import SmallCNN, TabularMLP, make_cnn, make_mlp

# The models here are tiny: one thread is as fast, and it keeps the suite's time stable when
# the two cores are shared with other work (OpenMP threads spin and thrash under contention).
torch.set_num_threads(1)


@pytest.fixture
def cnn() -> SmallCNN:
    """The small image CNN (BatchNorm, in-place ReLUs), in eval mode, fixed weights."""
    return make_cnn()


@pytest.fixture
def mlp() -> TabularMLP:
    """The small nonlinear tabular model (6 features -> 3 classes), in eval mode, fixed weights."""
    return make_mlp()
