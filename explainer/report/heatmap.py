"""Heatmaps in pure numpy: channel reduction, normalization, colormap LUT, overlay, PNG.

No model knowledge and no figure per image: a colormap is sampled once into a 256-entry
lookup table and every map is coloured by indexing it, which is what makes reports fast.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["REDUCTIONS", "reduce_channels", "default_reduction", "percentile_scale", "normalize_signed",
           "normalize_absolute", "colormap_lut", "colorize", "image_to_rgb", "overlay", "encode_png", "png_data_uri",
           "render_overlay"]

REDUCTIONS = ("sum", "abs_sum", "l2", "max_abs")
SIGNED_CMAP, ABSOLUTE_CMAP = "RdBu_r", "inferno"


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


def default_reduction(method: str, params: dict | None = None) -> str:
    """The sensible reduction per method: signed sum for signed methods; max |.| for saliency
    (Simonyan et al.'s choice); sum for smoothgrad of a signed base."""
    params = params or {}
    if method == "saliency" and params.get("absolute", True):
        return "max_abs"
    if method == "smoothgrad" and params.get("base", "saliency") == "saliency":
        return "max_abs"
    return "sum"


def percentile_scale(maps: np.ndarray, percentile: float = 99.0, shared: bool = False) -> np.ndarray:
    """Scale of each (H, W) map (or one for all when ``shared``): a percentile of |values|."""
    flat = np.abs(maps.reshape(len(maps), -1))
    scale = np.percentile(flat, percentile, axis=1) if not shared else np.full(len(maps), np.percentile(flat, percentile))
    fallback = flat.max(axis=1)
    scale = np.where(scale > 0, scale, fallback)
    return np.where(scale > 0, scale, 1.0)


def normalize_signed(maps: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map values to [-1, 1] by per-map ``scale``, clipping beyond it."""
    return np.clip(maps / scale.reshape(-1, *([1] * (maps.ndim - 1))), -1.0, 1.0)


def normalize_absolute(maps: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map |values| to [0, 1] by per-map ``scale``, clipping beyond it."""
    return np.clip(np.abs(maps) / scale.reshape(-1, *([1] * (maps.ndim - 1))), 0.0, 1.0)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """A matplotlib colormap sampled once into a (256, 3) uint8 table."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colorize(normalized: np.ndarray, signed: bool, cmap: str | None = None) -> np.ndarray:
    """[-1, 1] (signed) or [0, 1] values -> uint8 RGB through the colormap LUT."""
    lut = colormap_lut(cmap or (SIGNED_CMAP if signed else ABSOLUTE_CMAP))
    unit = (normalized + 1.0) / 2.0 if signed else normalized
    return lut[np.clip(np.rint(unit * 255), 0, 255).astype(np.uint8)]


def image_to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float image (any range) -> (H, W, 3) float in [0, 1], min-max per image."""
    img = image.transpose(1, 2, 0).astype(np.float32)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    lo, hi = float(img.min()), float(img.max())
    if 0.0 <= lo and hi <= 1.0:
        return img[..., :3]
    return ((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img))[..., :3]


def overlay(rgb: np.ndarray, colored: np.ndarray, strength: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    """Blend ``colored`` (H, W, 3) uint8 over the image where |attribution| is strong.

    The blend weight is ``alpha * strength`` (strength in [0, 1]), so weak attributions
    leave the image visible. The image is shown slightly greyed to let colours stand out.
    """
    grey = rgb.mean(axis=2, keepdims=True)
    base = 0.35 * rgb + 0.65 * grey
    a = (alpha * strength)[..., None]
    out = (1.0 - a) * base * 255.0 + a * colored.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_png(rgb: np.ndarray, upscale: int = 1) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes; ``upscale`` repeats pixels (crisp thumbnails)."""
    if upscale > 1:
        rgb = np.repeat(np.repeat(rgb, upscale, axis=0), upscale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """PNG bytes -> ``data:image/png;base64,...`` for inline HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_overlay(image: np.ndarray, attribution: np.ndarray, reduction: str = "sum", signed: bool = True,
                   percentile: float = 99.0, scale: float | None = None, alpha: float = 0.75) -> np.ndarray:
    """One (C, H, W) attribution over its (C, H, W) image -> (H, W, 3) uint8 overlay."""
    heat = reduce_channels(attribution[None], reduction)
    s = np.array([scale]) if scale else percentile_scale(heat, percentile)
    if signed:
        norm = normalize_signed(heat, s)[0]
        colored, strength = colorize(norm, True), np.abs(norm)
    else:
        norm = normalize_absolute(heat, s)[0]
        colored, strength = colorize(norm, False), norm
    return overlay(image_to_rgb(image), colored, strength, alpha)
