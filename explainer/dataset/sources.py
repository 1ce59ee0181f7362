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

from ..errors import InputError, describe
from .images import ImageFolder

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


def _label(y: Any, what: str = "dataset label") -> int:
    """An int label (-1: none). Integral floats (1.0, as pandas gives) are accepted; 1.7,
    NaN or a bool are refused rather than truncated."""
    if y is None:
        return -1
    y = y.item() if isinstance(y, torch.Tensor | np.ndarray) and np.size(y) == 1 else y
    if isinstance(y, int | np.integer) and not isinstance(y, bool | np.bool_):
        return int(y)
    if isinstance(y, float | np.floating) and np.isfinite(y) and float(y).is_integer():
        return int(y)
    raise InputError(
        describe(
            what,
            "an integer class index (or -1 / no label)",
            repr(y),
            "Give integer labels, e.g. y.astype(int) for integral floats; a label of "
            "1.7 or NaN is not a class.",
        )
    )


def _split(item: Any) -> tuple[torch.Tensor, int]:
    if isinstance(item, tuple | list):
        if not item:
            raise InputError(
                describe(
                    "dataset item",
                    "x or (x, label)",
                    "an empty tuple",
                    "Make __getitem__ return the input, or (input, label).",
                )
            )
        x = _as_tensor(item[0], "dataset item[0]")
        label = _label(item[1]) if len(item) > 1 else -1
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
        return _as_tensor(item[key], f"item[{key!r}]"), _label(item.get("label"))
    return _as_tensor(item, "dataset item"), -1


def _floating(x: torch.Tensor) -> torch.Tensor:
    """Inputs as float32; integer, bool and complex data are refused as ``ex.explain``
    refuses them (a uint8 image explained as 0..255 floats is not what the model saw)."""
    if not x.is_floating_point():
        fix = (
            "Scale to floats with the model's preprocessing, e.g. x.float() / 255 (or "
            "ImageFolder, which does)."
            if x.dtype == torch.uint8
            else "Convert with x.float(), using the preprocessing the model was trained with."
        )
        raise InputError(
            describe("dataset inputs", "floating-point values", f"dtype {x.dtype}", fix)
        )
    return x.to(torch.float32)


def collate(items: Sequence[Any], token_ids: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset items -> (float32 batch, int64 labels with -1 for "no label"); with
    ``token_ids`` (a text model's data) an int64 batch of token ids."""
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
    x = torch.stack([x for x, _ in pairs])
    x = _ids(x) if token_ids else _floating(x)
    return x, torch.tensor([y for _, y in pairs], dtype=torch.int64)


def _ids(x: torch.Tensor) -> torch.Tensor:
    """Token ids as int64; floats are refused (a text model explains ids, not vectors)."""
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise InputError(
            describe(
                "dataset inputs of a text model",
                "integer token ids (N, L), or a list of strings",
                f"dtype {x.dtype}",
                "Pass the texts, or the ids the tokenizer gave.",
            )
        )
    return x.long()


class _Items(Dataset):
    """The user's dataset, with any failure of ``__getitem__`` turned into an InputError
    naming the index (a ``len()`` larger than the data is the usual cause)."""

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[i]
        except InputError:
            raise
        except Exception as err:  # the user's code: any error, named and chained
            raise InputError(
                describe(
                    f"dataset item {i}",
                    f"an item for every index below len(data) = {self.n}",
                    f"{type(err).__name__}: {err}",
                    "Check the dataset's __getitem__, and that __len__ counts only the "
                    "items it can return.",
                )
            ) from err


@dataclass
class Source:
    """Indexable data with a known length; ``batches(pending)`` yields (x, labels)."""

    dataset: Any
    n: int
    kind: str
    batch_size: int | None = None  # fixed by a DataLoader
    num_workers: int = 0
    preprocessing: dict | None = None
    token_ids: bool = False  # a text model's data: int64 ids, not float inputs

    def collate(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return collate(items, self.token_ids)

    @property
    def items(self) -> _Items:
        return _Items(self.dataset, self.n)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.collate([self.items[0]])[0].shape[1:])

    def rows(self, b: int, batch_size: int) -> range:
        return range(b * batch_size, min((b + 1) * batch_size, self.n))

    def load(self, b: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.collate([self.items[i] for i in self.rows(b, batch_size)])

    def batches(
        self, pending: Sequence[int], batch_size: int, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not pending:
            return iter(())
        loader = DataLoader(
            self.items,
            batch_sampler=[list(self.rows(b, batch_size)) for b in pending],
            num_workers=num_workers,
            collate_fn=self.collate,
            # its own generator: a DataLoader otherwise draws its worker seed from the
            # global torch RNG, which the caller's code would see advance
            generator=torch.Generator().manual_seed(0),
        )
        return iter(loader)

    def fingerprint(self) -> str:
        """Length, shape and the bytes of the first and last samples: cheap, and enough to
        tell another dataset from this one when resuming."""
        h = hashlib.sha256(f"{self.n}".encode())
        for i in sorted({0, self.n - 1}):
            x, y = self.collate([self.items[i]])
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


def _labels(labels: Any, n: int) -> torch.Tensor:
    y = _as_tensor(labels, "`labels`")
    if y.ndim != 1 or len(y) != n:
        raise InputError(
            describe(
                "`labels`",
                f"one label per sample ({n})",
                f"shape {tuple(y.shape)}",
                "Pass a 1-D array with one integer label per input row.",
            )
        )
    if y.is_floating_point():
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise InputError(
                describe(
                    "`labels`",
                    "integer class indices",
                    f"{y[i].item()!r} at index {i}",
                    "Give integer labels; a label of 1.7 or NaN is not a class.",
                )
            )
    elif y.dtype == torch.bool or y.is_complex():
        raise InputError(
            describe("`labels`", "integer class indices", f"dtype {y.dtype}", "Use y.long().")
        )
    return y.to(torch.int64)


def as_source(data: Any, labels: Any = None, token_ids: bool = False) -> Source:
    """Wrap what the user passed; raise a clear InputError for anything else.

    Args:
        data: an image folder path, a DataLoader without shuffling, an array/tensor
            (N, ...) of floats, or a map-style Dataset (``len`` and indexing).
        labels: with array data only, one integer label per sample.
        token_ids: the data are a text model's token ids (N, L) (integers), not floats.

    Example:
        >>> import torch
        >>> src = as_source(torch.zeros(5, 3), labels=torch.tensor([0, 1, 0, 1, 1]))
        >>> src.kind, src.n, src.sample_shape, src.load(1, 2)[1].tolist()
        ('array', 5, (3,), [0, 1])
    """
    if isinstance(data, str | os.PathLike):
        folder = ImageFolder(data)
        return Source(folder, len(folder), "image_folder", preprocessing=folder.preprocessing)
    if isinstance(data, DataLoader):
        return _loader_source(data, labels)
    if isinstance(data, torch.Tensor | np.ndarray):
        return _array_source(data, labels, token_ids)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return _dataset_source(data, labels)
    raise InputError(
        describe(
            "`data`",
            "a torch Dataset, a DataLoader, an array/tensor (N, ...) or an image folder path",
            type(data).__name__,
            "Wrap iterable-only data in a map-style Dataset (it needs len and indexing).",
        )
    )


def _loader_source(loader: DataLoader, labels: Any) -> Source:
    """A DataLoader's dataset, with its batch size and workers; a shuffling one is refused."""
    if isinstance(loader.sampler, RandomSampler):
        raise InputError(
            describe(
                "`data`",
                "a DataLoader that keeps the dataset's order",
                "shuffle=True",
                "Pass the Dataset itself, or a DataLoader with shuffle=False: resuming "
                "needs batch b to hold the same samples every run.",
            )
        )
    src = as_source(loader.dataset, labels)
    src.batch_size = loader.batch_size
    src.num_workers = loader.num_workers
    return src


def _array_source(data: torch.Tensor | np.ndarray, labels: Any, token_ids: bool = False) -> Source:
    """An in-memory batch (N, ...) of floats (or of token ids), with optional labels."""
    x = _as_tensor(data, "`data`")
    if x.ndim < 2 or len(x) == 0:
        raise InputError(
            describe(
                "`data`",
                "a batch (N, ...) with N >= 1",
                f"shape {tuple(x.shape)}",
                "Stack the samples along a first (batch) axis, e.g. x[None] for one.",
            )
        )
    (_ids if token_ids else _floating)(x[:1])
    y = None if labels is None else _labels(labels, len(x))
    return Source(ArrayDataset(x, y), len(x), "array", token_ids=token_ids)


def _dataset_source(data: Any, labels: Any) -> Source:
    """A map-style dataset (its items carry their labels) of at least one item."""
    if labels is not None:
        raise InputError(
            describe(
                "`labels`",
                "labels only with array data",
                f"labels beside a {type(data).__name__}",
                "Return (input, label) pairs from the Dataset instead.",
            )
        )
    n = len(data)
    if not isinstance(n, int) or n < 0:
        raise InputError(
            describe(
                "len(data)",
                "a count (an integer >= 0)",
                repr(n),
                "Make the Dataset's __len__ return the number of items as an int.",
            )
        )
    if n == 0:
        raise InputError(
            describe(
                "`data`",
                "at least one sample",
                "an empty dataset",
                "Check the dataset's path or filter: its len() is 0.",
            )
        )
    prep = getattr(data, "preprocessing", None)
    return Source(data, n, type(data).__name__, preprocessing=prep)
