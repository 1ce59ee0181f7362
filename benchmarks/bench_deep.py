"""deep_shap (our DeepLIFT engine) beside shap's DeepExplainer and captum's DeepLiftShap, in
one run: seconds per explained image and the additivity gap, at 224 px on a ResNet-18-sized
HuggingFace ResNet (random weights, small config, no download) and on shap's own MNIST net.

The gap is |sum(phi) - (f(x) - mean_b f(b))| / max(1, |f(x) - mean_b f(b)|), worst sample.
A peer that fails (captum refuses a ReLU module called twice) is recorded with its error.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import nn


class _Logits(nn.Module):
    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits


def resnet18_like(size: int) -> tuple[nn.Module, tuple[int, ...]]:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
        layer_type="basic", num_labels=10,
    )  # fmt: skip
    torch.manual_seed(0)
    return _Logits(ResNetForImageClassification(config)).eval(), (3, size, size)


def shap_mnist() -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(10, 20, 5), nn.MaxPool2d(2),
        nn.ReLU(), nn.Flatten(), nn.Linear(320, 50), nn.ReLU(), nn.Linear(50, 10),
    )  # fmt: skip
    return net.eval(), (1, 28, 28)


def _gap(net: nn.Module, x, bg, phi: np.ndarray) -> float:
    with torch.no_grad():
        change = (net(x)[:, 0] - net(bg)[:, 0].mean()).numpy()
    gap = np.abs(phi.reshape(len(x), -1).sum(1) - change) / np.maximum(1.0, np.abs(change))
    return float(gap.max())


def _timed(fn):
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            phi = fn()
        return phi, round(time.perf_counter() - start, 3), None
    except Exception as err:  # a peer that cannot run this network is recorded
        return None, round(time.perf_counter() - start, 3), f"{type(err).__name__}: {err}"[:200]


def compare(net: nn.Module, shape: tuple[int, ...], n: int, n_bg: int) -> dict:
    import shap
    from captum.attr import DeepLiftShap

    import explainer as ex

    gen = torch.Generator().manual_seed(1)
    x, bg = torch.randn(n, *shape, generator=gen), torch.randn(n_bg, *shape, generator=gen)
    model = ex.wrap(net, modality="image")
    runs = {
        "ours": lambda: ex.explain(
            model, x, "deep_shap", target=0, background=bg, progress=False
        ).attributions.numpy(),
        "shap": lambda: np.asarray(
            shap.DeepExplainer(net, bg).shap_values(x, check_additivity=False)
        )[..., 0],
        "captum": lambda: DeepLiftShap(net).attribute(x, baselines=bg, target=0).detach().numpy(),
    }
    out: dict = {"inputs": n, "background": n_bg, "shape": list(shape)}
    for name, fn in runs.items():
        phi, seconds, error = _timed(fn)
        out[name] = {"seconds": seconds, "error": error}
        if phi is not None:
            out[name]["additivity_gap"] = _gap(net, x, bg, phi)
    for peer in ("shap", "captum"):
        if out[peer]["error"] is None:
            out[f"time_ratio_ours_over_{peer}"] = round(
                out["ours"]["seconds"] / out[peer]["seconds"], 2
            )
    return out


def run(quick: bool = False) -> dict:
    size = 64 if quick else 224
    net, shape = resnet18_like(size)
    return {
        "resnet18_like": compare(net, shape, n=1 if quick else 2, n_bg=2 if quick else 4),
        "shap_mnist": compare(*shap_mnist(), n=4, n_bg=16),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
