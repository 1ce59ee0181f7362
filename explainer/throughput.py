"""Chunk sizes chosen by measured throughput, under the memory budget.

The memory budget says how many rows *may* go through the network at once
(:func:`~explainer._runtime.chunk_size`); it does not say how many *should*. On a
ResNet-18 at 224 px on 2 CPU cores a forward+backward cost 36-38 ms a row in chunks of
4-32 rows and 50-55 ms a row in chunks of 64-82 (caches overflow), while a small MLP runs
fastest in the largest chunk (per-call overhead dominates). The best size depends on the
model, the input shape and the machine's load, so it is measured, not fixed:

- The sizes tried are the powers of two from 8 below the largest the budget allows, and
  that largest.
- The work itself is the measurement: the first chunks of a kind of pass are run at the
  untried sizes, smallest first, timed (seconds per row), and every later chunk at the
  fastest size seen. Nothing is computed twice. Trying stops at the first size that is not
  at least 5% faster per row than the one before it: a larger chunk must earn its memory.
  (Stopping only at a slower size went on through flat stretches of the curve: a ResNet-18
  at 224 px costs about the same per row from 8 to 32 rows, and timing noise sent the
  first call of a process to 32 or 64-row chunks, twice the peak memory of 8 for nothing.)
- The first chunk a network runs for a kind of pass is not counted (one-time costs:
  allocator growth, kernels chosen per shape); neither is a remainder chunk shorter than
  the size planned.
- What was measured is kept per network (weakly: a dead network's entry goes with it),
  per kind of pass, sample shape, dtype and device, for the life of the process; each call
  records the sizes its passes ran at in its manifest (``manifest["chunks"]``).

A method's result does not depend on the chunk sizes beyond rounding: rows are independent
in eval mode and the methods accumulate them in row order.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Tuning", "candidate_sizes", "tuned_chunks", "one_chunk"]

SMALLEST = 8  # no smaller size is tried unless the budget allows no more
KEEP = 3  # measurements kept per size (their median is the size's time per row)
FASTER = 1.05  # a size must be this much faster per row than the one before to go on


def one_chunk(total: int, cap: int) -> bool:
    """Whether :func:`tuned_chunks` runs ``total`` rows in one chunk whatever was measured:
    they fit the budget's ``cap`` and are no more than the smallest size tried.

    Example:
        >>> one_chunk(4, 82), one_chunk(64, 82), one_chunk(4, 2)
        (True, False, False)
    """
    return total <= min(cap, SMALLEST)


def candidate_sizes(cap: int) -> list[int]:
    """The chunk sizes tried under a budget that allows ``cap`` rows, smallest first.

    Example:
        >>> candidate_sizes(82), candidate_sizes(6), candidate_sizes(16)
        ([8, 16, 32, 64, 82], [6], [8, 16])
    """
    cap = max(1, int(cap))
    first = SMALLEST.bit_length() - 1
    return [s for s in (2**k for k in range(first, cap.bit_length())) if s < cap] + [cap]


@dataclass
class _Record:
    per_row: dict[int, list[float]] = field(default_factory=dict)  # size -> s per row
    warmed: bool = False
    stopped_at: int | None = None  # sizes above it are not tried (not faster than below)

    def time_of(self, size: int) -> float:
        return statistics.median(self.per_row[size])

    def choose(self, cap: int, remaining: int) -> int:
        """The size of the next chunk: an untried candidate that fits, else the fastest."""
        sizes = candidate_sizes(cap)
        if remaining <= sizes[0]:
            return remaining  # one chunk does it all: nothing to learn from splitting it
        stop = self.stopped_at
        for s in sizes:
            if s not in self.per_row and s <= remaining and (stop is None or s <= stop):
                return s
        tried = [s for s in sizes if s in self.per_row]
        if not tried:
            return min(cap, remaining)
        return min(min(tried, key=self.time_of), remaining)

    def add(self, size: int, seconds_per_row: float) -> None:
        first = size not in self.per_row
        self.per_row.setdefault(size, []).append(seconds_per_row)
        del self.per_row[size][:-KEEP]
        smaller = [s for s in self.per_row if s < size]
        if first and smaller and self.stopped_at is None:
            if FASTER * seconds_per_row > self.time_of(max(smaller)):
                self.stopped_at = size

    def record(self) -> dict[str, Any]:
        return {str(s): round(self.time_of(s) * 1e3, 4) for s in sorted(self.per_row)}


_RECORDS: weakref.WeakKeyDictionary[Any, dict[tuple, _Record]] = weakref.WeakKeyDictionary()


@dataclass
class Tuning:
    """What a chunked pass is, for the measurements of :func:`tuned_chunks`.

    Attributes:
        net: the network (or the object a per-call wrapper names in ``cost_identity``).
        kind: the pass, e.g. "forward+backward" or "deep_shap pairs".
        sample: one row of the pass (its shape, dtype and device are part of the key).
        log: where the sizes used are written (a call's ``KnownOutputs.chunking``), or None.
    """

    net: Any
    kind: str
    sample: torch.Tensor
    log: dict[str, Any] | None = None

    @classmethod
    def of(cls, model: Any, kind: str, sample: torch.Tensor, runtime: Any) -> Tuning:
        """The tuning of ``model``'s pass ``kind`` on rows like ``sample`` in a call whose
        ``runtime.outputs`` (if any) keeps the log."""
        owner, tag = cost_identity(model.net)
        known = getattr(runtime, "outputs", None)
        log = None if known is None else known.chunking
        return cls(owner, "/".join(map(str, (*tag, kind))) if tag else kind, sample, log)

    def _record(self) -> _Record:
        s = self.sample
        key = (self.kind, tuple(s.shape), s.dtype, s.device)
        try:
            table = _RECORDS.setdefault(self.net, {})
        except TypeError:  # not weakly referenceable: measured per call
            table = {}
        return table.setdefault(key, _Record())


def cost_identity(net: Any) -> tuple[Any, tuple]:
    """Whose measurements a network's passes share, and a tag: a wrapper made per call (a
    text model's EmbeddingInput) names the network it runs in its ``cost_identity``; any
    other network is its own (looked up on the class: an ``nn.Module`` instance answers a
    missing attribute through a slow ``__getattr__``)."""
    if hasattr(type(net), "cost_identity"):
        return net.cost_identity
    return net, ()


def tuned_chunks(
    total: int, cap: int, tuning: Tuning | None, between: Callable[[], None] | None = None
) -> Iterator[slice]:
    """Consecutive slices covering ``range(total)``, each at most ``cap`` long, sized by
    measured throughput (see the module docstring); ``tuning=None``: all of ``cap``. The
    time between a slice being handed out and the next being asked for is its chunk's time,
    so the caller does a chunk's work in its loop body. ``between`` (the allocator's release
    of free memory) runs when there are several chunks: before a chunk of another size than
    the one before it, and after the last. Between chunks of one size it is not needed (the
    next chunk reuses the freed blocks: the peak is that of one chunk) and it cost much: a
    trim hands the pages back and the next chunk faults them in again (explain_dataset, IG
    on 64 px images, 256 images: 6.8 s with a trim after every chunk, 3.9 s without).

    Example:
        >>> [(p.start, p.stop) for p in tuned_chunks(5, 2, None)]
        [(0, 2), (2, 4), (4, 5)]
    """
    if tuning is None or one_chunk(total, cap):  # nothing to learn
        for start in range(0, total, cap):
            yield slice(start, min(start + cap, total))
        if cap < total and between is not None:
            between()
        return
    record = tuning._record()
    start, used, last = 0, {}, None
    while start < total:
        size = record.choose(cap, total - start)
        if last is not None and size != last and between is not None:
            between()
        began = time.perf_counter()
        yield slice(start, start + size)
        seconds = time.perf_counter() - began
        planned = size in candidate_sizes(cap)
        if not record.warmed:
            record.warmed = True
        elif planned:
            record.add(size, seconds / size)
        used[size] = used.get(size, 0) + 1
        start += size
        last = size
    if last is not None and last < total and between is not None:
        between()
    if tuning.log is not None and used:
        tuning.log[tuning.kind] = {
            "rows": max(used, key=lambda s: (used[s], s)),
            "cap": int(cap),
            "ms_per_row": record.record(),
        }
