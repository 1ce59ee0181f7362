"""What :func:`explainer.metrics.findings.findings` returns: :class:`Finding`, :class:`Findings`
and its notebook view."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np

from ...viz.heatmap import encode_png, png_data_uri


@dataclass(frozen=True)
class Finding:
    """One measured reliance: a piece of the input a class's evidence sits on, and what
    taking it away (or putting it in) does to the model's probability of that class.

    Attributes:
        class_index: the class.
        class_name: its name (its number as text when the model has none).
        kind: "region" (images), "feature" (tabular) or "token" (text).
        where: a region's box ``(top, left, height, width)`` in pixels; a feature's
            ``(index, name)``; the token's text.
        share: median share of the sample's evidence (|attribution|) on it, over the
            class's samples (text: those that contain the token).
        support: ``(k, n)``: in k of n samples it is dominant and its content constant.
        effect: mean drop of p(class) when it is replaced by the class-independent fill
            (text: removed), on held-out samples of the class (text: those that contain
            the token); NaN when there are none.
        ci: the 90% bootstrap confidence interval of ``effect`` (NaN under 2 samples).
        n_holdout: held-out samples ``effect`` was measured on.
        effect_others: on held-out samples of the other classes, the mean rise of
            p(class) when the class's content is put in (images, tabular: pasted, against
            the fill; text: the other-class texts that contain the token, against it
            removed); NaN when there are none.
        ci_others: the 90% bootstrap confidence interval of ``effect_others``.
        n_others: held-out samples ``effect_others`` was measured on.
        sentence: the finding in plain English, claiming nothing beyond these numbers.
        record: how it was measured: fill, held-out set, methods, thresholds.
        preview: images only, the class-mean input with the box drawn, (H, W, 3) uint8.

    Example:
        >>> f = Finding(0, "circle", "region", (2, 2, 6, 6), 0.31, (11, 12), 0.04, (0.01, 0.08),
        ...             16, "...", effect_others=0.2, ci_others=(0.12, 0.29), n_others=48)
        >>> f.to_dict()["where"], f.strength
        ([2, 2, 6, 6], 0.2)
    """

    class_index: int
    class_name: str
    kind: str
    where: Any
    share: float
    support: tuple[int, int]
    effect: float
    ci: tuple[float, float]
    n_holdout: int
    sentence: str
    effect_others: float = math.nan
    ci_others: tuple[float, float] = (math.nan, math.nan)
    n_others: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def strength(self) -> float:
        """The larger of the two measured effects (NaN counts as none): findings rank by it."""
        values = [v for v in (self.effect, self.effect_others) if not math.isnan(v)]
        return max(values, default=-math.inf)

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready values (the preview left out; NaN where nothing
        was measured)."""
        where = list(self.where) if isinstance(self.where, tuple) else self.where
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "kind": self.kind,
            "where": where,
            "share": self.share,
            "support": list(self.support),
            "effect": self.effect,
            "ci": list(self.ci),
            "n_holdout": self.n_holdout,
            "effect_others": self.effect_others,
            "ci_others": list(self.ci_others),
            "n_others": self.n_others,
            "sentence": self.sentence,
            "record": dict(self.record),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], preview: np.ndarray | None = None) -> Finding:
        """The finding :meth:`to_dict` gave (None read back as NaN), with ``preview``.

        Example:
            >>> f = Finding(1, "yes", "feature", "age", 0.5, (9, 10), 0.2, (0.1, 0.3), 12, "s")
            >>> Finding.from_dict(f.to_dict()) == f
            True
        """

        def number(v: Any) -> float:
            return math.nan if v is None else float(v)

        where = data["where"]
        return cls(
            class_index=int(data["class_index"]),
            class_name=str(data["class_name"]),
            kind=str(data["kind"]),
            where=tuple(where) if isinstance(where, list) else where,
            share=number(data["share"]),
            support=(int(data["support"][0]), int(data["support"][1])),
            effect=number(data["effect"]),
            ci=(number(data["ci"][0]), number(data["ci"][1])),
            n_holdout=int(data["n_holdout"]),
            sentence=str(data["sentence"]),
            effect_others=number(data.get("effect_others")),
            ci_others=tuple(number(v) for v in data.get("ci_others", (None, None))),
            n_others=int(data.get("n_others", 0)),
            record=dict(data.get("record", {})),
            preview=preview,
        )


@dataclass(frozen=True)
class Findings:
    """What :func:`findings` found, ranked by effect, and what it checked.

    Attributes:
        items: the kept findings, largest effect first (:attr:`Finding.strength`).
        checked: what was checked, in words (classes, units, thresholds, held-out set):
            the answer when nothing is found.
        rejected: candidates that were measured and not kept (neither effect reached
            ``min_effect`` with its confidence interval above 0), for the record.

    Example:
        >>> empty = Findings([], "checked 2 classes")
        >>> len(empty), list(empty), "checked 2 classes" in empty._repr_html_()
        (0, [], True)
    """

    items: list[Finding]
    checked: str
    rejected: list[Finding] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.items)

    def __repr__(self) -> str:
        lines = [f"Findings({len(self.items)} found)"]
        lines += [f"  - {f.sentence}" for f in self.items] or [f"  {self.checked}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: the findings, the rejected candidates, what was checked."""
        return {
            "items": [f.to_dict() for f in self.items],
            "rejected": [f.to_dict() for f in self.rejected],
            "checked": self.checked,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], previews: Sequence[np.ndarray | None] | None = None
    ) -> Findings:
        """The findings :meth:`to_dict` gave; ``previews``, one per kept finding (or None).

        Example:
            >>> Findings.from_dict(Findings([], "checked 2 classes").to_dict())
            Findings(0 found)
              checked 2 classes
        """
        previews = list(previews) if previews is not None else [None] * len(data["items"])
        return cls(
            items=[Finding.from_dict(d, p) for d, p in zip(data["items"], previews, strict=True)],
            checked=str(data["checked"]),
            rejected=[Finding.from_dict(d) for d in data.get("rejected", [])],
        )

    def _repr_html_(self) -> str:
        rows = [
            {
                "sentence": f.sentence,
                "image": None if f.preview is None else png_data_uri(encode_png(f.preview, 2)),
                "class_name": f.class_name,
            }
            for f in self.items
        ]
        return _HTML.render(rows=rows, checked=self.checked)


_HTML = jinja2.Environment(
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
).from_string(
    """<div class="explainer-findings">
{% if rows %}<p><b>{{ rows|length }} finding(s)</b></p><ol>
{% for r in rows %}<li>{% if r.image %}<img src="{{ r.image }}" alt="class-mean input of \
{{ r.class_name }} with the region drawn" style="image-rendering: pixelated; \
vertical-align: middle; margin-right: 8px">{% endif %}{{ r.sentence }}</li>
{% endfor %}</ol>{% else %}<p><b>No finding.</b></p>{% endif %}
<p><small>{{ checked }}</small></p></div>"""
)
