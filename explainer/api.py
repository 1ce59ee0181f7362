"""explain() and explain_many(): resolve, validate, dispatch, wrap the result."""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from . import methods as _methods  # noqa: F401  (registers the methods)
from ._checks import as_inputs, as_targets
from ._runtime import Runtime, parse_bytes
from .errors import InputError, describe
from .explanation import SCHEMA_VERSION, Explanation, check_feature_names
from .model import Model, wrap
from .registry import get_method

__all__ = ["explain", "explain_many", "library_versions"]


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results, for manifests (read once per process:
    importlib.metadata costs ~3 ms, which every explain() call paid)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("explainer", "torch", "captum", "shap", "numpy", "scikit-image"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def explain(
    model: Model | torch.nn.Module,
    inputs: Any,
    method: str = "integrated_gradients",
    target: Any = "predicted",
    *,
    progress: bool = True,
    memory_budget: int | str | None = None,
    feature_names: Sequence[str] | None = None,
    **params: Any,
) -> Explanation:
    """Explain ``model``'s decision on ``inputs`` with one attribution method.

    Args:
        model: a :class:`Model` (from :func:`wrap`) or a bare ``nn.Module`` (wrapped with defaults).
        inputs: a batch, torch tensor or numpy array: (N, C, H, W) images or (N, features) rows.
        method: a registered method name or alias (see :func:`list_methods`).
        target: class to explain: an int, a class name, ``"predicted"`` (default), or one
            int/name per sample.
        progress: show a progress bar for long work (quiet when not on a terminal).
        memory_budget: bytes (or "512MB") that batch expansions may use; default a quarter
            of available memory, at most 4 GiB.
        feature_names: names of tabular columns, for reports.
        **params: the method's own options (e.g. ``n_steps=64`` for integrated gradients).

    Returns:
        An :class:`Explanation` with attributions shaped like ``inputs``.

    Raises:
        InputError: bad inputs, target or parameter. UnknownMethodError: unknown method.
        ModelError: the network's output is not (batch, classes) or has no gradient path.

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Linear(3, 2)
        >>> m = ex.wrap(net, modality="tabular")
        >>> e = ex.explain(m, torch.ones(1, 3), "gradient_x_input", target=0, progress=False)
        >>> torch.allclose(e.attributions, net.weight[0:1].detach())
        True
    """
    model = wrap(model)
    info = get_method(method)
    info.check_params(params)
    if model.modality not in info.modalities:
        raise InputError(
            describe(
                "`method`",
                f"a method for {model.modality} models",
                f"{info.name} ({', '.join(info.modalities)})",
                "See ex.list_methods() for the methods of each modality.",
            )
        )
    runtime = Runtime(
        progress=bool(progress),
        memory_budget=0 if memory_budget is None else parse_bytes(memory_budget),
    )
    start = time.perf_counter()
    with model.evaluating():
        x = as_inputs(model, inputs)
        with torch.no_grad():
            out = model.forward(x)
        targets = as_targets(model, target, out).to(x.device)
        names = (
            check_feature_names(feature_names, x.shape[1]) if model.modality == "tabular" else None
        )
        result = info.func(model, x, targets, runtime=runtime, **params)
    if tuple(result.attributions.shape) != tuple(x.shape):
        raise RuntimeError(
            f"method {info.name} returned shape {tuple(result.attributions.shape)} for inputs {tuple(x.shape)}"
        )
    used = {**info.defaults, **result.params} if result.params else {**info.defaults, **params}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "versions": dict(library_versions()),  # a copy: the cached dict is shared
        "seed": used.get("seed"),
        "model": {
            "name": model.name,
            "fingerprint": model.fingerprint(),
            "parameters": model.n_parameters,
            "output": model.output,
        },
        "input_shape": list(x.shape),
        "duration_s": round(time.perf_counter() - start, 4),
        "device": str(x.device),
        "memory_budget": runtime.budget,
    }
    return Explanation(
        method=info.name,
        attributions=result.attributions.detach().cpu(),
        inputs=x.detach().cpu(),
        targets=targets.cpu(),
        scores=model.to_scores(out).detach().cpu(),
        class_names=model.class_names,
        modality=model.modality,
        params=used,
        extras=dict(result.extras),
        manifest=manifest,
        feature_names=names,
        call_params=dict(params),
    )


def explain_many(
    model: Model | torch.nn.Module,
    inputs: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]],
    target: Any = "predicted",
    **common: Any,
) -> list[Explanation]:
    """Explain the same inputs with several methods.

    Args:
        methods: method names, or a mapping ``{name: {param: value}}`` with per-method options.
        target, **common: passed to every :func:`explain` call (e.g. ``progress=False``).

    Returns:
        One Explanation per method, in order.
    """
    spec = methods if isinstance(methods, Mapping) else {m: {} for m in methods}
    if not spec:
        raise InputError(
            describe(
                "`methods`",
                "at least one method name",
                "nothing",
                'Pass e.g. methods=["saliency"].',
            )
        )
    return [
        explain(model, inputs, name, target, **common, **dict(opts)) for name, opts in spec.items()
    ]
