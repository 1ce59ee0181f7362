"""Helpers shared by the attribution tests: small models, data, and model-state snapshots.

Models are tiny and built from a fixed seed, so the whole suite runs in a few minutes on
two CPU cores. ``method_params`` holds what each method needs to run at all (a background
for the SHAP family) plus settings that keep it fast. (Kept out of conftest.py so test
modules can import it by a name no other conftest shadows.)
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import explainer as ex

IMAGE_SHAPE = (3, 16, 16)
N_FEATURES = 6
N_CLASSES = 3

# Methods whose result depends on random draws (a different seed gives a different result).
SAMPLING_METHODS = {"smoothgrad", "gradient_shap", "kernel_shap"}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def init_parameters(net: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Re-draw every parameter from N(0, scale^2 / fan_in), from a local generator."""
    gen = seeded(seed)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else p.numel()
            p.copy_(torch.randn(p.shape, generator=gen) * scale / fan_in**0.5)
    return net


class RecordsBatchSizes(nn.Module):
    """Wraps a network and records the batch size of every forward call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.sizes = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        return self.net(x)


class SmallCNN(nn.Module):
    """(N, 3, 16, 16) -> (N, 3) logits, with BatchNorm and in-place ReLUs (as torchvision models have)."""

    def __init__(self, n_classes: int = N_CLASSES, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(32, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TabularMLP(nn.Module):
    """(N, 6) -> (N, 3) logits: a nonlinear tabular model with in-place ReLU and Dropout."""

    def __init__(
        self, n_features: int = N_FEATURES, n_classes: int = N_CLASSES, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, 12),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(12, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_cnn(seed: int = 0, dropout: float = 0.0) -> SmallCNN:
    net = init_parameters(SmallCNN(dropout=dropout), seed, scale=2.0).eval()
    bn = net.features[1]
    with (
        torch.no_grad()
    ):  # a trained-looking BatchNorm: a forward in train mode would change its buffers
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.copy_(torch.linspace(-0.2, 0.2, 6))
        bn.running_var.copy_(torch.linspace(0.5, 1.5, 6))
    return net


def make_mlp(seed: int = 0, dropout: float = 0.0) -> TabularMLP:
    return init_parameters(TabularMLP(dropout=dropout), seed, scale=2.0).eval()


def make_linear(seed: int = 0, n_features: int = N_FEATURES) -> nn.Linear:
    return init_parameters(nn.Linear(n_features, N_CLASSES), seed).eval()


def make_linear_image(seed: int = 0, shape: tuple[int, ...] = IMAGE_SHAPE) -> nn.Sequential:
    """f(x) = W flatten(x) + b on images: the image-shaped analytic model."""
    n = 1
    for s in shape:
        n *= s
    return init_parameters(nn.Sequential(nn.Flatten(), nn.Linear(n, N_CLASSES)), seed).eval()


def make_images(n: int, seed: int = 1, shape: tuple[int, ...] = IMAGE_SHAPE) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled 4x4 noise), so that SLIC finds several
    superpixels (on pixel noise it merges everything into one)."""
    c, h, w = shape
    coarse = torch.rand((n, c, 4, 4), generator=seeded(seed))
    return torch.nn.functional.interpolate(
        coarse, size=(h, w), mode="bilinear", align_corners=False
    )


def make_rows(n: int, seed: int = 1, n_features: int = N_FEATURES) -> torch.Tensor:
    return torch.randn((n, n_features), generator=seeded(seed))


def method_params(method: str, modality: str) -> dict[str, Any]:
    """Required and speed-keeping parameters of ``method`` for ``modality``."""
    background = make_images(4, seed=7) if modality == "image" else make_rows(8, seed=7)
    params: dict[str, dict[str, Any]] = {
        "integrated_gradients": {"n_steps": 8},
        "smoothgrad": {"n_samples": 4},
        "gradient_shap": {"background": background, "n_samples": 8},
        "deep_shap": {"background": background},
        # Budgets below 2^M, so that kernel_shap samples coalitions (M = 6 columns; ~8 superpixels).
        "kernel_shap": (
            {"n_samples": 24, "n_segments": 12}
            if modality == "image"
            else {"n_samples": 24, "background": background}
        ),
    }
    return dict(params.get(method, {}))


# Methods that need a kind of network the contract's small CNN and MLP are not: each has
# its model-state contract tested on such a network in its own test file.
NEEDS_ITS_OWN_NETWORK = {
    "attention_rollout": "a transformer returning attention weights (test_cam.py)"
}


def method_cases() -> list[tuple[str, str]]:
    """(method, modality) for every registered method and every modality it supports."""
    return [
        (m.name, modality)
        for m in ex.list_methods()
        for modality in m.modalities
        if m.name not in NEEDS_ITS_OWN_NETWORK and modality != "text"  # text: test_text.py
    ]


def model_for(modality: str, seed: int = 0, dropout: float = 0.0) -> ex.Model:
    if modality == "image":
        return ex.wrap(make_cnn(seed, dropout), modality="image")
    return ex.wrap(make_mlp(seed, dropout), modality="tabular")


def inputs_for(modality: str, n: int, seed: int = 1) -> torch.Tensor:
    return make_images(n, seed) if modality == "image" else make_rows(n, seed)


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# -- model state snapshots (the "a method never leaves the model changed" contract) ------

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)
GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def model_state(net: nn.Module) -> dict[str, Any]:
    """Everything a method could leave changed on a network, in comparable form."""
    import torch.nn.modules.module as module_mod

    modules = list(net.named_modules())
    return {
        "training": [(name, m.training) for name, m in modules],
        "inplace": [
            (name, m.inplace)
            for name, m in modules
            if isinstance(getattr(m, "inplace", None), bool)
        ],
        "requires_grad": [(name, p.requires_grad) for name, p in net.named_parameters()],
        "grad": [
            (name, None if p.grad is None else p.grad.clone()) for name, p in net.named_parameters()
        ],
        "hooks": [
            (name, attr, dict(getattr(m, attr)))
            for name, m in modules
            for attr in HOOK_DICTS
            if hasattr(m, attr)
        ],
        "global_hooks": [
            (attr, dict(getattr(module_mod, attr)))
            for attr in GLOBAL_HOOKS
            if hasattr(module_mod, attr)
        ],
        "state_dict": {k: v.clone() for k, v in net.state_dict().items()},
    }


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("training", "inplace", "requires_grad", "hooks", "global_hooks"):
        assert after[key] == before[key], f"model {key} changed"
    assert [n for n, _ in after["grad"]] == [n for n, _ in before["grad"]]
    for (name, g0), (_, g1) in zip(before["grad"], after["grad"], strict=True):
        assert (g0 is None) == (g1 is None), f".grad of {name} appeared or vanished"
        assert g0 is None or torch.equal(g0, g1), f".grad of {name} changed"
    assert before["state_dict"].keys() == after["state_dict"].keys()
    for k, v in before["state_dict"].items():
        assert torch.equal(v, after["state_dict"][k]), f"{k} changed (parameters or buffers)"


def dress_up(net: nn.Module) -> nn.Module:
    """Give a network the state a user's network may have: mixed train/eval submodules, one
    frozen parameter, a pre-existing .grad, and user hooks (which must survive)."""
    net.train()
    first, last = list(net.modules())[1], [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    first.eval()
    params = list(net.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 0.5)
    last.register_forward_hook(lambda module, args, out: None)
    last.register_forward_pre_hook(lambda module, args: None)
    last.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    return net


def minimum_budget(call) -> int:
    """The smallest memory budget ``call(memory_budget)`` accepts, as the InputError it
    raises for a 1-byte budget states it (with it, chunks hold one row)."""
    try:
        call(1)
    except ex.InputError as err:
        found = re.search(r"at least (\d+) bytes", str(err))
        if found and "memory_budget" in str(err):
            return int(found.group(1))
        raise
    raise AssertionError("a 1-byte memory budget was accepted")


def make_inplace_relu_cnn() -> nn.Module:
    """(N, 3, H, W) -> (N, 3) with an in-place ReLU (scriptable and traceable: the
    TorchScript tests compile it)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def exact_shapley(value: Callable[[tuple[bool, ...]], float], m: int) -> torch.Tensor:
    """Shapley values of the game ``value(coalition)`` (a tuple of ``m`` bools, True for a
    present player) by enumeration: every coalition evaluated once, float64."""
    values = {c: value(c) for c in itertools.product((False, True), repeat=m)}
    phi = torch.zeros(m, dtype=torch.float64)
    for coalition, v in values.items():
        size = sum(coalition) - 1  # |S| for S = coalition without the player
        for k in (j for j in range(m) if coalition[j]):
            without = coalition[:k] + (False,) + coalition[k + 1 :]
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            phi[k] += weight * (v - values[without])
    return phi
