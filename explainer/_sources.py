"""Data for explain_dataset: arrays, torch Datasets, DataLoaders and image folders, read in
fixed batches by index so that batch ``b`` always holds the same rows."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from .errors import InputError, describe

__all__ = ["as_source", "ArrayDataset", "Source", "collate"]


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if hasattr(value, "__array__"):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(value)))
    raise InputError(
        describe(
            what,
            "a tensor or array (or an (input, label) pair of them)",
            type(value).__name__,
            "Make the Dataset's __getitem__ return a tensor, or (tensor, label).",
        )
    )


def _split(item: Any) -> tuple[torch.Tensor, int]:
    if isinstance(item, tuple | list):
        if not item:
            raise InputError(describe("dataset item", "x or (x, label)", "an empty tuple", ""))
        x = _as_tensor(item[0], "dataset item[0]")
        label = -1
        if len(item) > 1:
            y = item[1]
            y = y.item() if isinstance(y, torch.Tensor | np.ndarray) and np.size(y) == 1 else y
            if isinstance(y, int | np.integer) and not isinstance(y, bool):
                label = int(y)
        return x, label
    if isinstance(item, dict):
        key = next((k for k in ("image", "input", "x", "inputs") if k in item), None)
        if key is None:
            raise InputError(
                describe(
                    "dataset item",
                    'a dict with an "image" or "input" entry',
                    f"keys {sorted(item)}",
                    "Return (x, label) from __getitem__.",
                )
            )
        return _as_tensor(item[key], f"item[{key!r}]"), int(item.get("label", -1))
    return _as_tensor(item, "dataset item"), -1


def collate(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset items -> (float32 batch, int64 labels with -1 for "no label")."""
    pairs = [_split(item) for item in items]
    shapes = {tuple(x.shape) for x, _ in pairs}
    if len(shapes) != 1:
        raise InputError(
            describe(
                "dataset items",
                "inputs of one shape (a batch is stacked)",
                f"shapes {sorted(shapes)[:3]}",
                "Resize the inputs (e.g. ImageFolder(root, size=224)).",
            )
        )
    x = torch.stack([x for x, _ in pairs]).to(torch.float32)
    return x, torch.tensor([y for _, y in pairs], dtype=torch.int64)


@dataclass
class Source:
    """Indexable data with a known length; ``batches(pending)`` yields (x, labels)."""

    dataset: Any
    n: int
    kind: str
    batch_size: int | None = None  # fixed by a DataLoader
    num_workers: int = 0
    preprocessing: dict | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(collate([self.dataset[0]])[0].shape[1:])

    def rows(self, b: int, batch_size: int) -> range:
        return range(b * batch_size, min((b + 1) * batch_size, self.n))

    def load(self, b: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return collate([self.dataset[i] for i in self.rows(b, batch_size)])

    def batches(
        self, pending: Sequence[int], batch_size: int, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not pending:
            return iter(())
        loader = DataLoader(
            self.dataset,
            batch_sampler=[list(self.rows(b, batch_size)) for b in pending],
            num_workers=num_workers,
            collate_fn=collate,
        )
        return iter(loader)

    def fingerprint(self) -> str:
        """Length, shape and the bytes of the first and last samples: cheap, and enough to
        tell another dataset from this one when resuming."""
        h = hashlib.sha256(f"{self.n}".encode())
        for i in sorted({0, self.n - 1}):
            x, y = collate([self.dataset[i]])
            h.update(str(tuple(x.shape)).encode())
            h.update(x.numpy().tobytes())
            h.update(y.numpy().tobytes())
        return h.hexdigest()[:16]


class ArrayDataset(Dataset):
    """(x[i], label[i]) pairs of an in-memory batch; label -1 without labels."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.x, self.labels = x, labels

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], int(self.labels[i]) if self.labels is not None else -1)


def as_source(data: Any, labels: Any = None) -> Source:
    """Wrap what the user passed; raise a clear InputError for anything else."""
    if isinstance(data, str | os.PathLike):
        from .images import ImageFolder

        folder = ImageFolder(data)
        return Source(folder, len(folder), "image_folder", preprocessing=folder.preprocessing)
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            raise InputError(
                describe(
                    "`data`",
                    "a DataLoader that keeps the dataset's order",
                    "shuffle=True",
                    "Pass the Dataset itself, or a DataLoader with shuffle=False: resuming "
                    "needs batch b to hold the same samples every run.",
                )
            )
        src = as_source(data.dataset, labels)
        src.batch_size = data.batch_size
        src.num_workers = data.num_workers
        return src
    if isinstance(data, torch.Tensor | np.ndarray):
        x = _as_tensor(data, "`data`")
        if x.ndim < 2 or len(x) == 0:
            raise InputError(
                describe("`data`", "a batch (N, ...) with N >= 1", f"shape {tuple(x.shape)}", "")
            )
        y = None
        if labels is not None:
            y = _as_tensor(labels, "`labels`").reshape(-1).to(torch.int64)
            if len(y) != len(x):
                raise InputError(
                    describe("`labels`", f"{len(x)} labels", f"{len(y)}", "One per sample.")
                )
        return Source(ArrayDataset(x, y), len(x), "array")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        n = len(data)
        if n == 0:
            raise InputError(describe("`data`", "at least one sample", "an empty dataset", ""))
        prep = getattr(data, "preprocessing", None)
        return Source(data, n, type(data).__name__, preprocessing=prep)
    raise InputError(
        describe(
            "`data`",
            "a torch Dataset, a DataLoader, an array/tensor (N, ...) or an image folder path",
            type(data).__name__,
            "Wrap iterable-only data in a map-style Dataset (it needs len and indexing).",
        )
    )
