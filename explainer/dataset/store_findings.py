"""Findings of a result store: candidates from a class-balanced sample of its explained
rows, effects measured on *other* rows of the same store, the result written back.

``ex.findings(store)`` is :func:`explainer.metrics.findings.findings` applied to a store the
way ``ex.evaluate(store)`` applies the trust scores: the patterns are proposed by
``sample`` explained rows (every method the store holds), and measured on up to
``holdout`` finished rows that were not among them, with their true labels when the data
had labels for all of them (else their explained targets; the record says which). Rows are
drawn with ``seed``. The result is saved in the store (``attrs["findings"]``) so that
``ex.report(store)`` and ``explainer report STORE`` show it without recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import check_int
from ..errors import InputError, describe
from ..explanation import Explanation
from ..metrics.findings import Findings
from ..metrics.findings import findings as find
from ..model import Model
from .evaluation import model_for_store
from .layout import FINDINGS_KEY, findings_from_json
from .store import Store
from .writer import write_findings

__all__ = ["findings", "stored_findings"]


def stored_findings(store: Store) -> Findings | None:
    """The Findings ``ex.findings(store)`` saved in the store, or None."""
    data = store.group.attrs.get(FINDINGS_KEY)
    return findings_from_json(data) if data else None


def findings(
    explanations: Explanation | Sequence[Explanation] | Store,
    model: Model | torch.nn.Module | None = None,
    holdout: tuple[Any, Any] | int | None = None,
    *,
    sample: int = 256,
    min_support: float = 0.6,
    min_effect: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> Findings:
    """Find what the model relies on (a watermark, an ID-like column, a recurring token)
    without ground-truth masks, and measure it: ``ex.findings``.

    With explanations, this is :func:`explainer.metrics.findings.findings` (its docstring
    and module say how candidates are proposed and measured). With a result store
    (``ex.open_store``), candidates come from ``sample`` finished rows (balanced over the
    explained classes, every method the store holds) and effects are measured on
    ``holdout`` *other* finished rows (an int; None: 256), labelled by the data's labels
    when every one has a label, else by the explained class; the model may be omitted
    when the store records its file; the result is saved in the store for reports.

    Args:
        explanations: explanations of the same inputs and targets, or a result store.
        model: the wrapped model or the ``nn.Module`` explained.
        holdout: ``(inputs, labels)`` to measure on (explanations), or a number of rows
            (store); None: the explained samples themselves (explanations), 256 other rows
            (store).
        sample: with a store, how many rows propose candidates (an integer >= 1).
        min_support, min_effect, seed, progress: as in
            :func:`explainer.metrics.findings.findings`.

    Returns:
        :class:`~explainer.metrics.findings.Findings`.

    Raises:
        InputError: a holdout of the wrong kind, a store without finished rows or without
            a recorded model when ``model`` is None, and what the core function refuses.

    Example:
        >>> import torch, explainer as ex
        >>> x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        >>> x[:, 2] = (x[:, 0] > 0).float()  # column 2 copies the class: a leak
        >>> net = torch.nn.Linear(3, 2)
        >>> with torch.no_grad():
        ...     _ = net.weight.copy_(torch.tensor([[0.0, 0.0, -4.0], [0.0, 0.0, 4.0]]))
        ...     _ = net.bias.copy_(torch.tensor([2.0, -2.0]))
        >>> m = ex.wrap(net, modality="tabular", class_names=["no", "yes"])
        >>> labels = (x[:, 0] > 0).long()
        >>> exp = ex.explain(m, x, "gradient_x_input", target=labels, progress=False)
        >>> [(f.class_name, f.where) for f in ex.findings(exp, m)]
        [('yes', (2, 'feature 2'))]
    """
    if not isinstance(explanations, Store):
        if isinstance(holdout, int) and not isinstance(holdout, bool):
            raise InputError(
                describe(
                    "`holdout`",
                    "(inputs, labels) with explanations (a number of rows only with a store)",
                    repr(holdout),
                    "Pass holdout=(inputs, labels) of samples that were not explained.",
                )
            )
        if model is None:
            raise InputError(
                describe(
                    "`model`",
                    "the model the explanations are of",
                    "None",
                    "Pass ex.findings(explanations, model, holdout=(inputs, labels)).",
                )
            )
        return find(
            explanations,
            model,
            holdout,
            min_support=min_support,
            min_effect=min_effect,
            seed=seed,
            progress=progress,
        )
    return _of_store(explanations, model, holdout, sample, min_support, min_effect, seed, progress)


def _of_store(
    store: Store,
    model: Any,
    holdout: Any,
    sample: int,
    min_support: float,
    min_effect: float,
    seed: int,
    progress: bool,
) -> Findings:
    sample = check_int(sample, "sample", 1, example=256)
    n_holdout = 256 if holdout is None else holdout
    if isinstance(n_holdout, bool) or not isinstance(n_holdout, int | np.integer):
        raise InputError(
            describe(
                "`holdout`",
                "with a store, a number of other rows to measure on (an integer >= 1)",
                f"{type(holdout).__name__}",
                "Pass holdout=256, or explain those samples into the store.",
            )
        )
    n_holdout = check_int(int(n_holdout), "holdout", 1, example=256)
    rows = store.sample(sample, seed)
    if rows.size == 0:
        raise InputError(
            describe(
                "store",
                "finished samples to look for findings in",
                "none",
                "Run ex.explain_dataset(...) (or resume it) first.",
            )
        )
    rest = np.setdiff1d(store.indices(), rows)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.permutation(rest)[:n_holdout])
    if held.size == 0:
        raise InputError(
            describe(
                "store",
                "finished rows beyond the explained sample, to measure the effects on",
                f"all {rows.size} finished rows in the sample",
                f"Pass a smaller sample= (now {sample}) or explain more of the data.",
            )
        )
    net = model_for_store(store, model)
    labels = store.labels[held]
    by = "label" if bool((labels >= 0).all()) else "target"
    if by == "target":
        labels = store.targets[held]
    inputs = torch.from_numpy(store.take("inputs", held))
    found = find(
        list(store[rows].values()),
        net,
        (inputs, torch.as_tensor(labels, dtype=torch.long)),
        min_support=min_support,
        min_effect=min_effect,
        seed=seed,
        progress=progress,
    )
    found = Findings(
        found.items,
        f"{found.checked} Store {store.path.name}: {rows.size} rows proposed candidates, "
        f"{held.size} other rows (labelled by their {by}) measured them.",
        found.rejected,
    )
    write_findings(store, found, {"explained": rows.tolist(), "holdout": held.tolist()})
    return found
