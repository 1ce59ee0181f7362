"""Where things live in a result store: the names the reader (:mod:`.store`) and the writer
(:mod:`.writer`) share, stated once.

Layout (``STORE_SCHEMA`` 2)::

    x.zarr/
      attrs["explainer"]        the manifest: model, methods and their parameters, target,
                                batch size, data fingerprint and preprocessing, versions
      attrs["last_run"]         backend, batches computed and seconds of the latest run
      attrs["trust"]            the whole Scores table of ``ex.evaluate(store)`` (JSON)
      attrs["findings"]         what ``ex.findings(store)`` found (JSON; previews as PNG
                                data URIs) and the store rows it used
      attrs["metric_digests"]   a checksum of every ``metrics/`` array
      inputs      (N, ...)      float32, chunked by the batch size (one chunk per batch)
      labels      (N,)          int64, -1 where the data has no label
      targets     (N,)          int64, the explained class
      scores      (N, K)        float32, class probabilities of the model
      records     (B,)          str, one chunk per batch: the batch's commit record (rows,
                                data digest, per array shape + SHA-256), written just
                                before its done flag; see :mod:`explainer.dataset.integrity`
      done        (B,)          bool, one chunk per batch: set only after the batch's rows
      attributions/<method>     (N, ...) float32
      extras/<method>/<key>     (N, ...) per-sample method outputs (IG's error estimate, ...)
      metrics/<method>/<metric> (N,) float64 trust scores from ``ex.evaluate(store)``, NaN
                                where not computed

Method, extra and metric names become path parts through :func:`safe_key`.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from ..metrics.findings import Findings
from ..metrics.scores import Scores
from ..viz.heatmap import encode_png, png_data_uri

__all__ = [
    "STORE_SCHEMA",
    "MANIFEST_KEY",
    "LAST_RUN_KEY",
    "TRUST_KEY",
    "METRIC_DIGESTS_KEY",
    "DONE",
    "RECORDS",
    "CORE_ARRAYS",
    "METRICS",
    "MANIFEST_TYPES",
    "safe_key",
    "attributions_path",
    "extras_path",
    "metrics_path",
    "scores_to_json",
    "scores_from_json",
    "FINDINGS_KEY",
    "findings_to_json",
    "findings_from_json",
]

STORE_SCHEMA = 2

# attributes of the root group
MANIFEST_KEY = "explainer"
LAST_RUN_KEY = "last_run"
TRUST_KEY = "trust"
FINDINGS_KEY = "findings"
METRIC_DIGESTS_KEY = "metric_digests"

# arrays: one row per batch, then one row per sample
DONE = "done"
RECORDS = "records"
CORE_ARRAYS = ("inputs", "labels", "targets", "scores")
METRICS = "metrics"  # the group of trust scores: metrics/<method>/<metric>

# manifest entries every reader relies on, and their types
MANIFEST_TYPES: dict[str, type] = {
    "n": int,
    "batch_size": int,
    "methods": dict,
    "model": dict,
    "input_shape": list,
    "data": dict,
    "versions": dict,
    "explanation_schema": int,
}


def safe_key(name: str) -> str:
    """``name`` as one path part: characters other than letters, digits and ``-_.`` become
    ``_``.

    Example:
        >>> safe_key("my method/v2")
        'my_method_v2'
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def attributions_path(method: str) -> str:
    """The array of ``method``'s attributions, e.g. ``"attributions/saliency"``."""
    return f"attributions/{safe_key(method)}"


def extras_path(method: str, extra: str | None = None) -> str:
    """The group of ``method``'s per-sample extras, or the array of one of them."""
    group = f"extras/{safe_key(method)}"
    return group if extra is None else f"{group}/{safe_key(extra)}"


def metrics_path(method: str, metric: str | None = None) -> str:
    """The group of ``method``'s trust scores, or the array of one metric."""
    group = f"{METRICS}/{safe_key(method)}"
    return group if metric is None else f"{group}/{safe_key(metric)}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def scores_to_json(scores: Scores, rows: np.ndarray) -> dict[str, Any]:
    """The stored form of a trust table (``attrs["trust"]``): JSON-able, NaN as null;
    ``rows`` maps the sample numbers to store indices."""
    return _clean(
        {
            "rows": [dict(r) for r in scores.rows],
            "curves": {
                m: {k: np.asarray(v).tolist() for k, v in c.items()}
                for m, c in scores.curves.items()
            },
            "randomization": scores.randomization,
            "settings": scores.settings,
            "indices": np.asarray(rows).tolist(),
        }
    )


def scores_from_json(data: dict[str, Any]) -> Scores:
    """The :class:`Scores` of a stored trust table (null values read back as NaN)."""
    nan = float("nan")
    rows = [{**r, "value": nan if r["value"] is None else r["value"]} for r in data["rows"]]
    curves = {
        m: {k: np.asarray(v, dtype=float) for k, v in c.items()} for m, c in data["curves"].items()
    }
    return Scores(rows, curves, data["randomization"], data["settings"])


def findings_to_json(found: Findings, rows: dict[str, list[int]]) -> dict[str, Any]:
    """The stored form of :class:`Findings` (``attrs["findings"]``): JSON-able, NaN as
    null, each preview a PNG data URI; ``rows`` names the store rows used (``explained``,
    ``holdout``)."""
    previews = [None if f.preview is None else png_data_uri(encode_png(f.preview)) for f in found]
    return _clean({"findings": found.to_dict(), "previews": previews, "rows": rows})


def findings_from_json(data: dict[str, Any]) -> Findings:
    """The :class:`Findings` of ``attrs["findings"]`` (previews decoded)."""

    def decode(uri: str | None) -> np.ndarray | None:
        if uri is None:
            return None
        png = base64.b64decode(uri.partition(",")[2])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    return Findings.from_dict(data["findings"], [decode(u) for u in data["previews"]])
