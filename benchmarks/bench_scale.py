"""At real scale, beside captum and shap in the same process: seconds, ratios, and each
method's distance from the cost of the network itself. Random weights, nothing downloaded.

1. ResNet-18-sized HuggingFace ResNet (``bench_deep.resnet18_like``), batch 4 at 224 px, a
   fixed target per sample (the same tensor for every engine), inputs scaled per sample to
   exactly [-2, 2] (so one absolute noise level is the same fraction of every sample's range,
   as captum's ``stdevs`` must be one number). Per method: ours (``ex.explain`` on a model
   wrapped once), captum at equal settings, shap where it has the method, and the *floor*:
   forward+backward passes (``fb``: forward and a full backward to the input of the batch
   of 4) and no-grad forwards (``fwd``: the batch of 4) that the method needs, each times
   its median measured in the same interleaved run (``ours_over_floor``; the same from the
   minimums: ``ours_over_floor_of_minimums``):

   ============== ============================================== ======================
   method         captum / shap                                  floor
   ============== ============================================== ======================
   saliency       Saliency                                       1 fb
   gradient_x_in. InputXGradient                                 1 fb
   grad_cam       LayerGradCam (our layer) + bilinear upsampling 1 fb
   deep_shap      DeepLiftShap / DeepExplainer, 4 references      4 fb + 2 fwd (delta)
   IG-32          IntegratedGradients gausslegendre, 32 steps,    32 fb + 2 fwd
                  zeros baseline, with its convergence delta
                  (ours computes one too; rule="gausslegendre",
                  fixed steps)
   smoothgrad-16  NoiseTunnel(Saliency) smoothgrad, stdev 0.15    16 fb
                  of the range (ours: stdev=0.15, a fraction)
   gradient_shap  GradientShap n_samples=16, stdevs=0 / shap      16 fb + 3 fwd (delta:
                  GradientExplainer nsamples=16, 8 references     f(x), f(references))
   kernel_shap    KernelShap n_samples=256 / shap KernelExplainer 256 fwd (1024 rows)
                  nsamples=256, l1_reg=False; 16x16-pixel grid
                  (196 segments), zero fill; rows in chunks of 16
   ============== ============================================== ======================

   shap explains one output at a time: it is given, per sample, the network reduced to
   that sample's target column (its loop over samples is timed). shap's KernelExplainer
   explains only the first image (its time is multiplied by 4, as the row's note says).
   shap's DeepExplainer and captum's DeepLiftShap run on copies of the network (shap's
   leaves its hooks on the network when it fails, which breaks every later backward).
   captum's gradient_shap delta is not asked for (it would run 2 x 64 more forward rows);
   ours runs f(x) and f(references), counted in its floor.
   Agreement: for deterministic methods the max abs difference relative to captum's largest
   value (grad_cam: the layer maps); for sampled ones the correlation of the maps (per
   segment for kernel_shap: our estimator is a Gaussian process, theirs regressions, so
   only a rough match is expected at 256 of 2^196 coalitions). Reported, never asserted.
   Timing (``bench_cam.interleaved``: the order rotates each round; medians and minimums):
   the cheap methods and deep_shap as one run, 1 warm-up round and 3 kept; IG, smoothgrad
   and gradient_shap as a second run right after it, 2 rounds without a warm-up round of
   their own (each call is 30-80 network rows, after the first run warmed the process);
   kernel_shap (~200 s a round for the three engines) as a third run of 2 rounds (its
   median is their mean). Each run has its own fb and fwd, so a floor always comes from
   the run of the method it is compared with.
2. ViT-small-sized ``ViTForImageClassification`` (hidden 384, 12 layers, 6 heads), batch 2 at
   224 px: saliency and IG-16 beside captum (on a logits wrapper of the same network; ours
   wraps the HuggingFace model itself), grad_cam (our default layer; captum's LayerGradCam
   needs a spatial layer) and attention_rollout: ours and ours / floor only.
3. BERT-small (hidden 512, 4 layers, 8 heads), 4 sequences of 64 random ids ([CLS] first,
   [SEP] last, no padding): IG-16 through the word embeddings beside captum's
   ``LayerIntegratedGradients`` (gausslegendre, same baseline: [CLS]/[SEP] kept, every other
   token id 0, as ours with a tokenizer whose special ids are 0, 101, 102), and saliency
   beside captum's ``Saliency`` over ``inputs_embeds`` (summed |gradient| per token).
   Ours explains text one sentence per call for IG (every path row keeps its sentence's
   ids and mask; see bench_text) and the batch in one call for saliency (no built rows).
4. ``ex.evaluate`` (default metrics) of saliency and IG (n_steps=8) on 4 images of the
   ResNet: seconds, and the network rows it ran, counted by a forward pre-hook (rows = the
   batch dimension of each call, split by ``torch.is_grad_enabled()``: grad-enabled rows
   are counted at the fb per-row cost, the others at the fwd one, both measured again right
   after evaluate on part 1's batch); ``seconds_over_rows_time`` is how far evaluate is
   above the network work it asked for.
5. Per-call overhead on ``nn.Linear(10, 2)``, batch 1: ``ex.explain(..., "saliency")``,
   captum ``Saliency(net).attribute`` and a bare forward+backward, in interleaved blocks of
   200 calls (10 blocks + 1 warm-up block each): microseconds per call.
6. ``ex.report`` of 32 images at 224 px x 3 methods (saliency, gradient_x_input, grad_cam)
   of the demo CNN (``explainer.demo``; its global pooling takes any size): seconds, bytes.
7. Peak memory of one IG-32 call on the ResNet, batch 4 at 224 px, ours (default budget)
   and captum (``internal_batch_size=None``: all 128 rows at once, its default), each in a
   fresh subprocess (peak RSS, as bench_memory, which measures a smaller CNN).

8. IG at equal true error: the ResNet, 2 images at 224 px, true error = relative L2
   distance to our Gauss-Legendre IG with 256 steps. Ours with its error control
   (``tolerance=0.01``: steps chosen per sample) against captum's default rule and steps
   (gausslegendre, 50), timed interleaved (1 warm-up round, 2 kept); captum's max error
   also at 8, 12, 16, 24 and 32 steps, untimed: the fewest of those steps that reach our
   max error give "captum at equal error", its time scaled from the 50-step time by rows.

About 8-9 minutes on 2 idle cores (kernel_shap's three engines are about 40% of it); other
load on them slows every timing several fold (the ratios less: each round runs every
contender in turn; compare the ratios of minimums too), so the load average is recorded at
the start and the end. ``quick``: ResNet at 64 px batch 2, ViT and BERT with 2 layers of 64,
one round without warm-up, kernel_shap at 32 samples, small evaluate/report/memory runs
(~1 minute; its ratios are first-call timings, a smoke test only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .bench_cam import interleaved
from .bench_deep import _Logits, resnet18_like

SMOOTH_STDEV = 0.15  # fraction of each sample's value range
CAPTUM_GRID = (8, 12, 16, 24, 32, 50)  # captum's Gauss-Legendre steps in part 8
RANGE = (-2.0, 2.0)  # every sample scaled to exactly this range


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    """Images scaled per sample to exactly RANGE (so their value ranges are all equal)."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    flat = x.reshape(n, -1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (x - lo) / (hi - lo) * (RANGE[1] - RANGE[0]) + RANGE[0]


class _Run:
    """A contender: calls ``fn``, keeps its last result; an error is recorded once and the
    contender then does nothing (its times are dropped)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.result, self.error = fn, None, None

    def __call__(self) -> Any:
        if self.error is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.result = self.fn()
            except Exception as err:  # a peer that cannot run this network is recorded
                self.error = f"{type(err).__name__}: {err}"[:300]
        return self.result


class _Column(nn.Module):
    """The network reduced to one output column (shap explains every output it is given)."""

    def __init__(self, net: nn.Module, column: int) -> None:
        super().__init__()
        self.net, self.column = net, column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.column : self.column + 1]


class _SpecialIds:
    """A minimal tokenizer for ``ex.wrap``: only its special ids matter here ([PAD], [CLS],
    [SEP] stay in every reference)."""

    all_special_ids = (0, 101, 102)
    pad_token_id = 0

    def __call__(self, text: str) -> list[int]:
        return [101, 102]


def _captum_ig(net: Callable, x: torch.Tensor, targets: torch.Tensor, steps: int) -> _Run:
    """captum's IntegratedGradients at our settings: Gauss-Legendre, zero baseline, with its
    convergence delta (ours computes one too)."""
    from captum.attr import IntegratedGradients

    return _Run(
        lambda: IntegratedGradients(net).attribute(
            x, target=targets, n_steps=steps, method="gausslegendre", return_convergence_delta=True
        )
    )


def forward_backward(net: Callable, x: torch.Tensor, target: torch.Tensor) -> Callable[[], Any]:
    """fb: a forward and a full backward to the input, the targets' scores summed."""

    def fn() -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_(True)
            out = net(leaf)
            (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), leaf)
        return grad

    return fn


def forward(net: Callable, x: Any) -> Callable[[], Any]:
    def fn() -> Any:
        with torch.no_grad():
            return net(x)

    return fn


def _max_rel_diff(ours: Any, theirs: Any) -> float | None:
    """max |ours - theirs| / max |theirs|."""
    if ours is None or theirs is None:
        return None
    a, b = torch.as_tensor(_np(ours)), torch.as_tensor(_np(theirs))
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _corr(ours: Any, theirs: Any) -> float | None:
    if ours is None or theirs is None:
        return None
    a, b = _np(ours).ravel(), _np(theirs).ravel()
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def _np(t: Any) -> np.ndarray | None:
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return t.detach().double().numpy()
    return np.asarray(t, dtype=np.float64)


def _time_group(specs: dict[str, dict], floor_fns: dict, repeats: int, warmup: int) -> dict:
    """One interleaved run of every contender of ``specs`` and the floor components."""
    fns: dict[str, Callable[[], Any]] = dict(floor_fns)
    for method, spec in specs.items():
        for who in ("ours", "captum", "shap"):
            if spec.get(who) is not None:
                fns[f"{method}/{who}"] = spec[who]
    return interleaved(fns, repeats, warmup)


def _rows(workload: str, specs: dict[str, dict], timed: dict) -> list[dict]:
    fb, fwd = timed["fb"]["seconds"], timed["fwd"]["seconds"]
    fb_min, fwd_min = timed["fb"]["min_seconds"], timed["fwd"]["min_seconds"]
    rows = []
    for method, spec in specs.items():
        row: dict[str, Any] = {"workload": workload, "method": method}
        errors = {}
        for who in ("ours", "captum", "shap"):
            run = spec.get(who)
            if run is None:
                row[f"{who}_s"] = row[f"{who}_min_s"] = None
                continue
            if run.error is not None:
                errors[who] = run.error
                row[f"{who}_s"] = row[f"{who}_min_s"] = None
                continue
            t = timed[f"{method}/{who}"]
            scale = spec.get("shap_scale", 1) if who == "shap" else 1
            row[f"{who}_s"] = round(t["seconds"] * scale, 4)
            row[f"{who}_min_s"] = round(t["min_seconds"] * scale, 4)
        n_fb, n_fwd = spec["floor"]
        floor = n_fb * fb + n_fwd * fwd
        floor_min = n_fb * fb_min + n_fwd * fwd_min
        row.update(
            ours_over_captum=_ratio(row["ours_s"], row["captum_s"]),
            ours_over_shap=_ratio(row["ours_s"], row["shap_s"]),
            ours_over_captum_of_minimums=_ratio(row["ours_min_s"], row["captum_min_s"]),
            floor_s=round(floor, 4),
            floor=f"{n_fb} fb + {n_fwd} fwd" if n_fwd else f"{n_fb} fb",
            ours_over_floor=_ratio(row["ours_s"], floor),
            captum_over_floor=_ratio(row["captum_s"], floor),
            floor_of_minimums_s=round(floor_min, 4),
            ours_over_floor_of_minimums=_ratio(row["ours_min_s"], floor_min),
            captum_over_floor_of_minimums=_ratio(row["captum_min_s"], floor_min),
            agreement=spec["agree"]() if spec.get("agree") and not errors.get("ours") else None,
        )
        if spec.get("note"):
            row["note"] = spec["note"]
        if errors:
            row["errors"] = errors
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------
# 1. ResNet-18-sized CNN
# ----------------------------------------------------------------------------------------


def resnet_workload(
    size: int, batch: int, quick: bool, repeats: int, warmup: int, kernel_repeats: int
) -> dict:
    import shap
    from captum.attr import (
        DeepLiftShap,
        GradientShap,
        InputXGradient,
        KernelShap,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )

    import explainer as ex

    net, _ = resnet18_like(size)
    net_copy = deepcopy(net)
    model = ex.wrap(net, modality="image")
    x = _images(batch, size, 1)
    targets = torch.arange(batch) * 3 % 10
    bg8 = _images(8, size, 2)
    bg4 = bg8[:4]
    cell = 16
    side = size // cell
    grid = (torch.arange(size)[:, None] // cell) * side + torch.arange(size)[None] // cell
    mask = grid.view(1, 1, size, size)  # 196 segments at 224 px
    n_seg = side * side
    ig_steps, sg_samples, gs_samples = 32, 16, 16
    ks_samples = 32 if quick else 256
    chunk = 16
    sigma = SMOOTH_STDEV * (RANGE[1] - RANGE[0])  # captum's absolute stdev, the same fraction

    def ours(method: str, **params: Any) -> _Run:
        return _Run(lambda: ex.explain(model, x, method, target=targets, progress=False, **params))

    # grad_cam: captum on the layer ours picks by default (a first call finds it)
    layer_name = ex.explain(model, x, "grad_cam", target=targets, progress=False).params["layer"]
    layer = dict(net.named_modules())[layer_name]

    def captum_cam() -> tuple[torch.Tensor, torch.Tensor]:
        cam = LayerGradCam(net, layer).attribute(x, target=targets, relu_attributions=True)
        return cam, LayerAttribution.interpolate(cam, (size, size), interpolate_mode="bilinear")

    def shap_per_sample(make: Callable[[nn.Module], Any], call: Callable[[Any, int], Any]):
        """shap on each sample with the network reduced to its target column; on a copy of
        the network (shap's DeepExplainer leaves its hooks behind when it fails)."""
        copy = deepcopy(net)

        def fn() -> np.ndarray:
            out = []
            for j in range(batch):
                explainer = make(_Column(copy, int(targets[j])))
                values = call(explainer, j)
                values = values[0] if isinstance(values, list) else values
                out.append(np.asarray(values).reshape(1, 3, size, size))
            return np.concatenate(out)

        return fn

    def shap_kernel() -> np.ndarray:
        """shap's KernelExplainer over the grid segments of image 0 (zero fill)."""
        x0, t0, g = x[0], int(targets[0]), grid.view(-1)

        def f(z: np.ndarray) -> np.ndarray:
            keep = torch.as_tensor(z, dtype=x.dtype)[:, g].view(-1, 1, size, size)
            out = []
            with torch.no_grad():
                for start in range(0, len(keep), chunk):
                    out.append(net(x0[None] * keep[start : start + chunk])[:, t0])
            return torch.cat(out).double().numpy()

        explainer = shap.KernelExplainer(f, np.zeros((1, n_seg)))
        return np.asarray(
            explainer.shap_values(
                np.ones((1, n_seg)), nsamples=ks_samples, l1_reg=False, silent=True
            )
        ).reshape(-1)

    first_pixel = torch.stack([(grid.view(-1) == k).nonzero()[0, 0] for k in range(n_seg)])

    def per_segment_captum(attr: torch.Tensor) -> np.ndarray:  # captum repeats phi_k
        return attr.detach()[:, 0].reshape(batch, -1)[:, first_pixel].double().numpy()

    cheap: dict[str, dict] = {
        "saliency": {
            "ours": ours("saliency"),
            "captum": _Run(lambda: Saliency(net).attribute(x, target=targets)),
            "floor": (1, 0),
        },
        "gradient_x_input": {
            "ours": ours("gradient_x_input"),
            "captum": _Run(lambda: InputXGradient(net).attribute(x, target=targets)),
            "floor": (1, 0),
        },
        "grad_cam": {
            "ours": ours("grad_cam"),
            "captum": _Run(captum_cam),
            "floor": (1, 0),
            "note": f"layer {layer_name}; ours also runs a no-grad forward of the batch",
        },
        "deep_shap": {
            "ours": ours("deep_shap", background=bg4),
            "captum": _Run(  # on a copy too: its hooks never touch the others' network
                lambda: DeepLiftShap(net_copy).attribute(x, baselines=bg4, target=targets)
            ),
            "shap": _Run(
                shap_per_sample(
                    lambda col: shap.DeepExplainer(col, bg4),
                    lambda e, j: e.shap_values(x[j : j + 1], check_additivity=False),
                )
            ),
            "floor": (4, 2),
            "note": "4 references; floor: 4 fb of 4 x batch rows + f(x), f(references)",
        },
    }
    sampled: dict[str, dict] = {
        f"integrated_gradients_{ig_steps}": {
            "ours": ours(
                "integrated_gradients", n_steps=ig_steps, rule="gausslegendre", baselines="zeros"
            ),
            "captum": _captum_ig(net, x, targets, ig_steps),
            "floor": (ig_steps, 2),
        },
        f"smoothgrad_{sg_samples}": {
            "ours": ours("smoothgrad", n_samples=sg_samples, stdev=SMOOTH_STDEV),
            "captum": _Run(
                lambda: NoiseTunnel(Saliency(net)).attribute(
                    x, nt_type="smoothgrad", nt_samples=sg_samples, stdevs=sigma, target=targets
                )
            ),
            "floor": (sg_samples, 0),
            "note": f"stdev {SMOOTH_STDEV} of each sample's range = {sigma} absolute",
        },
        f"gradient_shap_{gs_samples}": {
            "ours": ours("gradient_shap", background=bg8, n_samples=gs_samples, stdev=0.0),
            "captum": _Run(
                lambda: GradientShap(net).attribute(
                    x, baselines=bg8, n_samples=gs_samples, stdevs=0.0, target=targets
                )
            ),
            "shap": _Run(
                shap_per_sample(
                    lambda col: shap.GradientExplainer(col, bg8),
                    lambda e, j: e.shap_values(x[j : j + 1], nsamples=gs_samples, rseed=0),
                )
            ),
            "floor": (gs_samples, (batch + len(bg8)) / batch),
            "note": "8 references; floor: + f(x), f(references) of ours' delta",
        },
    }
    kernel: dict[str, dict] = {
        f"kernel_shap_{ks_samples}": {
            "ours": ours(
                "kernel_shap", n_samples=ks_samples, feature_mask=mask, fill="zeros", seed=0
            ),
            "captum": _Run(
                lambda: KernelShap(net).attribute(
                    x,
                    baselines=0.0,
                    target=targets,
                    feature_mask=mask,
                    n_samples=ks_samples,
                    perturbations_per_eval=chunk,
                )
            ),
            "shap": _Run(shap_kernel),
            "shap_scale": batch,
            "floor": (0, ks_samples),
            "note": f"{n_seg} grid segments; shap: image 0 only, time x {batch}",
        },
    }
    ig = f"integrated_gradients_{ig_steps}"
    agree = {
        "saliency": lambda: {
            "vs_captum": _max_rel_diff(
                cheap["saliency"]["ours"].result.attributions, cheap["saliency"]["captum"].result
            )
        },
        "gradient_x_input": lambda: {
            "vs_captum": _max_rel_diff(
                cheap["gradient_x_input"]["ours"].result.attributions,
                cheap["gradient_x_input"]["captum"].result,
            )
        },
        "grad_cam": lambda: {
            "vs_captum_layer_map": _max_rel_diff(
                cheap["grad_cam"]["ours"].result.extras["cam"],
                _np(cheap["grad_cam"]["captum"].result[0][:, 0]),
            ),
            "vs_captum_upsampled": _max_rel_diff(
                cheap["grad_cam"]["ours"].result.attributions.sum(1),
                _np(cheap["grad_cam"]["captum"].result[1][:, 0]),
            ),
        },
        "deep_shap": lambda: {
            "vs_captum": _max_rel_diff(
                cheap["deep_shap"]["ours"].result.attributions,
                _np(cheap["deep_shap"]["captum"].result),
            ),
            "vs_shap": _max_rel_diff(
                cheap["deep_shap"]["ours"].result.attributions,
                _np(cheap["deep_shap"]["shap"].result),
            ),
            # which one adds up: |sum(phi) - (f(x) - mean f(references))|, relative, worst
            "additivity_gap_ours": _additivity_gap(
                net, x, bg4, targets, cheap["deep_shap"]["ours"].result.attributions
            ),
            "additivity_gap_captum": _additivity_gap(
                net, x, bg4, targets, cheap["deep_shap"]["captum"].result
            ),
        },
        ig: lambda: {
            "vs_captum": _max_rel_diff(
                sampled[ig]["ours"].result.attributions, _np(sampled[ig]["captum"].result[0])
            ),
            "delta_ours": _np(sampled[ig]["ours"].result.extras["convergence_delta"]).tolist(),
            "delta_captum": _np(sampled[ig]["captum"].result[1]).tolist(),
        },
        f"smoothgrad_{sg_samples}": lambda: {
            "correlation_vs_captum": _corr(
                sampled[f"smoothgrad_{sg_samples}"]["ours"].result.attributions,
                _np(sampled[f"smoothgrad_{sg_samples}"]["captum"].result),
            )
        },
        f"gradient_shap_{gs_samples}": lambda: {
            "correlation_vs_captum": _corr(
                sampled[f"gradient_shap_{gs_samples}"]["ours"].result.attributions,
                _np(sampled[f"gradient_shap_{gs_samples}"]["captum"].result),
            ),
            "correlation_vs_shap": _corr(
                sampled[f"gradient_shap_{gs_samples}"]["ours"].result.attributions,
                sampled[f"gradient_shap_{gs_samples}"]["shap"].result,
            ),
        },
        f"kernel_shap_{ks_samples}": lambda: _kernel_agreement(
            kernel[f"kernel_shap_{ks_samples}"], per_segment_captum
        ),
    }
    for group in (cheap, sampled, kernel):
        for method, spec in group.items():
            spec["agree"] = _guarded(agree[method])
    floor_fns = {"fb": forward_backward(net, x, targets), "fwd": forward(net, x)}
    load_start = _load()
    timed_cheap = _time_group(cheap, floor_fns, repeats, warmup)
    # 2 rounds in a full run (each round is 30-80 network rows per engine; the suite must
    # stay under 15 minutes on 2 cores)
    timed_sampled = _time_group(sampled, floor_fns, max(1, min(repeats, 2)), 0)
    timed_kernel = _time_group(kernel, floor_fns, kernel_repeats, 0)
    workload = f"resnet18 {size}px b{batch}"
    rows = (
        _rows(workload, cheap, timed_cheap)
        + _rows(workload, sampled, timed_sampled)
        + _rows(workload, kernel, timed_kernel)
    )
    return {
        "workload": workload,
        "rows": rows,
        "targets": targets.tolist(),
        "floor_components": {
            "cheap_run": {k: timed_cheap[k] for k in ("fb", "fwd")},
            "sampled_run": {k: timed_sampled[k] for k in ("fb", "fwd")},
            "kernel_run": {k: timed_kernel[k] for k in ("fb", "fwd")},
        },
        "per_row_seconds": {
            "fb": timed_cheap["fb"]["seconds"] / batch,
            "fwd": timed_cheap["fwd"]["seconds"] / batch,
        },
        "timings": {
            "cheap_run": timed_cheap,
            "sampled_run": timed_sampled,
            "kernel_run": timed_kernel,
        },
        "load_average": [load_start, _load()],
        "_net": net,
        "_model": model,
        "_x": x,
        "_targets": targets,
        "_repeats": repeats,
    }


def _guarded(fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapped() -> Any:
        try:
            return fn()
        except Exception as err:  # an agreement check never stops the benchmark
            return {"error": f"{type(err).__name__}: {err}"[:200]}

    return wrapped


def _additivity_gap(
    net: nn.Module, x: torch.Tensor, refs: torch.Tensor, targets: torch.Tensor, phi: Any
) -> float | None:
    """max over samples of |sum(phi) - (f(x) - mean_b f(b))| / max(1, |f(x) - mean_b f(b)|)."""
    if phi is None:
        return None
    with torch.no_grad():
        change = net(x).gather(1, targets[:, None])[:, 0] - net(refs)[:, targets].mean(0)
    total = torch.as_tensor(_np(phi)).reshape(len(x), -1).sum(1)
    gap = (total - change.double()).abs() / change.double().abs().clamp_min(1.0)
    return round(float(gap.max()), 6)


def _kernel_agreement(spec: dict, per_segment_captum: Callable) -> dict:
    ours = spec["ours"].result.extras["feature_values"].double().numpy()  # (N, M)
    out: dict[str, Any] = {}
    if spec["captum"].result is not None:
        theirs = per_segment_captum(spec["captum"].result)
        out["correlation_vs_captum_per_sample"] = [
            _corr(ours[i], theirs[i]) for i in range(len(ours))
        ]
    if spec["shap"].result is not None:
        out["correlation_vs_shap_image0"] = _corr(ours[0], spec["shap"].result)
        if spec["captum"].result is not None:
            out["correlation_captum_vs_shap_image0"] = _corr(theirs[0], spec["shap"].result)
    return out


# ----------------------------------------------------------------------------------------
# 2. ViT-small-sized
# ----------------------------------------------------------------------------------------


def vit_workload(quick: bool, repeats: int, warmup: int) -> dict:
    from captum.attr import Saliency
    from transformers import ViTConfig, ViTForImageClassification

    import explainer as ex

    size, batch, steps = (64, 2, 16) if quick else (224, 2, 16)
    hidden, layers, heads = (64, 2, 2) if quick else (384, 12, 6)
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=size,
        patch_size=16,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        num_labels=10,
    )
    vit = ViTForImageClassification(config).eval()
    logits = _Logits(vit).eval()  # captum and the floor: the same network, logits out
    model = ex.wrap(vit, modality="image")
    x = _images(batch, size, 3)
    targets = torch.tensor([3, 7][:batch])

    def ours(method: str, **params: Any) -> _Run:
        return _Run(lambda: ex.explain(model, x, method, target=targets, progress=False, **params))

    specs: dict[str, dict] = {
        "saliency": {
            "ours": ours("saliency"),
            "captum": _Run(lambda: Saliency(logits).attribute(x, target=targets)),
            "floor": (1, 0),
        },
        f"integrated_gradients_{steps}": {
            "ours": ours("integrated_gradients", n_steps=steps, rule="gausslegendre"),
            "captum": _captum_ig(logits, x, targets, steps),
            "floor": (steps, 2),
        },
        "grad_cam": {"ours": ours("grad_cam"), "floor": (1, 0), "note": "no captum (tokens)"},
        "attention_rollout": {
            "ours": ours("attention_rollout"),
            "floor": (0, 1),
            "note": "ours switches to eager attention for the call; fwd uses the default",
        },
    }
    ig = f"integrated_gradients_{steps}"
    specs["saliency"]["agree"] = _guarded(
        lambda: {
            "vs_captum": _max_rel_diff(
                specs["saliency"]["ours"].result.attributions,
                _np(specs["saliency"]["captum"].result),
            )
        }
    )
    specs[ig]["agree"] = _guarded(
        lambda: {
            "vs_captum": _max_rel_diff(
                specs[ig]["ours"].result.attributions, _np(specs[ig]["captum"].result[0])
            )
        }
    )
    floor_fns = {"fb": forward_backward(logits, x, targets), "fwd": forward(logits, x)}
    timed = _time_group(specs, floor_fns, repeats, warmup)
    workload = f"vit_small {size}px b{batch}"
    cam = specs["grad_cam"]["ours"].result
    rows = _rows(workload, specs, timed)
    for row in rows:
        if row["method"] == "grad_cam" and cam is not None:
            row["note"] += f"; layer {cam.params.get('layer')}"
    return {"workload": workload, "rows": rows, "timings": timed}


# ----------------------------------------------------------------------------------------
# 3. BERT-small
# ----------------------------------------------------------------------------------------


def bert_workload(quick: bool, repeats: int, warmup: int) -> dict:
    import transformers
    from captum.attr import LayerIntegratedGradients, Saliency

    import explainer as ex

    n, length, steps = (2, 16, 16) if quick else (4, 64, 16)
    hidden, layers, heads = (64, 2, 2) if quick else (512, 4, 8)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        vocab_size=30522,
        num_labels=2,
    )
    bert = transformers.BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1000, 30522, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    targets = torch.arange(n) % 2
    special = (ids == 101) | (ids == 102)
    baseline = torch.where(special, ids, torch.zeros_like(ids))  # ours' reference, as ids
    model = ex.wrap(bert, modality="text", tokenizer=_SpecialIds())
    words = bert.bert.embeddings.word_embeddings

    def ours(method: str, **params: Any) -> _Run:
        return _Run(
            lambda: ex.explain(
                model,
                ids,
                method,
                target=targets,
                forward_args={"attention_mask": mask},
                progress=False,
                **params,
            )
        )

    lig = LayerIntegratedGradients(lambda i, m: bert(i, attention_mask=m).logits, words)

    def from_embeddings(e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return bert(inputs_embeds=e, attention_mask=m).logits

    def captum_saliency() -> torch.Tensor:
        with torch.no_grad():
            e = words(ids)
        grads = Saliency(from_embeddings).attribute(
            e, target=targets, additional_forward_args=(mask,)
        )
        return grads.sum(-1)  # |gradient| summed per token, as ours

    ig = f"integrated_gradients_{steps}"
    specs: dict[str, dict] = {
        ig: {
            "ours": ours("integrated_gradients", n_steps=steps, rule="gausslegendre"),
            "captum": _Run(
                lambda: lig.attribute(
                    ids,
                    baselines=baseline,
                    additional_forward_args=(mask,),
                    target=targets,
                    n_steps=steps,
                    method="gausslegendre",
                    return_convergence_delta=True,
                )
            ),
            "floor": (steps, 2),
            "note": "ours: one sentence per call; captum: all rows in one call",
        },
        "saliency": {
            "ours": ours("saliency"),
            "captum": _Run(captum_saliency),
            "floor": (1, 0),
            "note": "captum: Saliency over inputs_embeds, summed per token",
        },
    }
    specs[ig]["agree"] = _guarded(
        lambda: {
            "vs_captum_per_token": _max_rel_diff(
                specs[ig]["ours"].result.attributions,
                _np(specs[ig]["captum"].result[0].sum(-1)),
            )
        }
    )
    specs["saliency"]["agree"] = _guarded(
        lambda: {
            "vs_captum_per_token": _max_rel_diff(
                specs["saliency"]["ours"].result.attributions,
                _np(specs["saliency"]["captum"].result),
            )
        }
    )
    embeddings = words(ids).detach()
    floor_fns = {
        "fb": forward_backward(lambda e: from_embeddings(e, mask), embeddings, targets),
        "fwd": forward(lambda i: bert(i, attention_mask=mask).logits, ids),
    }
    timed = _time_group(specs, floor_fns, repeats, warmup)
    workload = f"bert_small {n}x{length} tokens"
    return {"workload": workload, "rows": _rows(workload, specs, timed), "timings": timed}


# ----------------------------------------------------------------------------------------
# 4.-7.
# ----------------------------------------------------------------------------------------


def ig_equal_error_workload(size: int, batch: int, ref_steps: int, rounds: int) -> dict:
    """Part 8: IG at equal true error on the ResNet (see the module docstring)."""
    from captum.attr import IntegratedGradients

    import explainer as ex

    from .ig_cases import relative_errors

    net, _ = resnet18_like(size)
    model = ex.wrap(net, modality="image")
    x = _images(batch, size, 1)
    targets = torch.arange(batch) * 3 % 10
    zeros = torch.zeros_like(x)

    def ours() -> Any:
        return ex.explain(
            model, x, "integrated_gradients", target=targets, tolerance=0.01, progress=False
        )

    def captum(n: int) -> Callable[[], torch.Tensor]:
        ig = IntegratedGradients(net)
        return lambda: ig.attribute(
            x, baselines=zeros, target=targets, n_steps=n, method="gausslegendre"
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ex.explain(
            model,
            x,
            "integrated_gradients",
            target=targets,
            n_steps=ref_steps,
            rule="gausslegendre",
            progress=False,
        ).attributions
        first = ours()
        errors = {n: relative_errors(captum(n)().detach(), reference) for n in CAPTUM_GRID}
        timed = interleaved({"ours": ours, "captum_50": captum(50)}, rounds, 1)
    ours_error = relative_errors(first.attributions, reference)
    steps = first.extras["steps_used"]
    # captum's fewest grid steps whose max error is at most ours' (equal true error); its
    # time there is its 50-step time scaled by the rows (every row costs the same)
    matched = next((n for n in CAPTUM_GRID if errors[n].max() <= ours_error.max()), None)
    captum_50 = timed["captum_50"]["seconds"]
    return {
        "network": "resnet18_like",
        "images": batch,
        "image_size": size,
        "reference": f"our Gauss-Legendre IG with {ref_steps} steps",
        "ours": {
            "tolerance": 0.01,
            "steps_per_sample": steps.tolist(),
            "gradient_rows": int(steps.sum()),
            "true_error": ours_error.round(5).tolist(),
            "seconds": timed["ours"]["seconds"],
        },
        "captum_gausslegendre_true_error_max": {
            str(n): round(float(e.max()), 5) for n, e in errors.items()
        },
        "captum_50_seconds": captum_50,
        "ours_over_captum_50": _ratio(timed["ours"]["seconds"], captum_50),
        "captum_steps_at_ours_error": matched,
        "ours_over_captum_at_equal_error": _ratio(
            timed["ours"]["seconds"], None if matched is None else captum_50 * matched / 50
        ),
        "timing": timed,
    }


def evaluate_workload(resnet: dict, n: int, ig_steps: int) -> dict:
    """ex.evaluate's time and the network rows it runs (counted by a forward pre-hook)."""
    import explainer as ex

    net, model = resnet["_net"], resnet["_model"]
    x, targets = resnet["_x"][:n], resnet["_targets"][:n]
    if len(x) < n:  # quick: fewer images in the ResNet batch
        x = _images(n, x.shape[-1], 5)
        targets = torch.arange(n) * 3 % 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exps = [
            ex.explain(model, x, "saliency", target=targets, progress=False),
            ex.explain(
                model, x, "integrated_gradients", target=targets, n_steps=ig_steps, progress=False
            ),
        ]
    counts = {"grad_rows": 0, "grad_calls": 0, "no_grad_rows": 0, "no_grad_calls": 0}

    def count(module: nn.Module, args: tuple, kwargs: dict) -> None:
        first = args[0] if args else next(iter(kwargs.values()))
        key = "grad" if torch.is_grad_enabled() else "no_grad"
        counts[f"{key}_rows"] += int(first.shape[0])
        counts[f"{key}_calls"] += 1

    handle = net.register_forward_pre_hook(count, with_kwargs=True)
    load = _load()
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = ex.evaluate(exps, model, progress=False)
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    # the per-row costs again, right after (other load moves them): fb and fwd of part 1's batch
    xb, tb = resnet["_x"], resnet["_targets"]
    again = interleaved(
        {"fb": forward_backward(net, xb, tb), "fwd": forward(net, xb)}, resnet["_repeats"], 0
    )
    per_row = {k: again[k]["seconds"] / len(xb) for k in ("fb", "fwd")}
    expected = counts["grad_rows"] * per_row["fb"] + counts["no_grad_rows"] * per_row["fwd"]
    part1 = resnet["per_row_seconds"]
    expected_part1 = counts["grad_rows"] * part1["fb"] + counts["no_grad_rows"] * part1["fwd"]
    try:
        metrics = sorted({str(r.get("metric")) for r in scores.summary()} - {"None"})
    except Exception as err:  # only a description
        metrics = [f"(could not list: {err})"]
    return {
        "images": n,
        "image_size": int(x.shape[-1]),
        "methods": ["saliency", f"integrated_gradients (n_steps={ig_steps})"],
        "metrics": "default",
        "metric_names": metrics,
        "seconds": round(seconds, 3),
        **counts,
        "rows_note": "grad rows: forward calls with autograd on (counted at the fb per-row cost); "
        "no-grad rows at the fwd per-row cost (medians of fb and fwd of part 1's batch, "
        "measured right after evaluate)",
        "per_row_seconds": {k: round(v, 5) for k, v in per_row.items()},
        "rows_time_s": round(expected, 3),
        "seconds_over_rows_time": _ratio(seconds, expected),
        "rows_time_at_part1_costs_s": round(expected_part1, 3),
        "load_average": [load, _load()],
    }


def per_call_workload(block: int, rounds: int) -> dict:
    from captum.attr import Saliency

    import explainer as ex

    torch.manual_seed(0)
    net = nn.Linear(10, 2)
    model = ex.wrap(net, modality="tabular")
    x = torch.randn(1, 10)

    def loop(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(block):
                fn()

        return run

    def bare() -> torch.Tensor:
        leaf = x.detach().clone().requires_grad_(True)
        return torch.autograd.grad(net(leaf)[:, 0].sum(), leaf)[0]

    fns = {
        "ours": loop(lambda: ex.explain(model, x, "saliency", target=0, progress=False)),
        "captum": loop(lambda: Saliency(net).attribute(x, target=0)),
        "bare_forward_backward": loop(bare),
    }
    timed = interleaved(fns, rounds, 1)
    us = {k: round(v["seconds"] / block * 1e6, 1) for k, v in timed.items()}
    return {
        "network": "nn.Linear(10, 2), batch 1",
        "calls": block * rounds,
        "block": block,
        **{f"{k}_us_per_call": v for k, v in us.items()},
        **{
            f"{k}_min_us_per_call": round(v["min_seconds"] / block * 1e6, 1)
            for k, v in timed.items()
        },
        "ours_over_captum": _ratio(us["ours"], us["captum"]),
        "ours_over_bare": _ratio(us["ours"], us["bare_forward_backward"]),
    }


def report_workload(n: int, size: int) -> dict:
    import explainer as ex
    from explainer.demo import load_demo_cnn, make_shapes

    net = load_demo_cnn()
    model = ex.wrap(net, modality="image")
    data = make_shapes(n)
    x = torch.nn.functional.interpolate(data.images, size=(size, size), mode="bilinear")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exps = [
            ex.explain(model, x, m, progress=False)
            for m in ("saliency", "gradient_x_input", "grad_cam")
        ]
    explain_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = ex.report(exps, Path(tmp) / "report.html", title="scale benchmark")
        seconds = time.perf_counter() - start
        size_bytes = Path(path).stat().st_size
    return {
        "network": "explainer.demo DemoCNN",
        "images": n,
        "image_size": size,
        "methods": ["saliency", "gradient_x_input", "grad_cam"],
        "explain_seconds": round(explain_s, 3),
        "report_seconds": round(seconds, 3),
        "html_bytes": size_bytes,
        "html_bytes_per_map": round(size_bytes / (3 * n)),
    }


MEMORY_CHILD = textwrap.dedent("""
    import json, sys, time, warnings, torch
    mode, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    sys.path.insert(0, {root!r})
    from benchmarks.bench_deep import resnet18_like
    from benchmarks.bench_memory import rss_mb
    from benchmarks.bench_scale import _images
    net, _ = resnet18_like(size)
    x = _images(batch, size, 1)
    target = torch.arange(batch) * 3 % 10
    if mode == "captum":
        from captum.attr import IntegratedGradients
    else:
        import explainer as ex
    base = rss_mb("VmRSS")
    start = time.perf_counter()
    if mode == "captum":
        attr = IntegratedGradients(net).attribute(x, target=target, n_steps=steps,
                                                  method="gausslegendre")
    else:
        attr = ex.explain(net, x, "ig", target=target, n_steps=steps, progress=False,
                          rule="gausslegendre").attributions
    seconds = time.perf_counter() - start
    print(json.dumps({{"seconds": seconds, "peak_mb": rss_mb("VmHWM"), "baseline_mb": base,
                      "checksum": float(attr.double().abs().sum())}}))
""")


def memory_workload(batch: int, size: int, steps: int) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    out: dict[str, Any] = {"batch": batch, "image_size": size, "n_steps": steps}
    for mode in ("captum", "ours"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_CHILD.format(root=root),
                mode,
                str(batch),
                str(size),
                str(steps),
            ],
            capture_output=True,
            text=True,
            cwd=root,
        )
        if done.returncode:
            out[mode] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        out[mode] = {k: round(v, 3) for k, v in r.items()}
    if "seconds" in out.get("ours", {}) and "seconds" in out.get("captum", {}):
        o, c = out["ours"], out["captum"]
        out["peak_ratio_captum_over_ours"] = _ratio(c["peak_mb"], o["peak_mb"])
        out["working_ratio_captum_over_ours"] = _ratio(
            c["peak_mb"] - c["baseline_mb"], o["peak_mb"] - o["baseline_mb"]
        )
        out["time_ratio_ours_over_captum"] = _ratio(o["seconds"], c["seconds"])
        out["same_result"] = abs(o["checksum"] / c["checksum"] - 1) < 1e-4
    return out


# ----------------------------------------------------------------------------------------


def _fmt(v: Any, width: int) -> str:
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        return (f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.3f}").rjust(width)
    return str(v).rjust(width)


def _agreement_text(a: Any) -> str:
    if not isinstance(a, dict):
        return ""
    parts = []
    for k, v in a.items():
        if k.startswith("delta"):
            continue
        if isinstance(v, list):
            v = min((x for x in v if x is not None), default=None)
            k += " (min)"
        parts.append(f"{k} {_fmt(v, 0).strip()}")
    return "; ".join(parts)


def table(rows: list[dict]) -> list[str]:
    """The headline table, plain text: one line per method (medians; "min": the same ratio
    of the minimums, less moved by other load)."""
    cols = (
        ("ours s", "ours_s", 8),
        ("captum s", "captum_s", 8),
        ("shap s", "shap_s", 8),
        ("ours/captum", "ours_over_captum", 11),
        ("(min)", "ours_over_captum_of_minimums", 6),
        ("ours/shap", "ours_over_shap", 9),
        ("ours/floor", "ours_over_floor", 10),
        ("(min)", "ours_over_floor_of_minimums", 6),
    )
    head = f"{'workload':<23} {'method':<24} " + " ".join(f"{c:>{w}}" for c, _, w in cols)
    lines = [head + "  agreement", "-" * (len(head) + 11)]
    for r in rows:
        lines.append(
            f"{r['workload']:<23} {r['method']:<24} "
            + " ".join(_fmt(r.get(k), w) for _, k, w in cols)
            + f"  {_agreement_text(r.get('agreement'))}"
            + (f"  [errors: {', '.join(r['errors'])}]" if r.get("errors") else "")
        )
    return lines


def run(quick: bool = False, memory: bool = True) -> dict:
    """All parts; ``quick``: small sizes, one round (about a minute). ``memory=False``
    skips part 7 (two subprocesses, ~25 s)."""
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    out: dict[str, Any] = {
        "quick": quick,
        "threads": torch.get_num_threads(),
        "load_start": _load(),
    }
    repeats, warmup = (1, 0) if quick else (3, 1)
    size, batch = (64, 2) if quick else (224, 4)
    seconds: dict[str, float] = {}

    def part(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # a failing part is recorded, the others still run
            import traceback

            result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        seconds[name] = round(time.perf_counter() - t, 1)
        print(f"scale/{name}: {seconds[name]} s (load average {_load()})", flush=True)
        return result

    resnet = part(
        "resnet",
        lambda: resnet_workload(size, batch, quick, repeats, warmup, 1 if quick else 2),
    )
    vit = part("vit", lambda: vit_workload(quick, repeats, warmup))
    bert = part("bert", lambda: bert_workload(quick, repeats, warmup))
    rows: list[dict] = []
    workloads: dict[str, Any] = {}
    for name, w in (("resnet", resnet), ("vit", vit), ("bert", bert)):
        if "rows" in w:
            rows += w["rows"]
        workloads[name] = {k: v for k, v in w.items() if not k.startswith("_") and k != "rows"}
    out["rows"] = rows
    out["evaluate"] = (
        part("evaluate", lambda: evaluate_workload(resnet, n=2 if quick else 4, ig_steps=8))
        if "rows" in resnet
        else {"error": "the ResNet part failed"}
    )
    out["per_call"] = part(
        "per_call", lambda: per_call_workload(block=20 if quick else 200, rounds=3 if quick else 10)
    )
    out["report"] = part(
        "report", lambda: report_workload(n=8 if quick else 32, size=64 if quick else 224)
    )
    out["memory"] = (
        part(
            "memory",
            lambda: memory_workload(
                batch=2 if quick else 4, size=64 if quick else 224, steps=8 if quick else 32
            ),
        )
        if memory
        else {"skipped": True}
    )
    out["ig_equal_error"] = part(
        "ig_equal_error",
        lambda: ig_equal_error_workload(
            size,
            2 if quick else batch // 2,
            ref_steps=32 if quick else 256,
            rounds=1 if quick else 2,
        ),
    )
    out["workloads"] = workloads
    out["part_seconds"] = seconds
    out["load_end"] = _load()
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["table"] = table(rows)
    lines: list[str] = []
    e, p, r, m = out["evaluate"], out["per_call"], out["report"], out["memory"]
    if "seconds" in e:
        lines.append(
            f"evaluate ({e['images']} images x 2 methods, default metrics): {e['seconds']} s, "
            f"{e['grad_rows']} grad rows + {e['no_grad_rows']} no-grad rows; "
            f"time / rows' time {e['seconds_over_rows_time']}"
        )
    if "ours_us_per_call" in p:
        lines.append(
            f"per call (Linear(10, 2), batch 1): ours {p['ours_us_per_call']} us, captum "
            f"{p['captum_us_per_call']} us, bare fb {p['bare_forward_backward_us_per_call']} us; "
            f"ours/captum {p['ours_over_captum']}"
        )
    if "report_seconds" in r:
        lines.append(
            f"report ({r['images']} images x 3 methods at {r['image_size']} px): "
            f"{r['report_seconds']} s, {r['html_bytes']} bytes"
        )
    if "peak_ratio_captum_over_ours" in m:
        lines.append(
            f"IG-{m['n_steps']} memory (batch {m['batch']} at {m['image_size']} px): peak "
            f"ours {m['ours']['peak_mb']:.0f} MB, captum {m['captum']['peak_mb']:.0f} MB "
            f"(captum/ours {m['peak_ratio_captum_over_ours']}); time ours/captum "
            f"{m['time_ratio_ours_over_captum']}"
        )
    q = out["ig_equal_error"]
    if "ours" in q:
        lines.append(
            f"IG at equal true error ({q['images']} images at {q['image_size']} px, reference "
            f"{q['reference']}): ours tolerance 0.01, {q['ours']['steps_per_sample']} steps, max "
            f"error {max(q['ours']['true_error']):.4f}, {q['ours']['seconds']} s; captum GL-50 "
            f"error {q['captum_gausslegendre_true_error_max']['50']:.4f}, {q['captum_50_seconds']}"
            f" s (ours/captum-50 {q['ours_over_captum_50']}); captum needs "
            f"{q['captum_steps_at_ours_error']} steps for ours' error (ours/captum there "
            f"{q['ours_over_captum_at_equal_error']})"
        )
    lines.append(f"total {out['seconds']} s; load average {out['load_start']} -> {out['load_end']}")
    out["headline"] = lines  # bench.html lists these; the rows are its table
    print("\n".join(out["table"] + lines), flush=True)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    print(json.dumps({k: v for k, v in result.items() if k != "headline"}, indent=1, default=str))
