"""Render benchmark results as one self-contained HTML page (tables, and plots of error vs
model evaluations where a benchmark provides ``curves``)."""

from __future__ import annotations

import html
import json
from typing import Any


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list):
        return f"<code>{html.escape(json.dumps(v, default=str)[:300])}</code>"
    return html.escape(str(v))


def _plot(curves: dict) -> str:
    """curves: {title: {series: [[x, y], ...]}} -> inline PNG (log-log error vs evaluations)."""
    import base64
    import io

    from matplotlib.figure import Figure

    out = []
    for title, series in curves.items():
        fig = Figure(figsize=(5, 3.2), layout="constrained")
        ax = fig.subplots()
        for name, pts in series.items():
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("model evaluations", fontsize=8)
        ax.set_ylabel("relative L2 error", fontsize=8)
        ax.legend(fontsize=6)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        out.append(f'<figure><img src="{uri}" alt="{html.escape(title)}"></figure>')
    return "".join(out)


def _section(name: str, result: dict) -> str:
    parts = [f"<h2>{html.escape(name)}</h2>"]
    if "error" in result:
        parts.append(f"<pre class='err'>{html.escape(result['traceback'])}</pre>")
        return "".join(parts)
    if "headline" in result:
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(str(h))}</li>" for h in result["headline"])
            + "</ul>"
        )
    scalars = {
        k: v for k, v in result.items() if not isinstance(v, dict | list) and k != "headline"
    }
    if scalars:
        parts.append(_table([scalars]))
    for key, value in result.items():
        if key in ("headline", "curves"):
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            parts.append(f"<h3>{html.escape(key)}</h3>" + _table(value))
        elif isinstance(value, dict):
            flat = [
                {"key": k, **v} if isinstance(v, dict) else {"key": k, "value": v}
                for k, v in value.items()
            ]
            parts.append(f"<h3>{html.escape(key)}</h3>" + _table(flat))
    if isinstance(result.get("curves"), dict):
        parts.append(_plot(result["curves"]))
    return "".join(parts)


def _summary(results: dict) -> str:
    """Headline ratios, then seconds and load average per benchmark (absent in old results)."""
    parts = []
    if results.get("headline"):
        rows = [{"ratio": k, "value": v} for k, v in results["headline"].items()]
        parts.append("<h2>headline</h2>" + _table(rows))
    if results.get("timing"):
        rows = [{"benchmark": k, **v} for k, v in results["timing"].items()]
        rows.append(
            {
                "benchmark": "total",
                "seconds": results.get("total_seconds", ""),
                "load_average_at_start": results.get("load_average_at_start", ""),
                "load_average_at_end": results.get("load_average_at_end", ""),
            }
        )
        parts.append("<h2>timing</h2>" + _table(rows))
    return "".join(parts)


def render(results: dict) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left}"
        "figure{display:inline-block;margin:.5rem}code{font-size:.75rem}.err{color:#b3261e}"
    )
    body = _summary(results) + "".join(_section(k, v) for k, v in results["benchmarks"].items())
    mach = _table([{k: v for k, v in results["machine"].items() if k != "versions"}]) + _table(
        [results["machine"]["versions"]]
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>explainer benchmarks</title>"
        f"<style>{style}</style></head><body><h1>explainer benchmarks</h1><p>{html.escape(results['started'])}"
        f"{' (quick)' if results['quick'] else ''}. Ratios are measured in the same run.</p>{mach}{body}</body></html>"
    )
