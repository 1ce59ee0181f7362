"""Dataset-scale results on disk: one zarr group written batch by batch, resumable after a kill.

This module reads stores (:class:`Store`, :func:`open_store`); writing lives in
:mod:`explainer.dataset.writer`.

The layout (arrays, attributes, names) is in :mod:`explainer.dataset.layout`.

Why it survives SIGKILL: zarr's local store writes every chunk to a temporary file and
renames it into place, each batch fills whole chunks, and a batch's ``done`` flag (its own
chunk) is written last. A batch whose flag is unset is recomputed from scratch on resume, and
every batch is a pure function of its rows and the recorded settings (seeds, memory budget),
so a resumed store equals an uninterrupted one.

Why it never serves holes: every read of a batch is checked against its record (a deleted
chunk would otherwise read back as NaN), and a damaged batch is a StoreError naming it;
resuming recomputes damaged batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from ..completeness import gap_warning
from ..errors import InputError, StoreError, describe
from ..explanation import Explanation
from ..records import REQUIRED_MODEL_KEYS, explanation_model_record
from ..registry import completeness_of
from .integrity import check_rows, damaged, digest, parse_record
from .layout import (
    CORE_ARRAYS,
    DONE,
    FINDINGS_KEY,
    MANIFEST_KEY,
    MANIFEST_TYPES,
    METRIC_DIGESTS_KEY,
    RECORDS,
    STORE_SCHEMA,
    TRUST_KEY,
    attributions_path,
    extras_path,
    metrics_path,
)

__all__ = ["Store", "open_store", "STORE_SCHEMA"]


class Store:
    """Lazy view of an ``explain_dataset`` store: nothing is read until asked for.

    Example:
        >>> import torch, tempfile, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> path = tempfile.mkdtemp() + "/s.zarr"
        >>> _ = ex.explain_dataset(m, torch.rand(6, 3), "saliency", path, batch_size=4,
        ...                        progress=False)
        >>> store = ex.open_store(path)
        >>> store.methods, len(store), store.complete
        (['saliency'], 6, True)
        >>> store[0:4]["saliency"].attributions.shape        # {method: Explanation}
        torch.Size([4, 3])
        >>> yes = store.indices(cls="yes")                   # by target class
        >>> means = store.mean_attribution("saliency")       # {class: (map, input, count)}
        >>> len(yes) + len(store.indices(cls="no")), sum(n for _, _, n in means.values())
        (6, 6)
    """

    def __init__(self, group: zarr.Group, path: Path) -> None:
        self.group = group
        self.path = path
        manifest = group.attrs.get(MANIFEST_KEY, {})
        self.manifest: dict[str, Any] = dict(manifest) if isinstance(manifest, dict) else {}
        if self.manifest.get("store_schema") != STORE_SCHEMA:
            raise StoreError(
                describe(
                    f"store {path}",
                    f"an explainer store of schema {STORE_SCHEMA}",
                    f"schema {self.manifest.get('store_schema')!r}",
                    "Write it with ex.explain_dataset(...) (or re-create it with this version).",
                )
            )
        bad = [
            k
            for k, kind in MANIFEST_TYPES.items()
            if not isinstance(self.manifest.get(k), kind) or isinstance(self.manifest.get(k), bool)
        ]
        bad += [k for k in REQUIRED_MODEL_KEYS if k not in self.manifest.get("model", {})]
        if bad:
            raise StoreError(
                describe(
                    f"the manifest of store {path}",
                    f"the entries {sorted(MANIFEST_TYPES)} (and model {', '.join(REQUIRED_MODEL_KEYS)})",
                    f"missing or malformed {bad}",
                    "The store was damaged or not written by explainer: re-create it with "
                    "ex.explain_dataset(..., overwrite=True).",
                )
            )
        self._verified: dict[str, np.ndarray] = {}  # whole small arrays, checked once

    # -- what is in it ------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    def __len__(self) -> int:
        return self.n

    @property
    def batch_size(self) -> int:
        return int(self.manifest["batch_size"])

    @property
    def methods(self) -> list[str]:
        return list(self.manifest["methods"])

    @property
    def class_names(self) -> tuple[str, ...] | None:
        names = self.manifest["model"].get("class_names")
        return tuple(names) if names else None

    @property
    def modality(self) -> str:
        return str(self.manifest["model"]["modality"])

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    @property
    def batches_done(self) -> np.ndarray:
        """(B,) bool: which batches are finished."""
        return np.asarray(self._read(DONE, slice(None)), dtype=bool)

    def batch_rows(self, b: int) -> tuple[int, int]:
        start = int(b) * self.batch_size
        return start, min(start + self.batch_size, self.n)

    # -- integrity ------------------------------------------------------------------------
    def _read(self, name: str, where: Any) -> np.ndarray:
        """Raw zarr read; a chunk zarr cannot decode (truncated, corrupt) is a StoreError."""
        try:
            return np.asarray(self.array(name)[where])
        except StoreError:
            raise
        except (RuntimeError, ValueError, OSError, KeyError, TypeError) as err:
            rows = where if isinstance(where, slice) else None
            batches = (
                list(range(rows.start // self.batch_size, -(-rows.stop // self.batch_size)))
                if rows is not None and rows.start is not None and rows.stop is not None
                else []
            )
            raise damaged(
                self.path,
                batches or [-1],
                f"{name} cannot be decoded: {type(err).__name__}: {str(err)[:120]}",
            ) from None

    def record(self, b: int) -> dict[str, Any]:
        """The commit record of finished batch ``b`` (see :mod:`explainer.dataset.integrity`)."""
        return parse_record(self._read(RECORDS, int(b)).item(), self.path, int(b))

    def batch(self, name: str, b: int) -> np.ndarray:
        """The rows of finished batch ``b`` of array ``name``, checked against its record."""
        entry = self.record(b)["arrays"].get(name)
        if entry is None:
            raise damaged(self.path, [int(b)], f"no {name} was recorded for it")
        start, stop = self.batch_rows(b)
        value = self._read(name, slice(start, stop))
        check_rows(value, entry, self.array(name).fill_value, self.path, int(b), name)
        return value

    def _chunk_files_present(self, name: str, b: int, ndim: int) -> bool:
        return (self.path / name / "c" / "/".join([str(b)] + ["0"] * (ndim - 1))).is_file()

    def damaged_batches(self, full: bool = False) -> dict[int, str]:
        """Finished batches that cannot be served, with the reason: records, arrays or chunk
        files missing (quick), or, with ``full=True``, any array not matching its checksum
        (reads every finished batch once)."""
        out: dict[int, str] = {}
        for b in np.flatnonzero(self.batches_done).tolist():
            try:
                record = self.record(b)
                for name in record["arrays"]:
                    arr = self.array(name)
                    if not self._chunk_files_present(name, b, arr.ndim):
                        raise damaged(self.path, [b], f"a chunk file of {name} is missing")
                    if full:
                        self.batch(name, b)
                missing = [
                    a
                    for a in (*CORE_ARRAYS, *(attributions_path(m) for m in self.methods))
                    if a not in record["arrays"]
                ]
                if missing:
                    raise damaged(self.path, [b], f"{missing[0]} was not recorded")
            except StoreError as err:
                out[b] = str(err).split("(", 1)[-1].split(")")[0]
        return out

    def verify(self, full: bool = False) -> None:
        """Raise StoreError naming every damaged batch (see :meth:`damaged_batches`)."""
        bad = self.damaged_batches(full)
        if bad:
            first = next(iter(bad.values()))
            raise damaged(self.path, sorted(bad), first)

    def _whole(self, name: str) -> np.ndarray:
        """A small per-sample array (targets, labels, scores), every finished batch checked."""
        if name not in self._verified:
            value = self._read(name, slice(None))
            fill = self.array(name).fill_value
            for b in np.flatnonzero(self.batches_done).tolist():
                start, stop = self.batch_rows(b)
                entry = self.record(b)["arrays"].get(name)
                if entry is None:
                    raise damaged(self.path, [b], f"no {name} was recorded for it")
                check_rows(value[start:stop], entry, fill, self.path, b, name)
            self._verified[name] = value
        return self._verified[name]

    @property
    def done(self) -> np.ndarray:
        """(N,) bool: which samples are finished."""
        return np.repeat(self.batches_done, self.batch_size)[: self.n]

    @property
    def complete(self) -> bool:
        return bool(self.batches_done.all())

    def __repr__(self) -> str:
        return (
            f"Store({str(self.path)!r}, samples={self.n}, done={int(self.done.sum())}, "
            f"methods={self.methods})"
        )

    def _repr_html_(self) -> str:
        """Notebook view: what is in the store (cheap: reads targets and the done-mask)."""
        done = self.indices()
        counts = np.bincount(self.targets[done], minlength=0) if done.size else np.zeros(0)
        per_class = ", ".join(
            f"{escape(self.class_names[c] if self.class_names and c < len(self.class_names) else str(c))}: {int(k)}"
            for c, k in enumerate(counts)
            if k
        )
        rows = [
            ("store", escape(str(self.path))),
            ("samples", f"{done.size:,} done of {self.n:,} (batches of {self.batch_size})"),
            ("methods", escape(", ".join(self.methods))),
            (
                "model",
                escape(
                    f"{self.manifest['model']['name']} · {self.manifest['model']['fingerprint']}"
                ),
            ),
            ("explained classes", per_class or "–"),
            ("trust scores", "computed" if TRUST_KEY in self.group.attrs else "not computed"),
            ("findings", "computed" if FINDINGS_KEY in self.group.attrs else "not computed"),
        ]
        body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"

    def array(self, name: str) -> zarr.Array:
        """A zarr array of the store by its path (e.g. ``"attributions/saliency"``), lazily."""
        try:
            return self.group[name]
        except KeyError:
            raise StoreError(
                describe(
                    f"array {name!r} of store {self.path}",
                    "one of " + ", ".join(sorted(self.array_names())),
                    "nothing under that name",
                    "Check the method name with store.methods.",
                )
            ) from None

    def array_names(self) -> list[str]:
        out = []

        def walk(g: zarr.Group, prefix: str) -> None:
            for key, item in g.members():
                name = f"{prefix}{key}"
                if isinstance(item, zarr.Group):
                    walk(item, name + "/")
                else:
                    out.append(name)

        walk(self.group, "")
        return out

    @property
    def targets(self) -> np.ndarray:
        return self._whole("targets")

    @property
    def labels(self) -> np.ndarray:
        return self._whole("labels")

    @property
    def predictions(self) -> np.ndarray:
        return self._whole("scores").argmax(1)

    # -- selecting ----------------------------------------------------------------------
    def class_index(self, cls: int | str) -> int:
        names = self.class_names
        if isinstance(cls, str) and names and cls in names:
            return names.index(cls)
        if isinstance(cls, int | np.integer) and not isinstance(cls, bool):
            return int(cls)
        raise InputError(
            describe(
                "`cls`",
                f"a class index or one of {list(names) if names else 'the class indices'}",
                repr(cls),
                "Use a name from store.class_names.",
            )
        )

    def indices(
        self, cls: int | str | None = None, by: str = "target", done_only: bool = True
    ) -> np.ndarray:
        """Indices of the samples (finished ones by default), optionally of one class.

        Args:
            cls: class index or name; None for all.
            by: "target" (explained class), "label" (true class) or "prediction".
        """
        keep = self.done if done_only else np.ones(self.n, dtype=bool)
        if cls is not None:
            values = {"target": self.targets, "label": self.labels, "prediction": self.predictions}
            if by not in values:
                raise InputError(
                    describe("`by`", "target, label or prediction", repr(by), 'Use by="target".')
                )
            keep &= values[by] == self.class_index(cls)
        return np.flatnonzero(keep)

    def _rows(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(self.n)[index]
        rows = np.atleast_1d(np.asarray(index))
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if rows.size and (rows.min() < -self.n or rows.max() >= self.n):
            raise InputError(
                describe(
                    "store index",
                    f"indices in [0, {self.n})",
                    f"{index!r}",
                    f"Index with 0..{self.n - 1} (or -{self.n}..-1 from the end), e.g. "
                    "store[store.indices()].",
                )
            )
        return np.where(rows < 0, rows + self.n, rows).astype(np.int64)

    def take(self, name: str, index: Any) -> np.ndarray:
        """Rows ``index`` (int, slice, list, mask) of a per-sample array such as
        ``"inputs"`` or ``"labels"``, read batch by batch, each batch checked."""
        return self._take(name, self._rows(index))

    def _take(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a per-sample array, read batch by batch, each batch checked."""
        batches = np.unique(rows // self.batch_size)
        if batches.size == 0:
            arr = self.array(name)
            return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype)
        parts = {int(b): self.batch(name, int(b)) for b in batches}
        return np.stack([parts[int(r) // self.batch_size][int(r) % self.batch_size] for r in rows])

    def explanation(self, method: str, index: Any = slice(None)) -> Explanation:
        """One method's Explanation for the rows ``index`` (int, slice, list, mask)."""
        if method not in self.methods:
            raise InputError(
                describe("`method`", f"one of {self.methods}", repr(method), "See store.methods.")
            )
        rows = self._rows(index)
        missing = rows[~self.done[rows]]
        if missing.size:
            raise StoreError(
                describe(
                    f"rows of store {self.path}",
                    "finished samples",
                    f"{missing.size} unfinished (e.g. {missing[:5].tolist()})",
                    "Resume the run (explain_dataset(..., resume=True)) or pick store.indices().",
                )
            )
        extras = {}
        if extras_path(method) in self.group:
            for name, _arr in self.group[extras_path(method)].arrays():
                extras[name] = torch.from_numpy(self._take(f"{extras_path(method)}/{name}", rows))
        m = self.manifest
        gaps = extras.get("relative_gap")
        note = (
            None
            if gaps is None
            else gap_warning(method, gaps, completeness_of(method), m["methods"][method])
        )
        manifest = {
            "schema_version": m["explanation_schema"],
            "versions": m["versions"],
            "seed": m["methods"][method].get("seed"),
            "model": explanation_model_record(m["model"]),
            "input_shape": [int(rows.size), *m["input_shape"]],
            "memory_budget": m["memory_budget"],
            "store": {"path": str(self.path), "indices": rows.tolist()[:10000]},
            "preprocessing": m["data"].get("preprocessing"),
        }
        inputs = torch.from_numpy(self._take("inputs", rows))
        return Explanation(
            method=method,
            attributions=torch.from_numpy(self._take(attributions_path(method), rows)),
            inputs=inputs,
            targets=torch.from_numpy(self._take("targets", rows)),
            scores=torch.from_numpy(self._take("scores", rows)),
            class_names=self.class_names,
            modality=self.modality,
            params=dict(m["methods"][method]),
            extras=extras,
            manifest=manifest,
            feature_names=tuple(m["feature_names"]) if m.get("feature_names") else None,
            # what trust scores need to re-run the method: every recorded parameter except
            # tensors (recorded by hash only; ex.evaluate asks for them by name)
            call_params={
                k: v
                for k, v in m["methods"][method].items()
                if not (isinstance(v, dict) and "sha256" in v)
            },
            warnings=() if note is None else (note,),
            tokens=self._tokens(inputs) if self.modality == "text" else None,
        )

    def _tokens(self, ids: torch.Tensor) -> tuple[tuple[str, ...], ...]:
        """The text of a text store's token ids (its manifest keeps every id's token)."""
        vocabulary = self.manifest.get("text", {}).get("vocabulary", {})
        return tuple(tuple(vocabulary.get(str(int(i)), str(int(i))) for i in row) for row in ids)

    def __getitem__(self, index: Any) -> dict[str, Explanation]:
        """``store[i]``, ``store[a:b]``, ``store[[...]]`` -> ``{method: Explanation}``."""
        return {method: self.explanation(method, index) for method in self.methods}

    def by_class(self, cls: int | str, limit: int | None = None, by: str = "target"):
        """``{method: Explanation}`` of (at most ``limit``) finished samples of one class."""
        rows = self.indices(cls, by=by)[:limit]
        return self[rows]

    def sample(self, k: int, seed: int = 0) -> np.ndarray:
        """Up to ``k`` finished indices, spread over the target classes (round robin, each
        class in a seeded random order): what reports and trust scores look at."""
        rng = np.random.default_rng(seed)
        pools = []
        done = self.indices()
        targets = self.targets[done]
        for c in np.unique(targets):
            pool = done[targets == c]
            pools.append(list(rng.permutation(pool)))
        out: list[int] = []
        while len(out) < k and any(pools):
            for pool in pools:
                if pool and len(out) < k:
                    out.append(int(pool.pop(0)))
        return np.sort(np.array(out, dtype=np.int64))

    # -- dataset summaries -----------------------------------------------------------------
    def iter_chunks(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, values) of a per-sample array, one finished batch at a time (flat memory)."""
        for b in np.flatnonzero(self.batches_done).tolist():
            start, stop = self.batch_rows(b)
            yield np.arange(start, stop), self.batch(name, b)

    def mean_attribution(
        self,
        method: str,
        by: str = "target",
        absolute: bool = False,
        classes: Sequence[int] | None = None,
    ) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
        """Per class: (mean attribution map, mean input, count), streamed batch by batch.

        Memory is one batch plus two maps per class: pass ``classes`` (indices) to limit it
        on datasets with many classes.
        """
        by_kind = {"target": self.targets, "label": self.labels, "prediction": self.predictions}
        if by not in by_kind:
            raise InputError(
                describe("`by`", "target, label or prediction", repr(by), 'Use by="target".')
            )
        cls = by_kind[by].copy()
        if classes is not None:
            cls[~np.isin(cls, np.asarray(list(classes), dtype=cls.dtype))] = -1
        sums: dict[int, list] = {}
        for rows, values in self.iter_chunks(attributions_path(method)):
            x = self.batch("inputs", int(rows[0]) // self.batch_size).astype(np.float64)
            v = np.abs(values) if absolute else values.astype(np.float64)
            for c in np.unique(cls[rows]):
                if c < 0:
                    continue
                sel = cls[rows] == c
                acc = sums.setdefault(int(c), [0.0, 0.0, 0])
                acc[0] = acc[0] + v[sel].sum(0)
                acc[1] = acc[1] + x[sel].sum(0)
                acc[2] += int(sel.sum())
        return {c: (s / n, xs / n, n) for c, (s, xs, n) in sorted(sums.items())}

    def completeness(self) -> dict[str, dict[str, Any]]:
        """Per method whose samples record a completeness gap (``relative_gap``), over the
        finished samples: ``{"worst", "over", "n", "tolerance", "warning"}`` (the largest
        gap, how many exceed the method's tolerance, of how many, the tolerance, and the
        warning text or None). Reads one (N,) array per method, batch by batch.

        Example:
            >>> import torch, tempfile, explainer as ex
            >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular")
            >>> store = ex.explain_dataset(m, torch.rand(4, 3), "ig",
            ...                            f"{tempfile.mkdtemp()}/s.zarr", progress=False)
            >>> summary = store.completeness()["integrated_gradients"]
            >>> summary["n"], summary["over"], summary["warning"], store.warnings
            (4, 0, None, [])
        """
        out = {}
        for method in self.methods:
            name = extras_path(method, "relative_gap")
            if name not in self.group:
                continue  # a method without a completeness property, or an older store
            parts = [values for _, values in self.iter_chunks(name)]
            gaps = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
            spec = completeness_of(method)
            out[method] = {
                "worst": float(np.nanmax(gaps)) if np.isfinite(gaps).any() else None,
                "over": int((~(gaps <= spec.tolerance)).sum()),
                "n": int(gaps.size),
                "tolerance": spec.tolerance,
                "warning": gap_warning(method, gaps, spec, self.manifest["methods"][method]),
            }
        return out

    @property
    def warnings(self) -> list[str]:
        """What should be known before trusting the store's maps: one sentence per method
        whose completeness gap exceeds its tolerance on some finished sample."""
        return [c["warning"] for c in self.completeness().values() if c["warning"]]

    def metrics(self, method: str) -> dict[str, np.ndarray]:
        """Per-sample trust scores written by ``ex.evaluate(store)`` (NaN: not computed)."""
        key = metrics_path(method)
        if key not in self.group:
            return {}
        sums = self.group.attrs.get(METRIC_DIGESTS_KEY, {})
        out = {}
        for name, _arr in self.group[key].arrays():
            value = self._read(f"{key}/{name}", slice(None))
            if digest(value) != sums.get(f"{key}/{name}"):
                raise StoreError(
                    describe(
                        f"trust scores {key}/{name} of store {self.path}",
                        "the values ex.evaluate wrote (checked by checksum)",
                        "values that differ (a deleted or altered chunk)",
                        "Run ex.evaluate(store) again to recompute them.",
                    )
                )
            out[name] = value
        return out


def open_store(path: str | os.PathLike, mode: str = "r", verify: str = "quick") -> Store:
    """Open a store written by :func:`explainer.explain_dataset` (lazily; ``mode="r+"`` to
    add trust scores).

    Args:
        path: the store folder.
        mode: ``"r"`` or ``"r+"``.
        verify: ``"quick"`` (default: records, arrays and chunk files of every finished
            batch present), ``"full"`` (also every checksum: reads the whole store once) or
            ``"none"`` (manifest only). Reads always check the batches they touch.

    Raises:
        StoreError: no store at ``path``, not one of ours, or damaged batches (named).

    Example:
        >>> import torch, tempfile, explainer as ex
        >>> net = torch.nn.Linear(3, 2)
        >>> folder = tempfile.mkdtemp()
        >>> _ = ex.explain_dataset(ex.wrap(net, modality="tabular"), torch.ones(4, 3),
        ...                        "saliency", f"{folder}/s.zarr", batch_size=2, progress=False)
        >>> store = ex.open_store(f"{folder}/s.zarr", verify="full")
        >>> len(store), store.complete
        (4, True)
    """
    if mode not in ("r", "r+") or verify not in ("quick", "full", "none"):
        raise InputError(
            describe(
                "`mode` / `verify`",
                'mode "r" or "r+", verify "quick", "full" or "none"',
                f"{mode!r} / {verify!r}",
                'Use open_store(path) to read, mode="r+" to add trust scores.',
            )
        )
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise StoreError(
            describe(
                "`path`",
                "a zarr store written by ex.explain_dataset",
                f"{str(path)!r} ({'no such folder' if not path.exists() else 'no zarr.json'})",
                "Check the path, or create it with ex.explain_dataset(model, data, methods, store=path).",
            )
        )
    try:
        group = zarr.open_group(str(path), mode=mode)
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise StoreError(
            describe(
                f"store {path}",
                "a readable zarr group",
                f"{type(err).__name__}: {err}",
                "Check the path; a damaged store can be re-created with overwrite=True.",
            )
        ) from None
    store = Store(group, path)
    if verify != "none":
        _check_arrays(store)
        store.verify(full=verify == "full")
    return store


def _check_arrays(store: Store) -> None:
    """Every array the manifest implies exists, is numeric (or the records' strings) and
    has one row per sample."""
    wanted = [DONE, RECORDS, *CORE_ARRAYS]
    wanted += [attributions_path(m) for m in store.methods]
    for name in wanted:
        try:
            arr = store.group[name]
            kind = np.dtype(arr.dtype).kind if name != RECORDS else "U"
        except (KeyError, ValueError, TypeError) as err:
            raise StoreError(
                describe(
                    f"store {store.path}",
                    f"an array {name!r}",
                    f"none readable ({type(err).__name__}: {err})" if str(err) else "none",
                    "The store is damaged: re-create it with ex.explain_dataset(..., overwrite=True).",
                )
            ) from None
        rows = store.n_batches if name in (DONE, RECORDS) else store.n
        if name != RECORDS and (kind not in "biuf" or not arr.shape or arr.shape[0] != rows):
            raise StoreError(
                describe(
                    f"array {name!r} of store {store.path}",
                    f"numbers with {rows} rows",
                    f"dtype {arr.dtype}, shape {arr.shape}",
                    "The store is damaged: re-create it with ex.explain_dataset(..., overwrite=True).",
                )
            )
