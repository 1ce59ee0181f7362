"""What every method run shares: a progress bar and a memory budget that sets chunk sizes.

Methods that expand the batch (IG steps, SHAP samples, SmoothGrad noise) never materialize
the whole expansion: they ask :func:`chunk_size` how many rows fit in the budget. The budget
bounds the peak of everything the call allocates: what remains after the method's per-call
buffers (accumulators, baselines, attributions: ``fixed_bytes``) and the network's fixed
cost is divided by the measured cost of one more row (:func:`network_cost`: the peak bytes
of a forward+backward pass of *this* model at this input shape, plus the method's own
temporaries per row). A budget too small for one row raises InputError naming the minimum.
"""

from __future__ import annotations

import ctypes
import math
import platform
import re
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from tqdm.auto import tqdm

from ._checks import check_seed, has_gradient_path
from .errors import InputError, describe
from .model import Model
from .passes import KnownOutputs
from .throughput import Tuning, cost_identity, tuned_chunks

__all__ = [
    "Runtime",
    "RowCost",
    "default_memory_budget",
    "parse_bytes",
    "network_cost",
    "measured_cost",
    "ChunkRequest",
    "chunk_size",
    "check_budget",
    "check_expansion",
    "chunks",
    "allocator_slack",
    "release_free_memory",
    "forward_in_chunks",
    "format_bytes",
    "peak_bytes",
    "progress_bar",
    "progress_chunks",
    "Tuning",
    "input_gradients",
    "seeded_gradient",
    "bytes_per_sample",
    "seeded_generator",
    "accumulation_dtype",
    "accumulator",
]

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def default_memory_budget(
    device: torch.device | str | None = None,
    free_memory: Callable[[torch.device], int] | None = None,
) -> int:
    """A quarter of the memory available now, capped at 4 GiB (at least 256 MiB).

    Available memory is the host's (``MemAvailable``) for the CPU and for MPS (unified
    memory); on a CUDA device it is the device's free memory, read by ``free_memory``
    (default: ``torch.cuda.mem_get_info(device)[0]``; pass a reader to decide without a GPU).

    Example:
        >>> default_memory_budget("cuda:1", free_memory=lambda device: 8 * 2**30) == 2**31
        True
    """
    if device is None or (isinstance(device, str) and device == "cpu"):  # (no torch.device)
        available = _host_available_memory()
    elif (device := torch.device(device)).type == "cuda":
        available = int((free_memory or _cuda_free_memory)(device))
    else:
        available = _host_available_memory()
    return int(min(max(available // 4, 256 * 2**20), 4 * 2**30))


def _cuda_free_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device, as the driver reports them."""
    return int(torch.cuda.mem_get_info(device)[0])


_MEMINFO_TTL_S = 1.0  # how long a reading of /proc/meminfo is reused
_meminfo: list[float] = [-math.inf, 0]  # when it was read (monotonic seconds), the value


def _host_available_memory() -> int:
    """``MemAvailable`` from /proc/meminfo (read at most once a second: every call of a
    method asks, and the file costs ~35 µs to read); 8 GiB where it cannot be read."""
    now = time.monotonic()
    if now - _meminfo[0] > _MEMINFO_TTL_S:
        _meminfo[:] = [now, _read_available_memory()]
    return int(_meminfo[1])


def _read_available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def parse_bytes(value: Any, name: str = "memory_budget", none_means: str = "the default") -> int:
    """``536870912``, ``"512MB"``, ``"1.5 GiB"`` -> bytes (an int >= 1).

    Numbers and strings must give at least one whole byte: ``0``, ``"0"`` or ``"0.4"`` are
    refused, never read as "the default" (``None`` is that, for the callers that take it).
    Infinite, NaN and malformed values (``"1.2.3MB"``, ``"."``) raise InputError naming
    ``name``.

    Example:
        >>> parse_bytes("1.5 KiB"), parse_bytes(512)
        (1536, 512)
    """
    number: float | int | None = None
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        number = int(value)
    elif isinstance(value, float | np.floating):
        number = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMG]I?B|B)?\s*", value.upper())
        if m:
            unit, digits = _UNITS[m.group(2) or ""], m.group(1)
            try:  # whole numbers exactly; int() refuses absurdly long digit strings
                number = int(digits) * int(unit) if digits.isdigit() else float(digits) * unit
            except ValueError:
                number = None
    if number is not None and math.isfinite(number) and number >= 1:
        return int(number)
    raise InputError(
        describe(
            f"`{name}`",
            'a number of bytes >= 1 or a string like "512MB"',
            repr(value),
            f'Pass e.g. {name}="1GB", or None for {none_means}.',
        )
    )


@dataclass(frozen=True)
class Runtime:
    """Options every method receives: progress display and memory budget (bytes).

    The default budget (``memory_budget=0``) is that of ``device``: a CUDA model's is read
    from the GPU's free memory (:func:`default_memory_budget`).

    ``reserved`` is what a calling method already holds out of the budget (smoothgrad's
    noisy copies while its base method runs): :attr:`budget` is what is left of it.
    ``outputs``: the forwards one call has already run (:mod:`explainer.passes`), shared
    by ``ex.explain``, the method and its completeness gap so no pass runs twice.
    """

    progress: bool = True
    memory_budget: int = 0  # 0 means: use default_memory_budget(device)
    reserved: int = 0
    device: str | None = None  # where the model computes (None: the CPU): sets the default
    # the outputs this call's passes computed (see explainer.passes): None records nothing
    outputs: KnownOutputs | None = field(default=None, compare=False)

    @property
    def budget(self) -> int:
        return max(1, (self.memory_budget or default_memory_budget(self.device)) - self.reserved)

    @property
    def explicit(self) -> bool:
        """Whether the caller set the budget (only then is one too small for a row an error)."""
        return self.memory_budget > 0

    def recording(self) -> Runtime:
        """This runtime with a fresh record of the forwards a call runs (``outputs``); built
        directly, not by ``dataclasses.replace``, which costs 5 µs a call."""
        return Runtime(
            self.progress, self.memory_budget, self.reserved, self.device, KnownOutputs()
        )

    def reserve(self, nbytes: int, progress: bool | None = None) -> Runtime:
        """The runtime a nested call gets while ``nbytes`` of the budget are held by its caller."""
        return replace(
            self,
            reserved=self.reserved + max(0, int(nbytes)),
            progress=self.progress if progress is None else progress,
        )


@dataclass(frozen=True)
class RowCost:
    """Peak bytes a pass costs on a chunk of ``rows`` rows: ``fixed + rows * per_row`` live,
    plus what the allocator keeps resident (:func:`allocator_slack`), which grows with the
    largest single allocation (``largest`` bytes per row)."""

    per_row: int
    fixed: int = 0
    largest: int = 0

    def peak(self, rows: int) -> int:
        return self.fixed + rows * self.per_row + self.slack(rows, rows * self.per_row)

    def slack(self, rows: int, live: int) -> int:
        # the probes ran two rows: their blocks set the allocator's state as much as a chunk's
        return allocator_slack(max(rows, 2) * self.largest, live)

    def floor(self, extra_per_row: int = 0, rows: int = 1) -> int:
        """The peak of ``rows`` rows with ``extra_per_row`` more bytes a row (the minimum a
        budget must hold beyond the caller's fixed buffers)."""
        live = rows * (self.per_row + extra_per_row)
        return self.fixed + live + self.slack(rows, live)

    def rows_within(self, room: int, extra_per_row: int = 0) -> int:
        """The most rows whose peak, with ``extra_per_row`` more bytes a row, fits ``room``."""
        per = self.per_row + extra_per_row
        low, high = 0, max(0, room // max(per, 1))  # bisection: the peak grows with rows
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self.fits(mid, room, extra_per_row) else (low, mid - 1)
        return int(low)

    def fits(self, rows: int, room: int, extra_per_row: int = 0) -> bool:
        """Whether the peak of ``rows`` rows, ``extra_per_row`` more bytes a row, fits ``room``."""
        live = rows * (self.per_row + extra_per_row)
        return self.fixed + live + self.slack(rows, live) <= room


# glibc's malloc keeps freed memory resident: blocks under its mmap threshold come from the
# heap, the threshold rises to the largest such block freed (up to 32 MiB), free memory at
# the heap's top is given back only beyond twice the threshold, and freed blocks inside the
# heap stay (fragmentation). Measured on the anchor CNN at 224 px (benchmarks/bench_memory's
# net), a pass's RSS peak exceeded its live bytes by 50-110 MB at 5-14 rows a chunk: about
# the trim threshold plus an eighth of the live bytes. Between chunks the free memory is
# released (malloc_trim), so one chunk's leftovers do not add to the next.
_GLIBC = platform.libc_ver()[0] == "glibc"
_MMAP_THRESHOLD_MAX = 32 * 2**20
_FRAGMENTATION = 0.125
_LIBC = None
if _GLIBC:
    try:
        _LIBC = ctypes.CDLL(None)
        _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        _LIBC = None


def allocator_slack(largest: int, live: int = 0) -> int:
    """Bytes the C allocator may keep resident beyond the ``live`` ones while blocks of up to
    ``largest`` bytes are allocated and freed: on glibc twice its dynamic mmap threshold and
    an eighth of the live bytes for fragmentation (0 with other allocators)."""
    if not _GLIBC:
        return 0
    return 2 * min(int(largest), _MMAP_THRESHOLD_MAX) + int(_FRAGMENTATION * live)


def release_free_memory() -> None:
    """Give the heap's free memory back to the system (glibc ``malloc_trim``; microseconds
    when little is free), so one chunk's freed blocks do not stay resident into the next."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_CONVOLUTIONS = {"aten::convolution", "aten::convolution_backward"}
_CHANNEL_BLOCK = 16  # oneDNN's widest blocked layout (AVX-512): channels padded to 16


def _blocked_bytes(t: torch.Tensor) -> int:
    """Bytes of a copy of ``t`` with its channel dimension padded to the layout block."""
    c = max(int(t.shape[1]), 1)
    return t.numel() // c * (-(-c // _CHANNEL_BLOCK) * _CHANNEL_BLOCK) * t.element_size()


class _AllocationTracker(TorchDispatchMode):
    """Bytes of the tensors that operators allocate while active: now, and at the peak.

    Every non-aliasing operator output is a fresh allocation; it counts until its storage
    is freed (storages keep their Python object while alive, so a weak finalizer sees the
    free). Convolutions also allocate buffers no operator returns: oneDNN reorders tensors
    whose channels are not a multiple of its block into a padded copy (measured: a 3->8
    channel conv at 224 px allocated two such copies, 40% of its row's peak), so each
    convolution adds the padded copies of such arguments and outputs at its moment. That
    errs on the safe side: where oneDNN reorders nothing (a stride-2 3->8 conv at 224 px)
    it counts 3.7x the true peak; on the anchor CNN (3->32 channels) it is exact.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0
        self.largest = 0  # the largest single allocation

    def _release(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        if not any(r.alias_info is not None for r in schema.returns):
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    key = storage.data_ptr()
                    if key and key not in self.live:
                        self.live[key] = storage.nbytes()
                        self.now += storage.nbytes()
                        self.largest = max(self.largest, storage.nbytes())
                        weakref.finalize(storage, self._release, key)
        hidden = 0
        if schema.name in _CONVOLUTIONS:
            hidden = sum(
                _blocked_bytes(t)
                for t in tree_flatten((args, kwargs, out))[0]
                if isinstance(t, torch.Tensor) and t.ndim >= 3 and t.shape[1] % _CHANNEL_BLOCK
            )
        self.peak = max(self.peak, self.now + hidden)
        return out


def peak_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes that operators allocate while ``run()`` runs (tensors that existed before,
    such as its inputs and the weights, are not counted), measured on this call."""
    return _probe(run)[0]


def _probe(run: Callable[[], Any]) -> tuple[int, int]:
    """Peak bytes allocated while ``run()`` runs, and the largest single allocation."""
    with _AllocationTracker() as tracker:
        run()
    release_free_memory()
    return tracker.peak, tracker.largest


# Per network (weakly held, so a dead network's entry cannot be reused by a new one that
# gets the same id), then per pass kind, sample shape and dtype: the cost, and whether it
# was fitted on two probes (else it is the one-row probe's, taken as the cost per row).
_COST_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, tuple[RowCost, bool]]] = (
    weakref.WeakKeyDictionary()
)


def measured_cost(
    model: Model,
    sample: torch.Tensor,
    kind: str,
    run_rows: Callable[[torch.Tensor], Any],
    runtime: Runtime | None = None,
) -> RowCost:
    """Cost of ``run_rows(rows)`` on a chunk of copies of ``sample``, measured by
    :func:`peak_bytes` (the rows themselves not counted) and cached per ``kind`` and shape.

    One row is probed first. A second probe of two rows separates the per-row cost from
    the fixed one, but it is itself an allocation under the budget: it is made only when the
    budget the caller set (if any) holds three one-row costs. Otherwise the one-row cost is
    taken as the cost per row (an upper bound when the fixed part is >= 0), and chunks will
    be of a row or two anyway.
    """
    # A wrapper made per call (a text model's EmbeddingInput) names the network it runs and
    # a tag, so that its costs are measured once per network, not once per call.
    owner, tag = cost_identity(model.net)
    cache = _COST_CACHE.setdefault(owner, {})
    key = (*tag, kind, tuple(sample.shape), sample.dtype, sample.device)

    def probe(n: int) -> tuple[int, int]:
        rows = sample[None].expand(n, *sample.shape).clone()
        with model.evaluating():
            return _probe(lambda: run_rows(rows))

    if key not in cache:
        one, largest = probe(1)
        cache[key] = (RowCost(per_row=max(one, 1), largest=largest), False)
    cost, fitted = cache[key]
    tight = runtime is not None and runtime.explicit and runtime.budget < 3 * cost.peak(1)
    if not fitted and not tight:
        one, two = cost.per_row, probe(2)[0]
        per_row = max(two - one, 1)
        cost = RowCost(per_row=per_row, fixed=max(one - per_row, 0), largest=cost.largest)
        cache[key] = (cost, True)
    return cost


def network_cost(
    model: Model, sample: torch.Tensor, backward: bool = True, runtime: Runtime | None = None
) -> RowCost:
    """Measured peak bytes of the network on a chunk of rows shaped like ``sample``:
    forward and backward to the input (the gradient included) or, with ``backward=False``,
    a forward without autograd. ``runtime``: whose budget the probes must respect."""
    model = model.rows(slice(0, 1))  # a batch's model: the probes are copies of one sample

    def forward_backward(rows: torch.Tensor) -> None:
        with torch.enable_grad():
            rows.requires_grad_(True)
            out = model.forward(rows)
            if out.requires_grad:  # a network without gradient path fails later, clearly
                torch.autograd.grad(out[:, 0].sum(), rows, allow_unused=True)

    def forward(rows: torch.Tensor) -> None:
        with torch.no_grad():
            model.forward(rows)

    kind = "forward+backward" if backward else "forward"
    return measured_cost(model, sample, kind, forward_backward if backward else forward, runtime)


def bytes_per_sample(model: Model, sample: torch.Tensor) -> int:
    """Bytes one more row costs at the peak of a forward+backward pass (measured, cached)."""
    return network_cost(model, sample).per_row


def format_bytes(nbytes: int) -> str:
    """``12.3 MB``, ``4.5 kB`` or ``12 bytes``, for messages."""
    if nbytes >= 10**6:
        return f"{nbytes / 1e6:.1f} MB"
    return f"{nbytes / 1e3:.1f} kB" if nbytes >= 10**3 else f"{nbytes} bytes"


def _suggest(nbytes: int) -> str:
    """A budget string of at least ``nbytes``: ``"24MB"`` or ``"106KB"``."""
    return f"{math.ceil(nbytes / 1e6)}MB" if nbytes >= 10**6 else f"{math.ceil(nbytes / 1e3)}KB"


def check_budget(runtime: Runtime, minimum: int, what: str, parts: str) -> None:
    """Raise InputError when a budget the caller set is below ``minimum`` bytes.

    ``what`` names the work ("integrated_gradients on 8 inputs of shape (3, 224, 224)"),
    ``parts`` what the minimum is made of.
    """
    if not runtime.explicit or runtime.budget >= minimum:
        return
    got = f"{runtime.budget} bytes"
    if runtime.budget >= 10**3:
        got += f" ({format_bytes(runtime.budget)})"
    if runtime.reserved:
        got += f", what is left of memory_budget={runtime.memory_budget} after the caller's buffers"
    raise InputError(
        describe(
            "`memory_budget`",
            f"at least {minimum} bytes ({format_bytes(minimum)}) for {what}: {parts}",
            got,
            f'Pass memory_budget="{_suggest(minimum + runtime.reserved)}" or more, or explain '
            "fewer inputs per call (the per-call buffers grow with the batch).",
        )
    )


@dataclass(frozen=True)
class ChunkRequest:
    """What a chunked pass needs beside the network's measured cost, and how an error names it.

    Attributes:
        extra_bytes_per_row: the method's own temporaries per row (such as the rows themselves).
        fixed_bytes: the method's per-call buffers, held whatever the chunk size.
        backward: a forward+backward pass (True) or a forward without autograd.
        min_rows: the fewest rows a chunk may hold.
        most: the rows the pass has in all, when known: a budget that holds them all is
            answered without searching for the largest chunk.
        what: the work, for messages ("integrated_gradients on 8 input(s)").
        buffers: what ``fixed_bytes`` is made of, for messages.
        cost: the pass's measured cost when it is not the plain network's (captum's DeepLift).
        enforce: False for a pass whose method checks its own, larger minimum next.

    Example:
        >>> ChunkRequest(fixed_bytes=1024, what="saliency on 2 input(s)").min_rows
        1
    """

    extra_bytes_per_row: int = 0
    fixed_bytes: int = 0
    backward: bool = True
    min_rows: int = 1
    most: int | None = None
    what: str = "this method"
    buffers: str = "its buffers"
    cost: RowCost | None = None
    enforce: bool = True


def chunk_size(
    model: Model, sample: torch.Tensor, runtime: Runtime, request: ChunkRequest = ChunkRequest()
) -> int:
    """How many rows of ``sample``'s shape fit into the memory budget at once (>= min_rows).

    The peak of a chunk of r rows is ``request.fixed_bytes`` (the method's per-call buffers)
    plus the network's measured cost of r rows (:func:`network_cost`) plus r *
    ``request.extra_bytes_per_row`` (the method's own temporaries per row). A method whose
    pass is not the plain network's (captum's DeepLift) gives its own measured
    ``request.cost``.

    Raises:
        InputError: the caller set a budget below the cost of ``min_rows`` rows; the message
            says the minimum. (Under the default budget, or with ``enforce=False`` for a pass
            whose method checks its own, larger minimum next, the result is ``min_rows``.)
    """
    r = request
    if r.most is not None and r.most <= r.min_rows and not runtime.explicit:
        return r.min_rows  # rows that cannot be split, under a budget no error is raised for
    cost = r.cost or network_cost(model, sample, r.backward, runtime)
    extra, fixed = int(r.extra_bytes_per_row), int(r.fixed_bytes)
    if r.enforce:
        one = cost.floor(extra, r.min_rows)  # the pass, its temporaries, allocator slack
        what = f"{r.what} of shape {tuple(sample.shape)}"
        check_budget(runtime, fixed + one, what, _floor_parts(cost, r))
    room = runtime.budget - fixed
    if r.most is not None and cost.fits(r.most, room, extra):
        return max(r.min_rows, r.most)
    return max(r.min_rows, cost.rows_within(room, extra))


def _floor_parts(cost: RowCost, request: ChunkRequest) -> str:
    """What the smallest chunk's peak is made of, for :func:`check_budget`'s message."""
    r, extra = request, int(request.extra_bytes_per_row)
    pass_kind = "forward+backward pass" if r.backward else "forward pass"
    rows = f"one row's {pass_kind}" if r.min_rows == 1 else f"the {pass_kind} of {r.min_rows} rows"
    parts = f"{format_bytes(cost.floor(extra, r.min_rows))} for {rows}"
    slack = cost.slack(r.min_rows, r.min_rows * (cost.per_row + extra))
    if slack:
        parts += f" (with {format_bytes(slack)} the allocator keeps resident)"
    if r.fixed_bytes:
        parts += f" and {format_bytes(int(r.fixed_bytes))} of per-call buffers ({r.buffers})"
    return parts


def check_expansion(value: int, name: str, maximum: int, advice: str) -> int:
    """``value`` (already a valid integer) if at most ``maximum``, else InputError with ``advice``."""
    if value > maximum:
        raise InputError(describe(f"`{name}`", f"at most {maximum}", repr(value), advice))
    return value


def chunks(total: int, size: int, tuning: Tuning | None = None) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``; when there are
    several, the heap's free memory goes back to the system (:func:`release_free_memory`)
    before a chunk of another size and after the last, so freed blocks do not stay resident
    beyond one chunk's (see :func:`explainer.throughput.tuned_chunks`). With a
    ``tuning`` the slices are sized by measured throughput, ``size`` being the most the
    memory budget allows (:mod:`explainer.throughput`)."""
    return tuned_chunks(total, size, tuning, release_free_memory)


def progress_bar(total: int | None, desc: str, runtime: Runtime) -> tqdm:
    """A tqdm bar: off when ``progress=False``, quiet when stderr is not a terminal, and
    only shown for work that lasts more than half a second. Use it in a ``with`` block, so
    that it is closed when the work fails too.

    Example:
        >>> with progress_bar(4, "demo", Runtime(progress=False)) as bar:
        ...     bar.update(4)
        >>> bar.disable  # progress=False: nothing is drawn
        True
    """
    return tqdm(
        total=total,
        desc=desc,
        disable=None if runtime.progress else True,
        leave=False,
        delay=0.5,
        unit="rows",
    )


@contextmanager
def progress_chunks(
    total: int,
    size: int,
    desc: str,
    runtime: Runtime,
    rows_per_index: int = 1,
    tuning: Tuning | None = None,
) -> Iterator[Iterator[slice]]:
    """:func:`chunks` of ``range(total)`` (sized by throughput with a ``tuning``) counted
    on a :func:`progress_bar`, closed on exit.

    After the body has handled a slice, the bar advances by its length times
    ``rows_per_index`` (the rows one index stands for: smoothgrad's index is a noisy copy of
    the whole batch); the bar's total is ``total * rows_per_index``. The bar is closed when
    the ``with`` block ends, an error included.

    Example:
        >>> with progress_chunks(5, 2, "demo", Runtime(progress=False)) as parts:
        ...     [(part.start, part.stop) for part in parts]
        [(0, 2), (2, 4), (4, 5)]
    """
    with progress_bar(total * rows_per_index, desc, runtime) as bar:
        yield _counted(chunks(total, size, tuning), bar, rows_per_index)


def _counted(parts: Iterator[slice], bar: tqdm, rows_per_index: int) -> Iterator[slice]:
    """``parts``, advancing ``bar`` once the caller is done with each."""
    for part in parts:
        yield part
        bar.update((part.stop - part.start) * rows_per_index)


def forward_in_chunks(
    model: Model,
    x: torch.Tensor,
    runtime: Runtime,
    fixed_bytes: int = 0,
    what: str = "the forward pass",
    enforce: bool = True,
) -> torch.Tensor:
    """``model.forward(x)`` without autograd, in chunks of rows that fit the memory budget
    (one call when the whole batch fits, so the outputs are those of a single forward).
    ``enforce=False``: rows one at a time below the floor instead of InputError.

    Under the default budget (not one the caller set) the batch goes through in one call
    without a probe, so that a network failing on the inputs fails on the user's batch and
    says its shape; the batch expansions of the methods are chunked under it all the same.
    Outputs a pass of this call already computed on the same rows (``runtime.outputs``) are
    returned without a pass, and the ones computed here are recorded there.
    """
    known = runtime.outputs.get(model, x) if runtime.outputs is not None else None
    if known is not None:
        return known
    out = _forward_in_chunks(model, x, runtime, fixed_bytes, what, enforce)
    if runtime.outputs is not None:
        runtime.outputs.put(model, x, out)
    return out


def _forward_in_chunks(
    model: Model, x: torch.Tensor, runtime: Runtime, fixed_bytes: int, what: str, enforce: bool
) -> torch.Tensor:
    if not runtime.explicit:
        with torch.no_grad():
            return model.forward(x)
    request = ChunkRequest(
        fixed_bytes=fixed_bytes, backward=False, what=f"{what} on {len(x)} row(s)", enforce=enforce
    )
    size = chunk_size(model, x[0], runtime, request)
    with torch.no_grad():
        if size >= len(x):
            out = model.forward(x)
        else:
            out = torch.cat([model.rows(part).forward(x[part]) for part in chunks(len(x), size)])
    release_free_memory()
    return out


def input_gradients(
    model: Model, x: torch.Tensor, target: torch.Tensor, full: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each row's target output with respect to its input, and the outputs:
    the target's (rows,), or with ``full=True`` every column (rows, columns).

    Rows are independent in eval mode, so the gradient of the summed selected outputs is
    the per-row gradient. It is one backward from a one-hot seed on the outputs: the same
    values as backpropagating through a gather and a sum, without their two autograd nodes
    (a third of a tiny model's call). Call inside ``model.evaluating()``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = model.forward(x)
        has_gradient_path(model, out)
        index = (target if target.device == out.device else target.to(out.device))[:, None]
        seed = torch.zeros_like(out).scatter_(1, index, 1.0)
        grad = seeded_gradient(out, x, seed)
    out = out.detach()
    return grad.detach(), out if full else out.gather(1, index).squeeze(1)


# autograd's C++ engine, as torch.autograd.grad calls it (None if a torch lacks it)
_ENGINE = getattr(getattr(torch.autograd, "variable", None), "Variable", None)
_RUN_BACKWARD = getattr(getattr(_ENGINE, "_execution_engine", None), "run_backward", None)


def seeded_gradient(out: torch.Tensor, x: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """``torch.autograd.grad(out, x, seed)[0]``: the gradient of ``(out * seed).sum()``
    with respect to the leaf ``x``.

    For plain CPU tensors it calls autograd's engine directly, as ``autograd.grad`` does
    after its argument handling: that handling (normalising tuples, checking ``seed``
    against ``out``, tensor-subclass dispatch, logging hooks, stashing the context for
    device threads) costs ~18 µs, a third of a tiny model's forward and backward, and
    none of it applies here (``seed`` is made like ``out``; CPU backward runs on this
    thread). Anything else (CUDA, subclasses, a torch without the engine) goes through
    ``autograd.grad``. Both give the same values (tested).
    """
    if (
        _RUN_BACKWARD is not None
        and type(out) is torch.Tensor
        and type(x) is torch.Tensor
        and x.is_cpu
        and out.is_cpu
    ):
        return _RUN_BACKWARD((out,), (seed,), False, False, (x,), False, False)[0]
    return torch.autograd.grad(out, x, seed)[0]


def seeded_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A local generator (never the global RNG); ``None`` means seed 0 for reproducibility.

    ``seed`` must be an integer in [0, 2**63 - 1] (see :func:`explainer._checks.check_seed`,
    which every method and ``ex.evaluate`` use, so ``None`` means 0 everywhere).
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(check_seed(seed))
    return gen


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums of attributions are kept in: at least float32 (float16 and bfloat16
    models run in their dtype, but their gradients are summed in float32), float64 kept.

    Example:
        >>> accumulation_dtype(torch.bfloat16), accumulation_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.promote_types(dtype, torch.float32)


def accumulator(x: torch.Tensor) -> torch.Tensor:
    """Zeros shaped like ``x``, on its device, in :func:`accumulation_dtype` of its dtype."""
    return torch.zeros(x.shape, dtype=accumulation_dtype(x.dtype), device=x.device)
