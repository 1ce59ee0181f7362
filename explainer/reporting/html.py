"""Self-contained HTML: jinja2 with autoescape, images inlined, no network, atomic write."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from .._files import atomic_write_bytes
from ..dataset.evaluation import stored_scores
from ..dataset.store import Store
from ..dataset.store_findings import stored_findings
from ..errors import InputError, describe
from ..explanation import Explanation
from ..metrics.findings import Findings
from ..metrics.scores import Scores
from ..multi_input import MultiInputExplanation, load_explanation
from ..viz.sections import build_sections, check_class_names, check_options, short
from .store_summary import dataset_summary
from .trust import trust_blocks

__all__ = [
    "report",
    "render_report",
    "report_script",
]


# The page's own templates, then the panels and style it shares with notebook views (viz).
_ENV = jinja2.Environment(
    loader=jinja2.ChoiceLoader(
        [
            jinja2.PackageLoader("explainer.reporting", "templates"),
            jinja2.PackageLoader("explainer.viz", "templates"),
        ]
    ),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def _evidence_json(verdict: Any) -> str:
    """A verdict's evidence as JSON (NaN as null) for its ``data-evidence`` attribute: the
    numbers the sentence rests on, machine-readable, so readers and tests can check that
    the shown state follows them."""
    rows = [
        {
            "metric": e.metric,
            "statistic": e.statistic,
            "estimate": e.estimate,
            "low": e.low,
            "high": e.high,
            "n": e.n,
            "threshold": e.threshold,
            "higher": e.higher,
            "state": e.state,
        }
        for e in getattr(verdict, "evidence", ())
    ]
    return json.dumps(
        [
            {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in r.items()
            }
            for r in rows
        ]
    )


_ENV.filters["evidence_json"] = _evidence_json


@functools.cache
def report_script() -> tuple[markupsafe.Markup, markupsafe.Markup]:
    """The report's one inline script and its CSP source, ``'sha256-<base64>'``.

    The page's Content-Security-Policy allows exactly this script (no ``'unsafe-inline'``),
    so markup that slipped past escaping still could not run code. Browsers hash the
    script text as parsed, with newlines normalized to LF: the text is normalized the same
    way before it is hashed and inlined.

    Example:
        >>> script, source = report_script()
        >>> source.startswith("'sha256-"), len(script) > 0
        (True, True)
    """
    source = _ENV.loader.get_source(_ENV, "report.js")[0]  # type: ignore[union-attr]
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(text), markupsafe.Markup(f"'sha256-{digest}'")


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


def _as_findings(findings: Any) -> list[tuple[str | None, markupsafe.Markup]] | None:
    """``(title, escaped fragment)`` per Findings given to :func:`report`, or None."""
    if findings is None:
        return None
    if isinstance(findings, Findings):
        pairs = [(None, findings)]
    elif isinstance(findings, Mapping):
        pairs = [(str(k), v) for k, v in findings.items()]
    elif isinstance(findings, Sequence) and not isinstance(findings, str | bytes):
        pairs = [(None, v) for v in findings]
    else:
        pairs = [(None, findings)]
    bad = [type(v).__name__ for _, v in pairs if not isinstance(v, Findings)]
    if bad or not pairs:
        raise InputError(
            describe(
                "`findings`",
                "the result of ex.findings(...), a list of them, or {title: result}",
                f"{bad or 'an empty collection'}",
                "Pass findings=ex.findings(explanations, model, holdout=(inputs, labels)).",
            )
        )
    # the fragment escapes every string itself (Findings._repr_html_, the notebook view)
    return [(title, markupsafe.Markup(f._repr_html_())) for title, f in pairs]


def _as_explanations(items: Any) -> list[Explanation]:
    if isinstance(items, Mapping):  # {method: Explanation}, as store[...] returns
        items = list(items.values())
    if isinstance(items, Explanation | MultiInputExplanation | str | os.PathLike):
        items = [items]
    elif isinstance(items, Sequence | Iterator):
        items = list(items)
    else:  # None, a number, a tensor...: nothing to load
        items = [items]
    loaded = [load_explanation(e) if isinstance(e, str | os.PathLike) else e for e in items]
    # several inputs: each input is drawn in its own form, in its own section
    out = [
        part
        for e in loaded
        for part in (e.parts() if isinstance(e, MultiInputExplanation) else (e,))
    ]
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
        check_class_names(e)
    return out


def _check_path(path: Any) -> Path:
    """The output file: a path that is not a folder, below folders (not files)."""
    if not isinstance(path, str | os.PathLike):
        raise InputError(
            describe(
                "`path`",
                "a file path (str or Path)",
                short(path),
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


def _trust(scores: Any) -> list | None:
    """Trust blocks from ``ex.evaluate`` scores (several Scores objects may be given)."""
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


def render_report(
    explanations: Any,
    title: str = "explainer report",
    scores: Any = None,
    max_samples: int = 64,
    section_titles: Sequence[str] | None = None,
    labels: Any = None,
    scale: str = "sample",
    findings: Any = None,
) -> str:
    """The full report page as a string; the arguments are those of :func:`report`.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
        >>> page = render_report(exp, title="<b>escaped</b>", max_samples=2)
        >>> page.startswith("<!DOCTYPE html>"), "&lt;b&gt;escaped&lt;/b&gt;" in page
        (True, True)
    """
    section_titles = check_options(max_samples, section_titles)
    found = _as_findings(findings)
    summary = None
    if isinstance(explanations, Store):
        if scores is None:  # what ex.evaluate(store) saved, if it ran
            scores = stored_scores(explanations)
        if found is None:  # what ex.findings(store) saved, if it ran
            saved = stored_findings(explanations)
            found = None if saved is None else _as_findings(saved)
        explanations, labels, summary = _from_store(explanations, max_samples, labels)
    exps = _as_explanations(explanations)
    sections = build_sections(exps, max_samples, section_titles, labels, scale)
    trust = _trust(scores)
    script, script_hash = report_script()
    return _ENV.get_template("report.html.j2").render(
        script=script,
        script_hash=script_hash,
        title=str(title),
        dataset=summary,
        sections=sections,
        trust=trust,
        findings=found,
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
    findings: Any = None,
) -> Path:
    """Write ONE self-contained HTML file (images and scripts inline, no network) atomically.

    Args:
        explanations: an Explanation, a list of them (several methods on the same inputs are
            shown side by side), paths of saved explanations, or a result store
            (``ex.open_store``): then a class-balanced sample of ``max_samples`` is shown,
            after a dataset section (class counts and accuracy, the mean attribution map per
            class, per-class trust scores when ``ex.evaluate(store)`` computed them). A
            MultiInputExplanation shows each of its inputs in a section of its own (a
            heatmap for an image, bars for a vector).
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
        findings: what the model relies on, from :func:`~explainer.metrics.findings.findings`:
            one :class:`~explainer.metrics.findings.Findings`, or a list of them (one per
            model or data set), or ``{title: Findings}``; shown first, under "What the model
            relies on". With a store, None shows what ``ex.findings(store)`` saved in it, if
            it ran. Without them that section says they were not computed and how to.

    Returns:
        The path written.

    Raises:
        InputError: bad arguments (no explanations, ``max_samples`` < 1, a folder as
            ``path``, class names that are not one string per class, labels out of range,
            ...); they are checked before anything is rendered or written.
        StoreError: a saved explanation that cannot be read.

    Example:
        >>> import tempfile, torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", name="Linear")
        >>> exp = ex.explain(m, torch.randn(4, 3), "saliency", progress=False)
        >>> path = ex.report(exp, f"{tempfile.mkdtemp()}/report.html", title="A linear model")
        >>> path.name, "A linear model" in path.read_text(encoding="utf-8")
        ('report.html', True)
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
        findings=findings,
    )
    return atomic_write_bytes(out, html.encode("utf-8"))
