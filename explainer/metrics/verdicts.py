"""Verdicts with their evidence: pass, fail or inconclusive, never contradicting their numbers.

A check compares a statistic of per-sample scores (the mean gain over a random order, the
median completeness gap, ...) with a threshold (:data:`~explainer.metrics.scores.THRESHOLDS`,
sources in ``docs/verdicts.md``). A verdict that only compared the point estimate would
overclaim on 8 samples; one that demanded two standard errors *and* the threshold failed
a method whose gain was 18x the threshold because 8 samples could not reach it. So each
check states an interval and says which of three things it shows:

- **pass**: the whole 95% confidence interval is on the good side of the threshold;
- **fail**: the whole interval is on the bad side;
- **inconclusive**: the interval contains the threshold. The sentence gives the estimate,
  the interval, and about how many samples would likely settle it: the interval's width
  falls as 1/sqrt(n), so it no longer reaches the threshold from about
  ``n * (half width / distance to the threshold)^2`` samples.

The interval is a seeded bootstrap over samples (:func:`bootstrap_interval`: 2000
resamples, the statistic of each), as an *expanded percentile* interval (Hesterberg 2015,
"What teachers should know about the bootstrap"): the plain percentile interval is too
narrow for small n (it covers a mean about 85% of the time at n = 8 at a nominal 90%), so
its tail probability is taken at ``Phi(-sqrt(n / (n - 1)) * t_{n-1})``, which restores the
coverage of Student's t for normal data and keeps the bootstrap's shape for skewed data.
With one sample there is no interval: the verdict rests on that sample alone and says so.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["CONFIDENCE", "Evidence", "Verdict", "bootstrap_interval", "evidence", "combined_state"]

CONFIDENCE = 0.95  # the intervals' level
RESAMPLES = 2000


@dataclass(frozen=True)
class Evidence:
    """A statistic of per-sample scores against a threshold.

    Attributes:
        metric: the per-sample score ("deletion_gain").
        statistic: "mean" or "median".
        estimate: the statistic on the samples; ``low``, ``high``: its 95% interval.
        n: samples it rests on.
        threshold: the value it is compared with; ``higher``: whether above is good.
        state: "pass", "fail" or "inconclusive" (see the module docstring).
        needed: for an inconclusive one, about how many samples would likely settle it.
    """

    metric: str
    statistic: str
    estimate: float
    low: float
    high: float
    n: int
    threshold: float
    higher: bool
    state: str
    needed: int | None = None

    def interval(self, fmt: str = "+.3f") -> str:
        """``"+0.187 (95% CI +0.120 to +0.250, 8 samples)"``."""
        samples = f"{self.n} sample" + ("" if self.n == 1 else "s")
        if self.n < 2:
            return f"{self.estimate:{fmt}} (one sample: no interval)"
        return (
            f"{self.estimate:{fmt}} ({CONFIDENCE:.0%} CI {self.low:{fmt}} to {self.high:{fmt}}, "
            f"{samples})"
        )

    def record(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "statistic": self.statistic,
            "estimate": self.estimate,
            "ci": [self.low, self.high],
            "n": self.n,
            "threshold": self.threshold,
            "higher_is_better": self.higher,
            "state": self.state,
            "needed": self.needed,
        }


@dataclass(frozen=True)
class Verdict:
    """What a check says of a method, with the evidence it rests on.

    Attributes:
        method, check: whose and which check.
        passed: True (pass), False (fail), None (inconclusive, or informative only).
        text: the sentence; it names the numbers of ``evidence`` and never contradicts them.
        state: "pass", "fail", "inconclusive" or "info".
        evidence: the statistics it rests on.
    """

    method: str
    check: str
    passed: bool | None
    text: str
    state: str = "info"
    evidence: tuple[Evidence, ...] = ()

    @classmethod
    def of(cls, method: str, check: str, state: str, text: str, *evidence: Evidence) -> Verdict:
        passed = {"pass": True, "fail": False}.get(state)
        return cls(method, check, passed, text, state, tuple(evidence))


def _statistic(name: str):
    return np.mean if name == "mean" else np.median


def _seed(seed: int, label: str) -> int:
    digest = hashlib.sha256(label.encode()).digest()[:8]
    return (int(seed) + int.from_bytes(digest, "big")) % 2**63


def bootstrap_interval(
    values: np.ndarray, statistic: str = "mean", seed: int = 0, label: str = ""
) -> tuple[float, float]:
    """The expanded-percentile bootstrap interval (:data:`CONFIDENCE`) of ``statistic`` of
    ``values`` (NaN dropped); seeded by ``seed`` and ``label`` (the same numbers give the
    same interval). One value: (value, value).

    Example:
        >>> low, high = bootstrap_interval(np.array([0.1, 0.3, 0.2, 0.4, 0.25]))
        >>> bool(low < 0.25 < high)
        True
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan
    fn = _statistic(statistic)
    if n == 1 or float(v.max() - v.min()) == 0.0:
        x = float(fn(v))
        return x, x
    rng = np.random.default_rng(_seed(seed, label))
    resampled = fn(v[rng.integers(0, n, size=(RESAMPLES, n))], axis=1)
    tail = (1 - CONFIDENCE) / 2
    expanded = stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf(1 - tail, n - 1))
    low, high = np.quantile(resampled, [expanded, 1 - expanded])
    return float(low), float(high)


def evidence(
    metric: str,
    values: np.ndarray,
    threshold: float,
    higher: bool,
    statistic: str = "mean",
    seed: int = 0,
    label: str = "",
) -> Evidence:
    """The :class:`Evidence` of ``values`` against ``threshold`` (see the module docstring).

    Example:
        >>> big_but_few = np.array([0.4, -0.35, 0.5, 0.02, 0.3, -0.3, 0.45, -0.2])
        >>> e = evidence("deletion_gain", big_but_few, 0.01, higher=True)
        >>> e.state, e.estimate > 10 * 0.01, e.needed > 8
        ('inconclusive', True, True)
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    estimate = float(_statistic(statistic)(v)) if len(v) else math.nan
    low, high = bootstrap_interval(v, statistic, seed, f"{label}/{metric}")
    good_low, good_high = (low, high) if higher else (-high, -low)
    t = threshold if higher else -threshold
    needed = None
    if math.isnan(estimate):
        state = "inconclusive"
    elif good_low > t:
        state = "pass"
    elif good_high < t:
        state = "fail"
    elif len(v) < 2:
        state = "pass" if (estimate > threshold) == higher else "fail"
    else:
        state = "inconclusive"
        near = (estimate - low) if (estimate > threshold) else (high - estimate)
        distance = abs(estimate - threshold)
        if distance > 0 and near > 0:
            needed = max(len(v) + 1, math.ceil(len(v) * (near / distance) ** 2 * 1.2))
    return Evidence(
        metric, statistic, estimate, low, high, len(v), threshold, higher, state, needed
    )


def combined_state(*parts: Evidence) -> str:
    """One state for a check that rests on several statistics: fail if any fails, pass if
    all pass, else inconclusive."""
    states = {p.state for p in parts}
    if "fail" in states:
        return "fail"
    return "pass" if states == {"pass"} else "inconclusive"


def settle_sentence(parts: tuple[Evidence, ...]) -> str:
    """``"; about 40 samples would likely settle it"`` for inconclusive parts (or "")."""
    needed = [p.needed for p in parts if p.state == "inconclusive" and p.needed]
    if not needed:
        return ""
    return f"; about {max(needed)} samples would likely settle it"
