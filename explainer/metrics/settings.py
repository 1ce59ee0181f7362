"""The options of ``ex.evaluate``, checked once: one frozen object the metric groups read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._checks import check_bool, check_choice, check_int, check_seed
from .._runtime import Runtime, parse_bytes
from .faithfulness import FILLS

__all__ = ["EvaluationSettings", "METRIC_GROUPS"]

METRIC_GROUPS = (
    "faithfulness",
    "infidelity",
    "robustness",
    "randomization",
    "localization",
    "completeness",
    "agreement",
)


def _metric_groups(metrics: str | Sequence[str]) -> frozenset[str]:
    if metrics == "default" or metrics == "all":
        return frozenset(METRIC_GROUPS)
    try:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    except TypeError:  # not a name nor names: checked (and refused) as one name
        chosen = [metrics]
    for m in chosen:
        check_choice(m, "metrics", ("default", *METRIC_GROUPS))
    return frozenset(METRIC_GROUPS) if "default" in chosen else frozenset(chosen)


@dataclass(frozen=True)
class EvaluationSettings:
    """How trust scores are computed: ``ex.evaluate``'s options, validated.

    Build it with :meth:`from_options`, which checks every option (the arguments are
    those of :func:`explainer.evaluate`); the metric groups read it instead of long
    argument lists.

    Example:
        >>> s = EvaluationSettings.from_options(["faithfulness"], steps=10)
        >>> sorted(s.groups), s.steps, s.fill, s.seed
        (['faithfulness'], 10, 'blur', 0)
    """

    groups: frozenset[str]  # the METRIC_GROUPS to run
    seed: int
    features: str
    n_segments: int
    fill: str
    steps: int
    n_perturb: int
    n_sensitivity: int
    randomization: str
    randomization_steps: int | None
    params: Mapping[str, Mapping[str, Any]]
    progress: bool
    runtime: Runtime  # what re-run methods and forward passes get: no bar, the budget

    @classmethod
    def from_options(
        cls,
        metrics: str | Sequence[str] = "default",
        seed: int | None = 0,
        *,
        features: str = "superpixels",
        n_segments: int = 48,
        fill: str = "blur",
        steps: int = 20,
        n_perturb: int = 16,
        n_sensitivity: int = 4,
        randomization: str = "cascading",
        randomization_steps: int | None = 4,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        progress: bool = True,
        memory_budget: int | str | None = None,
    ) -> EvaluationSettings:
        """Check every option (InputError naming the first bad one) and build the settings."""
        seed = check_seed(seed)
        progress = check_bool(progress, "progress")
        groups = _metric_groups(metrics)
        check_choice(features, "features", ("superpixels", "pixels"))
        check_choice(fill, "fill", FILLS)
        check_choice(randomization, "randomization", ("cascading", "independent"))
        steps = check_int(steps, "steps", 2)
        n_perturb = check_int(n_perturb, "n_perturb")
        n_segments = check_int(n_segments, "n_segments", 2)
        n_sensitivity = check_int(n_sensitivity, "n_sensitivity")
        if randomization_steps is not None:
            randomization_steps = check_int(randomization_steps, "randomization_steps", 2)
        return cls(
            groups=groups,
            seed=seed,
            features=features,
            n_segments=n_segments,
            fill=fill,
            steps=steps,
            n_perturb=n_perturb,
            n_sensitivity=n_sensitivity,
            randomization=randomization,
            randomization_steps=randomization_steps,
            params=params or {},
            progress=progress,
            runtime=Runtime(False, 0 if memory_budget is None else parse_bytes(memory_budget)),
        )

    def record(self, model_name: str, task: str = "classification") -> dict[str, Any]:
        """What :attr:`Scores.settings` keeps: how the scores were computed, and for which
        model and task (what the curves' scores are: probabilities, or a regression's values)."""
        return {
            "model": model_name,
            "task": task,
            "features": self.features,
            "n_segments": self.n_segments,
            "fill": self.fill,
            "steps": self.steps,
            "n_perturb": self.n_perturb,
            "n_sensitivity": self.n_sensitivity,
            "randomization": self.randomization,
            "randomization_steps": self.randomization_steps,
            "seed": self.seed,
        }
