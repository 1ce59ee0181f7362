"""The one writer of result stores: creation (or reopening to resume), one batch at a time,
the run record, trust scores and their table, and the writer lock.

Every write of a store goes through this module; a run opens its store once, for writing
(:func:`open_for_run`). See :mod:`explainer.dataset.layout` for the layout and
:mod:`explainer.dataset.store` for why a kill never leaves a batch half-written.
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
from ..metrics.findings import Findings
from ..metrics.scores import Scores
from .integrity import batch_record, data_digest, digest
from .layout import (
    DONE,
    FINDINGS_KEY,
    LAST_RUN_KEY,
    MANIFEST_KEY,
    METRIC_DIGESTS_KEY,
    METRICS,
    RECORDS,
    TRUST_KEY,
    findings_to_json,
    metrics_path,
    scores_to_json,
)
from .store import Store, open_store

__all__ = [
    "open_for_run",
    "create_store",
    "write_batch",
    "mark_pending",
    "record_run",
    "read_only",
    "write_findings",
    "write_metric",
    "seal_metrics",
    "write_trust",
    "remove_partials",
    "lock_key",
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
    store.group[RECORDS][b] = batch_record(start, stop, digest, written)
    store.group[DONE].with_config(_CONFIG)[b] = True
    store._verified.clear()


def mark_pending(store: Store, batches: list[int]) -> None:
    """Forget finished batches (damaged ones), so that the run recomputes them."""
    done = store.group[DONE].with_config(_CONFIG)
    for b in batches:
        done[b] = False
        store.group[RECORDS][b] = ""
    store._verified.clear()


def record_run(store: Store, backend: str, batches: int, seconds: float) -> None:
    """Record how the latest run went (``attrs["last_run"]``): backend, batches computed, time."""
    store.group.attrs[LAST_RUN_KEY] = {
        "backend": backend,
        "batches": batches,
        "seconds": round(seconds, 3),
    }


def read_only(store: Store) -> Store:
    """A read-only view of a store this process has just written (nothing re-verified: every
    batch was written, or checked on resume, under the writer lock)."""
    return Store(zarr.open_group(str(store.path), mode="r"), store.path)


def write_metric(
    store: Store, method: str, metric: str, rows: np.ndarray, values: np.ndarray
) -> None:
    """Write one metric's per-sample values at the store rows ``rows`` (NaN elsewhere)."""
    name = metrics_path(method, metric)
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
    if METRICS in store.group:
        for method, group in store.group[METRICS].groups():
            for name, arr in group.arrays():
                sums[metrics_path(method, name)] = digest(np.asarray(arr[:]))
    store.group.attrs[METRIC_DIGESTS_KEY] = sums


def write_trust(store: Store, scores: Scores, rows: np.ndarray) -> None:
    """Write trust scores of the store rows ``rows`` into ``store``, under the writer lock:
    per-sample values (``metrics/<method>/<metric>``, for metrics with one value per
    sample and no mask), their checksums, and the whole table (``attrs["trust"]``) for
    reports. ``store`` is written directly when it is open for writing, else reopened so."""
    with writer_lock(store.path):
        writable = store if not store.group.read_only else open_store(store.path, mode="r+")
        keys = dict.fromkeys((r["method"], r["metric"]) for r in scores.rows if r["mask"] is None)
        for method, metric in keys:
            values = scores.values(method, metric)
            if len(values) == len(rows):
                write_metric(writable, method, metric, rows, values)
        seal_metrics(writable)
        writable.group.attrs[TRUST_KEY] = scores_to_json(scores, rows)


def write_findings(store: Store, found: Findings, rows: dict[str, list[int]]) -> None:
    """Write what ``ex.findings(store)`` found (``attrs["findings"]``) under the writer
    lock; ``rows``: the store rows explained and held out."""
    with writer_lock(store.path):
        writable = store if not store.group.read_only else open_store(store.path, mode="r+")
        writable.group.attrs[FINDINGS_KEY] = findings_to_json(found, rows)


def create_store(path: Path, manifest: dict[str, Any], n_batches: int) -> Store:
    """A new, empty store (the caller checked that nothing is there).

    Built in a temporary sibling folder and renamed into place, so a kill during creation
    leaves either no store or a complete empty one, never a half-made one.
    """
    for stale in path.parent.glob(f".{path.name}.creating-*"):  # from an earlier kill
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
    group = zarr.open_group(str(tmp), mode="w")
    group.attrs[MANIFEST_KEY] = json.loads(json.dumps(manifest))
    group.create_array(
        DONE, shape=(n_batches,), chunks=(1,), dtype=bool, fill_value=False, config=_CONFIG
    )
    group.create_array(RECORDS, shape=(n_batches,), chunks=(1,), dtype=str, fill_value="")
    os.rename(tmp, path)
    return Store(zarr.open_group(str(path), mode="r+"), path)


def open_for_run(
    path: Path, manifest: dict[str, Any], n_batches: int, *, resume: bool, overwrite: bool
) -> tuple[Store, bool]:
    """The store a run writes, opened once for writing, and whether it was just created.

    Call under :func:`writer_lock`. With ``overwrite``, an existing store is deleted first
    (after checking that it is one: nothing else is ever deleted); with ``resume``, an
    existing store is reopened as it is (the caller checks that it fits); otherwise an
    existing path is refused.
    """
    if path.exists() and overwrite:
        open_store(path, verify="none")  # refuses to delete anything that is not one of ours
        shutil.rmtree(path)
    if not path.exists():
        return create_store(path, manifest, n_batches), True
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
    return open_store(path, mode="r+", verify="none"), False


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
