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


BAD_OPTIONS = [
    pytest.param(["--param", "saliency.absolute=abc"], ["absolute"], id="a method option of the wrong type"),
    pytest.param(["--target", "-1"], ["target"], id="target -1"),
    pytest.param(["--target", "99"], ["target"], id="target 99 of 4 classes"),
    pytest.param(["--size", "32"], ["--size", "image folder"], id="--size without an image folder"),
    pytest.param(["--method", "integrated_gradients", "--param", "integrated_gradients.n_steps=abc"],
                 ["n_steps"], id="n_steps that is not a number"),
    pytest.param(["--param", "n_steps"], ["--param", "METHOD.NAME=VALUE", "e.g. --param"],
                 id="--param without a value"),
    pytest.param(["--param", "integrated_gradients.n_steps=8"], ["--param", "integrated_gradients", "Add --method"],
                 id="--param for a method not given with --method"),
]  # fmt: skip


@pytest.mark.parametrize("extra, words", BAD_OPTIONS)
def test_bad_options_write_no_store_and_the_corrected_rerun_works(tmp_path, extra, words):
    store = tmp_path / "s.zarr"
    one_error(explain(store, *extra), *words)
    assert not store.exists()
    result = explain(store)
    assert result.exit_code == 0, result.output
    assert open_store(store).complete


def _object_npy(path):
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _garbage_npy(path):
    path.write_bytes(b"\x93NUMPY garbage" * 10)


def _uint8_npy(path):
    np.save(path, np.random.default_rng(0).integers(0, 255, (6, 3, 64, 64), dtype=np.uint8))


def _npz_with_fewer_labels(path):
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(2, 30)).astype(np.float32), y=np.arange(5))


def _npz_without_inputs(path):
    np.savez(path, y=np.arange(5))


BAD_DATA_FILES = [
    pytest.param("x.npy", _object_npy, ["--model", "demo-tabular", "--method", "saliency", "--no-progress"],
                 ["numeric array"], id="an object .npy is refused without unpickling"),
    pytest.param("x.npy", _garbage_npy, ["--model", "demo-tabular"], ["x.npy"], id="a garbage .npy"),
    pytest.param("x.npy", _uint8_npy, ["--model", "demo", "--method", "saliency"], ["uint8", "/ 255"],
                 id="a uint8 .npy is refused, not explained as 0-255 floats"),
    pytest.param("d.npz", _npz_with_fewer_labels, ["--model", "demo-tabular", "--method", "saliency"],
                 ["one label per sample"], id="an .npz with fewer labels than inputs"),
    pytest.param("d.npz", _npz_without_inputs, ["--model", "demo-tabular", "--method", "saliency"],
                 ["--data .npz", "np.savez(path, x=inputs, y=labels)"], id="an .npz without an inputs array"),
]  # fmt: skip


@pytest.mark.parametrize("name, write, options, words", BAD_DATA_FILES)
def test_a_bad_data_file_is_one_error_line_and_writes_no_store(
    tmp_path, name, write, options, words
):
    path = tmp_path / name
    write(path)
    one_error(cli("explain", *options, "--data", path, "--store", tmp_path / "s.zarr"), *words)
    assert not (tmp_path / "s.zarr").exists()


STORE, OUT = "<store>", "<out>"  # stand-ins for the test's paths


@pytest.mark.parametrize(
    "command, words",
    [
        pytest.param(["evaluate", STORE, "--seed", "-1", "--no-progress"], ["seed"], id="evaluate with seed -1"),
        pytest.param(["report", STORE, "--out", OUT], ["path"], id="report to a folder"),
    ],
)  # fmt: skip
def test_a_bad_command_on_a_finished_store_is_one_error_line_and_writes_nothing(
    tmp_path, command, words
):
    store, out = tmp_path / "s.zarr", tmp_path / "out"
    assert explain(store).exit_code == 0
    out.mkdir()
    one_error(cli(*[{STORE: store, OUT: out}.get(arg, arg) for arg in command]), *words)
    assert not any(out.iterdir())


def test_a_permission_error_is_one_error_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "s.zarr"))

    store = tmp_path / "s.zarr"
    assert explain(store).exit_code == 0
    monkeypatch.setattr("explainer.dataset.writer.write_metric", denied)
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
