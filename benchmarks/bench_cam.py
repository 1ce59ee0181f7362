"""The CAM family (explainer/methods/cam.py) beside captum and beside the network's own cost,
in one process, on a ResNet-18-sized HuggingFace ResNet (random weights, no download, the
model of bench_deep) at 224 px:

1. ``grad_cam`` (batch 8, default layer) against captum's ``LayerGradCam`` on the same layer
   (``relu_attributions=True``, then ``LayerAttribution.interpolate`` to 224 px, bilinear)
   and against the floor: one forward and a full backward to the input of the same batch.
   Medians of 5 repeats, interleaved (the order rotates each repeat; the minimums are kept
   too, less moved by other load); our layer map is checked against captum's (max abs
   difference, relative to captum's largest value). Ours, like captum's, stops the backward
   at the layer, so it can be under the "floor"; ``ex.explain`` also runs a no-grad forward
   of the batch (targets, the recorded outputs) and, for the default layer, a one-row forward
   to find it (``ours_named_layer`` passes the layer by name).
2. the other gradient CAMs and eigen_cam (batch 2): seconds each, ratio to one forward +
   backward of the same batch (and to one forward).
3. score_cam (batch 1): the forward rows it needs (channels x samples, + 1 forward per
   sample to read the layer) and its time per row against a plain no-grad forward of the
   same number of rows per call (score_cam's chunk size) measured in the same run.

About 2 minutes on 2 idle cores (estimated: 56 s with score_cam at 112 px, whose calls
take ~4x longer at 224 px); other load on them slows every timing several fold (the ratios
less so: each repeat runs all the contenders in turn; 5 minutes at load average ~3).

``quick``: batch 2, one repeat after one warm-up round, score_cam at 64 px.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from .bench_deep import resnet18_like

TARGET = 3
GRADIENT_CAMS = ("grad_cam", "hires_cam", "grad_cam_pp", "xgrad_cam", "layer_cam", "eigen_cam")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 0
) -> dict[str, dict]:
    """Seconds of each function, run in turn ``repeats`` times (order rotated each round)
    after ``warmup`` rounds that are not kept: the median, the minimum and every value.

    Warm-up rounds: after a single warm-up call, the first one or two rounds at 224 px were
    seen to run up to 5x slower than the later ones (cause not pinned down)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(warmup + repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {
        name: {
            "seconds": round(statistics.median(t), 4),
            "min_seconds": round(min(t), 4),
            "all_seconds": [round(v, 4) for v in t],
        }
        for name, t in times.items()
    }


def forward_backward(net: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The floor: one forward and a full backward to the input."""

    def fn() -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(net(leaf)[:, TARGET].sum(), leaf)
        return grad

    return fn


def forward(net: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def fn() -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    return fn


def grad_cam_vs_captum(
    net: nn.Module, model, batch: int, size: int, repeats: int, warmup: int
) -> dict:
    from captum.attr import LayerAttribution, LayerGradCam

    import explainer as ex

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    exp = ex.explain(model, x, "grad_cam", target=TARGET, progress=False)  # warm-up (memory probe)
    first = time.perf_counter() - start
    name = exp.params["layer"]
    layer = dict(net.named_modules())[name]

    def captum() -> tuple[torch.Tensor, torch.Tensor]:
        cam = LayerGradCam(net, layer).attribute(x, target=TARGET, relu_attributions=True)
        return cam, LayerAttribution.interpolate(cam, (size, size), interpolate_mode="bilinear")

    fns = {
        "ours": lambda: ex.explain(model, x, "grad_cam", target=TARGET, progress=False),
        "ours_named_layer": lambda: ex.explain(
            model, x, "grad_cam", target=TARGET, layer=name, progress=False
        ),
        "captum": captum,
        "floor": forward_backward(net, x),
    }
    timed = interleaved(fns, repeats, warmup)
    ratio = lambda a, b, key="seconds": round(timed[a][key] / timed[b][key], 3)  # noqa: E731
    theirs, theirs_up = captum()
    ours_map, captum_map = exp.extras["cam"], theirs.detach()[:, 0]
    diff = float((ours_map - captum_map).abs().max())
    scale = float(captum_map.abs().max())
    diff_up = float((exp.attributions.sum(1) - theirs_up.detach()[:, 0]).abs().max())
    return {
        "batch": batch,
        "image_size": size,
        "layer": name,
        "layer_map_shape": list(ours_map.shape),
        "repeats": repeats,
        "warmup_rounds": warmup,
        "ours_first_call_seconds": round(first, 3),
        **timed,
        "ratio_ours_over_captum": ratio("ours", "captum"),
        "ratio_ours_over_floor": ratio("ours", "floor"),
        "ratio_ours_named_layer_over_captum": ratio("ours_named_layer", "captum"),
        "ratio_captum_over_floor": ratio("captum", "floor"),
        "ratio_of_minimums_ours_over_captum": ratio("ours", "captum", "min_seconds"),
        "ratio_of_minimums_ours_over_floor": ratio("ours", "floor", "min_seconds"),
        "max_abs_difference_vs_captum": diff,
        "captum_max_abs": scale,
        "relative_difference_vs_captum": diff / max(scale, 1e-30),
        "max_abs_difference_vs_captum_upsampled": diff_up,
        "matches_captum_1e-4_relative": diff <= 1e-4 * max(scale, 1e-30),
    }


def other_cams(net: nn.Module, model, batch: int, size: int, repeats: int, warmup: int) -> dict:
    import explainer as ex

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    fns: dict[str, Callable[[], object]] = {
        m: (lambda m=m: ex.explain(model, x, m, target=TARGET, progress=False))
        for m in GRADIENT_CAMS
    }
    fns["forward_backward"] = forward_backward(net, x)
    fns["forward"] = forward(net, x)
    timed = interleaved(fns, repeats, warmup)
    fb, fw = timed["forward_backward"]["seconds"], timed["forward"]["seconds"]
    for m in GRADIENT_CAMS:
        timed[m]["ratio_over_forward_backward"] = round(timed[m]["seconds"] / fb, 3)
        timed[m]["ratio_over_forward"] = round(timed[m]["seconds"] / fw, 3)
    return {
        "batch": batch,
        "image_size": size,
        "repeats": repeats,
        "warmup_rounds": warmup,
        "methods": timed,
    }


def score_cam(net: nn.Module, model, size: int, repeats: int) -> dict:
    import explainer as ex
    from explainer._runtime import Runtime, network_cost

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    ex.explain(model, x, "eigen_cam", progress=False)  # warm-up: the no-grad memory probe
    per_row = network_cost(model, x[0], False, Runtime()).per_row
    chunk = max(1, (64 * 2**20) // max(per_row, 1))  # score_cam's cap (the budget allows more)
    exp = ex.explain(model, x, "score_cam", target=TARGET, progress=False)
    channels = exp.extras["channel_scores"].shape[1]
    rows = len(x) * channels + len(x)
    plain_rows = torch.randn(chunk, 3, size, size, generator=torch.Generator().manual_seed(4))
    plain_calls = -(-rows // chunk)

    def plain() -> None:  # as many no-grad rows as score_cam, in calls of its chunk size
        with torch.no_grad():
            for _ in range(plain_calls):
                net(plain_rows)

    timed = interleaved(
        {
            "score_cam": lambda: ex.explain(model, x, "score_cam", target=TARGET, progress=False),
            "plain_forward": plain,
        },
        repeats,
    )
    per_score = timed["score_cam"]["seconds"] / rows
    per_plain = timed["plain_forward"]["seconds"] / (plain_calls * chunk)
    return {
        "batch": len(x),
        "image_size": size,
        "layer": exp.params["layer"],
        "channels": channels,
        "forward_rows": rows,
        "forward_rows_note": "channels x samples masked forwards, + 1 forward per sample to read the layer",
        "rows_per_call": chunk,
        "repeats": repeats,
        **timed,
        "plain_forward_rows": plain_calls * chunk,
        "seconds_per_row_score_cam": round(per_score, 5),
        "seconds_per_row_plain_forward": round(per_plain, 5),
        "ratio_per_row_score_cam_over_plain_forward": round(per_score / per_plain, 3),
    }


def run(quick: bool = False) -> dict:
    """Run the three parts; ``quick``: batch 2, one repeat, score_cam at 64 px (< 30 s)."""
    import explainer as ex

    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=UserWarning)
    size = 224
    net, _ = resnet18_like(size)
    model = ex.wrap(net, modality="image")
    out: dict = {
        "network": "ResNet-18-sized HuggingFace ResNet, random weights (bench_deep.resnet18_like)",
        "target": TARGET,
        "quick": quick,
        "threads": torch.get_num_threads(),
        "load_average_at_start": _load(),
    }
    repeats, warmup = (1, 1) if quick else (5, 2)
    out["grad_cam"] = grad_cam_vs_captum(
        net, model, batch=2 if quick else 8, size=size, repeats=repeats, warmup=warmup
    )
    out["other_cams"] = other_cams(
        net, model, batch=2, size=size, repeats=1 if quick else 3, warmup=warmup
    )
    out["score_cam"] = score_cam(net, model, size=64 if quick else size, repeats=1 if quick else 2)
    out["load_average_at_end"] = _load()
    g, s = out["grad_cam"], out["score_cam"]
    out["summary"] = {
        "grad_cam_ratio_ours_over_captum": g["ratio_ours_over_captum"],
        "grad_cam_ratio_ours_over_floor": g["ratio_ours_over_floor"],
        "grad_cam_max_abs_difference_vs_captum": g["max_abs_difference_vs_captum"],
        "grad_cam_matches_captum": g["matches_captum_1e-4_relative"],
        "score_cam_forward_rows": s["forward_rows"],
        "score_cam_ratio_per_row_over_plain_forward": s[
            "ratio_per_row_score_cam_over_plain_forward"
        ],
    }
    methods = out["other_cams"]["methods"]
    out["headline"] = [
        f"grad_cam, batch {g['batch']} at {size} px: ours / captum LayerGradCam "
        f"{g['ratio_ours_over_captum']}, ours / forward+backward to the input "
        f"{g['ratio_ours_over_floor']} (layer named: ours / captum "
        f"{g['ratio_ours_named_layer_over_captum']}); max abs difference vs captum "
        f"{g['max_abs_difference_vs_captum']:.2e} (captum's max {g['captum_max_abs']:.2e})",
        "batch 2, time / forward+backward: "
        + ", ".join(f"{m} {methods[m]['ratio_over_forward_backward']}" for m in GRADIENT_CAMS),
        f"score_cam at {s['image_size']} px: {s['forward_rows']} forward rows, time per row / "
        f"plain forward row {s['ratio_per_row_score_cam_over_plain_forward']}",
    ]
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
