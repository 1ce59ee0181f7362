"""Fixtures of the core tests: the shared models, wrapped as a caller would (in train mode,
which every error must leave as it was)."""

import pytest

import explainer as ex

CLASSES = ["cat", "dog", "fish"]


@pytest.fixture
def image_model(cnn):
    cnn.train()  # the caller's mode, which must survive every error
    return ex.wrap(cnn, modality="image", class_names=CLASSES)


@pytest.fixture
def tabular_model(mlp):
    mlp.train()
    return ex.wrap(mlp, modality="tabular", class_names=CLASSES)
