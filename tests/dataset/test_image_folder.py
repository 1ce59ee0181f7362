"""ImageFolder turns a folder of images (flat, or one folder per class) into normalized
tensors, records its preprocessing, and refuses unusable options with a clear message."""

from __future__ import annotations

import json

import pytest
import torch
from error_checks import assert_message_format
from PIL import Image

import explainer as ex


def write_image(path, size_wh, color) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size_wh, color).save(path)


@pytest.fixture
def class_folders(tmp_path):
    write_image(tmp_path / "zebra" / "b.png", (10, 6), (255, 0, 0))
    write_image(tmp_path / "zebra" / "a.PNG", (8, 8), (0, 255, 0))
    write_image(tmp_path / "ant" / "c.jpg", (12, 4), (0, 0, 255))
    (tmp_path / "ant" / "readme.txt").write_text("not an image")
    return tmp_path


def test_class_folders_give_sorted_classes_and_files(class_folders):
    data = ex.ImageFolder(class_folders, size=(4, 6))
    assert data.classes == ["ant", "zebra"]
    assert [(p.name, label) for p, (_, label) in zip(data.paths, data.samples, strict=True)] == [
        ("c.jpg", 0),
        ("a.PNG", 1),
        ("b.png", 1),
    ]
    x, label = data[2]
    assert x.dtype == torch.float32 and x.shape == (3, 4, 6) and label == 1
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # red, in [0, 1]


def test_normalization_and_denormalize_are_inverse(class_folders):
    plain = ex.ImageFolder(class_folders, size=5)
    data = ex.ImageFolder(class_folders, size=5, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])
    x, _ = data[0]
    want = (plain[0][0] - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.5]
    ).view(3, 1, 1)
    torch.testing.assert_close(x, want)
    torch.testing.assert_close(data.denormalize(x), plain[0][0])
    batch = torch.stack([data[i][0] for i in range(len(data))])  # (N, C, H, W)
    torch.testing.assert_close(data.denormalize(batch)[1], plain[1][0])


def test_preprocessing_is_json_serializable(class_folders):
    data = ex.ImageFolder(class_folders, size=7, mean=0.5, std=0.5, grayscale=True)
    record = json.loads(json.dumps(data.preprocessing))
    assert record == {
        "loader": "PIL",
        "size": [7, 7],
        "mean": [0.5],
        "std": [0.5],
        "grayscale": True,
        "root": str(class_folders),
    }
    assert data[0][0].shape == (1, 7, 7)


def test_flat_folder_has_label_minus_one(tmp_path):
    for name in ("b.png", "a.png"):
        write_image(tmp_path / name, (6, 6), (1, 2, 3))
    data = ex.ImageFolder(tmp_path)
    assert data.classes == [] and [label for _, label in data.samples] == [-1, -1]
    assert [p.name for p in data.paths] == ["a.png", "b.png"]


def test_mixed_sizes_without_size_ask_for_size(class_folders):
    with pytest.raises(ex.InputError, match="size=") as info:
        ex.ImageFolder(class_folders)
    assert_message_format(info.value)


@pytest.mark.parametrize(
    "kwargs, hint",
    [
        ({"size": 0}, "`size`"),
        ({"size": (4, 4, 4)}, "`size`"),
        ({"std": [1.0, 0.0, 1.0]}, "`std`"),
        ({"mean": [0.5, 0.5]}, "`mean`"),
    ],
)
def test_bad_options_are_input_errors(class_folders, kwargs, hint):
    with pytest.raises(ex.InputError, match=hint) as info:
        ex.ImageFolder(class_folders, **{"size": 4, **kwargs})
    assert_message_format(info.value)


def test_empty_folder_and_empty_class_folder_are_input_errors(tmp_path):
    with pytest.raises(ex.InputError, match="none") as info:
        ex.ImageFolder(tmp_path)
    assert_message_format(info.value)
    write_image(tmp_path / "cat" / "a.png", (4, 4), (0, 0, 0))
    (tmp_path / "dog").mkdir()
    with pytest.raises(ex.InputError, match="dog"):
        ex.ImageFolder(tmp_path)


def test_dataloader_batches_and_the_batch_explains(class_folders):
    data = ex.ImageFolder(class_folders, size=64)
    images, labels = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    assert images.shape == (3, 3, 64, 64) and labels.tolist() == [0, 1, 1]
    exp = ex.explain(ex.load_model("demo"), images, "saliency", progress=False)
    assert exp.attributions.shape == images.shape
