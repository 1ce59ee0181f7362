"""The options of ``ex.evaluate``, checked once: one frozen object the metric groups read.

``metrics="default"`` runs :data:`DEFAULT_GROUPS`; ``metrics="all"`` runs every group of
:data:`METRIC_GROUPS`, ROAD included (an opt-in: ``metrics=["road"]``, since it solves a
sparse system per image and fraction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_bool, check_choice, check_int, check_seed
from .._runtime import Runtime, parse_bytes
from ..errors import InputError, describe
from .faithfulness import FILLS
from .road import ROAD_FRACTIONS

__all__ = ["EvaluationSettings", "METRIC_GROUPS", "DEFAULT_GROUPS"]

METRIC_GROUPS = (
    "faithfulness",
    "infidelity",
    "robustness",
    "randomization",
    "localization",
    "completeness",
    "road",  # after the default groups: asking for it leaves their random draws unchanged
    "agreement",
)
# What metrics="default" runs: every group but ROAD, whose sparse solves (one per image and
# fraction, twice) would multiply the cost of a default run.
DEFAULT_GROUPS = tuple(g for g in METRIC_GROUPS if g != "road")


def _metric_groups(metrics: str | Sequence[str]) -> frozenset[str]:
    if metrics == "default":
        return frozenset(DEFAULT_GROUPS)
    if metrics == "all":
        return frozenset(METRIC_GROUPS)
    try:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    except TypeError:  # not a name nor names: checked (and refused) as one name
        chosen = [metrics]
    for m in chosen:
        check_choice(m, "metrics", ("default", "all", *METRIC_GROUPS))
    if "all" in chosen:
        return frozenset(METRIC_GROUPS)
    return frozenset(chosen).union(DEFAULT_GROUPS if "default" in chosen else ()) - {"default"}


def _road_fractions(value: Any) -> tuple[float, ...]:
    """A non-empty sequence of fractions in [0, 1) (all pixels removed leave nothing to
    impute from), as a tuple of floats."""
    try:
        fractions = tuple(value)
    except TypeError:
        fractions = ()
    if not fractions or not all(
        isinstance(p, int | float | np.integer | np.floating)
        and not isinstance(p, bool | np.bool_)
        and 0 <= float(p) < 1
        for p in fractions
    ):
        raise InputError(
            describe(
                "`road_fractions`",
                "a non-empty sequence of fractions of the pixels, each in [0, 1)",
                repr(value),
                "Pass e.g. road_fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9).",
            )
        )
    return tuple(float(p) for p in fractions)


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
    road_fractions: tuple[float, ...]
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
        road_fractions: Sequence[float] = ROAD_FRACTIONS,
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
        road_fractions = _road_fractions(road_fractions)
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
            road_fractions=road_fractions,
            params=params or {},
            progress=progress,
            runtime=Runtime(False, 0 if memory_budget is None else parse_bytes(memory_budget)),
        )

    def record(self, model_name: str, task: str = "classification") -> dict[str, Any]:
        """What :attr:`Scores.settings` keeps: how the scores were computed, and for which
        model and task (what the curves' scores are: probabilities, or a regression's values).
        ROAD's fractions are recorded when ROAD runs (a default run's record is unchanged)."""
        road = {"road_fractions": list(self.road_fractions)} if "road" in self.groups else {}
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
            **road,
        }
