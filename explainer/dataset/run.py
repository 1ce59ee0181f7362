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

import errno
import json
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import (
    as_methods,
    check_bool,
    check_choice,
    check_int,
    check_path,
    check_target_spec,
)
from .._runtime import default_memory_budget, parse_bytes
from ..errors import ExplainerError, ExplainerWarning, InputError, StoreError, describe
from ..explanation import SCHEMA_VERSION
from ..loading import load_model
from ..model import Model, wrap
from ..records import canonical, library_versions, store_model_record
from ..registry import get_method
from .batches import run_batch
from .distributed import run_ray
from .integrity import data_digest
from .layout import STORE_SCHEMA
from .sources import Source, as_source
from .store import Store
from .writer import (
    lock_key,
    mark_pending,
    open_for_run,
    read_only,
    record_run,
    remove_partials,
    write_batch,
    writer_lock,
)

__all__ = ["explain_dataset", "BACKENDS"]

BACKENDS = ("local", "ray")
TARGETS = ("predicted", "label")


def _method_spec(methods: Any) -> dict[str, dict[str, Any]]:
    """Method names resolved (aliases to names), parameter names checked."""
    out = {}
    for name, params in as_methods(methods).items():
        info = get_method(name)  # raises UnknownMethodError with the closest name
        info.check_params(params)
        out[info.name] = params
    return out


def text_ids(model: Model, data: Any) -> Any:
    """A text model's data as token ids (N, L): a list of strings tokenized with the model's
    tokenizer and padded with its pad id; ids (arrays) as they are."""
    if isinstance(data, str) or not (
        isinstance(data, list | tuple) and data and all(isinstance(t, str) for t in data)
    ):
        return data
    if model.tokenizer is None:
        raise InputError(
            describe(
                "`data`",
                "token ids (N, L) for a text model wrapped without a tokenizer",
                f"{len(data)} string(s)",
                "Pass ex.wrap(model, modality='text', tokenizer=tok), or the ids.",
            )
        )
    ids, _ = model.tokenizer.encode(list(data))
    return ids


def text_record(model: Model, source: Source) -> dict:
    """What a store needs to show a text model's tokens: the text of every id its data holds
    (the ids are stored; the tokenizer is not)."""
    ids = torch.unique(
        torch.cat([source.load(b, 4096)[0].reshape(-1) for b in range(-(-source.n // 4096))])
    )
    tokens = (
        model.tokenizer.tokens(ids.tolist())
        if model.tokenizer is not None
        else map(str, ids.tolist())
    )
    return {"vocabulary": dict(zip(map(str, ids.tolist()), tokens, strict=True))}


def _manifest(model, source, methods, target, batch_size, budget, feature_names, spec) -> dict:
    return {
        "store_schema": STORE_SCHEMA,
        "explanation_schema": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "versions": dict(library_versions()),
        "model": store_model_record(model, spec),
        "methods": {
            name: canonical({**get_method(name).defaults, **params})
            for name, params in methods.items()
        },
        "target": canonical(target),
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
        **({"text": text_record(model, source)} if model.modality == "text" else {}),
    }


_COMPARED = ("n", "batch_size", "input_shape", "methods", "target", "feature_names")


def _difference(have: Any, want: Any, prefix: str = "") -> list[str]:
    """Where two manifest entries differ, down to the first differing leaves, so that a
    long value never hides the difference behind an ellipsis."""
    if isinstance(have, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(have) | set(want), key=str):
            if json.dumps(have.get(key), sort_keys=True) != json.dumps(
                want.get(key), sort_keys=True
            ):
                out += _difference(
                    have.get(key), want.get(key), f"{prefix}.{key}" if prefix else str(key)
                )
        return out
    return [f"{prefix}: stored {_short(have)}, now {_short(want)}"]


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_compatible(store: Store, wanted: dict) -> None:
    have = store.manifest
    pairs = {k: (have.get(k), wanted.get(k)) for k in _COMPARED}
    pairs["model fingerprint"] = (have["model"]["fingerprint"], wanted["model"]["fingerprint"])
    pairs["modality"] = (have["model"]["modality"], wanted["model"]["modality"])
    pairs["data"] = (have["data"].get("fingerprint"), wanted["data"]["fingerprint"])
    diffs = [
        k
        for k, (a, b) in pairs.items()
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)
    ]
    if diffs:
        detail = "; ".join(d for k in diffs for d in _difference(*pairs[k], k))
        raise StoreError(
            describe(
                f"store {store.path}",
                "results of the same model, data and method settings to resume",
                f"a different {', '.join(diffs)} ({detail[:600]})",
                "Use another store path, or pass overwrite=True (CLI: --overwrite) to replace "
                "it (its results are deleted).",
            )
        )


@dataclass(frozen=True)
class _Options:
    """``explain_dataset``'s keyword options, as given (:func:`_plan` checks them)."""

    batch_size: Any
    target: Any
    labels: Any
    resume: Any
    overwrite: Any
    progress: Any
    memory_budget: Any
    num_workers: Any
    backend: Any
    feature_names: Sequence[str] | None
    factory: Any
    source: Mapping[str, Any] | None


@dataclass
class _Plan:
    """Everything a run needs, validated before anything is written."""

    model: Model
    source: Source
    methods: dict[str, dict[str, Any]]
    target: Any
    batch_size: int
    budget: int  # of the first run: a resumed store keeps its own (see _resume)
    num_workers: int
    backend: str
    path: Path
    manifest: dict[str, Any]
    resume: bool
    overwrite: bool
    progress: bool


def _model_and_spec(model: Any, factory: Any, source: Any) -> tuple[Model, dict | None]:
    """The model to explain, and the record of the file it was loaded from (None for a
    model given in memory without ``source``)."""
    spec = dict(source) if source else None
    if isinstance(model, str | os.PathLike):
        spec = {"path": str(model), "factory": factory if isinstance(factory, str) else None}
        model = load_model(model, factory=factory)
    if spec and Path(spec["path"]).exists():  # "demo" stays a name; files become absolute
        spec["path"] = str(Path(spec["path"]).resolve())
    return wrap(model), spec


def _plan(model: Any, data: Any, methods: Any, store: Any, options: _Options) -> _Plan:
    """Check every argument (loading the model and looking at the data) and build the
    manifest the store will hold; nothing is written."""
    resume, overwrite, progress = (
        check_bool(getattr(options, name), name) for name in ("resume", "overwrite", "progress")
    )
    model, spec = _model_and_spec(model, options.factory, options.source)
    backend = check_choice(options.backend, "backend", BACKENDS)
    batch_size = check_int(options.batch_size, "batch_size", 1, example=32)
    path = lock_key(Path(check_path(store, "store", "runs/x.zarr")))
    text = model.modality == "text"
    if text:  # texts are tokenized once, padded to the longest: the store holds the ids
        data = text_ids(model, data)
    data_source = as_source(data, options.labels, token_ids=text)
    # one chunk per batch: never larger than the data (a huge batch_size would size chunks)
    batch_size = min(data_source.batch_size or batch_size, data_source.n)
    workers = check_int(options.num_workers, "num_workers", 0, example=2)
    target = check_target_spec(options.target, TARGETS, model.class_names)
    methods = _method_spec(methods)
    memory_budget = options.memory_budget
    budget = (
        parse_bytes(memory_budget)
        if memory_budget is not None
        else default_memory_budget(model.device)  # a GPU model: the GPU's free memory
    )
    manifest = _manifest(
        model, data_source, methods, target, batch_size, budget, options.feature_names, spec
    )
    return _Plan(
        model=model,
        source=data_source,
        methods=methods,
        target=target,
        batch_size=batch_size,
        budget=budget,
        num_workers=max(workers, data_source.num_workers),
        backend=backend,
        path=path,
        manifest=manifest,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )


def _dry_run(plan: _Plan) -> None:
    """Explain the first sample with every method: every parameter, the target and the
    model are checked exactly as the run will use them, before any file is written."""
    x, y = plan.source.load(0, 1)
    target = plan.target
    if isinstance(target, str) and target == "label" and bool((y < 0).any()):
        target = "predicted"  # a missing label fails at its own batch, with its own message
    run_batch(plan.model, x, y, plan.methods, target, plan.budget)
    # What the model's output is (where the tensor was found, its columns, so an inferred
    # task) is known after a forward: the store records the model as its explanations do.
    plan.manifest["model"] = store_model_record(plan.model, plan.manifest["model"]["source"])


def _open_or_create(plan: _Plan) -> tuple[Store, list[int]]:
    """The store to write (created, or reopened and checked) and the batches to compute."""
    n_batches = -(-plan.source.n // plan.batch_size)
    out, created = open_for_run(
        plan.path, plan.manifest, n_batches, resume=plan.resume, overwrite=plan.overwrite
    )
    return out, (list(range(n_batches)) if created else _resume(out, plan))


def _resume(out: Store, plan: _Plan) -> list[int]:
    """Check a reopened store against the plan (settings, then the data of its finished
    batches), mark damaged batches for recomputation; the batches still to compute."""
    _check_compatible(out, plan.manifest)
    remove_partials(plan.path)
    plan.budget = int(out.manifest["memory_budget"])  # identical chunking after a restart
    damaged = sorted(out.damaged_batches(full=True))
    _check_same_data(out, plan, damaged)
    if damaged:
        warnings.warn(
            f"store {plan.path}: {len(damaged)} damaged batch(es) {damaged[:8]} will be recomputed",
            ExplainerWarning,
            stacklevel=4,
        )
        mark_pending(out, damaged)
    return [int(b) for b in np.flatnonzero(~out.batches_done)]


def _check_same_data(store: Store, plan: _Plan, damaged: list[int]) -> None:
    """Every finished batch was computed on the rows the data holds now (digests compared:
    the manifest's fingerprint only covers the first and last sample)."""
    finished = [int(b) for b in np.flatnonzero(store.batches_done) if int(b) not in damaged]
    batches = plan.source.batches(finished, plan.batch_size, plan.num_workers)
    for b, (x, y) in zip(finished, batches, strict=True):
        if store.record(b)["data"] != data_digest(x.numpy(), y.numpy()):
            start, stop = store.batch_rows(b)
            raise StoreError(
                describe(
                    f"store {store.path}",
                    "the data its finished batches were computed on",
                    f"different inputs or labels in batch {b} (rows {start}-{stop - 1})",
                    "Resuming would mix results of two datasets: write to another store, or "
                    "pass overwrite=True (CLI: --overwrite) to start again.",
                )
            )


def _store_os_error(err: OSError, path: Path) -> StoreError:
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    return StoreError(
        describe(
            f"writing store {path}",
            "a writable folder with free space",
            f"{type(err).__name__}: {err}",
            "Free disk space and run the same call again: finished batches are kept."
            if full
            else "Check the folder's permissions (and that it is not read-only), or choose "
            "another store path.",
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

    Nothing is written before every argument has been checked: the first sample is
    explained with every method as a dry run. On resume, every finished batch is checked
    against its checksums (damaged ones are recomputed, with a warning) and the data is
    read again and compared with the digest each finished batch recorded (a changed
    dataset is refused). One writer per store: the lock is taken on the store's resolved
    path, so a symlink and its target cannot be written (or overwritten) at once.

    Args:
        model: a Model, an ``nn.Module``, or a model file / spec for :func:`load_model`
            (with ``factory`` for a state_dict); the spec is recorded in the store so
            ``explainer evaluate`` can reload it.
        data: a torch Dataset (items ``x`` or ``(x, label, ...)``), a DataLoader without
            shuffling (its dataset, batch size and workers are used), an array/tensor
            (N, ...) with optional ``labels``, or an image folder path (see ImageFolder).
            Inputs must be floating point (integer images: scale them first); labels
            integers (integral floats accepted).
        methods: a method name, names, or ``{name: {param: value}}``.
        store: the zarr folder to write.
        batch_size: samples per batch (one zarr chunk per batch; at most the data's length).
        target: "predicted" (default), "label" (the data's labels), or a class index/name.
        labels: with array data, one integer label per sample (other data yields its own).
        resume: continue an existing store with the same settings; ``False`` refuses to touch
            an existing store unless ``overwrite=True``.
        overwrite: delete an existing store first.
        progress: a tqdm bar with samples/s (quiet when stderr is not a terminal).
        memory_budget: per-batch memory budget for the methods (recorded; reused on resume).
        num_workers: DataLoader workers reading the data (local backend).
        backend: "local" or "ray" (Ray Data ``map_batches``; ``pip install explainer[ray]``).
        feature_names: names of tabular columns, recorded for reports.
        factory: with a model file holding a state_dict, what builds the network.
        source: ``{"path", "factory", "modality"}`` of the file ``model`` was loaded from, to
            record (the CLI passes it) so trust scores can reload the model later.

    Returns:
        The :class:`Store`, opened for reading (a read-only view of what the run wrote).

    Warns:
        ExplainerWarning: once, at the end, when a method's completeness gap exceeds its
            tolerance on some sample (the text of :attr:`Store.warnings`; not once per batch).

    Raises:
        StoreError: the store exists with other settings or other data (or exists and
            ``resume=False``), is locked by another run, or cannot be written.
        InputError: unusable data, batch size, target, method parameter or backend.

    Example:
        >>> import torch, tempfile, explainer as ex
        >>> net = torch.nn.Linear(3, 2)
        >>> path = tempfile.mkdtemp() + "/s.zarr"
        >>> store = ex.explain_dataset(ex.wrap(net, modality="tabular"), torch.ones(5, 3),
        ...                            "saliency", path, batch_size=2, progress=False)
        >>> store.complete, store[0]["saliency"].attributions.shape
        (True, torch.Size([1, 3]))
    """
    options = _Options(
        batch_size=batch_size,
        target=target,
        labels=labels,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        memory_budget=memory_budget,
        num_workers=num_workers,
        backend=backend,
        feature_names=feature_names,
        factory=factory,
        source=source,
    )
    plan = _plan(model, data, methods, store, options)
    _dry_run(plan)
    try:
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(plan.path):
            out, pending = _open_or_create(plan)
            _run(out, plan, pending)
    except ExplainerError:
        raise
    except OSError as err:
        raise _store_os_error(err, plan.path) from err
    result = read_only(out)
    notes = result.warnings
    if notes:
        warnings.warn(" ".join(notes), ExplainerWarning, stacklevel=2)
    return result


def _run(out: Store, plan: _Plan, pending: list[int]) -> None:
    """Compute the pending batches and write each as soon as it is done, then the run record."""
    n = plan.source.n
    done_samples = n - sum(min(plan.batch_size, n - b * plan.batch_size) for b in pending)
    start = time.perf_counter()
    with tqdm(
        total=n,
        initial=done_samples,
        desc="explain_dataset",
        unit="sample",
        disable=None if plan.progress else True,
        delay=0.5,
        smoothing=0.1,
    ) as bar:
        for b, arrays in _results(plan, pending):
            write_batch(out, b, arrays)
            bar.update(len(arrays["inputs"]))
    record_run(out, plan.backend, len(pending), time.perf_counter() - start)


def _results(plan: _Plan, pending: list[int]) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    args = (
        plan.model,
        plan.source,
        pending,
        plan.methods,
        plan.target,
        plan.budget,
        plan.batch_size,
    )
    if plan.backend == "ray":
        yield from run_ray(*args)
        return
    batches = plan.source.batches(pending, plan.batch_size, plan.num_workers)
    for b, (x, y) in zip(pending, batches, strict=True):
        yield b, run_batch(plan.model, x, y, plan.methods, plan.target, plan.budget)
