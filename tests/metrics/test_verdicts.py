"""Three-state verdicts that never contradict their numbers (issue 19, part 1)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from explainer.metrics.scores import THRESHOLDS, Scores
from explainer.metrics.verdicts import CONFIDENCE, bootstrap_interval, evidence


def _scores(deletion, insertion, seed: int = 0) -> Scores:
    s = Scores(settings={"seed": seed})
    s.add("m", "deletion_gain", deletion)
    s.add("m", "insertion_gain", insertion)
    s.add("m", "deletion_auc", np.zeros(len(deletion)))
    s.add("m", "deletion_random_auc", np.asarray(deletion))
    return s


def _faithfulness(s: Scores):
    [v] = [v for v in s.verdicts() if v.check.startswith("faithfulness")]
    return v


def test_a_large_effect_on_eight_noisy_samples_is_inconclusive_not_a_failure():
    spread = np.array([0.5, -0.5, 0.45, -0.45, 0.4, -0.4, 0.3, -0.3])
    gains = 0.187 + spread  # 18x the threshold on average, as in the demo's kernel SHAP
    v = _faithfulness(_scores(gains, gains[::-1]))
    assert v.state == "inconclusive" and v.passed is None
    e = v.evidence[0]
    assert e.estimate > 10 * THRESHOLDS["gain"] and e.low < THRESHOLDS["gain"] < e.high
    # the sentence names its numbers and what would settle it, and does not say "fails"
    assert f"{e.estimate:+.3f}" in v.text and f"{e.low:+.3f}" in v.text
    assert re.search(r"about \d+ samples would likely settle it", v.text)
    assert "no clear advantage" not in v.text
    assert e.needed > 8


def test_no_effect_on_256_samples_fails_and_a_clear_effect_passes():
    rng = np.random.default_rng(4)
    none = 0.02 * rng.standard_normal(256)
    v = _faithfulness(_scores(none, none[::-1]))
    assert v.state == "fail" and v.passed is False
    assert v.evidence[0].high < THRESHOLDS["gain"]
    clear = 0.2 + 0.05 * rng.standard_normal(16)
    v = _faithfulness(_scores(clear, clear[::-1]))
    assert v.state == "pass" and v.passed is True and v.evidence[0].low > THRESHOLDS["gain"]


@pytest.mark.parametrize("n", [8, 32])
def test_the_interval_covers_the_true_mean_in_at_least_90_percent_of_repetitions(n):
    """A synthetic game with a known effect: skewed per-sample gains with mean 0.2."""
    reps, covered = 300, 0
    for r in range(reps):
        gains = np.random.default_rng(1000 + r).gamma(2.0, 0.1, n)  # mean 0.2, skewed
        low, high = bootstrap_interval(gains, "mean", seed=r)
        covered += low <= 0.2 <= high
    assert covered / reps >= 0.90, (covered / reps, CONFIDENCE)


def test_verdict_states_follow_their_intervals_for_every_check():
    """Whatever the numbers, the state is what the interval says against the threshold."""
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        s = Scores(settings={"seed": trial})
        s.add("m", "randomization_spearman", rng.uniform(-0.2, 1.0, n))
        s.add("m", "max_sensitivity", rng.uniform(0, 1.2, n))
        s.add("m", "completeness_gap", rng.uniform(0, 0.1, n))
        for v in s.verdicts():
            for e in v.evidence:
                good = e.low > e.threshold if e.higher else e.high < e.threshold
                bad = e.high < e.threshold if e.higher else e.low > e.threshold
                if n > 1:
                    assert e.state == ("pass" if good else "fail" if bad else "inconclusive")
            assert v.passed is {"pass": True, "fail": False}.get(v.state)


def test_one_sample_says_it_has_no_interval():
    e = evidence("completeness_gap", np.array([0.01]), 0.05, higher=False, statistic="median")
    assert e.state == "pass" and "one sample" in e.interval()


def test_intervals_are_seeded():
    v = np.random.default_rng(0).normal(size=12)
    assert bootstrap_interval(v, seed=3, label="a") == bootstrap_interval(v, seed=3, label="a")
    assert bootstrap_interval(v, seed=3, label="a") != bootstrap_interval(v, seed=4, label="a")
