"""Explanation: the frozen result of one method on one batch, with save/load and views."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._files import atomic_write_bytes
from .errors import InputError, StoreError, describe
from .viz import figures
from .viz.sections import render_fragment

__all__ = ["Explanation", "load_explanation", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything needed to re-draw, compare or audit one method's attributions.

    Attributes:
        method: registered method name.
        attributions: (N, ...) tensor shaped like ``inputs``, on the CPU.
        inputs: the explained inputs (CPU).
        targets: (N,) explained class per sample.
        scores: (N, classes) class probabilities of the model on ``inputs`` (a sigmoid per
            label for a multilabel model; the predicted values for a regression, whose task
            ``manifest["model"]["task"]`` records).
        class_names: names of the classes, or None.
        modality: "image" or "tabular".
        params: the method's parameters as used (defaults included).
        extras: per-sample method outputs, e.g. IG's ``convergence_delta``.
        manifest: library versions, seed, model fingerprint, input shape, duration, schema.
        feature_names: column names for tabular data, or None.
        tokens: for a text explanation (modality "text"): the tokens of each sample, whose
            ids are ``inputs`` (N, L) and whose attributions are ``attributions`` (N, L),
            one per token (``manifest["text"]`` says how they were reduced).
        forward_args: the forward arguments the network was called with (in memory only).
        warnings: what should be known before trusting the maps, one short sentence each
            (a completeness gap above the method's tolerance: how many samples, the worst
            gap, the fix); empty when there is nothing to say. Saved with the file, shown
            next to the maps.

    Made by :func:`explainer.explain`; never changed afterwards (frozen).

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", target="yes", progress=False)
        >>> exp
        Explanation(method='saliency', samples=2, shape=(3,), modality='tabular')
        >>> exp.attributions.shape, exp.targets.tolist(), exp.class_label(1)
        (torch.Size([2, 3]), [1, 1], 'yes')
    """

    method: str
    attributions: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    class_names: tuple[str, ...] | None
    modality: str
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    # The exact keyword arguments the method was called with (tensors included), so that
    # trust scores can re-run it; kept in memory only (a saved file keeps ``params``).
    call_params: dict[str, Any] = field(default_factory=dict, repr=False)
    warnings: tuple[str, ...] = ()
    # The forward arguments (explainer.inputs.ForwardArgs) the network was called with, so
    # that trust scores call it the same way; in memory only (the manifest describes them).
    forward_args: Any = field(default=None, repr=False)
    # A text explanation's tokens, per sample (modality "text"; None otherwise).
    tokens: tuple[tuple[str, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        noted = f", warnings={len(self.warnings)}" if self.warnings else ""
        return (
            f"Explanation(method={self.method!r}, samples={len(self)}, shape={tuple(self.inputs.shape[1:])}, "
            f"modality={self.modality!r}{noted})"
        )

    @property
    def predictions(self) -> torch.Tensor:
        """(N,) predicted class per sample."""
        return self.scores.argmax(1)

    def class_label(self, index: int) -> str:
        """Name of class ``index`` (its number when the model has no class names)."""
        return self.class_names[index] if self.class_names else str(index)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write one ``.npz`` file (arrays plus a JSON header), atomically. Returns the path.

        Missing parent folders are created; read it back with :func:`load_explanation`.
        """
        is_array = lambda v: isinstance(v, torch.Tensor | np.ndarray)  # noqa: E731
        arrays = {
            "attributions": self.attributions,
            "inputs": self.inputs,
            "targets": self.targets,
            "scores": self.scores,
            **{f"extra__{k}": v for k, v in self.extras.items()},
            **{
                f"call__{k}": torch.as_tensor(v) for k, v in self.call_params.items() if is_array(v)
            },
        }
        header = {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "modality": self.modality,
            "class_names": self.class_names,
            "feature_names": self.feature_names,
            "params": self.params,
            "manifest": self.manifest,
            "call_params": {k: v for k, v in self.call_params.items() if not is_array(v)},
            "warnings": list(self.warnings),
            "tokens": None if self.tokens is None else [list(t) for t in self.tokens],
            "dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in arrays.items()},
        }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            header=np.array(json.dumps(header, default=_json_default)),
            **{k: _to_numpy(v) for k, v in arrays.items()},
        )
        return atomic_write_bytes(Path(path), buf.getvalue())

    # -- views --------------------------------------------------------------------------
    def plot(
        self,
        kind: str = "samples",
        max_samples: int = 8,
        index: int = 0,
        top: int = 10,
        *,
        ax: Any = None,
        fig: Any = None,
    ) -> Any:
        """Draw one view with matplotlib and return what it drew on (never shown).

        Args:
            kind: "samples" (images: input and overlay per sample; tabular: top-feature bars
                per sample), and for tabular data also "importance" (mean |attribution| per
                feature), "beeswarm" (one dot per sample and feature) or "waterfall" (one
                sample's contributions from the reference output to f(x)).
            max_samples: samples shown by "samples".
            index: the sample of "waterfall".
            top: features shown by the tabular kinds.
            ax: one-panel kinds ("importance", "beeswarm", "waterfall"): a matplotlib Axes
                of your layout to draw on; None: a new Figure.
            fig: "samples" (several panels): an empty Figure or SubFigure to fill, e.g. one
                of ``fig.subfigures(1, 2)``; None: a new Figure.

        Returns:
            The ``ax`` or ``fig`` given, else the new matplotlib Figure (a notebook displays
            it; ``fig.savefig(path)`` writes it). A new drawing on every call.

        Raises:
            InputError: an unknown ``kind`` (or a tabular kind for images), ``ax`` for
                "samples" or ``fig`` for a one-panel kind, or an ``ax``/``fig`` that is
                not a matplotlib Axes / empty Figure.

        Example:
            >>> import torch, explainer as ex
            >>> from matplotlib.figure import Figure
            >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
            >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
            >>> type(exp.plot()).__name__
            'Figure'
            >>> layout = Figure()
            >>> axes = layout.subplots(1, 3)  # or: layout, axes = plt.subplots(1, 3)
            >>> [exp.plot(k, ax=a) is a for k, a in zip(["importance", "beeswarm", "waterfall"], axes)]
            [True, True, True]
        """
        _check_plot_target(kind, self.modality, ax, fig)
        if kind == "samples":
            return figures.plot_explanation(self, max_samples=max_samples, top=top, fig=fig)
        if kind == "waterfall":
            return figures.plot_waterfall(self, index=index, top=top, ax=ax)
        draw = {"importance": figures.plot_global_importance, "beeswarm": figures.plot_beeswarm}
        return draw[kind](self, top=top, ax=ax)

    def _repr_html_(self) -> str:
        return render_fragment([self])


_PLOT_KINDS = ("samples", "importance", "beeswarm", "waterfall")


def _check_plot_target(kind: Any, modality: str, ax: Any, fig: Any) -> None:
    """``kind`` exists for ``modality``; one-panel kinds take ``ax``, "samples" ``fig``."""
    allowed = list(_PLOT_KINDS) if modality == "tabular" else ["samples"]
    if kind not in allowed:
        raise InputError(
            describe(
                "`kind`",
                f"one of {allowed} for {modality} explanations",
                repr(kind),
                'Use kind="samples".',
            )
        )
    if kind == "samples" and ax is not None:
        raise InputError(
            describe(
                "`ax`",
                'None for kind="samples" (it draws several panels)',
                "an Axes",
                "Pass an empty Figure or SubFigure as fig= instead, e.g. "
                "left, right = fig.subfigures(1, 2) and then fig=right.",
            )
        )
    if kind != "samples" and fig is not None:
        raise InputError(
            describe(
                "`fig`",
                f"None for kind={kind!r} (it draws one panel)",
                "a figure",
                "Pass the Axes to draw on as ax= instead, e.g. ax=axes[0].",
            )
        )


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, torch.Tensor | np.ndarray):
        return f"tensor{tuple(obj.shape)}"
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in an explanation header")


_ARRAYS = ("attributions", "inputs", "targets", "scores")
# Header keys and the JSON types they must have (None allowed where listed).
_HEADER = {
    "method": (str,),
    "modality": (str,),
    "class_names": (list, type(None)),
    "params": (dict,),
    "manifest": (dict,),
}
# Optional: files written before a key existed load with its default.
_OPTIONAL = {"feature_names": (list, type(None)), "call_params": (dict,), "warnings": (list,)}


def _tokens(value: Any) -> tuple[tuple[str, ...], ...] | None:
    """A text explanation's tokens from a file header (lists of strings), or None."""
    if not isinstance(value, list):
        return None
    return tuple(tuple(str(t) for t in row) for row in value if isinstance(row, list))


def _bad_file(path: Path, problem: str) -> StoreError:
    return StoreError(
        describe(
            "Explanation file",
            "a .npz written by Explanation.save",
            f"{path} ({problem})",
            "Re-create it with exp.save(path).",
        )
    )


def _check_contents(path: Path, header: Any, arrays: dict[str, torch.Tensor]) -> None:
    """Raise StoreError unless header and arrays have what an Explanation needs."""
    if not isinstance(header, dict):
        raise _bad_file(path, f"its header is a JSON {type(header).__name__}, not an object")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            describe(
                "Explanation schema version",
                str(SCHEMA_VERSION),
                repr(version),
                "Re-create the file with this version of explainer.",
            )
        )
    missing = [k for k in _HEADER if k not in header] + [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise _bad_file(path, f"missing {missing}")
    for key, types in {**_HEADER, **_OPTIONAL}.items():
        value = header.get(key)
        if key in header and not isinstance(value, types):
            raise _bad_file(path, f"header {key!r} is a {type(value).__name__}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise _bad_file(path, f"header {key!r} holds entries that are not strings")
    if header["modality"] not in ("image", "tabular", "text"):
        raise _bad_file(path, f"unknown modality {header['modality']!r}")
    attributions, inputs = arrays["attributions"], arrays["inputs"]
    if attributions.shape != inputs.shape or attributions.ndim < 2:
        raise _bad_file(
            path, f"attributions {tuple(attributions.shape)} for inputs {tuple(inputs.shape)}"
        )
    if not attributions.is_floating_point() or not bool(torch.isfinite(attributions).all()):
        raise _bad_file(path, "its attributions are not finite floats")
    n = len(inputs)
    if arrays["targets"].shape != (n,) or arrays["scores"].ndim != 2 or len(arrays["scores"]) != n:
        raise _bad_file(
            path,
            f"targets {tuple(arrays['targets'].shape)} and scores "
            f"{tuple(arrays['scores'].shape)} for {n} samples",
        )


def load_explanation(path: str | os.PathLike) -> Explanation:
    """Read an Explanation written by :meth:`Explanation.save`.

    Args:
        path: the ``.npz`` file.

    Returns:
        The Explanation, equal in every array and field to the one saved (``call_params``
        tensors and ``warnings`` included; a file without ``warnings`` loads with none).

    Raises:
        StoreError: the file is missing, unreadable, not an explanation (a header that is
            not a JSON object with the expected keys, nested too deeply, arrays missing or
            of mismatched shapes, non-finite attributions), or of another schema version.

    Example:
        >>> import tempfile, torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> path = exp.save(f"{tempfile.mkdtemp()}/saliency.npz")
        >>> back = ex.load_explanation(path)
        >>> back.method, torch.equal(back.attributions, exp.attributions)
        ('saliency', True)
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != "header"}
    except FileNotFoundError as err:
        raise StoreError(
            describe(
                "Explanation file",
                "an existing .npz written by Explanation.save",
                str(path),
                "Check the path.",
            )
        ) from err
    except RecursionError as err:  # json.loads on very deeply nested arrays or objects
        raise _bad_file(path, "its header is nested too deeply to be one of ours") from err
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise _bad_file(path, str(err)) from err
    _check_contents(path, header, arrays)
    tuple_or_none = lambda v: tuple(v) if v is not None else None  # noqa: E731
    return Explanation(
        method=header["method"],
        attributions=arrays.pop("attributions"),
        inputs=arrays.pop("inputs"),
        targets=arrays.pop("targets"),
        scores=arrays.pop("scores"),
        class_names=tuple_or_none(header["class_names"]),
        modality=header["modality"],
        params=header["params"],
        extras={k.removeprefix("extra__"): v for k, v in arrays.items() if k.startswith("extra__")},
        manifest=header["manifest"],
        feature_names=tuple_or_none(header.get("feature_names")),
        call_params={
            **header.get("call_params", {}),
            **{k.removeprefix("call__"): v for k, v in arrays.items() if k.startswith("call__")},
        },
        warnings=tuple(header.get("warnings", ())),
        tokens=_tokens(header.get("tokens")),
    )
