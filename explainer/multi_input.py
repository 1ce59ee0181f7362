"""MultiInputExplanation: one method's attributions of a network with several inputs.

``ex.explain(model, (images, vectors), ...)`` returns one. Its ``attributions`` and
``inputs`` are tuples matching the inputs; underneath it holds one :class:`Explanation` of
the packed rows (``packed``: every input's values side by side, see
:mod:`explainer.inputs`), which is what trust scores and files work on, and it draws each
input in its own form (:meth:`parts`): a heatmap for an image, bars for a vector, bars per
position for a (tokens, dim) tensor (summed over its last dimensions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .errors import InputError, describe
from .explanation import Explanation
from .explanation import load_explanation as _load_one
from .inputs import InputLayout
from .viz.sections import render_fragment

__all__ = ["MultiInputExplanation", "load_explanation"]


@dataclass(frozen=True, eq=False)
class MultiInputExplanation:
    """Attributions of every input of a several-input network, for one method.

    Attributes:
        packed: the Explanation of the packed (N, D) rows (modality "tabular"); its
            manifest's ``"inputs"`` holds the layout.
        attributions: one tensor per input, shaped like that input (a property).
        inputs: the explained inputs, one tensor per input (a property).
        input_names: "input 0", ... or the keys of the dict of inputs.

    The other attributes (method, targets, scores, class_names, params, extras, manifest,
    warnings) are the packed explanation's: a completeness gap, for instance, is over all
    inputs together.

    Example:
        >>> import torch, explainer as ex
        >>> class TwoInputs(torch.nn.Module):
        ...     def forward(self, image, vector):
        ...         return torch.stack([image.mean((1, 2, 3)), vector.sum(1)], 1)
        >>> m = ex.wrap(TwoInputs())
        >>> exp = ex.explain(m, (torch.ones(2, 1, 4, 4), torch.ones(2, 3)), "gradient_x_input",
        ...                  target=1, progress=False)
        >>> [tuple(a.shape) for a in exp.attributions], exp.attributions[1].tolist()
        ([(2, 1, 4, 4), (2, 3)], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
        >>> [p.modality for p in exp.parts()]
        ['image', 'tabular']
    """

    packed: Explanation

    @property
    def layout(self) -> InputLayout:
        return InputLayout.from_record(self.packed.manifest["inputs"])

    @property
    def attributions(self) -> tuple[torch.Tensor, ...]:
        return self.layout.unpack(self.packed.attributions)

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.layout.unpack(self.packed.inputs)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.layout.names

    def __getattr__(self, name: str) -> Any:
        # method, targets, scores, class_names, params, extras, manifest, warnings,
        # call_params, forward_args, predictions, class_label: the packed explanation's
        if name.startswith("_") or name == "packed":
            raise AttributeError(name)
        return getattr(self.packed, name)

    def __len__(self) -> int:
        return len(self.packed)

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{n}={tuple(s)}" for n, s in zip(self.layout.names, self.layout.shapes, strict=True)
        )
        noted = f", warnings={len(self.packed.warnings)}" if self.packed.warnings else ""
        return (
            f"MultiInputExplanation(method={self.packed.method!r}, samples={len(self)}, "
            f"inputs: {shapes}{noted})"
        )

    def parts(self) -> tuple[Explanation, ...]:
        """One single-input Explanation per input, for drawing it in its own form: an image
        input as an image explanation, a (N, F) input as tabular (with its feature names),
        any other shape as tabular bars per position along its first dimension (attributions
        summed, inputs as the L2 norm over the other dimensions; ``manifest["input"]`` says
        so). Per-sample extras (N,) are kept; the warnings go with the first part."""
        layout, exp = self.layout, self.packed
        names = exp.manifest["inputs"].get("feature_names") or [None] * len(layout)
        n = len(exp)
        extras = {
            k: v
            for k, v in exp.extras.items()
            if isinstance(v, torch.Tensor) and tuple(v.shape) == (n,)
        }
        out = []
        for k, (attr, x) in enumerate(zip(self.attributions, self.inputs, strict=True)):
            kind = layout.kinds[k]
            about = {"name": layout.names[k], "index": k, "of": len(layout), "kind": kind}
            columns = names[k]
            if kind == "tensor":  # (N, L, ...): one bar per position
                about["reduced"] = "attributions summed, inputs as L2 norms, over dims 2+"
                attr = attr.reshape(n, attr.shape[1], -1).sum(2)
                x = x.reshape(n, x.shape[1], -1).norm(dim=2)
                columns = [f"{layout.names[k]}[{i}]" for i in range(attr.shape[1])]
            out.append(
                replace(
                    exp,
                    attributions=attr.contiguous(),
                    inputs=x.contiguous(),
                    modality="image" if kind == "image" else "tabular",
                    extras=dict(extras),
                    manifest={**exp.manifest, "input": about, "input_shape": list(x.shape)},
                    feature_names=tuple(columns) if columns else None,
                    warnings=exp.warnings if k == 0 else (),
                )
            )
        return tuple(out)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the packed explanation (its manifest holds the layout); read it back with
        :func:`load_explanation`, which returns a MultiInputExplanation."""
        return self.packed.save(path)

    def plot(self, kind: str = "samples", *, input: int | str = 0, **options: Any) -> Any:
        """Draw one input's view (:meth:`Explanation.plot` of that part): ``input`` is its
        index or name."""
        return self.parts()[self._index(input)].plot(kind, **options)

    def _index(self, input: int | str) -> int:
        names = self.layout.names
        if isinstance(input, int) and not isinstance(input, bool) and 0 <= input < len(names):
            return input
        if isinstance(input, str) and input in names:
            return names.index(input)
        raise InputError(
            describe(
                "`input`",
                f"an input index 0..{len(names) - 1} or one of {list(names)}",
                repr(input),
                "Pass input=0 for the first input.",
            )
        )

    def _repr_html_(self) -> str:
        return render_fragment(list(self.parts()))


def load_explanation(path: str | os.PathLike) -> Explanation | MultiInputExplanation:
    """Read an explanation written by ``save``: an :class:`Explanation`, or a
    :class:`MultiInputExplanation` when the file holds several inputs (see
    :func:`explainer.explanation.load_explanation` for what is checked and raised).

    Example:
        >>> import tempfile, torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Bilinear(2, 3, 2))
        >>> exp = ex.explain(m, (torch.ones(1, 2), torch.ones(1, 3)), "saliency", progress=False)
        >>> back = ex.load_explanation(exp.save(f"{tempfile.mkdtemp()}/two.npz"))
        >>> type(back).__name__, [torch.equal(a, b) for a, b in zip(back.attributions, exp.attributions)]
        ('MultiInputExplanation', [True, True])
    """
    exp = _load_one(path)
    return MultiInputExplanation(exp) if "inputs" in exp.manifest else exp
