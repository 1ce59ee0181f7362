"""Writing and resuming a store: resume after SIGKILL equals an uninterrupted run, mixed
settings are refused, overwrite deletes only stores, and one writer holds a store at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from store_helpers import (
    Pairs,
    arrays_of,
    assert_same_store,
    demo_model_and_images,
    flat_image_model,
)

import explainer as ex
from explainer.dataset.run import explain_dataset
from explainer.dataset.store import open_store
from explainer.dataset.writer import writer_lock
from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn


@pytest.fixture(scope="module")
def demo():
    return demo_model_and_images()


CHILD = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    import explainer as ex
    from explainer.dataset.run import explain_dataset
    from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn
    from explainer.demo.shapes import make_shapes
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES, modality="image")
    data = make_shapes(48, seed=7)
    methods = {"integrated_gradients": {"n_steps": 48}, "kernel_shap": {"n_samples": 96}}
    explain_dataset(model, data.images, methods, sys.argv[1], labels=data.labels,
                    batch_size=4, progress=False, memory_budget="256MB")
    """
)


def _done_batches(path: Path) -> int:
    chunks = path / "done" / "c"
    return (
        len([p for p in chunks.iterdir() if not p.name.endswith(".partial")])
        if chunks.exists()
        else 0
    )


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    killed, full = tmp_path / "killed.zarr", tmp_path / "full.zarr"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
    try:
        deadline = time.monotonic() + 300
        while _done_batches(killed) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    partial = open_store(killed)
    assert 3 <= int(partial.batches_done.sum()) < 12 and not partial.complete
    # the same run again, resumed in this process; then an uninterrupted one
    for path in (killed, full):
        subprocess.run([sys.executable, str(script), str(path)], env=env, check=True)
    assert open_store(killed).complete
    assert_same_store(open_store(killed), open_store(full))
    assert not list(killed.rglob("*.partial"))


def test_incompatible_store_is_refused(demo, tmp_path):
    model, data = demo
    path = tmp_path / "s.zarr"
    kw = dict(batch_size=8, progress=False)
    explain_dataset(model, data.images[:16], {"saliency": {}}, path, **kw)
    other = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES, modality="image")
    with torch.no_grad():
        next(other.net.parameters()).add_(0.01)
    cases = [
        (other, data.images[:16], {"saliency": {}}, kw, "model fingerprint"),
        (model, data.images[:16], {"saliency": {"absolute": False}}, kw, "methods"),
        (model, data.images[:16], {"integrated_gradients": {}}, kw, "methods"),
        (model, data.images[8:24], {"saliency": {}}, kw, "data"),
        (model, data.images[:16], {"saliency": {}}, {**kw, "batch_size": 4}, "batch_size"),
        (model, data.images[:16], {"saliency": {}}, {**kw, "target": 0}, "target"),
    ]
    for m, x, methods, options, word in cases:
        with pytest.raises(ex.StoreError) as info:
            explain_dataset(m, x, methods, path, **options)
        assert word in str(info.value) and "overwrite=True" in str(info.value)
    with pytest.raises(ex.StoreError, match="resume=True"):
        explain_dataset(model, data.images[:16], {"saliency": {}}, path, resume=False, **kw)
    before = arrays_of(open_store(path))
    assert_same_store(open_store(path), open_store(path))  # untouched by the refusals
    store = explain_dataset(
        model, data.images[:16], {"saliency": {"absolute": False}}, path, overwrite=True, **kw
    )
    assert store.complete and (np.asarray(store.array("attributions/saliency")[:]) < 0).any()
    assert before["attributions/saliency"].min() >= 0


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(ex.StoreError):
        explain_dataset(
            flat_image_model(),
            Pairs(2),
            "saliency",
            folder,
            overwrite=True,
            progress=False,
        )
    assert (folder / "thesis.tex").read_text() == "precious"


def test_a_store_being_written_is_refused_to_a_second_run(tmp_path):
    model, path = flat_image_model(), tmp_path / "s.zarr"
    with writer_lock(path):  # as another run would hold it
        with pytest.raises(ex.StoreError, match="lock held by pid"):
            explain_dataset(model, Pairs(4), "saliency", path, progress=False)
    assert explain_dataset(model, Pairs(4), "saliency", path, progress=False).complete
