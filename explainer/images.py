"""Image folders as a torch Dataset: loading (PIL), resize and normalization, recorded so
that reports can show the de-normalized image."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import InputError, describe

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageFolder(Dataset):
    """Images from ``root/<class_name>/*`` (labels index the sorted class folders, as in
    torchvision) or from a flat folder (every label -1, ``classes == []``).

    With class folders, images directly in ``root`` are ignored. Files are sorted, so the
    order is the same on every machine. Each item is ``(image, label)``: a float32
    (C, H, W) tensor in [0, 1], resized to ``size`` (bilinear) and normalized per channel
    as ``(x - mean) / std``, and an int.

    Args:
        root: the folder.
        size: output size, an int (square) or (H, W); ``None`` keeps the files' size, which
            must then be the same for every image.
        mean, std: per-channel statistics (C values or one scalar); ``None``: no normalization.
        extensions: file suffixes read as images (case-insensitive).
        grayscale: load one channel ("L") instead of RGB.

    Raises:
        InputError: no images, empty class folders, mixed sizes without ``size``, or bad
            ``size``/``mean``/``std``.

    Example:
        >>> import tempfile, PIL.Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for label in ("cat", "dog"):
        ...     (root / label).mkdir()
        ...     PIL.Image.new("RGB", (8, 6)).save(root / label / "a.png")
        >>> data = ImageFolder(root, size=4, mean=0.5, std=0.25)
        >>> data.classes, tuple(data[1][0].shape), data[1][1]
        (['cat', 'dog'], (3, 4, 4), 1)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | Sequence[int] | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        grayscale: bool = False,
    ) -> None:
        from PIL import Image

        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(describe("`root`", "a folder", repr(str(root)), "Check the path."))
        self.grayscale = bool(grayscale)
        self.size = _check_size(size)
        channels = 1 if self.grayscale else 3
        self.mean = None if mean is None and std is None else _stats(mean, 0.0, channels, "mean")
        self.std = None if self.mean is None else _stats(std, 1.0, channels, "std")
        if self.std is not None and min(self.std) <= 0:
            raise InputError(
                describe("`std`", "values > 0", str(self.std), "Pass positive standard deviations.")
            )
        suffixes = tuple(e.lower() for e in extensions)

        def images(folder: Path) -> list[Path]:
            files = folder.rglob("*") if folder != self.root else folder.iterdir()
            return sorted(f for f in files if f.is_file() and f.suffix.lower() in suffixes)

        folders = sorted(d for d in self.root.iterdir() if d.is_dir() and d.name[0] != ".")
        found = {d.name: images(d) for d in folders}
        if any(found.values()):
            empty = [name for name, files in found.items() if not files]
            if empty:
                raise InputError(
                    describe(
                        "Class folders",
                        "images in every one",
                        f"none in {empty}",
                        "Remove the empty folders or add images to them.",
                    )
                )
            self.classes = list(found)
            self.samples = [(str(f), i) for i, files in enumerate(found.values()) for f in files]
        else:
            self.classes = []
            self.samples = [(str(f), -1) for f in images(self.root)]
        if not self.samples:
            raise InputError(
                describe(
                    f"Image folder {str(root)!r}",
                    f"files ending in {', '.join(suffixes)}, flat or in one folder per class",
                    "none",
                    "Check the path and `extensions`.",
                )
            )
        if self.size is None:  # headers only: Image.open does not decode the pixels
            sizes: dict[tuple[int, int], str] = {}
            for file, _ in self.samples:
                with Image.open(file) as img:
                    sizes.setdefault(img.size, file)
            if len(sizes) > 1:
                got = ", ".join(
                    f"{w}x{h} ({Path(f).name})" for (w, h), f in list(sizes.items())[:3]
                )
                raise InputError(
                    describe("Image sizes", "one size for every image", got, "Pass size=(H, W).")
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        file, label = self.samples[index]
        with Image.open(file) as img:
            img = img.convert("L" if self.grayscale else "RGB")
            if self.size is not None:
                img = img.resize(
                    (self.size[1], self.size[0]), Image.Resampling.BILINEAR
                )  # PIL: (W, H)
            pixels = np.array(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
        x = torch.from_numpy(pixels).reshape(*pixels.shape[:2], -1).permute(2, 0, 1)  # (C, H, W)
        if self.mean is not None:
            x = (x - self._column(self.mean, x)) / self._column(self.std, x)
        return x.contiguous(), label

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, images={len(self)}, classes={len(self.classes)})"

    @property
    def paths(self) -> list[Path]:
        """The image files, in dataset order."""
        return [Path(f) for f, _ in self.samples]

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How images are turned into tensors, as a JSON-serializable dict (for manifests)."""
        return {
            "loader": "PIL",
            "size": list(self.size) if self.size else None,
            "mean": self.mean,
            "std": self.std,
            "grayscale": self.grayscale,
            "root": str(self.root),
        }

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization of (C, H, W) or (N, C, H, W) images: ``x * std + mean``."""
        channels = 1 if self.grayscale else 3
        if x.ndim not in (3, 4) or x.shape[-3] != channels:
            raise InputError(
                describe(
                    "`x`",
                    f"(C={channels}, H, W) or (N, C={channels}, H, W)",
                    str(tuple(x.shape)),
                    "Pass images shaped as this dataset returns them.",
                )
            )
        if self.mean is None:
            return x.clone()
        return x * self._column(self.std, x) + self._column(self.mean, x)

    @staticmethod
    def _column(values: list[float], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (
        (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, Sequence) else ()
    )
    if len(hw) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw
    ):
        raise InputError(
            describe("`size`", "a positive int or (H, W)", repr(size), "Pass e.g. size=224.")
        )
    return (int(hw[0]), int(hw[1]))


def _stats(values: Any, default: float, channels: int, name: str) -> list[float]:
    if values is None:
        return [default] * channels
    if np.ndim(values) == 0:
        return [float(values)] * channels
    out = [float(v) for v in values]
    if len(out) != channels:
        raise InputError(
            describe(
                f"`{name}`",
                f"one value per channel ({channels}) or a scalar",
                f"{len(out)} values",
                "Pass 3 values for RGB images, 1 with grayscale=True.",
            )
        )
    return out
