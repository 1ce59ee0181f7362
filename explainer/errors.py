"""The exceptions explainer raises on purpose: one tree, documented in one place.

```
ExplainerError                      base; every error we raise on purpose
├── InputError(ValueError)          wrong shape/dtype, NaN/Inf, empty batch, bad target, bad option
├── UnknownMethodError(KeyError)    lists the available names and the closest match
├── ModelError(RuntimeError)        forward fails, output not (N, classes), not differentiable
└── StoreError(OSError)             unreadable / incompatible result file or store
```

Messages follow one format: what was wrong, what was expected, what was got, how to fix.
"""

from __future__ import annotations

__all__ = ["ExplainerError", "InputError", "UnknownMethodError", "ModelError", "StoreError"]


class ExplainerError(Exception):
    """Base class of every error explainer raises on purpose."""


class InputError(ExplainerError, ValueError):
    """An argument (inputs, target, baselines, background, an option) is not usable."""


class UnknownMethodError(ExplainerError, KeyError):
    """An attribution method name that is not registered."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class ModelError(ExplainerError, RuntimeError):
    """The wrapped network cannot be explained as asked (bad output, no gradient path)."""


class StoreError(ExplainerError, OSError):
    """A saved explanation or result store that cannot be read or does not match."""


def describe(what: str, expected: str, got: str, fix: str) -> str:
    """Build a message in the project's format: what, expected, got, how to fix."""
    return f"{what}: expected {expected}, got {got}. {fix}"
