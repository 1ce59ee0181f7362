"""Self-contained HTML: jinja2 with autoescape, images inlined, no network, atomic write."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import torch

from ..dataset.store import Store
from ..errors import InputError, describe
from ..explanation import Explanation, atomic_write_bytes, load_explanation
from ..viz.heatmap import png_data_uri, spec_for
from ..viz.panels import MethodLegend, SampleRow, image_rows, tabular_rows
from .store_summary import dataset_summary

__all__ = [
    "report",
    "render_report",
    "render_fragment",
    "group_by_inputs",
    "report_script",
    "SCALES",
]

SCALES = ("sample", "shared")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("explainer.reporting", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


@functools.cache
def report_script() -> tuple[markupsafe.Markup, markupsafe.Markup]:
    """The report's one inline script and its CSP source, ``'sha256-<base64>'``.

    The page's Content-Security-Policy allows exactly this script (no ``'unsafe-inline'``),
    so markup that slipped past escaping still could not run code. Browsers hash the
    script text as parsed, with newlines normalized to LF: the text is normalized the same
    way before it is hashed and inlined.
    """
    source = _ENV.loader.get_source(_ENV, "report.js")[0]  # type: ignore[union-attr]
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(text), markupsafe.Markup(f"'sha256-{digest}'")


@dataclass(frozen=True)
class Section:
    """Explanations of the same inputs, shown together."""

    title: str
    modality: str
    explanations: tuple[Explanation, ...]
    rows: tuple[SampleRow, ...]
    legends: tuple[MethodLegend, ...] = ()
    figures: tuple[tuple[str, str], ...] = ()  # (caption, data URI)
    classes: tuple[str, ...] = field(default=())

    @property
    def methods(self) -> list[dict[str, Any]]:
        out = []
        for e in self.explanations:
            drawing = (
                spec_for(e.method, e.params).describe() if e.modality == "image" else "bars, signed"
            )
            out.append(
                {
                    "name": e.method,
                    "params": e.params,
                    "duration_s": e.manifest.get("duration_s"),
                    "drawing": drawing,
                }
            )
        return out

    @property
    def model(self) -> dict[str, Any]:
        return self.explanations[0].manifest.get("model", {})

    @property
    def has_labels(self) -> bool:
        return any(r.correct is not None for r in self.rows)


def group_by_inputs(explanations: Sequence[Explanation]) -> list[list[Explanation]]:
    """Group explanations whose inputs are identical (same samples, several methods)."""
    groups: list[list[Explanation]] = []
    for exp in explanations:
        for group in groups:
            ref = group[0].inputs
            if ref.shape == exp.inputs.shape and torch.equal(ref, exp.inputs):
                group.append(exp)
                break
        else:
            groups.append([exp])
    return groups


def _from_store(store: Store, max_samples: int, labels: Any):
    """A report of a store: a class-balanced sample of it plus the dataset section."""
    rows = store.sample(max_samples)
    if rows.size == 0:
        raise InputError(
            describe(
                "store",
                "at least one finished sample",
                f"none of {store.n} done",
                "Run (or resume) ex.explain_dataset(...) first.",
            )
        )
    stored = store.labels[rows]
    if labels is None and (stored >= 0).all():
        labels = stored.tolist()
    return list(store[rows].values()), labels, dataset_summary(store, shown=int(rows.size))


def _as_explanations(items: Any) -> list[Explanation]:
    if isinstance(items, Mapping):  # {method: Explanation}, as store[...] returns
        items = list(items.values())
    if isinstance(items, Explanation | str | os.PathLike):
        items = [items]
    elif isinstance(items, Sequence | Iterator):
        items = list(items)
    else:  # None, a number, a tensor...: nothing to load
        items = [items]
    out = [load_explanation(e) if isinstance(e, str | os.PathLike) else e for e in items]
    if not out or not all(isinstance(e, Explanation) for e in out):
        raise InputError(
            describe(
                "`explanations`",
                "one or more Explanation objects, saved .npz paths, or a result store",
                f"{[type(e).__name__ for e in out] or 'nothing'}",
                "Pass the result of ex.explain(...) or ex.open_store(...).",
            )
        )
    for e in out:
        _check_class_names(e)
    return out


def _check_class_names(exp: Explanation) -> None:
    """The report indexes class names by class number: one string per score column."""
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
                f"{got}: {_short(names)}",
                "Pass class_names as a list in class order, e.g. class_names=['cat', 'dog'] "
                "(a dict {index: name} is not accepted).",
            )
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_options(max_samples: Any, section_titles: Any) -> tuple[str, ...] | None:
    """Validate the report's options before any work (and before anything is written)."""
    is_int = isinstance(max_samples, int | np.integer) and not isinstance(max_samples, bool)
    if not is_int or max_samples < 1:
        raise InputError(
            describe(
                "`max_samples`",
                "an int >= 1 (the most samples shown per group)",
                _short(max_samples),
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
                _short(section_titles),
                'Pass e.g. section_titles=["CNN", "tabular"].',
            )
        )
    return tuple(section_titles)


def _check_path(path: Any) -> Path:
    """The output file: a path that is not a folder, below folders (not files)."""
    if not isinstance(path, str | os.PathLike):
        raise InputError(
            describe(
                "`path`",
                "a file path (str or Path)",
                _short(path),
                'Pass e.g. path="reports/report.html".',
            )
        )
    out = Path(path)
    if out.is_dir():
        raise InputError(
            describe(
                "`path`",
                "the path of the HTML file to write",
                f"the existing folder {str(out)!r}",
                f"Pass a file name inside it, e.g. path={str(out / 'report.html')!r}.",
            )
        )
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InputError(
            describe(
                "`path`",
                "a file whose parent folders are folders (created when missing)",
                f"{str(out)!r}, below the file {str(blocking)!r}",
                "Choose another location.",
            )
        )
    return out


def _labels_for(labels: Any, k: int, n: int, classes: int) -> list[int] | None:
    """Labels of group ``k``: one sequence for all groups, or one per group."""
    if labels is None:
        return None
    if isinstance(labels, Mapping | str) or not isinstance(
        labels, Sequence | torch.Tensor | np.ndarray
    ):
        raise InputError(
            describe(
                "`labels`",
                "a sequence of class numbers (or one sequence per group)",
                _short(labels),
                "Pass e.g. labels=[0, 2, 1] (a dict is not accepted: list labels in sample order).",
            )
        )
    seq = list(labels)
    if seq and _is_sequence(seq[0]):
        seq = list(seq[k]) if k < len(seq) and seq[k] is not None else None
        if seq is None:
            return None
    if any(_is_sequence(v) for v in seq):
        raise InputError(
            describe(
                "`labels`",
                "one class number per sample (or one sequence per group)",
                _short(labels),
                "Pass flat lists of ints.",
            )
        )
    try:
        values = [int(v) for v in seq]
    except (TypeError, ValueError) as err:
        raise InputError(
            describe(
                "`labels`",
                "class numbers (ints), not class names",
                _short(seq),
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


def _tabular_figures(exp: Explanation) -> tuple[tuple[str, str], ...]:
    from ..viz.figures import figure_png, plot_beeswarm, plot_global_importance, plot_waterfall

    figs = [
        ("Global importance (mean |attribution|)", plot_global_importance(exp)),
        ("Summary: each dot one sample (colour = feature value)", plot_beeswarm(exp)),
        ("Waterfall of sample 0", plot_waterfall(exp, 0)),
    ]
    return tuple((caption, png_data_uri(figure_png(fig))) for caption, fig in figs)


def _sections(
    explanations: list[Explanation],
    max_samples: int,
    section_titles: Sequence[str] | None,
    labels: Any = None,
    scale: str = "sample",
    figures: bool = True,
) -> list[Section]:
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
        default = f"{first.manifest.get('model', {}).get('name', 'model')} ({modality})"
        title = section_titles[k] if section_titles and k < len(section_titles) else default
        classes = tuple(
            first.class_names or sorted({first.class_label(int(p)) for p in first.predictions})
        )
        if modality == "image":
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


def _trust(scores: Any) -> list | None:
    """Trust blocks from ``ex.evaluate`` scores (several Scores objects may be given)."""
    from ..metrics.scores import Scores
    from .trust import trust_blocks

    if scores is None:
        return None
    several = isinstance(scores, list | tuple) and not isinstance(scores, Scores)
    items = list(scores) if several else [scores]
    if not items or not all(isinstance(s, Scores) for s in items):
        raise InputError(
            describe(
                "`scores`",
                "the result of ex.evaluate(...) (or a list of them)",
                f"{type(scores).__name__}",
                "Pass scores=ex.evaluate(explanations, model).",
            )
        )
    return [block for s in items for block in trust_blocks(s)]


def _first_settings(scores: Any) -> dict:
    if scores is None:
        return {}
    first = scores if hasattr(scores, "settings") else next(iter(scores), None)
    return dict(getattr(first, "settings", {}))


def render_fragment(explanations: list[Explanation], max_samples: int = 8) -> str:
    """HTML fragment (no <html>) for notebooks."""
    _check_options(max_samples, None)
    for e in explanations:
        _check_class_names(e)
    return _ENV.get_template("fragment.html.j2").render(
        sections=_sections(explanations, max_samples, None, figures=False)
    )


def render_report(
    explanations: Any,
    title: str = "explainer report",
    scores: Any = None,
    max_samples: int = 64,
    section_titles: Sequence[str] | None = None,
    labels: Any = None,
    scale: str = "sample",
) -> str:
    """The full report page as a string (see :func:`report`)."""
    section_titles = _check_options(max_samples, section_titles)
    summary = None
    if isinstance(explanations, Store):
        if scores is None:  # what ex.evaluate(store) saved, if it ran
            from ..dataset.evaluation import stored_scores

            scores = stored_scores(explanations)
        explanations, labels, summary = _from_store(explanations, max_samples, labels)
    exps = _as_explanations(explanations)
    sections = _sections(exps, max_samples, section_titles, labels, scale)
    trust = _trust(scores)
    script, script_hash = report_script()
    return _ENV.get_template("report.html.j2").render(
        script=script,
        script_hash=script_hash,
        title=str(title),
        dataset=summary,
        sections=sections,
        trust=trust,
        trust_settings=_first_settings(scores),
        versions=exps[0].manifest.get("versions", {}),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        manifests=[(e.method, e.manifest) for e in exps],
    )


def report(
    explanations: Any,
    path: str | os.PathLike = "reports/report.html",
    title: str = "explainer report",
    scores: Any = None,
    max_samples: int = 64,
    section_titles: Sequence[str] | None = None,
    labels: Any = None,
    scale: str = "sample",
) -> Path:
    """Write ONE self-contained HTML file (images and scripts inline, no network) atomically.

    Args:
        explanations: an Explanation, a list of them (several methods on the same inputs are
            shown side by side), paths of saved explanations, or a result store
            (``ex.open_store``): then a class-balanced sample of ``max_samples`` is shown,
            after a dataset section (class counts and accuracy, the mean attribution map per
            class, per-class trust scores when ``ex.evaluate(store)`` computed them).
        path: where to write; parent folders are created.
        title: page title (escaped like every user string).
        scores: trust scores from ``ex.evaluate``; without them the trust section says none
            were computed (it never shows placeholders).
        max_samples: at most this many samples per group.
        section_titles: optional titles for the groups of explanations, in order.
        labels: true classes, to mark and filter misclassified samples: one sequence (all
            groups) or one sequence per group.
        scale: "sample" (each map scaled to its own 99th percentile) or "shared" (one scale
            per sample across methods, so magnitudes compare).

    Returns:
        The path written.

    Raises:
        InputError: bad arguments (no explanations, ``max_samples`` < 1, a folder as
            ``path``, class names that are not one string per class, labels out of range,
            ...); they are checked before anything is rendered or written.
        StoreError: a saved explanation that cannot be read.
    """
    out = _check_path(path)
    html = render_report(
        explanations,
        title=title,
        scores=scores,
        max_samples=max_samples,
        section_titles=section_titles,
        labels=labels,
        scale=scale,
    )
    return atomic_write_bytes(out, html.encode("utf-8"))
