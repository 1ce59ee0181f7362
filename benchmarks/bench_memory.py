"""Peak memory of integrated gradients: ours (memory-bounded chunks) vs captum (one expansion).

IG with n_steps=256 on 3x224x224 images with the anchor's CNN (32/64/128/128 channels). Each
run is a fresh subprocess that reports its wall time and its peak resident memory (VmHWM, read
at its end), so no run inherits another's allocator state:

* ``captum``: ``IntegratedGradients(net).attribute(x, n_steps=256)``, no internal_batch_size:
  the whole (steps x images) expansion goes through the network at once;
* ``ours``: ``ex.explain(net, x, "ig", n_steps=256)`` with the default memory budget;
* ``ours_unbounded``: the same with ``memory_budget="64GB"`` (one chunk, as captum): the wall
  time cost of bounding is ours / ours_unbounded - 1.

The brief asks for 32 images; captum's expansion of 32 x 256 rows would hold ~34 MB per row
here (predicted from the tensors autograd saves), about 280 GB, so the batch is lowered to the
largest that keeps captum's predicted peak under CAPTUM_LIMIT (reported as ``batch`` and
``batch_note``). Usage:
    python -m benchmarks.bench_memory [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

CAPTUM_LIMIT = 16e9  # bytes: captum's predicted peak stays under this (machine: 2 cores, ~23 GB)
WANTED_BATCH = 32

CHILD = textwrap.dedent("""
    import json, sys, time, torch, torch.nn as nn
    mode, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(2)
    sys.path.insert(0, {root!r})
    from benchmarks.bench_memory import anchor_cnn, rss_mb
    net = anchor_cnn()
    x = torch.rand((batch, 3, size, size), generator=torch.Generator().manual_seed(0))
    target = torch.arange(batch) % 10
    base = rss_mb("VmRSS")
    start = time.perf_counter()
    if mode == "captum":
        from captum.attr import IntegratedGradients
        attr = IntegratedGradients(net).attribute(x, target=target, n_steps=steps)
        budget = None
    else:
        import explainer as ex
        exp = ex.explain(net, x, "ig", target=target, n_steps=steps, progress=False,
                         memory_budget="64GB" if mode == "ours_unbounded" else None)
        attr, budget = exp.attributions, exp.manifest["memory_budget"]
    seconds = time.perf_counter() - start
    print(json.dumps({{"seconds": seconds, "peak_mb": rss_mb("VmHWM"), "baseline_mb": base,
                      "memory_budget_mb": None if budget is None else budget / 1e6,
                      "checksum": float(attr.double().abs().sum())}}))
""")


def anchor_cnn():
    """The CNN of the IG anchor (shared/anchors/ig_floor.py), seed 0."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).eval()


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak so far) of this process, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def bytes_per_row(size: int) -> int:
    """Bytes autograd saves per (step, image) row at this image size (no margin): measured."""
    import torch

    import explainer as ex
    from explainer._runtime import bytes_per_sample

    per = bytes_per_sample(ex.wrap(anchor_cnn()), torch.zeros(3, size, size))
    return int(per)  # the measured peak cost of one more row (no margin)


def child(mode: str, batch: int, size: int, steps: int) -> dict:
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    code = CHILD.format(root=root)
    done = subprocess.run(
        [sys.executable, "-c", code, mode, str(batch), str(size), str(steps)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    """Run the subprocesses. ``quick``: 2 images of 112x112, 32 steps, one run each (< 30 s).

    The full run repeats ours and ours_unbounded twice, alternating, and keeps the faster of
    each (the time cost of bounding is a few percent; other load on 2 cores is not).
    """
    size, steps, repeats = (112, 32, 1) if quick else (224, 256, 2)
    per_row = bytes_per_row(size)
    batch = 2 if quick else max(1, min(WANTED_BATCH, int(CAPTUM_LIMIT // (per_row * steps))))
    out: dict = {
        "image_size": size,
        "n_steps": steps,
        "batch": batch,
        "rows": batch * steps,
        "load_average_at_start": os.getloadavg()[0],
        "saved_mb_per_row": round(per_row / 1e6, 2),
        "captum_predicted_mb": round(per_row * steps * batch / 1e6),
        "batch_note": (
            f"{WANTED_BATCH} images would make captum hold ~{per_row * steps * WANTED_BATCH / 1e9:.0f} GB "
            f"(predicted from the saved tensors); lowered to {batch}"
            if batch < WANTED_BATCH
            else "as asked"
        ),
    }
    out["captum"] = child("captum", batch, size, steps)
    runs: dict[str, list[dict]] = {"ours": [], "ours_unbounded": []}
    for _ in range(repeats):
        for mode in runs:
            runs[mode].append(child(mode, batch, size, steps))
    for mode, results in runs.items():
        out[mode] = min(results, key=lambda r: r["seconds"])
        out[mode]["all_seconds"] = [round(r["seconds"], 2) for r in results]
    out["peak_ratio_captum_over_ours"] = round(out["captum"]["peak_mb"] / out["ours"]["peak_mb"], 2)
    out["working_ratio_captum_over_ours"] = round(
        (out["captum"]["peak_mb"] - out["captum"]["baseline_mb"])
        / (out["ours"]["peak_mb"] - out["ours"]["baseline_mb"]),
        2,
    )
    out["time_cost_of_bounding"] = round(
        out["ours"]["seconds"] / out["ours_unbounded"]["seconds"] - 1, 3
    )
    out["time_ratio_ours_over_captum"] = round(out["ours"]["seconds"] / out["captum"]["seconds"], 3)
    out["same_result"] = abs(out["ours"]["checksum"] / out["captum"]["checksum"] - 1) < 1e-4
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
