"""Argument validation shared by every entry point: validate once, at the edge.

Every function here either returns a clean value (float tensor on the model's device,
long targets, ...) or raises an :class:`~explainer.errors.InputError` whose message
says what was wrong, what was expected, what was got and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import InputError, ModelError, describe
from .model import Model

__all__ = [
    "as_inputs",
    "as_targets",
    "as_reference",
    "check_finite",
    "check_int",
    "check_choice",
    "check_fraction",
    "has_gradient_path",
]


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
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


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise InputError if ``t`` holds NaN or Inf."""
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
    """Validate a batch of inputs for ``model``; return a float tensor on its device."""
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
    if want == 4:
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
                    f"Permute with {name}.permute(0, 3, 1, 2).",
                )
            )
    check_finite(x, name)
    return x.to(device=model.device, dtype=torch.float32 if x.dtype == torch.float64 else x.dtype)


def as_targets(model: Model, target: Any, scores: torch.Tensor) -> torch.Tensor:
    """Resolve ``target`` to a long tensor with one class index per sample.

    Accepts an int, a class name, ``"predicted"``, or a sequence/tensor of ints or names
    with one entry per sample. ``scores`` are the model's (N, classes) outputs.
    """
    n, n_classes = scores.shape
    if isinstance(target, str):
        if target == "predicted":
            return scores.argmax(dim=1).cpu()
        return torch.full((n,), model.class_index(target), dtype=torch.long)
    if isinstance(target, bool) or target is None:
        raise InputError(
            describe(
                "`target`",
                'an int, a class name, "predicted" or one per sample',
                repr(target),
                'Pass target="predicted" to explain the predicted class.',
            )
        )
    if isinstance(target, int | np.integer):
        idx = torch.full((n,), int(target), dtype=torch.long)
    else:
        if (
            isinstance(target, Sequence)
            and not isinstance(target, torch.Tensor)
            and target
            and all(isinstance(t, str) for t in target)
        ):
            target = [model.class_index(t) for t in target]
        t = _to_tensor(target, "target")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise InputError(
                describe(
                    "`target`",
                    "integer class indices",
                    f"dtype {t.dtype}",
                    "Convert with target.long().",
                )
            )
        idx = t.reshape(-1).long().cpu()
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
    bad = (idx < 0) | (idx >= n_classes)
    if bool(bad.any()):
        raise InputError(
            describe(
                "`target`",
                f"a class index in [0, {n_classes})",
                f"{idx[bad][0].item()}",
                'Pass target="predicted" to explain the predicted class.',
            )
        )
    return idx


def as_reference(
    model: Model, value: Any, x: torch.Tensor, name: str, per_sample_ok: bool = True
) -> torch.Tensor:
    """Validate a baseline/background tensor against inputs ``x`` (N, ...).

    Returns a tensor of shape (B, ...) where B is 1, N (if ``per_sample_ok``) or the number of
    reference samples. A single sample without batch dimension is accepted and given one.
    """
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
    return ref.to(device=x.device, dtype=x.dtype)


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(
            describe(
                f"`{name}`",
                f"an integer >= {minimum}",
                repr(value),
                f"Pass e.g. {name}={max(minimum, 1) * 8}.",
            )
        )
    return int(value)


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
