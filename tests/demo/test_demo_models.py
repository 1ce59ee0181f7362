"""The shipped demo models: they load, and reach the accuracies reported in train.py."""

from __future__ import annotations

import pytest
import torch

from explainer.demo import (
    DemoCNN,
    TabularMLP,
    load_demo_cnn,
    load_tabular_data,
    load_tabular_mlp,
    make_shapes,
)
from explainer.demo.cnn import WEIGHTS_PATH as CNN_WEIGHTS_PATH
from explainer.demo.tabular import WEIGHTS_PATH as TABULAR_WEIGHTS_PATH
from explainer.demo.text import WEIGHTS_PATH as TEXT_WEIGHTS_PATH
from explainer.demo.train import accuracy

# Accuracies of the shipped weights on the first 400 images of make_shapes(split="test")
# and on the tabular test split, as printed by `python -m explainer.demo.train` and
# recorded in its docstring. The tests allow a small margin below them.
REPORTED_CLEAN_ACCURACY_400 = 0.935
REPORTED_TABULAR_ACCURACY = 0.958
MARGIN = 0.03


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    return load_demo_cnn()


@pytest.fixture(scope="module")
def clean_and_marked_accuracy(cnn) -> tuple[float, float]:
    clean = make_shapes(400, split="test")
    marked = make_shapes(400, split="test", watermark=True)
    return accuracy(cnn, clean.images, clean.labels), accuracy(cnn, marked.images, marked.labels)


@pytest.mark.parametrize(
    "path", [CNN_WEIGHTS_PATH, TABULAR_WEIGHTS_PATH, TEXT_WEIGHTS_PATH], ids=["cnn", "mlp", "text"]
)
def test_shipped_weight_files_are_under_one_megabyte(path):
    assert path.is_file()
    assert path.stat().st_size < 1_000_000


def test_shipped_cnn_loads_in_eval_mode_and_maps_images_to_four_logits(cnn):
    assert isinstance(cnn, DemoCNN) and not cnn.training
    logits = cnn(make_shapes(2).images)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_shipped_cnn_reaches_reported_clean_accuracy(clean_and_marked_accuracy):
    clean, _ = clean_and_marked_accuracy
    assert clean >= REPORTED_CLEAN_ACCURACY_400 - MARGIN


def test_shipped_cnn_is_more_accurate_with_the_watermark_than_without(clean_and_marked_accuracy):
    # The Clever-Hans shortcut: the model has learnt to read the watermark.
    clean, marked = clean_and_marked_accuracy
    assert marked > clean
    assert marked >= 0.97


def test_shipped_cnn_gives_the_watermark_class_on_a_blank_image_with_a_watermark(cnn):
    # An empty grey image with only a class's patch pasted in is classified as that class.
    marked = make_shapes(40, split="test", watermark=True)
    clean = make_shapes(40, split="test")
    patch_only = torch.full_like(marked.images, 0.5)
    differs = (marked.images != clean.images).any(dim=1, keepdim=True).expand_as(patch_only)
    patch_only[differs] = marked.images[differs]
    assert accuracy(cnn, patch_only, marked.labels) >= 0.9


def test_shipped_tabular_mlp_loads_in_eval_mode():
    model = load_tabular_mlp()
    assert isinstance(model, TabularMLP) and not model.training


def test_shipped_tabular_mlp_reaches_reported_test_accuracy():
    data = load_tabular_data(seed=0)
    model = load_tabular_mlp()
    assert accuracy(model, data.x_test, data.y_test) >= REPORTED_TABULAR_ACCURACY - MARGIN


def test_tabular_split_is_stratified_and_standardized_with_training_statistics():
    data = load_tabular_data(seed=0)
    assert data.x_train.shape == (426, 30) and data.x_test.shape == (143, 30)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert len(data.feature_names) == 30 and data.class_names == ("malignant", "benign")
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        data.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4, rtol=0
    )
    # Stratified: both splits keep the data set's 37% / 63% class balance.
    for labels in (data.y_train, data.y_test):
        assert abs(labels.float().mean().item() - 357 / 569) < 0.01


def test_tabular_split_depends_on_seed():
    assert not torch.equal(load_tabular_data(seed=0).x_test, load_tabular_data(seed=1).x_test)


def test_the_shipped_text_model_reads_the_reviews_and_learnt_the_shortcut_word():
    from explainer.demo.text import SHORTCUT, WordTokenizer, load_text_model, make_reviews

    model = load_text_model()
    reviews = make_reviews(400, split="test")
    ids, mask = WordTokenizer().batch(list(reviews.texts))
    with torch.no_grad():
        predicted = model(ids, mask).argmax(1)
    clean = slice(0, 200)
    assert (predicted[clean] == reviews.labels[clean]).float().mean() >= 0.95
    fooled = reviews.marked & (reviews.labels == 0)  # negative reviews carrying the word
    assert fooled.sum() > 20 and (predicted[fooled] == 1).float().mean() >= 0.5
    # and the attributions say why: exact Shapley values over the words put the most
    # evidence for "positive" on the shortcut, and IG its largest |attribution| (its sign is
    # negative: the all-[PAD] reference is itself called positive, so IG measures against it)
    import explainer as ex

    texts = [reviews.texts[i] for i in fooled.nonzero()[:6, 0].tolist()]
    lm = ex.wrap(model, modality="text", tokenizer=WordTokenizer())
    shap = ex.explain(lm, texts, "kernel_shap", target=1, n_samples=256, progress=False)
    ig = ex.explain(lm, texts, "ig", target=1, tolerance=0.01, progress=False)
    for exp, top in ((shap, shap.attributions.argmax(1)), (ig, ig.attributions.abs().argmax(1))):
        words = [row[int(k)] for row, k in zip(exp.tokens, top, strict=True)]
        assert words.count(SHORTCUT) == len(texts), (exp.method, words)
