"""Image folders as a torch Dataset: loading (PIL), resize and normalization, recorded so
that reports can show the de-normalized image."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError, describe

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "DEFAULT_MAX_PIXELS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# PIL's own default (Image.MAX_IMAGE_PIXELS): about 9459 x 9459, 0.27 GB as 8-bit RGB.
DEFAULT_MAX_PIXELS = 89_478_485
# Integer modes holding 16-bit samples ("I" is what older Pillow and some formats give).
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageFolder(Dataset):
    """Images from ``root/<class_name>/*`` (labels index the sorted class folders, as in
    torchvision) or from a flat folder (every label -1, ``classes == []``).

    With class folders, images directly in ``root`` are ignored. Files are sorted, so the
    order is the same on every machine. Each item is ``(image, label)``: a float32
    (C, H, W) tensor in [0, 1], resized to ``size`` (bilinear) and normalized per channel
    as ``(x - mean) / std``, and an int.

    Pixel values are scaled by the file's real bit depth: 8-bit images by 255, 16-bit
    grayscale (PIL modes "I;16*", "I") by 65535. Palette images use their colours; an alpha
    channel is dropped (as torchvision's loader does); grayscale files give 3 equal
    channels unless ``grayscale=True``.

    Every file is checked at construction from its header alone (nothing is decoded): it
    must be an image PIL can identify, with at most ``max_pixels`` pixels, and it must lie
    inside ``root`` once symbolic links are resolved. Links that stay inside ``root`` are
    fine; a link (file or class folder) to anything outside it is refused, so that a
    dataset never reads files elsewhere on the machine. Symlinked folders below a class
    folder are not entered. A file that is broken past its header (e.g. truncated) is
    found when it is decoded, by ``dataset[i]``, and raises an InputError naming it.

    Args:
        root: the folder.
        size: output size, an int (square) or (H, W); ``None`` keeps the files' size, which
            must then be the same for every image.
        mean, std: per-channel statistics (C values or one scalar); ``None``: no normalization.
        extensions: file suffixes read as images (case-insensitive).
        grayscale: load one channel ("L") instead of RGB.
        max_pixels: the most pixels (width x height, from the header) an image may have;
            larger files are refused before decoding (decompression bombs). PIL refuses
            files over twice its ``Image.MAX_IMAGE_PIXELS`` on its own, whatever this is.

    Raises:
        InputError: no images, empty class folders, mixed sizes without ``size``, bad
            ``size``/``mean``/``std``/``max_pixels``, a file that is not a readable image or
            has more than ``max_pixels`` pixels, or a link leading outside ``root``
            (``dataset[i]`` raises it too for a file that fails to decode).

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
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(describe("`root`", "a folder", repr(str(root)), "Check the path."))
        self.max_pixels = _check_max_pixels(max_pixels)
        self._real_root = self.root.resolve()
        self.grayscale = bool(grayscale)
        self.size = _check_size(size)
        self.mean, self.std = _check_stats(mean, std, 1 if self.grayscale else 3)
        suffixes = tuple(e.lower() for e in extensions)
        self.classes, self.samples = self._find(suffixes)
        if not self.samples:
            raise InputError(
                describe(
                    f"Image folder {str(root)!r}",
                    f"files ending in {', '.join(suffixes)}, flat or in one folder per class",
                    "none",
                    "Check the path and `extensions`.",
                )
            )
        self._check_headers()

    def _find(self, suffixes: tuple[str, ...]) -> tuple[list[str], list[tuple[str, int]]]:
        """(classes, samples): the class folders' images, or the root's when they hold none."""

        def images(folder: Path) -> list[Path]:
            # rglob does not enter symlinked folders; files (links included) are checked
            files = folder.rglob("*") if folder != self.root else folder.iterdir()
            found = sorted(f for f in files if f.is_file() and f.suffix.lower() in suffixes)
            for f in found:
                _check_inside(f, self._real_root)
            return found

        folders = sorted(d for d in self.root.iterdir() if d.is_dir() and d.name[0] != ".")
        for d in folders:
            _check_inside(d, self._real_root)
        found = {d.name: images(d) for d in folders}
        if not any(found.values()):
            return [], [(str(f), -1) for f in images(self.root)]
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
        return list(found), [(str(f), i) for i, files in enumerate(found.values()) for f in files]

    def _check_headers(self) -> None:
        """Open every file's header (max_pixels, readable); one size for all without ``size``."""
        sizes: dict[tuple[int, int], str] = {}
        for file, _ in self.samples:  # headers only: Image.open does not decode the pixels
            with self._open(file) as img:
                sizes.setdefault(img.size, file)
        if self.size is None and len(sizes) > 1:
            got = ", ".join(f"{w}x{h} ({Path(f).name})" for (w, h), f in list(sizes.items())[:3])
            raise InputError(
                describe("Image sizes", "one size for every image", got, "Pass size=(H, W).")
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file, label = self.samples[index]
        _check_inside(Path(file), self._real_root)  # the file may have changed since
        with self._open(file) as img:
            try:
                pixels = _pixels(img, self.grayscale, self.size)  # (H, W, C) in [0, 1]
            except InputError:
                raise
            except Exception as err:  # PIL's decoders raise OSError, SyntaxError, ValueError...
                raise _unreadable(file, err) from err
        x = torch.from_numpy(pixels).permute(2, 0, 1)  # (C, H, W)
        if self.mean is not None:
            x = (x - self._column(self.mean, x)) / self._column(self.std, x)
        return x.contiguous(), label

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, images={len(self)}, classes={len(self.classes)})"

    @contextmanager
    def _open(self, file: str) -> Iterator[Any]:
        """The opened image (header read, pixels not decoded), checked against max_pixels."""
        try:
            with warnings.catch_warnings():  # the limit is ours (max_pixels), not PIL's warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(file)
        except Image.DecompressionBombError as err:  # over PIL's hard limit, before ours
            # the header's size is only in PIL's message: "Image size (N pixels) exceeds..."
            count = re.search(r"\((\d+) pixels\)", str(err))
            got = f"{int(count[1]):,}" if count else f"more than {2 * Image.MAX_IMAGE_PIXELS:,}"
            raise _too_large(file, got, self.max_pixels) from err
        except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError...
            raise _unreadable(file, err) from err
        with img:
            width, height = img.size
            if width * height > self.max_pixels:
                raise _too_large(file, f"{width}x{height} = {width * height:,}", self.max_pixels)
            yield img

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


def _check_inside(path: Path, real_root: Path) -> None:
    """Refuse ``path`` when, links resolved, it is not inside the (resolved) root."""
    target = path.resolve()
    if not target.is_relative_to(real_root):
        raise InputError(
            describe(
                f"Image folder entry {str(path)!r}",
                f"a file or folder inside the root {str(real_root)!r}",
                f"a symbolic link to {str(target)!r}",
                "Copy the data into the folder or remove the link (links that leave the root "
                "are refused, so that a dataset never reads files elsewhere).",
            )
        )


def _unreadable(file: str, err: BaseException) -> InputError:
    return InputError(
        describe(
            f"Image file {file!r}",
            "an image PIL can read (its suffix says it is one)",
            f"{type(err).__name__}: {err}",
            "Replace or remove the file, or leave its suffix out of `extensions`.",
        )
    )


def _too_large(file: str, got: str, max_pixels: int) -> InputError:
    return InputError(
        describe(
            f"Image file {file!r}",
            f"at most max_pixels={max_pixels:,} pixels (width x height, from its header)",
            f"{got} pixels",
            "Downscale the file, or raise `max_pixels` if you trust it (it may be a "
            "decompression bomb).",
        )
    )


def _pixels(img: Any, grayscale: bool, size: tuple[int, int] | None) -> np.ndarray:
    """Decode ``img`` to float32 (H, W, C) in [0, 1], scaled by its real bit depth."""
    if img.mode not in (*_SIXTEEN_BIT_MODES, "F"):  # 8 bits per sample: resize as PIL does
        if img.mode == "P":  # palette transparency must go through RGBA (PIL warns otherwise)
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        img = img.convert("L" if grayscale else "RGB")  # drops alpha, as torchvision does
        if size is not None:
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # PIL: (W, H)
        pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
        return pixels.reshape(*pixels.shape[:2], -1)
    values = np.asarray(img, dtype=np.float64)  # (H, W), one channel
    low, high = (0.0, 65535.0) if img.mode != "F" else (0.0, 1.0)
    if values.size and not (
        np.isfinite(values).all() and low <= values.min() <= values.max() <= high
    ):
        raise InputError(
            describe(
                f"Image file {img.filename!r} (PIL mode {img.mode})",
                f"sample values in [{low:g}, {high:g}]",
                f"values in [{values.min():g}, {values.max():g}]",
                "Convert the file to 8- or 16-bit PNG.",
            )
        )
    gray = (values / high).astype(np.float32)  # (H, W)
    if size is not None:  # bilinear on floats keeps every bit of the 16-bit data
        gray = np.asarray(
            Image.fromarray(gray).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        )
    gray = np.clip(gray, 0.0, 1.0)  # bilinear weights are >= 0: only rounding can step out
    return np.repeat(gray[:, :, None], 1 if grayscale else 3, axis=2)


def _check_max_pixels(max_pixels: Any) -> int:
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise InputError(
            describe(
                "`max_pixels`",
                "a positive int",
                repr(max_pixels),
                f"Pass e.g. max_pixels={DEFAULT_MAX_PIXELS} (the default).",
            )
        )
    return max_pixels


def _check_stats(
    mean: Any, std: Any, channels: int
) -> tuple[list[float] | None, list[float] | None]:
    """(mean, std) per channel, or (None, None) when neither is given (no normalization)."""
    if mean is None and std is None:
        return None, None
    mean, std = _stats(mean, 0.0, channels, "mean"), _stats(std, 1.0, channels, "std")
    if min(std) <= 0:
        raise InputError(
            describe("`std`", "values > 0", str(std), "Pass positive standard deviations.")
        )
    return mean, std


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
