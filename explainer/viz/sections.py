"""Sections of a view: explanations of the same inputs grouped, checked and laid out as
panel rows, and the notebook fragment rendered from them (the report page reuses both).

Explanations are read through :class:`~explainer.viz.shown.Shown` (the attributes drawing
needs), so this layer knows nothing about models or how explanations were computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import torch

from ..errors import InputError, describe
from .figures import figure_png, plot_beeswarm, plot_global_importance, plot_waterfall
from .heatmap import png_data_uri, spec_for
from .panels import MethodLegend, SampleRow, image_rows, tabular_rows, text_rows
from .shown import Shown

__all__ = [
    "SCALES",
    "Section",
    "TEMPLATES",
    "check_class_names",
    "check_options",
    "short",
    "group_by_inputs",
    "build_sections",
    "render_fragment",
]

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("explainer.viz", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def group_by_inputs(explanations: Sequence[Shown]) -> list[list[Shown]]:
    """Group explanations whose inputs are identical (same samples, several methods).

    Groups keep the order in which their first explanation came, and so do their members.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> a, b = ex.explain_many(m, torch.ones(2, 3), ["saliency", "gradient_x_input"], progress=False)
        >>> c = ex.explain(m, torch.zeros(2, 3), "saliency", progress=False)
        >>> [[e.method for e in group] for group in group_by_inputs([a, c, b])]
        [['saliency', 'gradient_x_input'], ['saliency']]
    """
    groups: list[list[Shown]] = []
    for exp in explanations:
        for group in groups:
            ref = group[0].inputs
            if (
                ref.shape == exp.inputs.shape
                and _input_name(group[0]) == _input_name(exp)
                and torch.equal(ref, exp.inputs)
            ):
                group.append(exp)
                break
        else:
            groups.append([exp])
    return groups


def _drawing(exp: Shown) -> str:
    """How an explanation's maps are drawn, in words, for the methods table."""
    if exp.modality == "image":
        return spec_for(exp.method, exp.params).describe()
    if exp.modality == "text":
        reduction = exp.manifest.get("text", {}).get("reduction", "")
        return f"token backgrounds, red for and blue against the class; {reduction}"
    return "bars, signed"


def _input_name(exp: Shown) -> str | None:
    """The input an explanation shows when it is one of several (``manifest["input"]``)."""
    about = exp.manifest.get("input")
    return about.get("name") if isinstance(about, dict) else None


SCALES = ("sample", "shared")


@dataclass(frozen=True)
class Section:
    """Explanations of the same inputs, shown together: their rows, legends and figures.

    Made by :func:`build_sections`; templates read its fields and properties.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> [section] = build_sections([exp], max_samples=2, section_titles=None, figures=False)
        >>> section.title, section.modality, len(section.rows), section.methods[0]["name"]
        ('Linear (tabular)', 'tabular', 2, 'saliency')
    """

    title: str
    modality: str
    explanations: tuple[Shown, ...]
    rows: tuple[SampleRow, ...]
    legends: tuple[MethodLegend, ...] = ()
    figures: tuple[tuple[str, str], ...] = ()  # (caption, data URI)
    classes: tuple[str, ...] = field(default=())

    @property
    def methods(self) -> list[dict[str, Any]]:
        out = []
        for e in self.explanations:
            drawing = _drawing(e)
            out.append(
                {
                    "name": e.method,
                    "params": e.params,
                    "duration_s": e.manifest.get("duration_s"),
                    "drawing": drawing,
                    "warnings": list(e.warnings),
                }
            )
        return out

    @property
    def warnings(self) -> list[str]:
        """Every explanation's warnings, in method order (shown next to the maps)."""
        return [w for e in self.explanations for w in e.warnings]

    @property
    def model(self) -> dict[str, Any]:
        return self.explanations[0].manifest.get("model", {})

    @property
    def has_labels(self) -> bool:
        return any(r.correct is not None for r in self.rows)


def check_class_names(exp: Shown) -> None:
    """The report indexes class names by class number: one string per score column.

    Raises:
        InputError: ``class_names`` is neither None nor one string per class.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> check_class_names(exp)  # no class names: nothing to check
        >>> import dataclasses
        >>> check_class_names(dataclasses.replace(exp, class_names=("only one",)))
        Traceback (most recent call last):
        ...
        explainer.errors.InputError: `class_names` of the 'saliency' explanation: expected None or a list of 2 strings, ...
    """
    names, classes = exp.class_names, exp.scores.shape[-1]
    if names is None:
        return
    ok = (
        isinstance(names, Sequence)
        and not isinstance(names, str)
        and all(isinstance(c, str) for c in names)
        and len(names) == classes
    )
    if not ok:
        got = (
            f"{len(names)} names"
            if isinstance(names, Sequence) and not isinstance(names, str)
            else f"a {type(names).__name__}"
        )
        raise InputError(
            describe(
                f"`class_names` of the {exp.method!r} explanation",
                f"None or a list of {classes} strings, one per class (score column) in order",
                f"{got}: {short(names)}",
                "Pass class_names as a list in class order, e.g. class_names=['cat', 'dog'] "
                "(a dict {index: name} is not accepted).",
            )
        )


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for the "got" part of a message.

    Example:
        >>> short("x" * 100, limit=10)
        "'xxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_options(max_samples: Any, section_titles: Any) -> tuple[str, ...] | None:
    """Validate the report's options before any work (and before anything is written).

    Returns:
        ``section_titles`` as a tuple, or None.

    Raises:
        InputError: ``max_samples`` is not an int >= 1, or ``section_titles`` is not a
            list of strings.

    Example:
        >>> check_options(8, ["CNN", "tabular"])
        ('CNN', 'tabular')
        >>> check_options(0, None)
        Traceback (most recent call last):
        ...
        explainer.errors.InputError: `max_samples`: expected an int >= 1 (the most samples shown per group), got 0. Pass e.g. max_samples=64.
    """
    is_int = isinstance(max_samples, int | np.integer) and not isinstance(max_samples, bool)
    if not is_int or max_samples < 1:
        raise InputError(
            describe(
                "`max_samples`",
                "an int >= 1 (the most samples shown per group)",
                short(max_samples),
                "Pass e.g. max_samples=64.",
            )
        )
    if section_titles is None:
        return None
    if (
        isinstance(section_titles, str)
        or not isinstance(section_titles, Sequence)
        or not all(isinstance(t, str) for t in section_titles)
    ):
        raise InputError(
            describe(
                "`section_titles`",
                "None or a list of strings, one title per group of explanations",
                short(section_titles),
                'Pass e.g. section_titles=["CNN", "tabular"].',
            )
        )
    return tuple(section_titles)


def _labels_for(labels: Any, k: int, n: int, classes: int) -> list[int] | None:
    """Labels of group ``k``: one sequence for all groups, or one per group."""
    if labels is None:
        return None
    seq = _group_labels(labels, k)
    return None if seq is None else _check_label_values(seq, n, classes)


def _group_labels(labels: Any, k: int) -> list | None:
    """Group ``k``'s entries of ``labels``: the flat sequence itself, or its ``k``-th one."""
    if isinstance(labels, Mapping | str) or not isinstance(
        labels, Sequence | torch.Tensor | np.ndarray
    ):
        raise InputError(
            describe(
                "`labels`",
                "a sequence of class numbers (or one sequence per group)",
                short(labels),
                "Pass e.g. labels=[0, 2, 1] (a dict is not accepted: list labels in sample order).",
            )
        )
    seq = list(labels)
    if seq and _is_sequence(seq[0]):
        if k >= len(seq) or seq[k] is None:
            return None
        seq = list(seq[k])
    if any(_is_sequence(v) for v in seq):
        raise InputError(
            describe(
                "`labels`",
                "one class number per sample (or one sequence per group)",
                short(labels),
                "Pass flat lists of ints.",
            )
        )
    return seq


def _check_label_values(seq: list, n: int, classes: int) -> list[int]:
    """``seq`` as ints: class numbers in [0, classes), at least ``n`` of them."""
    try:
        values = [int(v) for v in seq]
    except (TypeError, ValueError) as err:
        raise InputError(
            describe(
                "`labels`",
                "class numbers (ints), not class names",
                short(seq),
                "Pass the index of each true class, e.g. labels=[0, 2, 1].",
            )
        ) from err
    out_of_range = [v for v in values if not 0 <= v < classes]
    if out_of_range:
        raise InputError(
            describe(
                "`labels`",
                f"class numbers in [0, {classes - 1}] (the model has {classes} classes)",
                f"{out_of_range[:5]}",
                "Pass the index of each sample's true class.",
            )
        )
    if len(values) < n:
        raise InputError(
            describe(
                "`labels`",
                f"at least {n} true classes for this group of samples",
                f"{len(values)}",
                "Pass one label per explained sample (or one list per group).",
            )
        )
    return values


def _is_sequence(value: Any) -> bool:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.ndim > 0
    return isinstance(value, Sequence) and not isinstance(value, str)


def _tabular_figures(exp: Shown) -> tuple[tuple[str, str], ...]:
    figs = [
        ("Global importance (mean |attribution|)", plot_global_importance(exp)),
        ("Summary: each dot one sample (colour = feature value)", plot_beeswarm(exp)),
        ("Waterfall of sample 0", plot_waterfall(exp, 0)),
    ]
    return tuple((caption, png_data_uri(figure_png(fig))) for caption, fig in figs)


def build_sections(
    explanations: list[Shown],
    max_samples: int,
    section_titles: Sequence[str] | None,
    labels: Any = None,
    scale: str = "sample",
    figures: bool = True,
) -> list[Section]:
    """One :class:`Section` per group of explanations of the same inputs.

    Args:
        explanations: checked explanations (see :func:`check_class_names`).
        max_samples: rows per section at most.
        section_titles: titles in group order (default: model name and modality).
        labels: true classes: one sequence for all groups, or one per group.
        scale: "sample" or "shared" (see :func:`~explainer.viz.panels.image_rows`).
        figures: render the tabular summary figures (importance, beeswarm, waterfall).

    Raises:
        InputError: an unknown ``scale``, or labels that are not class numbers in range,
            one per shown sample.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> [section] = build_sections([exp], 8, ["linear"], labels=[0, 1], figures=False)
        >>> section.title, [row.correct is not None for row in section.rows]
        ('linear', [True, True])
    """
    if scale not in SCALES:
        raise InputError(
            describe(
                "`scale`",
                f"one of {list(SCALES)}",
                repr(scale),
                'Use scale="shared" to compare magnitudes.',
            )
        )
    sections = []
    for k, group in enumerate(group_by_inputs(explanations)):
        first = group[0]
        modality = first.modality
        n = min(len(first), max_samples)
        lab = _labels_for(labels, k, n, classes=first.scores.shape[-1])
        name = _input_name(first)
        which = f" — {name}" if name is not None else ""
        default = f"{first.manifest.get('model', {}).get('name', 'model')}{which} ({modality})"
        title = section_titles[k] if section_titles and k < len(section_titles) else default
        classes = tuple(
            first.class_names or sorted({first.class_label(int(p)) for p in first.predictions})
        )
        if modality == "text":
            rows = text_rows(group, labels=lab, max_samples=max_samples, scale=scale)
            sections.append(Section(title, modality, tuple(group), tuple(rows), classes=classes))
        elif modality == "image":
            rows, legends = image_rows(group, labels=lab, max_samples=max_samples, scale=scale)
            sections.append(
                Section(title, modality, tuple(group), tuple(rows), tuple(legends), classes=classes)
            )
        else:
            rows = tabular_rows(first, labels=lab, max_samples=max_samples, others=group[1:])
            figs = tuple(fig for e in group for fig in _tabular_figures(e)) if figures else ()
            sections.append(
                Section(title, modality, tuple(group), tuple(rows), figures=figs, classes=classes)
            )
    return sections


def render_fragment(explanations: list[Shown], max_samples: int = 8) -> str:
    """HTML fragment (no <html>) for notebooks: what ``_repr_html_`` returns.

    Raises:
        InputError: ``max_samples`` < 1 or class names that are not one string per class.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        >>> html = render_fragment([exp], max_samples=2)
        >>> "saliency" in html, "<html" in html
        (True, False)
    """
    check_options(max_samples, None)
    for e in explanations:
        check_class_names(e)
    return TEMPLATES.get_template("fragment.html.j2").render(
        sections=build_sections(explanations, max_samples, None, figures=False)
    )
