"""`explainer explain | evaluate | report` on stores: typer's runner, and a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

import explainer as ex
from explainer.cli import app

runner = CliRunner()


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_explain_evaluate_report_on_a_store(tmp_path):
    store = tmp_path / "s.zarr"
    _ok(
        [
            "explain",
            "--model",
            "demo",
            "--data",
            "demo",
            "--limit",
            "12",
            "--store",
            str(store),
            "--method",
            "saliency",
            "--method",
            "integrated_gradients",
            "--param",
            "integrated_gradients.n_steps=8",
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    opened = ex.open_store(store)
    assert opened.complete and opened.methods == ["saliency", "integrated_gradients"]
    assert opened.manifest["methods"]["integrated_gradients"]["n_steps"] == 8
    assert opened.manifest["model"]["source"]["path"] == "demo"
    result = _ok(
        ["evaluate", str(store), "--sample", "4", "--metrics", "faithfulness", "--no-progress"]
    )
    assert "faithfulness" in result.output
    assert np.isfinite(ex.open_store(store).metrics("saliency")["deletion_gain"]).sum() == 4
    out = tmp_path / "r.html"
    _ok(["report", str(store), "--out", str(out), "--max-samples", "6"])
    html = out.read_text()
    assert 'id="dataset"' in html and "trust scores per class" in html
    assert html.count('class="sample') >= 6


def test_errors_are_one_line_and_exit_non_zero(tmp_path):
    store = str(tmp_path / "s.zarr")
    cases = [
        ["explain", "--model", "nope.pt", "--data", "demo", "--store", store],
        ["explain", "--model", "demo", "--data", str(tmp_path / "missing"), "--store", store],
        ["explain", "--model", "demo", "--data", "demo", "--store", store, "--method", "saliancy"],
        ["explain", "--model", "demo", "--data", "demo", "--store", store, "--param", "n_steps"],
        ["evaluate", str(tmp_path / "none.zarr")],
        ["report", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "r.html")],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_image_folder_with_normalization_is_recorded(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    weights = tmp_path / "net.ts"
    torch.jit.script(net).save(str(weights))
    store = tmp_path / "s.zarr"
    _ok(
        [
            "explain",
            "--model",
            str(weights),
            "--data",
            str(tmp_path / "imgs"),
            "--size",
            "32",
            "--mean",
            "0.5",
            "--mean",
            "0.4",
            "--mean",
            "0.3",
            "--std",
            "0.2",
            "--std",
            "0.2",
            "--std",
            "0.2",
            "--store",
            str(store),
            "--method",
            "saliency",
            "--target",
            "label",
            "--modality",
            "image",
            "--batch-size",
            "4",
            "--no-progress",
        ]
    )
    opened = ex.open_store(store)
    prep = opened.manifest["data"]["preprocessing"]
    assert prep["size"] == [32, 32] and prep["mean"] == [0.5, 0.4, 0.3]
    assert np.array_equal(opened.labels, [0, 0, 0, 1, 1, 1])
    exp = opened.explanation("saliency", [0])
    assert exp.manifest["preprocessing"] == prep
    # the stored inputs are normalized; reports show them de-normalized, back in [0, 1]
    from explainer.viz.heatmap import denormalize

    shown = denormalize(exp.inputs[0].numpy(), prep)
    assert exp.inputs.min() < -0.5 and 0 <= shown.min() and shown.max() <= 1.0 + 1e-6
    # the same through the API, reading the folder with two DataLoader worker processes
    folder = ex.ImageFolder(tmp_path / "imgs", size=32, mean=[0.5, 0.4, 0.3], std=0.2)
    again = ex.explain_dataset(
        ex.load_model(weights, modality="image"), folder, "saliency", tmp_path / "api.zarr",
        target="label", batch_size=4, num_workers=2, progress=False,
    )  # fmt: skip
    for name in ("inputs", "attributions/saliency", "targets", "scores"):
        assert np.array_equal(again.array(name)[:], opened.array(name)[:]), name


def test_explain_runs_as_a_real_subprocess(tmp_path):
    store = tmp_path / "s.zarr"
    cmd = [
        sys.executable,
        "-m",
        "explainer.cli",
        "explain",
        "--model",
        "demo",
        "--data",
        "demo",
        "--limit",
        "4",
        "--store",
        str(store),
        "--method",
        "saliency",
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4/4 samples" in done.stdout
    again = subprocess.run(
        cmd[:-3] + ["--method", "gradient_x_input"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 2 and again.stderr.startswith("error: store")
    assert "Traceback" not in again.stderr
