"""Dataset-level summaries of a result store for the report: class counts and accuracy, the
mean attribution map per class and method, the worst completeness gap per method, and
per-class trust scores when computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.scores import METRIC_INFO
from ..viz.heatmap import denormalize, encode_png, png_data_uri, render_overlay, spec_for

__all__ = ["DatasetSummary", "dataset_summary"]


@dataclass(frozen=True)
class DatasetSummary:
    """What the report's dataset section shows of a result store.

    Attributes:
        path: the store's folder.
        n: samples in the store; ``done``: how many are explained.
        classes: per explained class: its name, count and accuracy (None without labels).
        accuracy: over all finished samples, or None without labels.
        maps: image stores only: per method, the mean overlay of each frequent class.
        trust: per method, the per-class means of the trust scores ``ex.evaluate`` stored.
        shown: samples the report shows one by one.
        completeness: per method with a completeness property, over the finished samples:
            the worst gap, how many samples exceed the tolerance, and the warning or None.

    Built by :func:`dataset_summary` (its example shows the fields).
    """

    path: str
    n: int
    done: int
    classes: tuple[dict[str, Any], ...]  # {"name", "count", "accuracy" or None}
    accuracy: float | None
    maps: tuple[dict[str, Any], ...]  # {"method", "drawing", "panels": [(class, count, uri)]}
    trust: tuple[dict[str, Any], ...]  # {"method", "classes", "rows": [{"metric", "values"}]}
    shown: int
    # {"method", "worst", "over", "n", "tolerance", "warning"}: Store.completeness()
    completeness: tuple[dict[str, Any], ...] = ()


def _class_table(store, names) -> tuple[tuple[dict, ...], float | None]:
    done = store.indices()
    targets, labels, preds = store.targets[done], store.labels[done], store.predictions[done]
    has_labels = bool(len(labels)) and bool((labels >= 0).all())
    rows = []
    for c in np.unique(targets):
        sel = targets == c
        acc = float((preds[sel] == labels[sel]).mean()) if has_labels else None
        rows.append({"name": names(int(c)), "count": int(sel.sum()), "accuracy": acc})
    accuracy = float((preds == labels).mean()) if has_labels and len(done) else None
    return tuple(rows), accuracy


def _mean_maps(store, names, max_classes: int) -> tuple[dict, ...]:
    if store.modality != "image":
        return ()
    prep = store.manifest.get("data", {}).get("preprocessing")
    targets = store.targets[store.indices()]
    found, counts = np.unique(targets[targets >= 0], return_counts=True)
    shown = sorted(found[np.argsort(-counts, kind="stable")][:max_classes].tolist())
    out = []
    for method in store.methods:
        spec = spec_for(method, store.manifest["methods"][method])
        means = store.mean_attribution(method, classes=shown)
        panels = []
        for c, (mean_map, mean_input, count) in means.items():
            rgb = render_overlay(denormalize(mean_input, prep), mean_map.astype(np.float32), spec)
            up = 2 if rgb.shape[0] < 128 else 1
            panels.append((names(c), count, png_data_uri(encode_png(rgb, upscale=up))))
        limited = f"{len(shown)} most frequent of {len(found)}" if len(found) > len(shown) else ""
        out.append(
            {"method": method, "drawing": spec.describe(), "panels": panels, "limited": limited}
        )
    return tuple(out)


def _trust_by_class(store, names) -> tuple[dict, ...]:
    targets = store.targets
    out = []
    for method in store.methods:
        metrics = store.metrics(method)
        if not metrics:
            continue
        computed = np.zeros(store.n, dtype=bool)
        for values in metrics.values():
            computed |= np.isfinite(values)
        classes = [int(c) for c in np.unique(targets[computed])]
        rows = []
        for metric, values in sorted(metrics.items()):
            cells = []
            for c in classes:
                v = values[(targets == c) & np.isfinite(values)]
                cells.append((float(v.mean()), int(v.size)) if v.size else (None, 0))
            higher, _, meaning = METRIC_INFO.get(metric.split("[")[0], (None, "", ""))
            better = {True: "higher is better", False: "lower is better"}.get(higher, "")
            rows.append({"metric": metric, "cells": cells, "better": better, "meaning": meaning})
        out.append({"method": method, "classes": [names(c) for c in classes], "rows": rows})
    return tuple(out)


def dataset_summary(store, shown: int, max_classes: int = 24) -> DatasetSummary:
    """Everything the report's dataset section shows, computed batch by batch.

    Args:
        store: an open result store (``ex.open_store``).
        shown: samples the report shows one by one (stated in the section).
        max_classes: image stores: mean maps of at most this many most frequent classes.

    Example:
        >>> import tempfile, torch, explainer as ex
        >>> m = ex.wrap(torch.nn.Linear(3, 2), modality="tabular", class_names=["no", "yes"])
        >>> x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
        >>> store = ex.explain_dataset(m, x, "saliency", f"{tempfile.mkdtemp()}/s.zarr", labels=y, progress=False)
        >>> summary = dataset_summary(store, shown=6)
        >>> summary.n, summary.done, summary.shown
        (6, 6, 6)
        >>> summary.accuracy is not None, summary.maps  # tabular: no mean maps
        (True, ())
        >>> summary.completeness  # saliency has no completeness property
        ()
    """
    class_names = store.class_names

    def names(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)

    classes, accuracy = _class_table(store, names)
    return DatasetSummary(
        path=str(store.path),
        n=store.n,
        done=int(store.done.sum()),
        classes=classes,
        accuracy=accuracy,
        maps=_mean_maps(store, names, max_classes),
        trust=_trust_by_class(store, names),
        shown=shown,
        completeness=tuple({"method": m, **c} for m, c in store.completeness().items()),
    )
