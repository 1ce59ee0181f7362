"""Safe model loading and an image-folder dataset.

:func:`load_model` reads a model file without ever unpickling arbitrary Python objects:

* TorchScript archives (``torch.jit.script(net).save(path)``) -> ``torch.jit.load``;
* ``torch.export`` programs (``torch.export.save``, ``.pt2``) -> ``torch.export.load``, after
  checking that every member it would unpickle also loads with ``weights_only=True``
  (``torch.export.load`` itself falls back to unrestricted unpickling);
* ``torch.save`` checkpoints -> ``torch.load(weights_only=True)`` only; a state_dict is loaded
  into the network that ``factory`` builds. A pickled whole model is refused, never loaded.

Errors: problems with the arguments (missing file, bad ``factory``) raise
:class:`~explainer.errors.InputError`; files whose content cannot be loaded safely or does
not fit the network raise :class:`~explainer.errors.ModelError`.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .errors import InputError, ModelError, describe
from .model import Model, wrap

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_model"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SAFE_FORMATS = (
    "weights saved with torch.save(model.state_dict()), a TorchScript archive or a "
    "torch.export .pt2 program"
)
_RESAVE = (
    "If the file comes from a source you trust, re-save it in a safe format: "
    "torch.save(model.state_dict(), path) and load_model(path, factory='package.module:Class'), "
    "or torch.jit.script(model).save(path), or torch.export.save(torch.export.export(model, "
    "example_inputs), path)."
)
# Members of a .pt2 archive that torch.export.load reads as JSON or text, never unpickles.
_PT2_TEXT = {"archive_format", "archive_version", "byteorder", "version"}
_PT2_TEXT_DIRS = (".data/", "extra/")


def load_model(
    source: str | os.PathLike,
    *,
    factory: Callable[[], nn.Module] | str | None = None,
    modality: str | None = None,
    class_names: Sequence[str] | None = None,
    output: str | None = None,
    name: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Model:
    """Load a model file safely and wrap it for explanation.

    The format is detected from the content, not the suffix. The special names ``"demo"``
    (the shipped shapes CNN) and ``"demo-tabular"`` (the breast-cancer MLP) load the demo
    models with their class names and modality, unless a file of that name exists.

    Args:
        source: path to a TorchScript archive, a ``torch.export`` program or a ``torch.save``
            state_dict (also a dict holding one under ``"state_dict"``/``"model_state_dict"``).
        factory: builds the network for a state_dict: a callable taking no arguments or
            ``"package.module:name"`` (imported, so name only code you trust). Ignored for
            TorchScript and torch.export files, which hold their own architecture.
        modality, class_names, output, name: passed to :func:`~explainer.wrap`; ``name``
            defaults to the file's stem.
        map_location: device to load the weights onto.

    Returns:
        A :class:`~explainer.Model` around the network, in eval mode.

    Raises:
        InputError: missing file, or a ``factory`` that cannot build an ``nn.Module``.
        ModelError: unsafe content (a pickled whole model), an unknown format, or weights
            that do not match the network.

    Example:
        >>> import explainer as ex
        >>> load_model("demo").class_names
        ('circle', 'square', 'triangle', 'cross')
    """
    if not isinstance(source, str | os.PathLike):
        raise InputError(describe("`source`", "a path", type(source).__name__, "Pass a file path."))
    path = Path(source)
    if not path.exists() and str(source) in ("demo", "demo-tabular"):
        return _demo(str(source), modality, class_names, output, name)
    if not path.is_file():
        raise InputError(
            describe(
                "`source`",
                f"an existing model file ({_SAFE_FORMATS})",
                f"{str(source)!r}, which {'is a folder' if path.is_dir() else 'does not exist'}",
                'Check the path, or pass "demo" for the shipped demo model.',
            )
        )
    data = path.read_bytes()  # read once: what is checked is what is loaded
    kind = _archive_kind(data)
    if kind == "torchscript":
        net = _guarded(path, lambda: torch.jit.load(io.BytesIO(data), map_location=map_location))
    elif kind == "export":
        _check_export_archive(path, data)
        graph = _guarded(path, lambda: torch.export.load(io.BytesIO(data)).module())
        net = _ExportedModule(graph).to(map_location)
    else:
        net = _load_checkpoint(path, data, factory, map_location)
    net.eval()
    return wrap(net, class_names, modality, output, name or path.stem)


def _demo(spec: str, modality, class_names, output, name) -> Model:
    if spec == "demo":
        from .demo.cnn import load_demo_cnn
        from .demo.shapes import CLASS_NAMES

        net, names, kind, title = (
            load_demo_cnn(),
            CLASS_NAMES,
            "image",
            "DemoCNN (synthetic shapes)",
        )
    else:
        from .demo.tabular import TABULAR_CLASS_NAMES, load_tabular_mlp

        net, names, kind = load_tabular_mlp(), TABULAR_CLASS_NAMES, "tabular"
        title = "TabularMLP (breast cancer)"
    return wrap(net, class_names or names, modality or kind, output, name or title)


def _archive_kind(data: bytes) -> str:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return "checkpoint"  # legacy torch.save format or a raw pickle: torch.load decides
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n.split("/", 1)[-1] for n in zf.namelist()}  # drop the archive folder
    if "archive_format" in members or any(m.startswith("models/") for m in members):
        return "export"
    if "constants.pkl" in members or any(m.startswith("code/") for m in members):
        return "torchscript"
    return "checkpoint"


def _guarded(path: Path, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except (RuntimeError, ValueError, KeyError, OSError, AssertionError, zipfile.BadZipFile) as err:
        raise ModelError(
            f"Could not load {path.name}: {err}. Check that the file is complete and was saved "
            "by a compatible torch version."
        ) from err


def _check_export_archive(path: Path, data: bytes) -> None:
    """Refuse a .pt2 archive if a member that torch.export.load would unpickle is not plain
    tensors: torch falls back to ``weights_only=False`` there (sample inputs, tensor
    subclasses, opaque constants), which would run whatever code the pickle names."""

    def refuse(got: str) -> ModelError:
        what = f"{path.name} (torch.export program)"
        return ModelError(describe(what, "members that load as plain tensors", got, _RESAVE))

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        if len(set(names)) != len(names):  # zip readers may disagree on which copy counts
            raise refuse("duplicate archive members")
        raw, pickled = set(), set()  # payloads read as bytes / unpickled, per the configs
        for n in names:
            if not n.endswith("_config.json"):
                continue
            for meta in _json_config(zf.read(n)).values():
                file = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if "/" in file or "\\" in file or file.startswith("."):
                    raise refuse(f"a payload path {file!r} outside its folder")
                plain = meta.get("use_pickle") is False and file.startswith(("weight_", "tensor_"))
                (raw if plain else pickled).add(f"{n.rsplit('/', 1)[0]}/{file}")
        for n in names:
            member = n.split("/", 1)[-1]
            text = n.endswith(".json") or member in _PT2_TEXT or member.startswith(_PT2_TEXT_DIRS)
            if n not in pickled and (n in raw or text):
                continue
            try:
                torch.load(io.BytesIO(zf.read(n)), map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, EOFError) as err:
                raise refuse(
                    f"{member!r}, which torch.export.load would unpickle without restriction "
                    "(unpickling can run arbitrary code)"
                ) from err


def _json_config(content: bytes) -> dict:
    try:
        config = json.loads(content).get("config", {})
    except (ValueError, AttributeError):
        return {}
    return config if isinstance(config, dict) else {}


class _ExportedModule(nn.Module):
    """A torch.export graph as a regular module. Its train/eval behaviour was fixed when it
    was exported, and the graph refuses ``train()``/``eval()``: here they only set flags."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> _ExportedModule:
        self.training = mode
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.graph(*args, **kwargs)
        except AssertionError as err:  # a shape guard of the exported program
            raise RuntimeError(
                f"{err} (this torch.export program accepts only the shapes it was exported "
                "for; attribution methods run larger batches: export with "
                "dynamic_shapes=({0: torch.export.Dim('batch')},))"
            ) from err


def _load_checkpoint(path: Path, data: bytes, factory, map_location) -> nn.Module:
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).partition("WeightsUnpickler error:")[2].strip()
        reason = reason.splitlines()[0].split(". ")[0] if reason else ""
        raise ModelError(
            describe(
                f"{path.name}",
                _SAFE_FORMATS,
                "a pickled Python object that torch.load(weights_only=True) refuses"
                + (f" ({reason})" if reason else ""),
                "Unpickling it could run arbitrary code, so explainer never loads it with "
                f"weights_only=False. {_RESAVE}",
            )
        ) from err
    except (RuntimeError, KeyError, EOFError, ValueError) as err:
        raise ModelError(
            describe(
                f"{path.name}",
                _SAFE_FORMATS,
                f"a file torch.load cannot read ({type(err).__name__}: {err})",
                "Check that the path points to the model file itself and that it is complete.",
            )
        ) from err
    state = _state_dict_of(obj)
    if state is None:
        raise ModelError(
            describe(
                f"{path.name}",
                "a state_dict (a mapping of parameter names to tensors)",
                type(obj).__name__,
                "Save the weights with torch.save(model.state_dict(), path).",
            )
        )
    net = _build(factory)
    expected = net.state_dict().keys()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ModelError(
            describe(
                f"The weights in {path.name}",
                f"the {len(expected)} keys of {type(net).__name__}.state_dict()",
                f"missing keys {_few(missing)} and unexpected keys {_few(unexpected)}",
                "Check that `factory` builds the architecture the weights were saved from "
                "(a 'module.' prefix comes from DataParallel: save model.module.state_dict()).",
            )
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shape mismatches
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ModelError(
            describe(
                f"The weights in {path.name}",
                f"tensors shaped like those of {type(net).__name__}",
                "; ".join(problems[:2])
                + (f" and {len(problems) - 2} more" if len(problems) > 2 else ""),
                "Check that `factory` builds the architecture (and sizes) the weights were saved from.",
            )
        ) from err
    return net.to(map_location)


def _state_dict_of(obj: Any) -> Mapping[str, torch.Tensor] | None:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return obj
    return None


def _build(factory: Callable[[], nn.Module] | str | None) -> nn.Module:
    def bad(expected: str, got: str, fix: str) -> InputError:
        return InputError(describe("`factory`", expected, got, fix))

    spec = "'package.module:name' (e.g. 'explainer.demo.cnn:DemoCNN') or a callable"
    if factory is None:
        raise bad(
            "a way to build the network, since the file holds only weights (a state_dict)",
            "None",
            "Pass factory='package.module:ClassName' or a function that returns the nn.Module.",
        )
    if isinstance(factory, str):
        module_name, colon, attr = factory.partition(":")
        if not colon or not module_name or not attr:
            raise bad(spec, repr(factory), "Separate the module from the name with a colon.")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as err:
            raise bad(spec, f"{factory!r} ({err})", "Check the module is importable.") from err
        for part in attr.split("."):
            if not hasattr(obj, part):
                public = sorted(n for n in dir(obj) if not n.startswith("_"))[:8]
                raise bad(spec, f"{factory!r}: no {part!r}", f"Names there include {public}.")
            obj = getattr(obj, part)
        factory = obj
    if not callable(factory):
        raise bad(spec, f"a {type(factory).__name__}", "Name a class or function.")
    try:
        inspect.signature(factory).bind()
    except TypeError as err:
        raise bad(
            "a callable that needs no arguments",
            f"{factory!r} ({err})",
            "Wrap it, e.g. functools.partial(MyNet, num_classes=10).",
        ) from err
    except ValueError:  # no signature available (some builtins): just call it
        pass
    net = factory()
    if not isinstance(net, nn.Module):
        raise bad("a callable returning a torch.nn.Module", type(net).__name__, "Return the net.")
    return net


def _few(keys: list[str], n: int = 4) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return f"{keys[:n]}{more}" if keys else "[]"


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
