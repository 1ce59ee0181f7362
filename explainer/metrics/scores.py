"""Scores: the tidy result of ``ex.evaluate`` (one row per sample x method x metric), the
curves behind them, and plain-language verdicts per check."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from .verdicts import Evidence, Verdict, combined_state, evidence, settle_sentence

__all__ = ["Scores", "Verdict", "METRIC_INFO", "THRESHOLDS"]

# metric -> (higher_is_better, category, one-line meaning)
METRIC_INFO: dict[str, tuple[bool | None, str, str]] = {
    "deletion_auc": (
        False,
        "faithfulness",
        "AUC of the target score (probability; the value for a regression) deleting most-relevant-first",
    ),
    "deletion_random_auc": (False, "faithfulness", "the same with a random order (reference)"),
    "deletion_gain": (True, "faithfulness", "random AUC minus MoRF AUC: > 0 beats random"),
    "deletion_lerf_auc": (
        True,
        "faithfulness",
        "AUC deleting least-relevant-first (should stay high)",
    ),
    "insertion_auc": (
        True,
        "faithfulness",
        "AUC of the target score (probability; the value for a regression) inserting most-relevant-first",
    ),
    "insertion_random_auc": (True, "faithfulness", "the same with a random order (reference)"),
    "insertion_gain": (True, "faithfulness", "MoRF AUC minus random AUC: > 0 beats random"),
    "infidelity": (False, "faithfulness", "E[(I.attr - (f(x) - f(x - I)))^2], Yeh et al. 2019"),
    "max_sensitivity": (
        False,
        "robustness",
        "max relative change of the map under small input noise",
    ),
    "randomization_spearman": (
        False,
        "sanity",
        "rank correlation with the fully randomized model's map (signed maps: signed ranks)",
    ),
    "randomization_ssim": (False, "sanity", "SSIM with the fully randomized model's map"),
    "relevance_mass": (True, "localization", "share of positive relevance inside the mask"),
    "mask_fraction": (
        None,
        "localization",
        "share of the image the mask covers (uniform-map baseline)",
    ),
    "pointing_game": (True, "localization", "1 if the most relevant pixel is inside the mask"),
    "road_morf": (
        False,
        "faithfulness",
        "mean target score removing most-relevant pixels first, imputed (ROAD, Rong et al. 2022)",
    ),
    "road_lerf": (
        True,
        "faithfulness",
        "mean target score removing least-relevant pixels first, imputed (should stay high)",
    ),
    "road_gain": (True, "faithfulness", "ROAD LeRF minus MoRF: > 0 when the map ranks pixels"),
    "completeness_gap": (
        False,
        "completeness",
        "|sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)| (explainer.completeness)",
    ),
    "agreement": (
        True,
        "agreement",
        "mean Spearman rank correlation of |attr| with the other methods",
    ),
}

# Pass thresholds, stated once. Randomization: Adebayo et al. report rank correlations near
# 0 for methods that pass; we fail a method whose map keeps rho >= 0.5 with a random model.
# Faithfulness: the mean gain over random ordering must exceed 0.01 (one point of
# probability-AUC) and two standard errors of the per-sample gains, for deletion and insertion;
# the same rule holds ROAD's gain (mean LeRF minus mean MoRF score).
THRESHOLDS = {
    "randomization_spearman": 0.5,
    "max_sensitivity": 0.5,
    "completeness_gap": 0.05,
    "gain": 0.01,
}


@dataclass
class Scores:
    """Trust scores of several explanations.

    Attributes:
        rows: tidy records ``{"sample", "method", "metric", "value", "mask"}``.
        curves: ``{method: {"deletion": (N, K), "insertion": ..., "deletion_random": ...,
            "insertion_random": ..., "deletion_lerf": ...}}`` as numpy arrays (fractions 0..1
            in K steps), and with ROAD ``"road_morf"``, ``"road_lerf"`` (N, one per fraction).
        randomization: ``{method: [{"layer", "spearman", "ssim"}, ...]}`` means per step.
        settings: how the scores were computed (fill, features, steps, seed, ...).

    Example:
        >>> s = Scores()
        >>> s.add("saliency", "completeness_gap", [0.01, 0.03])
        >>> len(s), s.mean("saliency", "completeness_gap"), s.summary()[0]["n"]
        (2, 0.02, 2)
        >>> v = s.verdicts()[0]
        >>> v.check, v.passed
        ('completeness', True)
        >>> s.to_csv().splitlines()[1]
        '0,saliency,completeness_gap,,0.01'
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    randomization: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add(
        self, method: str, metric: str, values: Any, mask: str | None = None, first: int = 0
    ) -> None:
        """Per-sample values of one metric; ``first``: the batch index of the first value
        (explanations scored one sample at a time add one value each)."""
        for i, v in enumerate(np.asarray(values, dtype=float).reshape(-1), start=first):
            self.rows.append(
                {"sample": i, "method": method, "metric": metric, "value": float(v), "mask": mask}
            )

    def add_curves(self, method: str, curves: dict[str, np.ndarray], first: int = 0) -> None:
        """A method's curves (N, K) by name, merged with the curves it already holds (the
        deletion/insertion group's and ROAD's); from ``first`` > 0 on, the rows of further
        samples, appended to the held curves of the same name.

        Example:
            >>> s = Scores()
            >>> s.add_curves("saliency", {"deletion": np.zeros((1, 3))})
            >>> s.add_curves("saliency", {"road_morf": np.ones((1, 2))})
            >>> s.add_curves("saliency", {"deletion": np.ones((1, 3))}, first=1)
            >>> {k: v.shape for k, v in s.curves["saliency"].items()}
            {'deletion': (2, 3), 'road_morf': (1, 2)}
        """
        held = self.curves.setdefault(method, {})
        for name, values in curves.items():
            if first == 0 or name not in held:
                held[name] = values
            else:
                held[name] = np.concatenate([held[name], values])

    def add_randomization(self, method: str, first: int, steps: list[dict[str, Any]]) -> None:
        """A method's per-step randomization means; from ``first`` > 0 on, the means of
        further samples, folded into the running mean over samples."""
        held = self.randomization.get(method)
        if first == 0 or held is None or len(held) != len(steps):
            self.randomization[method] = steps
            return

        def fold(old: float | None, new: float | None) -> float | None:
            if old is None or math.isnan(old):
                return new
            if new is None or math.isnan(new):
                return old
            return (old * first + new) / (first + 1)

        self.randomization[method] = [
            {
                **h,
                "spearman": fold(h["spearman"], s["spearman"]),
                "ssim": fold(h["ssim"], s["ssim"]),
            }
            for h, s in zip(held, steps, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def values(self, method: str, metric: str, mask: str | None = None) -> np.ndarray:
        """Per-sample values of one metric for one method."""
        return np.array(
            [
                r["value"]
                for r in self.rows
                if r["method"] == method and r["metric"] == metric and r["mask"] == mask
            ]
        )

    def mean(self, method: str, metric: str, mask: str | None = None) -> float:
        v = self.values(method, metric, mask)
        v = v[~np.isnan(v)]
        return float(v.mean()) if len(v) else math.nan

    def summary(self) -> list[dict[str, Any]]:
        """Mean and standard deviation per method and metric."""
        keys = list(dict.fromkeys((r["method"], r["metric"], r["mask"]) for r in self.rows))
        out = []
        for method, metric, mask in keys:
            v = self.values(method, metric, mask)
            v = v[~np.isnan(v)]
            higher, category, _ = METRIC_INFO.get(metric, (None, "other", ""))
            name = metric if mask is None else f"{metric}[{mask}]"
            out.append(
                {
                    "method": method,
                    "metric": name,
                    "category": category,
                    "mean": float(v.mean()) if len(v) else math.nan,
                    "std": float(v.std()) if len(v) else math.nan,
                    "n": len(v),
                    "higher_is_better": higher,
                }
            )
        return out

    def verdicts(self) -> list[Verdict]:
        """Plain-language pass/fail per method and check (see THRESHOLDS)."""
        out = []
        for m in self.methods:
            out += (
                _faithfulness_verdict(self, m)
                + _road_verdict(self, m)
                + _sanity_verdict(self, m)
                + _robustness_verdict(self, m)
            )
            out += _completeness_verdict(self, m) + _localization_verdicts(self, m)
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["sample", "method", "metric", "mask", "value"])
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def _repr_html_(self) -> str:
        head = "<tr><th>method</th><th>check</th><th>verdict</th></tr>"
        icon = {"pass": "✔ passes", "fail": "✘ fails", "inconclusive": "? not settled", "info": "ℹ"}
        body = "".join(
            f"<tr><td>{escape(v.method)}</td><td>{escape(v.check)}</td><td>{icon[v.state]}: {escape(v.text)}</td></tr>"
            for v in self.verdicts()
        )
        return f"<table>{head}{body}</table>"

    def __repr__(self) -> str:
        return f"Scores({len(self.rows)} rows; methods={self.methods})"


def _evidence(
    s: Scores, m: str, metric: str, threshold: float, higher: bool, statistic: str = "mean"
) -> Evidence:
    """The evidence of ``metric``'s per-sample values of method ``m`` (seeded by the
    settings' seed, so a report's intervals are reproducible)."""
    seed = int(s.settings.get("seed") or 0)
    return evidence(metric, s.values(m, metric), threshold, higher, statistic, seed, m)


def _faithfulness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "deletion_gain")):
        return []
    t = THRESHOLDS["gain"]
    d = _evidence(s, m, "deletion_gain", t, higher=True)
    i = _evidence(s, m, "insertion_gain", t, higher=True)
    state = combined_state(d, i)
    what = "predicted value" if s.settings.get("task") == "regression" else "target probability"
    gains = f"deletion gain {d.interval()}, insertion gain {i.interval()}"
    if state == "pass":
        text = (
            f"deleting its most relevant features lowers the {what} faster than a random order "
            f"(AUC {s.mean(m, 'deletion_auc'):.3f} vs {s.mean(m, 'deletion_random_auc'):.3f}): "
            f"{gains}; both intervals above the {t} threshold"
        )
    elif state == "fail":
        low = [p for p in (d, i) if p.state == "fail"]
        names = " and ".join(p.metric.replace("_", " ") for p in low)
        text = (
            f"no clear advantage over a random ordering: {gains}; the {names} interval lies "
            f"below the {t} threshold: the map may not point at what the model uses"
        )
    else:
        text = (
            f"not settled: {gains}; an interval reaches across the {t} threshold, so "
            f"{len(s.values(m, 'deletion_gain'))} samples cannot tell whether the map beats "
            f"a random order{settle_sentence((d, i))}"
        )
    return [Verdict.of(m, "faithfulness (deletion/insertion vs random)", state, text, d, i)]


def _road_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "road_gain")):
        return []
    t = THRESHOLDS["gain"]
    g = _evidence(s, m, "road_gain", t, higher=True)
    morf, lerf = s.mean(m, "road_morf"), s.mean(m, "road_lerf")
    what = "predicted value" if s.settings.get("task") == "regression" else "target probability"
    if g.state == "pass":
        text = (
            f"removing its most relevant pixels (imputed from their neighbours) lowers the {what} "
            f"more than removing its least relevant ones (mean {morf:.3f} vs {lerf:.3f}): "
            f"gain {g.interval()}, above the {t} threshold"
        )
    elif g.state == "fail":
        text = (
            f"no clear difference between removing its most and least relevant pixels: ROAD "
            f"gain {g.interval()}, below the {t} threshold: the ranking of the map may not "
            "be the model's"
        )
    else:
        text = (
            f"not settled: ROAD gain {g.interval()} reaches across the {t} threshold"
            f"{settle_sentence((g,))}"
        )
    return [Verdict.of(m, "faithfulness (ROAD: least vs most relevant removed)", g.state, text, g)]


def _sanity_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "randomization_spearman")):
        return []
    limit = THRESHOLDS["randomization_spearman"]
    rho = _evidence(s, m, "randomization_spearman", limit, higher=False)
    ssim = s.mean(m, "randomization_ssim")
    extra = "" if math.isnan(ssim) else f", SSIM {ssim:.2f}"
    r = f"ρ = {rho.interval('.2f')}{extra}"
    if rho.state == "pass":
        text = (
            "passes the randomization sanity check: the map changes when the weights are "
            f"randomized ({r}; below {limit})"
        )
    elif rho.state == "fail":
        text = (
            f"attribution barely changes when weights are randomized ({r}; above {limit}): "
            "do not trust this map"
        )
    else:
        text = f"not settled: {r} reaches across {limit}{settle_sentence((rho,))}"
    return [Verdict.of(m, "model randomization sanity check", rho.state, text, rho)]


def _robustness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "max_sensitivity")):
        return []
    limit = THRESHOLDS["max_sensitivity"]
    e = _evidence(s, m, "max_sensitivity", limit, higher=False)
    moves = f"the map moves by {e.interval('.0%')} of its norm under small input noise"
    word = {"pass": "stable", "fail": "unstable", "inconclusive": "not settled"}[e.state]
    text = f"{word}: {moves} (limit {limit:.0%}){settle_sentence((e,))}"
    return [Verdict.of(m, "robustness (max-sensitivity)", e.state, text, e)]


def _completeness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "completeness_gap")):
        return []
    limit = THRESHOLDS["completeness_gap"]
    e = _evidence(s, m, "completeness_gap", limit, higher=False, statistic="median")
    gap = f"median gap {e.interval('.2%')}"
    if e.state == "pass":
        text = f"attributions add up to the output change ({gap}; limit {limit:.0%})"
    elif e.state == "fail":
        text = (
            f"attributions miss part of the output change ({gap}; limit {limit:.0%}): see the "
            "explanation's warnings for the fix (more n_steps or n_samples, tolerance=, "
            "another reference)"
        )
    else:
        text = f"not settled: {gap} reaches across {limit:.0%}{settle_sentence((e,))}"
    return [Verdict.of(m, "completeness", e.state, text, e)]


def _localization_verdicts(s: Scores, m: str) -> list[Verdict]:
    out = []
    for mask in dict.fromkeys(
        r["mask"] for r in s.rows if r["method"] == m and r["metric"] == "relevance_mass"
    ):
        mass, area = s.mean(m, "relevance_mass", mask), s.mean(m, "mask_fraction", mask)
        hits = s.mean(m, "pointing_game", mask)
        out.append(
            Verdict.of(
                m,
                f"localization ({mask})",
                "info",
                f"{mass:.0%} of the positive evidence lies on the {mask} (which covers {area:.0%} of the image); "
                f"the peak is on it for {hits:.0%} of samples",
            )
        )
    return out
