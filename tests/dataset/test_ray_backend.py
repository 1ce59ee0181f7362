"""The Ray backend writes the same store as the local one."""

from __future__ import annotations

import os

import pytest
from store_helpers import METHODS, assert_same_store, demo_model_and_images

from explainer.dataset.run import explain_dataset


@pytest.fixture(scope="module")
def demo():
    return demo_model_and_images()


def test_ray_backend_writes_the_same_store(demo, tmp_path):
    ray = pytest.importorskip("ray") if not os.environ.get("CI") else __import__("ray")
    model, data = demo
    kw = dict(labels=data.labels, batch_size=8, progress=False, memory_budget="512MB")
    local = explain_dataset(model, data.images, METHODS, tmp_path / "local.zarr", **kw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = explain_dataset(
            model, data.images, METHODS, tmp_path / "ray.zarr", backend="ray", **kw
        )
    finally:
        ray.shutdown()
    assert remote.group.attrs["last_run"]["backend"] == "ray"
    assert_same_store(local, remote)
