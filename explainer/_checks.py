"""Argument validation shared by every entry point: validate once, at the edge.

Every function here either returns a clean value (float tensor on the model's device,
long targets, ...) or raises an :class:`~explainer.errors.InputError` whose message
says what was wrong, what was expected, what was got and how to fix it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InputError, ModelError, describe
from .evaluating import named_tensors
from .inputs import InputLayout

if TYPE_CHECKING:  # model.py imports this module: no import of it at run time
    from .model import Model

__all__ = [
    "as_inputs",
    "as_input_parts",
    "per_input",
    "as_targets",
    "as_reference",
    "as_methods",
    "check_bool",
    "check_finite",
    "check_int",
    "check_path",
    "check_target_spec",
    "check_seed",
    "check_names",
    "check_choice",
    "check_fraction",
    "check_model",
    "check_autograd_mode",
    "check_attributions",
    "has_gradient_path",
    "check_device",
]

# Seeds are non-negative int64 values: what torch.Generator and numpy's default_rng both
# take, and what result stores can record.
SEED_MAX = 2**63 - 1


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise InputError(
                describe(
                    f"`{name}`",
                    "a tensor holding data (on the CPU or an accelerator)",
                    f"a tensor of shape {tuple(value.shape)} on the meta device, which has no values",
                    f"Create {name} on a real device, e.g. {name}.to_empty(device='cpu') and fill it, "
                    "or load the data again.",
                )
            )
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, list | tuple):
        try:
            return torch.as_tensor(np.asarray(value))
        except (ValueError, TypeError) as err:
            raise InputError(
                describe(
                    f"`{name}`",
                    "a tensor, numpy array or nested list of numbers",
                    "a ragged or non-numeric sequence",
                    "Stack the samples into one array.",
                )
            ) from err
    raise InputError(
        describe(
            f"`{name}`",
            "a torch.Tensor or numpy.ndarray",
            type(value).__name__,
            "Convert the data with torch.as_tensor(...) first.",
        )
    )


def all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds no NaN or Inf: one reduction (a sum is finite only when every
    value is, unless it overflows, which the exact check then settles), not a boolean
    copy of ``t`` and a second pass. A few real values on the CPU are summed by Python
    (1 µs against 2 for torch's reduction and its conversion: a tiny model's call checks
    its inputs, outputs and attributions).

    Example:
        >>> all_finite(torch.tensor([1.0, 3e38, 3e38])), all_finite(torch.tensor([0.0, float("nan")]))
        (True, False)
        >>> all_finite(torch.full((40,), 1e308, dtype=torch.float64))  # the sum overflows
        True
    """
    n = t.numel()
    if n == 0 or not (t.is_floating_point() or t.is_complex()):
        return True
    if n <= 16 and t.is_cpu and not t.is_complex():
        total = sum(t.reshape(-1).tolist())
    else:
        total = abs(complex(t.sum()))
    if math.isfinite(total):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise InputError if ``t`` holds NaN or Inf."""
    if all_finite(t):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(
            describe(
                f"`{name}`",
                "finite values",
                f"{int(bad.sum())} NaN/Inf value(s), first at index {first}",
                f"Clean or impute {name} before explaining (e.g. torch.nan_to_num).",
            )
        )


def as_inputs(model: Model, inputs: Any, name: str = "inputs") -> torch.Tensor:
    """Validate a batch of inputs for ``model``; return it on the model's device and dtype.

    Inputs must be finite floats of the model's layout (a batch that looks channels-last
    is refused unless the model was wrapped with ``channels_first=True``). They are
    converted to :attr:`Model.dtype` (the first floating parameter's; float32 without
    one) and moved to :attr:`Model.device`: a float64 model runs in float64, a bfloat16
    one in bfloat16, and float16 or float64 inputs of a float32 model run as float32;
    values that overflow the conversion raise InputError.
    """
    x = _to_tensor(inputs, name)
    if not (x.is_floating_point()):
        kind = "uint8 image data" if x.dtype == torch.uint8 else f"dtype {x.dtype}"
        fix = (
            "Scale to floats first, e.g. x.float() / 255, using the same preprocessing as in training."
            if x.dtype == torch.uint8
            else "Convert with x.float(), using the preprocessing the model was trained with."
        )
        raise InputError(describe(f"`{name}`", "a floating-point tensor", kind, fix))
    want = 4 if model.modality == "image" else 2
    layout = "(batch, channels, height, width)" if want == 4 else "(batch, features)"
    if x.ndim != want:
        fix = (
            f"Add a batch dimension with {name}[None] (or .unsqueeze(0))."
            if x.ndim == want - 1
            else f"Reshape {name} to {layout}, or wrap the model with the right modality."
        )
        raise InputError(
            describe(
                f"`{name}`",
                f"{want} dimensions {layout} for a {model.modality} model",
                f"{x.ndim} dimensions with shape {tuple(x.shape)}",
                fix,
            )
        )
    if x.shape[0] == 0:
        raise InputError(
            describe(
                f"`{name}`",
                "at least one sample",
                f"an empty batch of shape {tuple(x.shape)}",
                "Pass a non-empty batch.",
            )
        )
    if want == 4 and not model.channels_first:  # channels_first=True: the layout is stated
        channels = model.input_channels
        looks_last = x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
        if (channels is not None and x.shape[1] != channels and x.shape[-1] == channels) or (
            channels is None and looks_last
        ):
            raise InputError(
                describe(
                    f"`{name}`",
                    f"channels-first (N, C, H, W){'' if channels is None else f' with C={channels}'}",
                    f"shape {tuple(x.shape)}, which looks channels-last (N, H, W, C)",
                    f"Permute with {name}.permute(0, 3, 1, 2), or, if it is channels-first, "
                    "say so with ex.wrap(model, channels_first=True).",
                )
            )
    check_finite(x, name)
    # Floating inputs run in the model's dtype (float64 or float16 inputs of a float32 model
    # become float32), so that the network never sees a dtype its weights do not have.
    return _convert(x, model.device, model.dtype, name)


def as_input_parts(
    model: Model, inputs: Any, name: str = "inputs"
) -> tuple[InputLayout, torch.Tensor]:
    """Validate several inputs (a tuple, or a dict passed by keyword) for ``model``; return
    their layout and the packed (N, D) rows on the model's device and dtype (see
    :mod:`explainer.inputs`).

    Each input is a batch of finite floats with the same number of samples N >= 1; its
    shape is its own ((N, C, H, W) images, (N, F) rows, (N, L, E) embeddings, ...).

    Raises:
        InputError: no inputs, a dict key that is not a string, an input that is not a
            floating batch (token ids: pass their embeddings, or give them as
            ``forward_args``), different batch sizes, or NaN/Inf values.
    """
    if isinstance(inputs, Mapping):
        keys = list(inputs)
        bad = [k for k in keys if not isinstance(k, str)]
        if bad:
            raise InputError(
                describe(
                    f"`{name}` keys",
                    "the names of the network's forward arguments (strings)",
                    repr(bad[0]),
                    "Pass e.g. {'inputs_embeds': embeddings}, or a tuple for positional inputs.",
                )
            )
        names, values, keyword = tuple(keys), list(inputs.values()), True
    else:
        values, keyword = list(inputs), False
        names = tuple(f"input {k}" for k in range(len(values)))
    if not values:
        raise InputError(
            describe(f"`{name}`", "at least one input", "an empty tuple", "Pass (x,) or (x, y).")
        )
    parts = []
    for key, value in zip(names, values, strict=True):
        label = f"{name}[{key!r}]" if keyword else f"{name}[{key.split()[-1]}]"
        t = _to_tensor(value, label)
        if not t.is_floating_point() or t.ndim < 2 or t.shape[0] == 0:
            got = f"dtype {t.dtype}" if not t.is_floating_point() else f"shape {tuple(t.shape)}"
            raise InputError(
                describe(
                    f"`{label}`",
                    "a non-empty batch of floats with a batch dimension first, (N, ...)",
                    got,
                    "Integer data such as token ids cannot be attributed by gradients: pass "
                    "their embeddings as the input, or pass them as forward_args= (never "
                    "attributed); add a batch dimension with [None] to one sample.",
                )
            )
        parts.append((label, t))
    sizes = {len(t) for _, t in parts}
    if len(sizes) > 1:
        raise InputError(
            describe(
                f"`{name}`",
                "inputs with the same number of samples (one row of each per sample)",
                ", ".join(f"{label}: {len(t)}" for label, t in parts),
                "Give every input the same batch size N.",
            )
        )
    for label, t in parts:
        check_finite(t, label)
    converted = [_convert(t, model.device, model.dtype, label) for label, t in parts]
    layout = InputLayout(
        shapes=tuple(tuple(t.shape[1:]) for t in converted), names=names, keyword=keyword
    )
    return layout, layout.pack(converted)


def per_input(layout: InputLayout, value: Any, name: str) -> list[Any] | None:
    """A per-input option (one entry per input: a tuple in input order, or a dict keyed by
    input name) as a list in input order; None when ``value`` is not per input (one value
    for the packed rows, applied to every input alike).

    Raises:
        InputError: a tuple of the wrong length, or a dict with unknown or missing names.
    """
    if isinstance(value, Mapping) and not isinstance(value, torch.Tensor):
        unknown = [k for k in value if k not in layout.names]
        missing = [k for k in layout.names if k not in value]
        if unknown or missing:
            raise InputError(
                describe(
                    f"`{name}`",
                    f"one entry per input, keyed by {list(layout.names)}",
                    f"unknown {unknown}, missing {missing}",
                    f"Pass {name}={{name: value}} for every input, or a tuple in input order.",
                )
            )
        return [value[k] for k in layout.names]
    if isinstance(value, tuple):
        if len(value) != len(layout):
            raise InputError(
                describe(
                    f"`{name}`",
                    f"one entry per input ({len(layout)}: {', '.join(layout.names)})",
                    f"a tuple of {len(value)}",
                    f"Pass a tuple of {len(layout)} entries, in the order of the inputs.",
                )
            )
        return list(value)
    return None


def _convert(t: torch.Tensor, device: torch.device, dtype: torch.dtype, name: str) -> torch.Tensor:
    """``t`` (finite) on ``device`` in ``dtype``; InputError if the conversion overflows."""
    out = t.to(device=device, dtype=dtype)
    if out.dtype != t.dtype and not bool(torch.isfinite(out).all()):
        raise InputError(
            describe(
                f"`{name}`",
                f"values that fit the model's dtype {dtype}",
                f"values up to {float(t.abs().max()):.3g}, which overflow when converted",
                f"Rescale {name} with the preprocessing the model was trained with.",
            )
        )
    return out


def _bad_target(got: str, fix: str = 'Pass target="predicted" to explain the predicted class.'):
    return InputError(
        describe(
            "`target`",
            'an int class index, a class name, "predicted", or one int/name per sample',
            got,
            fix,
        )
    )


def as_targets(
    model: Model, target: Any, scores: torch.Tensor | None, shape: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resolve ``target`` to a long tensor with one class index per sample.

    Accepts an int, a class name, ``"predicted"``, or a sequence/tensor of ints or names
    with one entry per sample. ``scores`` are the model's (N, classes) outputs; they may be
    None when the target does not need them (anything but the predicted class of a
    classifier), with ``shape`` = (N, classes) instead. For a regression, the target is an
    output column and ``"predicted"`` means column 0 (the largest predicted value is no
    prediction).

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> as_targets(m, "yes", scores).tolist(), as_targets(m, "predicted", scores).tolist()
        ([1, 1], [0, 1])
    """
    n, n_classes = scores.shape if scores is not None else shape
    if type(target) is int:  # the usual case first (a bool is not an int here)
        _check_classes([target], n_classes)
        return torch.full((n,), target, dtype=torch.long)
    if isinstance(target, str):
        if target == "predicted" and model.task == "regression":
            return torch.zeros(n, dtype=torch.long)
        if target == "predicted":
            return scores.argmax(dim=1).cpu()
        return torch.full((n,), model.class_index(target), dtype=torch.long)
    if isinstance(target, bool | np.bool_) or target is None:
        raise _bad_target(repr(target))
    if isinstance(target, float | np.floating | complex):
        fix = (
            f"Pass target={int(target)} (an int)."
            if isinstance(target, float | np.floating) and float(target).is_integer()
            else 'Pass an int class index, or target="predicted".'
        )
        raise _bad_target(f"{target!r} ({type(target).__name__})", fix)
    if isinstance(target, int | np.integer):
        _check_classes([int(target)], n_classes)  # before torch.full: 10**30 would overflow a long
        return torch.full((n,), int(target), dtype=torch.long)
    if isinstance(target, Sequence) and not isinstance(target, torch.Tensor | bytes):
        target = _sequence_targets(model, target, n, n_classes)
    elif not isinstance(target, torch.Tensor | np.ndarray):
        raise _bad_target(f"{type(target).__name__}")
    return _tensor_targets(target, n, n_classes)


def _check_classes(indices: Sequence[int], n_classes: int) -> None:
    """Every index is a class of the model's ``n_classes`` outputs."""
    bad = [i for i in indices if not 0 <= i < n_classes]
    if bad:
        raise InputError(
            describe(
                "`target`",
                f"a class index in [0, {n_classes})",
                f"{bad[0]}",
                'Pass target="predicted" to explain the predicted class.',
            )
        )


def _sequence_targets(model: Model, target: Sequence[Any], n: int, n_classes: int) -> Any:
    """A list of targets: names resolved to indices, ints range-checked; nested sequences
    and arrays are left for :func:`_tensor_targets`."""
    if len(target) == 0:
        raise _bad_target(
            "an empty sequence",
            f'Pass one target per sample ({n}), a single int, or "predicted".',
        )
    if all(isinstance(t, str) for t in target):
        return [model.class_index(t) for t in target]
    if all(isinstance(t, int | np.integer) and not isinstance(t, bool) for t in target):
        _check_classes([int(t) for t in target], n_classes)
    elif not all(isinstance(t, Sequence | np.ndarray | torch.Tensor) for t in target):
        kinds = sorted({type(t).__name__ for t in target})
        raise _bad_target(
            f"a sequence of {', '.join(kinds)}",
            'Pass ints or class names, one per sample, or target="predicted".',
        )
    return target


def _tensor_targets(target: Any, n: int, n_classes: int) -> torch.Tensor:
    """Integer targets (tensor, array or list) -> (n,) long: one per sample, or one for all."""
    t = _to_tensor(target, "target")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(
            describe(
                "`target`",
                "integer class indices",
                f"dtype {t.dtype}",
                "Convert with target.long().",
            )
        )
    idx = t.reshape(-1).long().cpu()
    if idx.numel() == 0:
        raise _bad_target(
            f"an empty tensor of shape {tuple(t.shape)}",
            f'Pass one target per sample ({n}), a single int, or "predicted".',
        )
    if idx.numel() == 1:
        idx = idx.expand(n).clone()
    if idx.numel() != n:
        raise InputError(
            describe(
                "`target`",
                f"one class per sample ({n})",
                f"{idx.numel()} targets",
                'Pass one target per sample, a single int, or "predicted".',
            )
        )
    _check_classes(idx.tolist(), n_classes)
    return idx


def as_reference(
    model: Model, value: Any, x: torch.Tensor, name: str, per_sample_ok: bool = True
) -> torch.Tensor:
    """Validate a baseline/background tensor against inputs ``x`` (N, ...).

    Returns a tensor of shape (B, ...) where B is 1, N (if ``per_sample_ok``) or the number of
    reference samples. A single sample without batch dimension is accepted and given one.
    For a model called on several inputs (``model.layout``), ``value`` may be one tensor per
    input (a tuple in input order, or a dict by input name), packed like the inputs.
    """
    layout = getattr(model, "layout", None)
    entries = per_input(layout, value, name) if layout is not None else None
    if entries is not None:  # one reference tensor per input, packed like the inputs
        parts = [
            _reference(v, part, f"{name}[{k}]")
            for k, (v, part) in enumerate(zip(entries, layout.unpack(x), strict=True))
        ]
        rows = {len(p) for p in parts}
        if len(rows - {1}) > 1:
            raise InputError(
                describe(
                    f"`{name}`",
                    "the same number of reference rows for every input (or 1)",
                    ", ".join(f"{name}[{k}]: {len(p)}" for k, p in enumerate(parts)),
                    "Give every input's references as many rows.",
                )
            )
        b = max(rows)
        return layout.pack([p.expand(b, *p.shape[1:]) for p in parts])
    return _reference(value, x, name)


def _reference(value: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    """One reference tensor (B, ...) for inputs ``x`` (N, ...), finite, in their dtype."""
    ref = _to_tensor(value, name)
    if not ref.is_floating_point():
        raise InputError(
            describe(
                f"`{name}`",
                "a floating-point tensor",
                f"dtype {ref.dtype}",
                "Convert with .float() using the inputs' preprocessing.",
            )
        )
    sample_shape = tuple(x.shape[1:])
    if tuple(ref.shape) == sample_shape:
        ref = ref[None]
    if tuple(ref.shape[1:]) != sample_shape or ref.shape[0] == 0:
        raise InputError(
            describe(
                f"`{name}`",
                f"shape (B, {', '.join(map(str, sample_shape))}) matching one input sample",
                f"shape {tuple(ref.shape)}",
                f"Give {name} the same per-sample shape as the inputs {tuple(x.shape)}.",
            )
        )
    check_finite(ref, name)
    return _convert(ref, x.device, x.dtype, name)


def check_int(value: Any, name: str, minimum: int = 1, example: int | None = None) -> int:
    """An integer >= ``minimum``; ``example`` is the value the error message suggests.

    Example:
        >>> check_int(4, "steps", 2)
        4
        >>> check_int(0, "batch_size", example=32)
        Traceback (most recent call last):
        ...
        explainer.errors.InputError: `batch_size`: expected an integer >= 1, got 0. Pass e.g. batch_size=32.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(
            describe(
                f"`{name}`",
                f"an integer >= {minimum}",
                repr(value),
                f"Pass e.g. {name}={max(minimum, 1) * 8 if example is None else example}.",
            )
        )
    return int(value)


def check_path(value: Any, name: str, example: str) -> Any:
    """A non-empty path (``str`` or ``os.PathLike``), returned as given."""
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise InputError(
            describe(f"`{name}`", "a folder path", repr(value), f'Pass e.g. {name}="{example}".')
        )
    return value


def check_target_spec(
    target: Any, keywords: Sequence[str], class_names: Sequence[str] | None
) -> str | int:
    """A target given once for a whole dataset: one of ``keywords`` (``"predicted"``, ...),
    a class name or a class index (its range is checked when the model runs).

    Example:
        >>> check_target_spec("label", ("predicted", "label"), None), check_target_spec(2, (), None)
        ('label', 2)
    """
    if isinstance(target, str):
        if target in keywords or (class_names and target in class_names):
            return target
    elif isinstance(target, int | np.integer) and not isinstance(target, bool):
        return int(target)
    names = f" ({list(class_names)[:6]})" if class_names else ""
    raise InputError(
        describe(
            "`target`",
            ", ".join(f'"{k}"' for k in keywords) + f", a class index or a class name{names}",
            repr(target),
            f'Use target="{keywords[0]}".' if keywords else "Pass a class index.",
        )
    )


def check_bool(value: Any, name: str) -> bool:
    """A real boolean (``True``/``False`` or a numpy bool): ``"no"`` or ``1`` are refused,
    since ``bool("no")`` is True."""
    if not isinstance(value, bool | np.bool_):
        raise InputError(
            describe(
                f"`{name}`",
                "True or False",
                f"{value!r} ({type(value).__name__})",
                f"Pass {name}=True or {name}=False.",
            )
        )
    return bool(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in [0, 2**63 - 1]; ``None`` means 0.

    One meaning everywhere (every method and ``ex.evaluate``): ``None`` is seed 0, so
    results are deterministic unless a seed is chosen. Fresh randomness is asked for by
    passing a fresh seed, e.g. ``seed=secrets.randbits(32)``.
    """
    if value is None:
        return 0
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise InputError(
            describe(
                f"`{name}`",
                "an integer in [0, 2**63 - 1] (or None, meaning 0)",
                f"{value!r} ({type(value).__name__})",
                f"Pass e.g. {name}=0.",
            )
        )
    if not 0 <= int(value) <= SEED_MAX:
        raise InputError(
            describe(
                f"`{name}`",
                "an integer in [0, 2**63 - 1] (or None, meaning 0)",
                repr(int(value)),
                f"Pass e.g. {name}=0.",
            )
        )
    return int(value)


def check_names(value: Any, name: str, count: int | None = None) -> tuple[str, ...] | None:
    """Names (class names, feature names) as a tuple of strings, or None.

    Accepts a sequence (each entry converted with ``str``) or a mapping ``{index: name}``
    whose keys are exactly the integers 0..K-1 (any order). A bare string is refused: it
    would be split into characters. ``count``: the number of names required.
    """
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise InputError(
            describe(
                f"`{name}`",
                "a list of names, one per entry",
                f"the single string {value!r}, which would be split into characters",
                f"Pass a list, e.g. {name}="
                f"{value.split(',') if isinstance(value, str) and ',' in value else [value]!r}.",
            )
        )
    if isinstance(value, Mapping):
        keys = list(value)
        ints = all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in keys)
        if not ints or sorted(int(k) for k in keys) != list(range(len(keys))):
            raise InputError(
                describe(
                    f"`{name}`",
                    "a list of names, or a mapping {index: name} with integer keys 0..K-1",
                    f"a mapping with keys {sorted(map(repr, keys))[:8]}",
                    "Use integer keys 0, 1, ..., K-1 (one per column), or pass a list.",
                )
            )
        names = tuple(str(value[k]) for k in sorted(keys, key=int))
    elif isinstance(value, Sequence | np.ndarray) or (
        hasattr(value, "__iter__") and not isinstance(value, torch.Tensor | Mapping)
    ):
        names = tuple(str(v) for v in value)
    else:
        raise InputError(
            describe(
                f"`{name}`",
                "a list of names",
                f"{type(value).__name__}",
                f"Pass e.g. {name}=['a', 'b'].",
            )
        )
    if count is not None and len(names) != count:
        raise InputError(
            describe(
                f"`{name}`",
                f"{count} names (one per column)",
                f"{len(names)}",
                "Pass one name per input column.",
            )
        )
    return names


def check_fraction(value: Any, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """A float in [low, high]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.floating)
        or not low <= float(value) <= high
    ):
        raise InputError(
            describe(
                f"`{name}`",
                f"a number in [{low}, {high}]",
                repr(value),
                f"Pass e.g. {name}={(low + high) / 4:g}.",
            )
        )
    return float(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise InputError(
            describe(
                f"`{name}`",
                f"one of {list(choices)}",
                repr(value),
                f"Pass {name}={choices[0]!r} or another listed value.",
            )
        )
    return value


def has_gradient_path(model: Model, out: torch.Tensor) -> None:
    """Raise ModelError when the selected outputs do not depend differentiably on the inputs."""
    if not out.requires_grad:
        raise ModelError(
            describe(
                "Model",
                "outputs that are differentiable with respect to the inputs",
                "outputs with no gradient path to the inputs (detached, argmax, numpy or torch.no_grad inside forward)",
                "Remove .detach()/no_grad from forward, or use a perturbation method such as kernel_shap.",
            )
        )


def check_model(model: Model) -> None:
    """Raise ModelError when the network's weights hold no data (the ``meta`` device)."""
    parameters, buffers = named_tensors(model.net)  # held inside Model.evaluating()
    if not any(t.is_meta for _, t in parameters) and not any(t.is_meta for _, t in buffers):
        return
    for kind, tensors in (("parameter", parameters), ("buffer", buffers)):
        for key, t in tensors:
            if t.device.type == "meta":
                raise ModelError(
                    describe(
                        "Model",
                        "parameters and buffers that hold values",
                        f"{kind} {key!r} on the meta device (shapes only, no data)",
                        "Load the weights first, e.g. net.to_empty(device='cpu') then "
                        "net.load_state_dict(state), or load_state_dict(state, assign=True).",
                    )
                )


def check_autograd_mode(entry: str) -> None:
    """Raise InputError when called under ``torch.inference_mode()``.

    Attribution methods differentiate with respect to the inputs and re-run the model;
    inference mode turns autograd off for good (tensors made in it can never join a graph),
    so we refuse at the entry instead of failing inside the model. ``torch.no_grad()``
    around a call is fine: methods turn gradients on where they need them.
    """
    if torch.is_inference_mode_enabled():
        raise InputError(
            describe(
                f"{entry} call",
                "a call outside torch.inference_mode()",
                "a call inside an inference_mode block (autograd is off there)",
                f"Call {entry} after the `with torch.inference_mode():` block "
                "(torch.no_grad() around it is fine).",
            )
        )


def check_attributions(attributions: torch.Tensor, method: str) -> None:
    """Raise ModelError when a method's attributions hold NaN/Inf.

    Inputs and references are checked to be finite and every forward pass checks its
    outputs, so a non-finite attribution comes from the model's gradients (e.g. sqrt or
    log at 0) at some point the method evaluated.
    """
    if all_finite(attributions):
        return
    bad = ~torch.isfinite(attributions)
    if bool(bad.any()):
        samples = sorted({int(i) for i in bad.reshape(len(bad), -1).any(1).nonzero()[:, 0]})
        raise ModelError(
            describe(
                f"Attributions of {method}",
                "finite values",
                f"{int(bad.sum())} NaN/Inf value(s) in sample(s) {samples[:8]}",
                "The model produced non-finite outputs or gradients at some point of the "
                "path between the baselines/references and the inputs (e.g. log, sqrt or "
                "division at 0); check the model there, or choose other baselines.",
            )
        )


def as_methods(methods: Any) -> dict[str, dict[str, Any]]:
    """``explain_many``'s ``methods`` -> ``{name: options}``.

    Accepts one name (``"saliency"``), a sequence of names, or a mapping
    ``{name: options}`` where options is a mapping of parameters or None (the defaults).
    """
    if isinstance(methods, str):
        return {methods: {}}
    if isinstance(methods, Mapping):
        spec = {}
        for key, opts in methods.items():
            if opts is not None and not isinstance(opts, Mapping):
                raise InputError(
                    describe(
                        f"`methods[{key!r}]`",
                        "a mapping of the method's options, or None for its defaults",
                        f"{type(opts).__name__}",
                        f"Pass methods={{{key!r}: {{}}}} or e.g. {{'ig': {{'n_steps': 32}}}}.",
                    )
                )
            spec[key] = dict(opts or {})
    elif isinstance(methods, Sequence | set | frozenset) and not isinstance(methods, bytes):
        spec = {m: {} for m in methods}
    else:
        got = "None" if methods is None else type(methods).__name__
        spec = None
    if spec == {}:
        got = "an empty collection"
    if not spec:
        raise InputError(
            describe(
                "`methods`",
                "a method name, a list of names, or a mapping {name: options}",
                got,
                'Pass e.g. methods=["saliency", "ig"].',
            )
        )
    return spec


_DEVICE_KINDS = ("cpu", "cuda", "mps")


def check_device(value: Any, name: str = "device") -> torch.device:
    """A device this machine has: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` (or a
    ``torch.device``); InputError naming what is available otherwise.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
        >>> check_device("tpu")
        Traceback (most recent call last):
        ...
        explainer.errors.InputError: `device`: expected one of cpu, cuda, cuda:N or mps, got 'tpu'. Pass device="cpu", or "cuda" on a machine with an NVIDIA GPU.
    """
    try:
        device = torch.device(value) if isinstance(value, str | torch.device) else None
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in _DEVICE_KINDS:
        raise InputError(
            describe(
                f"`{name}`",
                "one of cpu, cuda, cuda:N or mps",
                repr(value),
                f'Pass {name}="cpu", or "cuda" on a machine with an NVIDIA GPU.',
            )
        )
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            have = (
                f"{count} CUDA device(s)"
                if count
                else "no CUDA device (torch.cuda.is_available() is False)"
            )
            raise InputError(
                describe(
                    f"`{name}`",
                    "a device available on this machine",
                    f"{str(device)!r}, but this machine has {have}",
                    f'Pass {name}="cpu"'
                    + (
                        f', or "cuda:0" to "cuda:{count - 1}".'
                        if count
                        else ", or install a CUDA build of torch on a machine with an NVIDIA GPU."
                    ),
                )
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            describe(
                f"`{name}`",
                "a device available on this machine",
                "'mps', but the Metal backend is not available (macOS with Apple silicon only)",
                f'Pass {name}="cpu".',
            )
        )
    return device
