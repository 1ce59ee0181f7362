"""Safe model loading (the image-folder dataset lives in :mod:`explainer.images`).

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

import torch
from torch import nn

from .errors import InputError, ModelError, describe
from .images import IMAGE_EXTENSIONS, ImageFolder  # noqa: F401  (re-exported)
from .model import Model, wrap

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_model"]
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
