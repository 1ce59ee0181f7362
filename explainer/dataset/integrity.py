"""What a store's batches must hold, and the checks that refuse to serve anything else.

Every batch is committed with a record (``records[b]``, JSON, its own chunk, written just
before the ``done`` flag): the rows it covers, a digest of the data as it was read (the
inputs and labels), and per array the shape, dtype and SHA-256 of the rows written. So:

* a deleted, truncated or altered chunk is found when the batch is read (a missing chunk
  would read back as fill values, NaN, without a word from zarr) and reported as a
  :class:`~explainer.errors.StoreError` naming the batch;
* ``open_store`` does a quick structural check (arrays, records and chunk files present,
  numeric dtypes), ``Store.damaged_batches(full=True)`` hashes everything;
* resuming recomputes every damaged batch, and refuses a dataset whose rows differ from
  what finished batches were computed on (their data digests are compared).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError, describe

__all__ = [
    "digest",
    "data_digest",
    "batch_record",
    "check_rows",
    "parse_record",
]


def digest(value: np.ndarray) -> str:
    """SHA-256 (32 hex digits) of an array's dtype, shape and bytes."""
    value = np.ascontiguousarray(value)
    h = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    h.update(value.tobytes())
    return h.hexdigest()[:32]


def data_digest(x: np.ndarray, labels: np.ndarray) -> str:
    """The digest of a batch's data as read (float32 inputs and int64 labels)."""
    return digest(np.asarray(x, dtype=np.float32)) + digest(np.asarray(labels, dtype=np.int64))


def batch_record(start: int, stop: int, data: str, written: Mapping[str, np.ndarray]) -> str:
    """The JSON record of a committed batch: rows, data digest, per array shape + digest."""
    arrays = {
        name: {"shape": list(value.shape), "sha256": digest(value)}
        for name, value in sorted(written.items())
    }
    return json.dumps({"rows": [start, stop], "data": data, "arrays": arrays}, sort_keys=True)


def parse_record(text: Any, path: Path, b: int) -> dict[str, Any]:
    """A batch record, or StoreError naming the batch if it is missing or malformed."""
    try:
        record = json.loads(str(text)) if text else None
    except ValueError:
        record = None
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("arrays"), dict)
        and isinstance(record.get("rows"), list)
        and isinstance(record.get("data"), str)
    )
    if not ok:
        raise damaged(path, [b], "its commit record is missing or unreadable")
    return record


def damaged(path: Path, batches: list[int], why: str) -> StoreError:
    shown = ", ".join(str(b) for b in batches[:8]) + (" ..." if len(batches) > 8 else "")
    return StoreError(
        describe(
            f"store {path}",
            "intact finished batches",
            f"damaged batch{'es' if len(batches) > 1 else ''} {shown} ({why})",
            "Resume the run (ex.explain_dataset(..., resume=True) or the same `explainer "
            "explain` command): damaged batches are recomputed and the rest is kept.",
        )
    )


def check_rows(
    value: np.ndarray, entry: Mapping[str, Any], fill: Any, path: Path, b: int, name: str
) -> None:
    """Compare a batch's rows of one array (as read) with what its record says was written.

    Ragged arrays may have grown since (kernel SHAP's ``feature_values``): the recorded
    shape is compared, and whatever lies beyond it must be the fill value."""
    shape = tuple(int(s) for s in entry.get("shape", ()))
    if len(shape) != value.ndim or any(s > v for s, v in zip(shape, value.shape, strict=True)):
        raise damaged(path, [b], f"{name} has shape {value.shape}, recorded {shape}")
    if tuple(value.shape) != shape:
        written = value[tuple(slice(0, s) for s in shape)]
        rest = value.copy()
        rest[tuple(slice(0, s) for s in shape)] = fill
        padding_ok = (
            np.isnan(rest).all()
            if isinstance(fill, float) and np.isnan(fill)
            else (rest == fill).all()
        )
        if not padding_ok:
            raise damaged(path, [b], f"{name} holds values outside what was written")
    else:
        written = value
    if digest(written) != entry.get("sha256"):
        raise damaged(path, [b], f"{name} does not match its checksum")
