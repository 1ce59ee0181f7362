"""Trust scores: faithfulness, robustness, sanity, localization, completeness, agreement.

Each metric is a function on tensors (``faithfulness``, ``robustness``, ``sanity``,
``localization``, ``agreement`` modules); :func:`score` runs them for explanations under
checked :class:`~explainer.metrics.settings.EvaluationSettings` and returns a tidy
:class:`Scores` table with verdicts. The public entry point, ``ex.evaluate``, lives one layer
up (``explainer.dataset.evaluation``) because it also scores result stores.
"""

from .scores import METRIC_INFO, THRESHOLDS, Scores, Verdict
from .suite import METRIC_GROUPS, score

__all__ = ["score", "Scores", "Verdict", "METRIC_GROUPS", "METRIC_INFO", "THRESHOLDS"]
