"""Reference inputs that stand for "absent": IG's baselines, kernel SHAP's fills, and the
blurred images the faithfulness metrics perturb towards."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import as_reference, check_choice, per_input
from .._runtime import seeded_generator
from ..errors import InputError, describe
from ..model import Model

__all__ = ["BASELINES", "gaussian_blur", "make_baselines"]

BASELINES = ("zeros", "blur", "uniform")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images with reflect padding.

    Example:
        >>> import torch
        >>> flat, spike = torch.full((1, 3, 5, 5), 0.5), torch.zeros(1, 1, 5, 5)
        >>> spike[0, 0, 2, 2] = 1.0
        >>> bool(torch.allclose(gaussian_blur(flat, sigma=1.0), flat))  # constant stays
        True
        >>> round(float(gaussian_blur(spike, sigma=1.0)[0, 0, 2, 2]), 3)  # a peak spreads
        0.159
    """
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    out = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    out = F.conv2d(
        out, k[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    return F.conv2d(
        out, k[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def make_baselines(
    model: Model, inputs: torch.Tensor, baselines: Any, seed: int | None
) -> torch.Tensor:
    """Resolve a baseline spec to a tensor of shape (1 or N, ...) on the inputs' device.

    ``baselines``: one of BASELINES ("zeros", "blur": each image blurred, "uniform": noise
    in each input's value range, drawn with ``seed``), a finite number, or a tensor of 1 or
    N reference rows.

    For a model called on several inputs (``model.layout``) a name applies to each input
    (``"blur"`` only to images), and a tuple (or a dict by input name) gives each input
    its own spec, e.g. ``("blur", "zeros")`` or ``(image_baseline, 0.0)``.

    Raises:
        InputError: an unknown name, "blur" for non-images, a non-finite number, or a
            tensor of neither 1 nor N rows.
    """
    layout = model.layout
    specs = per_input(layout, baselines, "baselines") if layout is not None else None
    if layout is not None and (specs is not None or isinstance(baselines, str)):
        specs = specs if specs is not None else [baselines] * len(layout)
        parts = [
            _one_input(model, part, spec, seed, f"baselines[{k}]")
            for k, (part, spec) in enumerate(zip(layout.unpack(inputs), specs, strict=True))
        ]
        rows = max(len(p) for p in parts)
        return layout.pack([p.expand(rows, *p.shape[1:]) for p in parts])
    return _one_input(model, inputs, baselines, seed, "baselines")


def _one_input(
    model: Model, inputs: torch.Tensor, baselines: Any, seed: int | None, name: str
) -> torch.Tensor:
    """:func:`make_baselines` for one input tensor."""
    if isinstance(baselines, str):
        return _named_baseline(inputs, baselines, seed)
    if isinstance(baselines, int | float | np.integer | np.floating) and not isinstance(
        baselines, bool | np.bool_
    ):
        if not np.isfinite(float(baselines)):
            raise InputError(
                describe(
                    f"`{name}`",
                    "a finite number, a tensor or one of " + ", ".join(map(repr, BASELINES)),
                    repr(baselines),
                    'Pass e.g. baselines=0.0 or baselines="zeros".',
                )
            )
        return torch.full_like(inputs[:1], float(baselines))
    ref = as_reference(model, baselines, inputs, name)
    if len(ref) not in (1, len(inputs)):
        raise InputError(
            describe(
                f"`{name}`",
                f"1 or {len(inputs)} baseline(s), one per input",
                f"{len(ref)}",
                "For a distribution of references use gradient_shap with background=...",
            )
        )
    return ref


def _named_baseline(inputs: torch.Tensor, name: str, seed: int | None) -> torch.Tensor:
    """The baseline one of BASELINES names: (1, ...) zeros or (N, ...) blur or noise."""
    check_choice(name, "baselines", BASELINES)
    if name == "zeros":
        return torch.zeros_like(inputs[:1])
    if name == "blur":
        if inputs.ndim != 4:
            raise InputError(
                describe(
                    "`baselines`",
                    '"zeros", "uniform" or a tensor for tabular data',
                    '"blur"',
                    "Blurring needs images; use a tensor such as the training mean.",
                )
            )
        return gaussian_blur(inputs, sigma=max(inputs.shape[2:]) / 8)
    flat = inputs.reshape(len(inputs), -1)
    lo = flat.min(1).values.view(-1, *([1] * (inputs.ndim - 1)))
    hi = flat.max(1).values.view(-1, *([1] * (inputs.ndim - 1)))
    # drawn in float32 whatever the dtype, so a seed gives every dtype the same baseline
    u = torch.rand(
        inputs.shape, generator=seeded_generator(seed, inputs.device), device=inputs.device
    ).to(inputs.dtype)
    return lo + u * (hi - lo)
