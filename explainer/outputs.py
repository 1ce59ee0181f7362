"""Finding the explained tensor in whatever a network's forward returns.

``ex.wrap(net, select=...)`` says where it is: ``"auto"`` (default) takes a tensor as it
is, the ``.logits`` of a HuggingFace ``ModelOutput`` (or of any object that has one), the
``"logits"`` entry of a dict and the first element of a tuple or list; a string names a
key (mappings) or an attribute (other objects), an int an element of a sequence, a
callable is applied to the output. Every selection says in words what it took
("attribute .logits (automatic)"), for manifests and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .errors import InputError, ModelError, describe

__all__ = ["Selector", "as_selector", "as_columns", "describe_select"]

Selector = Callable[[Any], tuple[Any, str]]


def _by_key(key: str, auto: bool) -> Selector:
    note = " (automatic)" if auto else ""

    def select(out: Any) -> tuple[Any, str]:
        if isinstance(out, Mapping) and key in out:
            # a ModelOutput is a mapping whose entries are also attributes: say attribute
            same = getattr(out, key, None) is out[key]
            return out[key], (f"attribute .{key}" if same else f"key {key!r}") + note
        if hasattr(out, key):
            return getattr(out, key), f"attribute .{key}{note}"
        raise _not_found(out, f"a key or attribute {key!r}")

    return select


def _by_index(index: int, auto: bool) -> Selector:
    note = " (automatic)" if auto else ""

    def select(out: Any) -> tuple[Any, str]:
        if isinstance(out, tuple | list) and -len(out) <= index < len(out):
            return out[index], f"element [{index}]{note}"
        raise _not_found(out, f"a tuple or list with an element [{index}]")

    return select


def _by_function(fn: Callable[[Any], Any]) -> Selector:
    name = getattr(fn, "__qualname__", type(fn).__name__)

    def select(out: Any) -> tuple[Any, str]:
        try:
            return fn(out), f"function {name}"
        except Exception as err:  # the user's selector failed: say which, chained
            raise ModelError(
                describe(
                    f"The select function {name}",
                    "a function from the forward's result to the explained tensor",
                    f"{type(err).__name__}: {err} on a {type(out).__name__}",
                    "Check what the network returns, e.g. print(type(net(x))).",
                )
            ) from err

    return select


def _automatic(out: Any) -> tuple[Any, str]:
    """A tensor or array as it is; else ``.logits``, ``["logits"]`` or element [0]."""
    if isinstance(out, torch.Tensor | np.ndarray):
        return out, "automatic"  # nothing to select: recorded as before the first run
    if isinstance(getattr(out, "logits", None), torch.Tensor) or (
        isinstance(out, Mapping) and "logits" in out
    ):
        return _by_key("logits", True)(out)
    if isinstance(out, tuple | list) and len(out) > 0:
        return _by_index(0, True)(out)
    raise _not_found(out, "a tensor, an object with .logits, a dict with 'logits' or a tuple")


def _not_found(out: Any, expected: str) -> ModelError:
    keys = f" with keys {list(out)[:8]}" if isinstance(out, Mapping) else ""
    return ModelError(
        describe(
            "Model output",
            expected,
            f"{type(out).__name__}{keys}",
            "Tell ex.wrap where the scores are: select='key' (a key or attribute), "
            "select=0 (an element of a tuple) or select=lambda out: ... (a function).",
        )
    )


def as_selector(select: Any) -> Selector:
    """``wrap``'s ``select`` -> a function ``output -> (explained part, what was taken)``.

    Raises:
        InputError: ``select`` is none of "auto", a string, an int or a callable.

    Example:
        >>> import torch
        >>> out = {"logits": torch.zeros(2, 3), "hidden": torch.ones(2, 8)}
        >>> as_selector("auto")(out)[1], as_selector("hidden")(out)[1]
        ("key 'logits' (automatic)", "key 'hidden'")
        >>> as_selector(1)((torch.zeros(2, 3), torch.ones(2, 4)))[0].shape
        torch.Size([2, 4])
    """
    if select == "auto":
        return _automatic
    if isinstance(select, str):
        return _by_key(select, False)
    if isinstance(select, int) and not isinstance(select, bool):
        return _by_index(select, False)
    if callable(select):
        return _by_function(select)
    raise InputError(
        describe(
            "`select`",
            '"auto", a key or attribute name, an int index, or a function output -> tensor',
            repr(select),
            'Pass select="logits", select=0 or select=lambda out: out["scores"].',
        )
    )


def describe_select(select: Any) -> str:
    """``select`` in words before the model has run ("automatic", "key or attribute 'x'").

    Example:
        >>> describe_select("auto"), describe_select(0), describe_select("scores")
        ('automatic', 'element [0]', "key or attribute 'scores'")
    """
    if select == "auto":
        return "automatic"
    if isinstance(select, str):
        return f"key or attribute {select!r}"
    if isinstance(select, int):
        return f"element [{select}]"
    return f"function {getattr(select, '__qualname__', type(select).__name__)}"


def as_columns(value: Any, n: int, dtype: torch.dtype, device: torch.device) -> Any:
    """The selected output as (n, columns): numpy and lists become float tensors of
    ``dtype`` on ``device``; a vector of one value per sample (n,) becomes one column.
    Anything else is returned as it is, for the caller's shape check to refuse."""
    if type(value) is torch.Tensor and value.is_floating_point() and value.ndim != 1:
        return value  # the usual case, before the slower checks below
    if isinstance(value, np.ndarray | Sequence) and not isinstance(value, str | bytes):
        try:  # a black box's numpy output (float64 by default) in the model's dtype
            value = torch.as_tensor(np.asarray(value, dtype=np.float64)).to(device, dtype)
        except (TypeError, ValueError):
            return value
    if not isinstance(value, torch.Tensor):
        return value
    if not value.is_floating_point():
        value = value.to(dtype)  # integer or boolean scores (a thresholded output)
    if value.ndim == 1 and len(value) == n:
        value = value[:, None]  # (n,) -> (n, 1)
    return value
