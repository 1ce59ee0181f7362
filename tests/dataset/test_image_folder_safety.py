"""ImageFolder on hostile or unusual files: links out of the root, files that are not
images, truncated files, decompression bombs, and 16-bit images scaled by their depth."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
import torch
from error_checks import assert_message_format
from PIL import Image

import explainer as ex
from explainer.dataset.images import DEFAULT_MAX_PIXELS


@pytest.fixture
def root(tmp_path):
    """root/cat/a.png (8x8 red), plus a folder outside the root holding a "secret" image."""
    (tmp_path / "root" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "root" / "cat" / "a.png")
    (tmp_path / "outside").mkdir()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "outside" / "secret.png")
    return tmp_path / "root"


def png_bytes(samples: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit RGB): (H, W[, C]) uint16."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def claim_size(path, width: int, height: int) -> None:
    """Rewrite a PNG's IHDR to claim width x height (with a valid CRC): a cheap 'bomb'."""
    raw = bytearray(path.read_bytes())
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))


# -- symbolic links ----------------------------------------------------------------------
def test_symlinked_file_pointing_outside_root_is_refused_naming_link_and_target(root):
    os.symlink(root.parent / "outside" / "secret.png", root / "cat" / "link.png")
    with pytest.raises(ex.InputError, match="link.png") as info:
        ex.ImageFolder(root)
    assert str((root.parent / "outside" / "secret.png").resolve()) in str(info.value)
    assert_message_format(info.value)


def test_symlinked_class_folder_pointing_outside_root_is_refused(root):
    os.symlink(root.parent / "outside", root / "dog")
    with pytest.raises(ex.InputError, match="dog") as info:
        ex.ImageFolder(root, size=4)
    assert str((root.parent / "outside").resolve()) in str(info.value)
    assert_message_format(info.value)


def test_symlinked_file_in_a_flat_folder_pointing_outside_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", tmp_path / "flat" / "b.png")
    with pytest.raises(ex.InputError, match="b.png"):
        ex.ImageFolder(tmp_path / "flat")


def test_symlinks_that_stay_inside_root_are_read(root):
    os.symlink(root / "cat" / "a.png", root / "cat" / "b.png")
    os.symlink(root / "cat", root / "kitten")  # a class folder linked to another one
    data = ex.ImageFolder(root)
    assert data.classes == ["cat", "kitten"]
    assert [p.name for p in data.paths] == ["a.png", "b.png", "a.png", "b.png"]
    torch.testing.assert_close(data[1][0], data[0][0])


def test_a_file_swapped_for_an_outside_link_after_construction_is_not_read(root):
    data = ex.ImageFolder(root)
    (root / "cat" / "a.png").unlink()
    os.symlink(root.parent / "outside" / "secret.png", root / "cat" / "a.png")
    with pytest.raises(ex.InputError, match="symbolic link"):
        data[0]


# -- files that are not (whole) images ---------------------------------------------------
def test_text_file_with_an_image_suffix_is_an_input_error_naming_it(root):
    (root / "cat" / "notes.png").write_text("not an image")
    with pytest.raises(ex.InputError, match="notes.png") as info:
        ex.ImageFolder(root, size=4)
    assert "UnidentifiedImageError" in str(info.value)
    assert_message_format(info.value)


def test_truncated_png_is_an_input_error_naming_it_when_decoded(root):
    Image.new("RGB", (64, 64)).save(root / "cat" / "b.png")
    whole = (root / "cat" / "b.png").read_bytes()
    (root / "cat" / "b.png").write_bytes(whole[: len(whole) // 2])
    data = ex.ImageFolder(root, size=4)  # the header is intact: found only on decoding
    assert data[0][0].shape == (3, 4, 4)
    with pytest.raises(ex.InputError, match="b.png") as info:
        data[1]
    assert "truncated" in str(info.value)
    assert_message_format(info.value)


# -- decompression bombs -----------------------------------------------------------------
def test_png_claiming_30000_by_30000_pixels_is_refused_at_construction(root):
    Image.new("L", (1, 1)).save(root / "cat" / "huge.png")
    claim_size(root / "cat" / "huge.png", 30000, 30000)
    with pytest.raises(ex.InputError, match="huge.png") as info:
        ex.ImageFolder(root, size=4)
    assert "900,000,000 pixels" in str(info.value)
    assert f"max_pixels={DEFAULT_MAX_PIXELS:,}" in str(info.value)
    assert_message_format(info.value)


def test_png_over_max_pixels_but_under_pils_own_limit_is_refused(root):
    Image.new("L", (1, 1)).save(root / "cat" / "big.png")
    claim_size(root / "cat" / "big.png", 10000, 10000)  # 1e8: PIL only warns
    with pytest.raises(ex.InputError, match="10000x10000"):
        ex.ImageFolder(root, size=4)


def test_max_pixels_is_the_largest_width_times_height_accepted(root):
    assert len(ex.ImageFolder(root, max_pixels=64)) == 1  # the 8x8 image
    with pytest.raises(ex.InputError, match="max_pixels=63"):
        ex.ImageFolder(root, max_pixels=63)


def test_max_pixels_is_checked_again_when_an_item_is_read(root):
    data = ex.ImageFolder(root, size=4)
    Image.new("L", (1, 1)).save(root / "cat" / "a.png")
    claim_size(root / "cat" / "a.png", 30000, 30000)
    with pytest.raises(ex.InputError, match="max_pixels"):
        data[0]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "1000"])
def test_bad_max_pixels_is_an_input_error(root, bad):
    with pytest.raises(ex.InputError, match="`max_pixels`") as info:
        ex.ImageFolder(root, max_pixels=bad)
    assert_message_format(info.value)


# -- bit depth and modes -----------------------------------------------------------------
def test_16_bit_grayscale_png_is_scaled_by_65535_not_clipped(tmp_path):
    samples = np.array([[60000, 65535], [0, 30000]], dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    gray = ex.ImageFolder(tmp_path, grayscale=True)[0][0]
    torch.testing.assert_close(gray, torch.from_numpy(samples / 65535).float()[None])
    rgb = ex.ImageFolder(tmp_path)[0][0]  # three equal channels
    assert rgb.shape == (3, 2, 2)
    torch.testing.assert_close(rgb, gray.expand(3, 2, 2))


def test_16_bit_png_resized_stays_in_0_1_and_keeps_its_level(tmp_path):
    Image.fromarray(np.full((6, 6), 60000, dtype=np.uint16)).save(tmp_path / "deep.png")
    x = ex.ImageFolder(tmp_path, size=3, grayscale=True)[0][0]
    assert x.shape == (1, 3, 3) and 0.0 <= x.min() and x.max() <= 1.0
    torch.testing.assert_close(x, torch.full((1, 3, 3), 60000 / 65535))


def test_16_bit_rgb_png_reads_its_colours(tmp_path):
    samples = np.zeros((2, 2, 3), dtype=np.uint16)
    samples[..., 0], samples[..., 1] = 60000, 1000  # PIL keeps the high byte: 8-bit precision
    (tmp_path / "deep.png").write_bytes(png_bytes(samples, color_type=2))
    x = ex.ImageFolder(tmp_path)[0][0]
    torch.testing.assert_close(
        x[:, 0, 0], torch.tensor([60000, 1000, 0]) / 65535, atol=1 / 255, rtol=0
    )


def test_32_bit_integer_image_beyond_16_bits_is_an_input_error(tmp_path):
    Image.fromarray(np.full((2, 2), 70000, dtype=np.int32)).save(tmp_path / "wide.tif")
    data = ex.ImageFolder(tmp_path)
    with pytest.raises(ex.InputError, match="wide.tif") as info:
        data[0]
    assert_message_format(info.value)


def test_rgba_la_and_palette_images_give_their_colours_in_0_1(tmp_path):
    Image.new("RGBA", (2, 2), (255, 0, 0, 10)).save(tmp_path / "a_rgba.png")  # alpha dropped
    Image.new("LA", (2, 2), (128, 200)).save(tmp_path / "b_la.png")
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(tmp_path / "c_palette.png", transparency=0)
    Image.new("1", (2, 2), 1).save(tmp_path / "d_bilevel.png")
    data = ex.ImageFolder(tmp_path)
    want = [[1.0, 0.0, 0.0], [128 / 255] * 3, [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    for (x, _), colour in zip((data[i] for i in range(len(data))), want, strict=True):
        assert x.shape == (3, 2, 2) and x.dtype == torch.float32
        torch.testing.assert_close(x[:, 1, 1], torch.tensor(colour))
    gray = ex.ImageFolder(tmp_path, grayscale=True)
    assert all(gray[i][0].shape == (1, 2, 2) for i in range(len(gray)))
    torch.testing.assert_close(gray[1][0][0, 0, 0], torch.tensor(128 / 255))
