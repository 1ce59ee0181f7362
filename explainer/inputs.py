"""What one forward call receives: several inputs packed into one tensor, and forward
arguments that go with every call without being attributed.

**Several inputs.** ``ex.explain(model, (images, vectors))`` explains a network whose
forward takes several tensors. Every method works on one tensor of rows, so the inputs are
*packed*: each sample's inputs are flattened and laid side by side, (N, D) with D the sum
of their sizes, and :meth:`InputLayout.unpack` gives the network its tensors back as views
of those rows. Every row a method builds (IG's path points, SHAP's coalitions, noisy
copies) is then a row of every input at once, and attributions come back per input. The
unpacking is slicing and reshaping, which autograd and the DeepLIFT engine follow exactly,
so no method changes its mathematics; the ones that need to know the parts (baselines,
kernel SHAP's features, noise scales) read :attr:`explainer.model.Model.layout`.

**Forward arguments.** ``forward_args=`` holds what the network needs beside the explained
inputs (an ``attention_mask``, a conditioning vector, a flag). A tensor whose first
dimension is the batch size N is *per sample*: row i goes with sample i; anything else is a
constant passed unchanged to every call. Alignment is kept by construction: when a
per-sample argument is present, each sample is explained on its own (every row a method
builds then belongs to that sample) and the argument's row is expanded to the rows of each
forward call (:meth:`ForwardArgs.call_values`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import InputError, describe

__all__ = ["InputLayout", "ForwardArgs", "kind_of", "value_ranges"]


def kind_of(shape: Sequence[int]) -> str:
    """How one input (per-sample ``shape``) is drawn and perturbed: "image" for (C, H, W),
    "tabular" for (features,), "tensor" for anything else (e.g. (tokens, dim) embeddings,
    whose positions along the first dimension are its features).

    Example:
        >>> kind_of((3, 32, 32)), kind_of((5,)), kind_of((12, 64))
        ('image', 'tabular', 'tensor')
    """
    return {3: "image", 1: "tabular"}.get(len(shape), "tensor")


@dataclass(frozen=True)
class InputLayout:
    """Where each of several inputs lies in a packed (N, D) row.

    Attributes:
        shapes: the per-sample shape of each input.
        names: a name per input ("input 0", ... or the keys of a dict of inputs).
        keyword: True when the inputs are passed to the network by keyword (a dict was
            given), else positionally in order.

    Example:
        >>> import torch
        >>> layout = InputLayout(shapes=((2, 3), (4,)), names=("a", "b"))
        >>> x = layout.pack([torch.ones(5, 2, 3), torch.zeros(5, 4)])
        >>> x.shape, [tuple(p.shape) for p in layout.unpack(x)]
        (torch.Size([5, 10]), [(5, 2, 3), (5, 4)])
        >>> layout.kinds, layout.offsets
        (('tensor', 'tabular'), (0, 6, 10))
    """

    shapes: tuple[tuple[int, ...], ...]
    names: tuple[str, ...]
    keyword: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind_of(s) for s in self.shapes)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each input's columns, and the total width last."""
        out = [0]
        for size in self.sizes:
            out.append(out[-1] + size)
        return tuple(out)

    def __len__(self) -> int:
        return len(self.shapes)

    def pack(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-input tensors (B, *shape) -> one (B, D) tensor (one row per sample)."""
        rows = parts[0].shape[0]
        return torch.cat([p.reshape(rows, -1) for p in parts], dim=1)

    def unpack(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(R, D) rows -> one (R, *shape) view per input."""
        o = self.offsets
        return tuple(
            x[:, o[k] : o[k + 1]].reshape(len(x), *shape) for k, shape in enumerate(self.shapes)
        )

    def map(self, fn: Callable[[int, torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn(k, part)`` for each input's (R, *shape) part, packed again: a per-input
        operation (a blur of the image, a mean of the vector) on packed rows."""
        return self.pack([fn(k, part) for k, part in enumerate(self.unpack(x))])

    def record(self) -> dict[str, Any]:
        """The layout for manifests and files (:meth:`from_record` reads it back)."""
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "kinds": list(self.kinds),
            "keyword": self.keyword,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> InputLayout:
        return cls(
            shapes=tuple(tuple(int(d) for d in s) for s in record["shapes"]),
            names=tuple(str(n) for n in record["names"]),
            keyword=bool(record.get("keyword", False)),
        )


@dataclass(frozen=True)
class _Arg:
    key: int | str  # position (after the inputs) or keyword
    value: Any
    per_sample: bool  # a tensor whose first dimension is the batch


@dataclass(frozen=True)
class ForwardArgs:
    """Arguments passed to every forward call beside the explained inputs, never attributed.

    Build it with :meth:`of`. A per-sample tensor holds one row per sample; a model bound
    to one sample (:meth:`sample`) holds that row, expanded to however many rows each
    forward call has.

    Example:
        >>> import torch
        >>> fa = ForwardArgs.of({"mask": torch.tensor([[1, 0], [1, 1]]), "scale": 2.0}, n=2)
        >>> fa.per_sample, fa.describe()
        (True, {'mask': 'tensor(2, 2) int64, per sample', 'scale': '2.0'})
        >>> args, kwargs = fa.sample(1).call_values(rows=3)
        >>> kwargs["mask"].tolist(), kwargs["scale"]
        ([[1, 1], [1, 1], [1, 1]], 2.0)
    """

    items: tuple[_Arg, ...] = field(default_factory=tuple)

    @classmethod
    def of(
        cls,
        value: Any,
        n: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ForwardArgs:
        """``forward_args`` as given to ``ex.explain``: None, one tensor (one positional
        argument), a tuple/list (positional, after the inputs) or a dict (keywords).

        Tensors and numpy arrays go to ``device``; floating ones to the model's ``dtype``
        (integers, such as masks and ids, keep theirs). Those whose first dimension is
        ``n`` are per sample; everything else is a constant.

        Raises:
            InputError: a dict key that is not a string, or a per-sample tensor holding
                NaN/Inf.
        """
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            pairs: list[tuple[int | str, Any]] = []
            for key, v in value.items():
                if not isinstance(key, str):
                    raise InputError(
                        describe(
                            "`forward_args` keys",
                            "argument names (strings), as in forward(..., attention_mask=m)",
                            repr(key),
                            "Pass forward_args={'attention_mask': mask}, or a tuple for "
                            "positional arguments.",
                        )
                    )
                pairs.append((key, v))
        elif isinstance(value, tuple | list):
            pairs = list(enumerate(value))
        else:
            pairs = [(0, value)]
        items = []
        for key, v in pairs:
            if isinstance(v, np.ndarray):
                v = torch.from_numpy(np.ascontiguousarray(v))
            per_sample = False
            if isinstance(v, torch.Tensor):
                v = v.detach().to(device=device)
                if v.is_floating_point():
                    v = v.to(dtype)
                per_sample = v.ndim >= 1 and v.shape[0] == n
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise InputError(
                        describe(
                            f"`forward_args` ({key!r})",
                            "finite values",
                            "NaN/Inf values",
                            "Clean the argument before explaining (e.g. torch.nan_to_num).",
                        )
                    )
            items.append(_Arg(key, v, per_sample))
        return cls(tuple(items))

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def per_sample(self) -> bool:
        """Whether any argument holds one row per sample."""
        return any(a.per_sample for a in self.items)

    def sample(self, i: int) -> ForwardArgs:
        """The arguments of sample ``i``: per-sample tensors cut to their row ``i``."""
        return ForwardArgs(
            tuple(_Arg(a.key, a.value[i : i + 1], True) if a.per_sample else a for a in self.items)
        )

    def rows(self, part: slice) -> ForwardArgs:
        """The arguments of the samples in ``part`` (a chunk of a batch explained in one
        call): per-sample tensors cut to those rows.

        Example:
            >>> import torch
            >>> fa = ForwardArgs.of({"mask": torch.tensor([[1, 0], [1, 1], [0, 1]])}, n=3)
            >>> fa.rows(slice(1, 3)).call_values(rows=2)[1]["mask"].tolist()
            [[1, 1], [0, 1]]
        """
        return ForwardArgs(
            tuple(_Arg(a.key, a.value[part], True) if a.per_sample else a for a in self.items)
        )

    def call_values(self, rows: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(positional, keyword) values for a forward call on ``rows`` rows: a per-sample
        argument's single row expanded to ``rows`` (a view, no copy)."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for a in self.items:
            v = a.value
            if a.per_sample:
                if v.shape[0] != 1 and v.shape[0] != rows:
                    # The api explains one sample at a time when an argument is per sample.
                    raise RuntimeError(
                        f"forward argument {a.key!r} has {v.shape[0]} rows for a call on {rows}"
                    )
                v = v.expand(rows, *v.shape[1:])
            if isinstance(a.key, int):
                args.append(v)
            else:
                kwargs[a.key] = v
        return tuple(args), kwargs

    def describe(self) -> dict[str, str]:
        """What was passed, in words, for manifests: ``{"attention_mask": "tensor(8, 12)
        int64, per sample"}`` (positional arguments keyed "0", "1", ...)."""
        out = {}
        for a in self.items:
            if isinstance(a.value, torch.Tensor):
                dims = ", ".join(map(str, a.value.shape))
                kind = ", per sample" if a.per_sample else ", constant"
                text = f"tensor({dims}) {str(a.value.dtype).removeprefix('torch.')}{kind}"
            else:
                text = repr(a.value)
                text = text if len(text) <= 60 else text[:57] + "..."
            out[str(a.key)] = text
        return out


def value_ranges(inputs: torch.Tensor, layout: InputLayout | None = None) -> torch.Tensor:
    """Each sample's value range (max - min), the scale noise is drawn at: (N, 1, ...) for
    one input; for packed rows of several inputs, each input's own range over its columns,
    (N, D), so that an image in [0, 1] and a vector in [-100, 100] are each perturbed at
    their own scale.

    Example:
        >>> import torch
        >>> layout = InputLayout(shapes=((2,), (2,)), names=("a", "b"))
        >>> value_ranges(torch.tensor([[0.0, 1.0, -10.0, 10.0]]), layout).tolist()
        [[1.0, 1.0, 20.0, 20.0]]
    """

    def span(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)
        out = flat.max(1).values - flat.min(1).values
        return out.view(-1, *([1] * (x.ndim - 1)))

    if layout is None:
        return span(inputs)
    return layout.map(lambda _, part: span(part).expand_as(part), inputs)
