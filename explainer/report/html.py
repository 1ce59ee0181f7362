"""Self-contained HTML: jinja2 with autoescape, images inlined, no network, atomic write."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import torch

from ..errors import InputError, describe
from ..explanation import Explanation, atomic_write_bytes, load_explanation
from .panels import SampleRow, image_rows, tabular_rows

__all__ = ["report", "render_report", "render_fragment", "group_by_inputs"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("explainer.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Section:
    """Explanations of the same inputs, shown together."""

    title: str
    modality: str
    explanations: tuple[Explanation, ...]
    rows: tuple[SampleRow, ...]

    @property
    def methods(self) -> list[dict[str, Any]]:
        return [{"name": e.method, "params": e.params, "duration_s": e.manifest.get("duration_s")} for e in self.explanations]

    @property
    def model(self) -> dict[str, Any]:
        return self.explanations[0].manifest.get("model", {})


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


def _as_explanations(items: Any) -> list[Explanation]:
    items = [items] if isinstance(items, Explanation | str | os.PathLike) else list(items)
    out = [load_explanation(e) if isinstance(e, str | os.PathLike) else e for e in items]
    if not out or not all(isinstance(e, Explanation) for e in out):
        raise InputError(describe("`explanations`", "one or more Explanation objects or saved .npz paths",
                                  f"{[type(e).__name__ for e in out] or 'nothing'}", "Pass the result of ex.explain(...)."))
    return out


def _sections(explanations: list[Explanation], max_samples: int, section_titles: Sequence[str] | None) -> list[Section]:
    sections = []
    for k, group in enumerate(group_by_inputs(explanations)):
        modality = group[0].modality
        if modality == "image":
            rows = image_rows(group, max_samples=max_samples)
        else:
            rows = [r for e in group[:1] for r in tabular_rows(e, max_samples=max_samples)]
        title = section_titles[k] if section_titles and k < len(section_titles) else f"{group[0].manifest.get('model', {}).get('name', 'model')} ({modality})"
        sections.append(Section(title, modality, tuple(group), tuple(rows)))
    return sections


def render_fragment(explanations: list[Explanation], max_samples: int = 8) -> str:
    """HTML fragment (no <html>) for notebooks."""
    return _ENV.get_template("fragment.html.j2").render(sections=_sections(explanations, max_samples, None))


def render_report(explanations: Any, title: str = "explainer report", scores: Any = None, max_samples: int = 64,
                  section_titles: Sequence[str] | None = None) -> str:
    """The full report page as a string (see :func:`report`)."""
    exps = _as_explanations(explanations)
    first = exps[0].manifest
    return _ENV.get_template("report.html.j2").render(
        title=str(title), sections=_sections(exps, max_samples, section_titles), scores=scores,
        versions=first.get("versions", {}), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        manifests=[(e.method, e.manifest) for e in exps],
    )


def report(explanations: Any, path: str | os.PathLike = "reports/report.html", title: str = "explainer report",
           scores: Any = None, max_samples: int = 64, section_titles: Sequence[str] | None = None) -> Path:
    """Write ONE self-contained HTML file (images inline, no network) atomically.

    Args:
        explanations: an Explanation, a list of them (several methods on the same inputs are
            shown side by side), or paths of saved explanations.
        path: where to write; parent folders are created.
        title: page title (escaped like every user string).
        scores: trust scores from ``ex.evaluate`` (shown when given; omitted otherwise).
        max_samples: at most this many samples per section.
        section_titles: optional titles for the groups of explanations, in order.

    Returns:
        The path written.
    """
    html = render_report(explanations, title=title, scores=scores, max_samples=max_samples, section_titles=section_titles)
    return atomic_write_bytes(Path(path), html.encode("utf-8"))
