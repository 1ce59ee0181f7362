"""Safe model loading: TorchScript, torch.export (.pt2), checkpoints and state dicts.

:func:`load_model` reads a model file without ever unpickling arbitrary Python objects:

* TorchScript archives (``torch.jit.script(net).save(path)``) -> ``torch.jit.load``;
* ``torch.export`` programs (``torch.export.save``, ``.pt2``) -> ``torch.export.load``, on an
  archive rebuilt from members that passed an allow-list, where everything torch could
  unpickle loads with ``weights_only=True`` (``torch.export.load`` itself falls back to
  unrestricted unpickling); see :mod:`explainer._archive`;
* ``torch.save`` checkpoints -> ``torch.load(weights_only=True)`` only; a state_dict is loaded
  into the network that ``factory`` builds. A pickled whole model is refused, never loaded.

Every zip archive is read once under a size budget (``max_size``, 4 GiB decompressed by
default; members compressed more than 200:1 are refused as zip bombs) and torch only ever
reads the rebuilt copy, so what was checked is what is loaded.

Errors: problems with the arguments (missing file, bad ``factory``) raise
:class:`~explainer.errors.InputError`; files whose content cannot be loaded safely or does
not fit the network raise :class:`~explainer.errors.ModelError`.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._archive import DEFAULT_MAX_SIZE, ZipMembers, read_zip, safe_export_archive
from ._runtime import parse_bytes
from .demo.cnn import load_demo_cnn
from .demo.shapes import CLASS_NAMES
from .demo.tabular import TABULAR_CLASS_NAMES, load_tabular_mlp
from .demo.text import TEXT_CLASSES, WordTokenizer, load_text_model
from .errors import InputError, ModelError, describe
from .model import Model, wrap

__all__ = ["load_model"]
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


def load_model(
    source: str | os.PathLike,
    *,
    factory: Callable[[], nn.Module] | str | None = None,
    modality: str | None = None,
    class_names: Sequence[str] | None = None,
    output: str | None = None,
    name: str | None = None,
    map_location: str | torch.device = "cpu",
    max_size: int | str | None = DEFAULT_MAX_SIZE,
) -> Model:
    """Load a model file safely and wrap it for explanation.

    The format is detected from the content, not the suffix. The special names ``"demo"``
    (the shipped shapes CNN), ``"demo-tabular"`` (the breast-cancer MLP) and ``"demo-text"``
    (the movie-review transformer, with its tokenizer) load the demo
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
        max_size: the most bytes the file may hold once decompressed (default 4 GiB; a
            number or a string like ``"16GB"``; ``None``: no limit). Zip archives whose
            members are compressed more than 200:1 are refused whatever the limit.

    Returns:
        A :class:`~explainer.Model` around the network, in eval mode.

    Raises:
        InputError: missing file, or a ``factory`` that cannot build an ``nn.Module``.
        ModelError: unsafe content (a pickled whole model, Python objects or compiled code
            in a ``.pt2``, a zip bomb), a file over ``max_size``, an unknown format, or
            weights that do not match the network.

    Example:
        >>> import explainer as ex
        >>> load_model("demo").class_names
        ('circle', 'square', 'triangle', 'cross')
    """
    if not isinstance(source, str | os.PathLike):
        raise InputError(describe("`source`", "a path", type(source).__name__, "Pass a file path."))
    path = Path(source)
    if not path.exists() and str(source) in ("demo", "demo-tabular", "demo-text"):
        demo = _demo(str(source), modality, class_names, output, name)
        demo.net.to(map_location)
        return demo
    if not path.is_file():
        raise InputError(
            describe(
                "`source`",
                f"an existing model file ({_SAFE_FORMATS})",
                f"{str(source)!r}, which {'is a folder' if path.is_dir() else 'does not exist'}",
                'Check the path, or pass "demo" for the shipped demo model.',
            )
        )
    data, members = _read(path, max_size)
    kind = _archive_kind(members)
    if members is not None:  # torch reads only the rebuilt archive, never the user's bytes
        data = safe_export_archive(members, path.name) if kind == "export" else members.rebuilt()
    if kind == "torchscript":
        net = _guarded(path, lambda: torch.jit.load(io.BytesIO(data), map_location=map_location))
    elif kind == "export":
        graph = _guarded(path, lambda: torch.export.load(io.BytesIO(data)).module())
        net = _ExportedModule(graph).to(map_location)
    else:
        net = _load_checkpoint(path, data, factory, map_location)
    net.eval()
    return wrap(net, class_names, modality, output, name or path.stem)


def _read(path: Path, max_size: int | str | None) -> tuple[bytes, ZipMembers | None]:
    """The bytes of the file ``path``, read once under ``max_size`` (what is checked is what
    is loaded), and its members when it is a zip archive (each checked against the limit)."""
    limit = None if max_size is None else parse_bytes(max_size, "max_size", "no limit")
    if limit is not None and path.stat().st_size > limit:
        raise ModelError(
            describe(
                path.name,
                f"a model file of at most {limit:,} bytes (max_size)",
                f"{path.stat().st_size:,} bytes",
                "Pass a larger max_size= (CLI: --max-model-size) for a model you trust.",
            )
        )
    data = path.read_bytes()
    members = read_zip(data, path.name, limit) if zipfile.is_zipfile(io.BytesIO(data)) else None
    return data, members


def _demo(spec: str, modality, class_names, output, name) -> Model:
    if spec == "demo-text":
        title = name or "TinyTransformer (movie reviews)"
        names = class_names or TEXT_CLASSES
        return wrap(load_text_model(), names, "text", output, title, tokenizer=WordTokenizer())
    if spec == "demo":
        net, names, kind, title = (
            load_demo_cnn(),
            CLASS_NAMES,
            "image",
            "DemoCNN (synthetic shapes)",
        )
    else:
        net, names, kind = load_tabular_mlp(), TABULAR_CLASS_NAMES, "tabular"
        title = "TabularMLP (breast cancer)"
    return wrap(net, class_names or names, modality or kind, output, name or title)


def _archive_kind(members: ZipMembers | None) -> str:
    if members is None:
        return "checkpoint"  # legacy torch.save format or a raw pickle: torch.load decides
    names = members.members
    if "archive_format" in names or any(m.startswith("models/") for m in names):
        return "export"
    if "constants.pkl" in names or any(m.startswith("code/") for m in names):
        return "torchscript"
    return "checkpoint"


def _guarded(path: Path, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except (RuntimeError, ValueError, KeyError, OSError, AssertionError, zipfile.BadZipFile) as err:
        raise ModelError(
            describe(
                path.name,
                "a complete TorchScript archive or torch.export program",
                f"one torch could not load ({type(err).__name__}: {err})",
                "Check that the file is complete and was saved by a compatible torch version.",
            )
        ) from err


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
    """A ``torch.save`` file -> the network ``factory`` builds, with its weights loaded."""
    obj = _torch_load(path, data, map_location)
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
    _check_keys(path, net, state)
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


def _torch_load(path: Path, data: bytes, map_location) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers, never code."""
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
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


def _check_keys(path: Path, net: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights whose names are not exactly those of ``net``, listing the difference."""
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
