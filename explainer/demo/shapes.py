"""Deterministic synthetic "shapes" images with a planted Clever-Hans watermark.

Each 64x64 RGB image shows one shape (circle, square, triangle or cross) with random
size, position, rotation and colour on a textured background. Training images mostly
carry a small class-specific watermark in a class-specific corner: a shortcut that a
model can learn instead of the shape, which attribution methods should reveal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage import draw

from explainer.errors import InputError, describe

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

IMAGE_SIZE = 64
WATERMARK_SIZE = 6
# Gap between the image border and the watermark patch.
WATERMARK_OFFSET = 2
# Objects keep out of every corner zone (not only their class's corner) so that the
# object position alone never tells the class, and the patch never covers the object.
_CORNER_ZONE = WATERMARK_OFFSET + WATERMARK_SIZE + 3
_TRAIN_WATERMARK_RATE = 0.85
_SPLIT_IDS = {"train": 1, "test": 2}
# (row, col) of the top-left pixel of each class's watermark: TL, TR, BR, BL corners.
_FAR = IMAGE_SIZE - WATERMARK_OFFSET - WATERMARK_SIZE
_WATERMARK_CORNERS = (
    (WATERMARK_OFFSET, WATERMARK_OFFSET),
    (WATERMARK_OFFSET, _FAR),
    (_FAR, _FAR),
    (_FAR, WATERMARK_OFFSET),
)
_WATERMARK_COLOURS = np.array(
    [[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.3, 1.0], [1.0, 1.0, 0.1]], dtype=np.float32
)


@dataclass(frozen=True)
class ShapesData:
    """A batch of synthetic shape images.

    Attributes:
        images: float32 tensor (n, 3, 64, 64) with values in [0, 1].
        labels: int64 tensor (n,) indexing ``class_names``.
        masks: bool tensor (n, 64, 64), True on the pixels of the object.
        watermarked: bool tensor (n,), True where the watermark patch was added.
        class_names: names of the four classes.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    watermarked: torch.Tensor
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_shapes(
    n: int, split: str = "test", seed: int = 0, watermark: bool | None = None
) -> ShapesData:
    """Generate ``n`` synthetic shape images, bit-identical for identical arguments.

    Image ``i`` depends only on ``(split, seed, i)``, so ``make_shapes(100)`` is the first
    100 images of ``make_shapes(1000)``, and forcing the watermark on or off changes only
    the patch pixels, never the underlying image.

    Args:
        n: number of images (>= 0).
        split: ``"train"`` or ``"test"``; the two splits draw from different random
            streams, so they never share images even with the same ``seed``.
        seed: seed of the random stream.
        watermark: ``None`` adds the watermark to about 85% of train images and to no
            test image; ``True`` adds it to every image; ``False`` to none.

    Returns:
        A :class:`ShapesData` with images, labels, object masks and watermark flags.

    Raises:
        InputError: (a ``ValueError``) if ``n`` is not a non-negative integer or ``split``
            is unknown.

    Example:
        >>> data = make_shapes(8, split="train", seed=1)
        >>> tuple(data.images.shape), data.images.dtype
        ((8, 3, 64, 64), torch.float32)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(
            describe("n", "a non-negative integer", repr(n), "Pass the number of images.")
        )
    if split not in _SPLIT_IDS:
        raise InputError(
            describe("split", "'train' or 'test'", repr(split), "Pick one of the two splits.")
        )
    n = int(n)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    masks = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    labels = np.empty(n, dtype=np.int64)
    marked = np.empty(n, dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], i])
        labels[i], marked[i] = _draw(rng, images[i], masks[i], split, watermark)
    np.clip(images, 0.0, 1.0, out=images)
    return ShapesData(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        masks=torch.from_numpy(masks),
        watermarked=torch.from_numpy(marked),
    )


def _draw(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    split: str,
    watermark: bool | None,
) -> tuple[int, bool]:
    """Draw one image into ``image`` (64, 64, 3) and its object into ``mask`` (64, 64), in
    place, from ``rng``; return its label and whether it carries the watermark."""
    label = int(rng.integers(len(CLASS_NAMES)))
    # Drawn unconditionally so that the rest of the stream is the same whatever
    # ``watermark`` says.
    wants_mark = bool(rng.random() < _TRAIN_WATERMARK_RATE)
    background = _background(rng)
    mask[:] = _object_mask(rng, label)
    image[:] = _paint_object(rng, background, mask)
    marked = wants_mark and split == "train" if watermark is None else bool(watermark)
    if marked:
        _add_watermark(image, label)
    return label, marked


def watermark_box(label: int) -> tuple[slice, slice]:
    """Return the (rows, cols) slices of the watermark patch for class ``label``.

    Args:
        label: class index in ``range(len(CLASS_NAMES))``.

    Returns:
        Row and column slices into a (64, 64) image.
    """
    row, col = _WATERMARK_CORNERS[label]
    return slice(row, row + WATERMARK_SIZE), slice(col, col + WATERMARK_SIZE)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    return rows / IMAGE_SIZE, cols / IMAGE_SIZE


_ROWS, _COLS = _grid()
# Bilinear 4 -> 64 upsampling as a (64, 4) matrix: zoom is linear and separable, so
# zooming the identity once replaces a zoom call per image.
_UPSAMPLE = ndimage.zoom(np.eye(4, dtype=np.float32), (IMAGE_SIZE / 4, 1), order=1)


def _background(rng: np.random.Generator) -> np.ndarray:
    """Gradient + oriented stripes + low-frequency colour blobs + pixel noise, (64, 64, 3)."""
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * _COLS + np.sin(angle) * _ROWS  # (64, 64)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    start, end = rng.uniform(0.1, 0.9, size=(2, 3)).astype(np.float32)
    image = start + ramp[..., None] * (end - start)

    stripe_angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(2.0, 8.0)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(
        2 * np.pi * frequency * (np.cos(stripe_angle) * _COLS + np.sin(stripe_angle) * _ROWS)
        + phase
    )
    stripe_colour = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    image += rng.uniform(0.03, 0.15) * wave[..., None] * stripe_colour

    # Coarse 4x4 noise upsampled bilinearly: soft colour blobs.
    coarse = rng.standard_normal(size=(4, 4, 3), dtype=np.float32)
    blobs = _UPSAMPLE @ coarse.transpose(2, 0, 1) @ _UPSAMPLE.T  # (3, 64, 64)
    image += rng.uniform(0.03, 0.1) * blobs.transpose(1, 2, 0)

    sigma = rng.uniform(0.01, 0.05)
    image += sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    return image.astype(np.float32)


def _shape_vertices(label: int, radius: float, angle: float) -> np.ndarray | None:
    """Polygon (k, 2) of (row, col) offsets for the class, None for the circle."""
    name = CLASS_NAMES[label]
    if name == "circle":
        return None
    if name == "square":
        # Half-diagonal 0.95 * radius keeps the area close to the circle's.
        polar = [(0.95 * radius, np.pi / 4 + k * np.pi / 2) for k in range(4)]
        points = np.array([[r * np.sin(t), r * np.cos(t)] for r, t in polar])
    elif name == "triangle":
        points = np.array(
            [
                [radius * np.sin(t), radius * np.cos(t)]
                for t in (np.pi / 2 + k * 2 * np.pi / 3 for k in range(3))
            ]
        )
    else:  # cross: a plus sign with arms of half-width w
        w, r = 0.32 * radius, radius
        points = np.array(
            [[-w, -r], [-w, -w], [-r, -w], [-r, w], [-w, w], [-w, r],
             [w, r], [w, w], [r, w], [r, -w], [w, -w], [w, -r]]
        )  # fmt: skip
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T


def _corner_zones() -> np.ndarray:
    zones = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    far = IMAGE_SIZE - _CORNER_ZONE
    for rows in (slice(0, _CORNER_ZONE), slice(far, IMAGE_SIZE)):
        for cols in (slice(0, _CORNER_ZONE), slice(far, IMAGE_SIZE)):
            zones[rows, cols] = True
    return zones


_ZONES = _corner_zones()


def _object_mask(rng: np.random.Generator, label: int) -> np.ndarray:
    """Boolean (64, 64) mask of one randomly placed shape that avoids the corner zones."""
    radius = rng.uniform(9.0, 15.0)
    angle = rng.uniform(0, 2 * np.pi)
    vertices = _shape_vertices(label, radius, angle)
    margin = radius + 1.0
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    # Rejection sampling of the centre; a central placement always fits, so fall back to it.
    for attempt in range(51):
        if attempt < 50:
            center = rng.uniform(margin, IMAGE_SIZE - 1 - margin, size=2)
        else:
            center = np.array([IMAGE_SIZE / 2, IMAGE_SIZE / 2])
        mask[:] = False
        if vertices is None:
            rr, cc = draw.disk(tuple(center), radius, shape=mask.shape)
        else:
            rr, cc = draw.polygon(
                vertices[:, 0] + center[0], vertices[:, 1] + center[1], shape=mask.shape
            )
        mask[rr, cc] = True
        if not (mask & _ZONES).any():
            break
    return mask


def _paint_object(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the mask with a random colour that contrasts with the background under it."""
    under = background[mask].mean(axis=0)
    colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    if np.abs(colour - under).max() < 0.35:
        # Push the channel closest to mid-grey away from the background to get contrast.
        channel = int(np.argmax(np.abs(under - 0.5)))
        colour[channel] = 0.05 if under[channel] > 0.5 else 0.95
    shading = rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
    ramp = (_ROWS[mask] - 0.5)[:, None] * shading  # (n_pixels, 3)
    noise = 0.03 * rng.standard_normal(size=ramp.shape, dtype=np.float32)
    painted = background.copy()
    painted[mask] = colour + ramp + noise
    return painted


def _add_watermark(image: np.ndarray, label: int) -> None:
    """Paint, in place on an (H, W, 3) image, a checkerboard of the class colour and black."""
    rows, cols = watermark_box(label)
    r, c = np.mgrid[0:WATERMARK_SIZE, 0:WATERMARK_SIZE]
    checker = ((r // 2 + c // 2) % 2 == 0)[..., None]
    image[rows, cols] = np.where(checker, _WATERMARK_COLOURS[label], 0.0)
