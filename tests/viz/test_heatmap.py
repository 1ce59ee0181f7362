"""Heatmap colours are exact (golden values derived by hand) and normalization is as documented."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explainer.viz import heatmap as hm


def test_lut_ends_are_the_colormap_ends():
    lut = hm.colormap_lut("RdBu_r")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].tolist() == [5, 48, 97]  # dark blue: most negative
    assert lut[255].tolist() == [103, 0, 31]  # dark red: most positive
    assert hm.colormap_lut("inferno")[0].tolist() == [0, 0, 4]


def test_overlay_golden_rgb_at_chosen_pixels():
    # image: red channel 1.0, others 0.5 -> grey 2/3; greyed base = 0.35 * rgb + 0.65 * grey
    #   = (0.7833, 0.6083, 0.6083) * 255 = (199.75, 155.13, 155.13)
    image = np.full((3, 2, 4), 0.5, np.float32)
    image[0] = 1.0
    heat = np.array([[0.0, 1.0, -1.0, 0.5], [2.0, -0.25, 0.0, 0.0]], np.float32)
    out = hm.render_overlay(image, heat, hm.HeatmapSpec("sum", True, 100.0, "RdBu_r"), scale=1.0)
    assert out[0, 0].tolist() == [200, 155, 155]  # zero attribution: the greyed image only
    # +1: 0.25 * base + 0.75 * (103, 0, 31) = (127.19, 38.78, 62.03)
    assert out[0, 1].tolist() == [127, 39, 62]
    # -1: 0.25 * base + 0.75 * (5, 48, 97) = (53.69, 74.78, 111.53)
    assert out[0, 2].tolist() == [54, 75, 112]
    assert out[1, 0].tolist() == out[0, 1].tolist()  # 2.0 is clipped to the scale


def test_signed_normalization_clips_at_percentile_and_keeps_zero_centred():
    maps = np.linspace(-10, 10, 201, dtype=np.float64).reshape(1, 201)
    scale = hm.percentile_scale(maps[:, None, :], 90.0)
    assert scale[0] == pytest.approx(np.percentile(np.abs(maps), 90.0))
    norm = hm.normalize_signed(maps, scale)
    assert norm.max() == 1.0 and norm.min() == -1.0 and norm[0, 100] == 0.0


def test_shared_scale_uses_the_largest_per_sample():
    a, b = np.array([1.0, 4.0]), np.array([2.0, 3.0])
    assert hm.shared_scale([a, b]).tolist() == [2.0, 4.0]


def test_all_zero_map_does_not_divide_by_zero():
    assert hm.percentile_scale(np.zeros((2, 3, 3))).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "how,expected", [("sum", -1.0), ("abs_sum", 5.0), ("l2", np.sqrt(13.0)), ("max_abs", 3.0)]
)
def test_channel_reductions(how, expected):
    attr = np.array([2.0, -3.0, 0.0]).reshape(3, 1, 1)
    assert hm.reduce_channels(attr, how)[0, 0] == pytest.approx(expected)


def test_absolute_methods_are_drawn_absolute_and_signed_methods_diverging():
    assert hm.spec_for("saliency", {"absolute": True}).signed is False
    assert hm.spec_for("saliency", {"absolute": False}).signed is True
    assert hm.spec_for("integrated_gradients").reduction == "sum"
    assert "percentile" in hm.spec_for("integrated_gradients").describe()


def test_superpixel_boundaries_are_drawn():
    segments = np.zeros((6, 6), int)
    segments[:, 3:] = 1
    image = np.ones((3, 6, 6), np.float32)
    out = hm.render_overlay(image, np.zeros((6, 6)), hm.HeatmapSpec(), scale=1.0, segments=segments)
    assert out[0, 3].tolist() == [40, 40, 40]  # the inner border of segment 1
    assert out[:, 3].tolist() == [[40, 40, 40]] * 6
    assert out[0, 0].tolist() == [255, 255, 255]


def test_png_round_trips_exactly():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(hm.encode_png(rgb))))
    assert np.array_equal(back, rgb)
    assert hm.png_data_uri(b"x").startswith("data:image/png;base64,")
