"""The exceptions explainer raises on purpose: one tree, documented in one place.

```
ExplainerError                      base; every error we raise on purpose
├── InputError(ValueError)          wrong shape/dtype, NaN/Inf, empty batch, bad target, bad option
├── UnknownMethodError(KeyError)    lists the available names and the closest match
├── ModelError(RuntimeError)        forward fails, output not (N, classes), not differentiable
└── StoreError(OSError)             unreadable / incompatible result file or store

ExplainerWarning(UserWarning)       a result that is computed but should not be trusted as is
```

Messages follow one format: what was wrong, what was expected, what was got, how to fix
(built by :func:`describe`). Each class also derives from the built-in exception a caller
would expect (``ValueError``, ``KeyError``, ...), so existing ``except`` clauses still work.
"""

from __future__ import annotations

__all__ = [
    "ExplainerError",
    "InputError",
    "UnknownMethodError",
    "ModelError",
    "StoreError",
    "ExplainerWarning",
]


class ExplainerError(Exception):
    """Base class of every error explainer raises on purpose.

    Catch it to handle whatever explainer refuses, and nothing else.

    Example:
        >>> import torch, explainer as ex
        >>> try:
        ...     ex.wrap("not a network")
        ... except ex.ExplainerError as err:
        ...     print(type(err).__name__, "-", err)  # doctest: +ELLIPSIS
        InputError - `net`: expected a torch.nn.Module or a callable on a batch, got str. Pass ...
    """


class InputError(ExplainerError, ValueError):
    """An argument (inputs, target, baselines, background, an option) is not usable.

    Also a ``ValueError``. Raised before any work is done.

    Example:
        >>> import torch, explainer as ex
        >>> try:
        ...     ex.wrap(torch.nn.Linear(3, 2), modality="audio")
        ... except ValueError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        `modality`: expected one of ('image', 'tabular', 'text'), got 'audio'. Use modality="image" ...
    """


class UnknownMethodError(ExplainerError, KeyError):
    """An attribution method name that is not registered.

    Also a ``KeyError``; the message lists the registered names and the closest match.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> try:
        ...     ex.explain(m, torch.ones(1, 3), "salency", progress=False)
        ... except ex.UnknownMethodError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        `method`: expected one of [...], got 'salency'. Did you mean 'saliency'? ...
    """

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class ModelError(ExplainerError, RuntimeError):
    """The wrapped network cannot be explained as asked (bad output, no gradient path).

    Also a ``RuntimeError``; an exception raised inside the network is chained as its
    ``__cause__``.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Flatten(0), modality="tabular")  # returns (N * 3,)
        >>> try:
        ...     ex.explain(m, torch.ones(2, 3), "saliency", progress=False)
        ... except ex.ModelError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        Model output (automatic): expected a tensor of shape (batch=2, classes) or (batch,), got (6,). ...
    """


class StoreError(ExplainerError, OSError):
    """A saved explanation or result store that cannot be read or does not match.

    Also an ``OSError``.

    Example:
        >>> import tempfile, explainer as ex
        >>> try:
        ...     ex.load_explanation(f"{tempfile.mkdtemp()}/missing.npz")
        ... except ex.StoreError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        Explanation file: expected an existing .npz written by Explanation.save, got .../missing.npz. Check the path.
    """


class ExplainerWarning(UserWarning):
    """A result explainer computed but that should not be taken as is: attributions that
    do not add up to the output change (a completeness gap above the method's tolerance),
    damaged store batches that will be recomputed.

    The same text stays with the result (``Explanation.warnings``). Filter it by this class,
    e.g. ``warnings.simplefilter("error", ex.ExplainerWarning)`` in a pipeline that must stop.

    Example:
        >>> import warnings, torch, explainer as ex
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
        >>> with torch.no_grad():  # f(x) = tanh(x1 + x2 + x3): far from linear on [0, 1]^3
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> m = ex.wrap(net, modality="tabular")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always", ex.ExplainerWarning)
        ...     exp = ex.explain(m, torch.ones(1, 3), "ig", target=0, n_steps=1, progress=False)
        >>> [w.category.__name__ for w in caught], exp.warnings == (str(caught[0].message),)
        (['ExplainerWarning'], True)
        >>> print(exp.warnings[0])  # doctest: +ELLIPSIS
        integrated_gradients: attributions do not add up to f(x) - f(reference) in 1 of 1 samples (gap above 1%, worst ...). Pass more n_steps (now 1), ...
    """


def describe(what: str, expected: str, got: str, fix: str) -> str:
    """Build a message in the project's format: what, expected, got, how to fix.

    Args:
        what: the argument or object at fault, e.g. "`max_samples`".
        expected: what would have been accepted.
        got: what was given (short; long values are cut by the caller).
        fix: a sentence saying what to do instead; never empty.

    Example:
        >>> describe("`top`", "an int >= 1", "0", "Pass e.g. top=10.")
        '`top`: expected an int >= 1, got 0. Pass e.g. top=10.'
    """
    return f"{what}: expected {expected}, got {got}. {fix}"
