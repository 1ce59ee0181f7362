"""Several explanations of the same inputs side by side (renders inline in notebooks)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InputError, describe
from .explanation import Explanation
from .viz.figures import plot_comparison
from .viz.sections import render_fragment

__all__ = ["Comparison", "compare"]


class Comparison:
    """Several explanations of the same inputs, shown side by side in a notebook.

    Holds the explanations; ``_repr_html_`` draws the grid (input, one overlay per method,
    method agreement) and ``plot()`` returns the same as a matplotlib Figure.
    """

    def __init__(self, explanations: Sequence[Explanation], max_samples: int = 8) -> None:
        self.explanations = list(explanations)
        if not self.explanations or not all(isinstance(e, Explanation) for e in self.explanations):
            raise InputError(
                describe(
                    "`explanations`",
                    "one or more Explanation objects",
                    repr(explanations),
                    "Pass the result of ex.explain_many(...).",
                )
            )
        self.max_samples = max_samples

    def __repr__(self) -> str:
        return f"Comparison({', '.join(e.method for e in self.explanations)}; {len(self.explanations[0])} samples)"

    def _repr_html_(self) -> str:
        return render_fragment(self.explanations, max_samples=self.max_samples)

    def plot(self):
        """matplotlib Figure: samples x (input, one overlay per method)."""
        return plot_comparison(self.explanations, max_samples=self.max_samples)


def compare(explanations: Sequence[Explanation], max_samples: int = 8) -> Comparison:
    """A side-by-side view of explanations of the same inputs (renders inline in notebooks).

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> view = ex.compare(ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False))
        >>> "<table" in view._repr_html_()
        True
    """
    return Comparison(explanations, max_samples=max_samples)
