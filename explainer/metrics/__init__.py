"""Trust scores: faithfulness, robustness, sanity, localization, completeness, agreement.

Each metric is a function on tensors (``faithfulness``, ``robustness``, ``sanity``,
``localization``, ``agreement`` modules); :func:`evaluate` is the thin entry point that
runs them for explanations and returns a tidy :class:`Scores` table with verdicts.
"""

from .scores import METRIC_INFO, THRESHOLDS, Scores, Verdict
from .suite import METRIC_GROUPS, evaluate

__all__ = ["evaluate", "Scores", "Verdict", "METRIC_GROUPS", "METRIC_INFO", "THRESHOLDS"]
