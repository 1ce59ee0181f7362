"""explainer: why a PyTorch model decided what it did, and how far to trust that answer.

>>> import explainer as ex
>>> sorted(ex.__all__)[:3]
['Comparison', 'ExplainerError', 'ExplainerWarning']
"""

from .api import explain, explain_many
from .comparison import Comparison, compare
from .dataset.evaluation import evaluate
from .dataset.images import ImageFolder
from .dataset.run import explain_dataset
from .dataset.store import Store, open_store
from .dataset.store_findings import findings
from .errors import (
    ExplainerError,
    ExplainerWarning,
    InputError,
    ModelError,
    StoreError,
    UnknownMethodError,
)
from .explanation import Explanation
from .generation import explain_generation
from .loading import load_model
from .metrics import Scores
from .metrics.findings import Finding, Findings
from .model import Model, wrap
from .model_layers import layers
from .multi_input import MultiInputExplanation, load_explanation
from .registry import MethodInfo, MethodResult, get_method, list_methods, register_method
from .reporting.html import report

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "ExplainerError",
    "ExplainerWarning",
    "Explanation",
    "Finding",
    "Findings",
    "ImageFolder",
    "InputError",
    "MethodInfo",
    "MethodResult",
    "Model",
    "ModelError",
    "MultiInputExplanation",
    "Scores",
    "Store",
    "StoreError",
    "UnknownMethodError",
    "compare",
    "evaluate",
    "explain",
    "explain_dataset",
    "explain_generation",
    "explain_many",
    "findings",
    "get_method",
    "layers",
    "list_methods",
    "load_explanation",
    "load_model",
    "open_store",
    "register_method",
    "report",
    "wrap",
]
