"""Writing result stores: creation, one batch at a time, trust scores, and the writer lock.

See :mod:`explainer.dataset.store` for the layout and why a kill never leaves a batch half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError, describe
from .integrity import batch_record, data_digest, digest
from .store import _KEY, Store, _safe_key

__all__ = [
    "create_store",
    "write_batch",
    "mark_pending",
    "write_metric",
    "seal_metrics",
    "remove_partials",
    "writer_lock",
]
# Every chunk is written even when it equals the fill value, so that a missing chunk file
# always means damage (zarr would otherwise skip all-fill chunks and read them back as fill).
_CONFIG = {"write_empty_chunks": True}


def _dtype_for(t: np.ndarray) -> np.dtype:
    if t.dtype == np.bool_:
        return np.dtype(bool)
    if np.issubdtype(t.dtype, np.integer):
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def _fit(arr: zarr.Array, value: np.ndarray) -> np.ndarray:
    """Ragged per-sample arrays (kernel SHAP's ``feature_values`` is (N, max features in the
    batch)): grow the stored array or pad the batch with the fill value, axis by axis."""
    if value.ndim != arr.ndim:
        raise StoreError(
            describe(
                "store array",
                f"{arr.ndim} dimensions",
                f"{value.ndim}",
                "Write to a new store: this one holds other results.",
            )
        )
    grown = tuple(max(a, v) for a, v in zip(arr.shape[1:], value.shape[1:], strict=True))
    if grown != tuple(arr.shape[1:]):
        arr.resize((arr.shape[0], *grown))
    pad = [(0, 0)] + [(0, g - v) for g, v in zip(grown, value.shape[1:], strict=True)]
    if any(p for _, p in pad):
        value = np.pad(value, pad, constant_values=arr.fill_value)
    return value


def write_batch(store: Store, b: int, arrays: dict[str, np.ndarray]) -> None:
    """Write batch ``b``'s rows of every array (creating new per-sample arrays), then its
    commit record (rows, data digest, checksums), then mark it done. Rows are
    ``[b * batch_size, ...)``; ``arrays`` holds ``inputs`` and ``labels`` as read."""
    start, stop = store.batch_rows(b)
    written = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if len(value) != stop - start:
            raise StoreError(
                describe(
                    f"batch {b} of {name}",
                    f"{stop - start} rows",
                    f"{len(value)}",
                    "Check that the dataset's len() matches the items it returns.",
                )
            )
        if name not in store.group:
            store.group.create_array(
                name,
                shape=(store.n, *value.shape[1:]),
                chunks=(store.batch_size, *value.shape[1:]),
                dtype=_dtype_for(value),
                fill_value=np.nan if _dtype_for(value).kind == "f" else 0,
                config=_CONFIG,
            )
        arr = store.group[name].with_config(_CONFIG)  # the setting is not stored with it
        value = _fit(arr, value).astype(arr.dtype, copy=False)
        arr[start:stop] = value
        written[name] = value
    digest = data_digest(arrays["inputs"], arrays["labels"])
    store.group["records"][b] = batch_record(start, stop, digest, written)
    store.group["done"].with_config(_CONFIG)[b] = True
    store._verified.clear()


def mark_pending(store: Store, batches: list[int]) -> None:
    """Forget finished batches (damaged ones), so that the run recomputes them."""
    done = store.group["done"].with_config(_CONFIG)
    for b in batches:
        done[b] = False
        store.group["records"][b] = ""
    store._verified.clear()


def write_metric(
    store: Store, method: str, metric: str, rows: np.ndarray, values: np.ndarray
) -> None:
    name = f"metrics/{_safe_key(method)}/{_safe_key(metric)}"
    if name not in store.group:
        store.group.create_array(
            name, shape=(store.n,), chunks=(store.batch_size,), dtype="float64", fill_value=np.nan
        )
    arr = store.group[name]
    arr.set_orthogonal_selection((np.asarray(rows, dtype=np.int64),), np.asarray(values))


def seal_metrics(store: Store) -> None:
    """Record a checksum of every trust-score array, checked by ``Store.metrics``: a
    deleted metric chunk would otherwise read back as NaN, i.e. "not computed"."""
    sums = {}
    if "metrics" in store.group:
        for method, group in store.group["metrics"].groups():
            for name, arr in group.arrays():
                sums[f"metrics/{method}/{name}"] = digest(np.asarray(arr[:]))
    store.group.attrs["metric_digests"] = sums


def create_store(path: Path, manifest: dict[str, Any], n_batches: int) -> Store:
    """A new, empty store (the caller checked that nothing is there).

    Built in a temporary sibling folder and renamed into place, so a kill during creation
    leaves either no store or a complete empty one, never a half-made one.
    """
    for stale in path.parent.glob(f".{path.name}.creating-*"):  # from an earlier kill
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
    group = zarr.open_group(str(tmp), mode="w")
    group.attrs[_KEY] = json.loads(json.dumps(manifest))
    group.create_array(
        "done", shape=(n_batches,), chunks=(1,), dtype=bool, fill_value=False, config=_CONFIG
    )
    group.create_array("records", shape=(n_batches,), chunks=(1,), dtype=str, fill_value="")
    os.rename(tmp, path)
    return Store(zarr.open_group(str(path), mode="r+"), path)


def remove_partials(path: Path) -> int:
    """Delete temporary chunk files a kill left behind (zarr writes ``*.partial`` then renames)."""
    count = 0
    for p in path.rglob("*.partial"):
        p.unlink(missing_ok=True)
        count += 1
    return count


def lock_key(path: Path) -> Path:
    """The path a store is locked (and written) under: symlinks, ``..`` and relative parts
    resolved, so that every alias of one store takes the same lock."""
    return Path(os.path.realpath(path))


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store at ``path`` while writing, so two runs never mix
    batches in one store. ``flock`` locks die with their process (a SIGKILL frees it); the
    lock file sits next to the store's resolved path (``.<name>.lock``), outside the zarr
    tree, so a symlink and its target share one lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    path = lock_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise StoreError(
                describe(
                    f"store {path}",
                    "no other run writing to it",
                    f"a lock held by {holder}",
                    "Wait for that run to finish or stop it (finished batches are kept), "
                    "or write to another store.",
                )
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
