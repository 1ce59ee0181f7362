"""Kernel SHAP builds a CNN's coalition rows channels-last on the CPU (the layout its
convolutions compute in: 5-20% faster a row on a ResNet-18), once the network's first chunk
gave the same outputs on them as on contiguous rows; a network that fails on them or
computes something else gets contiguous rows."""

from __future__ import annotations

import copy

import torch
from torch import nn

import explainer as ex
from explainer.methods import kernel_shap as ks


class _Viewer(nn.Module):
    """Flattens with .view, which channels-last activations refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.head(h.view(h.shape[0], -1))


class _StorageOrder(nn.Module):
    """Reads its input in memory order, as an extension that ignores strides would."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x.as_strided(x.shape, torch.empty(x.shape).stride())  # memory order, as NCHW
        return self.head(self.conv(raw).flatten(1))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    )  # fmt: skip


def _explain(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    e = ex.explain(net, x, "kernel_shap", target=1, progress=False, n_samples=64, n_segments=6)
    return e.attributions


def _contiguous_rows(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same explanation with contiguous rows (a copy of the network, marked)."""
    other = copy.deepcopy(net)
    ks._CHANNELS_LAST[other] = False
    return _explain(other, x)


def test_a_cnn_gets_channels_last_rows_and_the_same_attributions():
    torch.manual_seed(0)
    net, x = _cnn().eval(), torch.rand(2, 3, 8, 8)
    got = _explain(net, x)
    assert ks._CHANNELS_LAST[net] is True
    torch.testing.assert_close(got, _contiguous_rows(net, x), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(_explain(net, x), got)  # later calls: the verdict is kept


def test_networks_that_fail_or_differ_on_channels_last_rows_get_contiguous_ones():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 8, 8)
    for net in (_Viewer().eval(), _StorageOrder().eval()):
        got = _explain(net, x)
        assert ks._CHANNELS_LAST[net] is False
        torch.testing.assert_close(got, _contiguous_rows(net, x), rtol=0, atol=0)


def test_networks_without_convolutions_are_not_tried():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    _explain(net, torch.rand(1, 3, 8, 8))
    assert ks._CHANNELS_LAST[net] is False
