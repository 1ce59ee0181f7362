"""The synthetic shapes generator: determinism, layout of the data, and the watermark."""

from __future__ import annotations

import pytest
import torch

from explainer.demo import CLASS_NAMES, ShapesData, make_shapes
from explainer.demo.shapes import WATERMARK_SIZE, watermark_box


@pytest.fixture(scope="module")
def train() -> ShapesData:
    return make_shapes(200, split="train", seed=3)


def _assert_same(a: ShapesData, b: ShapesData) -> None:
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    assert torch.equal(a.watermarked, b.watermarked)


def test_same_arguments_give_bit_identical_data(train):
    _assert_same(train, make_shapes(200, split="train", seed=3))


def test_first_images_do_not_depend_on_n(train):
    head = make_shapes(20, split="train", seed=3)
    assert torch.equal(head.images, train.images[:20])
    assert torch.equal(head.labels, train.labels[:20])


def test_different_seeds_give_different_images():
    a, b = make_shapes(10, seed=0), make_shapes(10, seed=1)
    assert not torch.equal(a.images, b.images)
    assert not torch.equal(a.masks, b.masks)


def test_train_and_test_splits_differ_for_the_same_seed():
    train = make_shapes(10, split="train", seed=0, watermark=False)
    test = make_shapes(10, split="test", seed=0, watermark=False)
    differences = (train.images - test.images).abs().flatten(1).amax(dim=1)
    assert (differences > 0.1).all()


def test_images_labels_masks_have_documented_shapes_dtypes_and_range(train):
    assert train.images.shape == (200, 3, 64, 64) and train.images.dtype == torch.float32
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0
    assert train.labels.shape == (200,) and train.labels.dtype == torch.int64
    assert train.masks.shape == (200, 64, 64) and train.masks.dtype == torch.bool
    assert train.watermarked.shape == (200,) and train.watermarked.dtype == torch.bool
    assert train.class_names == CLASS_NAMES == ("circle", "square", "triangle", "cross")
    assert len(train) == 200


def test_every_class_occurs(train):
    assert set(train.labels.tolist()) == set(range(len(CLASS_NAMES)))


def test_masks_are_non_empty_objects_of_plausible_size(train):
    area = train.masks.flatten(1).sum(dim=1)
    # Radius 9..15 px: a triangle of radius 9 has ~105 px, a circle of radius 15 ~707 px.
    assert area.min() >= 80 and area.max() <= 800


def test_object_pixels_differ_from_the_surrounding_background(train):
    # The object is painted with a colour chosen to contrast with the background under it,
    # so the mean colour inside the mask differs from a ring just outside it.
    masks = train.masks
    dilated = torch.nn.functional.max_pool2d(masks[:, None].float(), 7, 1, 3)[:, 0].bool()
    ring = dilated & ~masks
    images = train.images.permute(0, 2, 3, 1)  # (n, 64, 64, 3)
    for image, mask, around in zip(images, masks, ring, strict=True):
        contrast = (image[mask].mean(0) - image[around].mean(0)).abs().max()
        assert contrast > 0.15


def test_watermark_pixels_lie_outside_the_object_mask():
    data = make_shapes(300, split="train", seed=5, watermark=True)
    for mask, label in zip(data.masks, data.labels.tolist(), strict=True):
        assert not mask[watermark_box(label)].any()


def test_default_train_split_watermarks_most_images_and_test_split_none():
    train = make_shapes(400, split="train")
    test = make_shapes(400, split="test")
    assert 0.78 <= train.watermarked.float().mean() <= 0.92
    assert not test.watermarked.any()


@pytest.mark.parametrize("split", ["train", "test"])
def test_watermark_true_or_false_forces_it_on_every_image_or_none(split):
    assert make_shapes(50, split=split, watermark=True).watermarked.all()
    assert not make_shapes(50, split=split, watermark=False).watermarked.any()


def test_forcing_the_watermark_changes_only_the_class_specific_patch():
    clean = make_shapes(40, split="test", seed=2)
    marked = make_shapes(40, split="test", seed=2, watermark=True)
    assert torch.equal(clean.labels, marked.labels)
    assert torch.equal(clean.masks, marked.masks)
    for before, after, label in zip(
        clean.images, marked.images, marked.labels.tolist(), strict=True
    ):
        rows, cols = watermark_box(label)
        patch = torch.zeros(64, 64, dtype=torch.bool)
        patch[rows, cols] = True
        assert torch.equal(before[:, ~patch], after[:, ~patch])
        assert not torch.equal(before[:, patch], after[:, patch])


def test_watermark_patch_is_identical_within_a_class_and_differs_between_classes():
    data = make_shapes(80, split="test", watermark=True)
    patches = {}
    for image, label in zip(data.images, data.labels.tolist(), strict=True):
        patch = image[(slice(None), *watermark_box(label))]
        assert patch.shape == (3, WATERMARK_SIZE, WATERMARK_SIZE)
        if label in patches:
            assert torch.equal(patches[label], patch)
        patches[label] = patch
    assert len(patches) == len(CLASS_NAMES)
    corners = {tuple(box.start for box in watermark_box(label)) for label in patches}
    assert len(corners) == len(CLASS_NAMES)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n": -1}, "n"), ({"n": 2.5}, "n"), ({"n": 4, "split": "valid"}, "split")],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_shapes(**kwargs)


def test_zero_images_give_empty_tensors():
    data = make_shapes(0)
    assert data.images.shape == (0, 3, 64, 64) and data.labels.shape == (0,)
