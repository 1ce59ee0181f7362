"""explain() and explain_many(): resolve, validate, dispatch, wrap the result."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from . import methods as _methods  # noqa: F401  (registers the methods)
from ._checks import (
    as_methods,
    as_targets,
    check_attributions,
    check_autograd_mode,
    check_bool,
    check_model,
)
from ._runtime import Runtime, accumulation_dtype, forward_in_chunks, parse_bytes
from .calls import Call, aligned_calls, as_text_explanation, feature_names_of, merged, prepare
from .completeness import gap_warning, relative_gap
from .errors import ExplainerWarning, InputError, ModelError, describe
from .explanation import SCHEMA_VERSION, Explanation
from .model import Model, wrap
from .multi_input import MultiInputExplanation
from .records import explanation_manifest
from .registry import MethodInfo, MethodResult, get_method, list_methods

__all__ = ["explain", "explain_many", "explain_call"]


def explain(
    model: Model | torch.nn.Module,
    inputs: Any,
    method: str = "integrated_gradients",
    target: Any = "predicted",
    *,
    progress: bool = True,
    memory_budget: int | str | None = None,
    feature_names: Sequence[str] | None = None,
    forward_args: Any = None,
    **params: Any,
) -> Explanation | MultiInputExplanation:
    """Explain ``model``'s decision on ``inputs`` with one attribution method.

    Args:
        model: a :class:`Model` (from :func:`wrap`) or a bare ``nn.Module`` (wrapped with defaults).
        inputs: a batch, torch tensor or numpy array: (N, C, H, W) images or (N, features) rows,
            finite floats. Several inputs: a tuple (passed to the network positionally) or
            a dict (by keyword) of such batches, each of its own shape; every input is
            attributed and a :class:`~explainer.multi_input.MultiInputExplanation` is
            returned (see :mod:`explainer.inputs`). They are converted to the model's dtype (that of its first floating
            parameter, float32 if it has none) and moved to its device: a float64 model runs
            in float64, a float16 or bfloat16 one in its dtype, and float16 or float64 inputs
            of a float32 model run, and are recorded, as float32.
        method: a registered method name or alias (see :func:`list_methods`).
        target: class to explain: an int, a class name, ``"predicted"`` (default), or one
            int/name per sample.
        progress: show a progress bar for long work (quiet when not on a terminal); True or False.
        memory_budget: bytes (or "512MB"), at least 1, that batch expansions may use; None
            (default) for a quarter of available memory, at most 4 GiB. 0 is refused.
        feature_names: names of tabular columns, for reports: a list (not a bare string) or
            ``{index: name}`` with keys 0..K-1.
        forward_args: what the network needs beside the inputs, never attributed: one
            value, a tuple (positional, after the inputs) or a dict (keywords), e.g.
            ``{"attention_mask": mask}``. A tensor whose first dimension is N holds one row
            per sample (each sample is then explained on its own call, so every row a
            method builds gets its sample's row; saliency and gradient x input, which
            build no rows, explain the batch in one call, each chunk with its samples'
            rows); anything else is passed unchanged.
        **params: the method's own options (e.g. ``n_steps=64`` for integrated gradients).
            Seeds are integers in [0, 2**63 - 1]; ``seed=None`` means 0 for every method.

    Returns:
        An :class:`Explanation` with attributions shaped like ``inputs``, on the CPU (a
        CUDA or MPS model computes on its device). Attributions are accumulated, and
        results returned, in at least float32: float64 for a float64 model, float32 for
        float16 and bfloat16 models (their inputs and scores too). For a method with a
        completeness property (its extras hold ``convergence_delta``) the extras also hold
        ``relative_gap`` per sample, and a gap above the method's tolerance is stated in
        ``warnings`` (see :mod:`explainer.completeness`).

    Raises:
        InputError: bad inputs, target or parameter (NaN/Inf inputs or references included),
            or a call under ``torch.inference_mode()`` (autograd is off there: call outside
            it; ``torch.no_grad()`` is fine). UnknownMethodError: unknown method.
        ModelError: the network fails (any exception its forward raises, chained), its
            output is not finite (batch, classes), it has no gradient path, its weights are
            on the ``meta`` device, the attributions came out non-finite (non-finite
            outputs or gradients somewhere on the method's path), or a method that
            differentiates the model is asked of a black-box function fed numpy (the
            message names the methods that need only forward passes, e.g. kernel_shap). Whatever is raised, the
            network's training flags, ``requires_grad`` and ``inplace`` flags are restored.

    Warns:
        ExplainerWarning: once per call, with the explanation's ``warnings`` (a completeness
            gap above the method's tolerance).

    Example:
        >>> import torch, explainer as ex
        >>> net = torch.nn.Linear(3, 2)
        >>> m = ex.wrap(net, modality="tabular")
        >>> e = ex.explain(m, torch.ones(1, 3), "gradient_x_input", target=0, progress=False)
        >>> torch.allclose(e.attributions, net.weight[0:1].detach())
        True
    """
    check_autograd_mode("ex.explain")
    model = wrap(model)
    start = time.perf_counter()
    progress = check_bool(progress, "progress")
    budget = 0 if memory_budget is None else parse_bytes(memory_budget)
    with model.evaluating():  # once for the call: the nested ones inside only count
        check_model(model)  # (its walk of the weights is the one evaluating() holds)
        runtime = Runtime(progress=progress, memory_budget=budget, device=str(model.device))
        call = prepare(model, inputs, forward_args)
        return explain_call(model, call, method, target, runtime, feature_names, params, start)


def explain_call(
    model: Model,
    call: Call,
    method: str,
    target: Any,
    runtime: Runtime,
    feature_names: Any,
    params: Mapping[str, Any],
    start: float,
) -> Explanation | MultiInputExplanation:
    """:func:`explain` on a prepared :class:`~explainer.calls.Call` (its rows and the model
    that runs them): run the method (per sample when forward arguments are), measure the
    completeness gap, build the explanation."""
    with model.evaluating():
        x, caller = call.x, call.model
        info = _method_for(caller, method, params, "text" if call.text is not None else None)
        calls = aligned_calls(caller, x.shape[0], info.row_aligned)
        runtime = runtime.recording()
        # Every pass counted once: the outputs are computed before the method only when the
        # targets need them (the predicted class, or a model never run); else the method's
        # own passes (saliency's forward, IG's f(x)) give them.
        out = _outputs(calls, x, runtime) if _targets_need_outputs(caller, target) else None
        targets = as_targets(caller, target, out, (x.shape[0], caller._seen["columns"]))
        if targets.device != x.device:
            targets = targets.to(x.device)
        names = feature_names_of(caller, feature_names, x)
        result = merged(
            [
                info.func(m, x[s], targets[s], runtime=runtime, **call.params_for(info, params, s))
                for m, s in calls
            ]
        )
        if out is None:
            out = _outputs(calls, x, runtime)
    _check_result(result, x, info)
    used = {**info.defaults, **result.params} if result.params else {**info.defaults, **params}
    extras = _with_relative_gap(result, out, targets)
    notes = _completeness_notes(info, extras, used)
    if notes:
        warnings.warn(" ".join(notes), ExplainerWarning, stacklevel=3)
    manifest = explanation_manifest(
        model if call.text is not None else caller,  # a text model: the user's, not its runner
        x,
        schema_version=SCHEMA_VERSION,
        seed=used.get("seed"),
        duration_s=round(time.perf_counter() - start, 4),
        memory_budget=runtime.budget,
    )
    if runtime.outputs is not None and runtime.outputs.chunking:
        manifest["chunks"] = runtime.outputs.chunking  # rows per chunk (explainer.throughput)
    if caller.layout is not None and names is not None:
        manifest["inputs"]["feature_names"] = names
    exp = Explanation(
        method=info.name,
        attributions=_on_cpu(result.attributions),
        inputs=_on_cpu(x),
        targets=targets.cpu(),
        scores=_on_cpu(caller.to_scores(out)),
        class_names=model.class_names,
        modality=caller.modality,
        params=used,
        extras=extras,
        manifest=manifest,
        feature_names=names if caller.layout is None else None,
        call_params=_recorded(params, used),
        warnings=notes,
        forward_args=caller.forward_args or None,
    )
    if call.text is not None:
        return as_text_explanation(exp, call, info)
    return exp if caller.layout is None else MultiInputExplanation(exp)


def _targets_need_outputs(model: Model, target: Any) -> bool:
    """Whether resolving ``target`` needs the outputs: the predicted class of a
    classifier, or any target of a model whose number of outputs is not known yet."""
    if model._seen["columns"] is None:
        return True
    return isinstance(target, str) and target == "predicted" and model.task != "regression"


def _outputs(calls: list[tuple[Model, slice]], x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """The outputs on every row: those a pass of this call computed, else a forward.
    The budget bounds this pass too; a budget below the method's floor is refused by the
    method, with its (larger) minimum (``enforce=False``)."""
    if len(calls) == 1:
        return forward_in_chunks(calls[0][0], x, runtime, enforce=False)
    return torch.cat([forward_in_chunks(m, x[s], runtime, enforce=False) for m, s in calls])


def _recorded(params: Mapping[str, Any], used: Mapping[str, Any]) -> dict[str, Any]:
    """The call's parameters to keep for re-runs: as given, except modules (a CAM's
    ``layer=model.layer4``), kept as the name the method recorded, so that a re-run on a
    copy of the network (the randomization check) finds the same layer."""
    return {k: used.get(k, v) if isinstance(v, torch.nn.Module) else v for k, v in params.items()}


def _on_cpu(t: torch.Tensor) -> torch.Tensor:
    """A result tensor on the CPU in at least float32 (float16/bfloat16 models' results are
    float32: numpy, and so saving, has no bfloat16), float64 kept."""
    if t.device.type == "cpu" and (t.dtype == torch.float32 or t.dtype == torch.float64):
        return t.detach()
    return t.detach().cpu().to(accumulation_dtype(t.dtype))


def _method_for(
    model: Model, method: str, params: Mapping[str, Any], modality: str | None = None
) -> MethodInfo:
    """The registered method ``method`` (aliases resolved), its parameters checked and its
    modalities including the model's (``modality``: a text call's, whose runner sees rows)."""
    modality = modality or model.modality
    info = get_method(method)
    info.check_params(params)
    if info.needs_gradients and not model.differentiable:
        forward_only = [m.name for m in list_methods() if not m.needs_gradients]
        raise ModelError(
            describe(
                "`method`",
                f"a method that needs only forward passes for the black-box {model.name} "
                "(a function fed numpy arrays has no gradients)",
                f"{info.name}, which differentiates the model",
                f"Use {' or '.join(forward_only)}; or, if the function takes torch tensors "
                'and is differentiable, wrap it with input="tensor".',
            )
        )
    if model.layout is not None and modality == "tabular" and modality not in info.modalities:
        packed = [m.name for m in list_methods() if model.modality in m.modalities]
        raise InputError(
            describe(
                "`method`",
                "a method that explains several inputs (each sample's inputs are packed "
                "into one row)",
                f"{info.name}, which explains one {', '.join(info.modalities)} input",
                f"Use one of {packed}; or explain the image input alone through a wrapper "
                "that closes over the other inputs.",
            )
        )
    if modality not in info.modalities:
        raise InputError(
            describe(
                "`method`",
                f"a method for {modality} models",
                f"{info.name} ({', '.join(info.modalities)})",
                "See ex.list_methods() for the methods of each modality.",
            )
        )
    return info


def _with_relative_gap(
    result: MethodResult, out: torch.Tensor, targets: torch.Tensor
) -> dict[str, Any]:
    """The method's extras, with ``relative_gap`` after its ``convergence_delta`` (N,)
    when it reports one: the one place every method's gap is computed (``out``: the
    outputs on the inputs, whose target columns are f(x))."""
    extras = dict(result.extras)
    delta = extras.get("convergence_delta")
    n = len(result.attributions)
    if not isinstance(delta, torch.Tensor) or tuple(delta.shape) != (n,):
        return extras
    f_x = out.gather(1, targets[:, None].to(out.device)).squeeze(1)
    # in at least float32, like the attributions (a bfloat16 model's delta included)
    delta = extras["convergence_delta"] = _on_cpu(delta)
    gap = relative_gap(result.attributions, delta, f_x)
    out: dict[str, Any] = {}
    for key, value in extras.items():
        if key == "relative_gap":
            continue  # computed here, the same way for every method
        out[key] = value
        if key == "convergence_delta":
            out["relative_gap"] = gap
    return out


def _completeness_notes(
    info: MethodInfo, extras: Mapping[str, Any], used: Mapping[str, Any]
) -> tuple[str, ...]:
    """The explanation's warnings: its completeness gap, if above the method's tolerance."""
    if "relative_gap" not in extras:
        return ()
    note = gap_warning(info.name, extras["relative_gap"], info.completeness_spec, used)
    return () if note is None else (note,)


def _check_result(result: MethodResult, x: torch.Tensor, info: MethodInfo) -> None:
    """A method's attributions are shaped like the inputs and finite."""
    if tuple(result.attributions.shape) != tuple(x.shape):
        raise RuntimeError(
            f"method {info.name} returned shape {tuple(result.attributions.shape)} for inputs {tuple(x.shape)}"
        )
    check_attributions(result.attributions, info.name)


def explain_many(
    model: Model | torch.nn.Module,
    inputs: Any,
    methods: str | Sequence[str] | Mapping[str, Mapping[str, Any] | None],
    target: Any = "predicted",
    **common: Any,
) -> list[Explanation]:
    """Explain the same inputs with several methods.

    Args:
        methods: one method name (``"saliency"``), a list of names, or a mapping
            ``{name: {param: value}}`` with per-method options (``None``: the defaults, as
            in :func:`~explainer.explain_dataset`).
        target, **common: passed to every :func:`explain` call (e.g. ``progress=False``).

    Returns:
        One Explanation per method, in order.

    Raises:
        InputError: ``methods`` is None, empty or not one of the forms above; and
            everything :func:`explain` raises.

    Example:
        >>> import torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
        >>> exps = ex.explain_many(m, torch.ones(2, 3), {"saliency": None, "ig": {"n_steps": 8}},
        ...                        target=1, progress=False)
        >>> [e.method for e in exps], exps[1].params["n_steps"]
        (['saliency', 'integrated_gradients'], 8)
    """
    spec = as_methods(methods)
    return [
        explain(model, inputs, name, target, **common, **dict(opts)) for name, opts in spec.items()
    ]
