"""Several explanations of the same inputs side by side (renders inline in notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import InputError, describe
from .explanation import Explanation
from .viz.figures import plot_comparison
from .viz.sections import render_fragment

__all__ = ["Comparison", "compare"]


class Comparison:
    """Several explanations of the same inputs, shown side by side in a notebook.

    Holds the explanations and draws them on demand: ``_repr_html_`` renders the grid
    (input, one overlay or bar panel per method, method agreement) and :meth:`plot` draws
    the same with matplotlib. Made by :func:`compare`.

    Args:
        explanations: one or more explanations of the same inputs (one per method).
        max_samples: samples (rows) shown at most.

    Raises:
        InputError: ``explanations`` is empty or holds something that is not an
            Explanation.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exps = ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False)
        >>> ex.Comparison(exps, max_samples=4)
        Comparison(saliency, gradient_x_input; 2 samples)
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

    def plot(self, fig: Any = None) -> Any:
        """Draw samples x methods with matplotlib (never shown), anew on every call.

        Images: per sample the input, then one overlay per method; tabular: one panel of
        signed feature bars per method.

        Args:
            fig: an empty Figure or SubFigure to fill (e.g. one of ``fig.subfigures(1, 2)``
                of your layout); None: a new Figure sized to the grid.

        Returns:
            ``fig`` when given, else the new matplotlib Figure.

        Raises:
            InputError: ``fig`` is not an empty Figure or SubFigure.

        Example:
            >>> import torch, explainer as ex
            >>> from matplotlib.figure import Figure
            >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
            >>> view = ex.compare(ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False))
            >>> len(view.plot().axes)  # 2 samples x 2 methods
            4
            >>> top, bottom = Figure().subfigures(2, 1)
            >>> view.plot(fig=bottom) is bottom
            True
        """
        return plot_comparison(self.explanations, max_samples=self.max_samples, fig=fig)


def compare(explanations: Sequence[Explanation], max_samples: int = 8) -> Comparison:
    """A side-by-side view of explanations of the same inputs (renders inline in notebooks).

    Args:
        explanations: explanations of the same inputs, e.g. from ``ex.explain_many``.
        max_samples: samples (rows) shown at most.

    Returns:
        A :class:`Comparison`: displayed as HTML in a notebook, drawn with ``.plot()``.

    Raises:
        InputError: no explanations, or something that is not an Explanation.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> view = ex.compare(ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False))
        >>> "<table" in view._repr_html_()
        True
    """
    return Comparison(explanations, max_samples=max_samples)
