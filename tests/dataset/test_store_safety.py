"""Stores never serve holes or mixed data: checksums per batch, data digests checked on
resume, one lock per resolved path, and nothing written before the arguments are checked."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import explainer as ex
from explainer.dataset import writer as store_write
from explainer.dataset.run import explain_dataset
from explainer.dataset.store import open_store

METHODS = {"saliency": {}, "integrated_gradients": {"n_steps": 8}}
N, BATCH = 40, 8  # 5 batches


def tabular_model() -> ex.Model:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return ex.wrap(net, modality="tabular", class_names=["a", "b", "c"])


@pytest.fixture
def model():
    return tabular_model()


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(N, 6, generator=gen), torch.randint(0, 3, (N,), generator=gen)


def run(model, x, y, path, **kwargs):
    kwargs.setdefault("methods", METHODS)
    return explain_dataset(
        model, x, store=path, labels=y, batch_size=BATCH, progress=False, **kwargs
    )


def arrays(store) -> dict[str, np.ndarray]:
    return {name: np.asarray(store.array(name)[:]) for name in store.array_names()}


def assert_same(a, b) -> None:
    left, right = arrays(a), arrays(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert np.array_equal(left[name], right[name], equal_nan=True), name


class StopsAt(Dataset):
    """(x, y) pairs that interrupt the run (like Ctrl-C) when item ``stop`` is read."""

    def __init__(self, x, y, stop):
        self.x, self.y, self.stop = x, y, stop

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.stop:
            raise KeyboardInterrupt
        return self.x[i], int(self.y[i])


def partial_store(model, x, y, path, stop=24):
    """A store with the batches before row ``stop`` finished (3 of 5 by default)."""
    with pytest.raises(KeyboardInterrupt):
        explain_dataset(model, StopsAt(x, y, stop), METHODS, path, batch_size=BATCH, progress=False)
    store = open_store(path)
    assert 0 < store.batches_done.sum() < store.n_batches
    return store


# -- resume never mixes data ---------------------------------------------------------------
def test_resume_with_changed_rows_in_the_middle_is_refused(model, data, tmp_path):
    x, y = data
    partial_store(model, x, y, tmp_path / "s.zarr")
    x2, y2 = x.clone(), y.clone()
    x2[5] += 1.0  # rows 5 and 6: neither the first nor the last sample
    y2[6] = (y2[6] + 1) % 3
    with pytest.raises(ex.StoreError, match="batch 0 .rows 0-7") as info:
        run(model, x2, y2, tmp_path / "s.zarr")
    assert "mix results" in str(info.value)
    assert open_store(tmp_path / "s.zarr").batches_done.sum() == 3  # nothing was written


def test_resume_with_the_same_data_finishes_identically(model, data, tmp_path):
    x, y = data
    partial_store(model, x, y, tmp_path / "s.zarr")
    resumed = run(model, x, y, tmp_path / "s.zarr")
    assert resumed.complete
    assert_same(resumed, run(model, x, y, tmp_path / "fresh.zarr"))


# -- holes and corruption ------------------------------------------------------------------
@pytest.fixture
def complete(model, data, tmp_path):
    x, y = data
    return run(model, x, y, tmp_path / "s.zarr")


@pytest.mark.parametrize("array", ["attributions/saliency", "inputs", "targets"])
def test_a_deleted_chunk_is_named_on_open_on_read_and_repaired_by_resume(
    complete, model, data, tmp_path, array
):
    chunk = complete.path / array / "c" / "3" / ("0" if array != "targets" else "")
    chunk = Path(str(chunk).rstrip("/"))
    chunk.unlink()
    with pytest.raises(ex.StoreError, match="damaged batch 3"):
        open_store(complete.path)
    lazy = open_store(complete.path, verify="none")
    assert lazy[0:8]["saliency"].attributions.shape == (8, 6)  # other batches still read
    with pytest.raises(ex.StoreError, match="batch 3"):
        lazy[24:32] if array != "targets" else lazy.targets
    with pytest.raises(ex.StoreError, match="batch 3"):
        ex.report(lazy, path=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    x, y = data
    with pytest.warns(UserWarning, match="recomputed"):
        repaired = run(model, x, y, complete.path)
    assert_same(repaired, run(model, x, y, tmp_path / "fresh.zarr"))


def test_a_truncated_chunk_is_a_store_error_not_a_zstd_error(complete, model, data, tmp_path):
    chunk = complete.path / "attributions" / "saliency" / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    lazy = open_store(complete.path)  # the file is there: only reading finds it
    with pytest.raises(ex.StoreError, match="batch 2"):
        lazy[16:24]
    with pytest.raises(ex.StoreError, match="damaged batch 2"):
        open_store(complete.path, verify="full")
    x, y = data
    with pytest.warns(UserWarning, match="recomputed"):
        repaired = run(model, x, y, complete.path)
    assert_same(repaired, run(model, x, y, tmp_path / "fresh.zarr"))


def test_a_chunk_swapped_for_another_batch_fails_its_checksum(complete):
    base = complete.path / "attributions" / "saliency" / "c"
    shutil.copy(base / "1" / "0", base / "3" / "0")  # decodes fine, wrong content
    with pytest.raises(ex.StoreError, match="batch 3.*checksum"):
        open_store(complete.path)[24:32]
    assert 3 in open_store(complete.path, verify="none").damaged_batches(full=True)


def test_a_deleted_array_metadata_file_is_not_a_complete_store(complete, model, data, tmp_path):
    (complete.path / "attributions" / "saliency" / "zarr.json").unlink()
    with pytest.raises(ex.StoreError, match="attributions/saliency"):
        open_store(complete.path)
    x, y = data
    with pytest.warns(UserWarning, match="recomputed"):
        repaired = run(model, x, y, complete.path)
    assert_same(repaired, run(model, x, y, tmp_path / "fresh.zarr"))


def test_a_manifest_missing_the_model_is_a_store_error(complete):
    meta = complete.path / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["explainer"]["model"]
    meta.write_text(json.dumps(doc))
    with pytest.raises(ex.StoreError, match="model"):
        open_store(complete.path)


def test_an_object_dtype_array_in_a_store_is_a_store_error(complete):
    meta = complete.path / "targets" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["data_type"] = "string"
    doc["fill_value"] = ""
    doc["codecs"] = [{"name": "vlen-utf8"}]
    meta.write_text(json.dumps(doc))
    with pytest.raises(ex.StoreError, match="targets"):
        open_store(complete.path)


# -- one writer per resolved path ----------------------------------------------------------
def test_overwrite_through_another_name_of_a_locked_store_is_refused(
    complete, model, data, tmp_path
):
    alias = tmp_path / "alias.zarr"
    alias.symlink_to(complete.path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from explainer.dataset.writer import writer_lock
                with writer_lock(Path({str(alias)!r})):
                    print("held", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = arrays(complete)
        x, y = data
        for name in (complete.path, tmp_path / "sub" / ".." / "s.zarr"):
            (tmp_path / "sub").mkdir(exist_ok=True)
            with pytest.raises(ex.StoreError, match="lock"):
                run(model, x, y, name, overwrite=True)
        assert complete.path.is_dir()
        for name, value in arrays(open_store(complete.path)).items():
            assert np.array_equal(value, before[name], equal_nan=True), name
    finally:
        holder.kill()
        holder.wait()


# -- nothing written before the arguments are checked --------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"methods": {"integrated_gradients": {"n_steps": "abc"}}},
        {"target": -1},
        {"target": 10},
        {"methods": {"saliency": {"absolute": "no"}}},
        {"memory_budget": "0"},
        {"methods": {"integrated_gradients": {"baselines": float("nan")}}},
        {"resume": "yes"},
    ],
)
def test_bad_arguments_write_nothing_and_the_corrected_run_is_not_refused(
    model, data, tmp_path, kwargs
):
    x, y = data
    path = tmp_path / "s.zarr"
    with pytest.raises(ex.InputError):
        run(model, x, y, path, **kwargs)
    assert not path.exists() and not list(tmp_path.glob(".s.zarr*creating*"))
    assert run(model, x, y, path).complete


def test_an_incompatible_resume_names_the_differing_parameter(model, data, tmp_path):
    x, y = data
    run(model, x, y, tmp_path / "s.zarr")
    with pytest.raises(ex.StoreError) as info:
        run(
            model,
            x,
            y,
            tmp_path / "s.zarr",
            methods={**METHODS, "integrated_gradients": {"n_steps": 16}},
        )
    assert "methods.integrated_gradients.n_steps: stored 8, now 16" in str(info.value)


def test_a_huge_batch_size_sizes_chunks_by_the_data(model, data, tmp_path):
    x, y = data
    store = explain_dataset(
        model, x[:6], "saliency", tmp_path / "s.zarr", batch_size=10**9, progress=False
    )
    assert store.complete and store.batch_size == 6
    assert store.array("inputs").chunks == (6, 6)


@pytest.mark.parametrize(
    "values, hint",
    [
        (torch.randint(0, 255, (N, 6), dtype=torch.uint8), "uint8"),
        (torch.rand(N, 6) > 0.5, "bool"),
        (torch.randn(N, 6, dtype=torch.complex64), "complex"),
    ],
)
def test_non_float_data_is_refused_as_explain_refuses_it(model, tmp_path, values, hint):
    with pytest.raises(ex.InputError, match=hint):
        explain_dataset(model, values, "saliency", tmp_path / "s.zarr", progress=False)
    with pytest.raises(ex.InputError, match=hint):
        ex.explain(model, values, "saliency", progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("bad", [1.7, float("nan")])
def test_float_labels_that_are_not_integers_are_refused(model, data, tmp_path, bad):
    x, y = data
    labels = y.double()
    labels[3] = bad
    with pytest.raises(ex.InputError, match="integer"):
        run(model, x, labels, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_integral_float_labels_are_accepted(model, data, tmp_path):
    x, y = data
    store = run(model, x, y.double(), tmp_path / "s.zarr")
    assert np.array_equal(store.labels, y.numpy())


def test_labels_of_the_wrong_length_are_refused(model, data, tmp_path):
    x, y = data
    with pytest.raises(ex.InputError, match="one label per sample"):
        run(model, x[:2], y[:5], tmp_path / "s.zarr")


class LiesAboutItsLength(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x) + 3

    def __getitem__(self, i):
        return self.x[i]  # IndexError past the real end


def test_a_dataset_whose_len_lies_is_an_input_error_naming_the_item(model, data, tmp_path):
    x, _ = data
    with pytest.raises(ex.InputError, match=f"dataset item {N + 2}.*IndexError"):
        explain_dataset(
            model,
            LiesAboutItsLength(x),
            "saliency",
            tmp_path / "s.zarr",
            batch_size=BATCH,
            progress=False,
        )
    assert not (tmp_path / "s.zarr").exists()  # found while checking, before writing


def test_explain_dataset_leaves_the_global_rng_alone(model, data, tmp_path):
    x, y = data
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    run(model, x, y, tmp_path / "s.zarr", methods={"saliency": {}, "smoothgrad": {"n_samples": 4}})
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)


# -- file system errors --------------------------------------------------------------------
def test_a_store_under_a_file_is_a_store_error(model, data, tmp_path):
    x, y = data
    (tmp_path / "file").write_text("x")
    with pytest.raises(ex.StoreError, match="writ"):
        run(model, x, y, tmp_path / "file" / "s.zarr")


def test_a_permission_error_is_a_store_error_saying_what_to_check(
    model, data, tmp_path, monkeypatch
):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr("explainer.dataset.writer.create_store", denied)
    x, y = data
    with pytest.raises(ex.StoreError, match="permissions"):
        run(model, x, y, tmp_path / "s.zarr")


def test_disk_full_mid_run_keeps_finished_batches_and_resume_is_identical(
    model, data, tmp_path, monkeypatch
):
    real, calls = store_write.write_batch, []

    def fills_up(store, b, arrays):
        calls.append(b)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(store, b, arrays)

    monkeypatch.setattr("explainer.dataset.run.write_batch", fills_up)
    x, y = data
    with pytest.raises(ex.StoreError, match="Free disk space"):
        run(model, x, y, tmp_path / "s.zarr")
    monkeypatch.setattr("explainer.dataset.run.write_batch", real)
    assert open_store(tmp_path / "s.zarr").batches_done.sum() == 2
    assert_same(run(model, x, y, tmp_path / "s.zarr"), run(model, x, y, tmp_path / "fresh.zarr"))


def test_a_deleted_trust_score_chunk_is_not_read_as_not_computed(complete, model):
    ex.evaluate(complete, model, ["faithfulness"], sample=6, progress=False)
    store = open_store(complete.path)
    (name,) = [n for n in store.metrics("saliency")][:1]
    assert np.isfinite(store.metrics("saliency")[name]).any()
    chunks = sorted((complete.path / "metrics" / "saliency" / name / "c").iterdir())
    chunks[0].unlink()
    with pytest.raises(ex.StoreError, match="ex.evaluate"):
        open_store(complete.path).metrics("saliency")
