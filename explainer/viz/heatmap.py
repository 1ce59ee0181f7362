"""Heatmaps in pure numpy: channel reduction, normalization, colormap LUT, overlay, PNG.

No model knowledge and no figure per image: a colormap is sampled once into a 256-entry
lookup table and every map is coloured by indexing it, which is what makes reports fast
(see benchmarks/bench_heatmap.py for the comparison with captum's visualize_image_attr).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from skimage.segmentation import find_boundaries

from ..errors import UnknownMethodError
from ..registry import REDUCTIONS, get_method

__all__ = [
    "REDUCTIONS",
    "HeatmapSpec",
    "spec_for",
    "reduce_channels",
    "percentile_scale",
    "shared_scale",
    "normalize_signed",
    "normalize_absolute",
    "colormap_lut",
    "colorize",
    "image_to_rgb",
    "overlay",
    "segment_boundaries",
    "encode_png",
    "png_data_uri",
    "render_overlay",
    "colorbar_rgb",
]

SIGNED_CMAP, ABSOLUTE_CMAP = "RdBu_r", "inferno"


@dataclass(frozen=True)
class HeatmapSpec:
    """How one method's maps are drawn; recorded in reports so a reader knows.

    Attributes:
        reduction: how channels become one map ("sum", "abs_sum", "l2", "max_abs").
        signed: diverging colormap centred on 0 (True) or sequential on |value| (False).
        percentile: values beyond this percentile of |map| are clipped (default 99).
        cmap: matplotlib colormap name.
    """

    reduction: str = "sum"
    signed: bool = True
    percentile: float = 99.0
    cmap: str = SIGNED_CMAP

    def describe(self) -> str:
        kind = "signed, centred on 0" if self.signed else "absolute"
        return f"channels: {self.reduction}; {kind}; clipped at the {self.percentile:g}th percentile; {self.cmap}"


def spec_for(method: str, params: dict | None = None, percentile: float = 99.0) -> HeatmapSpec:
    """How a method's maps are drawn, as it registered (``register_method(signed=...,
    reduction=...)``) for these ``params``: signed maps on a diverging colormap, unsigned
    ones (|gradient|) on a sequential one. A method that is not registered here (say, an
    explanation loaded from a file a plugin method made) is drawn signed, channels summed.

    Example:
        >>> spec_for("integrated_gradients").signed, spec_for("not_registered").reduction
        (True, 'sum')
    """
    try:
        info = get_method(method)
    except UnknownMethodError:
        return HeatmapSpec("sum", True, percentile, SIGNED_CMAP)
    signed = info.draws_signed(params or {})
    return HeatmapSpec(
        info.heatmap_reduction(params or {}),
        signed,
        percentile,
        SIGNED_CMAP if signed else ABSOLUTE_CMAP,
    )


def reduce_channels(attr: np.ndarray, how: str = "sum") -> np.ndarray:
    """(..., C, H, W) -> (..., H, W) by ``how`` in REDUCTIONS."""
    if how == "sum":
        return attr.sum(-3)
    if how == "abs_sum":
        return np.abs(attr).sum(-3)
    if how == "l2":
        return np.sqrt((attr**2).sum(-3))
    if how == "max_abs":
        return np.abs(attr).max(-3)
    raise ValueError(f"unknown channel reduction {how!r}; expected one of {REDUCTIONS}")


def percentile_scale(maps: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Per-map scale (N,) of (N, H, W) maps: a percentile of |values| (max if that is 0; 1 if all 0)."""
    flat = np.abs(maps.reshape(len(maps), -1))
    scale = np.percentile(flat, percentile, axis=1)
    scale = np.where(scale > 0, scale, flat.max(axis=1))
    return np.where(scale > 0, scale, 1.0)


def shared_scale(scales: list[np.ndarray]) -> np.ndarray:
    """One scale per sample shared by several methods (the largest), so maps compare."""
    return np.max(np.stack(scales), axis=0)


def normalize_signed(maps: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map values to [-1, 1] by per-map ``scale``, clipping beyond it."""
    return np.clip(maps / np.reshape(scale, (-1, *([1] * (maps.ndim - 1)))), -1.0, 1.0)


def normalize_absolute(maps: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map |values| to [0, 1] by per-map ``scale``, clipping beyond it."""
    return np.clip(np.abs(maps) / np.reshape(scale, (-1, *([1] * (maps.ndim - 1)))), 0.0, 1.0)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """A matplotlib colormap sampled once into a (256, 3) uint8 table."""
    import matplotlib  # heavy: imported when a colormap is first needed

    return np.round(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(
        np.uint8
    )


def colorize(normalized: np.ndarray, signed: bool, cmap: str | None = None) -> np.ndarray:
    """[-1, 1] (signed) or [0, 1] values -> uint8 RGB through the colormap LUT."""
    lut = colormap_lut(cmap or (SIGNED_CMAP if signed else ABSOLUTE_CMAP))
    x = np.asarray(normalized, dtype=np.float32)
    # index = round(unit * 255) with unit = (v + 1) / 2 (signed) or v; +0.5 then truncation rounds.
    idx = (x + np.float32(1.0)) * np.float32(127.5) if signed else x * np.float32(255.0)
    idx += np.float32(0.5)
    np.clip(idx, 0, 255.5, out=idx)
    return lut[idx.astype(np.uint8)]


def denormalize(image: np.ndarray, preprocessing: dict | None) -> np.ndarray:
    """Undo the mean/std normalization recorded by the data (ImageFolder) for display."""
    if not preprocessing or preprocessing.get("mean") is None:
        return image
    c = image.shape[0]
    mean = np.broadcast_to(np.asarray(preprocessing["mean"], dtype=np.float64), (c,))
    std = np.broadcast_to(np.asarray(preprocessing.get("std") or 1.0, dtype=np.float64), (c,))
    return (image * std[:, None, None] + mean[:, None, None]).astype(np.float32)


def image_to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float image -> (H, W, 3) float in [0, 1]; min-max scaled if outside [0, 1]."""
    img = image.transpose(1, 2, 0).astype(np.float32)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    lo, hi = float(img.min()), float(img.max())
    if 0.0 <= lo and hi <= 1.0:
        return img[..., :3]
    return ((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img))[..., :3]


def overlay(
    rgb: np.ndarray, colored: np.ndarray, strength: np.ndarray, alpha: float = 0.75
) -> np.ndarray:
    """Blend ``colored`` (H, W, 3) uint8 over a greyed image, weight ``alpha * strength``.

    Weak attributions leave the image visible; greying lets the colours stand out.
    """
    rgb = rgb.astype(np.float32, copy=False)
    # All in float32 and in place: this blend is most of the time of a report's images.
    base = rgb.mean(axis=2, keepdims=True, dtype=np.float32) * np.float32(0.65 * 255)
    base = base + rgb * np.float32(0.35 * 255)  # greyed image, 0..255
    a = (np.float32(alpha) * strength.astype(np.float32, copy=False))[..., None]
    out = colored.astype(np.float32)
    out -= base
    out *= a
    out += base
    np.rint(out, out=out)
    return out.astype(np.uint8)


def segment_boundaries(segments: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels on the border between superpixels (scikit-image)."""
    return find_boundaries(segments, mode="inner")


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + tag
        + data
        + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    )


def encode_png(rgb: np.ndarray, upscale: int = 1, compress_level: int = 1) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes; ``upscale`` repeats pixels (crisp thumbnails).

    Our own minimal encoder: every row uses the PNG "Up" filter (computed in one numpy
    subtraction) and zlib level 1. Pillow picks a filter per row in C and is ~1.7x slower
    here; heatmap overlays are noisy, so higher zlib levels shrink them by ~1% at twice the
    time (measured on 224 px overlays).
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if upscale > 1:
        rgb = np.repeat(np.repeat(rgb, upscale, axis=0), upscale, axis=1)
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, 3 * w)
    raw = np.empty((h, 3 * w + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type "Up": byte minus the byte above (mod 256)
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), compress_level))
        + _png_chunk(b"IEND", b"")
    )


def png_data_uri(png: bytes) -> str:
    """PNG bytes -> ``data:image/png;base64,...`` for inline HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_overlay(
    image: np.ndarray,
    heat: np.ndarray,
    spec: HeatmapSpec,
    scale: float | None = None,
    alpha: float = 0.75,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """One (H, W) map (or (C, H, W) attribution, reduced by ``spec``) over its (C, H, W)
    image -> (H, W, 3) uint8. ``segments`` draws superpixel boundaries on top."""
    if heat.ndim == 3:
        heat = reduce_channels(heat, spec.reduction)
    s = np.array([scale if scale else percentile_scale(heat[None], spec.percentile)[0]])
    if spec.signed:
        norm = normalize_signed(heat[None], s)[0]
        colored, strength = colorize(norm, True, spec.cmap), np.abs(norm)
    else:
        norm = normalize_absolute(heat[None], s)[0]
        colored, strength = colorize(norm, False, spec.cmap), norm
    out = overlay(image_to_rgb(image), colored, strength, alpha)
    if segments is not None:
        out[segment_boundaries(segments)] = (40, 40, 40)
    return out


def colorbar_rgb(spec: HeatmapSpec, width: int = 128, height: int = 10) -> np.ndarray:
    """A horizontal colour bar for ``spec`` (left = -scale or 0, right = +scale)."""
    ramp = np.linspace(-1.0 if spec.signed else 0.0, 1.0, width)
    return np.repeat(colorize(ramp, spec.signed, spec.cmap)[None], height, axis=0)
