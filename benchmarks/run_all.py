"""Run every benchmark side by side in one process and write reports/bench.json + bench.html.

Ratios (ours vs captum/shap measured in the same run) are the headline; absolute times
move from run to run on shared machines. Usage:
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

BENCHMARKS = ("heatmap", "shap", "ig", "memory", "metrics")


def machine() -> dict:
    from explainer.api import library_versions

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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    results: dict = {
        "machine": machine(),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "benchmarks": {},
    }
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            results["benchmarks"][name] = (
                module.run(quick=args.quick)
                if name != "heatmap"
                else module.run(n=8 if args.quick else 32)
            )
        except Exception as err:  # a failing benchmark is recorded, the others still run
            results["benchmarks"][name] = {"error": repr(err), "traceback": traceback.format_exc()}
        results["benchmarks"][name]["_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: done in {results['benchmarks'][name]['_seconds']} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from explainer.explanation import atomic_write_bytes

    from .bench_html import render

    atomic_write_bytes(out / "bench.json", json.dumps(results, indent=2, default=float).encode())
    atomic_write_bytes(out / "bench.html", render(results).encode())
    print(f"wrote {out / 'bench.json'} and {out / 'bench.html'}")
    return results


if __name__ == "__main__":
    main()
