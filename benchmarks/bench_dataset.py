"""Throughput (images/s) of ``explain_dataset`` vs a plain captum loop, and Ray vs one process.

Same images (the demo shapes, 3x64x64), same model (the shipped demo CNN), same batches and
method settings (integrated gradients, Gauss-Legendre, 16 steps, target = predicted class),
all in one run:

- ``captum_loop``: ``for batch in loader: IntegratedGradients(net).attribute(...)`` keeping
  the results in memory (what users write by hand; nothing on disk, nothing resumable);
- ``explain_dataset``: our pipeline, streaming every batch into a zarr store (attributions,
  inputs, scores, extras, done-mask);
- ``explain_dataset_ray``: the same with ``backend="ray"`` on a local Ray cluster of all
  cores (two actors with one torch thread each on a 2-core machine).

Usage: python -m benchmarks.bench_dataset [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def _captum_loop(net, images, batch_size: int, n_steps: int) -> float:
    import torch
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(net)
    start = time.perf_counter()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size]
        with torch.no_grad():
            target = net(x).argmax(1)
        out.append(ig.attribute(x, target=target, n_steps=n_steps, method="gausslegendre"))
    return time.perf_counter() - start


def run(quick: bool = False) -> dict:
    import torch

    import explainer as ex
    from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn
    from explainer.demo.shapes import make_shapes

    n, batch_size, n_steps = (64, 16, 8) if quick else (512, 32, 16)
    threads = torch.get_num_threads()
    net = load_demo_cnn().eval()
    model = ex.wrap(net, class_names=CLASS_NAMES, modality="image")
    data = make_shapes(n, seed=11)
    methods = {"integrated_gradients": {"n_steps": n_steps, "rule": "gausslegendre"}}
    work = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    times: dict[str, float] = {}
    try:
        _captum_loop(net, data.images[:batch_size], batch_size, n_steps)  # warm-up
        times["captum_loop"] = _captum_loop(net, data.images, batch_size, n_steps)
        for backend in ("local", "ray"):
            if backend == "local":  # warm-up, as captum's: one batch (chunk sizes measured)
                ex.explain_dataset(
                    model, data.images[:batch_size], methods, work / "warm_local.zarr",
                    batch_size=batch_size, progress=False,
                )  # fmt: skip
            if backend == "ray":
                import ray

                ray.init(
                    num_cpus=os.cpu_count() or 2,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
                # warm-up: start the actors' workers once so the timing is the steady state
                ex.explain_dataset(
                    model, data.images[:batch_size], methods, work / "warm.zarr",
                    batch_size=batch_size, progress=False, backend="ray",
                )  # fmt: skip
            start = time.perf_counter()
            store = ex.explain_dataset(
                model,
                data.images,
                methods,
                work / f"{backend}.zarr",
                labels=data.labels,
                batch_size=batch_size,
                progress=False,
                backend=backend,
            )
            times["explain_dataset" if backend == "local" else "explain_dataset_ray"] = (
                time.perf_counter() - start
            )
            assert store.complete
            if backend == "ray":
                ray.shutdown()
            torch.set_num_threads(threads)
        size = sum(p.stat().st_size for p in (work / "local.zarr").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {k: n / v for k, v in times.items()}
    return {
        "images": n,
        "image_shape": [3, 64, 64],
        "batch_size": batch_size,
        "method": f"integrated_gradients gausslegendre n_steps={n_steps}",
        "torch_threads": threads,
        "cpus": os.cpu_count(),
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "images_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ratio_explain_dataset_vs_captum_loop": round(
            rate["explain_dataset"] / rate["captum_loop"], 3
        ),
        "ratio_ray_vs_single_process": round(
            rate["explain_dataset_ray"] / rate["explain_dataset"], 3
        ),
        "store_bytes": size,
        "note": "ratios > 1 mean faster than the reference; the store holds inputs, "
        "attributions, scores and extras for every image.",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
