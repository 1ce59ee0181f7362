"""The Ray backend of explain_dataset: Ray Data ``map_batches`` with a model-holding callable.

Design: the Ray dataset holds the *batch numbers* still to do; each call of the callable
reads the rows of its batch from the (pickled) data source, runs exactly the function the
local backend runs (:func:`explainer.dataset.batches.run_batch`) and returns that batch's arrays as
one ``.npz`` row (uncompressed: it only travels through Ray's object store). The driver
writes rows into the store as they arrive. So batch ``b`` holds the same samples on both
backends, seeds and memory budget are the recorded ones, and the store contents are
identical; ragged per-sample extras (kernel SHAP's ``feature_values``) need no common
shape across batches; and the store has one writer.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, describe
from .batches import run_batch

__all__ = ["run_ray", "pack", "unpack"]


def pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k.replace("/", "|"): np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def unpack(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        return {k.replace("|", "/"): npz[k] for k in npz.files}


class _ExplainBatches:
    """Holds the model (built once per Ray actor) and explains whole batches."""

    def __init__(self, model, source, methods, target, budget, batch_size, threads) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.args = (model, source, methods, target, budget, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        model, source, methods, target, budget, batch_size = self.args
        numbers, payloads = [], []
        for b in batch["batch"].tolist():
            x, y = source.load(int(b), batch_size)
            payloads.append(pack(run_batch(model, x, y, methods, target, budget)))
            numbers.append(int(b))
        return {
            "batch": np.array(numbers, dtype=np.int64),
            "payload": np.array(payloads, dtype=object),
        }


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError(
            describe(
                '`backend="ray"`',
                "Ray installed",
                "no module named ray",
                "pip install 'explainer[ray]' (or use backend=\"local\").",
            )
        ) from None
    return ray


def run_ray(
    model,
    source,
    pending: Sequence[int],
    methods,
    target,
    budget: int,
    batch_size: int,
    concurrency: int | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (batch number, arrays) computed by Ray actors, in batch order.

    Uses the running Ray cluster (``ray.init(address=...)`` first for a real cluster), or
    starts a local one. ``concurrency`` actors (default: the cluster's CPUs, at most the
    number of pending batches) each get ``cpus`` / ``concurrency`` torch threads.
    """
    if not pending:
        return
    ray = _ray()
    if not ray.is_initialized():
        ray.init(
            num_cpus=int(os.environ.get("EXPLAINER_RAY_CPUS", os.cpu_count() or 1)),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = max(1, min(concurrency or cpus, len(pending)))
    threads = max(1, cpus // actors)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([{"batch": int(b)} for b in pending])
    out = ds.map_batches(
        _ExplainBatches,
        fn_constructor_args=(model, source, methods, target, budget, batch_size, threads),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
        batch_format="numpy",
    )
    for rows in out.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=1):
        for b, payload in zip(rows["batch"].tolist(), rows["payload"], strict=True):
            yield int(b), unpack(payload)
