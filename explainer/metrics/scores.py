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


@dataclass(frozen=True)
class Verdict:
    method: str
    check: str
    passed: bool | None  # None: informative only
    text: str


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
        icon = {True: "✔ passes", False: "✘ fails", None: "ℹ"}
        body = "".join(
            f"<tr><td>{escape(v.method)}</td><td>{escape(v.check)}</td><td>{icon[v.passed]}: {escape(v.text)}</td></tr>"
            for v in self.verdicts()
        )
        return f"<table>{head}{body}</table>"

    def __repr__(self) -> str:
        return f"Scores({len(self.rows)} rows; methods={self.methods})"


def _faithfulness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "deletion_gain")):
        return []
    d, i = s.mean(m, "deletion_gain"), s.mean(m, "insertion_gain")
    share = float((s.values(m, "deletion_gain") > 0).mean())
    passed = _clear_gain(s, m, "deletion_gain", d) and _clear_gain(s, m, "insertion_gain", i)
    what = "predicted value" if s.settings.get("task") == "regression" else "target probability"
    text = (
        f"deleting its most relevant features lowers the {what} faster than a random order "
        f"(AUC {s.mean(m, 'deletion_auc'):.3f} vs {s.mean(m, 'deletion_random_auc'):.3f}: better than random by {d:.3f}; "
        f"{share:.0%} of samples), insertion better by {i:.3f}"
    )
    if not passed:
        text = (
            f"no clear advantage over a random ordering (deletion gain {d:+.3f}, insertion gain {i:+.3f}; "
            f"needs > {THRESHOLDS['gain']} and two standard errors): the map may not point at what the model uses"
        )
    return [Verdict(m, "faithfulness (deletion/insertion vs random)", passed, text)]


def _clear_gain(s: Scores, m: str, metric: str, mean: float) -> bool:
    """The mean gain exceeds THRESHOLDS["gain"] and two standard errors of its samples."""
    v = s.values(m, metric)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return mean > max(THRESHOLDS["gain"], 2 * se)


def _road_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "road_gain")):
        return []
    gain = s.mean(m, "road_gain")
    morf, lerf = s.mean(m, "road_morf"), s.mean(m, "road_lerf")
    passed = _clear_gain(s, m, "road_gain", gain)
    what = "predicted value" if s.settings.get("task") == "regression" else "target probability"
    text = (
        f"removing its most relevant pixels (imputed from their neighbours) lowers the {what} "
        f"more than removing its least relevant ones (mean {morf:.3f} vs {lerf:.3f}: gain {gain:.3f})"
        if passed
        else f"no clear difference between removing its most and least relevant pixels (ROAD gain "
        f"{gain:+.3f}; needs > {THRESHOLDS['gain']} and two standard errors): the ranking "
        "of the map may not be the model's"
    )
    return [Verdict(m, "faithfulness (ROAD: least vs most relevant removed)", passed, text)]


def _sanity_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "randomization_spearman")):
        return []
    rho, limit = s.mean(m, "randomization_spearman"), THRESHOLDS["randomization_spearman"]
    ssim = s.mean(m, "randomization_ssim")
    extra = "" if math.isnan(ssim) else f", SSIM {ssim:.2f}"
    passed = rho < limit
    text = (
        f"passes the randomization sanity check: the map changes when the weights are randomized (ρ = {rho:.2f}{extra})"
        if passed
        else f"attribution barely changes when weights are randomized (ρ = {rho:.2f}{extra}): do not trust this map"
    )
    return [Verdict(m, "model randomization sanity check", passed, text)]


def _robustness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "max_sensitivity")):
        return []
    v = s.mean(m, "max_sensitivity")
    passed = v < THRESHOLDS["max_sensitivity"]
    word = "stable" if passed else "unstable"
    return [
        Verdict(
            m,
            "robustness (max-sensitivity)",
            passed,
            f"{word} under small input noise: the map moves by up to {v:.0%} of its norm",
        )
    ]


def _completeness_verdict(s: Scores, m: str) -> list[Verdict]:
    if not len(s.values(m, "completeness_gap")):
        return []
    v = float(np.nanmedian(s.values(m, "completeness_gap")))
    passed = v < THRESHOLDS["completeness_gap"]
    text = (
        f"attributions add up to the output change (median gap {v:.2%})"
        if passed
        else f"attributions miss {v:.1%} of the output change: see the explanation's warnings "
        "for the fix (more n_steps or n_samples, tolerance=, another reference)"
    )
    return [Verdict(m, "completeness", passed, text)]


def _localization_verdicts(s: Scores, m: str) -> list[Verdict]:
    out = []
    for mask in dict.fromkeys(
        r["mask"] for r in s.rows if r["method"] == m and r["metric"] == "relevance_mass"
    ):
        mass, area = s.mean(m, "relevance_mass", mask), s.mean(m, "mask_fraction", mask)
        hits = s.mean(m, "pointing_game", mask)
        out.append(
            Verdict(
                m,
                f"localization ({mask})",
                None,
                f"{mass:.0%} of the positive evidence lies on the {mask} (which covers {area:.0%} of the image); "
                f"the peak is on it for {hits:.0%} of samples",
            )
        )
    return out
