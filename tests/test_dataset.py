"""explain_dataset and the zarr store: streaming, resume after SIGKILL, refusal of mixed
settings, lazy access, and flat memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import explainer as ex
from explainer.dataset.run import explain_dataset
from explainer.dataset.store import open_store
from explainer.demo.cnn import CLASS_NAMES, load_demo_cnn
from explainer.demo.shapes import make_shapes

METHODS = {
    "saliency": {},
    "integrated_gradients": {"n_steps": 8},
    "kernel_shap": {"n_samples": 48, "n_segments": 8},
}


@pytest.fixture(scope="module")
def demo():
    model = ex.wrap(load_demo_cnn(), class_names=CLASS_NAMES, modality="image")
    data = make_shapes(24, seed=5)
    return model, data


def arrays_of(store) -> dict[str, np.ndarray]:
    return {name: np.asarray(store.array(name)[:]) for name in store.array_names()}


def assert_same_store(a, b) -> None:
    left, right = arrays_of(a), arrays_of(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].shape == right[name].shape, name
        assert np.array_equal(left[name], right[name], equal_nan=True), name


def test_store_matches_explain_per_batch(demo, tmp_path):
    model, data = demo
    store = explain_dataset(
        model,
        data.images,
        METHODS,
        tmp_path / "s.zarr",
        labels=data.labels,
        batch_size=8,
        progress=False,
    )
    assert store.complete and len(store) == 24 and store.methods == list(METHODS)
    assert np.array_equal(store.labels, data.labels.numpy())
    for name, params in METHODS.items():
        direct = ex.explain(model, data.images[8:16], name, progress=False, **params)
        stored = store.explanation(name, slice(8, 16))
        torch.testing.assert_close(stored.attributions, direct.attributions, rtol=0, atol=0)
        torch.testing.assert_close(stored.scores, direct.scores)
        assert stored.params == {**stored.params, **params}
        for key, value in direct.extras.items():
            if isinstance(value, torch.Tensor) and len(value) == 8:
                got = stored.extras[key]
                torch.testing.assert_close(
                    got[..., : value.shape[-1]].to(value.dtype), value, equal_nan=True
                )
    # the store's explanations feed the report and the notebook view
    html = ex.report(store[0:4], path=tmp_path / "r.html")
    assert html.exists()


def test_lazy_access_by_index_and_class(demo, tmp_path):
    model, data = demo
    store = explain_dataset(
        model,
        data.images,
        {"saliency": {}},
        tmp_path / "s.zarr",
        labels=data.labels,
        batch_size=5,
        progress=False,
    )
    store = open_store(tmp_path / "s.zarr")
    targets = store.targets
    for cls in range(len(CLASS_NAMES)):
        idx = store.indices(cls=CLASS_NAMES[cls])
        assert np.array_equal(idx, np.flatnonzero(targets == cls))
    one = store[3]["saliency"]
    assert len(one) == 1 and one.inputs.shape == (1, 3, 64, 64)
    picked = store[[1, 7, 20]]["saliency"]
    torch.testing.assert_close(picked.inputs, data.images[[1, 7, 20]])
    means = store.mean_attribution("saliency")
    attr = np.asarray(store.array("attributions/saliency")[:], dtype=np.float64)
    for cls, (mean_map, mean_input, count) in means.items():
        assert count == int((targets == cls).sum())
        np.testing.assert_allclose(mean_map, attr[targets == cls].mean(0), rtol=1e-6)
        np.testing.assert_allclose(mean_input, data.images[targets == cls].double().mean(0))
    from explainer.reporting.store_summary import dataset_summary

    summary = dataset_summary(store, shown=4, max_classes=2)  # the 2 most frequent classes
    counts = np.bincount(targets)
    assert len(summary.maps[0]["panels"]) == 2 and summary.maps[0]["limited"].startswith("2 ")
    assert sorted(p[1] for p in summary.maps[0]["panels"]) == sorted(counts)[-2:]
    only = store.mean_attribution("saliency", classes=[1])
    assert list(only) == [1] and np.allclose(only[1][0], means[1][0])
    sample = store.sample(8)
    assert len(sample) == 8 and len(set(targets[sample])) == len(set(targets))


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
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
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


class Pairs(Dataset):
    """A map-style dataset of (image, label) pairs, made on the fly."""

    def __init__(self, n: int, size: int = 16) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.rand(3, self.size, self.size, generator=g), i % 3


def test_datasets_loaders_and_label_targets(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    model = ex.wrap(net, modality="image")
    ds = Pairs(10)
    a = explain_dataset(
        model, ds, "saliency", tmp_path / "a.zarr", batch_size=4, target="label", progress=False
    )
    assert np.array_equal(a.targets, np.arange(10) % 3) and np.array_equal(a.labels, a.targets)
    b = explain_dataset(
        model,
        DataLoader(ds, batch_size=4, num_workers=0),
        "saliency",
        tmp_path / "b.zarr",
        target="label",
        progress=False,
    )
    assert_same_store(a, b)
    with pytest.raises(ex.InputError, match="shuffle"):
        explain_dataset(model, DataLoader(ds, shuffle=True), "saliency", tmp_path / "c.zarr")
    with pytest.raises(ex.InputError, match="label"):
        explain_dataset(
            model,
            torch.rand(4, 3, 16, 16),
            "saliency",
            tmp_path / "d.zarr",
            target="label",
            progress=False,
        )
    with pytest.raises(ex.InputError, match="Dataset"):
        explain_dataset(model, iter([1, 2]), "saliency", tmp_path / "e.zarr")
    with pytest.raises(ex.UnknownMethodError):
        explain_dataset(model, ds, "saliancy", tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()  # nothing written for a bad call


def test_memory_stays_flat(tmp_path):
    """Peak Python/numpy allocations do not grow with the dataset (8x more samples)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    model = ex.wrap(net, modality="image")
    peaks = []
    for n in (40, 320):
        tracemalloc.start()
        explain_dataset(
            model, Pairs(n), "saliency", tmp_path / f"{n}.zarr", batch_size=8, progress=False
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0] + 2**20, peaks


def test_progress_off_is_silent(tmp_path, capfd):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    explain_dataset(
        ex.wrap(net, modality="image"),
        Pairs(6),
        "saliency",
        tmp_path / "p.zarr",
        batch_size=2,
        progress=False,
    )
    assert capfd.readouterr().err == ""


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    with pytest.raises(ex.StoreError):
        explain_dataset(
            ex.wrap(net, modality="image"),
            Pairs(2),
            "saliency",
            folder,
            overwrite=True,
            progress=False,
        )
    assert (folder / "thesis.tex").read_text() == "precious"


def test_tabular_store_and_trust_scores_need_the_recorded_background(tmp_path):
    from explainer.demo.tabular import load_tabular_data

    model, d = ex.load_model("demo-tabular"), load_tabular_data()
    bg = d.x_train[:16]
    methods = {"kernel_shap": {"background": bg, "n_samples": 64}, "saliency": {}}
    store = explain_dataset(
        model,
        d.x_test[:24],
        methods,
        tmp_path / "t.zarr",
        labels=d.y_test[:24],
        batch_size=8,
        progress=False,
        feature_names=d.feature_names,
    )
    direct = ex.explain(
        model, d.x_test[8:16], "kernel_shap", background=bg, n_samples=64, progress=False
    )
    torch.testing.assert_close(
        store.explanation("kernel_shap", slice(8, 16)).attributions,
        direct.attributions,
        rtol=0,
        atol=0,
    )
    with pytest.raises(ex.InputError, match="background"):
        ex.evaluate(store, model, metrics=["faithfulness"], sample=4, progress=False)
    with pytest.raises(ex.InputError, match="computed with"):
        ex.evaluate(
            store,
            model,
            metrics=["faithfulness"],
            sample=4,
            progress=False,
            params={"kernel_shap": {"background": d.x_train[16:32]}},
        )
    scores = ex.evaluate(
        store,
        model,
        metrics=["faithfulness"],
        sample=4,
        progress=False,
        params={"kernel_shap": {"background": bg}},
    )
    assert set(scores.methods) == {"kernel_shap", "saliency"}
    html = ex.report(open_store(tmp_path / "t.zarr"), tmp_path / "t.html").read_text()
    assert "trust scores per class" in html and any(f in html for f in d.feature_names)


def test_a_store_being_written_is_refused_to_a_second_run(tmp_path):
    from explainer.dataset.writer import writer_lock

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    model, path = ex.wrap(net, modality="image"), tmp_path / "s.zarr"
    with writer_lock(path):  # as another run would hold it
        with pytest.raises(ex.StoreError, match="lock held by pid"):
            explain_dataset(model, Pairs(4), "saliency", path, progress=False)
    assert explain_dataset(model, Pairs(4), "saliency", path, progress=False).complete


def test_open_store_errors(tmp_path):
    with pytest.raises(ex.StoreError, match="explain_dataset"):
        open_store(tmp_path / "nothing.zarr")
    (tmp_path / "bad.zarr").mkdir()
    with pytest.raises(ex.StoreError):
        open_store(tmp_path / "bad.zarr")


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


def test_only_per_sample_extras_are_stored(monkeypatch):
    """A method's scalar extras (0-d tensors) are not rows of the store and must not break it."""
    import explainer.dataset.batches as dataset

    real = dataset.explain

    def with_scalar(*args, **kwargs):
        exp = real(*args, **kwargs)
        exp.extras.update(total=torch.tensor(3.0), per=torch.ones(len(exp)))
        return exp

    monkeypatch.setattr(dataset, "explain", with_scalar)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    out = dataset.run_batch(
        ex.wrap(net, modality="image"),
        torch.rand(3, 3, 2, 2),
        torch.full((3,), -1),
        {"saliency": {}},
        "predicted",
        2**28,
    )
    assert "extras/saliency/per" in out and "extras/saliency/total" not in out
