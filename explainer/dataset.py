"""explain_dataset(): stream a whole dataset through attribution methods into a zarr store.

Decisions (also in the docstring below):
- Samples are taken in the dataset's index order in fixed batches of ``batch_size``: batch
  ``b`` is rows ``[b * batch_size, (b + 1) * batch_size)``. A shuffling DataLoader is refused:
  resuming and the Ray backend both need "batch b" to mean the same rows every time.
- Every setting that changes results is recorded in the store and checked on resume (model
  fingerprint, methods and parameters, target, batch size, data fingerprint, input shape);
  the memory budget chosen on the first run is reused, so chunking (and float rounding) is
  identical after a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._runtime import default_memory_budget, parse_bytes
from ._sources import as_source
from .api import explain, library_versions
from .errors import InputError, StoreError, describe
from .explanation import SCHEMA_VERSION
from .model import Model, wrap
from .registry import get_method
from .store import STORE_SCHEMA, Store, _safe_key, open_store
from .store_write import create_store, remove_partials, write_batch, writer_lock

__all__ = ["explain_dataset", "run_batch", "BACKENDS"]

BACKENDS = ("local", "ray")
TARGETS = ("predicted", "label")


def _canonical(value: Any) -> Any:
    """JSON-able stand-in for a parameter value (tensors by shape and content hash)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        arr = np.ascontiguousarray(arr)
        digest = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
        return {"array": list(arr.shape), "dtype": str(arr.dtype), "sha256": digest}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return repr(value)


def _method_spec(methods: Any) -> dict[str, dict[str, Any]]:
    if isinstance(methods, str):
        methods = [methods]
    spec = dict(methods) if isinstance(methods, Mapping) else {m: {} for m in methods or ()}
    if not spec:
        raise InputError(
            describe("`methods`", "at least one method name", "nothing", 'Pass "saliency".')
        )
    out = {}
    for name, params in spec.items():
        info = get_method(name)  # raises UnknownMethodError with the closest name
        info.check_params(dict(params or {}))
        out[info.name] = dict(params or {})
    return out


def run_batch(
    model: Model,
    x: torch.Tensor,
    labels: torch.Tensor,
    methods: Mapping[str, Mapping[str, Any]],
    target: Any,
    memory_budget: int,
) -> dict[str, np.ndarray]:
    """Explain one batch with every method -> the store's per-sample arrays for these rows.

    Pure: the same rows and settings give the same arrays (the Ray backend relies on it).
    """
    if isinstance(target, str) and target == "label":
        if bool((labels < 0).any()):
            raise InputError(
                describe(
                    '`target="label"`',
                    "a label for every sample",
                    f"{int((labels < 0).sum())} samples without one in this batch",
                    'Use target="predicted", or data that yields (input, label) pairs.',
                )
            )
        target = labels
    out: dict[str, np.ndarray] = {"inputs": x.numpy(), "labels": labels.numpy()}
    for name, params in methods.items():
        exp = explain(model, x, name, target, progress=False, memory_budget=memory_budget, **params)
        key = _safe_key(name)
        out.setdefault("targets", exp.targets.numpy())
        out.setdefault("scores", exp.scores.numpy())
        out[f"attributions/{key}"] = exp.attributions.numpy()
        for extra, value in exp.extras.items():
            per_sample = isinstance(value, torch.Tensor | np.ndarray) and value.ndim >= 1
            if per_sample and len(value) == len(x):
                arr = value.numpy() if isinstance(value, torch.Tensor) else value
                out[f"extras/{key}/{_safe_key(extra)}"] = np.asarray(arr)
    return out


def _manifest(model, source, methods, target, batch_size, budget, feature_names, spec) -> dict:
    return {
        "store_schema": STORE_SCHEMA,
        "explanation_schema": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "versions": dict(library_versions()),
        "model": {
            "name": model.name,
            "fingerprint": model.fingerprint(),
            "parameters": model.n_parameters,
            "output": model.output,
            "class_names": list(model.class_names) if model.class_names else None,
            "modality": model.modality,
            "source": spec,
        },
        "methods": {
            name: _canonical({**get_method(name).defaults, **params})
            for name, params in methods.items()
        },
        "target": _canonical(target),
        "batch_size": batch_size,
        "n": source.n,
        "input_shape": list(source.sample_shape),
        "memory_budget": budget,
        "data": {
            "kind": source.kind,
            "fingerprint": source.fingerprint(),
            "preprocessing": source.preprocessing,
        },
        "feature_names": list(feature_names) if feature_names else None,
    }


_COMPARED = ("n", "batch_size", "input_shape", "methods", "target", "feature_names")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_compatible(store: Store, wanted: dict) -> None:
    have = store.manifest
    pairs = {k: (have.get(k), wanted.get(k)) for k in _COMPARED}
    pairs["model fingerprint"] = (have["model"]["fingerprint"], wanted["model"]["fingerprint"])
    pairs["modality"] = (have["model"]["modality"], wanted["model"]["modality"])
    pairs["data"] = (have["data"]["fingerprint"], wanted["data"]["fingerprint"])
    diffs = [k for k, (a, b) in pairs.items() if json.dumps(a) != json.dumps(b)]
    if diffs:
        detail = "; ".join(
            f"{k}: stored {_short(pairs[k][0])}, now {_short(pairs[k][1])}" for k in diffs[:2]
        )
        raise StoreError(
            describe(
                f"store {store.path}",
                "results of the same model, data and method settings to resume",
                f"a different {', '.join(diffs)} ({detail})",
                "Use another store path, or pass overwrite=True (CLI: --overwrite) to replace "
                "it (its results are deleted).",
            )
        )


def explain_dataset(
    model: Model | torch.nn.Module | str | os.PathLike,
    data: Any,
    methods: str | Sequence[str] | Mapping[str, Mapping[str, Any]] = "integrated_gradients",
    store: str | os.PathLike = "runs/explanations.zarr",
    *,
    batch_size: int = 32,
    target: Any = "predicted",
    labels: Any = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    memory_budget: int | str | None = None,
    num_workers: int = 0,
    backend: str = "local",
    feature_names: Sequence[str] | None = None,
    factory: Any = None,
    source: Mapping[str, Any] | None = None,
) -> Store:
    """Explain every sample of ``data`` and stream the results into a zarr store.

    Memory stays flat: one batch is in memory at a time, written as soon as it is done.
    Killed at any moment (SIGKILL included), a rerun with ``resume=True`` continues where it
    stopped, and the final store equals an uninterrupted run's.

    Args:
        model: a Model, an ``nn.Module``, or a model file / spec for :func:`load_model`
            (with ``factory`` for a state_dict); the spec is recorded in the store so
            ``explainer evaluate`` can reload it.
        data: a torch Dataset (items ``x`` or ``(x, label, ...)``), a DataLoader without
            shuffling (its dataset, batch size and workers are used), an array/tensor
            (N, ...) with optional ``labels``, or an image folder path (see ImageFolder).
        methods: a method name, names, or ``{name: {param: value}}``.
        store: the zarr folder to write.
        batch_size: samples per batch (one zarr chunk per batch).
        target: "predicted" (default), "label" (the data's labels), or a class index/name.
        resume: continue an existing store with the same settings; ``False`` refuses to touch
            an existing store unless ``overwrite=True``.
        overwrite: delete an existing store first.
        progress: a tqdm bar with samples/s (quiet when stderr is not a terminal).
        memory_budget: per-batch memory budget for the methods (recorded; reused on resume).
        num_workers: DataLoader workers reading the data (local backend).
        backend: "local" or "ray" (Ray Data ``map_batches``; ``pip install explainer[ray]``).
        factory: with a model file holding a state_dict, what builds the network.
        source: ``{"path", "factory", "modality"}`` of the file ``model`` was loaded from, to
            record (the CLI passes it) so trust scores can reload the model later.

    Returns:
        The :class:`Store`, opened for reading.

    Raises:
        StoreError: the store exists with other settings (or exists and ``resume=False``).
        InputError: unusable data, batch size, target or backend.
    """
    spec = dict(source) if source else None
    if isinstance(model, str | os.PathLike):
        from .io import load_model

        spec = {"path": str(model), "factory": factory if isinstance(factory, str) else None}
        model = load_model(model, factory=factory)
    if spec and Path(spec["path"]).exists():  # "demo" stays a name; files become absolute
        spec["path"] = str(Path(spec["path"]).resolve())
    model = wrap(model)
    if backend not in BACKENDS:
        raise InputError(
            describe("`backend`", f"one of {list(BACKENDS)}", repr(backend), 'Use "local".')
        )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(
            describe("`batch_size`", "a positive integer", repr(batch_size), "Use e.g. 32.")
        )
    source = as_source(data, labels)
    batch_size = source.batch_size or batch_size
    num_workers = max(num_workers, source.num_workers)
    if isinstance(target, str) and target not in TARGETS:
        if not (model.class_names and target in model.class_names):
            raise InputError(
                describe(
                    "`target`",
                    '"predicted", "label", a class index or a class name',
                    repr(target),
                    'Use target="predicted".',
                )
            )
    methods = _method_spec(methods)
    path = Path(store)
    budget = parse_bytes(memory_budget) if memory_budget is not None else default_memory_budget()
    wanted = _manifest(model, source, methods, target, batch_size, budget, feature_names, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(path):
        n_batches = -(-source.n // batch_size)
        if path.exists() and overwrite:
            open_store(path)  # refuses to delete anything that is not one of our stores
            shutil.rmtree(path)
        if path.exists():
            if not resume:
                raise StoreError(
                    describe(
                        "`store`",
                        "a path with no store (resume=False)",
                        f"an existing {str(path)!r}",
                        "Pass resume=True to continue it, overwrite=True to replace it, or "
                        "choose another path.",
                    )
                )
            out = open_store(path, mode="r+")
            _check_compatible(out, wanted)
            remove_partials(path)
            budget = int(out.manifest["memory_budget"])
        else:
            out = create_store(path, wanted, n_batches)
        pending = [int(b) for b in np.flatnonzero(~out.batches_done)]
        done_samples = source.n - sum(min(batch_size, source.n - b * batch_size) for b in pending)
        bar = tqdm(
            total=source.n,
            initial=done_samples,
            desc="explain_dataset",
            unit="sample",
            disable=None if progress else True,
            delay=0.5,
            smoothing=0.1,
        )
        start = time.perf_counter()
        try:
            if backend == "ray":
                from ._ray import run_ray

                results = run_ray(model, source, pending, methods, target, budget, batch_size)
            else:
                results = _run_local(
                    model, source, pending, methods, target, budget, batch_size, num_workers
                )
            for b, arrays in results:
                write_batch(out, b, arrays)
                bar.update(len(arrays["inputs"]))
        finally:
            bar.close()
        out.group.attrs["last_run"] = {
            "backend": backend,
            "batches": len(pending),
            "seconds": round(time.perf_counter() - start, 3),
        }
    return open_store(path)


def _run_local(model, source, pending, methods, target, budget, batch_size, num_workers):
    batches = source.batches(pending, batch_size, num_workers)
    for b, (x, y) in zip(pending, batches, strict=True):
        yield b, run_batch(model, x, y, methods, target, budget)
