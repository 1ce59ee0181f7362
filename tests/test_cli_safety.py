"""The command line under bad input and faults: one `error:` line, exit code 2, nothing
written before the options are checked, and a corrected rerun that is not refused."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from typer.testing import CliRunner

from explainer.cli import app
from explainer.dataset import writer as store_write
from explainer.dataset.store import open_store


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, *words: str) -> str:
    text = result.output
    assert result.exit_code == 2, text
    assert text.count("error:") == 1 and "Traceback" not in text, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return text


def explain(store, *extra):
    return cli(
        "explain",
        "--model",
        "demo",
        "--data",
        "demo",
        "--limit",
        "8",
        "--batch-size",
        "4",
        "--method",
        "saliency",
        "--store",
        store,
        "--no-progress",
        *extra,
    )


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--param", "saliency.absolute=abc"], ["absolute"]),
        (["--target", "-1"], ["target"]),
        (["--target", "99"], ["target"]),
        (["--size", "32"], ["--size", "image folder"]),
        (
            ["--method", "integrated_gradients", "--param", "integrated_gradients.n_steps=abc"],
            ["n_steps"],
        ),
    ],
)
def test_bad_options_write_no_store_and_the_corrected_rerun_works(tmp_path, extra, words):
    store = tmp_path / "s.zarr"
    one_error(explain(store, *extra), *words)
    assert not store.exists()
    result = explain(store)
    assert result.exit_code == 0, result.output
    assert open_store(store).complete


def test_an_object_npy_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    result = cli(
        "explain",
        "--model",
        "demo-tabular",
        "--data",
        path,
        "--store",
        tmp_path / "s.zarr",
        "--method",
        "saliency",
        "--no-progress",
    )
    one_error(result, "numeric array")
    assert not (tmp_path / "s.zarr").exists()


def test_a_garbage_npy_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY garbage" * 10)
    one_error(
        cli("explain", "--model", "demo-tabular", "--data", path, "--store", tmp_path / "s.zarr"),
        "x.npy",
    )


def test_a_uint8_npy_is_refused_not_explained_as_0_to_255_floats(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (6, 3, 64, 64), dtype=np.uint8))
    one_error(
        cli(
            "explain",
            "--model",
            "demo",
            "--data",
            path,
            "--store",
            tmp_path / "s.zarr",
            "--method",
            "saliency",
        ),
        "uint8",
        "/ 255",
    )
    assert not (tmp_path / "s.zarr").exists()


def test_an_npz_with_fewer_labels_than_inputs_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(2, 30)).astype(np.float32), y=np.arange(5))
    one_error(
        cli(
            "explain",
            "--model",
            "demo-tabular",
            "--data",
            path,
            "--store",
            tmp_path / "s.zarr",
            "--method",
            "saliency",
        ),
        "one label per sample",
    )


def test_evaluate_with_a_negative_seed_is_one_error_line(tmp_path):
    store = tmp_path / "s.zarr"
    assert explain(store).exit_code == 0
    one_error(cli("evaluate", store, "--seed", "-1", "--no-progress"), "seed")


def test_report_to_a_folder_is_one_error_line(tmp_path):
    store = tmp_path / "s.zarr"
    assert explain(store).exit_code == 0
    (tmp_path / "out").mkdir()
    one_error(cli("report", store, "--out", tmp_path / "out"), "path")
    assert not any((tmp_path / "out").iterdir())


def test_a_permission_error_is_one_error_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "s.zarr"))

    store = tmp_path / "s.zarr"
    assert explain(store).exit_code == 0
    monkeypatch.setattr("explainer.dataset.evaluation.write_metric", denied)
    one_error(cli("evaluate", store, "--sample", "2", "--no-progress"), "Permission denied")


def test_disk_full_keeps_finished_batches_the_old_report_and_resume_is_identical(
    tmp_path, monkeypatch
):
    full, store, report = tmp_path / "full.zarr", tmp_path / "s.zarr", tmp_path / "r.html"
    assert explain(full).exit_code == 0
    assert cli("report", full, "--out", report).exit_code == 0
    before = report.read_bytes()
    real, calls = store_write.write_batch, []

    def fills_up(out, b, arrays):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(out, b, arrays)

    monkeypatch.setattr("explainer.dataset.run.write_batch", fills_up)
    one_error(explain(store), "Free disk space")
    monkeypatch.setattr("explainer.dataset.run.write_batch", real)
    assert open_store(store).batches_done.sum() == 1
    assert explain(store).exit_code == 0
    a, b = open_store(store), open_store(full)
    for name in a.array_names():
        assert np.array_equal(a.array(name)[:], b.array(name)[:], equal_nan=True), name
    assert report.read_bytes() == before
