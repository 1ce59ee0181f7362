"""What every method run shares: a progress bar and a memory budget that sets chunk sizes.

Methods that expand the batch (IG steps, SHAP samples, SmoothGrad noise) never materialize
the whole expansion: they ask :func:`chunk_size` how many rows fit in the budget, measured
from the bytes autograd actually saves for one extra sample of *this* model and input shape.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import InputError, describe
from .model import Model

__all__ = [
    "Runtime",
    "default_memory_budget",
    "parse_bytes",
    "chunk_size",
    "chunks",
    "progress_bar",
    "input_gradients",
    "bytes_per_sample",
    "seeded_generator",
]

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def default_memory_budget() -> int:
    """A quarter of the memory available now, capped at 4 GiB (at least 256 MiB)."""
    available = 8 * 2**30
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return int(min(max(available // 4, 256 * 2**20), 4 * 2**30))


def parse_bytes(value: Any) -> int:
    """``536870912``, ``"512MB"``, ``"1.5 GiB"`` -> bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]I?B|B)?\s*", value.upper())
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    raise InputError(
        describe(
            "`memory_budget`",
            'a positive number of bytes or a string like "512MB"',
            repr(value),
            'Pass e.g. memory_budget="1GB", or None for the default.',
        )
    )


@dataclass(frozen=True)
class Runtime:
    """Options every method receives: progress display and memory budget (bytes)."""

    progress: bool = True
    memory_budget: int = 0  # 0 means: use default_memory_budget()

    @property
    def budget(self) -> int:
        return self.memory_budget or default_memory_budget()


# Per network (weakly held, so a dead network's entry cannot be reused by a new one that
# gets the same id), then per sample shape and dtype.
_PER_SAMPLE_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, int]] = (
    weakref.WeakKeyDictionary()
)


def bytes_per_sample(model: Model, sample: torch.Tensor) -> int:
    """Bytes one more sample costs in a forward+backward pass, measured, cached per shape.

    Counts the tensors autograd saves for backward (the activations), for a batch of 1 and
    of 2, and takes the difference (so weights saved by conv/linear are not counted per
    sample); adds the input and its gradient, and a 1.5x margin for temporaries.
    """
    cache = _PER_SAMPLE_CACHE.setdefault(model.net, {})
    key = (tuple(sample.shape), sample.dtype)
    if key in cache:
        return cache[key]
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[-1] += t.numel() * t.element_size()
        return t

    sizes = []
    with (
        model.evaluating(),
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        for n in (1, 2):
            saved.append(0)
            x = sample[None].expand(n, *sample.shape).clone().requires_grad_(True)
            model.forward(x)
            sizes.append(saved[-1])
    per = max(sizes[1] - sizes[0], 0) + 3 * sample.numel() * sample.element_size()
    cache[key] = int(1.5 * per) + 1
    return cache[key]


def chunk_size(
    model: Model, sample: torch.Tensor, runtime: Runtime, extra_bytes_per_row: int = 0
) -> int:
    """How many rows of ``sample``'s shape fit into the memory budget at once (>= 1)."""
    per = bytes_per_sample(model, sample) + extra_bytes_per_row
    return max(1, runtime.budget // per)


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def progress_bar(total: int, desc: str, runtime: Runtime):
    """A tqdm bar: off when ``progress=False``, quiet when stderr is not a terminal, and
    only shown for work that lasts more than half a second."""
    return tqdm(
        total=total,
        desc=desc,
        disable=None if runtime.progress else True,
        leave=False,
        delay=0.5,
        unit="rows",
    )


def input_gradients(
    model: Model, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each row's target output with respect to its input, and the outputs.

    Rows are independent in eval mode, so the gradient of the summed selected outputs is
    the per-row gradient. Call inside ``model.evaluating()``.
    """
    from ._checks import has_gradient_path

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = model.forward(x)
        selected = out.gather(1, target.to(out.device)[:, None]).squeeze(1)  # (rows,)
        has_gradient_path(model, selected)
        (grad,) = torch.autograd.grad(selected.sum(), x)
    return grad.detach(), selected.detach()


def seeded_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator (never the global RNG); ``None`` means seed 0 for reproducibility."""
    gen = torch.Generator(device=device)
    gen.manual_seed(0 if seed is None else int(seed))
    return gen
