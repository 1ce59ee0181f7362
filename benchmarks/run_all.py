"""Run every benchmark side by side in one process and write reports/bench.json + bench.html.

Ratios (ours vs captum/shap measured in the same run) are the headline; absolute times
move from run to run on shared machines, so bench.json records each benchmark's seconds, the
total, and the load average (1, 5, 15 min) at the start and end of each. ``scale`` (ResNet-18,
ViT-small and BERT-small sized networks beside captum and shap, and each method's cost over
the network's own forward/backward passes) takes about 8 minutes on 2 idle cores; the rest
of the default set about 7 more; ``metrics`` (the cost of trust scores, not a comparison
with the engines) and ``memory`` (IG's peak memory at 256 steps; scale measures it at 224 px
on the ResNet) run only when asked. Usage:
    python -m benchmarks.run_all [--quick] [--only heatmap,ig,...] [--out reports]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
import traceback
from pathlib import Path

import torch

BENCHMARKS = (
    "scale", "heatmap", "shap", "deep", "ig", "memory", "cam", "text", "text_shap", "dataset",
    "metrics",
)  # fmt: skip
# scale first (the side-by-side at real sizes, read first); dataset last: it starts Ray
# memory (IG at 256 steps on a smaller CNN) only when asked: scale measures IG's peak memory
# at 224 px on the ResNet-18-sized model beside captum's, and the whole default set must stay
# under 15 minutes on 2 cores (measured 2026-12-07: 18.3 minutes with it and four shap games)
DEFAULT = (
    "scale", "heatmap", "shap", "deep", "ig", "cam", "text", "text_shap", "dataset",
)  # fmt: skip


def machine() -> dict:
    from explainer.records import library_versions

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def headline(benchmarks: dict) -> dict:
    """The ratios a reader looks for first, gathered from each benchmark's results."""
    out: dict = {}
    for row in benchmarks.get("scale", {}).get("rows", []):
        if not row["workload"].startswith("resnet18"):
            continue
        key = f"scale/{row['workload']}: {row['method']}"
        for name in ("ours_over_captum", "ours_over_shap", "ours_over_floor"):
            if row.get(name) is not None:
                out[f"{key} {name.replace('_over_', '/')}"] = row[name]
    scale = benchmarks.get("scale", {})
    per_call = scale.get("per_call", {})
    if "ours_over_captum" in per_call:
        out["scale/per call, Linear(10, 2): saliency ours/captum"] = per_call["ours_over_captum"]
    if "seconds_over_rows_time" in scale.get("evaluate", {}):
        out["scale/evaluate: seconds / its network rows' time"] = scale["evaluate"][
            "seconds_over_rows_time"
        ]
    if "html_bytes" in scale.get("report", {}):
        out["scale/report 32 x 3 at 224 px: MB"] = round(scale["report"]["html_bytes"] / 1e6, 2)
    if "peak_ratio_captum_over_ours" in scale.get("memory", {}):
        out["scale/IG-32 at 224 px: peak memory captum / ours"] = scale["memory"][
            "peak_ratio_captum_over_ours"
        ]
    ig = benchmarks.get("ig", {})
    for name, net in ig.get("networks", {}).items():
        s = net.get("summary", {})
        if "ratio_captum_best_over_ours" in s:
            out[f"ig/{name}: captum best fixed rule / ours, evaluations to 1% max error"] = s[
                "ratio_captum_best_over_ours"
            ]
            out[f"ig/{name}: same, trapezoid panels only"] = s[
                "ratio_captum_best_over_trapezoid_only"
            ]
    if "estimate_vs_true_error_all_networks" in ig:
        quality = ig["estimate_vs_true_error_all_networks"]
        out["ig: error estimate >= true error (fraction)"] = quality["fraction_estimate_ge_true"]
        out["ig: error estimate vs true error (log-log correlation)"] = quality["pearson_log"]
    ratios = benchmarks.get("shap", {}).get("ratios", [])
    if ratios:
        anchor = ratios[0]["game"]
        for budget in sorted({r["budget"] for r in ratios}):
            rows = [r for r in ratios if r["budget"] == budget]
            key = f"shap budget {budget}"
            out[f"{key}: error ratio ours / best anchor, {anchor}"] = round(
                next(r["error_ratio"] for r in rows if r["game"] == anchor), 3
            )
            out[f"{key}: error ratio, worst game"] = round(max(r["error_ratio"] for r in rows), 3)
            times = sorted(r["time_ratio"] for r in rows)
            out[f"{key}: wall time ours / fastest anchor, median over games"] = round(
                times[len(times) // 2], 2
            )
    for net, row in benchmarks.get("deep", {}).items():
        if isinstance(row, dict) and "ours" in row:
            out[f"deep/{net}: additivity gap ours | shap"] = (
                f"{row['ours'].get('additivity_gap', 'error')} | "
                f"{row['shap'].get('additivity_gap', row['shap']['error'])}"
            )
            if "time_ratio_ours_over_shap" in row:
                out[f"deep/{net}: time ours / shap"] = row["time_ratio_ours_over_shap"]
    memory = benchmarks.get("memory", {})
    if "peak_ratio_captum_over_ours" in memory:
        out["memory: peak ratio captum / ours"] = memory["peak_ratio_captum_over_ours"]
        out["memory: time ratio ours / captum"] = memory["time_ratio_ours_over_captum"]
    text = benchmarks.get("text", {}).get("summary", {})
    if "ig_ratio_ours_over_captum" in text:
        out["text: IG through the embeddings, time ours / captum LayerIntegratedGradients"] = text[
            "ig_ratio_ours_over_captum"
        ]
    cam = benchmarks.get("cam", {}).get("summary", {})
    if "grad_cam_ratio_ours_over_captum" in cam:
        out["cam: grad_cam time ours / captum LayerGradCam"] = cam[
            "grad_cam_ratio_ours_over_captum"
        ]
        out["cam: grad_cam time ours / forward+backward to the input"] = cam[
            "grad_cam_ratio_ours_over_floor"
        ]
    dataset = benchmarks.get("dataset", {})
    if "ratio_explain_dataset_vs_captum_loop" in dataset:
        out["dataset: images/s explain_dataset / captum loop"] = dataset[
            "ratio_explain_dataset_vs_captum_loop"
        ]
        out["dataset: images/s Ray / one process"] = dataset["ratio_ray_vs_single_process"]
    if "speedup_vs_captum" in benchmarks.get("heatmap", {}):
        out["heatmap: speedup vs captum"] = round(benchmarks["heatmap"]["speedup_vs_captum"], 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument(
        "--only", default=",".join(DEFAULT), help=f"comma-separated subset of {BENCHMARKS}"
    )
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    results: dict = {
        "machine": machine(),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": load_average(),
        "timing": {},
        "benchmarks": {},
    }
    total = time.perf_counter()
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        start, load = time.perf_counter(), load_average()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            results["benchmarks"][name] = (
                module.run(quick=args.quick)
                if name != "heatmap"
                else module.run(n=8 if args.quick else 32)
            )
        except Exception as err:  # a failing benchmark is recorded, the others still run
            results["benchmarks"][name] = {"error": repr(err), "traceback": traceback.format_exc()}
        seconds = round(time.perf_counter() - start, 1)
        results["benchmarks"][name]["_seconds"] = seconds
        results["timing"][name] = {
            "seconds": seconds,
            "load_average_at_start": load,
            "load_average_at_end": load_average(),
        }
        print(f"{name}: done in {seconds} s (load average {load_average()})", flush=True)
    results["total_seconds"] = round(time.perf_counter() - total, 1)
    results["load_average_at_end"] = load_average()
    results["headline"] = headline(results["benchmarks"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from explainer._files import atomic_write_bytes

    from .bench_html import render

    atomic_write_bytes(out / "bench.json", json.dumps(results, indent=2, default=float).encode())
    atomic_write_bytes(out / "bench.html", render(results).encode())
    print(
        f"total {results['total_seconds']} s; wrote {out / 'bench.json'} and {out / 'bench.html'}"
    )
    return results


if __name__ == "__main__":
    main()
