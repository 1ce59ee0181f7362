"""Chunk sizes chosen by measured throughput (explainer.throughput, issue 18)."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import explainer as ex
from explainer.throughput import Tuning, candidate_sizes, tuned_chunks


class _Net:
    """A stand-in network: the tuning is kept per (weakly referenced) network."""


def _run(tuning: Tuning, total: int, cap: int, seconds_per_chunk) -> list[int]:
    sizes = []
    for part in tuned_chunks(total, cap, tuning):
        rows = part.stop - part.start
        sizes.append(rows)
        time.sleep(seconds_per_chunk(rows))
    return sizes


def test_chunks_cover_the_rows_in_order_and_never_exceed_the_budget():
    tuning = Tuning(_Net(), "forward", torch.zeros(3))
    for total, cap in [(1, 1), (7, 3), (200, 64), (1000, 1000)]:
        parts = list(tuned_chunks(total, cap, tuning))
        assert [p.start for p in parts] == [0, *(p.stop for p in parts[:-1])]
        assert parts[-1].stop == total
        assert max(p.stop - p.start for p in parts) <= cap


def test_a_pass_whose_rows_get_slower_in_large_chunks_settles_on_the_fast_size():
    # 1.5 ms a row up to 8 rows, 1 ms up to 16, 3 ms above (caches overflow): 16 is fastest
    net = _Net()
    cost = lambda rows: rows * (0.0015 if rows <= 8 else 0.001 if rows <= 16 else 0.003)  # noqa: E731
    for _ in range(3):
        _run(Tuning(net, "forward+backward", torch.zeros(2)), 128, 100, cost)
    log: dict = {}
    sizes = _run(Tuning(net, "forward+backward", torch.zeros(2), log), 128, 100, cost)
    assert sizes == [16] * 8
    assert log["forward+backward"]["rows"] == 16 and log["forward+backward"]["cap"] == 100
    assert "64" not in log["forward+backward"]["ms_per_row"]  # 32 was slower: trying stopped


def test_a_flat_cost_per_row_does_not_lead_to_larger_chunks_than_it_needs():
    # 1 ms a row at 8 and 16 rows (2% apart): a larger chunk buys nothing and costs memory,
    # so 32 is never tried; 5% faster or more, it is
    from explainer.throughput import _Record

    flat, falling = _Record(), _Record()
    for record, at_16 in ((flat, 0.98e-3), (falling, 0.90e-3)):
        record.add(8, 1.0e-3)
        record.add(16, at_16)
    assert flat.choose(100, 1000) == 16 and flat.stopped_at == 16
    assert falling.choose(100, 1000) == 32 and falling.stopped_at is None


def test_a_pass_with_a_large_cost_per_call_settles_on_the_largest_chunk():
    # 20 ms a call, 0.1 ms a row: the fewer calls the better
    net = _Net()
    cost = lambda rows: 0.02 + 0.0001 * rows  # noqa: E731
    for _ in range(4):
        _run(Tuning(net, "forward", torch.zeros(2)), 200, 100, cost)
    assert _run(Tuning(net, "forward", torch.zeros(2)), 200, 100, cost) == [100, 100]


def test_candidate_sizes_are_powers_of_two_below_the_budget_and_the_budget():
    assert candidate_sizes(82) == [8, 16, 32, 64, 82]
    assert candidate_sizes(64) == [8, 16, 32, 64]
    assert candidate_sizes(3) == [3]


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated_gradients", {"n_steps": 16}),
        ("gradient_shap", {"n_samples": 8}),
        ("deep_shap", {}),
        ("kernel_shap", {"n_samples": 64, "n_segments": 8}),
    ],
)
def test_results_do_not_depend_on_the_chunk_sizes_and_the_manifest_records_them(method, params):
    net = _cnn()
    x, bg = torch.rand(3, 3, 8, 8), torch.rand(4, 3, 8, 8)
    if method in ("gradient_shap", "deep_shap"):
        params = {**params, "background": bg}
    calls = []
    for _ in range(4):  # the tuning moves between calls: the first chunks try sizes
        model = ex.wrap(net, modality="image")
        calls.append(ex.explain(model, x, method, target=1, progress=False, **params))
    for e in calls[1:]:
        torch.testing.assert_close(e.attributions, calls[0].attributions, rtol=1e-5, atol=1e-6)
    chunks = calls[-1].manifest["chunks"]
    assert chunks and all(c["rows"] <= c["cap"] for c in chunks.values())


@pytest.mark.parametrize("method", ["grad_cam", "score_cam"])
def test_cam_chunks_are_tuned_and_do_not_change_the_maps(method):
    net = _cnn()
    x = torch.rand(20, 3, 8, 8)
    calls = [
        ex.explain(ex.wrap(net, modality="image"), x, method, target=1, progress=False)
        for _ in range(3)
    ]
    for e in calls[1:]:
        torch.testing.assert_close(e.attributions, calls[0].attributions, rtol=1e-5, atol=1e-6)
    chunks = calls[-1].manifest["chunks"]
    kind = "forward+backward to a layer" if method == "grad_cam" else "forward to a layer"
    assert kind in chunks and chunks[kind]["rows"] <= chunks[kind]["cap"]


@pytest.mark.parametrize("method", ["saliency", "smoothgrad"])
def test_gradient_passes_over_more_rows_than_the_smallest_size_are_tuned_too(method):
    """Saliency runs a batch in one pass only when tuning could not split it (up to 8 rows):
    smoothgrad hands it 16 noisy copies of 2 images, which used to go through at once."""
    net = _cnn()
    x = torch.rand(2 if method == "smoothgrad" else 20, 3, 8, 8)
    params = {"n_samples": 16} if method == "smoothgrad" else {}
    calls = [
        ex.explain(ex.wrap(net, modality="image"), x, method, target=1, progress=False, **params)
        for _ in range(3)
    ]
    for e in calls[1:]:
        torch.testing.assert_close(e.attributions, calls[0].attributions, rtol=1e-5, atol=1e-6)
    chunks = calls[-1].manifest["chunks"]["forward+backward"]
    assert chunks["cap"] >= 20 and len(chunks["ms_per_row"]) >= 2  # sizes were measured
    small = ex.explain(ex.wrap(net, modality="image"), x[:2], "saliency", progress=False)
    assert "chunks" not in small.manifest  # two rows: one pass, nothing to tune
